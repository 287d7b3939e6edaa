"""The one reader of rows: a .jsonl (or .jsonl.gz) file, a .json file (an array or JSON Lines), a .parquet file, a
directory written by ``datasets.save_to_disk``, or a Hugging Face hub id.

Nothing is loaded whole: JSON Lines are read line by line, JSON arrays element by element, Parquet by record
batch, ``save_to_disk`` directories through their memory-mapped Arrow files and hub datasets with
``streaming=True``. Each row comes with its location (the line number in a text file, the 1-based row number
otherwise) so errors can say ``PATH:LINE``. Local text files are hashed (sha256) as they are read, so the input
checksum a sidecar records costs no second pass over the file.

Bad bytes never escape as tracebacks: invalid JSON, non-UTF-8 bytes and the constants JSON does not have
(``NaN``, ``Infinity``) give a ``BadJSON`` row (``prepare --skip-invalid`` can count it) or, through
:func:`iter_rows`, a ``DataError`` naming the line; a truncated or corrupt ``.gz`` file is a ``DataError``.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import json
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prefcli.data.sidecar import file_checksum, hash_file_into
from prefcli.errors import DataError
from prefcli.hub import looks_like_hub_id

INPUT_FORMATS = ("auto", "jsonl", "json", "parquet", "disk", "hub")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
_CHUNK = 1 << 20
_BATCH = 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class BadJSON:
    """A row that could not be decoded. ``fatal`` when reading cannot go on past it (inside a JSON array)."""

    message: str
    fatal: bool = False


@dataclass
class RowSource:
    """An opened input: iterate ``rows()`` for ``(location, row)``. ``position`` advances in ``unit`` towards
    ``total`` (bytes of a local file, rows otherwise; ``total`` is None when unknown). ``checksum()`` is the
    input's ``sha256:…`` (``hub:<id>`` for a hub dataset)."""

    name: str
    kind: str
    path: Path | None
    total: int | None
    unit: str
    _rows: Callable[[RowSource], Iterator[tuple[int, Any]]] = field(repr=False)
    _reader: _HashingReader | None = field(default=None, repr=False)
    _rows_read: int = 0

    def rows(self) -> Iterator[tuple[int, Any]]:
        if self.path is not None and self.unit == "bytes":
            self._reader = _HashingReader(self.path)
        return self._rows(self)

    @property
    def position(self) -> int:
        return self._reader.consumed if self._reader is not None else self._rows_read

    def checksum(self) -> str:
        if self.path is None:
            return f"hub:{self.name}"
        if self._reader is not None:
            return self._reader.finish()
        return file_checksum(self.path)


class _HashingReader(io.RawIOBase):
    """A raw binary file that feeds every byte read through it to sha256. ``finish()`` hashes what was not read
    (after ``--limit``, or an error) and returns the file's checksum."""

    def __init__(self, path: Path):
        self._path = path
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        self._digest = hashlib.sha256()
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self._file.readinto(buffer)
        if count:
            with memoryview(buffer) as view, view[:count] as data:
                self._digest.update(data)
            self.consumed += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()

    def finish(self) -> str:
        digest = self._digest.copy()
        hash_file_into(digest, self._path, self.consumed)
        return f"sha256:{digest.hexdigest()}"


def detect_format(spec: str, default: str | None = None) -> str:
    """Which reader ``spec`` needs; raises ``DataError`` for a missing file or an unknown file type (a file whose
    extension says nothing is read with ``default`` when one is given)."""
    path = Path(spec)
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_dict.json", "state.json", "dataset_info.json")):
            return "disk"
        raise DataError(spec, None, "is a directory but not one written by datasets.save_to_disk")
    if path.is_file():
        name = path.name.lower()
        if name.endswith((".jsonl.gz", ".ndjson.gz")):
            return "jsonl"
        kind = _SUFFIXES.get(path.suffix.lower(), default)
        if kind is None:
            raise DataError(spec, None, f"unknown input format {path.suffix or '(no extension)'!r}: expected .jsonl, "
                                        ".jsonl.gz, .json, .parquet, a save_to_disk directory or a hub id "
                                        "(or name one with --input-format)")
        return kind
    if path.exists():
        raise DataError(spec, None, "is neither a file nor a directory")
    if looks_like_hub_id(spec):
        return "hub"
    raise DataError(spec, None, "no such file or directory")


