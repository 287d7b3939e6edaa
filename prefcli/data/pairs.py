"""Any pair dataset → prefcli pair records, by naming its prompt / chosen / rejected fields.

A completion field may hold a string, or a chat message list whose last message is the assistant's answer (the
messages before it are the conversation so far, used as the prompt: this is UltraFeedback-binarized's layout).
A prompt field may hold a plain string (one user turn), an Anthropic-style ``\\n\\nHuman: …\\n\\nAssistant:``
text (parsed into turns), or a message list. Without a prompt field, Anthropic-HH-style full transcripts in
``chosen`` / ``rejected`` are split at their last ``Assistant:`` turn. Field names may be dotted paths into nested
objects (``data.question``). Other scalar fields of the row are kept in ``meta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefcli.data.nectar import parse_nectar_prompt, row_extras
from prefcli.data.records import RecordError, normalize_prompt
from prefcli.data.runner import Converter, InvalidRow, SkipRow
from prefcli.data.transforms import unpaired_record

FORMATS = ("pairs", "unpaired")
_MISSING = object()


@dataclass(frozen=True)
class PairFields:
    """Which row fields hold the prompt, the chosen and rejected completions, and the id."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    id: str = "id"


def get_field(row: dict, name: str):
    """``row[name]``, following dots into nested objects; ``_MISSING`` when absent."""
    value: Any = row
    for part in name.split("."):
        if type(value) is not dict or part not in value:
            return _MISSING
        value = value[part]
    return value


def _as_messages(value, field: str) -> list[dict]:
    if isinstance(value, str):
        try:
            return parse_nectar_prompt(value)
        except ValueError as error:
            raise InvalidRow(field, str(error), "bad prompt") from None
    try:
        return normalize_prompt(value)
    except RecordError as error:
        reason = "bad prompt" if isinstance(value, list) else f"mistyped {field}"
        raise InvalidRow(error.field.replace("prompt", field, 1), str(error), reason) from None


def _completion(value, field: str) -> tuple[list[dict] | None, str]:
    """``(conversation before the answer or None, answer text)`` of a completion field."""
    if value is _MISSING or value is None:
        raise InvalidRow(field, "missing", f"missing {field}")
    if isinstance(value, str):
        if not value or value.isspace():
            raise InvalidRow(field, "is empty", f"empty {field}")
        return None, value
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRow(field, f"must be a string or a list of messages, got {type(value).__name__}",
                         f"mistyped {field}")
    if not value:
        raise InvalidRow(field, "is an empty message list", f"empty {field}")
    last = value[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant":
        raise InvalidRow(f"{field}[{len(value) - 1}]", "the last message must be the assistant's answer",
                         f"mistyped {field}")
    text = last.get("content")
    if not isinstance(text, str):
        raise InvalidRow(f"{field}[{len(value) - 1}].content", "must be a string", f"mistyped {field}")
    if not text or text.isspace():
        raise InvalidRow(f"{field}[{len(value) - 1}].content", "is empty", f"empty {field}")
    before = None
    if len(value) > 1:
        try:
            before = normalize_prompt(value[:-1])
        except RecordError as error:
            raise InvalidRow(error.field.replace("prompt", field, 1), str(error), f"mistyped {field}") from None
    return before, text


def split_transcript(text: str) -> tuple[str, str] | None:
    """``("\\n\\nHuman: …\\n\\nAssistant:", answer)`` from an Anthropic-HH transcript, or None if it is not one."""
    marker = "\n\nAssistant:"
    cut = text.rfind(marker)
    if cut < 0 or "Human:" not in text[:cut]:
        return None
    return text[:cut + len(marker)], text[cut + len(marker):].strip()


def pair_parts(row, fields: PairFields) -> tuple[list[dict], str, str]:
    """Validate a row and return ``(prompt messages, chosen, rejected)``; raises ``InvalidRow`` / ``SkipRow``."""
    if type(row) is not dict:
        raise InvalidRow(None, f"row must be a JSON object, got {type(row).__name__}", "not an object")
    chosen_before, chosen = _completion(get_field(row, fields.chosen), fields.chosen)
    rejected_before, rejected = _completion(get_field(row, fields.rejected), fields.rejected)
    prompt_value = get_field(row, fields.prompt)
    if chosen_before is not None or rejected_before is not None:
        if chosen_before is not None and rejected_before is not None and chosen_before != rejected_before:
            raise InvalidRow(fields.rejected, f"its conversation before the answer differs from {fields.chosen}'s",
                             "prompt mismatch")
        prompt = chosen_before if chosen_before is not None else rejected_before
    elif prompt_value is not _MISSING and prompt_value is not None:
        prompt = _as_messages(prompt_value, fields.prompt)
    else:
        chosen_split, rejected_split = split_transcript(chosen), split_transcript(rejected)
        if chosen_split is None or rejected_split is None:
            raise InvalidRow(fields.prompt, "missing", f"missing {fields.prompt}")
        if chosen_split[0] != rejected_split[0]:
            raise InvalidRow(fields.rejected, f"its conversation before the answer differs from {fields.chosen}'s",
                             "prompt mismatch")
        prompt = _as_messages(chosen_split[0], fields.chosen)
        chosen, rejected = chosen_split[1], rejected_split[1]
        for name, text in ((fields.chosen, chosen), (fields.rejected, rejected)):
            if not text:
                raise InvalidRow(name, "the last Assistant turn is empty", f"empty {name}")
    if chosen == rejected:
        raise SkipRow("identical chosen and rejected")
    return prompt, chosen, rejected


def pair_records(record_id, prompt, chosen: str, rejected: str, meta: dict, fmt: str) -> list[dict]:
    """One pair record, or (``unpaired``) a desirable and an undesirable record."""
    if fmt == "unpaired":
        return [unpaired_record(record_id, "chosen", prompt, chosen, True, meta),
                unpaired_record(record_id, "rejected", prompt, rejected, False, meta)]
    return [{"id": record_id, "prompt": prompt, "chosen": chosen, "rejected": rejected, "meta": meta}]


def pairs_converter(fields: PairFields, fmt: str = "pairs") -> Converter:
    """A converter for ``prefcli prepare pairs``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    used = tuple(name.split(".")[0] for name in (fields.prompt, fields.chosen, fields.rejected, fields.id))

    def convert(row, location: int) -> list[dict]:
        prompt, chosen, rejected = pair_parts(row, fields)
        record_id = get_field(row, fields.id)
        record_id = record_id if type(record_id) in (str, int) else location
        return pair_records(record_id, prompt, chosen, rejected, row_extras(row, used), fmt)

    return convert

