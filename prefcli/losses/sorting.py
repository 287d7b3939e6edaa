"""Sorting operators for AOT: hard sort, SoftSort, and an all-gather that lets gradients flow back to each
process's own entries (for sorting over the whole data-parallel batch)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def hard_sort(values: torch.Tensor) -> torch.Tensor:
    """Ascending sort; the gradient of each sorted value goes to the entry it came from."""
    return torch.sort(values, dim=0).values


def soft_sort(values: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""SoftSort (Prillo & Eisenschlos, 2020, arXiv:2006.16038), ascending.

    ``P[i, j] = softmax_j(-|sort(s)_i - s_j| / temperature)``; the result is ``P @ s``. Every output is a
    convex combination of the inputs, so it is invariant to permuting ``s``, and it tends to ``sort(s)`` as the
    temperature goes to 0 (ties average entries of equal value, so the limit is exact). O(n^2) memory.
    """
    anchors = torch.sort(values, dim=0).values
    distances = (anchors.unsqueeze(1) - values.unsqueeze(0)).abs()
    weights = F.softmax(distances * (-1.0 / temperature), dim=1)
    return weights @ values


def sort_values(values: torch.Tensor, method: str, temperature: float) -> torch.Tensor:
    return hard_sort(values) if method == "hard" else soft_sort(values, temperature)


def distributed_world() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) when torch.distributed is not in use."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """All-gather of 1-D tensors of possibly different lengths. Backward sums the incoming gradient over all
    processes and returns this process's slice, i.e. d(sum over processes of their losses)/d(own entries)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        longest = max(sizes)
        padded = F.pad(local, (0, longest - local.shape[0])).contiguous()
        buffers = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(buffers, padded)
        ctx.offset, ctx.size = sum(sizes[:rank]), local.shape[0]
        return torch.cat([buffer[:size] for buffer, size in zip(buffers, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.offset:ctx.offset + ctx.size], None, None


def gather_global(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], slice]:
    """All-gather 1-D tensors (same local length each) across processes, keeping autograd. Returns the gathered
    tensors (rank order) and the slice of positions that belongs to this process. Without an initialised
    process group this is the identity."""
    rank, world = distributed_world()
    local_size = tensors[0].shape[0]
    if world == 1:
        return list(tensors), slice(0, local_size)
    size = torch.tensor([local_size], dtype=torch.long, device=tensors[0].device)
    sizes_buffers = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes_buffers, size)
    sizes = [int(s.item()) for s in sizes_buffers]
    gathered = [_GatherWithGrad.apply(tensor, sizes, rank) for tensor in tensors]
    offset = sum(sizes[:rank])
    return gathered, slice(offset, offset + local_size)
