"""DiscoPOP: the log-ratio modulated loss discovered by LLM-driven search."""

from __future__ import annotations

import torch

from prefcli.losses.base import HParam, RewardLoss, beta_param, register_loss
from prefcli.losses.functional import log_sigmoid


@register_loss
class DiscoPOPLoss(RewardLoss):
    r"""DiscoPOP / log-ratio modulated loss (Chris Lu et al., 2024, "Discovering Preference Optimization
    Algorithms with and for Large Language Models", arXiv:2406.08414, eq. 5). With ``x = beta * h``::

        m    = sigmoid(x / tau)
        loss = (1 - m) * (-log sigmoid(x)) + m * exp(-x)

    ``tau`` defaults to 0.05 (paper, TRL). The exponential term is evaluated as ``exp(log sigmoid(x/tau) - x)``,
    which equals ``m * exp(-x)`` but stays finite for very negative ``x``; ``tau`` is limited to (0, 1] because
    for ``tau > 1`` that term itself grows without bound as ``x`` falls.
    """

    name = "discopop"
    paper = "Lu et al. 2024, DiscoPOP (arXiv:2406.08414)"
    formula = "(1-σ(x/τ))·(-logσ(x)) + σ(x/τ)·exp(-x), x = βh"
    hparam_specs = (beta_param(),
                    HParam("tau", 0.05, "temperature of the logistic/exponential mixing", low=0.0, high=1.0,
                           low_open=True))

    def objective(self, chosen_rewards, rejected_rewards):
        logits = chosen_rewards - rejected_rewards
        mix = torch.sigmoid(logits / self.tau)
        exponential = torch.exp(log_sigmoid(logits / self.tau) - logits)
        return (1 - mix) * -log_sigmoid(logits) + exponential
