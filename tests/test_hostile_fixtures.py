"""Hostile inputs of ``prefcli fixtures`` (rows of the hostile-input table, see ``hostile.py``)."""

from __future__ import annotations

import pytest
from hostile import Case, run_case

CASES = [
    Case("fixtures-losses-unknown", ("losses", "dpoo"), "did you mean"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_fixtures(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys)
