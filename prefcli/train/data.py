"""Read the training records, check they hold what the loss needs, and turn them into tokenized examples.

Which records a loss trains on follows from its capability flags, never its name:

- ``unpaired`` losses (kto, aot-unpaired): unpaired records (``completion`` + ``label``); pair records are also
  accepted and split into one desirable (chosen) and one undesirable (rejected) example.
- ``needs_candidates`` losses (mcpo, rnce, infonca): ``chosen`` + ``candidates`` with at least ``negatives``
  candidates; a pair record without candidates counts as one candidate (its ``rejected``).
- every other loss: pair records (``chosen`` + ``rejected``), including candidate records that have ``rejected``.
- ``chosen_only`` losses (sft): any record with ``prompt`` + ``chosen`` (``rejected`` / ``candidates`` optional and
  ignored). They train in the pair layout with an empty rejected completion (its EOS alone), which the loss ignores.

Every check runs before a model is loaded; the first failing record is reported as ``PATH:LINE: field: message``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from prefcli.data.records import RecordError, iter_numbered_records, record_kind, validate_record
from prefcli.errors import DataError
from prefcli.train.tokenize import ChatEncoder, Example, TruncationStats

PAIR, CANDIDATES, UNPAIRED = "pair", "candidates", "unpaired"


def data_layout(loss) -> str:
    """The example layout a loss needs, from its capability flags."""
    if getattr(loss, "unpaired", False):
        return UNPAIRED
    if getattr(loss, "needs_candidates", False):
        return CANDIDATES
    return PAIR


@dataclass
class LoadedRecords:
    path: Path
    records: list[tuple[int, dict]]      # (line number, validated record)
    layout: str
    desirable: int = 0
    undesirable: int = 0
    chosen_only: bool = False


def load_records(path: str | Path, loss, loss_name: str) -> LoadedRecords:
    """All records of ``path``, each checked against what ``loss`` needs (see the module docstring)."""
    path = Path(path)
    layout = data_layout(loss)
    negatives = int(getattr(loss, "negatives", 1) or 1)
    loaded = LoadedRecords(path, [], layout, chosen_only=bool(getattr(loss, "chosen_only", False)))
    if loaded.chosen_only:
        loaded.records = list(_iter_chosen_records(path, loss_name))
        if not loaded.records:
            raise DataError(path, None, "contains no records")
        return loaded
    for line, record in iter_numbered_records(path):
        kind = record_kind(record)
        if layout == PAIR and kind != "pair":
            field = "rejected"
            raise DataError(path, line, f"missing: --loss {loss_name} trains on pairs (chosen + rejected), "
                                        f"this is a {kind} record", field=field)
        if layout == CANDIDATES:
            if kind == "unpaired":
                raise DataError(path, line, f"missing: --loss {loss_name} trains on candidate sets (chosen + "
                                            "candidates), this is an unpaired record", field="candidates")
            count = len(record.get("candidates") or [record.get("rejected")])
            if count < negatives:
                raise DataError(path, line, f"has {count} candidate{'s' if count != 1 else ''}; --loss "
                                            f"{loss_name} with {negatives} negatives needs at least {negatives}",
                                field="candidates")
        if layout == UNPAIRED:
            if kind == "candidates":
                raise DataError(path, line, f"missing: --loss {loss_name} trains on unpaired records "
                                            "(completion + label) or pairs", field="completion")
            if kind == "unpaired":
                loaded.desirable += record["label"]
                loaded.undesirable += not record["label"]
            else:
                loaded.desirable += 1
                loaded.undesirable += 1
        loaded.records.append((line, record))
    if not loaded.records:
        raise DataError(path, None, "contains no records")
    if layout == UNPAIRED:
        for count, what in ((loaded.desirable, "desirable (label true)"),
                            (loaded.undesirable, "undesirable (label false)")):
            if count == 0:
                raise DataError(path, None, f"has no {what} examples; --loss {loss_name} needs both", field="label")
    return loaded


def build_examples(loaded: LoadedRecords, encoder: ChatEncoder) -> tuple[list[Example], TruncationStats]:
    """Tokenize every record once into the loss's layout; returns the examples and truncation counts."""
    stats = TruncationStats()
    examples: list[Example] = []
    if loaded.layout == UNPAIRED:
        texts: list[tuple[int, list, str, bool]] = []  # (record index, prompt, completion, label)
        for index, (_line, record) in enumerate(loaded.records):
            if record_kind(record) == "unpaired":
                texts.append((index, record["prompt"], record["completion"], record["label"]))
            else:
                texts.append((index, record["prompt"], record["chosen"], True))
                texts.append((index, record["prompt"], record["rejected"], False))
        for position, (index, prompt, completion, label) in enumerate(texts):
            kl_completion = texts[_next_other_record(texts, position)][2]
            prompt_ids, completions = encoder.encode(prompt, [completion, kl_completion], stats, position)
            examples.append(Example(prompt_ids, completions, label=label,
                                    source_line=loaded.records[index][0]))
        return examples, stats
    for index, (line, record) in enumerate(loaded.records):
        if loaded.chosen_only:
            texts = [record["chosen"], ""]
        elif loaded.layout == PAIR:
            texts = [record["chosen"], record["rejected"]]
        else:
            texts = [record["chosen"], *(record.get("candidates") or [record["rejected"]])]
        prompt_ids, completions = encoder.encode(record["prompt"], texts, stats, index)
        examples.append(Example(prompt_ids, completions, source_line=line))
    return examples, stats


def _iter_chosen_records(path: Path, loss_name: str):
    """``(line, record)`` for every record with ``prompt`` + ``chosen``, validated like any record."""
    if not path.is_file():
        raise DataError(path, None, "no such file")
    with path.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, 1):
            if not text.strip():
                continue
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(path, line, f"invalid JSON ({error.msg})") from None
            try:
                if isinstance(raw, dict) and ("completion" in raw or "label" in raw):
                    raise RecordError("chosen", f"missing: --loss {loss_name} trains on chosen completions "
                                                "(prompt + chosen), this is an unpaired record")
                bare = isinstance(raw, dict) and not ("rejected" in raw or "candidates" in raw)
                record = validate_record({**raw, "rejected": raw.get("chosen")} if bare else raw)
            except RecordError as error:
                raise DataError(path, line, str(error), field=error.field) from None
            if bare:
                del record["rejected"]
            yield line, record


def _next_other_record(texts, position: int) -> int:
    """The next position (cyclically) whose completion comes from another record: a mismatched pair for KTO."""
    count = len(texts)
    for step in range(1, count):
        candidate = (position + step) % count
        if texts[candidate][0] != texts[position][0]:
            return candidate
    return position
