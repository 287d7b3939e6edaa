"""Shared machinery of the multi-negative losses: drawing K negatives from each record's candidates and the
softmax cross-entropy over the chosen completion and the drawn negatives."""

from __future__ import annotations

from typing import Any

import torch

from prefcli.losses.base import HParam, LossOutput, PreferenceLoss, make_output
from prefcli.losses.functional import log_sigmoid
from prefcli.losses.sampling import candidate_mask_for


def negatives_param() -> HParam:
    return HParam("negatives", 1, "K, negatives drawn per record", low=1)


def contrastive_losses(chosen_rewards: torch.Tensor, negative_rewards: torch.Tensor) -> torch.Tensor:
    """``-log softmax([r_w, r_1..r_K])[0] = -log sigmoid(r_w - logsumexp(r_1..r_K))``; for K = 1 this is
    exactly DPO's ``-log sigmoid(r_w - r_1)``."""
    return -log_sigmoid(chosen_rewards - torch.logsumexp(negative_rewards, dim=1))


class CandidateLoss(PreferenceLoss):
    """Base of losses over a record's candidate completions; ``policy_rejected_logps`` is [B, C] (all
    candidates) or, with ``negative_indices``, [B, K] (the drawn negatives). Subclasses implement ``draw``."""

    needs_candidates = True
    # whether ``draw`` uses the candidates' policy log-probs (a trainer can skip that no-grad forward if not)
    draw_needs_policy: bool = True

    def draw(self, policy_candidate_logps: torch.Tensor | None, reference_candidate_logps: torch.Tensor | None,
             generator: torch.Generator | None = None,
             candidate_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def candidates_shape(self, policy_candidate_logps, reference_candidate_logps, candidate_mask):
        """(B, C) and device from whichever of the inputs is given."""
        for tensor in (policy_candidate_logps, reference_candidate_logps, candidate_mask):
            if isinstance(tensor, torch.Tensor):
                if tensor.dim() != 2:
                    raise ValueError(f"loss {self.name!r}: candidate tensors must have shape [B, C], "
                                     f"got {list(tensor.shape)}")
                return (tensor.shape[0], tensor.shape[1]), tensor.device
        raise ValueError(f"loss {self.name!r}: draw needs the candidates' log-probs or a candidate_mask [B, C] "
                         f"(all True when every record has the same number of candidates)")

    def drawable_mask(self, policy_candidate_logps, reference_candidate_logps, candidate_mask) -> torch.Tensor:
        """The checked [B, C] mask of the candidates ``draw`` may pick, shaped after whichever input is given."""
        shape, device = self.candidates_shape(policy_candidate_logps, reference_candidate_logps, candidate_mask)
        return candidate_mask_for(self.name, shape, candidate_mask, self.negatives, device)

    def forward(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                reference_chosen_logps: torch.Tensor | None = None,
                reference_rejected_logps: torch.Tensor | None = None,
                chosen_lengths: torch.Tensor | None = None, rejected_lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None, negative_indices: torch.Tensor | None = None,
                candidate_mask: torch.Tensor | None = None, **extra: Any) -> LossOutput:
        """Library path (``negative_indices`` None): the rejected tensors hold all C candidates ([B, C]; [B] means
        one candidate); K negatives are drawn with ``generator`` and gathered. Fast path: the rejected tensors
        already hold the drawn negatives' log-probs [B, K] (from ``draw``); ``negative_indices`` [B, K] are the
        indices ``draw`` returned. Both give the same value for the same draws."""
        if not isinstance(policy_chosen_logps, torch.Tensor) or policy_chosen_logps.dim() != 1:
            raise ValueError(f"loss {self.name!r}: policy_chosen_logps must be a tensor of shape [B]")
        batch_size = policy_chosen_logps.shape[0]

        def as_matrix(tensor):
            return tensor.unsqueeze(1) if isinstance(tensor, torch.Tensor) and tensor.dim() == 1 else tensor

        policy_rejected_logps = as_matrix(policy_rejected_logps)
        reference_rejected_logps = as_matrix(reference_rejected_logps)
        if not isinstance(policy_rejected_logps, torch.Tensor) or policy_rejected_logps.dim() != 2:
            raise ValueError(f"loss {self.name!r}: policy_rejected_logps must have shape [B, C] (candidates)")
        metrics: dict[str, torch.Tensor] = {}
        if negative_indices is None:
            rejected_shape = (batch_size, policy_rejected_logps.shape[1])
        else:
            rejected_shape = (batch_size, self.negatives)
            if not isinstance(negative_indices, torch.Tensor) or tuple(negative_indices.shape) != rejected_shape:
                got = (list(negative_indices.shape) if isinstance(negative_indices, torch.Tensor)
                       else type(negative_indices).__name__)
                raise ValueError(f"loss {self.name!r}: negative_indices must have shape {list(rejected_shape)} "
                                 f"([B, negatives]), got {got}")
        batch = self.prepare(policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
                             reference_rejected_logps, chosen_lengths, as_matrix(rejected_lengths), extra,
                             rejected_shape=rejected_shape)
        if negative_indices is None:
            indices, metrics = self.draw(batch.policy_rejected.detach(), batch.reference_rejected, generator,
                                         candidate_mask)
            batch.policy_rejected = batch.policy_rejected.gather(1, indices)
            batch.reference_rejected = batch.reference_rejected.gather(1, indices)
        chosen_rewards, negative_rewards = batch.implicit_rewards(self.beta)
        losses = contrastive_losses(chosen_rewards, negative_rewards)
        return make_output(losses, chosen_rewards, negative_rewards, metrics)
