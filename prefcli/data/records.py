"""The record contract shared by ``prepare``, ``train`` and users' scripts (see the design's "Records").

One JSON object per line. ``prompt`` is a list of chat messages (a plain string means one user turn);
completions are strings; ``id`` is optional (a record without one is named by its line number, as TRL needs no id).

| kind       | fields                                                                   |
|------------|--------------------------------------------------------------------------|
| pair       | id, prompt, chosen, rejected, optional candidates, meta                  |
| candidates | id, prompt, chosen, candidates (>= 1), meta                              |
| unpaired   | id, prompt, completion, label (true = desirable), meta                   |

Records are plain dicts: they are read and written by the million, and a dict is what ``json`` gives.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prefcli.data.readers import iter_rows
from prefcli.errors import DataError

ROLES = ("system", "user", "assistant")
KINDS = ("pair", "candidates", "unpaired")


class RecordError(ValueError):
    """A record that breaks the contract; ``field`` names the offending field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


def normalize_prompt(prompt) -> list[dict]:
    """Return ``prompt`` as a list of ``{"role", "content"}`` messages; a string is one user turn."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise RecordError("prompt", "is empty")
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise RecordError("prompt", "must be a non-empty string or list of messages")
    messages = []
    for index, message in enumerate(prompt):
        if not isinstance(message, dict):
            raise RecordError(f"prompt[{index}]", "must be an object with role and content")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RecordError(f"prompt[{index}].role", f"must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise RecordError(f"prompt[{index}].content", "must be a string")
        messages.append({"role": role, "content": content})
    return messages


def _completion(record: dict, field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise RecordError(field, "missing" if value is None else "must be a string")
    if not value.strip():
        raise RecordError(field, "is empty")
    return value


def record_kind(record: dict) -> str:
    """The record's kind, judged by its fields: ``pair``, ``candidates`` or ``unpaired``."""
    if "completion" in record or "label" in record:
        return "unpaired"
    if "rejected" in record:
        return "pair"
    if "candidates" in record:
        return "candidates"
    raise RecordError("rejected", "missing: a record needs rejected, candidates, or completion + label")


def validate_record(record, location: int | None = None) -> dict:
    """Check ``record`` against the contract and return it normalized (prompt as messages, meta present; a
    missing ``id`` becomes ``location``, the record's line number).

    Raises ``RecordError`` naming the first offending field.
    """
    if not isinstance(record, dict):
        raise RecordError("record", "must be a JSON object")
    kind = record_kind(record)
    out = {"id": record.get("id", location), "prompt": normalize_prompt(record.get("prompt"))}
    if out["id"] is None:
        raise RecordError("id", "missing")
    if kind == "unpaired":
        out["completion"] = _completion(record, "completion")
        if not isinstance(record.get("label"), bool):
            raise RecordError("label", "must be true or false")
        out["label"] = record["label"]
    else:
        out["chosen"] = _completion(record, "chosen")
        if kind == "pair":
            out["rejected"] = _completion(record, "rejected")
        if "candidates" in record:
            candidates = record["candidates"]
            if not isinstance(candidates, list) or not candidates:
                raise RecordError("candidates", "must be a non-empty list of strings")
            for index, candidate in enumerate(candidates):
                if not isinstance(candidate, str) or not candidate.strip():
                    raise RecordError(f"candidates[{index}]", "must be a non-empty string")
            out["candidates"] = list(candidates)
    meta = record.get("meta", {})
    if not isinstance(meta, dict):
        raise RecordError("meta", "must be an object")
    out["meta"] = meta
    return out


def iter_numbered_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Stream ``(line_number, record)`` from a JSONL file (or any file ``prefcli.data.readers`` reads), each
    validated; the first bad line raises ``DataError`` (path:line: field)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file")
    for line_number, raw in iter_rows(path):
        try:
            yield line_number, validate_record(raw, line_number)
        except RecordError as error:
            raise DataError(path, line_number, str(error), field=error.field) from None


def read_records(path: str | Path, limit: int | None = None) -> Iterator[dict]:
    """Stream validated records from a JSONL file (at most ``limit``); an empty file raises ``DataError``."""
    count = 0
    for _, record in iter_numbered_records(path):
        yield record
        count += 1
        if limit is not None and count >= limit:
            return
    if count == 0:
        raise DataError(path, None, "contains no records")
