"""Reference log-probs, whatever their source: one object, one method.

``Reference.logps(indices, picks)`` returns ``log pi_ref(completion | prompt)`` of completions ``picks[i]`` of
example ``indices[i]`` as a float32 ``[len(indices), k]`` tensor. Where the numbers come from is the mode:

- ``cached`` (the default, ``precompute_ref``): the reference is frozen, so its log-probs never change. They are
  scored with no grad before the first step, for the examples the run's steps reach (the batch order is a pure
  function of the step, so they are known in advance; ``ref_rows: all`` scores every example), kept in a table,
  and added to an on-disk :class:`~prefcli.train.reference_cache.ReferenceCache`: a longer rerun or a resumed run
  scores only what no earlier run did. No reference model stays in memory while training.
- ``model``: a separate frozen reference model (``--ref-model`` without precompute) scores each batch.
- ``adapter off``: a LoRA policy with its adapter disabled is the initial policy; it scores each batch.
- ``copy``: a frozen copy of the initial policy scores each batch.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from types import SimpleNamespace

import torch

from prefcli.train.collate import collate
from prefcli.train.reference_cache import ReferenceCache
from prefcli.train.tokenize import Example

#: Examples scored between two cache shards: what a killed run can lose at most.
SHARD_EXAMPLES = 1024


def full_rows(scorer) -> bool:
    """Whether ``scorer`` (maybe wrapped by accelerate) needs full prompt + completion rows."""
    return not getattr(scorer, "module", scorer).uses_shared_prompt()


@dataclass
class Reference:
    """Reference log-probs from a table (``cached``) or from a frozen scorer run on each batch."""

    mode: str
    examples: list[Example]
    pad_id: int
    device: object
    _: KW_ONLY
    table: dict[int, torch.Tensor] | None = None
    scorer: object = None
    context: Callable = contextlib.nullcontext
    autocast: Callable = contextlib.nullcontext

    def logps(self, indices: list[int], picks: list[list[int]]) -> torch.Tensor:
        """Reference log-probs of completions ``picks[i]`` of example ``indices[i]`` ([len, k] float32)."""
        if self.table is not None:
            rows = [self.table[index][chosen] for index, chosen in zip(indices, picks)]
            return torch.stack(rows).to(self.device)
        batch_rows = [(position, self.examples[index].scored()[pick])
                      for position, (index, chosen) in enumerate(zip(indices, picks)) for pick in chosen]
        batch = collate([self.examples[index].prompt for index in indices], batch_rows, self.pad_id,
                        full=full_rows(self.scorer)).to(self.device)
        with torch.no_grad(), self.context(), self.autocast():
            logps = self.scorer(batch).float()
        return logps.view(len(indices), -1)


@dataclass
class CacheReport:
    path: str
    loaded: int = 0        # examples found in the cache
    scored: int = 0        # examples scored by this run
    seconds: float = 0.0

    @property
    def hit(self) -> bool:
        return self.scored == 0


@torch.no_grad()
def score_examples(scorer, examples: list[Example], indices: list[int], examples_per_batch: int, pad_id: int,
                   device, autocast=contextlib.nullcontext, full: bool = False,
                   progress: Callable[[int], None] | None = None) -> dict[int, list[float]]:
    """Log-probs of every completion of ``examples[indices]``, batched by similar length (least padding)."""
    order = sorted(indices, key=lambda i: len(examples[i].prompt) + max(len(c) for c in examples[i].scored()))
    results: dict[int, list[float]] = {}
    for start in range(0, len(order), examples_per_batch):
        chunk = order[start:start + examples_per_batch]
        rows = [(position, completion) for position, index in enumerate(chunk)
                for completion in examples[index].scored()]
        batch = collate([examples[index].prompt for index in chunk], rows, pad_id, full=full).to(device)
        with autocast():
            logps = scorer(batch).float().cpu().tolist()
        cursor = 0
        for index in chunk:
            count = len(examples[index].scored())
            results[index] = logps[cursor:cursor + count]
            cursor += count
        if progress is not None:
            progress(len(chunk))
    return results


@dataclass
class Scoring:
    """How to score missing examples: the scorer (built only when something is missing), batch size, and the
    processes sharing the work (anything with accelerate's ``process_index``, ``num_processes`` and
    ``is_main_process``; one process by default)."""

    make_scorer: Callable[[], object]
    examples_per_batch: int
    pad_id: int
    device: object
    autocast: Callable = contextlib.nullcontext
    processes: object = field(default_factory=lambda: SimpleNamespace(process_index=0, num_processes=1,
                                                                       is_main_process=True))


def fill_table(cache: ReferenceCache, examples: list[Example], needed: list[int], scoring: Scoring,
               progress: Callable[[int, int], None] | None = None) -> tuple[dict[int, torch.Tensor], CacheReport]:
    """The reference log-probs of ``needed`` examples: loaded from ``cache``, the missing ones scored (each process
    a share, all gathered) and added to the cache one shard at a time."""
    started = time.perf_counter()
    table = cache.load(len(examples))
    missing = sorted(set(needed) - table.keys())
    report = CacheReport(str(cache.directory), loaded=len(set(needed)) - len(missing), scored=len(missing))
    if missing:
        scorer = scoring.make_scorer()
        was_training = getattr(scorer, "training", False)
        scorer.eval()
        full = full_rows(scorer)
        share_total = sum(math.ceil(len(missing[s:s + SHARD_EXAMPLES]) / scoring.processes.num_processes)
                          for s in range(0, len(missing), SHARD_EXAMPLES))
        done = [0]

        def advance(count: int) -> None:
            done[0] += count
            if progress is not None and scoring.processes.is_main_process:
                progress(done[0], share_total)

        for start in range(0, len(missing), SHARD_EXAMPLES):
            shard = missing[start:start + SHARD_EXAMPLES]
            mine = shard[scoring.processes.process_index::scoring.processes.num_processes]
            share = math.ceil(len(shard) / scoring.processes.num_processes)
            mine += [shard[0]] * (share - len(mine))  # same batch count everywhere: sharded engines call in lockstep
            scored = score_examples(scorer, examples, mine, scoring.examples_per_batch, scoring.pad_id,
                                    scoring.device, scoring.autocast, full, advance)
            if scoring.processes.num_processes > 1:
                gathered: list = [None] * scoring.processes.num_processes
                torch.distributed.all_gather_object(gathered, scored)
                scored = {index: values for part in gathered for index, values in part.items()}
            if scoring.processes.is_main_process:
                cache.add(scored)
            table.update({index: torch.tensor(values, dtype=torch.float32) for index, values in scored.items()})
        scorer.train(was_training)
    report.seconds = time.perf_counter() - started
    return table, report
