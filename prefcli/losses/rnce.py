"""RNCE and InfoNCA: softmax cross-entropy over the chosen completion and K uniformly drawn candidates."""

from __future__ import annotations

import torch

from prefcli.losses.base import beta_param, register_loss
from prefcli.losses.candidates import CandidateLoss, negatives_param
from prefcli.losses.sampling import uniform_draws


@register_loss
class RNCELoss(CandidateLoss):
    r"""Ranking noise-contrastive estimation (Olmin et al., AISTATS 2024) as a preference loss: Proposition 2.1 /
    eq. 7 of "Preference Optimization via Contrastive Divergence" (MC-PO, arXiv:2502.04567). The chosen completion
    is the observation, K candidates drawn uniformly and independently (with replacement, i.i.d. noise from the
    proposal) are the noise samples. With
    ``r = beta * (log pi - log pi_ref)``::

        loss = -log( exp(r_w) / (exp(r_w) + sum_k exp(r_k)) ) = -log sigmoid(r_w - logsumexp_k r_k)

    With one candidate and K = 1 this is DPO exactly.
    """

    name = "rnce"
    paper = "RNCE (Olmin et al. 2024) as PO: MC-PO paper (arXiv:2502.04567), eq. 7"
    formula = "-log softmax([r_w, r_1..r_K])[0], r = βρ, r_k uniform i.i.d."
    hparam_specs = (beta_param(), negatives_param())
    with_replacement = True
    draw_needs_policy = False

    def draw(self, policy_candidate_logps=None, reference_candidate_logps=None, generator=None,
             candidate_mask=None):
        with torch.no_grad():
            mask = self.drawable_mask(policy_candidate_logps, reference_candidate_logps, candidate_mask)
            return uniform_draws(mask, self.negatives, generator, replacement=self.with_replacement), {}


@register_loss
class InfoNCALoss(RNCELoss):
    r"""InfoNCA with one preferred completion (Chen et al., 2024, "Noise Contrastive Alignment of Language Models
    with Explicit Rewards", arXiv:2402.05369): the same softmax cross-entropy as ``rnce``, but the K negatives are
    K distinct candidates drawn uniformly without replacement (InfoNCA contrasts the given responses)::

        loss = -log softmax([r_w, r_1..r_K])[0],  r = beta * rho
    """

    name = "infonca"
    paper = "Chen et al. 2024, InfoNCA (arXiv:2402.05369)"
    formula = "-log softmax([r_w, r_1..r_K])[0], r = βρ, K distinct uniform"
    with_replacement = False
