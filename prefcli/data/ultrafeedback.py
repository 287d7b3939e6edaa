"""UltraFeedback-binarized (Cui et al., 2024; the ``HuggingFaceH4/ultrafeedback_binarized`` layout) → pair records.

Row: ``prompt`` (string), ``prompt_id``, ``chosen`` / ``rejected`` as chat message lists whose last message is the
assistant's answer and whose earlier messages are the prompt, ``score_chosen`` / ``score_rejected`` (numbers).
The record's ``id`` is ``prompt_id`` (else the row's location); ``meta`` keeps both scores.
"""

from __future__ import annotations

import math

from prefcli.data.pairs import FORMATS, PairFields, pair_parts, pair_records
from prefcli.data.runner import Converter, InvalidRow, SkipRow

FIELDS = PairFields(prompt="prompt", chosen="chosen", rejected="rejected", id="prompt_id")


def _score(row: dict, field: str) -> float:
    value = row.get(field)
    if type(value) not in (int, float) or not math.isfinite(value):
        if value is None:
            raise InvalidRow(field, "missing", f"missing {field}")
        what = "a finite number" if type(value) in (int, float) else "a number"
        raise InvalidRow(field, f"must be {what}, got {value!r}", f"mistyped {field}")
    return value


def ultrafeedback_converter(fmt: str = "pairs", min_score_gap: float | None = None) -> Converter:
    """A converter for ``prefcli prepare ultrafeedback``; rows whose ``score_chosen - score_rejected`` is below
    ``min_score_gap`` are skipped (counted)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose {', '.join(FORMATS)})")
    if min_score_gap is not None and not math.isfinite(min_score_gap):
        raise ValueError(f"--min-score-gap must be a finite number, got {min_score_gap}")

    def convert(row, location: int) -> list[dict]:
        prompt, chosen, rejected = pair_parts(row, FIELDS)
        score_chosen, score_rejected = _score(row, "score_chosen"), _score(row, "score_rejected")
        if min_score_gap is not None and score_chosen - score_rejected < min_score_gap:
            raise SkipRow(f"score gap below {min_score_gap:g}")
        record_id = row.get("prompt_id")
        record_id = record_id if type(record_id) in (str, int) else location
        meta = {"score_chosen": score_chosen, "score_rejected": score_rejected}
        return pair_records(record_id, prompt, chosen, rejected, meta, fmt)

    return convert
