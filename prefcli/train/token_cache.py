"""Tokenized examples on disk: append-only numpy files, memory-mapped, trusted only up to their last commit.

A cache directory ``tokens-<key>/`` holds the examples tokenized so far for one (tokenizer, chat template,
length limits, data checksum, layout) — the key — so a changed tokenizer, template, data file or length setting
is a different directory, a miss. Inside:

- ``tokens.i32``: every example's token ids, end to end (prompt, completions, then the KL completion if any);
- ``lengths.i32``: the length of each of those segments;
- ``rows.i64``: one row per stored example (see ``_COLUMNS``);
- ``commit.json``: how many rows, tokens and lengths are complete, written atomically after the data files are
  synced. A reader maps only that prefix; a writer first cuts the files back to it. So a run killed while
  appending leaves bytes past the commit that are never read and are dropped by the next writer.

Examples are appended as a run needs them (a run of N steps tokenizes what N steps consume), so a longer rerun
or a resume adds to the cache instead of starting over. Pages are read through ``np.memmap``: memory does not
grow with the dataset. Writers take an exclusive ``flock`` on ``lock``; readers need none.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

import numpy as np

from prefcli.data.atomic import write_json
from prefcli.train.tokenize import Encoded, Example

CACHE_VERSION = 1
_COLUMNS = ("example", "token_start", "length_start", "segments", "kl", "prompt_cut", "completions_cut",
            "fallbacks")
_FILES = {"tokens": ("tokens.i32", np.int32, 1), "lengths": ("lengths.i32", np.int32, 1),
          "rows": ("rows.i64", np.int64, len(_COLUMNS))}


class TokenStore:
    """Tokenized examples by example index, in memory (``directory=None``) or in a cache directory."""

    def __init__(self, num_examples: int, directory: str | Path | None = None, key: str = ""):
        self.num_examples = num_examples
        self.directory = Path(directory) if directory is not None else None
        self.key = key
        self.row_of = np.full(num_examples, -1, dtype=np.int64)
        self._memory: dict[int, tuple[Example, Encoded]] = {}
        self._maps: dict[str, np.ndarray] = {}
        self._counts = {name: 0 for name in _FILES}
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.refresh()

    # ---- reading ----------------------------------------------------------------------------------------------
    def _committed(self) -> dict[str, int]:
        try:
            state = json.loads((self.directory / "commit.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {name: 0 for name in _FILES}
        if state.get("version") != CACHE_VERSION or state.get("key") != self.key:
            return {name: 0 for name in _FILES}
        counts = {name: int(state.get(name, 0)) for name in _FILES}
        for name, (file, dtype, width) in _FILES.items():
            path = self.directory / file
            size = path.stat().st_size if path.is_file() else 0
            if size < counts[name] * width * np.dtype(dtype).itemsize:
                return {name: 0 for name in _FILES}  # files shorter than their commit: not trusted
        return counts

    def refresh(self) -> None:
        """Map what the last commit covers (another process may have added to it)."""
        self._counts = self._committed()
        self._maps = {}
        for name, (file, dtype, width) in _FILES.items():
            count = self._counts[name]
            shape = (count, width) if width > 1 else (count,)
            self._maps[name] = (np.memmap(self.directory / file, dtype=dtype, mode="r", shape=shape) if count
                                else np.zeros(shape, dtype=dtype))
        self.row_of[:] = -1
        rows = self._maps["rows"]
        if len(rows):
            examples = np.asarray(rows[:, 0])
            valid = (examples >= 0) & (examples < self.num_examples)
            self.row_of[examples[valid]] = np.nonzero(valid)[0]

    def has(self, index: int) -> bool:
        return index in self._memory if self.directory is None else self.row_of[index] >= 0

    def stored(self) -> int:
        return len(self._memory) if self.directory is None else int((self.row_of >= 0).sum())

    def missing(self, indices) -> list[int]:
        return [int(i) for i in indices if not self.has(int(i))]

    def get(self, index: int, label: bool | None = None, source_line: int | None = None) -> Example:
        if self.directory is None:
            stored = self._memory[index][0]
            return Example(stored.prompt, stored.completions, label, source_line, stored.kl_completion)
        row = self._maps["rows"][self.row_of[index]]
        lengths = self._maps["lengths"][row[2]:row[2] + row[3]].tolist()
        tokens = self._maps["tokens"]
        segments, cursor = [], int(row[1])
        for length in lengths:
            segments.append(tokens[cursor:cursor + length].tolist())
            cursor += length
        kl = segments.pop() if row[4] else None
        return Example(segments[0], segments[1:], label=label, source_line=source_line, kl_completion=kl)

    def flags(self, index: int) -> Encoded:
        """What truncation did to a stored example (token lists left empty)."""
        if self.directory is None:
            encoded = self._memory[index][1]
            return Encoded([], [], encoded.prompt_cut, encoded.completions_cut, encoded.fallbacks)
        row = self._maps["rows"][self.row_of[index]]
        return Encoded([], [], bool(row[5]), int(row[6]), int(row[7]))

    # ---- writing ----------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self):
        with open(self.directory / "lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def append(self, entries: list[tuple[int, Encoded, bool]]) -> None:
        """Store ``(example index, encoded, has KL completion)`` entries and commit them."""
        if self.directory is None:
            for index, encoded, has_kl in entries:
                completions = encoded.completions[:-1] if has_kl else encoded.completions
                kl = encoded.completions[-1] if has_kl else None
                self._memory[index] = (Example(encoded.prompt, completions, kl_completion=kl), encoded)
            return
        with self._locked():
            self.refresh()  # another writer may have committed meanwhile
            entries = [entry for entry in entries if not self.has(entry[0])]
            if not entries:
                return
            counts = dict(self._counts)
            tokens, lengths, rows = [], [], []
            for index, encoded, has_kl in entries:
                segments = [encoded.prompt, *encoded.completions]
                rows.append([index, counts["tokens"], counts["lengths"], len(segments), int(has_kl),
                             int(encoded.prompt_cut), encoded.completions_cut, encoded.fallbacks])
                for segment in segments:
                    tokens.extend(segment)
                    lengths.append(len(segment))
                    counts["tokens"] += len(segment)
                counts["lengths"] += len(segments)
                counts["rows"] += 1
            arrays = {"tokens": np.asarray(tokens, dtype=np.int32), "lengths": np.asarray(lengths, dtype=np.int32),
                      "rows": np.asarray(rows, dtype=np.int64)}
            for name, (file, dtype, width) in _FILES.items():
                with open(self.directory / file, "ab") as handle:
                    handle.truncate(self._counts[name] * width * np.dtype(dtype).itemsize)  # drop an uncommitted tail
                    handle.write(arrays[name].tobytes())
                    handle.flush()
                    os.fsync(handle.fileno())
            write_json(self.directory / "commit.json", {"version": CACHE_VERSION, "key": self.key, **counts})
            self.refresh()


def cache_root(data: str | Path, output: str | Path | None, override: str | Path | None = None,
               fallback: str = "token-cache") -> Path | None:
    """Where a run's caches live: ``override``, else ``<data dir>/.prefcli-cache`` when that is writable, else
    ``<output>/<fallback>`` (None when there is no output either)."""
    if override:
        return Path(override)
    data_dir = Path(data).resolve().parent
    if os.access(data_dir, os.W_OK):
        return data_dir / ".prefcli-cache"
    return Path(output) / fallback if output else None
