"""MC-PO: hard negatives drawn by the Monte Carlo kernel of contrastive divergence."""

from __future__ import annotations

import torch

from prefcli.losses.base import HParam, beta_param, register_loss
from prefcli.losses.candidates import CandidateLoss, negatives_param
from prefcli.losses.sampling import (
    categorical_draws,
    extreme_draws,
    masked_softmax,
    uniform_draws,
    weight_entropy,
)

SAMPLERS = ("mcmc", "max", "min", "random")


@register_loss
class MCPOLoss(CandidateLoss):
    r"""MC-PO, "Preference Optimization via Contrastive Divergence" (arXiv:2502.04567), Algorithm 1 with one
    MCMC step.

    The MC kernel weighs each of the record's C candidates by the current implicit reward, without gradient::

        w_c = softmax_c(beta * (log pi_theta(y_c|x) - log pi_ref(y_c|x)))

    and draws the negative(s) from that categorical with the caller's ``torch.Generator``. The loss is the RNCE /
    DPO objective through the drawn negatives only::

        loss = -log sigmoid(r_w - logsumexp_k r_k),   r = beta * rho,  k over the K drawn negatives

    ``sampler``: ``mcmc`` (K independent draws from w, the paper's kernel), ``max`` / ``min`` (the K highest- /
    lowest-weight candidates, the paper's Max / Min variants), ``random`` (K uniform independent draws, i.e. RNCE).
    ``negatives`` = K. With one candidate and K = 1 this is DPO exactly. Metrics: ``mcpo/weight_entropy`` (mean
    entropy of w in nats) and ``mcpo/top_hit_rate`` (fraction of draws that are a row's highest-weight candidate).
    """

    name = "mcpo"
    paper = "MC-PO, PO via Contrastive Divergence (arXiv:2502.04567), Alg. 1"
    formula = "RNCE/DPO through negatives drawn from softmax(βρ_c) over candidates"
    hparam_specs = (beta_param(), negatives_param(),
                    HParam("sampler", "mcmc", "how negatives are drawn from the kernel weights", choices=SAMPLERS))

    def check_hparams(self) -> None:
        # the uniform sampler draws without the weights (they are then only used for metrics, when given)
        self.draw_needs_policy = self.sampler != "random"

    def kernel_weights(self, policy_candidate_logps, reference_candidate_logps, mask):
        if policy_candidate_logps is None or reference_candidate_logps is None:
            raise ValueError(f"loss 'mcpo' with sampler={self.sampler!r} needs the candidates' policy and "
                             f"reference log-probs to weigh them")
        logits = self.beta * (policy_candidate_logps.detach() - reference_candidate_logps.detach())
        return masked_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), mask)

    def draw(self, policy_candidate_logps=None, reference_candidate_logps=None, generator=None,
             candidate_mask=None):
        with torch.no_grad():
            mask = self.drawable_mask(policy_candidate_logps, reference_candidate_logps, candidate_mask)
            have_logps = policy_candidate_logps is not None and reference_candidate_logps is not None
            if self.sampler == "random":
                indices = uniform_draws(mask, self.negatives, generator, replacement=True)
                if not have_logps:
                    return indices, {}
                weights = self.kernel_weights(policy_candidate_logps, reference_candidate_logps, mask)
            else:
                weights = self.kernel_weights(policy_candidate_logps, reference_candidate_logps, mask)
                if self.sampler == "mcmc":
                    indices = categorical_draws(weights, self.negatives, generator)
                else:
                    indices = extreme_draws(weights, mask, self.negatives, largest=self.sampler == "max")
            top = weights.argmax(dim=1, keepdim=True)
            metrics = {"mcpo/weight_entropy": weight_entropy(weights, mask).mean().detach(),
                       "mcpo/top_hit_rate": (indices == top).double().mean()}
            return indices, metrics
