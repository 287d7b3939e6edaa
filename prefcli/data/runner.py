"""The loop every ``prepare`` command shares: stream rows → convert each to records → write JSON Lines atomically,
counting what was read, written and skipped (by reason). One process: the output is written in 8 MB pieces with
``O_DIRECT`` where the filesystem allows it (``appender.py``), gzip-compressed when its name ends in ``.gz``, one
piece at a time on a helper thread while the next is converted; the input is hashed by the reader as it is read.

A converter is a function ``convert(row, location) -> list[record]``. It raises ``InvalidRow`` for a row that
breaks the input schema (strict mode stops there with ``PATH:LINE: field: message``; ``--skip-invalid`` counts
it) and ``SkipRow`` for a valid row that yields nothing (always counted, e.g. too few answers after pruning).
"""

from __future__ import annotations

import gzip
import os
import random
import tempfile
from array import array
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefcli.data.appender import FileAppender
from prefcli.data.atomic import atomic_path
from prefcli.data.readers import BadJSON, RowSource
from prefcli.errors import DataError

Converter = Callable[[Any, int], list]

_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE
_FLUSH_BYTES = 8 << 20


class InvalidRow(Exception):
    """A row that breaks the input schema. ``reason`` is the short key it is counted under."""

    def __init__(self, field: str | None, message: str, reason: str):
        self.field, self.message, self.reason = field, message, reason
        super().__init__(f"{field}: {message}" if field else message)


class SkipRow(Exception):
    """A valid row that yields no record; counted under ``reason``."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def dump_record(record: dict) -> bytes:
    """One JSONL line: compact, UTF-8 (non-ASCII kept as is), keys in insertion order, newline-terminated."""
    return orjson.dumps(record, option=_DUMP_OPTIONS)


@dataclass
class PrepareResult:
    """What a preparation read, wrote and skipped, plus the length statistics of what it wrote."""

    output: Path
    input_checksum: str
    rows_read: int = 0
    records_written: int = 0
    skipped: Counter = field(default_factory=Counter)
    chosen_chars: int = 0
    chosen_count: int = 0
    rejected_chars: int = 0
    rejected_count: int = 0
    candidate_chars: int = 0
    candidate_count: int = 0
    records_with_candidates: int = 0

    @property
    def rows_skipped(self) -> int:
        return sum(self.skipped.values())

    def counts(self) -> dict:
        """The sidecar's ``counts``: totals and mean lengths (characters)."""
        def mean(total: int, count: int) -> float | None:
            return round(total / count, 3) if count else None

        return {
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "records_written": self.records_written,
            "mean_chosen_chars": mean(self.chosen_chars, self.chosen_count),
            "mean_rejected_chars": mean(self.rejected_chars, self.rejected_count),
            "mean_candidate_chars": mean(self.candidate_chars, self.candidate_count),
            "candidates_per_record": mean(self.candidate_count, self.records_with_candidates),
        }

    def summary_rows(self) -> list[tuple[str, object]]:
        """Rows for the closing table: read / written / skipped by reason / mean lengths."""
        counts = self.counts()
        rows: list[tuple[str, object]] = [("rows read", self.rows_read), ("records written", self.records_written),
                                          ("rows skipped", self.rows_skipped)]
        rows += [(f"  skipped: {reason}", n) for reason, n in sorted(self.skipped.items())]
        labels = {"mean_chosen_chars": "mean chosen length (chars)",
                  "mean_rejected_chars": "mean rejected length (chars)",
                  "mean_candidate_chars": "mean candidate length (chars)",
                  "candidates_per_record": "candidates per record"}
        rows += [(label, counts[key]) for key, label in labels.items() if counts[key] is not None]
        return rows

    def _count(self, records: list[dict]) -> None:
        for record in records:
            if "label" in record:  # unpaired: desirable completions count as chosen, the others as rejected
                if record["label"]:
                    self.chosen_chars += len(record["completion"])
                    self.chosen_count += 1
                else:
                    self.rejected_chars += len(record["completion"])
                    self.rejected_count += 1
                continue
            self.chosen_chars += len(record["chosen"])
            self.chosen_count += 1
            rejected = record.get("rejected")
            if rejected is not None:
                self.rejected_chars += len(rejected)
                self.rejected_count += 1
            candidates = record.get("candidates")
            if candidates:
                self.candidate_chars += sum(map(len, candidates))
                self.candidate_count += len(candidates)
                self.records_with_candidates += 1


class _GzipFile:
    """The output sink for a ``.gz`` name: gzip (level 6, no name or time in the header, so the same records give
    the same bytes) into a plain file."""

    def __init__(self, path: Path):
        self._raw = open(path, "wb")  # noqa: SIM115 (closed by close() / abort())
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, compresslevel=6, mtime=0)
        self.write = self._gzip.write

    def close(self) -> None:
        self._gzip.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()

    def abort(self) -> None:
        self._raw.close()


