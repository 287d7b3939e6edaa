"""Hostile inputs of the judged evaluation (rows of the hostile-input table, see ``hostile.py``), run against the
fault-injecting loopback judge of ``judge_servers.py``. ``{judge}`` in a row is that judge's base URL."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from hostile import Case, run_case
from judge_servers import FaultyJudgeServer


def _pairs(instruction_marker: str = "", n: int = 3):
    def setup(tmp: Path) -> None:
        rows = [(f"Q{i} {instruction_marker}".strip(), f"answer {i} q={i + 2}", f"ref {i} q=2") for i in range(n)]
        (tmp / "out.json").write_text(json.dumps([{"instruction": q, "output": o, "generator": "policy"}
                                                  for q, o, _ in rows]))
        (tmp / "ref.json").write_text(json.dumps([{"instruction": q, "output": r, "generator": "base"}
                                                  for q, _, r in rows]))
    return setup


def _with_prompt(text: str, setup):
    def both(tmp: Path) -> None:
        setup(tmp)
        (tmp / "judge.txt").write_text(text)
    return both


def _locked_store(setup):
    """A run directory whose store is held by another (live) process: this test's own open store."""
    def both(tmp: Path) -> None:
        from prefcli.eval.store import JudgmentStore

        setup(tmp)
        _HELD.append(JudgmentStore(tmp / "run" / "judgments.sqlite"))
    return both


_HELD: list = []
_RUN = ("--outputs", "{tmp}/out.json", "--reference", "{tmp}/ref.json", "--judge", "{judge}", "--judge-model",
        "judge", "--output", "{tmp}/run", "--retry-delay", "0.01", "--timeout", "5")

CASES = [
    Case("judge-logprob-nan", ("eval", "alpaca", *_RUN, "--max-retries", "1"), "3 of 3 judgments failed",
         setup=_pairs("FAULT-LP-NAN")),
    Case("judge-logprob-infinite", ("eval", "alpaca", *_RUN, "--max-retries", "0"), "3 of 3 judgments failed",
         setup=_pairs("FAULT-LP-INF")),
    Case("judge-logprob-1000", ("eval", "alpaca", *_RUN, "--max-retries", "0"), "3 of 3 judgments failed",
         setup=_pairs("FAULT-LP-BIG")),
    Case("judge-logprob-string", ("eval", "alpaca", *_RUN, "--max-retries", "0"), "3 of 3 judgments failed",
         setup=_pairs("FAULT-LP-STR")),
    Case("judge-prompt-without-placeholders",
         ("eval", "alpaca", *_RUN, "--judge-prompt", "{tmp}/judge.txt"),
         "judge.txt: template: missing placeholder(s) {output_1}, {output_2}",
         setup=_with_prompt("Judge this: {instruction}", _pairs()), absent=("{tmp}/run/results.json",)),
    Case("judge-store-in-use", ("eval", "alpaca", *_RUN), "another prefcli eval run",
         setup=_locked_store(_pairs()), absent=("{tmp}/run/results.json",)),
]


@pytest.fixture(scope="module")
def server():
    with FaultyJudgeServer(logprobs=True) as judge:
        yield judge


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_judge(case, tmp_path, capsys, server):
    filled = dataclasses.replace(case, args=tuple(a.replace("{judge}", server.base_url) for a in case.args))
    try:
        run_case(filled, tmp_path, capsys)
    finally:
        while _HELD:
            _HELD.pop().close()
    if case.id.startswith("judge-logprob"):
        # failed, not stored as results: every line of judgments.jsonl is strict JSON, no row is "ok"
        for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines():
            row = json.loads(line, parse_constant=lambda name: pytest.fail(f"bare {name} in judgments.jsonl"))
            assert row["status"] == "failed" and "malformed log-probs" in row["error"]
