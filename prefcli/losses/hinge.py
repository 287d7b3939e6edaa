"""SLiC-style hinge loss on the DPO margin."""

from __future__ import annotations

import torch

from prefcli.losses.base import RewardLoss, beta_param, register_loss


@register_loss
class HingeLoss(RewardLoss):
    r"""Hinge loss of SLiC-HF (Zhao et al., 2023, arXiv:2305.10425) on the reference-normalised margin, as in TRL's
    ``hinge``::

        loss = max(0, 1 - beta * (rho_w - rho_l))

    ``1/beta`` is the margin in log-ratio units.
    """

    name = "hinge"
    paper = "Zhao et al. 2023, SLiC-HF (arXiv:2305.10425)"
    formula = "max(0, 1 - βh)"
    hparam_specs = (beta_param(),)

    def objective(self, chosen_rewards, rejected_rewards):
        return torch.relu(1 - (chosen_rewards - rejected_rewards))
