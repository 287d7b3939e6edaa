"""The training benchmark's comparison: ratios are taken within each round, reported as median and range."""

import importlib.util
from pathlib import Path

SPEC = importlib.util.spec_from_file_location("train_speed", Path(__file__).parent.parent / "benchmarks" / "train_speed.py")
train_speed = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(train_speed)


def run(median_step, wall):
    return {"steps": [median_step] * 3, "wall_seconds": wall, "startup_seconds": 1.0, "reference_seconds": 0.5,
            "peak_rss_mb": 100.0, "final_loss": 0.69}


def test_ratios_pair_each_round_with_its_own_trl_run(capsys):
    rounds = {"trl dpo": [run(2.0, 60.0), run(4.0, 120.0), run(1.0, 30.0)],
              "prefcli dpo (fresh cache)": [run(1.0, 20.0), run(1.0, 40.0), run(0.5, 20.0)]}
    for runs in rounds.values():
        for entry in runs:
            entry["median"] = entry["steps"][0]
    assert train_speed.round_ratios(rounds, "prefcli dpo (fresh cache)", "median") == [2.0, 4.0, 2.0]
    assert train_speed.spread([2.0, 4.0, 2.0]) == "median 2.00x, range 2.00-4.00x over 3 round(s)"
    train_speed.report(rounds, Path("."))
    out = capsys.readouterr().out
    assert "per step (median step): median 2.00x, range 2.00-4.00x over 3 round(s) (goal >= 2.5x: NOT met" in out
    assert "whole process, fresh reference cache: median 3.00x, range 1.50-3.00x" in out


def test_work_ratio_is_trl_flops_over_prefcli_flops(capsys):
    train_speed.report_work({"trl": {"step_gflop": 100.0, "reference_gflop": 0.0},
                             "prefcli": {"step_gflop": 40.0, "reference_gflop": 10.0}})
    out = capsys.readouterr().out
    assert "TRL 100.0 GFLOP" in out and "prefcli 40.0 GFLOP (+ 10.0 in its reference pass)" in out
    assert "2.50x less per step, 2.00x with the reference pass" in out
