"""The prompts an online run samples for: any JSONL / JSON / Parquet records with a ``prompt`` field (prompt-only
records ``{"id", "prompt"}`` or full pair / candidate / unpaired records, whose completions are ignored)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prefcli.data.records import RecordError, normalize_prompt
from prefcli.errors import DataError


@dataclass(frozen=True)
class PromptItem:
    id: str
    prompt: list[dict]
    line: int


def read_prompts(path: str | Path, limit: int | None = None) -> tuple[list[PromptItem], int]:
    """The distinct prompts of ``path`` in file order, and how many repeated prompts were dropped (unpaired data
    holds each prompt twice). A missing or empty file, or a row without a usable prompt, is a ``DataError``."""
    import json

    from prefcli.data.readers import BadJSON, open_source

    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such file (expected prompts: JSONL records with a prompt field)")
    source = open_source(path)
    items: list[PromptItem] = []
    seen: set[str] = set()
    duplicates = 0
    for line, row in source.rows():
        if isinstance(row, BadJSON):
            raise DataError(path, line, row.message)
        if not isinstance(row, dict):
            raise DataError(path, line, "must be a JSON object with a prompt field", field="record")
        try:
            messages = normalize_prompt(row.get("prompt"))
        except RecordError as error:
            raise DataError(path, line, str(error) if row.get("prompt") is not None else "missing",
                            field=error.field) from None
        key = json.dumps(messages, ensure_ascii=False, sort_keys=True)
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        record_id = row.get("id")
        items.append(PromptItem(str(record_id) if record_id is not None else f"line-{line}", messages, line))
        if limit is not None and len(items) >= limit:
            break
    if not items:
        raise DataError(path, None, "contains no prompts")
    return items, duplicates


def instruction_text(messages: list[dict]) -> str:
    """What the judge reads as the instruction: a single user turn as is; a conversation as a transcript whose
    last user turn is the one being answered."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names[m['role']]}: {m['content']}" for m in messages)
