"""Read the training records, check they hold what the loss needs, and turn them into tokenized examples.

Which records a loss trains on follows from its capability flags, never its name:

- ``unpaired`` losses (kto, aot-unpaired): unpaired records (``completion`` + ``label``); pair records are also
  accepted and split into one desirable (chosen) and one undesirable (rejected) example.
- ``needs_candidates`` losses (mcpo, rnce, infonca): ``chosen`` + ``candidates`` with at least ``negatives``
  candidates; a pair record without candidates counts as one candidate (its ``rejected``).
- every other loss: pair records (``chosen`` + ``rejected``), including candidate records that have ``rejected``.
- ``chosen_only`` losses (sft): any record with ``prompt`` + ``chosen`` (``rejected`` / ``candidates`` optional and
  ignored). They train in the pair layout with an empty rejected completion (the template's end of turn alone),
  which the loss ignores.

Every check runs before a model is loaded; the first failing record is reported as ``PATH:LINE: field: message``.
The records stay on disk: ``load_records`` keeps a compact index (``record_index``), and ``build_examples``
tokenizes the examples a run needs, in batches, into a memory-mapped cache (``token_cache``) that later runs
reuse and extend; any other example is tokenized when it is first asked for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefcli.data.records import record_kind
from prefcli.errors import DataError
from prefcli.progress import Progress
from prefcli.train.record_index import KINDS, RecordIndex, load_index
from prefcli.train.token_cache import TokenStore
from prefcli.train.tokenize import ChatEncoder, Example, TruncationStats

PAIR, CANDIDATES, UNPAIRED = "pair", "candidates", "unpaired"
CHUNK = 512  # examples per tokenizer batch and per cache commit


def data_layout(loss) -> str:
    """The example layout a loss needs, from its capability flags."""
    if getattr(loss, "unpaired", False):
        return UNPAIRED
    if getattr(loss, "needs_candidates", False):
        return CANDIDATES
    return PAIR


class _RecordSequence(Sequence):
    """``(line number, record)`` pairs read from disk on access (``LoadedRecords.records``)."""

    def __init__(self, index: RecordIndex):
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position):
        if isinstance(position, slice):
            return [self[i] for i in range(*position.indices(len(self)))]
        return int(self.index.lines[position]), self.index.read([position])[position]


@dataclass
class LoadedRecords:
    """The validated records of a data file (indexed, not held) and the examples the loss's layout makes of them.

    Pair and candidate layouts: example ``i`` is record ``i``. Unpaired layout: an unpaired record is one example,
    a pair record two (chosen = desirable, then rejected = undesirable); ``example_record`` / ``example_part``
    map each example to its record and field."""

    path: Path
    index: RecordIndex
    layout: str
    desirable: int = 0
    undesirable: int = 0
    index_cached: bool = False
    chosen_only: bool = False
    example_record: np.ndarray | None = None
    example_part: np.ndarray | None = None

    @property
    def records(self) -> _RecordSequence:
        return _RecordSequence(self.index)

    @property
    def checksum(self) -> str:
        return self.index.checksum

    @property
    def num_examples(self) -> int:
        return len(self.index) if self.example_record is None else len(self.example_record)

    def labels(self) -> list[bool | None]:
        """Each example's label (unpaired layout), else None per example."""
        if self.layout != UNPAIRED:
            return [None] * self.num_examples
        kinds, labels = self.index.kinds[self.example_record], self.index.labels[self.example_record]
        unpaired = kinds == KINDS.index("unpaired")
        return np.where(unpaired, labels == 1, self.example_part == 0).tolist()

    def kl_partner(self, example: int) -> int:
        """The next example (cyclically) from another record: its completion is KTO's mismatched pair."""
        count = self.num_examples
        for step in range(1, min(count, 3)):
            other = (example + step) % count
            if self.example_record[other] != self.example_record[example]:
                return other
        return example


