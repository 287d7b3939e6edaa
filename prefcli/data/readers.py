"""Stream rows from any input a user can name: a .jsonl (or .jsonl.gz) file, a .json file (an array or JSON
Lines), a .parquet file, a directory written by ``datasets.save_to_disk``, or a Hugging Face hub id.

Nothing is loaded whole: JSON Lines are read line by line, JSON arrays element by element, Parquet by record
batch, ``save_to_disk`` directories through their memory-mapped Arrow files and hub datasets with
``streaming=True``. Each row comes with its location (the line number in a text file, the 1-based row number
otherwise) so errors can say ``PATH:LINE``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefcli.errors import DataError

INPUT_FORMATS = ("auto", "jsonl", "json", "parquet", "disk", "hub")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_CHUNK = 1 << 20
_BATCH = 1024


@dataclass(frozen=True)
class BadJSON:
    """A row that could not be decoded. ``fatal`` when reading cannot go on past it (inside a JSON array)."""

    message: str
    fatal: bool = False


@dataclass
class RowSource:
    """An opened input: iterate ``rows()`` for ``(location, row)``; ``position`` advances in ``unit`` towards
    ``total`` (bytes of a local text file, rows otherwise; ``total`` is None when unknown)."""

    name: str
    kind: str
    path: Path | None
    total: int | None
    unit: str
    _rows: Callable[[RowSource], Iterator[tuple[int, Any]]] = field(repr=False)
    position: int = 0

    def rows(self) -> Iterator[tuple[int, Any]]:
        return self._rows(self)


def _looks_like_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and Path(spec).suffix.lower() not in (*_SUFFIXES, ".gz")


def detect_format(spec: str) -> str:
    """Which reader ``spec`` needs; raises ``DataError`` for a missing file or an unknown file type."""
    path = Path(spec)
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_dict.json", "state.json", "dataset_info.json")):
            return "disk"
        raise DataError(spec, None, "is a directory but not one written by datasets.save_to_disk")
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl.gz", ".ndjson.gz")):
            return "jsonl"
        kind = _SUFFIXES.get(path.suffix.lower())
        if kind is None:
            raise DataError(spec, None, f"unknown input format {path.suffix or '(no extension)'!r}: expected .jsonl, "
                                        ".jsonl.gz, .json, .parquet, a save_to_disk directory or a hub id "
                                        "(or name one with --input-format)")
        return kind
    if path.exists():
        raise DataError(spec, None, "is neither a file nor a directory")
    if _looks_like_hub_id(spec):
        return "hub"
    raise DataError(spec, None, "no such file or directory")


def open_source(spec: str | Path, *, input_format: str = "auto", split: str | None = None) -> RowSource:
    """Open ``spec`` for streaming. ``split`` picks a split of a hub dataset or a saved ``DatasetDict``."""
    spec = str(spec)
    if input_format not in INPUT_FORMATS:
        raise DataError(spec, None, f"unknown input format {input_format!r} (choose {', '.join(INPUT_FORMATS)})")
    kind = detect_format(spec) if input_format == "auto" else input_format
    if kind != "hub" and not Path(spec).exists():
        raise DataError(spec, None, "no such file or directory")
    if kind == "jsonl":
        return _jsonl_source(spec)
    if kind == "json":
        return _json_source(spec)
    if kind == "parquet":
        return _parquet_source(spec)
    if kind == "disk":
        return _disk_source(spec, split)
    return _hub_source(spec, split)


# --- JSON Lines -------------------------------------------------------------------------------------------------

def _jsonl_source(spec: str) -> RowSource:
    path = Path(spec)
    gzipped = path.name.lower().endswith(".gz")
    return RowSource(spec, "jsonl.gz" if gzipped else "jsonl", path, None if gzipped else path.stat().st_size,
                     "rows" if gzipped else "bytes", _iter_jsonl)


def _iter_jsonl(source: RowSource) -> Iterator[tuple[int, Any]]:
    gzipped = source.kind == "jsonl.gz"
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    with (gzip.open(source.path, "rb") if gzipped else open(source.path, "rb", buffering=_CHUNK)) as handle:
        for line_number, line in enumerate(handle, 1):
            source.position += 1 if gzipped else len(line)
            if line_number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            try:
                yield line_number, loads(line)
            except decode_error as error:
                if not line.strip():
                    continue
                yield line_number, BadJSON(f"invalid JSON ({error.msg})")


# --- JSON (an array, or JSON Lines under a .json name) ----------------------------------------------------------

def _json_source(spec: str) -> RowSource:
    path = Path(spec)
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"["):
        return RowSource(spec, "jsonl", path, path.stat().st_size, "bytes", _iter_jsonl)
    return RowSource(spec, "json", path, path.stat().st_size, "bytes", _iter_json_array)


def _iter_json_array(source: RowSource) -> Iterator[tuple[int, Any]]:
    """Decode a top-level JSON array one element at a time with ``JSONDecoder.raw_decode`` on a sliding buffer,
    so memory holds one element plus a chunk. ``position`` counts characters (≈ bytes)."""
    decoder = json.JSONDecoder()
    with source.path.open(encoding="utf-8-sig") as handle:
        buffer, pos, eof, line = "", 0, False, 1

        def refill() -> bool:
            nonlocal buffer, pos, eof
            chunk = handle.read(_CHUNK)
            if not chunk:
                eof = True
                return False
            buffer = buffer[pos:] + chunk
            pos = 0
            return True

        def skip_space() -> str | None:
            nonlocal pos, line
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    line += buffer[pos] == "\n"
                    pos += 1
                if pos < len(buffer):
                    return buffer[pos]
                if not refill():
                    return None

        if skip_space() != "[":
            yield line, BadJSON("invalid JSON (expected a JSON array)", fatal=True)
            return
        pos += 1
        first = True
        while True:
            char = skip_space()
            if char is None:
                yield line, BadJSON("invalid JSON (unterminated array)", fatal=True)
                return
            if char == "]":
                pos += 1
                if skip_space() is not None:
                    yield line, BadJSON("invalid JSON (extra data after the array)", fatal=True)
                return
            if not first:
                if char != ",":
                    yield line, BadJSON("invalid JSON (expected ',' between array elements)", fatal=True)
                    return
                pos += 1
                if skip_space() is None:
                    yield line, BadJSON("invalid JSON (unterminated array)", fatal=True)
                    return
            first = False
            while True:
                try:
                    value, end = decoder.raw_decode(buffer, pos)
                    break
                except json.JSONDecodeError as error:
                    # An element cut by the chunk boundary fails at the buffer's end (or in an unterminated
                    # string); read more and retry. Anything else is a real syntax error.
                    near_end = error.pos >= len(buffer) - 16 or error.msg.startswith("Unterminated")
                    if near_end and not eof and refill():
                        continue
                    yield line + buffer.count("\n", pos, error.pos), BadJSON(f"invalid JSON ({error.msg})",
                                                                             fatal=True)
                    return
            start_line = line
            line += buffer.count("\n", pos, end)
            source.position += end - pos
            pos = end
            yield start_line, value


# --- Parquet, save_to_disk directories, hub ids -----------------------------------------------------------------

def _parquet_source(spec: str) -> RowSource:
    import pyarrow.parquet as pq

    try:
        total = pq.ParquetFile(spec).metadata.num_rows
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError... for a file that is not Parquet
        raise DataError(spec, None, f"not a readable Parquet file ({_first_line(error)})") from None
    return RowSource(spec, "parquet", Path(spec), total, "rows", _iter_parquet)


def _iter_parquet(source: RowSource) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            number += 1
            source.position = number
            yield number, row


def _disk_source(spec: str, split: str | None) -> RowSource:
    from datasets import DatasetDict, load_from_disk

    try:
        dataset = load_from_disk(spec)
    except Exception as error:
        raise DataError(spec, None, f"cannot load the save_to_disk directory ({_first_line(error)})") from None
    if isinstance(dataset, DatasetDict):
        dataset = dataset[_pick_split(spec, list(dataset), split)]
    dataset = dataset.with_format("arrow")

    def rows(source: RowSource) -> Iterator[tuple[int, Any]]:
        number = 0
        for table in dataset.iter(batch_size=_BATCH):
            for row in table.to_pylist():
                number += 1
                source.position = number
                yield number, row

    return RowSource(spec, "disk", Path(spec), len(dataset), "rows", rows)


def _pick_split(spec: str, splits: list[str], split: str | None) -> str:
    if split is None and len(splits) == 1:
        return splits[0]
    if split in splits:
        return split
    wanted = "no --split given" if split is None else f"no split {split!r}"
    raise DataError(spec, None, f"{wanted}; choose --split from {', '.join(sorted(splits))}")


def _hub_source(spec: str, split: str | None) -> RowSource:
    from datasets import load_dataset

    try:
        dataset = load_dataset(spec, split=split or "train", streaming=True)
    except Exception as error:  # offline, unknown id, unknown split...: all user-fixable
        raise DataError(spec, None, "not a local file, and loading it from the Hugging Face hub failed "
                                    f"({type(error).__name__}: {_first_line(error)})") from None

    def rows(source: RowSource) -> Iterator[tuple[int, Any]]:
        number = 0
        iterator = iter(dataset)
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                return
            except Exception as error:
                raise DataError(spec, number + 1, f"reading from the hub failed ({_first_line(error)})") from None
            number += 1
            source.position = number
            yield number, row

    return RowSource(spec, "hub", None, None, "rows", rows)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