class RecordWriter:
    """Writes each row's records in order to the file at ``path`` as JSON Lines, in 8 MB writes (gzip-compressed
    with ``compress``). Each write runs on one helper thread while the next 8 MB are converted: an ``O_DIRECT``
    write waits for the disk (1.1 s of a 1 GB run measured here) and zlib releases the GIL, so both overlap with
    the conversion. At most one write is in flight; its error is raised by the next write or by ``finish()``."""

    def __init__(self, path: Path, compress: bool = False):
        self._out = _GzipFile(path) if compress else FileAppender(path)
        self._parts: list[bytes] = []
        self._size = 0
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefcli-write")
        self._pending: Future | None = None

    def add(self, records: list[dict]) -> None:
        for record in records:
            line = dump_record(record)
            self._parts.append(line)
            self._size += len(line)
        if self._size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._parts:
            data = b"".join(self._parts)
            self._wait()
            self._pending = self._writes.submit(self._out.write, data)
        self._parts.clear()
        self._size = 0

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def finish(self) -> None:
        """Write what is left and sync it to disk."""
        self._flush()
        self._wait()
        self._writes.shutdown()
        self._out.close()

    def abort(self) -> None:
        """Stop writing (the caller discards the file)."""
        self._writes.shutdown(cancel_futures=True)
        self._out.abort()


class ShuffledPairingWriter(RecordWriter):
    """Unpaired output whose undesirable records are moved to other prompts' places: row i's desirable records
    are followed by the undesirable records of row π(i), π a seeded permutation. Each record still answers its
    own prompt; only the per-prompt adjacency (the pairing) is broken. Rows are spooled to temporary files (memory
    holds two offsets per row), then merged."""

    def __init__(self, path: Path, compress: bool, seed: int, spool_dir: Path):
        super().__init__(path, compress)
        self._seed = seed
        self._spools = [tempfile.TemporaryFile(dir=spool_dir, prefix=".spool-") for _ in range(2)]
        self._offsets = [array("q", [0]), array("q", [0])]

    def add(self, records: list[dict]) -> None:
        good = b"".join(dump_record(r) for r in records if r["label"])
        bad = b"".join(dump_record(r) for r in records if not r["label"])
        for spool, offsets, data in zip(self._spools, self._offsets, (good, bad)):
            spool.write(data)
            offsets.append(offsets[-1] + len(data))

    def finish(self) -> None:
        rows = len(self._offsets[0]) - 1
        order = list(range(rows))
        random.Random(self._seed).shuffle(order)
        for spool in self._spools:
            spool.flush()
        good, bad = self._spools
        good.seek(0)
        good_offsets, bad_offsets = self._offsets
        for index, other in enumerate(order):
            mine = good.read(good_offsets[index + 1] - good_offsets[index])
            bad.seek(bad_offsets[other])
            theirs = bad.read(bad_offsets[other + 1] - bad_offsets[other])
            self._parts += (mine, theirs)
            self._size += len(mine) + len(theirs)
            if self._size >= _FLUSH_BYTES:
                self._flush()
        super().finish()
        self._close_spools()

    def abort(self) -> None:
        super().abort()
        self._close_spools()

    def _close_spools(self) -> None:
        for spool in self._spools:
            spool.close()


def run_prepare(source: RowSource, convert: Converter, output: str | Path, *,
                limit: int | None = None, skip_invalid: bool = False,
                make_writer: Callable[[Path, bool], RecordWriter] = RecordWriter,
                on_progress: Callable[[int, int], None] | None = None, progress_every: int = 1024) -> PrepareResult:
    """Convert every row of ``source`` and write the records to ``output`` (JSONL, or gzip-compressed JSONL when
    the name ends in ``.gz``; atomically).

    Strict by default: the first invalid row raises ``DataError`` and ``output`` is left untouched. With
    ``skip_invalid`` such rows are counted by reason instead. ``limit`` caps the rows read. ``on_progress``
    gets ``(source.position, rows read)`` every ``progress_every`` rows and at the end. Raises
    ``DataError`` when the input has no rows or no record survives.
    """
    output = Path(output)
    result = PrepareResult(output=output, input_checksum="")
    with atomic_path(output) as temporary:
        writer = make_writer(temporary, output.name.lower().endswith(".gz"))
        try:
            _convert_rows(source, convert, writer, result, limit, skip_invalid, on_progress, progress_every)
            if result.rows_read == 0:
                raise DataError(source.name, None, "contains no rows")
            if result.records_written == 0:
                reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
                raise DataError(source.name, None, f"no record to write: all {result.rows_read} rows were "
                                                   f"skipped ({reasons})")
            result.input_checksum = source.checksum()
            writer.finish()
        except BaseException:
            writer.abort()
            raise
    return result


def _convert_rows(source: RowSource, convert: Converter, writer: RecordWriter, result: PrepareResult,
                  limit: int | None, skip_invalid: bool, on_progress, progress_every: int) -> None:
    skipped, count, add = result.skipped, result._count, writer.add
    rows_read = written = 0
    for location, row in source.rows():
        rows_read += 1
        try:
            if type(row) is BadJSON:
                if row.fatal or not skip_invalid:
                    raise DataError(source.name, location, row.message, reason="invalid JSON")
                skipped["invalid JSON"] += 1
            else:
                records = convert(row, location)
                add(records)
                count(records)
                written += len(records)
        except InvalidRow as error:
            if not skip_invalid:
                raise DataError(source.name, location, error.message, field=error.field,
                                reason=error.reason) from None
            skipped[error.reason] += 1
        except SkipRow as error:
            skipped[error.reason] += 1
        if on_progress is not None and rows_read % progress_every == 0:
            on_progress(source.position, rows_read)
        if limit is not None and rows_read >= limit:
            break
    result.rows_read = rows_read
    result.records_written = written
    if on_progress is not None:
        on_progress(source.position, rows_read)
