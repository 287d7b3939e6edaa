"""Nectar (Zhu et al., 2023) → prefcli records, as in MC-PO (arXiv 2502.04567, Sec. 5 "base setup"): the rank-1
answer is chosen, the next ``skip_ranks`` answers are dropped to cut label noise, the remaining answers are the
candidates and a pair's ``rejected`` is drawn uniformly from them.

Input row: ``prompt`` in Anthropic form ``"\\n\\nHuman: …\\n\\nAssistant: …\\n\\nHuman: …\\n\\nAssistant:"``
(or already a list of chat messages), ``answers: [{answer, model, rank}]`` in any order with int or float ranks,
optional ``id``; any other field (Nectar's ``turns``, ``num_responses``, ``source``, ``good_natured``) is kept in
``meta``.

Choices this module makes (documented in the README):

* Ties: answers are ordered by ``(rank, position in the row)``, a stable sort, so among equal ranks the one
  listed first wins. The order is fully deterministic.
* ``max_candidates`` keeps the best-ranked remaining answers; answers that are neither chosen nor candidates are
  listed in ``meta.dropped_*``.
* ``rejected`` is drawn with ``draw_index(seed, "rejected", location, len(candidates))``: it depends only on the
  seed and the row's location (line number), so ``--limit``, skipped rows and streaming never change it, and
  every format draws the same one.
* ``id``: the row's ``id`` when it has one (string or integer), else the row's location (line number in a
  text file, 1-based row number otherwise): unique within the file and stable for the same input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from prefcli.data.records import RecordError, normalize_prompt
from prefcli.data.runner import Converter, InvalidRow, SkipRow
from prefcli.data.seeding import index_drawer
from prefcli.data.transforms import NEGATIVES, unpaired_record

FORMATS = ("candidates", "pairs", "unpaired")
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}
_SCALAR_TYPES = frozenset((str, int, float, bool, type(None)))
_RANK_TYPES = frozenset((int, float))
_INFINITY, _NEGATIVE_INFINITY = float("inf"), float("-inf")


@dataclass(frozen=True)
class NectarOptions:
    """How answers become records; see the module docstring."""

    skip_ranks: int = 1
    max_candidates: int | None = None
    min_candidates: int = 1
    format: str = "candidates"
    negatives: str = "one"
    seed: int = 0

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r} (choose {', '.join(FORMATS)})")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"unknown negatives {self.negatives!r} (choose {', '.join(NEGATIVES)})")
        if self.skip_ranks < 0 or self.min_candidates < 1:
            raise ValueError("skip_ranks must be >= 0 and min_candidates >= 1")
        if self.max_candidates is not None and self.max_candidates < self.min_candidates:
            raise ValueError("max_candidates must be >= min_candidates")


def parse_nectar_prompt(text: str) -> list[dict]:
    """Split an Anthropic-style prompt into chat messages: ``Human`` → user, ``Assistant`` → assistant.

    Every turn is kept (multi-turn conversations stay multi-turn); each turn's text is stripped of the spaces
    and blank lines around it; the final, empty ``Assistant:`` turn (where the answer goes) is dropped. A text
    without any turn marker is one user message, unchanged. Raises ``ValueError`` saying what is wrong.
    """
    if not text.startswith("\n\n"):
        stripped = text.lstrip()
        if stripped.startswith(("Human:", "Assistant:")):
            text = "\n\n" + stripped
    parts = _TURN.split(text)
    if len(parts) == 1:
        if not text.strip():
            raise ValueError("is empty")
        return [{"role": "user", "content": text}]
    if parts[0].strip():
        raise ValueError("has text before the first 'Human:' turn")
    messages = [{"role": _ROLES[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]
    if messages[0]["role"] != "user":
        raise ValueError("must start with a 'Human:' turn")
    if messages[-1]["role"] == "assistant":
        if messages[-1]["content"]:
            raise ValueError("must end with an empty 'Assistant:' turn (the answer's place)")
        messages.pop()
    for number, message in enumerate(messages, 1):
        if not message["content"]:
            raise ValueError(f"turn {number} ({message['role']}) is empty")
    return messages


def row_prompt(row: dict, field: str = "prompt") -> list[dict]:
    """The row's prompt as chat messages (Anthropic-style text or a message list); raises ``InvalidRow``."""
    prompt = row.get(field)
    if isinstance(prompt, str):
        try:
            return parse_nectar_prompt(prompt)
        except ValueError as error:
            raise InvalidRow(field, str(error), "bad prompt") from None
    if isinstance(prompt, list):
        try:
            return normalize_prompt(prompt)
        except RecordError as error:
            raise InvalidRow(error.field.replace("prompt", field, 1), str(error), "bad prompt") from None
    if prompt is None:
        raise InvalidRow(field, "missing", f"missing {field}")
    raise InvalidRow(field, f"must be a string or a list of messages, got {type(prompt).__name__}",
                     f"mistyped {field}")


def row_id(row: dict, location: int):
    """The row's own ``id`` (string or integer), else its location."""
    value = row.get("id")
    return value if type(value) in (str, int) else location


