"""The loop every ``prepare`` command shares: stream rows → convert each to records → write JSON Lines atomically,
counting what was read, written and skipped (by reason).

A converter is a function ``convert(row, location) -> list[record]``. It raises ``InvalidRow`` for a row that
breaks the input schema (strict mode stops there with ``PATH:LINE: field: message``; ``--skip-invalid`` counts
it) and ``SkipRow`` for a valid row that yields nothing (always counted, e.g. too few answers after pruning).
"""

from __future__ import annotations

import os
import queue
import random
import tempfile
import threading
from array import array
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefcli.data.appender import FileAppender
from prefcli.data.atomic import atomic_path
from prefcli.data.readers import BadJSON, RowSource
from prefcli.data.sidecar import BackgroundChecksum
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

    def merge(self, other: PrepareResult) -> None:
        """Add another (partial) result's counts into this one."""
        for name in ("rows_read", "records_written", "chosen_chars", "chosen_count", "rejected_chars",
                     "rejected_count", "candidate_chars", "candidate_count", "records_with_candidates"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)

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


class _BackgroundWrites:
    """Hands large buffers to a thread that appends them to the file (``FileAppender``: ``O_DIRECT`` where
    possible): the writes, which release the GIL, overlap with the conversion of the next rows. At most
    ``depth`` buffers wait, which bounds the memory used."""

    def __init__(self, path: Path, depth: int = 4):
        self._file = FileAppender(path)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="prefcli-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._file.write(data)
                except BaseException as error:  # re-raised in the main thread
                    self._error = error

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self, discard: bool = False) -> None:
        """Wait until every buffer is written and synced (or, with ``discard``, dropped); re-raise a write
        error."""
        if discard and self._error is None:
            self._error = RuntimeError("discarded")
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            self._file.abort()
            if not discard:
                raise self._error
            return
        self._file.close()


class RecordWriter:
    """Writes each row's records in order to the file at ``path``, in large writes done by a background thread."""

    def __init__(self, path: Path):
        self._out = _BackgroundWrites(path)
        self._parts: list[bytes] = []
        self._size = 0

    def add(self, records: list[dict]) -> None:
        for record in records:
            line = dump_record(record)
            self._parts.append(line)
            self._size += len(line)
        if self._size >= _FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._parts:
            self._out.write(b"".join(self._parts))
        self._parts.clear()
        self._size = 0

    def finish(self) -> None:
        """Write what is left and wait for the writes to land."""
        self._flush()
        self._out.close()

    def abort(self) -> None:
        """Stop writing (the caller discards the file)."""
        self._out.close(discard=True)


class ShuffledPairingWriter(RecordWriter):
    """Unpaired output whose undesirable records are moved to other prompts' places: row i's desirable records
    are followed by the undesirable records of row π(i), π a seeded permutation. Each record still answers its
    own prompt; only the per-prompt adjacency (the pairing) is broken. Rows are spooled to temporary files (memory
    holds two offsets per row), then merged."""

    def __init__(self, path: Path, seed: int, spool_dir: Path):
        super().__init__(path)
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
        for index, other in enumerate(order):
            good_offsets, bad_offsets = self._offsets
            mine = good.read(good_offsets[index + 1] - good_offsets[index])
            bad.seek(bad_offsets[other])
            theirs = bad.read(bad_offsets[other + 1] - bad_offsets[other])
            self._parts += (mine, theirs)
            self._size += len(mine) + len(theirs)
            if self._size >= _FLUSH_BYTES:
                self._flush()
        super().finish()
        for spool in self._spools:
            spool.close()


class RowFailure(Exception):
    """An invalid row in strict mode, before it becomes a ``DataError`` (picklable, for worker processes)."""

    def __init__(self, location: int, message: str, field: str | None, reason: str):
        super().__init__(location, message, field, reason)
        self.location, self.message, self.field, self.reason = location, message, field, reason


