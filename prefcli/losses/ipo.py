"""IPO and length-normalised DPO: losses on per-token (length-averaged) log-ratios."""

from __future__ import annotations

from prefcli.losses.base import LogpsBatch, PreferenceLoss, beta_param, register_loss
from prefcli.losses.functional import mean_per_token, smoothed_logistic


@register_loss
class IPOLoss(PreferenceLoss):
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
    hparam_specs = (beta_param(),)
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        margin = (mean_per_token(batch.chosen_logratios, batch.lengths("chosen"))
                  - mean_per_token(batch.rejected_logratios, batch.lengths("rejected")))
        losses = (margin - 1 / (2 * self.beta)) ** 2
        return losses, self.beta * batch.chosen_logratios, self.beta * batch.rejected_logratios, {}


@register_loss
class SigmoidNormLoss(PreferenceLoss):
    r"""Length-normalised DPO (TRL's ``sigmoid_norm``; the "DPO-norm" of Tulu 3, Lambert et al. 2024,
    arXiv:2411.15124)::

        loss = -log sigmoid(beta * (rho_w / |y_w| - rho_l / |y_l|))

    Needs ``chosen_lengths`` and ``rejected_lengths``. Rewards: ``beta * rho`` (summed).
    """

    name = "sigmoid-norm"
    paper = "Lambert et al. 2024, Tulu 3 length-normalised DPO (arXiv:2411.15124)"
    formula = "-logσ(β(ρ_w/|y_w| - ρ_l/|y_l|))"
    hparam_specs = (beta_param(),)
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        margin = (mean_per_token(batch.chosen_logratios, batch.lengths("chosen"))
                  - mean_per_token(batch.rejected_logratios, batch.lengths("rejected")))
        losses = smoothed_logistic(self.beta * margin)
        return losses, self.beta * batch.chosen_logratios, self.beta * batch.rejected_logratios, {}
