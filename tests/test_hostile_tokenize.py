"""Hostile inputs of ``prefcli train``'s data reading and token caches (rows of the hostile-input table, see
``hostile.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import Case, run_case

GOOD = {"id": 0, "prompt": "Name a river.", "chosen": "The Nile.", "rejected": "A cat."}
TRAIN = ("train", "--model", "{model}", "--data", "{tmp}/d.jsonl", "--output", "{tmp}/run", "--loss", "dpo",
         "--max-steps", "1", "--batch-size", "1")


def _not_utf8(tmp: Path) -> None:
    (tmp / "d.jsonl").write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": 1, "prompt": "\xff\xfe"}\n')


def _damaged_index_of_a_bad_file(tmp: Path) -> None:
    """A file whose line 2 is broken, with a damaged cached index under the checksum of exactly these bytes: the
    index must be rebuilt (and the bad line found), not trusted."""
    from prefcli.data.sidecar import file_checksum

    data = tmp / "d.jsonl"
    data.write_text(json.dumps(GOOD) + "\n" + json.dumps({"id": 1, "prompt": "x", "chosen": "y"}) + "\n",
                    encoding="utf-8")
    cache = tmp / ".prefcli-cache"
    cache.mkdir()
    (cache / f"records-{file_checksum(data).split(':')[-1][:32]}.npz").write_bytes(b"PK\x03\x04 not an index")


CASES = [
    Case("train-data-not-utf8", TRAIN, "d.jsonl:2: not valid UTF-8", setup=_not_utf8,
         unchanged=("{tmp}/d.jsonl",), absent=("{tmp}/run",)),
    Case("train-data-damaged-index-cache", TRAIN, "d.jsonl:2: rejected: missing", setup=_damaged_index_of_a_bad_file,
         unchanged=("{tmp}/d.jsonl",), absent=("{tmp}/run",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_tokenize(case, tmp_path, capsys, tiny_model):
    run_case(case, tmp_path, capsys, model=tiny_model)
