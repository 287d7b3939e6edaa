"""The on-disk cache of reference log-probs, filled incrementally.

A cache is a directory ``ref-logps-KEY/`` of shard files, one per batch of newly scored examples. The key is the
reference model's fingerprint, the data file's checksum, the layout, the tokenization limits and the compute dtype,
so a later run with the same inputs (another loss, learning rate, seed, or more steps) reuses every shard and
scores only the examples it reaches that no earlier run did. Each shard is written to a temporary file and renamed
when complete: a run killed while scoring leaves the shards it finished (reused) and no partial shard (a temporary
file, never read). A shard that cannot be read or carries another key is ignored, and its examples are rescored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import time
from pathlib import Path

import torch

from prefcli.data.atomic import atomic_path

CACHE_VERSION = 3  # 3: completions end with the chat template's end of turn; sharded cache


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


def cache_key(reference: str, data_checksum: str, layout: str, max_length: int, max_prompt_length: int,
              dtype: str) -> str:
    fields = {"version": CACHE_VERSION, "model": model_fingerprint(reference), "data": data_checksum,
              "layout": layout, "max_length": max_length, "max_prompt_length": max_prompt_length, "dtype": dtype}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


class ReferenceCache:
    """The shards of one key: ``load()`` every complete one, ``add()`` a new one atomically."""

    def __init__(self, root: Path, key: str):
        self.key = key
        self.directory = Path(root) / f"ref-logps-{key}"

    def load(self, num_examples: int) -> dict[int, torch.Tensor]:
        """Per example index, its completions' reference log-probs (float32 [C]), from every readable shard."""
        found: dict[int, torch.Tensor] = {}
        if not self.directory.is_dir():
            return found
        for shard in sorted(self.directory.glob("part-*.pt")):
            try:
                state = torch.load(shard, map_location="cpu", weights_only=True)
            except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
                continue  # a damaged shard is rescored, not trusted
            if not isinstance(state, dict) or state.get("key") != self.key:
                continue
            indices, offsets, values = state["indices"], state["offsets"], state["values"]
            if len(offsets) != len(indices) + 1 or int(offsets[-1]) != len(values):
                continue
            for position, index in enumerate(indices.tolist()):
                if 0 <= index < num_examples:
                    found[index] = values[offsets[position]:offsets[position + 1]]
        return found

    def add(self, scored: dict[int, list[float]]) -> Path:
        """Write one shard holding ``scored`` (example index → its completions' log-probs)."""
        indices = sorted(scored)
        counts = torch.tensor([0] + [len(scored[index]) for index in indices], dtype=torch.long)
        state = {"key": self.key, "indices": torch.tensor(indices, dtype=torch.long),
                 "offsets": torch.cumsum(counts, 0),
                 "values": torch.tensor([value for index in indices for value in scored[index]], dtype=torch.float32)}
        final = self.directory / f"part-{time.time_ns()}-{os.getpid()}.pt"  # unique: runs may share a cache
        with atomic_path(final) as tmp:
            torch.save(state, tmp)
        return final