def row_extras(row: dict, skip: tuple[str, ...]) -> dict:
    """Other fields of the row worth keeping in ``meta`` (scalars and lists of scalars)."""
    out = {}
    for key, value in row.items():
        if key in skip:
            continue
        kind = type(value)
        if kind in _SCALAR_TYPES:
            out[key] = value
        elif kind is list:
            for item in value:
                if type(item) not in _SCALAR_TYPES:
                    break
            else:
                out[key] = value
    return out


def _answers(row: dict) -> list[tuple[Any, int, str, Any]]:
    """Validated answers as ``(rank, position, text, model)``, best first: tuples sort by rank, then by position
    (unique), so ties keep the row's order and the text is never compared."""
    answers = row.get("answers")
    if type(answers) is not list or not answers:
        _explain_bad_answers(answers)
    entries = []
    append = entries.append
    for position, answer in enumerate(answers):
        try:
            text, rank, model = answer["answer"], answer["rank"], answer.get("model")
        except (KeyError, TypeError, AttributeError):
            _explain_bad_answer(position, answer)
        if (type(text) is not str or not text or text.isspace() or type(rank) not in _RANK_TYPES
                or not _NEGATIVE_INFINITY < rank < _INFINITY or (model is not None and type(model) is not str)
                or type(answer) is not dict):
            _explain_bad_answer(position, answer)
        append((rank, position, text, model))
    entries.sort()
    return entries


def _explain_bad_answers(answers) -> None:
    """Raise the ``InvalidRow`` that says what is wrong with the row's ``answers``."""
    if answers is None:
        raise InvalidRow("answers", "missing", "missing answers")
    if type(answers) is not list:
        raise InvalidRow("answers", f"must be a list, got {type(answers).__name__}", "mistyped answers")
    raise InvalidRow("answers", "is empty (no answers)", "no answers")


def _explain_bad_answer(position: int, answer) -> None:
    """Raise the ``InvalidRow`` that says what is wrong with ``answers[position]``."""
    where = f"answers[{position}]"
    if type(answer) is not dict:
        raise InvalidRow(where, "must be an object with answer, model and rank", "mistyped answers[]")
    text, rank = answer.get("answer"), answer.get("rank")
    if type(text) is not str:
        if text is None:
            raise InvalidRow(f"{where}.answer", "missing", "missing answers[].answer")
        raise InvalidRow(f"{where}.answer", "must be a string", "mistyped answers[].answer")
    if not text or text.isspace():
        raise InvalidRow(f"{where}.answer", "is empty", "empty answer")
    if rank is None:
        raise InvalidRow(f"{where}.rank", "missing", "missing answers[].rank")
    if type(rank) not in _RANK_TYPES:
        raise InvalidRow(f"{where}.rank", f"must be a number, got {rank!r}", "mistyped answers[].rank")
    if not _NEGATIVE_INFINITY < rank < _INFINITY:
        raise InvalidRow(f"{where}.rank", f"must be a finite number, got {rank!r}", "mistyped answers[].rank")
    raise InvalidRow(f"{where}.model", "must be a string", "mistyped answers[].model")


def nectar_converter(options: NectarOptions) -> Converter:
    """A converter (see ``prefcli.data.runner``) turning one Nectar row into records."""
    skip, max_candidates, min_candidates = options.skip_ranks, options.max_candidates, options.min_candidates
    fmt, negatives = options.format, options.negatives
    draw = index_drawer(options.seed, "rejected")
    known = ("prompt", "answers", "id")

    def convert(row, location: int) -> list[dict]:
        if type(row) is not dict:
            raise InvalidRow(None, f"row must be a JSON object, got {type(row).__name__}", "not an object")
        prompt = row_prompt(row)
        entries = _answers(row)
        chosen = entries[0]
        pool = entries[1 + skip:]
        candidates = pool if max_candidates is None else pool[:max_candidates]
        if len(candidates) < min_candidates:
            raise SkipRow("too few answers")
        dropped = entries[1:1 + skip] + pool[len(candidates):]
        record_id = row_id(row, location)
        pick = draw(location, len(candidates))
        rejected = candidates[pick]
        extras = row_extras(row, known)
        if fmt == "unpaired":
            bad = [rejected] if negatives == "one" else candidates
            out = [unpaired_record(record_id, "chosen", prompt, chosen[2], True,
                                   {**extras, "model": chosen[3], "rank": chosen[0]})]
            for k, entry in enumerate(bad):
                suffix = "rejected" if negatives == "one" else f"rejected:{k}"
                out.append(unpaired_record(record_id, suffix, prompt, entry[2], False,
                                           {**extras, "model": entry[3], "rank": entry[0]}))
            return out
        meta = extras
        meta["chosen_model"], meta["chosen_rank"] = chosen[3], chosen[0]
        meta["rejected_model"], meta["rejected_rank"], meta["rejected_index"] = rejected[3], rejected[0], pick
        ranks, _, texts, models = zip(*candidates)
        meta["candidate_models"], meta["candidate_ranks"] = list(models), list(ranks)
        meta["dropped_models"] = [entry[3] for entry in dropped]
        meta["dropped_ranks"] = [entry[0] for entry in dropped]
        record = {"id": record_id, "prompt": prompt, "chosen": chosen[2], "rejected": rejected[2]}
        if fmt == "candidates":
            record["candidates"] = list(texts)
        record["meta"] = meta
        return [record]

    return convert
