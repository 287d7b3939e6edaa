"""EXO: reverse-KL preference optimization."""

from __future__ import annotations

import math

import torch

from prefcli.losses.base import HParam, RewardLoss, beta_param, register_loss
from prefcli.losses.functional import log_sigmoid


@register_loss
class EXOLoss(RewardLoss):
    r"""EXO-pref (Ji et al., 2024, "Towards Efficient Exact Optimization of Language Model Alignment",
    arXiv:2402.00856, eq. 16) for two completions: the KL divergence from the model's pair distribution
    ``q = softmax(beta * [rho_w, rho_l])`` to the smoothed label distribution ``p = [1 - eps, eps]``::

        loss = q_w * (log q_w - log(1 - eps)) + q_l * (log q_l - log eps)
        q_w = sigmoid(beta * h),  q_l = sigmoid(-beta * h),  h = rho_w - rho_l

    ``eps = label_smoothing`` must be in (0, 0.5); the paper (and TRL) use 1e-3, our default.
    """

    name = "exo"
    paper = "Ji et al. 2024, EXO (arXiv:2402.00856)"
    formula = "q_w(log q_w - log(1-eps)) + q_l(log q_l - log eps), q = softmax(β[ρ_w, ρ_l])"
    hparam_specs = (beta_param(),
                    HParam("label_smoothing", 1e-3, "label distribution [1-eps, eps] (must be > 0)",
                           low=0.0, high=0.5, low_open=True, high_open=True))

    def objective(self, chosen_rewards, rejected_rewards):
        logits = chosen_rewards - rejected_rewards
        eps = self.label_smoothing
        return (torch.sigmoid(logits) * (log_sigmoid(logits) - math.log1p(-eps))
                + torch.sigmoid(-logits) * (log_sigmoid(-logits) - math.log(eps)))
