"""``prefcli eval report``: mean (std) and 95% intervals checked against numbers worked out by hand from
fabricated results.json / harness.json files; files written; bad input is exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from cli_helpers import run_main

from prefcli.eval.report import collect, strip_seed, t_quantile_975

# t(0.975, df=2) in closed form: for df=2, t_p = (2p - 1) * sqrt(2 / (4p(1 - p))).
T975_DF2 = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))


def judged(directory: Path, protocol: str, winrate: float, ci95, *, seed: int, judge="http://127.0.0.1:8000/v1",
           judge_model="judge-7b", model="runs/model") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps({
        "protocol": protocol, "winrate": winrate, "wins": 10, "losses": 8, "ties": 2, "failed": 0, "n": 20,
        "ci95": ci95, "flip_rate": 0.1 if protocol == "arena" else None, "judge": judge, "judge_model": judge_model,
        "template_version": f"{protocol}-v1", "seed": seed, "model": model, "prefcli_version": "0.1.0"}))


def harness(directory: Path, values: dict[str, tuple[str, float, float | None, int]], model="runs/model") -> None:
    directory.mkdir(parents=True, exist_ok=True)
    headline = {task: {"metric": metric, "value": value, "stderr": stderr, "num_fewshot": shots}
                for task, (metric, value, stderr, shots) in values.items()}
    (directory / "harness.json").write_text(json.dumps({
        "model": model, "headline": headline, "results": {}, "config": {"seed": None}, "versions": {},
        "prefcli_version": "0.1.0"}))


@pytest.fixture
def runs(tmp_path):
    """mcpo: three seeds (AlpacaEval + Arena-Hard + two harness tasks); dpo: one run (AlpacaEval + arc)."""
    alpaca = [50.0, 55.0, 62.0]
    arena = [30.0, 34.0, 35.0]
    arc = [0.40, 0.45, 0.47]
    for seed in range(3):
        run = tmp_path / f"mcpo-seed{seed}"
        judged(run / "alpaca", "alpaca", alpaca[seed], [alpaca[seed] - 8, alpaca[seed] + 9], seed=seed,
               model=f"runs/mcpo-seed{seed}")
        judged(run / "arena", "arena", arena[seed], [arena[seed] - 5, arena[seed] + 5], seed=seed,
               model=f"runs/mcpo-seed{seed}")
        harness(run / "harness", {"arc_challenge": ("acc_norm,none", arc[seed], 0.01, 25),
                                  "gsm8k": ("exact_match,strict-match", 0.1 * (seed + 1), 0.02, 5)},
                model=f"runs/mcpo-seed{seed}")
    judged(tmp_path / "dpo", "alpaca", 41.5, [33.25, 50.0], seed=0, model="runs/dpo")
    harness(tmp_path / "dpo", {"arc_challenge": ("acc_norm,none", 0.38, 0.012, 25)}, model="runs/dpo")
    return tmp_path, [str(tmp_path / f"mcpo-seed{seed}") for seed in range(3)] + [str(tmp_path / "dpo")]


def test_mean_std_and_intervals_by_hand(runs):
    root, dirs = runs
    output = root / "report"
    assert run_main(["eval", "report", *dirs, "--output", str(output)]) == 0
    report = json.loads((output / "report.json").read_text())
    rows = {row["name"]: row for row in report["rows"]}
    assert list(rows) == ["mcpo", "dpo"]
    assert rows["mcpo"]["runs"] == dirs[:3]
    labels = {column["key"]: column["label"] for column in report["columns"]}
    by_label = {label: key for key, label in labels.items()}
    assert list(labels.values()) == ["AlpacaEval WR", "Arena-Hard WR", "arc_challenge acc_norm 25-shot",
                                     "gsm8k exact_match strict-match 5-shot"]

    # AlpacaEval over three seeds: 50, 55, 62.
    mean = (50 + 55 + 62) / 3
    std = math.sqrt(((50 - mean) ** 2 + (55 - mean) ** 2 + (62 - mean) ** 2) / 2)
    cell = rows["mcpo"]["cells"][by_label["AlpacaEval WR"]]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(mean) and cell["std"] == pytest.approx(std)
    half = T975_DF2 * std / math.sqrt(3)
    assert cell["ci95"] == pytest.approx([mean - half, mean + half])
    assert cell["seeds"] == [0, 1, 2]

    # arc_challenge in percent: 40, 45, 47.
    arc_mean = (40 + 45 + 47) / 3
    arc_std = math.sqrt(((40 - arc_mean) ** 2 + (45 - arc_mean) ** 2 + (47 - arc_mean) ** 2) / 2)
    cell = rows["mcpo"]["cells"][by_label["arc_challenge acc_norm 25-shot"]]
    assert cell["mean"] == pytest.approx(arc_mean) and cell["std"] == pytest.approx(arc_std)

    # One run: its own ci95 (winrate) or value +- 1.96 stderr (harness); no std.
    dpo = rows["dpo"]["cells"]
    assert dpo[by_label["AlpacaEval WR"]]["ci95"] == [33.25, 50.0]
    assert dpo[by_label["AlpacaEval WR"]]["std"] is None
    assert dpo[by_label["arc_challenge acc_norm 25-shot"]]["ci95"] == pytest.approx(
        [100 * (0.38 - 1.96 * 0.012), 100 * (0.38 + 1.96 * 0.012)])
    assert by_label["Arena-Hard WR"] not in dpo

    markdown = (output / "report.md").read_text()
    assert f"| mcpo | 3 | {mean:.2f} ({std:.2f}) | 33.00 (2.65) | {arc_mean:.2f} ({arc_std:.2f}) | 20.00 (10.00) |" \
        in markdown
    assert "| dpo | 1 | 41.50 | – | 38.00 | – |" in markdown
    assert "demo judge" not in markdown.lower()
    png = (output / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_demo_judge_is_labeled(tmp_path):
    for seed in (1, 2):
        judged(tmp_path / f"demo_seed{seed}", "alpaca", 60.0 + seed, [50.0, 70.0], seed=seed,
               judge="rule:length (demo judge)", judge_model="rule:length")
    assert run_main(["eval", "report", str(tmp_path / "demo_seed1"), str(tmp_path / "demo_seed2"),
                    "--output", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["demo_judges"] == ["rule:length"]
    assert report["columns"][0]["demo_judge"] is True
    assert report["columns"][0]["label"] == "AlpacaEval WR (demo judge rule:length)"
    assert report["rows"][0]["name"] == "demo"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "AlpacaEval WR (demo judge rule:length)" in markdown and "**Demo judge:**" in markdown


def test_grouping_modes_and_judges_kept_apart(runs, tmp_path):
    _, dirs = runs
    observations, _ = collect(dirs, name_by="model")
    assert {obs.name for obs in observations} == {"runs/mcpo", "runs/dpo"}
    observations, _ = collect(dirs, name_by="path")
    assert {obs.name for obs in observations} == set(dirs)
    nested = tmp_path / "nested" / "ours" / "seed3"
    judged(nested, "alpaca", 70.0, [60.0, 80.0], seed=3, judge_model="other-judge")
    observations, _ = collect([str(nested), dirs[0]])
    assert next(obs.name for obs in observations) == "ours"  # a bare seedN directory takes its parent's name
    # Two judges for one protocol: two columns, each naming its judge.
    assert run_main(["eval", "report", str(nested), dirs[0], "--output", str(tmp_path / "two")]) == 0
    labels = [c["label"] for c in json.loads((tmp_path / "two" / "report.json").read_text())["columns"]]
    assert "AlpacaEval WR [other-judge]" in labels and "AlpacaEval WR [judge-7b]" in labels
    assert strip_seed("dpo_seed12") == "dpo" and strip_seed("a.seed-1") == "a" and strip_seed("seedless") == \
        "seedless"
    # Student's t, two-sided 95%: df=2 in closed form, the others from published tables (4 decimals); df=35 was
    # 2.021 (df=40's value) under the old hand-typed table, an interval narrower than the true one.
    assert t_quantile_975(2) == pytest.approx(T975_DF2, rel=1e-12)
    assert round(t_quantile_975(1), 3) == 12.706 and round(t_quantile_975(35), 4) == 2.0301
    assert round(t_quantile_975(500), 4) == 1.9647


def test_failed_run_is_left_out_and_named(tmp_path):
    judged(tmp_path / "ok", "arena", 40.0, [35.0, 45.0], seed=0)
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "results.json").write_text(json.dumps({"protocol": "arena", "winrate": None, "ci95": None}))
    assert run_main(["eval", "report", str(tmp_path / "ok"), str(failed), "--output", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert len(report["skipped"]) == 1 and "failed/results.json" in report["skipped"][0]


def test_bad_input_exit_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text(json.dumps({"protocol": "alpaca", "winrate": "high"}))
    cases = [([str(tmp_path / "missing")], "not a directory"),
             ([str(empty)], "no results.json or harness.json"),
             ([str(bad)], "bad/results.json: winrate: missing or not a finite number"),
             ([str(empty), "--name-by", "color"], "--name-by: must be one of dir, model, path")]
    for args, needle in cases:
        assert run_main(["eval", "report", *args, "--output", str(tmp_path / "out")]) == 2
        assert needle in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "out").exists()


def test_a_new_judged_metric_is_one_entry(tmp_path, monkeypatch):
    """Declaring one more number of results.json (here a length-controlled winrate) gives it a column with the same
    statistics, next to the winrate of its protocol; files without it are unaffected."""
    from prefcli.eval.report import columns

    monkeypatch.setattr(columns, "JUDGED_METRICS", (  # the winrate, and LC with an interval field this time
        *[m for m in columns.JUDGED_METRICS if m.field != "lc_winrate"],
        columns.JudgedMetric("lc_winrate", "LC WR", interval_field="lc_ci95")))
    for seed, (winrate, lc) in enumerate([(50.0, 40.0), (54.0, 46.0)]):
        judged(tmp_path / f"lc-seed{seed}", "alpaca", winrate, [45.0, 60.0], seed=seed)
        data = json.loads((tmp_path / f"lc-seed{seed}" / "results.json").read_text())
        data.update({"lc_winrate": lc, "lc_ci95": [lc - 5, lc + 5]})
        (tmp_path / f"lc-seed{seed}" / "results.json").write_text(json.dumps(data))
    judged(tmp_path / "old", "arena", 30.0, [25.0, 35.0], seed=0)  # no lc_winrate: no LC column for arena
    dirs = [str(tmp_path / "lc-seed0"), str(tmp_path / "lc-seed1"), str(tmp_path / "old")]
    assert run_main(["eval", "report", *dirs, "--output", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [c["label"] for c in report["columns"]] == ["AlpacaEval WR", "AlpacaEval LC WR", "Arena-Hard WR"]
    cell = report["rows"][0]["cells"][report["columns"][1]["key"]]
    std = math.sqrt(((40 - 43) ** 2 + (46 - 43) ** 2) / 1)
    half = t_quantile_975(1) * std / math.sqrt(2)
    assert cell["mean"] == 43.0 and cell["std"] == pytest.approx(std)
    assert cell["ci95"] == pytest.approx([max(0.0, 43 - half), min(100.0, 43 + half)])
    assert "| AlpacaEval LC WR (%) |" in (tmp_path / "out" / "report.md").read_text()