def _check_layout(path: Path, index: RecordIndex, layout: str, loss_name: str, negatives: int,
                  chosen_only: bool) -> None:
    """Raise the error of the first record (by line) that the loss cannot train on."""
    pair, candidates, unpaired, chosen = (KINDS.index(kind) for kind in KINDS)
    kinds = index.kinds
    checks = []  # (bad-record mask, field, message of a bad record)
    if chosen_only:
        checks.append((kinds == unpaired, "chosen", lambda _: f"missing: --loss {loss_name} trains on chosen "
                       "completions (prompt + chosen), this is an unpaired record"))
    else:  # what validate_record says of a record without rejected, candidates or completion
        checks.append((kinds == chosen, "rejected",
                       lambda _: "missing: a record needs rejected, candidates, or completion + label"))
        if layout == PAIR:
            checks.append((kinds != pair, "rejected", lambda i: f"missing: --loss {loss_name} trains on pairs "
                           f"(chosen + rejected), this is a {index.kind(i)} record"))
        if layout == CANDIDATES:
            checks.append((kinds == unpaired, "candidates", lambda _: f"missing: --loss {loss_name} trains on "
                           "candidate sets (chosen + candidates), this is an unpaired record"))
            checks.append(((kinds != unpaired) & (index.alternatives < negatives), "candidates",
                           lambda i: f"has {index.alternatives[i]} candidate{'s' if index.alternatives[i] != 1 else ''}"
                           f"; --loss {loss_name} with {negatives} negatives needs at least {negatives}"))
        if layout == UNPAIRED:
            checks.append((kinds == candidates, "completion", lambda _: f"missing: --loss {loss_name} trains on "
                           "unpaired records (completion + label) or pairs"))
    failures = [(int(np.argmax(mask)), field, message) for mask, field, message in checks if mask.any()]
    if failures:
        first, field, message = min(failures, key=lambda failure: failure[0])
        raise DataError(path, int(index.lines[first]), message(first), field=field)


def load_records(path: str | Path, loss, loss_name: str, *, cache_dir: str | Path | None = None,
                 progress: Progress | None = None) -> LoadedRecords:
    """Index every record of ``path``, each checked against what ``loss`` needs (see the module docstring).
    ``cache_dir`` keeps the index for the next run on the same bytes."""
    path = Path(path)
    layout = data_layout(loss)
    negatives = int(getattr(loss, "negatives", 1) or 1)
    index, cached = load_index(path, cache_dir, progress)
    if not len(index):
        raise DataError(path, None, "contains no records")
    chosen_only = bool(getattr(loss, "chosen_only", False))
    _check_layout(path, index, layout, loss_name, negatives, chosen_only)
    loaded = LoadedRecords(path, index, layout, index_cached=cached, chosen_only=chosen_only)
    if layout == UNPAIRED:
        unpaired = index.kinds == KINDS.index("unpaired")
        parts = np.where(unpaired, 1, 2)
        loaded.example_record = np.repeat(np.arange(len(index)), parts)
        starts = np.cumsum(parts) - parts
        loaded.example_part = np.arange(len(loaded.example_record)) - np.repeat(starts, parts)
        loaded.desirable = int((index.labels[unpaired] == 1).sum() + (~unpaired).sum())
        loaded.undesirable = int((index.labels[unpaired] == 0).sum() + (~unpaired).sum())
        for count, what in ((loaded.desirable, "desirable (label true)"),
                            (loaded.undesirable, "undesirable (label false)")):
            if count == 0:
                raise DataError(path, None, f"has no {what} examples; --loss {loss_name} needs both", field="label")
    return loaded


# ---- tokenized examples ---------------------------------------------------------------------------------------
def _texts(loaded: LoadedRecords, records: dict[int, dict], example: int) -> tuple[list, list[str]]:
    """The prompt messages and completion texts of one example (unpaired: without its KL completion)."""
    if loaded.layout != UNPAIRED:
        record = records[example]
        if loaded.chosen_only:
            return record["prompt"], [record["chosen"], ""]
        if loaded.layout == PAIR:
            return record["prompt"], [record["chosen"], record["rejected"]]
        return record["prompt"], [record["chosen"], *(record.get("candidates") or [record["rejected"]])]
    record = records[int(loaded.example_record[example])]
    if record_kind(record) == "unpaired":
        return record["prompt"], [record["completion"]]
    return record["prompt"], [record["chosen"] if loaded.example_part[example] == 0 else record["rejected"]]


