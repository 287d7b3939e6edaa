"""Anchored Preference Optimization: APO-zero and APO-down."""

from __future__ import annotations

import torch

from prefcli.losses.base import RewardLoss, beta_param, register_loss


@register_loss
class APOZeroLoss(RewardLoss):
    r"""APO-zero (D'Oosterlinck et al., 2024, "Anchored Preference Optimization", arXiv:2408.06266, eq. 7).
    Use when the chosen outputs are better than the model's own: raise the chosen, lower the rejected
    likelihood. With ``r = beta * rho``::

        loss = (1 - sigmoid(r_w)) + sigmoid(r_l)
    """

    name = "apo-zero"
    paper = "D'Oosterlinck et al. 2024, APO (arXiv:2408.06266), eq. 7"
    formula = "1 - σ(r_w) + σ(r_l), r = βρ"
    hparam_specs = (beta_param(),)

    def objective(self, chosen_rewards, rejected_rewards):
        return (1 - torch.sigmoid(chosen_rewards)) + torch.sigmoid(rejected_rewards)


@register_loss
class APODownLoss(RewardLoss):
    r"""APO-down (D'Oosterlinck et al., 2024, arXiv:2408.06266, eq. 8). Use when the chosen outputs are worse
    than the model's own: lower both likelihoods, the rejected one more::

        loss = sigmoid(r_w) + (1 - sigmoid(r_w - r_l))
    """

    name = "apo-down"
    paper = "D'Oosterlinck et al. 2024, APO (arXiv:2408.06266), eq. 8"
    formula = "σ(r_w) + 1 - σ(r_w - r_l), r = βρ"
    hparam_specs = (beta_param(),)

    def objective(self, chosen_rewards, rejected_rewards):
        return torch.sigmoid(chosen_rewards) + (1 - torch.sigmoid(chosen_rewards - rejected_rewards))
