"""Which examples each process trains on at each micro-step: a pure function of (seed, micro-step).

The order of the *global* micro-batch (``batch_size × processes`` examples) does not depend on the number of
processes: process ``r`` takes slice ``r`` of it. So one process with batch 4 and two processes with batch 2 see
the same examples at the same step, and a resumed run needs only the step number to continue exactly where it
stopped. Every epoch is a fresh seeded shuffle; the last incomplete global batch of an epoch is dropped.

Unpaired losses get ``batch_size`` desirable and ``batch_size`` undesirable examples per process; an epoch is
as long as the larger group, and the smaller group is cycled (reshuffled on every pass).
"""

from __future__ import annotations

import random

from prefcli.errors import ConfigError


def _shuffled(indices: list[int], seed: int, *salt) -> list[int]:
    order = list(indices)
    random.Random(":".join(str(part) for part in (seed, *salt))).shuffle(order)
    return order


class BatchPlan:
    """Deterministic micro-batches of example indices for one process."""

    def __init__(self, labels: list[bool | None], batch_size: int, num_processes: int, process_index: int,
                 seed: int, unpaired: bool):
        self.batch_size = batch_size
        self.num_processes = num_processes
        self.process_index = process_index
        self.seed = seed
        self.unpaired = unpaired
        self.global_batch = batch_size * num_processes
        self.num_examples = len(labels)
        if unpaired:
            self.desirable = [i for i, label in enumerate(labels) if label]
            self.undesirable = [i for i, label in enumerate(labels) if not label]
            available = max(len(self.desirable), len(self.undesirable))
        else:
            self.indices = list(range(len(labels)))
            available = len(self.indices)
        self.micro_batches_per_epoch = available // self.global_batch
        if self.micro_batches_per_epoch == 0:
            what = "desirable or undesirable examples" if unpaired else "examples"
            raise ConfigError(f"--batch-size: the data has {available} {what}, fewer than one global batch of "
                              f"{self.global_batch} ({batch_size} per process × {num_processes} processes)")
        self._epoch_cache: tuple[int, object] | None = None

    def _epoch_order(self, epoch: int):
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            needed = self.micro_batches_per_epoch * self.global_batch
            if self.unpaired:
                order = (self._stream(self.desirable, needed, epoch, "desirable"),
                         self._stream(self.undesirable, needed, epoch, "undesirable"))
            else:
                order = _shuffled(self.indices, self.seed, epoch)
            self._epoch_cache = (epoch, order)
        return self._epoch_cache[1]

    def _stream(self, indices: list[int], needed: int, epoch: int, group: str) -> list[int]:
        stream: list[int] = []
        cycle = 0
        while len(stream) < needed:
            stream += _shuffled(indices, self.seed, epoch, group, cycle)
            cycle += 1
        return stream[:needed]

    def _windows(self, first_micro_step: int, end_micro_step: int):
        """The slices of example indices all processes train on in micro-steps ``[first, end)`` (unpaired: the
        desirable slice, then the undesirable one, per micro-step)."""
        for micro_step in range(first_micro_step, end_micro_step):
            epoch, within = divmod(micro_step, self.micro_batches_per_epoch)
            order = self._epoch_order(epoch)
            window = slice(within * self.global_batch, (within + 1) * self.global_batch)
            yield from (part[window] for part in (order if self.unpaired else (order,)))

    def global_indices(self, micro_steps: int) -> list[int]:
        """Every example index that any process trains on in micro-steps ``[0, micro_steps)``, in first-use
        order (what a run of that length needs tokenized)."""
        seen: dict[int, None] = {}
        for part in self._windows(0, micro_steps):
            seen.update(dict.fromkeys(part))
            if len(seen) == self.num_examples:
                break
        return list(seen)

    def local_batch(self, micro_step: int):
        """Example indices of this process at ``micro_step`` (unpaired: a (desirable, undesirable) tuple)."""
        epoch, within = divmod(micro_step, self.micro_batches_per_epoch)
        order = self._epoch_order(epoch)
        start = within * self.global_batch + self.process_index * self.batch_size
        stop = start + self.batch_size
        if self.unpaired:
            return order[0][start:stop], order[1][start:stop]
        return order[start:stop]

    def examples_reached(self, first_micro_step: int, end_micro_step: int) -> list[int]:
        """Every example index any process trains on in micro-steps ``[first, end)``, sorted."""
        if end_micro_step - first_micro_step >= self.micro_batches_per_epoch:
            everything = self.desirable + self.undesirable if self.unpaired else self.indices
            return sorted(everything)  # a whole epoch covers every example (the smaller unpaired group cycles)
        return sorted(set().union(*self._windows(first_micro_step, end_micro_step)))
