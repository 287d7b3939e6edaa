"""Drawing negatives from a record's candidate completions (RNCE, InfoNCA, MC-PO).

All draws run under ``torch.no_grad()`` on the generator's device (so a CPU generator gives the same draws on
CPU and CUDA), then the indices move to the candidates' device. ``candidate_mask`` [B, C] marks real candidates
when records have different counts; masked candidates are never drawn.
"""

from __future__ import annotations

import torch


def candidate_mask_for(loss_name: str, shape: tuple[int, int], mask: torch.Tensor | None, negatives: int,
                       device: torch.device) -> torch.Tensor:
    """A bool [B, C] mask of real candidates, checked to hold at least ``negatives`` per record."""
    if mask is None:
        mask = torch.ones(shape, dtype=torch.bool, device=device)
    else:
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(shape):
            got = list(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"loss {loss_name!r}: candidate_mask must be a bool tensor of shape {list(shape)}, "
                             f"got {got}")
        mask = mask.to(device=device, dtype=torch.bool)
    counts = mask.sum(dim=1)
    if shape[1] < negatives or bool((counts < negatives).any()):
        fewest = int(counts.min()) if counts.numel() else 0
        raise ValueError(f"loss {loss_name!r}: negatives={negatives} but a record has only {fewest} candidate(s); "
                         f"negatives must be <= the number of candidates of every record")
    return mask


def _sampling_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def categorical_draws(weights: torch.Tensor, negatives: int, generator: torch.Generator | None,
                      replacement: bool = True) -> torch.Tensor:
    """``negatives`` draws per row from the (unnormalised, non-negative) row weights: [B, negatives]."""
    device = _sampling_device(generator, weights.device)
    indices = torch.multinomial(weights.to(device=device, dtype=torch.float64), negatives,
                                replacement=replacement, generator=generator)
    return indices.to(weights.device)


def uniform_draws(mask: torch.Tensor, negatives: int, generator: torch.Generator | None,
                  replacement: bool) -> torch.Tensor:
    """Uniform draws among each row's real candidates: [B, negatives]."""
    return categorical_draws(mask.to(torch.float64), negatives, generator, replacement=replacement)


def extreme_draws(weights: torch.Tensor, mask: torch.Tensor, negatives: int, largest: bool) -> torch.Tensor:
    """The ``negatives`` highest- (or lowest-) weight real candidates of each row: [B, negatives]."""
    fill = float("-inf") if largest else float("inf")
    return torch.topk(weights.masked_fill(~mask, fill), negatives, dim=1, largest=largest).indices


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row softmax over real candidates; masked candidates get weight exactly 0."""
    return torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=1)


def weight_entropy(weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row's weights: [B]."""
    logs = torch.where(mask & (weights > 0), weights.clamp_min(1e-300).log(), torch.zeros_like(weights))
    return -(weights * logs).sum(dim=1)
