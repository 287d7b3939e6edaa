"""Robust DPO: an unbiased loss under a known rate of flipped preference labels."""

from __future__ import annotations

from prefcli.losses.base import RewardLoss, beta_param, label_smoothing_param, register_loss
from prefcli.losses.functional import log_sigmoid


@register_loss
class RobustDPOLoss(RewardLoss):
    r"""Robust DPO (Chowdhury et al., 2024, "Provably Robust DPO", arXiv:2403.00409).

    With ``h = rho_w - rho_l`` and flip rate ``eps = label_smoothing`` in [0, 0.5)::

        loss = (-(1 - eps) * log sigmoid(beta * h) + eps * log sigmoid(-beta * h)) / (1 - 2 * eps)

    (TRL's ``robust``; equals DPO at ``eps = 0``.)
    """

    name = "robust"
    paper = "Chowdhury et al. 2024, Provably Robust DPO (arXiv:2403.00409)"
    formula = "(-(1-eps)·logσ(βh) + eps·logσ(-βh)) / (1-2eps)"
    hparam_specs = (beta_param(), label_smoothing_param())

    def objective(self, chosen_rewards, rejected_rewards):
        logits = chosen_rewards - rejected_rewards
        eps = self.label_smoothing
        return (-(1 - eps) * log_sigmoid(logits) + eps * log_sigmoid(-logits)) / (1 - 2 * eps)
