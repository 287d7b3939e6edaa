"""``prefcli eval compare RUN_A RUN_B --output DIR``: paired comparison of two judged runs on their common items."""

from __future__ import annotations

from pathlib import Path

import typer

from prefcli.cli.common import console, summary_table

HELP = ("Paired comparison of two judged runs (same protocol, template, judge and reference) on the items both "
        "judged: winrates, their difference A - B in points, its 95% paired-bootstrap interval and a two-sided "
        "paired permutation p-value. Writes DIR/compare.json.\n\n"
        "Example: prefcli eval compare runs/mcpo/alpaca runs/dpo/alpaca --output runs/compare-mcpo-dpo")


def register(app: typer.Typer) -> None:
    app.command("compare", help=HELP)(compare_command)


def compare_command(
    run_a: Path = typer.Argument(..., help="Run directory A (results.json, judgments.jsonl)."),
    run_b: Path = typer.Argument(..., help="Run directory B, judged the same way."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory for compare.json."),
    bootstrap_rounds: int = typer.Option(2000, "--bootstrap-rounds", min=10, help="Paired bootstrap resamples."),
    permutation_rounds: int = typer.Option(10000, "--permutation-rounds", min=10, help="Relabelings of the "
                                           "permutation test (exact over all 2^n when that is fewer)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the bootstrap and the permutation test."),
) -> None:
    from prefcli.data.atomic import write_json
    from prefcli.eval.compare import compare_runs
    from prefcli.eval.paths import check_output_dir

    check_output_dir(output)
    result = compare_runs(run_a, run_b, bootstrap_rounds=bootstrap_rounds, permutation_rounds=permutation_rounds,
                          seed=seed)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "compare.json", result)
    low, high = result["ci95"]
    rows = [
        ("protocol", f"{result['protocol']} ({result['template_version']})"),
        ("judge", f"{result['judge_model']}{' (demo judge)' if result['demo_judge'] else ''}"),
        ("items in common", result["n"]),
        (f"winrate A % ({result['model_a']})", result["winrate_a"]),
        (f"winrate B % ({result['model_b']})", result["winrate_b"]),
        ("A - B (points)", result["diff"]),
        ("95% CI (paired bootstrap)", f"[{low}, {high}]"),
        ("p-value (paired permutation)", f"{result['p_value']}{' (exact)' if result['p_value_exact'] else ''}"),
        ("compare", str(output / "compare.json")),
    ]
    if result["only_in_a"] or result["only_in_b"]:
        rows.insert(3, ("left out (only in A / only in B)", f"{result['only_in_a']} / {result['only_in_b']}"))
    console.print(summary_table("prefcli eval compare", rows))
