"""Convert a large JSON Lines file in worker processes, block by block, with byte-identical output.

The main process cuts the file into blocks of whole lines (about 4 MB) and counts their lines, so every worker
knows the true line number of each row: per-row draws, ids and error locations are exactly those of the
sequential loop. Workers (forked, so they share the converter and the open output file without pickling) read
their block from the page cache, convert it, then wait for their turn and append it to the output file
themselves, in file order; the main process only collects the counts. A few blocks are in flight at a time, so
memory stays bounded. In strict mode the first block (in file order) holding an invalid row stops everything;
the caller then discards the output file.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from pathlib import Path

import orjson

from prefcli.data.readers import BadJSON, RowSource
from prefcli.data.runner import Converter, PrepareResult, RowFailure, _convert_rows, dump_record

BLOCK_BYTES = 4 << 20
AUTO_MIN_BYTES = 64 << 20
AUTO_MIN_CORES = 4
AUTO_MAX_WORKERS = 8

# Set in the parent just before the pool forks; the workers inherit them.
_shared: dict = {}


def supports(source: RowSource) -> bool:
    """Only an uncompressed JSON Lines file can be cut into blocks by byte offset, and workers need ``fork``."""
    return (source.kind == "jsonl" and source.path is not None and source.unit == "bytes"
            and "fork" in multiprocessing.get_all_start_methods())


def auto_workers(source: RowSource) -> int:
    """Workers to use when the user did not say: on machines with 4 cores or more, one per core but one (at most
    8) for JSON Lines files of 64 MB or more. Otherwise the sequential loop, which spends less CPU in all (it
    writes with ``O_DIRECT`` and copies nothing between processes) and on 2 cores is as fast or faster."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not supports(source) or (source.total or 0) < AUTO_MIN_BYTES or cores < AUTO_MIN_CORES:
        return 1
    return min(AUTO_MAX_WORKERS, cores - 1)


def start_pool(convert: Converter, skip_invalid: bool, workers: int, source: RowSource, output_fd: int):
    """Fork ``workers`` processes sharing the converter, the output file descriptor and the turn counter."""
    context = multiprocessing.get_context("fork")
    _shared.update(convert=convert, skip_invalid=skip_invalid, path=str(source.path), name=source.name,
                   fd=output_fd, turn=context.Value("q", 0, lock=False), stop=context.Value("b", 0, lock=False),
                   condition=context.Condition())
    return context.Pool(workers)


class _Collector:
    """A writer stand-in that keeps a block's serialized records in memory."""

    def __init__(self):
        self.parts: list[bytes] = []

    def add(self, records: list[dict]) -> None:
        self.parts += [dump_record(record) for record in records]


def _iter_block(data: bytes, first_line: int, at_file_start: bool):
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for number, line in enumerate(data.split(b"\n"), first_line):
        if at_file_start and number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        try:
            yield number, loads(line)
        except decode_error as error:
            if not line.strip():
                continue
            yield number, BadJSON(f"invalid JSON ({error.msg})")


def _convert_block(task: tuple[int, int, int, int]):
    """Worker side: convert the lines in ``[offset, offset + length)`` and, on its turn, append them to the
    output. Returns ``(counts, failure)``; a block that sees another block's failure stops without writing."""
    index, offset, length, first_line = task
    state = _shared
    with open(state["path"], "rb") as handle:
        handle.seek(offset)
        data = handle.read(length)
    source = RowSource(state["name"], "jsonl", None, None, "rows",
                       lambda _: _iter_block(data, first_line, offset == 0))
    collector, partial = _Collector(), PrepareResult(output=Path(), input_checksum="")
    failure = None
    try:
        _convert_rows(source, state["convert"], collector, partial, None, state["skip_invalid"], None, 1 << 30)
    except RowFailure as error:
        failure = error
    condition, turn, stop = state["condition"], state["turn"], state["stop"]
    with condition:
        if failure is not None:
            stop.value = 1
            condition.notify_all()
            return partial, failure
        while turn.value != index and not stop.value:
            condition.wait(1.0)
        if stop.value:
            return partial, None
        view = memoryview(b"".join(collector.parts))
        while view:
            view = view[os.write(state["fd"], view):]
        turn.value = index + 1
        condition.notify_all()
    return partial, None


def _blocks(path: Path):
    """``(index, offset, length, first line number)`` of consecutive blocks of whole lines."""
    with open(path, "rb") as handle:
        index, offset, line = 0, 0, 1
        while data := handle.read(BLOCK_BYTES):
            if not data.endswith(b"\n"):
                data += handle.readline()
            yield index, offset, len(data), line
            index += 1
            line += data.count(b"\n")
            offset += len(data)


def convert_blocks(pool, source: RowSource, result: PrepareResult, workers: int, on_progress) -> None:
    """Main side: hand out blocks in order, add up the counts, raise the first failure in file order."""
    blocks = _blocks(source.path)
    pending: deque = deque()

    def submit() -> None:
        task = next(blocks, None)
        if task is not None:
            pending.append((task, pool.apply_async(_convert_block, (task,))))

    for _ in range(2 * workers):
        submit()
    while pending:
        (_, offset, length, _), async_result = pending.popleft()
        partial, failure = async_result.get()
        if failure is not None:
            raise failure
        submit()
        result.merge(partial)
        source.position = offset + length
        if on_progress is not None:
            on_progress(source.position, result.rows_read)
