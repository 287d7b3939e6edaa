"""Record-to-record transforms: unpairing (for KTO / unpaired AOT) and MC-PO's noise injection.

* Unpairing (AOT, Melnyk et al., NeurIPS 2024, "paired vs unpaired"): a pair or candidate set becomes one
  desirable record (``label: true``, the chosen completion) and one or all undesirable records (``label: false``).
* Noise injection (MC-PO, arXiv 2502.04567, Sec. 5 "robustness to noisy candidates"): a candidate made by
  swapping two random tokens of the chosen completion, so it is syntactically close to the chosen one. It is
  appended to the candidates (MC-PO then picks among them), and ``rejected`` is redrawn uniformly from the
  augmented candidates, as the paper's DPO baseline under noise does (Table 2, "DPO": sometimes the noise,
  sometimes a real answer); DPO(noise) (``--as-rejected``) always uses the noise sample. Tokens are
  whitespace-separated words:
  the text is split on runs of whitespace, two words at different positions (and with different text) trade
  places, and every whitespace run stays where it was.
"""

from __future__ import annotations

import re

from prefcli.data.records import RecordError, record_kind, validate_record
from prefcli.data.runner import Converter, InvalidRow, SkipRow
from prefcli.data.seeding import draw_index, row_random

NEGATIVES = ("one", "all")
PAIRINGS = ("keep", "shuffle", "one-sided")
_WHITESPACE = re.compile(r"(\s+)")


def unpaired_record(record_id, suffix: str, prompt, completion: str, label: bool, meta: dict) -> dict:
    """An unpaired record; its id is ``<pair id>:<suffix>`` and ``meta.pair_id`` points back to the pair."""
    return {"id": f"{record_id}:{suffix}", "prompt": prompt, "completion": completion, "label": label,
            "meta": {"pair_id": record_id, **meta}}


def negatives_of(record: dict, negatives: str, seed: int, key) -> list[str]:
    """The undesirable completions of a pair or candidate record.

    ``one``: the record's ``rejected``, or (candidate sets without one) a candidate drawn uniformly with the
    same per-row draw ``prepare nectar`` uses. ``all``: ``rejected`` and every candidate, duplicates removed,
    in file order.
    """
    candidates = record.get("candidates") or []
    rejected = record.get("rejected")
    if negatives == "one":
        if rejected is not None:
            return [rejected]
        return [candidates[draw_index(seed, "rejected", key, len(candidates))]]
    pool = ([rejected] if rejected is not None else []) + list(candidates)
    return list(dict.fromkeys(pool))


def unpair_record(record: dict, negatives: str, seed: int, key) -> list[dict]:
    """Split a validated pair/candidate record into a desirable record followed by its undesirable records."""
    record_id, prompt = record["id"], record["prompt"]
    bad = negatives_of(record, negatives, seed, key)
    out = [unpaired_record(record_id, "chosen", prompt, record["chosen"], True, {})]
    if len(bad) == 1 and negatives == "one":
        out.append(unpaired_record(record_id, "rejected", prompt, bad[0], False, {}))
    else:
        out += [unpaired_record(record_id, f"rejected:{k}", prompt, text, False, {}) for k, text in enumerate(bad)]
    return out


def one_sided(records: list[dict], seed: int, key) -> list[dict]:
    """Keep only one side of a prompt's unpaired records (a seeded fair coin: the desirable record, or its
    undesirable ones), so no prompt appears with both labels."""
    keep_desirable = draw_index(seed, "one-sided", key, 2) == 0
    return [record for record in records if record["label"] is keep_desirable]


def validated_pair_or_candidates(row, location: int) -> dict:
    """Validate a record read back from a prefcli file; unpaired records cannot be unpaired or noised again."""
    try:
        record = validate_record(row, location)
        kind = record_kind(record)
    except RecordError as error:
        reason = "not an object" if error.field == "record" else f"invalid {error.field.split('[')[0]}"
        raise InvalidRow(error.field, str(error), reason) from None
    if kind == "unpaired":
        raise InvalidRow("label", "is an unpaired record; a pair or candidate record is needed", "unpaired record")
    return record


def swap_two_tokens(text: str, rng) -> tuple[str, tuple[int, int]] | None:
    """``text`` with two whitespace-separated tokens of different text swapped, and their word positions.

    The two positions are drawn uniformly among pairs whose tokens differ (rejection sampling; a text where
    almost every token is the same falls back to one random token and a random different one). ``None`` when
    there are fewer than two distinct tokens.
    """
    pieces = _WHITESPACE.split(text)
    words = [index for index, piece in enumerate(pieces) if piece and not piece.isspace()]
    if len(words) < 2 or len({pieces[i] for i in words}) < 2:
        return None
    for _ in range(64):
        first, second = sorted(rng.sample(range(len(words)), 2))
        if pieces[words[first]] != pieces[words[second]]:
            break
    else:
        first = rng.randrange(len(words))
        others = [k for k in range(len(words)) if pieces[words[k]] != pieces[words[first]]]
        first, second = sorted((first, rng.choice(others)))
    a, b = words[first], words[second]
    pieces[a], pieces[b] = pieces[b], pieces[a]
    return "".join(pieces), (first, second)


def add_noise(record: dict, *, as_rejected: bool, seed: int, key) -> dict:
    """MC-PO noise injection on a validated pair/candidate record.

    The noise sample (two tokens of ``chosen`` swapped) is appended to ``candidates`` (a pair without candidates
    gets ``[rejected, noise]``). ``rejected`` is then the noise sample (``as_rejected``, DPO(noise)) or a seeded
    uniform draw from the augmented candidates (the DPO baseline under noise), so DPO on either file sees the
    noise. ``meta.rejected_index`` says which candidate ``rejected`` is, ``meta.rejected_is_noise`` whether it is
    the noise sample.
    """
    swapped = swap_two_tokens(record["chosen"], row_random(seed, "noise", key))
    if swapped is None:
        raise SkipRow("chosen has fewer than two distinct tokens")
    noise, positions = swapped
    candidates = list(record.get("candidates") or ([record["rejected"]] if "rejected" in record else []))
    candidates.append(noise)
    noise_index = len(candidates) - 1
    pick = noise_index if as_rejected else draw_index(seed, "noise-rejected", key, len(candidates))
    out = {"id": record["id"], "prompt": record["prompt"], "chosen": record["chosen"],
           "rejected": candidates[pick], "candidates": candidates,
           "meta": {**record["meta"], "noise_index": noise_index, "noise_swapped_words": list(positions),
                    "rejected_index": pick, "rejected_is_noise": pick == noise_index}}
    return out


def unpair_converter(negatives: str = "one", pairing: str = "keep", seed: int = 0) -> Converter:
    """A converter for ``prefcli prepare unpair`` (``shuffle`` pairing is done by the writer, not here)."""
    if negatives not in NEGATIVES or pairing not in PAIRINGS:
        raise ValueError(f"negatives must be one of {NEGATIVES} and pairing one of {PAIRINGS}")

    def convert(row, location: int) -> list[dict]:
        records = unpair_record(validated_pair_or_candidates(row, location), negatives, seed, location)
        return one_sided(records, seed, location) if pairing == "one-sided" else records

    return convert


def noise_converter(as_rejected: bool = False, seed: int = 0) -> Converter:
    """A converter for ``prefcli prepare noise``."""

    def convert(row, location: int) -> list[dict]:
        return [add_noise(validated_pair_or_candidates(row, location), as_rejected=as_rejected, seed=seed,
                          key=location)]

    return convert
