"""DPO with conservative label smoothing (cDPO), and RPO (DPO plus a chosen-NLL term)."""

from __future__ import annotations

from prefcli.losses.base import (
    LogpsBatch,
    RewardLoss,
    beta_param,
    chosen_nll_params,
    label_smoothing_param,
    register_loss,
)
from prefcli.losses.functional import smoothed_logistic


@register_loss
class DPOLoss(RewardLoss):
    r"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) with cDPO label smoothing
    (Mitchell, 2023).

    With log-ratios ``rho = log pi_theta(y|x) - log pi_ref(y|x)`` and ``h = rho_w - rho_l``::

        loss = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)

    ``eps = label_smoothing`` (0 gives plain DPO). Rewards: ``beta * rho``.

    Note: TRL 1.16's ``DPOTrainer`` with ``loss_type="sigmoid"`` ignores ``label_smoothing`` (only its
    ``robust``/``exo_pair``/``hinge``-family losses read it); prefcli implements the cDPO formula above, so with
    ``label_smoothing > 0`` prefcli's ``dpo`` and TRL's ``sigmoid`` differ on purpose.
    """

    name = "dpo"
    paper = "Rafailov et al. 2023, DPO (arXiv:2305.18290); cDPO label smoothing (Mitchell 2023)"
    formula = "-(1-eps)·logσ(βh) - eps·logσ(-βh), h = ρ_w - ρ_l"
    hparam_specs = (beta_param(), label_smoothing_param())

    def objective(self, chosen_rewards, rejected_rewards):
        return smoothed_logistic(chosen_rewards - rejected_rewards, self.label_smoothing)


@register_loss
class RPOLoss(DPOLoss):
    r"""Reasoning / regularised preference optimization (Pang et al., 2024, "Iterative Reasoning Preference
    Optimization", arXiv:2404.19733): DPO plus a token-averaged negative log-likelihood of the chosen completion::

        loss = mean_i DPO(h_i) + alpha * NLL

    TRL's ``rpo_alpha`` / ``loss_type=["sigmoid", "sft"]`` term; the paper uses ``alpha = 1``. ``NLL`` with
    ``nll_average="tokens"`` (default, as TRL): ``-sum_i log pi(y_w,i|x_i) / sum_i |y_w,i|`` over the batch's chosen
    tokens; with ``"sequences"``: ``mean_i(-log pi(y_w,i|x_i) / |y_w,i|)``. Needs ``chosen_lengths``.
    """

    name = "rpo"
    paper = "Pang et al. 2024, Iterative Reasoning PO (arXiv:2404.19733)"
    formula = "DPO + α·(-log π(y_w)/|y_w|)"
    hparam_specs = (beta_param(), label_smoothing_param(), *chosen_nll_params())
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        losses, chosen_rewards, rejected_rewards, metrics = super().compute(batch)
        losses, nll_metrics = batch.plus_chosen_nll(losses, self.alpha, self.nll_average, "rpo/nll")
        return losses, chosen_rewards, rejected_rewards, {**metrics, **nll_metrics}
