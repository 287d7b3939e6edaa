"""``prefcli eval harness`` (lm-eval benchmarks) and ``prefcli eval report`` (mean (std) table and chart over runs)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError
from prefcli.eval.harness import HarnessConfig, plan_tasks, run_harness, save_harness
from prefcli.eval.harness import list_tasks as known_tasks
from prefcli.eval.paths import check_output_dir


def _parse_batch_size(text: str) -> int | str:
    if text == "auto" or text.startswith("auto:") and text[5:].isdigit():
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"--batch-size: must be an integer >= 1 or 'auto', got {text!r}")


def _parse_limit(value: float | None) -> int | float | None:
    if value is None:
        return None
    if value <= 0:
        raise ConfigError(f"--limit: must be > 0 (a count, or a fraction below 1), got {value}")
    return int(value) if value >= 1 and float(value).is_integer() else value


def _default_output(model: str) -> Path:
    return Path(f"harness-{Path(model.rstrip('/')).name or 'model'}")


def register(app: typer.Typer) -> None:
    @app.command("harness")
    def harness(
        model: Annotated[str | None, typer.Option(
            "--model", help="Model directory, LoRA adapter directory from `prefcli train`, or hub id.")] = None,
        tasks: Annotated[str | None, typer.Option(
            "--tasks", help="Comma-separated lm-eval tasks; NAME:N sets N few-shot examples for that task.")] = None,
        suite: Annotated[str | None, typer.Option(
            "--suite", help="Preset suite (leaderboard-v1) or a suite YAML file; each task keeps its own few-shot "
            "count and headline metric.")] = None,
        num_fewshot: Annotated[int | None, typer.Option(
            "--num-fewshot", help="Override every task's few-shot count.")] = None,
        limit: Annotated[float | None, typer.Option(
            "--limit", help="Evaluate only N documents per task (or a fraction below 1). For smoke tests: scores "
            "are not comparable.")] = None,
        batch_size: Annotated[str, typer.Option("--batch-size", help="Batch size, or 'auto'.")] = "8",
        include_path: Annotated[list[Path] | None, typer.Option(
            "--include-path", help="Directory of your own task YAMLs (repeatable). Relative data files are read "
            "next to the YAML.")] = None,
        apply_chat_template: Annotated[bool, typer.Option(
            "--apply-chat-template", help="Render prompts (and few-shot examples, as turns) with the model's chat "
            "template.")] = False,
        output: Annotated[Path | None, typer.Option(
            "--output", help="Output directory for harness.json (default: ./harness-<model name>); checked before "
            "the evaluation starts.")] = None,
        seed: Annotated[int | None, typer.Option(
            "--seed", help="Seed for python, numpy, torch and few-shot sampling (default: lm-eval's "
            "0/1234/1234/1234).")] = None,
        device: Annotated[str | None, typer.Option(
            "--device", help="cpu, cuda, cuda:1, ... (default: cuda when available).")] = None,
        log_samples: Annotated[bool, typer.Option(
            "--log-samples", help="Also write every document's prompt, response and score to "
            "OUTPUT/samples/<task>.jsonl.")] = False,
        list_tasks: Annotated[bool, typer.Option("--list-tasks", help="Print every known task name and exit.")] = False,
        verbose: Annotated[bool, typer.Option("--verbose", help="Show lm-eval's own log messages.")] = False,
    ) -> None:
        """Run lm-evaluation-harness benchmarks on a model and write OUTPUT/harness.json.

        Example: prefcli eval harness --model runs/mcpo --suite leaderboard-v1 --output runs/mcpo/harness
        """
        if not verbose:
            logging.getLogger("lm_eval").setLevel(logging.ERROR)
        include = tuple(str(path) for path in include_path or [])
        if list_tasks:
            for name in known_tasks(include):
                console.print(name, highlight=False, markup=False)
            return
        if not model:
            raise ConfigError("--model: required (a model directory, adapter directory or hub id)")
        names = [name.strip() for name in tasks.split(",") if name.strip()] if tasks else None
        planned = plan_tasks(names, suite, num_fewshot)
        config = HarnessConfig(model=model, tasks=tuple(planned), suite=suite, limit=_parse_limit(limit),
                               batch_size=_parse_batch_size(batch_size), include_path=include,
                               apply_chat_template=apply_chat_template, seed=seed, device=device,
                               log_samples=log_samples)
        output = check_output_dir(output or _default_output(model))

        with progress_bar() as bar:
            job = bar.add_task("lm-eval", total=len(planned), status="loading model and data")

            def report_progress(done: int, total: int, label: str) -> None:
                bar.update(job, completed=done, status=label if done < total else "done")

            result, samples = run_harness(config, progress=report_progress)
        path = save_harness(output, result, samples)

        table = Table(title=f"lm-eval: {model}", header_style="bold")
        for name, justify in (("task", "left"), ("shots", "right"), ("metric", "left"), ("value", "right"),
                              ("± stderr", "right")):
            table.add_column(name, justify=justify)
        for task, entry in result["headline"].items():
            value = "n/a" if entry["value"] is None else f"{entry['value']:.4f}"
            stderr = "" if entry["stderr"] is None else f"{entry['stderr']:.4f}"
            table.add_row(task, str(entry["num_fewshot"]), str(entry["metric"]), value, stderr)
        console.print(table)
        rows = [("model", model), ("suite", suite or "-"), ("tasks", len(result["headline"])),
                ("limit", config.limit if config.limit is not None else "none"),
                ("elapsed (s)", result["config"]["elapsed_s"]), ("results", str(path))]
        if samples:
            rows.append(("samples", str(path.parent / "samples")))
        console.print(summary_table("eval harness", rows))
        if config.limit is not None:
            err_console.print("[yellow]note:[/yellow] --limit was set: these scores are for a subset only.")

    @app.command("report")
    def report(
        run_dirs: Annotated[list[str], typer.Argument(
            metavar="DIR", help="Run directories holding results.json and/or harness.json (directly or one "
            "level below).")],
        output: Annotated[Path, typer.Option(
            "--output", help="Where report.md, report.json and report.png go.")] = Path("report"),
        name_by: Annotated[str, typer.Option(
            "--name-by", help="How runs form rows: dir (directory name without a -seedN suffix), model (the "
            "recorded model), path (one row per directory).")] = "dir",
        style_rounds: Annotated[int, typer.Option(
            "--style-rounds", min=2, help="Bootstrap refits of the Arena-Hard style-control fit (arena-hard-auto "
            "uses 100).")] = 100,
        seed: Annotated[int, typer.Option("--seed", help="Seeds the style-control bootstrap.")] = 0,
    ) -> None:
        """Aggregate runs (seeds, models) into a mean (std) table (Markdown, JSON) and a PNG with 95% intervals.

        Example: prefcli eval report runs/dpo-seed0 runs/dpo-seed1 runs/mcpo-seed0 runs/mcpo-seed1 --output report
        """
        from prefcli.eval.report import build_report, collect, format_cell, write_report  # scipy.stats: ~1 s
        from prefcli.eval.report_style import style_control_groups

        check_output_dir(output)
        observations, skipped = collect(run_dirs, name_by=name_by)
        if not observations:
            raise ConfigError("no numbers to report: " + "; ".join(skipped))
        built = build_report(observations, name_by=name_by, skipped=skipped)
        style_groups, style_notes = style_control_groups(observations, rounds=style_rounds, seed=seed)
        if style_groups or style_notes:
            built["style_control"] = {"groups": style_groups, "notes": style_notes}
        paths = write_report(built, output)

        table = Table(title="evaluation report (percent; mean (std) over runs)", header_style="bold")
        table.add_column("method")
        table.add_column("runs", justify="right")
        for column in built["columns"]:
            table.add_column(column["label"], justify="right")
        for row in built["rows"]:
            table.add_row(row["name"], str(len(row["runs"])),
                          *[format_cell(row["cells"].get(column["key"])) for column in built["columns"]])
        console.print(table)
        if built["demo_judges"]:
            err_console.print(f"[yellow]demo judge:[/yellow] {', '.join(built['demo_judges'])} is a deterministic "
                              "built-in judge; its winrates say nothing about model quality.")
        for item in skipped:
            err_console.print(f"[yellow]left out:[/yellow] {item}", highlight=False)
        for group in style_groups:
            style = Table(title=f"Arena-Hard style control (baseline {group['baseline']}; median and "
                                f"{round(100 * group['level'])}% interval of {group['rounds']} bootstrap fits)",
                          header_style="bold")
            for name in ("method", "raw %", "style-controlled %", "interval"):
                style.add_column(name, justify="left" if name == "method" else "right")
            for name, scores in sorted(group["models"].items(), key=lambda kv: -kv[1]["style_controlled"]):
                style.add_row(name, f"{scores['raw']:.1f}", f"{scores['style_controlled']:.1f}",
                              f"[{scores['interval'][0]:.1f}, {scores['interval'][1]:.1f}]")
            console.print(style)
        for note in style_notes:
            err_console.print(f"[yellow]style control:[/yellow] {note}", highlight=False)
        console.print(summary_table("eval report", [
            ("runs", len({obs.run for obs in observations})), ("rows", len(built["rows"])),
            ("columns", len(built["columns"])), ("markdown", str(paths["markdown"])),
            ("json", str(paths["json"])), ("chart", str(paths["chart"]))]))
