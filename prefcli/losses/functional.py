"""Small numerically safe building blocks shared by several losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``log sigmoid(x) = -softplus(-x)``, finite for any finite ``x`` with the exact gradient ``sigmoid(-x)``.

    Same values as ``F.logsigmoid`` (softplus is linear beyond |x| = 20, an error below 3e-9), but torch's CPU
    ``log_sigmoid`` kernel runs small batches through its thread pool and costs milliseconds per call on a busy
    machine (measured 8 ms median for 256 values on 2 shared cores, against 40 us for softplus)."""
    return -F.softplus(-x)


def smoothed_logistic(logits: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """``-(1 - eps) * log sigmoid(x) - eps * log sigmoid(-x)``: the logistic loss when the label is flipped with
    probability ``eps`` (conservative DPO). Finite for any finite ``x``."""
    losses = -log_sigmoid(logits)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * log_sigmoid(-logits)
    return losses


def mean_per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Summed log-probs divided by the completion's token count (length normalisation)."""
    return logps / lengths


def negative_log_likelihood(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per-example token-averaged NLL ``-log pi(y|x) / |y|`` (the behaviour-cloning term of CPO and RPO)."""
    return -logps / lengths


#: How the chosen completions' NLL is averaged: over every chosen token of the batch (TRL's CPOTrainer and the
#: DPOTrainer ``sft`` term), or per sequence and then over the batch.
NLL_AVERAGES = ("tokens", "sequences")


def chosen_nll(logps: torch.Tensor, lengths: torch.Tensor, average: str) -> torch.Tensor:
    """The behaviour-cloning NLL as a per-example [B] tensor whose mean is the batch's NLL term:

    - ``tokens`` (TRL): ``-sum_i log pi(y_i|x_i) / sum_i |y_i|``, the same value for every example;
    - ``sequences``: ``-log pi(y_i|x_i) / |y_i|`` per example (long and short completions weigh the same).
    """
    if average == "tokens":
        return (-logps.sum() / lengths.sum()).expand(logps.shape[0])
    return negative_log_likelihood(logps, lengths)