def open_source(spec: str | Path, *, input_format: str = "auto", split: str | None = None,
                default_format: str | None = None) -> RowSource:
    """Open ``spec`` for streaming. ``split`` picks a split of a hub dataset or a saved ``DatasetDict``."""
    spec = str(spec)
    if input_format not in INPUT_FORMATS:
        raise DataError(spec, None, f"unknown input format {input_format!r} (choose {', '.join(INPUT_FORMATS)})")
    kind = detect_format(spec, default_format) if input_format == "auto" else input_format
    if kind != "hub" and not Path(spec).exists():
        raise DataError(spec, None, "no such file or directory")
    if kind in ("jsonl", "json"):
        return _text_source(spec, kind)
    if kind == "parquet":
        return _parquet_source(spec)
    if kind == "disk":
        return _disk_source(spec, split)
    return _hub_source(spec, split)


def iter_rows(spec: str | Path, *, default_format: str | None = "jsonl") -> Iterator[tuple[int, Any]]:
    """``(location, row)`` of a local file, strictly: the first row that is not valid JSON raises ``DataError``
    (``PATH:LINE: invalid JSON (…)``). Blank lines are skipped."""
    path = Path(spec)
    if not path.exists():
        raise DataError(path, None, "no such file")
    source = open_source(path, default_format=default_format)
    for location, row in source.rows():
        if type(row) is BadJSON:
            raise DataError(path, location, row.message)
        yield location, row


# --- JSON Lines and JSON arrays ----------------------------------------------------------------------------------

def _text_source(spec: str, kind: str) -> RowSource:
    path = Path(spec)
    gzipped = path.name.lower().endswith(".gz")
    if kind == "json" and not gzipped:
        with path.open("rb") as handle:
            if handle.read(4096).lstrip(_BOM + b" \t\r\n").startswith(b"["):
                return RowSource(spec, "json", path, path.stat().st_size, "bytes", _iter_json_array)
    return RowSource(spec, "jsonl.gz" if gzipped else "jsonl", path, path.stat().st_size, "bytes", _iter_jsonl)


def _iter_jsonl(source: RowSource) -> Iterator[tuple[int, Any]]:
    buffered = io.BufferedReader(source._reader, _CHUNK)
    handle = gzip.GzipFile(fileobj=buffered, mode="rb") if source.kind == "jsonl.gz" else buffered
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    line_number = 0
    with handle, buffered:
        try:
            for line in handle:
                line_number += 1
                try:
                    yield line_number, loads(line)
                except decode_error as error:
                    if line_number == 1 and line.startswith(_BOM):
                        yield from _retry_without_bom(line)
                    elif line.strip():
                        yield line_number, BadJSON(_json_problem(line, error.msg))
        except (EOFError, OSError, zlib.error) as error:  # gzip: truncated, not gzip, corrupt
            raise DataError(source.name, line_number + 1, _read_problem(error, source.kind)) from None