def _record_of(loaded: LoadedRecords, example: int) -> int:
    return example if loaded.example_record is None else int(loaded.example_record[example])


class TokenizedExamples(Sequence):
    """Every example of the data, as ``Example`` token ids: read from the cache, or tokenized (in a batch with the
    next missing ones) the first time one is asked for."""

    def __init__(self, loaded: LoadedRecords, encoder: ChatEncoder, store: TokenStore,
                 progress: Progress | None = None):
        self.loaded = loaded
        self.encoder = encoder
        self.store = store
        self.progress = progress
        self._labels = loaded.labels()
        self.tokenized_now = 0

    def __len__(self) -> int:
        return self.loaded.num_examples

    def __getitem__(self, example: int) -> Example:
        if not 0 <= example < len(self):
            raise IndexError(example)
        if not self.store.has(example):
            following = range(example, min(len(self), example + CHUNK))
            self.ensure(self.store.missing(following)[:CHUNK], report=False)
            if self.progress is not None:  # an example no planned step needs, e.g. a full reference pass
                self.progress("tokenize", self.store.stored(), len(self))
        found = self.store.get(example, self._labels[example],
                               int(self.loaded.index.lines[_record_of(self.loaded, example)]))
        return found

    def ensure(self, examples: Iterable[int], report: bool = True) -> None:
        """Tokenize and store every example of ``examples`` that is not stored yet, in batches. Progress counts
        the examples ready (cached ones from the start) of those asked for."""
        wanted = list(dict.fromkeys(examples))
        missing = self.store.missing(wanted)
        ready = len(wanted) - len(missing)
        report = report and self.progress is not None
        if report:
            self.progress("tokenize", ready, len(wanted))
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start:start + CHUNK]
            self.store.append(self._encode(chunk))
            self.tokenized_now += len(chunk)
            if report:
                self.progress("tokenize", ready + start + len(chunk), len(wanted))

    def _encode(self, chunk: list[int]) -> list:
        loaded = self.loaded
        unpaired = loaded.layout == UNPAIRED
        partners = [loaded.kl_partner(example) for example in chunk] if unpaired else []
        records = loaded.index.read([_record_of(loaded, e) for e in chunk + partners])
        items = []
        for position, example in enumerate(chunk):
            prompt, completions = _texts(loaded, records, example)
            if unpaired:
                completions = completions + _texts(loaded, records, partners[position])[1]
            items.append((prompt, completions))
        encoded = self.encoder.encode_many(items)
        return [(example, item, unpaired) for example, item in zip(chunk, encoded)]

    def truncation(self, examples: Iterable[int]) -> TruncationStats:
        """Truncation counts over ``examples`` (each must be stored)."""
        stats = TruncationStats()
        for example in dict.fromkeys(examples):
            stats.add(self.store.flags(example), example)
        return stats

    @property
    def labels(self) -> list[bool | None]:
        return self._labels


def token_cache_key(loaded: LoadedRecords, encoder: ChatEncoder) -> str:
    fields = {"encoder": encoder.fingerprint(), "data": loaded.checksum, "layout": loaded.layout,
              "chosen_only": loaded.chosen_only}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def build_examples(loaded: LoadedRecords, encoder: ChatEncoder, needed: Iterable[int] | None = None, *,
                   cache_dir: str | Path | None = None,
                   progress: Progress | None = None) -> tuple[TokenizedExamples, TruncationStats]:
    """The loss's examples, with ``needed`` (default: all) tokenized now; returns them and the truncation counts
    of ``needed``. With ``cache_dir`` the token ids are kept in ``cache_dir/tokens-<key>`` for later runs."""
    key = token_cache_key(loaded, encoder)
    directory = Path(cache_dir) / f"tokens-{key}" if cache_dir is not None else None
    store = TokenStore(loaded.num_examples, directory, key)
    examples = TokenizedExamples(loaded, encoder, store, progress)
    needed = list(range(len(examples))) if needed is None else list(dict.fromkeys(int(i) for i in needed))
    examples.ensure(needed)
    return examples, examples.truncation(needed)
