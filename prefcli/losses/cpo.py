"""CPO: reference-free DPO-style loss plus behaviour cloning of the chosen completion."""

from __future__ import annotations

from prefcli.losses.base import (
    LogpsBatch,
    PreferenceLoss,
    beta_param,
    chosen_nll_params,
    label_smoothing_param,
    register_loss,
)
from prefcli.losses.functional import smoothed_logistic


@register_loss
class CPOLoss(PreferenceLoss):
    r"""Contrastive Preference Optimization (Xu et al., 2024, arXiv:2401.08417, eq. 3 + NLL), as TRL's CPOTrainer
    with ``loss_type="sigmoid"``. No reference model; rewards are ``beta * log pi(y|x)`` (summed log-probs)::

        loss = mean_i [ -(1 - eps) * log sigmoid(beta * (log pi(y_w,i) - log pi(y_l,i)))
                        - eps * log sigmoid(-beta * (log pi(y_w,i) - log pi(y_l,i))) ]
               + alpha * NLL

    ``NLL`` with ``nll_average="tokens"`` (default, TRL's cross-entropy over the batch's chosen tokens):
    ``-sum_i log pi(y_w,i|x_i) / sum_i |y_w,i|``; with ``"sequences"``: ``mean_i(-log pi(y_w,i|x_i) / |y_w,i|)``
    (the paper's per-sequence average; the two agree when chosen completions have equal lengths).
    Defaults as TRL: ``beta = 0.1``, ``alpha = 1.0`` (``cpo_alpha``). Needs ``chosen_lengths`` when ``alpha > 0``.
    """

    name = "cpo"
    paper = "Xu et al. 2024, CPO (arXiv:2401.08417)"
    formula = "-logσ(β(logπ(y_w) - logπ(y_l))) + α·(-logπ(y_w)/|y_w|)"
    hparam_specs = (beta_param(), label_smoothing_param(), *chosen_nll_params())
    reference_free = True
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        chosen_rewards = self.beta * batch.policy_chosen
        rejected_rewards = self.beta * batch.policy_rejected
        losses = smoothed_logistic(chosen_rewards - rejected_rewards, self.label_smoothing)
        losses, metrics = batch.plus_chosen_nll(losses, self.alpha, self.nll_average, "cpo/nll")
        return losses, chosen_rewards, rejected_rewards, metrics
