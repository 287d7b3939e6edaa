"""Per-row randomness: every random choice a preparation makes is keyed by (seed, purpose, row number).

A row's draws therefore depend only on the seed and that row, never on how many rows came before it, on
``--limit``, on skipped rows, or on how the input is streamed: the first N records of a full run equal a run
with ``--limit N``, and the same seed gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable


def row_hash(seed: int, purpose: str, key: int | str) -> int:
    """A 64-bit integer from BLAKE2b over ``seed:purpose:key`` (stable across Python versions and platforms)."""
    material = f"{seed}:{purpose}:{key}".encode()
    return int.from_bytes(hashlib.blake2b(material, digest_size=8).digest(), "big")


def draw_index(seed: int, purpose: str, key: int | str, n: int) -> int:
    """One index drawn uniformly from ``range(n)`` (``hash mod n``; the bias is at most n / 2**64)."""
    return index_drawer(seed, purpose)(key, n)


def index_drawer(seed: int, purpose: str) -> Callable[[int | str, int], int]:
    """``draw(key, n)`` = ``draw_index(seed, purpose, key, n)``, for loops that draw once per row."""
    prefix, blake2b, from_bytes = f"{seed}:{purpose}:", hashlib.blake2b, int.from_bytes

    def draw(key: int | str, n: int) -> int:
        if n <= 0:
            raise ValueError("cannot draw from an empty range")
        return from_bytes(blake2b(f"{prefix}{key}".encode(), digest_size=8).digest(), "big") % n

    return draw


def row_random(seed: int, purpose: str, key: int | str) -> random.Random:
    """A ``random.Random`` for rows that need several draws (a few microseconds to create: use sparingly)."""
    return random.Random(row_hash(seed, purpose, key))
