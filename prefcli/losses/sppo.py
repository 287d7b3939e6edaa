"""SPPO with hard (0/1) win probabilities."""

from __future__ import annotations

from prefcli.losses.base import LogpsBatch, PreferenceLoss, beta_param, register_loss


@register_loss
class SPPOHardLoss(PreferenceLoss):
    r"""Self-Play Preference Optimization (Wu et al., 2024, arXiv:2405.00675, eq. 4.7) with the win probability
    set to 1 for the chosen and 0 for the rejected completion (TRL's ``sppo_hard``)::

        loss = (rho_w - 1 / (2 * beta))^2 + (rho_l + 1 / (2 * beta))^2
    """

    name = "sppo"
    paper = "Wu et al. 2024, SPPO (arXiv:2405.00675), hard probabilities"
    formula = "(ρ_w - 1/(2β))² + (ρ_l + 1/(2β))²"
    hparam_specs = (beta_param(),)

    def compute(self, batch: LogpsBatch):
        half_margin = 0.5 / self.beta
        losses = (batch.chosen_logratios - half_margin) ** 2 + (batch.rejected_logratios + half_margin) ** 2
        return losses, *batch.implicit_rewards(self.beta), {}
