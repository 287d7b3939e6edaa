"""Small record files for the training tests (written out, seeded)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from prefcli.fixtures import synthetic_sentence


def _prompt(rng: random.Random, index: int) -> list[dict]:
    if index % 4 == 3:  # every fourth prompt is multi-turn with a system message
        return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": synthetic_sentence(rng)},
                {"role": "assistant", "content": synthetic_sentence(rng)},
                {"role": "user", "content": synthetic_sentence(rng)}]
    return [{"role": "user", "content": synthetic_sentence(rng)}]


def write_pairs(path: Path, rows: int = 16, candidates: int | list[int] = 4, seed: int = 0,
                with_rejected: bool = True) -> Path:
    """Pair records with ``candidates`` candidates each (an int, or one count per row); rejected = candidate 0."""
    rng = random.Random(seed)
    counts = candidates if isinstance(candidates, list) else [candidates] * rows
    with Path(path).open("w", encoding="utf-8") as handle:
        for index in range(rows):
            pool = [synthetic_sentence(rng, 3, 12) for _ in range(counts[index])]
            record = {"id": index, "prompt": _prompt(rng, index), "chosen": synthetic_sentence(rng, 3, 12),
                      "meta": {}}
            if with_rejected:
                record["rejected"] = pool[0]
            if pool:
                record["candidates"] = pool
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)


def write_unpaired(path: Path, rows: int = 16, seed: int = 0, desirable_every: int = 2) -> Path:
    rng = random.Random(seed)
    with Path(path).open("w", encoding="utf-8") as handle:
        for index in range(rows):
            record = {"id": index, "prompt": _prompt(rng, index), "completion": synthetic_sentence(rng, 3, 12),
                      "label": index % desirable_every == 0, "meta": {}}
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return Path(path)
