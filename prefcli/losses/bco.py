"""BCO, pair form: binary classification of chosen vs rejected implicit rewards."""

from __future__ import annotations

import torch

from prefcli.losses.base import HParam, LogpsBatch, PreferenceLoss, beta_param, register_loss
from prefcli.losses.functional import log_sigmoid


@register_loss
class BCOPairLoss(PreferenceLoss):
    r"""Binary Classifier Optimization (Jung et al., 2024, arXiv:2404.04656), pair form (TRL's ``bco_pair``).
    With ``r = beta * rho`` and a reward shift ``delta``::

        loss = -log sigmoid(r_w - delta) - log sigmoid(-(r_l - delta))

    ``delta = 0`` by default. With ``running_mean_shift=True``, ``delta`` is the running mean of every reward
    seen so far (chosen and rejected, this batch included, updated before the loss as in TRL) — kept in buffers
    (``state_dict``) so it survives a checkpoint, updated only in training mode, and local to the process (TRL
    averages it across processes).
    """

    name = "bco"
    paper = "Jung et al. 2024, BCO (arXiv:2404.04656), pair form"
    formula = "-logσ(r_w - δ) - logσ(-(r_l - δ)), r = βρ"
    hparam_specs = (beta_param(),
                    HParam("running_mean_shift", False, "shift rewards by their running mean (delta)"))

    def __init__(self, **hparams) -> None:
        super().__init__(**hparams)
        self.register_buffer("reward_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("reward_count", torch.zeros((), dtype=torch.float64))

    def reward_shift(self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
        if not self.running_mean_shift:
            return torch.zeros((), dtype=chosen_rewards.dtype, device=chosen_rewards.device)
        if self.training:
            with torch.no_grad():
                rewards = torch.cat([chosen_rewards, rejected_rewards]).to(self.reward_sum)
                self.reward_sum += rewards.sum()
                self.reward_count += rewards.numel()
        if self.reward_count == 0:
            return torch.zeros((), dtype=chosen_rewards.dtype, device=chosen_rewards.device)
        return (self.reward_sum / self.reward_count).to(chosen_rewards)

    def compute(self, batch: LogpsBatch):
        chosen_rewards, rejected_rewards = batch.implicit_rewards(self.beta)
        delta = self.reward_shift(chosen_rewards.detach(), rejected_rewards.detach())
        losses = -log_sigmoid(chosen_rewards - delta) - log_sigmoid(-(rejected_rewards - delta))
        metrics = {"bco/reward_shift": torch.as_tensor(delta).detach()} if self.running_mean_shift else {}
        return losses, chosen_rewards, rejected_rewards, metrics
