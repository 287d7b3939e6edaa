"""Style control in ``eval report``: Arena-Hard runs of several models against one baseline, read back from their
judgments.jsonl, give the same scores as fitting the battles directly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from judge_servers import FaultyJudgeServer

from prefcli.eval.report import collect
from prefcli.eval.report_style import render_style_markdown, style_control_groups
from prefcli.eval.style_control import Battle, style_controlled_scores, style_features


def arena_runs(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "data"
    data.mkdir()
    reference = [{"instruction": f"Q{i}", "output": f"Plain reference {i}. q=5", "generator": "base"}
                 for i in range(10)]
    (data / "ref.json").write_text(json.dumps(reference))
    runs = {}
    with FaultyJudgeServer() as server:
        for name, make in (("styled", lambda i: f"# Answer\n- **point** one\n- two\nq={4 + i % 4}"),
                           ("plain", lambda i: f"Just text {i}. q={3 + i % 5}")):
            rows = [{"instruction": f"Q{i}", "output": make(i), "generator": name} for i in range(10)]
            (data / f"{name}.json").write_text(json.dumps(rows))
            runs[name] = tmp_path / name
            code, text = invoke_cli(["eval", "arena", "--outputs", data / f"{name}.json", "--reference",
                                     data / "ref.json", "--judge", server.base_url, "--judge-model", "judge",
                                     "--output", runs[name]])
            assert code == 0, text
    return runs


def test_style_control_over_runs_equals_a_direct_fit(tmp_path):
    runs = arena_runs(tmp_path)
    observations, _ = collect([str(runs["styled"]), str(runs["plain"])])
    groups, notes = style_control_groups(observations, rounds=30, seed=2)
    assert notes == [] and len(groups) == 1
    group = groups[0]
    assert group["baseline"] == "base" and set(group["models"]) == {"styled", "plain"}
    battles = []
    for name in ("plain", "styled"):
        rows = json.loads((tmp_path / "data" / f"{name}.json").read_text())
        outputs = {row["instruction"]: row["output"] for row in rows}
        for line in (runs[name] / "judgments.jsonl").read_text().splitlines():
            row = json.loads(line)
            battles += [Battle(name, row["model_score"], style_features(outputs[row["instruction"]]),
                               style_features(f"Plain reference {row['item']}. q=5"))] * row["weight"]
    direct = style_controlled_scores(battles, rounds=30, seed=2)
    assert group["models"] == direct["models"]
    raw = json.loads((runs["styled"] / "results.json").read_text())["winrate"]
    assert group["models"]["styled"]["raw"] == pytest.approx(raw, abs=8)  # median of bootstrap means
    markdown = render_style_markdown(groups, notes)
    assert "## Style control (Arena-Hard)" in markdown and "| styled |" in markdown


def test_runs_without_style_features_are_noted(tmp_path):
    runs = arena_runs(tmp_path)
    judgments = runs["plain"] / "judgments.jsonl"
    rows = [json.loads(line) for line in judgments.read_text().splitlines()]
    judgments.write_text("".join(json.dumps({k: v for k, v in row.items() if not k.endswith("_style")}) + "\n"
                                 for row in rows))
    observations, _ = collect([str(runs["styled"]), str(runs["plain"])])
    groups, notes = style_control_groups(observations, rounds=5)
    assert set(groups[0]["models"]) == {"styled"} and "written before style features" in notes[0]


def test_eval_report_shows_style_control_and_the_lc_column(tmp_path):
    runs = arena_runs(tmp_path)
    pairs = [{"instruction": f"A{i}", "output": f"{'word ' * (i % 6 + 1)}q={i % 7 + 1}", "generator": "policy"}
             for i in range(12)]
    reference = [{"instruction": f"A{i}", "output": f"ref q={(i * 3) % 7 + 1}", "generator": "base"}
                 for i in range(12)]
    (tmp_path / "data" / "a_out.json").write_text(json.dumps(pairs))
    (tmp_path / "data" / "a_ref.json").write_text(json.dumps(reference))
    with FaultyJudgeServer() as server:
        code, text = invoke_cli(["eval", "alpaca", "--outputs", tmp_path / "data" / "a_out.json", "--reference",
                                 tmp_path / "data" / "a_ref.json", "--judge", server.base_url, "--judge-model",
                                 "judge", "--output", runs["styled"] / "alpaca"])
        assert code == 0, text
    code, text = invoke_cli(["eval", "report", runs["styled"], runs["plain"], "--output", tmp_path / "report",
                             "--style-rounds", "20"])
    assert code == 0, text
    markdown = (tmp_path / "report" / "report.md").read_text()
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    lc = json.loads((runs["styled"] / "alpaca" / "results.json").read_text())["lc_winrate"]
    assert "AlpacaEval LC WR" in [column["label"] for column in report["columns"]]
    assert f"{lc:.2f}" in markdown
    group = report["style_control"]["groups"][0]
    assert set(group["models"]) == {"styled", "plain"} and group["rounds"] == 20
    assert "## Style control (Arena-Hard)" in markdown and "style control" in text.lower()
