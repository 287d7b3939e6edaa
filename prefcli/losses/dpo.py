"""DPO with conservative label smoothing (cDPO), and RPO (DPO plus a chosen-NLL term)."""

from __future__ import annotations

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, label_smoothing_param, register_loss
from prefcli.losses.functional import negative_log_likelihood, smoothed_logistic


@register_loss
class DPOLoss(PreferenceLoss):
    r"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290) with cDPO label smoothing
    (Mitchell, 2023).

    With log-ratios ``rho = log pi_theta(y|x) - log pi_ref(y|x)`` and ``h = rho_w - rho_l``::

        loss = -(1 - eps) * log sigmoid(beta * h) - eps * log sigmoid(-beta * h)

    ``eps = label_smoothing`` (0 gives plain DPO). Rewards: ``beta * rho``.
    """

    name = "dpo"
    paper = "Rafailov et al. 2023, DPO (arXiv:2305.18290); cDPO label smoothing (Mitchell 2023)"
    formula = "-(1-eps)·logσ(βh) - eps·logσ(-βh), h = ρ_w - ρ_l"
    hparam_specs = (beta_param(), label_smoothing_param())

    def compute(self, batch: LogpsBatch):
        chosen_rewards = self.beta * batch.chosen_logratios
        rejected_rewards = self.beta * batch.rejected_logratios
        losses = smoothed_logistic(chosen_rewards - rejected_rewards, self.label_smoothing)
        return losses, chosen_rewards, rejected_rewards, {}


@register_loss
class RPOLoss(DPOLoss):
    r"""Reasoning / regularised preference optimization (Pang et al., 2024, "Iterative Reasoning Preference
    Optimization", arXiv:2404.19733): DPO plus a token-averaged negative log-likelihood of the chosen completion::

        loss = DPO(h) + alpha * (-log pi_theta(y_w|x) / |y_w|)

    TRL's ``rpo_alpha`` term; the paper uses ``alpha = 1``. The NLL is averaged per sequence (TRL averages over
    all chosen tokens of the batch; the two agree when completions have equal lengths). Needs ``chosen_lengths``.
    """

    name = "rpo"
    paper = "Pang et al. 2024, Iterative Reasoning PO (arXiv:2404.19733)"
    formula = "DPO + α·(-log π(y_w)/|y_w|)"
    hparam_specs = (beta_param(), label_smoothing_param(),
                    HParam("alpha", 1.0, "weight of the chosen completion's NLL term", low=0.0))
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        losses, chosen_rewards, rejected_rewards, metrics = super().compute(batch)
        if self.alpha:
            nll = negative_log_likelihood(batch.policy_chosen, batch.lengths("chosen"))
            losses = losses + self.alpha * nll
            metrics = {**metrics, "rpo/nll": float(nll.detach().mean())}
        return losses, chosen_rewards, rejected_rewards, metrics