def run_prepare(source: RowSource, convert: Converter, output: str | Path, *,
                limit: int | None = None, skip_invalid: bool = False,
                make_writer: Callable[[Path], RecordWriter] | None = None,
                on_progress: Callable[[int, int], None] | None = None, progress_every: int = 1024,
                workers: int = 1) -> PrepareResult:
    """Convert every row of ``source`` and write the records to ``output`` (JSONL, atomically).

    Strict by default: the first invalid row raises ``DataError`` and ``output`` is left untouched. With
    ``skip_invalid`` such rows are counted by reason instead. ``limit`` caps the rows read. ``on_progress``
    gets ``(source.position, rows read)`` every ``progress_every`` rows and at the end. Raises
    ``DataError`` when the input has no rows or no record survives.

    With ``workers > 1``, a plain JSON Lines file, no ``limit`` and the ordered writer, blocks of lines are
    converted in forked worker processes (``prefcli.data.parallel``); the output is the same bytes.
    """
    from prefcli.data import parallel

    output = Path(output)
    use_workers = (workers > 1 and limit is None and make_writer is None and parallel.supports(source))
    checksum = BackgroundChecksum(source.path) if source.path is not None else None
    pool = None
    try:
        result = PrepareResult(output=output, input_checksum="")
        with atomic_path(output) as temporary:
            writer = output_fd = None
            if use_workers:
                output_fd = os.open(temporary, os.O_WRONLY)
                pool = parallel.start_pool(convert, skip_invalid, workers, source, output_fd)
            else:
                writer = make_writer(temporary) if make_writer else RecordWriter(temporary)
            try:
                try:
                    if pool is not None:
                        parallel.convert_blocks(pool, source, result, workers, on_progress)
                    else:
                        _convert_rows(source, convert, writer, result, limit, skip_invalid, on_progress,
                                      progress_every)
                except RowFailure as failure:
                    raise DataError(source.name, failure.location, failure.message, field=failure.field,
                                    reason=failure.reason) from None
                if result.rows_read == 0:
                    raise DataError(source.name, None, "contains no rows")
                if result.records_written == 0:
                    reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.skipped.items()))
                    raise DataError(source.name, None, f"no record to write: all {result.rows_read} rows were "
                                                       f"skipped ({reasons})")
                if writer is not None:
                    writer.finish()
                else:
                    os.fsync(output_fd)
            except BaseException:
                if writer is not None:
                    writer.abort()
                raise
            finally:
                if pool is not None:
                    pool.terminate()
                    pool.join()
                if output_fd is not None:
                    os.close(output_fd)
        result.input_checksum = checksum.result() if checksum else f"hub:{source.name}"
        return result
    finally:
        if checksum:
            checksum.cancel()


def _convert_rows(source: RowSource, convert: Converter, writer, result: PrepareResult,
                  limit: int | None, skip_invalid: bool, on_progress, progress_every: int) -> None:
    """The sequential loop (also run by each worker process on its block of lines)."""
    skipped, count, add = result.skipped, result._count, writer.add
    rows_read = written = 0
    for location, row in source.rows():
        rows_read += 1
        try:
            if type(row) is BadJSON:
                if row.fatal or not skip_invalid:
                    raise RowFailure(location, row.message, None, "invalid JSON")
                skipped["invalid JSON"] += 1
            else:
                records = convert(row, location)
                add(records)
                count(records)
                written += len(records)
        except InvalidRow as error:
            if not skip_invalid:
                raise RowFailure(location, error.message, error.field, error.reason) from None
            skipped[error.reason] += 1
        except SkipRow as error:
            skipped[error.reason] += 1
        if on_progress is not None and rows_read % progress_every == 0:
            on_progress(source.position, rows_read)
        if limit is not None and rows_read >= limit:
            break
    result.rows_read += rows_read
    result.records_written += written
    if on_progress is not None:
        on_progress(source.position, result.rows_read)
