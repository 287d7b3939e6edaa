"""Reference log-probs, computed once before training and cached on disk.

When the reference model is frozen (it always is here) its log-probs of every completion never change, so they
are computed in one no-grad pass before the first step and no reference model stays in memory while training.
The cache file is keyed by the reference model's fingerprint, the data file's checksum, the tokenization limits
and the compute dtype: a later run with the same inputs (another loss, learning rate or seed) reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from prefcli.data.atomic import atomic_path
from prefcli.data.sidecar import file_checksum
from prefcli.train.collate import collate
from prefcli.train.tokenize import Example

CACHE_VERSION = 2  # 2: completions end with the chat template's end of turn


def model_fingerprint(name_or_path: str) -> str:
    """A cheap identity of a model: its files' names, sizes and mtimes plus config.json (local), or its hub
    snapshot (commit) when it was downloaded, or else its id."""
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        with contextlib.suppress(Exception):
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(name_or_path, local_files_only=True))
    if not path.is_dir():
        return f"hub:{name_or_path}"
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    config = path / "config.json"
    if config.is_file():
        digest.update(config.read_bytes())
    return f"sha256:{digest.hexdigest()}"


def cache_key(reference: str, data_path: str | Path, layout: str, max_length: int, max_prompt_length: int,
              dtype: str) -> str:
    fields = {"version": CACHE_VERSION, "model": model_fingerprint(reference), "data": file_checksum(data_path),
              "layout": layout, "max_length": max_length, "max_prompt_length": max_prompt_length, "dtype": dtype}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class ReferenceLogps:
    """Per example, the reference log-prob of each of its completions (ragged, stored flat)."""

    offsets: torch.Tensor  # [E + 1]
    values: torch.Tensor   # [total completions] float32

    def of(self, example: int) -> torch.Tensor:
        return self.values[self.offsets[example]:self.offsets[example + 1]]

    @classmethod
    def from_lists(cls, per_example: list[list[float]]) -> ReferenceLogps:
        counts = torch.tensor([0] + [len(values) for values in per_example], dtype=torch.long)
        flat = [value for values in per_example for value in values]
        return cls(torch.cumsum(counts, 0), torch.tensor(flat, dtype=torch.float32))


def load_cache(path: Path, key: str, num_examples: int) -> ReferenceLogps | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
        return None  # a damaged cache is recomputed, not trusted
    if not isinstance(state, dict) or state.get("key") != key or len(state["offsets"]) != num_examples + 1:
        return None
    return ReferenceLogps(state["offsets"], state["values"])


def save_cache(path: Path, key: str, reference: ReferenceLogps) -> None:
    with atomic_path(path) as tmp:
        torch.save({"key": key, "offsets": reference.offsets, "values": reference.values}, tmp)


@torch.no_grad()
def score_examples(scorer, examples: list[Example], indices: list[int], examples_per_batch: int, pad_id: int,
                   device, autocast=contextlib.nullcontext, full_rows: bool = False,
                   progress=None) -> dict[int, list[float]]:
    """Log-probs of every completion of ``examples[indices]``, batched by similar length (least padding)."""
    order = sorted(indices, key=lambda i: len(examples[i].prompt) + max(len(c) for c in examples[i].scored()))
    results: dict[int, list[float]] = {}
    for start in range(0, len(order), examples_per_batch):
        chunk = order[start:start + examples_per_batch]
        rows = [(position, completion) for position, index in enumerate(chunk)
                for completion in examples[index].scored()]
        batch = collate([examples[index].prompt for index in chunk], rows, pad_id, full=full_rows).to(device)
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


def precompute(scorer, examples: list[Example], examples_per_batch: int, pad_id: int, device, *,
               process_index: int = 0, num_processes: int = 1, autocast=contextlib.nullcontext,
               full_rows: bool = False, progress=None) -> ReferenceLogps:
    """Reference log-probs of every example; with several processes each scores a share and all gather."""
    mine = list(range(process_index, len(examples), num_processes))
    share = -(-len(examples) // num_processes)
    mine += mine[:1] * (share - len(mine))  # same batch count everywhere: sharded engines call in lockstep
    results = score_examples(scorer, examples, mine, examples_per_batch, pad_id, device, autocast, full_rows,
                             progress)
    if num_processes > 1:
        gathered: list = [None] * num_processes
        torch.distributed.all_gather_object(gathered, results)
        results = {index: values for part in gathered for index, values in part.items()}
    return ReferenceLogps.from_lists([results[index] for index in range(len(examples))])
