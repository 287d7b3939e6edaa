"""Hostile inputs of ``prefcli fixtures`` (rows of the hostile-input table, see ``hostile.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Case, run_case


def _a_file(tmp: Path) -> None:
    (tmp / "afile").write_text("keep me\n")


CASES = [
    Case("fixtures-losses-unknown", ("losses", "dpoo"), "did you mean"),
    Case("fixtures-model-output-is-a-file", ("fixtures", "model", "{tmp}/afile"),
         "afile: is an existing file, expected a directory", setup=_a_file, unchanged=("{tmp}/afile",)),
    Case("fixtures-model-output-under-a-file", ("fixtures", "model", "{tmp}/afile/model"),
         "afile is a file, so no directory can be made under it", setup=_a_file, unchanged=("{tmp}/afile",)),
    Case("fixtures-model-heads-not-dividing", ("fixtures", "model", "{tmp}/m", "--heads", "3"),
         "--hidden-size 64 must be a multiple of --heads 3", absent=("{tmp}/m",)),
    Case("fixtures-model-odd-head-size", ("fixtures", "model", "{tmp}/m", "--hidden-size", "12", "--heads", "4"),
         "even head size", absent=("{tmp}/m",)),
    Case("fixtures-model-hidden-size-0", ("fixtures", "model", "{tmp}/m", "--hidden-size", "0"),
         "'--hidden-size'", absent=("{tmp}/m",)),
    Case("fixtures-model-layers-0", ("fixtures", "model", "{tmp}/m", "--layers", "0"), "'--layers'",
         absent=("{tmp}/m",)),
    Case("fixtures-nectar-negative-rows", ("fixtures", "nectar", "{tmp}/n.jsonl", "--rows", "-3"), "'--rows'",
         absent=("{tmp}/n.jsonl",)),
    Case("fixtures-nectar-zero-rows", ("fixtures", "nectar", "{tmp}/n.jsonl", "--rows", "0"), "'--rows'",
         absent=("{tmp}/n.jsonl",)),
    Case("fixtures-nectar-output-is-a-directory", ("fixtures", "nectar", "{tmp}"),
         "is a directory, expected a file path"),
    Case("fixtures-nectar-output-under-a-file", ("fixtures", "nectar", "{tmp}/afile/n.jsonl"),
         "afile is a file, so nothing can be written under it", setup=_a_file, unchanged=("{tmp}/afile",)),
    Case("fixtures-instructions-negative-rows", ("fixtures", "instructions", "{tmp}/i.json", "--rows", "-1"),
         "'--rows'", absent=("{tmp}/i.json",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_fixtures(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys)


def test_fixture_files_are_written_whole(tmp_path, capsys):
    """The rows a fixture command says it wrote are in the file (written atomically, nothing left beside it)."""
    from cli_helpers import run_main

    assert run_main(["fixtures", "nectar", str(tmp_path / "n.jsonl"), "--rows", "5"]) == 0
    assert "wrote 5 Nectar-schema rows" in capsys.readouterr().out
    assert len((tmp_path / "n.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert run_main(["fixtures", "instructions", str(tmp_path / "i.json"), "--rows", "3"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.json", "n.jsonl"]
