"""SimPO: reference-free, length-normalised rewards with a target margin."""

from __future__ import annotations

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, label_smoothing_param, register_loss
from prefcli.losses.functional import smoothed_logistic


@register_loss
class SimPOLoss(PreferenceLoss):
    r"""Simple Preference Optimization (Meng et al., 2024, arXiv:2405.14734, eq. 6). No reference model; the reward
    is the length-averaged policy log-prob ``r = beta * log pi(y|x) / |y|``::

        loss = -(1 - eps) * log sigmoid(r_w - r_l - gamma) - eps * log sigmoid(-(r_w - r_l - gamma))
               [+ alpha * (-log pi(y_w|x) / |y_w|)]     (CPO-SimPO when alpha > 0)

    ``gamma`` is the target reward margin in the SimPO paper's units (reward scale). TRL writes the same loss as
    ``-log sigmoid(beta * (avg_w - avg_l - gamma / beta))``; the numbers are identical. Defaults: ``beta = 2.0``
    (the SimPO paper's Mistral setting; TRL's generic 0.1 is far below the paper's 2.0-10 range for averaged
    log-probs) and ``gamma = 0.5`` (TRL's ``simpo_gamma`` default; gamma/beta = 0.25 is in the authors' recommended
    grid). ``alpha`` defaults to 0 (pure SimPO). Needs ``chosen_lengths`` and ``rejected_lengths``.
    """

    name = "simpo"
    paper = "Meng et al. 2024, SimPO (arXiv:2405.14734)"
    formula = "-logσ(β·logπ(y_w)/|y_w| - β·logπ(y_l)/|y_l| - γ)"
    hparam_specs = (beta_param(2.0),
                    HParam("gamma", 0.5, "target reward margin (SimPO paper units; TRL simpo_gamma)", low=0.0),
                    label_smoothing_param(),
                    HParam("alpha", 0.0, "weight of the chosen NLL term (CPO-SimPO)", low=0.0))
    reference_free = True
    uses_lengths = True

    def compute(self, batch: LogpsBatch):
        chosen_average, rejected_average = batch.length_averaged(batch.policy_chosen, batch.policy_rejected)
        chosen_rewards, rejected_rewards = self.beta * chosen_average, self.beta * rejected_average
        losses = smoothed_logistic(chosen_rewards - rejected_rewards - self.gamma, self.label_smoothing)
        # CPO-SimPO's NLL is averaged per sequence, as in the formula above
        losses, metrics = batch.plus_chosen_nll(losses, self.alpha, "sequences", "simpo/nll")
        return losses, chosen_rewards, rejected_rewards, metrics
