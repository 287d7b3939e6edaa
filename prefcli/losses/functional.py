"""Small numerically safe building blocks shared by several losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smoothed_logistic(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``-(1 - eps) * log sigmoid(x) - eps * log sigmoid(-x)``: the logistic loss when the label is flipped with
    probability ``eps`` (conservative DPO). Uses ``logsigmoid`` so it stays finite for any finite ``x``."""
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses


def mean_per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Summed log-probs divided by the completion's token count (length normalisation)."""
    return logps / lengths


def negative_log_likelihood(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-example token-averaged NLL ``-log pi(y|x) / |y|`` (the behaviour-cloning term of CPO and RPO)."""
    return -logps / lengths
