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


def _with_file(name: str, text: str, setup):
    def both(tmp: Path) -> None:
        setup(tmp)
        (tmp / name).write_text(text)
    return both


def _locked_store(setup):
    """A run directory whose store is held by another (live) process: this test's own open store."""
    def both(tmp: Path) -> None:
        from prefcli.eval.store import JudgmentStore

        setup(tmp)
        _HELD.append(JudgmentStore(tmp / "run" / "judgments.sqlite"))
    return both


def _partial_reference(setup):
    def both(tmp: Path) -> None:
        setup(tmp)
        rows = json.loads((tmp / "ref.json").read_text())
        (tmp / "ref.json").write_text(json.dumps(rows[:-1]))
    return both


def _two_runs(second_results_change: dict):
    """Two finished run directories whose results.json differ in ``second_results_change``."""
    def setup(tmp: Path) -> None:
        for name, change in (("a", {}), ("b", second_results_change)):
            run = tmp / name
            run.mkdir()
            results = {"protocol": "arena", "template_version": "arena-v1-x", "judge_model": "judge",
                       "reference": "base", "model": name, **change}
            (run / "results.json").write_text(json.dumps(results))
            (run / "judgments.jsonl").write_text(json.dumps({"instruction": "Q", "status": "ok", "model_score": 1.0,
                                                             "weight": 1}) + "\n")
        (tmp / "file").write_text("x")
    return setup


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
         setup=_with_file("judge.txt", "Judge this: {instruction}", _pairs()), absent=("{tmp}/run/results.json",)),
    Case("judge-strict-missing-reference", ("eval", "alpaca", *_RUN, "--strict"),
         "ref.json: instruction: no reference output for instruction 'Q2' (--strict)",
         setup=_partial_reference(_pairs()), absent=("{tmp}/run/results.json",)),
    Case("judge-protocol-version-unknown", ("eval", "arena", *_RUN, "--protocol-version", "v3"),
         "--protocol-version: must be v0.1 or v2.0, got 'v3'", setup=_pairs(), absent=("{tmp}/run",)),
    Case("judge-protocol-version-on-alpaca", ("eval", "alpaca", *_RUN, "--protocol-version", "v2.0"),
         "only the arena protocol has versions", setup=_pairs(), absent=("{tmp}/run",)),
    Case("judge-price-in-alone", ("eval", "alpaca", *_RUN, "--price-in", "3"),
         "--price-in and --price-out go together", setup=_pairs(), absent=("{tmp}/run",)),
    Case("judge-several-kinds", ("eval", "alpaca", *_RUN, "--judge", "rule:length"),
         "several values must all be http(s):// URLs", setup=_pairs(), absent=("{tmp}/run",)),
    Case("judge-output-is-a-file", ("eval", "alpaca", *_RUN[:-6], "--output", "{tmp}/out.json"),
         "--output {tmp}/out.json: is an existing file", setup=_pairs(), unchanged=("{tmp}/out.json",)),
    Case("judge-lc-difficulty-missing-item",
         ("eval", "alpaca", *_RUN, "--lc-difficulty", "{tmp}/d.csv"), "d.csv: instruction: no difficulty for",
         setup=_with_file("d.csv", "instruction,instruction_difficulty\nQ0,1.0\n", _pairs()),
         absent=("{tmp}/run/results.json",)),
    Case("compare-different-judge", ("eval", "compare", "{tmp}/a", "{tmp}/b", "--output", "{tmp}/cmp"),
         "different judge ('judge' vs 'other')", setup=_two_runs({"judge_model": "other"}), absent=("{tmp}/cmp",)),
    Case("compare-different-template", ("eval", "compare", "{tmp}/a", "{tmp}/b", "--output", "{tmp}/cmp"),
         "different template version", setup=_two_runs({"template_version": "arena-v1-y"}), absent=("{tmp}/cmp",)),
    Case("compare-different-reference", ("eval", "compare", "{tmp}/a", "{tmp}/b", "--output", "{tmp}/cmp"),
         "different reference ('base' vs 'gpt-4')", setup=_two_runs({"reference": "gpt-4"}),
         absent=("{tmp}/cmp",)),
    Case("compare-not-a-run", ("eval", "compare", "{tmp}/a", "{tmp}/nowhere", "--output", "{tmp}/cmp"),
         "nowhere/results.json: not found", setup=_two_runs({}), absent=("{tmp}/cmp",)),
    Case("compare-output-is-a-file", ("eval", "compare", "{tmp}/a", "{tmp}/b", "--output", "{tmp}/file/cmp"),
         "--output {tmp}/file/cmp: {tmp}/file is a file", setup=_two_runs({}), unchanged=("{tmp}/file",)),
    Case("judge-store-in-use", ("eval", "alpaca", *_RUN), "another prefcli eval run",
         setup=_locked_store(_pairs()), absent=("{tmp}/run/results.json",)),
]


@pytest.fixture(scope="module")
def server():
    with FaultyJudgeServer(logprobs=True) as judge:
        yield judge


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_judge(case, tmp_path, capsys, server):
    filled = dataclasses.replace(case, args=tuple(a.replace("{judge}", server.base_url) for a in case.args),
                                 message=case.message.replace("{tmp}", str(tmp_path)))
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
