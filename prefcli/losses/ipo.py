"""IPO and length-normalised DPO: losses on per-token (length-averaged) log-ratios."""

from __future__ import annotations

import torch

from prefcli.losses.base import LogpsBatch, PreferenceLoss, beta_param, register_loss
from prefcli.losses.functional import smoothed_logistic


class PerTokenMarginLoss(PreferenceLoss):
    """Base of the losses of the per-token log-ratio margin ``h_bar = rho_w / |y_w| - rho_l / |y_l|`` alone;
    subclasses implement :meth:`objective`. Rewards are the usual ``beta * rho`` (summed, not averaged)."""

    hparam_specs = (beta_param(),)
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        return self.objective(batch.length_averaged_margin()), *batch.implicit_rewards(self.beta), {}

    def objective(self, margin: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_loss
class IPOLoss(PerTokenMarginLoss):
    r"""Identity Preference Optimization (Azar et al., 2023, arXiv:2310.12036, eq. 17), length-averaged as TRL
    does (confirmed with the IPO authors)::

        h_bar = rho_w / |y_w| - rho_l / |y_l|
        loss  = (h_bar - 1 / (2 * beta))^2

    ``beta`` is the paper's regulariser tau. Rewards are the usual ``beta * rho`` (summed, not averaged).
    Needs ``chosen_lengths`` and ``rejected_lengths``.
    """

    name = "ipo"
    paper = "Azar et al. 2023, IPO (arXiv:2310.12036)"
    formula = "(ρ_w/|y_w| - ρ_l/|y_l| - 1/(2β))²"

    def objective(self, margin):
        return (margin - 1 / (2 * self.beta)) ** 2


@register_loss
class SigmoidNormLoss(PerTokenMarginLoss):
    r"""Length-normalised DPO (TRL's ``sigmoid_norm``; the "DPO-norm" of Tulu 3, Lambert et al. 2024,
    arXiv:2411.15124)::

        loss = -log sigmoid(beta * (rho_w / |y_w| - rho_l / |y_l|))

    Needs ``chosen_lengths`` and ``rejected_lengths``. Rewards: ``beta * rho`` (summed).
    """

    name = "sigmoid-norm"
    paper = "Lambert et al. 2024, Tulu 3 length-normalised DPO (arXiv:2411.15124)"
    formula = "-logσ(β(ρ_w/|y_w| - ρ_l/|y_l|))"

    def objective(self, margin):
        return smoothed_logistic(self.beta * margin)