def decode_line(line: bytes) -> Any:
    """One JSON Lines line → its value, or a ``BadJSON`` saying what is wrong (bad UTF-8, NaN / Infinity, syntax),
    for readers that seek to single lines (``_iter_jsonl`` inlines the same for speed)."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return BadJSON(_json_problem(line, error.msg))


def _retry_without_bom(line: bytes) -> Iterator[tuple[int, Any]]:
    try:
        yield 1, orjson.loads(line[3:])
    except orjson.JSONDecodeError as error:
        if line[3:].strip():
            yield 1, BadJSON(_json_problem(line[3:], error.msg))


def _read_problem(error: BaseException, kind: str) -> str:
    if kind != "jsonl.gz":
        return f"cannot read the file ({_first_line(error)})"
    if isinstance(error, EOFError):
        return "unreadable gzip data (the file is truncated)"
    if isinstance(error, gzip.BadGzipFile):
        return "unreadable gzip data (not a gzip file)"
    return f"unreadable gzip data ({_first_line(error)})"


def _json_problem(line: bytes, message: str) -> str:
    """The message for a line orjson refused: a precise one for bad UTF-8 and for NaN / Infinity."""
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not valid UTF-8 (byte 0x{line[error.start]:02x} at byte {error.start + 1} of the line)"
    for constant in ("NaN", "Infinity"):
        if constant.encode() in line:
            try:
                json.loads(line, parse_constant=_refuse_constant)
            except _NonStandardConstant as refused:
                return f"invalid JSON ({refused} is not a JSON number)"
            except ValueError:
                break
    return f"invalid JSON ({message})"


class _NonStandardConstant(ValueError):
    pass


class _NotUTF8(Exception):
    def __init__(self, line: int, byte: int):
        super().__init__(line, byte)
        self.line, self.byte = line, byte


_STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')


def _constant_position(text: str, start: int) -> int:
    """Where the first NaN / Infinity outside a string lies in ``text`` from ``start``."""
    for match in _STRING_OR_CONSTANT.finditer(text, start):
        if match.group(1):
            return match.start()
    return start


def _refuse_constant(name: str):
    raise _NonStandardConstant(name)


def _iter_json_array(source: RowSource) -> Iterator[tuple[int, Any]]:
    """Decode a top-level JSON array one element at a time with ``JSONDecoder.raw_decode`` on a sliding buffer,
    so memory holds one element plus a chunk."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant)
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with io.BufferedReader(source._reader, _CHUNK) as handle:
        buffer, pos, eof, line, first_chunk = "", 0, False, 1, True

        def refill() -> bool:
            nonlocal buffer, pos, eof, first_chunk
            data = handle.read(_CHUNK)
            if not data:
                eof = True
                try:
                    utf8.decode(b"", final=True)
                except UnicodeDecodeError:  # the file ends inside a multi-byte character
                    pending = utf8.getstate()[0]
                    raise _NotUTF8(line + buffer.count("\n", pos), pending[0]) from None
                return False
            if first_chunk and data.startswith(_BOM):
                data = data[3:]
            first_chunk = False
            try:
                text = utf8.decode(data)
            except UnicodeDecodeError as error:
                bad_line = line + buffer.count("\n", pos) + error.object[:error.start].count(b"\n")
                raise _NotUTF8(bad_line, error.object[error.start]) from None
            buffer = buffer[pos:] + text
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

        def fatal(at: int, message: str) -> tuple[int, BadJSON]:
            return line + buffer.count("\n", pos, at), BadJSON(message, fatal=True)

        try:
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
                        yield fatal(error.pos, f"invalid JSON ({error.msg})")
                        return
                    except _NonStandardConstant as refused:
                        yield fatal(_constant_position(buffer, pos), f"invalid JSON ({refused} is not a JSON number)")
                        return
                start_line = line
                line += buffer.count("\n", pos, end)
                pos = end
                yield start_line, value
        except _NotUTF8 as error:
            yield error.line, BadJSON(f"not valid UTF-8 (byte 0x{error.byte:02x})", fatal=True)


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

    for batch in pq.ParquetFile(source.path).iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            source._rows_read += 1
            yield source._rows_read, row


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
        for table in dataset.iter(batch_size=_BATCH):
            for row in table.to_pylist():
                source._rows_read += 1
                yield source._rows_read, row

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
        iterator = iter(dataset)
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                return
            except Exception as error:
                raise DataError(spec, source._rows_read + 1,
                                f"reading from the hub failed ({_first_line(error)})") from None
            source._rows_read += 1
            yield source._rows_read, row

    return RowSource(spec, "hub", None, None, "rows", rows)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
