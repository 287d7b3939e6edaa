"""SFT: supervised fine-tuning on the chosen completion (behaviour cloning), as a loss of the same trainer."""

from __future__ import annotations

import torch

from prefcli.losses.base import LogpsBatch, PreferenceLoss, register_loss
from prefcli.losses.functional import mean_per_token, negative_log_likelihood


@register_loss
class SFTLoss(PreferenceLoss):
    r"""Supervised fine-tuning: the length-averaged negative log-likelihood of the chosen completion (Ouyang et
    al., 2022, InstructGPT, arXiv:2203.02155, the SFT stage; the same term CPO and RPO add to their losses)::

        loss = -log pi_theta(y_w|x) / |y_w|

    ``|y_w|`` is the completion's token count (EOS included, clamped to >= 1). Reference-free and uses only the
    chosen completion: records with ``prompt`` + ``chosen`` suffice, and ``rejected`` / ``candidates`` are ignored.
    ``policy_rejected_logps`` is accepted (the shared loss signature) but unused. Rewards: the chosen
    completion's mean per-token log-prob; rejected rewards are zeros.
    """

    name = "sft"
    paper = "Ouyang et al. 2022, InstructGPT SFT stage (arXiv:2203.02155)"
    formula = "-log π(y_w)/|y_w|"
    hparam_specs = ()
    reference_free = True
    uses_lengths = True
    chosen_only = True  # the trainer tokenizes and scores only the chosen completion

    def compute(self, batch: LogpsBatch):
        lengths = batch.lengths("chosen")
        losses = negative_log_likelihood(batch.policy_chosen, lengths)
        chosen_rewards = mean_per_token(batch.policy_chosen, lengths)
        rejected_rewards = torch.zeros_like(batch.policy_rejected)
        return losses, chosen_rewards, rejected_rewards, {"sft/nll": losses.detach().mean()}
