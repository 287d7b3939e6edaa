"""A compact index of a training JSONL file, so training never holds the records themselves in memory.

One pass validates every record (the first bad one raises ``PATH:LINE: field: message``) and keeps, per record,
its byte offset, line number, kind, number of alternatives and label: a few bytes a record instead of the
record. A record is read back by seeking to its offset when its tokens are needed.

The index is cached as ``records-<checksum>.npz`` beside the token caches, keyed by the file's sha256: a rerun on
the same bytes skips the validation pass (a changed file is a different checksum, a miss). The npz is written
atomically, so a killed run leaves either no index or a complete one.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefcli.data.atomic import atomic_path
from prefcli.data.readers import BadJSON, decode_line
from prefcli.data.records import RecordError, record_kind, validate_record
from prefcli.data.sidecar import file_checksum
from prefcli.errors import DataError
from prefcli.progress import Progress

KINDS = ("pair", "candidates", "unpaired", "chosen")  # chosen: prompt + chosen only (for chosen-only losses)
_OTHER_COMPLETIONS = ("rejected", "candidates", "completion", "label")
INDEX_VERSION = 1
_MB = 1 << 20


@dataclass
class RecordIndex:
    path: Path
    checksum: str
    offsets: np.ndarray       # int64 [R]: byte offset of each record's line
    lines: np.ndarray         # int64 [R]: 1-based line number
    kinds: np.ndarray         # int8  [R]: index into KINDS
    alternatives: np.ndarray  # int32 [R]: len(candidates), else 1 for a rejected, else 0
    labels: np.ndarray        # int8  [R]: unpaired label (1 / 0), -1 for other kinds

    def __len__(self) -> int:
        return len(self.offsets)

    def kind(self, position: int) -> str:
        return KINDS[int(self.kinds[position])]

    def read(self, positions) -> dict[int, dict]:
        """The validated records at ``positions`` (read in file order, by seeking)."""
        wanted = sorted(set(int(p) for p in positions), key=lambda p: int(self.offsets[p]))
        out: dict[int, dict] = {}
        with self.path.open("rb") as handle:
            for position in wanted:
                handle.seek(int(self.offsets[position]))
                out[position] = _validate(decode_line(handle.readline()), int(self.lines[position]))
        return out


def _is_chosen_only(raw) -> bool:
    return isinstance(raw, dict) and "chosen" in raw and not any(key in raw for key in _OTHER_COMPLETIONS)


def _validate(raw, line_number: int) -> dict:
    """``validate_record`` (a record without ``id`` is named by its line), also accepting a record with a prompt
    and a chosen completion only."""
    if not _is_chosen_only(raw):
        return validate_record(raw, line_number)
    record = validate_record({**raw, "rejected": raw["chosen"]}, line_number)
    del record["rejected"]
    return record


def _kind(record: dict) -> str:
    return "chosen" if _is_chosen_only(record) else record_kind(record)


def _parse(path: Path, line_number: int, raw: bytes) -> dict:
    row = decode_line(raw)
    if type(row) is BadJSON:
        raise DataError(path, line_number, row.message)
    try:
        return _validate(row, line_number)
    except RecordError as error:
        raise DataError(path, line_number, str(error), field=error.field) from None


def scan(path: Path, checksum: str, progress: Progress | None = None, quiet_seconds: float = 1.0) -> RecordIndex:
    """Validate every record of ``path`` and index it (see the module docstring). Progress (in MB) is reported
    once the pass has taken ``quiet_seconds``: a small file reads in silence."""
    offsets, lines, kinds, alternatives, labels = [], [], [], [], []
    total_mb = path.stat().st_size / _MB
    position = 0
    started, reporting = time.monotonic(), False
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, 1):
            start, position = position, position + len(raw)
            if not raw.strip():
                continue
            record = _parse(path, line_number, raw)
            kind = _kind(record)
            offsets.append(start)
            lines.append(line_number)
            kinds.append(KINDS.index(kind))
            alternatives.append(len(record["candidates"]) if "candidates" in record else int("rejected" in record))
            labels.append(int(record["label"]) if kind == "unpaired" else -1)
            if progress is not None and line_number % 1024 == 0:
                reporting = reporting or time.monotonic() - started >= quiet_seconds
                if reporting:
                    progress("read", position / _MB, total_mb)
    if reporting:
        progress("read", total_mb, total_mb)
    return RecordIndex(path, checksum, np.asarray(offsets, dtype=np.int64), np.asarray(lines, dtype=np.int64),
                       np.asarray(kinds, dtype=np.int8), np.asarray(alternatives, dtype=np.int32),
                       np.asarray(labels, dtype=np.int8))


def _cache_file(cache_dir: Path, checksum: str) -> Path:
    return cache_dir / f"records-{checksum.split(':')[-1][:32]}.npz"


def _load(file: Path, path: Path, checksum: str) -> RecordIndex | None:
    try:
        with np.load(file, allow_pickle=False) as saved:
            if str(saved["checksum"]) != checksum or int(saved["version"]) != INDEX_VERSION:
                return None
            return RecordIndex(path, checksum, saved["offsets"], saved["lines"], saved["kinds"],
                               saved["alternatives"], saved["labels"])
    except Exception:  # noqa: BLE001 - a damaged index (bad zip, missing array, wrong dtype) is rebuilt, never trusted
        return None


def load_index(path: str | Path, cache_dir: str | Path | None = None,
               progress: Progress | None = None) -> tuple[RecordIndex, bool]:
    """The index of ``path`` and whether it came from the cache in ``cache_dir`` (None: no caching)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    checksum = file_checksum(path)
    file = _cache_file(Path(cache_dir), checksum) if cache_dir is not None else None
    if file is not None and file.is_file():
        index = _load(file, path, checksum)
        if index is not None:
            return index, True
    index = scan(path, checksum, progress)
    if file is not None:
        with contextlib.suppress(OSError):  # an unwritable cache costs a rescan next time, nothing else
            file.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(file) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, version=INDEX_VERSION, checksum=checksum, offsets=index.offsets,
                         lines=index.lines, kinds=index.kinds, alternatives=index.alternatives,
                         labels=index.labels)
    return index, False
