"""CPO: reference-free DPO-style loss plus behaviour cloning of the chosen completion."""

from __future__ import annotations

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, label_smoothing_param, register_loss
from prefcli.losses.functional import negative_log_likelihood, smoothed_logistic


@register_loss
class CPOLoss(PreferenceLoss):
    r"""Contrastive Preference Optimization (Xu et al., 2024, arXiv:2401.08417, eq. 3 + NLL), as TRL's CPOTrainer
    with ``loss_type="sigmoid"``. No reference model; rewards are ``beta * log pi(y|x)`` (summed log-probs)::

        loss = -(1 - eps) * log sigmoid(beta * (log pi(y_w) - log pi(y_l)))
               - eps * log sigmoid(-beta * (log pi(y_w) - log pi(y_l)))
               + alpha * (-log pi(y_w|x) / |y_w|)

    Defaults as TRL: ``beta = 0.1``, ``alpha = 1.0`` (``cpo_alpha``). The NLL is token-averaged per sequence;
    it needs ``chosen_lengths`` when ``alpha > 0``.
    """

    name = "cpo"
    paper = "Xu et al. 2024, CPO (arXiv:2401.08417)"
    formula = "-logσ(β(logπ(y_w) - logπ(y_l))) + α·(-logπ(y_w)/|y_w|)"
    hparam_specs = (beta_param(), label_smoothing_param(),
                    HParam("alpha", 1.0, "weight of the chosen NLL (behaviour cloning) term", low=0.0))
    reference_free = True
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        chosen_rewards = self.beta * batch.policy_chosen
        rejected_rewards = self.beta * batch.policy_rejected
        losses = smoothed_logistic(chosen_rewards - rejected_rewards, self.label_smoothing)
        metrics = {}
        if self.alpha:
            nll = negative_log_likelihood(batch.policy_chosen, batch.lengths("chosen"))
            losses = losses + self.alpha * nll
            metrics["cpo/nll"] = float(nll.detach().mean())
        return losses, chosen_rewards, rejected_rewards, metrics
