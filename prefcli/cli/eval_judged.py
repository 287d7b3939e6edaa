"""``prefcli eval alpaca``, ``prefcli eval arena`` and ``prefcli eval status``: judged winrates against a reference,
with every judge call kept in a durable store so nothing is lost or paid for twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import typer
from rich.table import Table

from prefcli.cli.common import console, err_console, generating_model_option, progress_bar, summary_table
from prefcli.cli.generate import decoding_flags, generation_params
from prefcli.errors import ConfigError, DataError, JudgeError
from prefcli.eval.judged import (
    JudgedEval,
    JudgedEvalSettings,
    check_settings,
    collect_inputs,
    evaluate_judged,
    lock_store,
    open_judge,
)
from prefcli.eval.judges import DEMO_LABEL, judge_kind
from prefcli.eval.store import JudgmentStore
from prefcli.settings.cli import with_more_options

_HELP = {
    "alpaca": (
        "AlpacaEval 2.0 winrate of a model against a reference: one judgment per item with the model's side drawn "
        "from the seed, the alpaca-eval package's alpaca_eval_clf_gpt4_turbo prompt, log-prob weighting when the "
        "endpoint returns log-probs.\n\n"
        "Example: prefcli eval alpaca --outputs out.json --reference ref.json "
        "--judge http://127.0.0.1:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct --output runs/alpaca"),
    "arena": (
        "Arena-Hard winrate of a model against a reference: every item judged in both orders, the last [[A>B]]-style "
        "verdict of the judge's reply counts, strong verdicts weigh 3x; reports the flip rate.\n\n"
        "Example: prefcli eval arena --model runs/mcpo --instructions questions.jsonl --reference ref.json "
        "--judge http://127.0.0.1:8000/v1 --judge-model my-judge --output runs/arena"),
}


def register(app: typer.Typer) -> None:
    """Add ``alpaca``, ``arena`` and ``status`` to the ``prefcli eval`` group."""
    for name in ("alpaca", "arena"):
        app.command(name, help=_HELP[name])(_judged_command(name))
    app.command("status", help="Counts of the judgments stored for a run (ok / failed, attempts) and its results."
                "\n\nExample: prefcli eval status runs/alpaca")(status_command)


def _judged_command(protocol_name: str):
    @with_more_options(decoding_flags("seed"))  # --seed also seeds the judging order and the bootstrap
    def command(
        output: Path = typer.Option(..., "--output", "-o", help="Run directory: results.json, judgments.jsonl, "
                                    "outputs.json (with --model) and the default store."),
        judge: list[str] = typer.Option(..., "--judge", help="OpenAI-compatible base URL (http://127.0.0.1:8000/v1), "
                                        "hf:PATH (local HF model), reward:FILE.py:FUNCTION or "
                                        "reward:module:FUNCTION (a Python reward function), rm:PATH_OR_ID (a "
                                        "reward model) or rule:length (DEMO judge: prefers the longer output). "
                                        "Repeat with several URLs of one judge model to spread the calls by load."),
        model: Path | None = generating_model_option(),
        outputs: Path | None = typer.Option(None, "--outputs", help="Model outputs: alpaca_eval format (JSON "
                                            "list or JSONL of {instruction, output, generator}) or an "
                                            "arena-hard-auto model_answer/*.jsonl file (matched by uid)."),
        instructions: str | None = typer.Option(None, "--instructions", help="JSON/JSONL file with "
                                                "'instruction', or arena-hard-auto's question.jsonl (default: the "
                                                "outputs' instructions, or the public set from the hub with "
                                                "--model)."),
        reference: str | None = typer.Option(None, "--reference", help="Reference outputs, same formats as "
                                             "--outputs; with --protocol-version v2.0 also arena-hard-auto's "
                                             "model_answer directory (each category's baseline file is used) "
                                             "(default: the public baseline from the hub)."),
        strict: bool = typer.Option(False, "--strict", help="Refuse when an instruction has no model output or "
                                    "no reference output (default: leave it out, with one line saying how many)."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="Model name the judge server "
                                               "expects (required with a URL)."),
        judge_key_env: str | None = typer.Option(None, "--judge-key-env", help="Name of the environment "
                                                 "variable holding the judge's API key (never printed or "
                                                 "written)."),
        judge_prompt: Path | None = typer.Option(None, "--judge-prompt", help="Your own judge prompt: YAML "
                                                 "with system/user, ChatML or plain text, placeholders "
                                                 "{instruction} {output_1} {output_2}."),
        protocol: str = typer.Option(protocol_name, "--protocol", help="Protocol name or YAML path."),
        protocol_version: str | None = typer.Option(None, "--protocol-version", help="arena: v0.1 (default, "
                                                    "comparable with earlier runs) or v2.0 (arena-hard-auto v2.0 "
                                                    "prompts, per-category baselines and verdict parsing)."),
        price_in: float | None = typer.Option(None, "--price-in", min=0.0, help="Judge price in USD per million "
                                              "prompt tokens (with --price-out: a cost estimate in results.json)."),
        price_out: float | None = typer.Option(None, "--price-out", min=0.0, help="Judge price in USD per "
                                               "million completion tokens."),
        lc_difficulty: Path | None = typer.Option(None, "--lc-difficulty", help="CSV of per-instruction "
                                                  "difficulty (alpaca_eval's instruction_difficulty.csv, or columns "
                                                  "instruction,instruction_difficulty): the length-controlled GLM "
                                                  "then uses it (length_controlled_noreg); without it: "
                                                  "length_controlled_minimal."),
        concurrency: int = typer.Option(8, "--concurrency", min=1, help="Judge calls in flight."),
        timeout: float = typer.Option(120.0, "--timeout", min=0.1, help="Seconds per judge call."),
        max_retries: int = typer.Option(3, "--max-retries", min=0, help="Retries per call (429, 5xx, "
                                        "timeouts, connection errors, unparseable replies)."),
        retry_delay: float = typer.Option(1.0, "--retry-delay", min=0.0, help="Base of the exponential backoff, "
                                          "seconds (Retry-After is honored when longer)."),
        max_failed_frac: float = typer.Option(0.05, "--max-failed-frac", min=0.0, max=1.0, help="Exit with "
                                              "code 2 when a larger fraction of judgments failed."),
        judge_max_tokens: int | None = typer.Option(None, "--judge-max-tokens", min=1, help="Override the "
                                                    "protocol's max tokens per judge reply."),
        seed: int = typer.Option(0, "--seed", help="Seeds the order randomization, generation and bootstrap."),
        store: Path | None = typer.Option(None, "--store", help="Judgment store (default "
                                          "OUTPUT/judgments.sqlite). One run at a time per store: a second run "
                                          "on the same store stops at once (exit 2) instead of paying the judge "
                                          "twice; rerun it after the first ends to reuse its judgments."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Judge only the first N items."),
        bootstrap_rounds: int = typer.Option(1000, "--bootstrap-rounds", min=10, help="Bootstrap resamples."),
        **decoding,
    ) -> None:
        settings = JudgedEvalSettings(
            output=output, judge=tuple(judge), protocol=protocol, protocol_version=protocol_version, model=model,
            outputs=outputs, strict=strict, price_in=price_in, price_out=price_out, lc_difficulty=lc_difficulty,
            instructions=instructions, reference=reference, judge_model=judge_model, judge_key_env=judge_key_env,
            judge_prompt=judge_prompt, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
            retry_delay=retry_delay, max_failed_frac=max_failed_frac, judge_max_tokens=judge_max_tokens, seed=seed,
            store=store, limit=limit, bootstrap_rounds=bootstrap_rounds,
            generation=generation_params(decoding, seed=seed))
        _print_evaluation(settings, _evaluate(settings))

    command.__name__ = f"eval_{protocol_name}"
    return command


def _evaluate(settings: JudgedEvalSettings) -> JudgedEval:
    """Run the library pipeline with a generation bar and a judging bar."""
    with progress_bar(transient=True) as bar:
        generating = None

        def generation_progress(done: int, total: int) -> None:
            nonlocal generating
            if generating is None:
                generating = bar.add_task("generating", total=total, status="")
            bar.update(generating, completed=done)

        protocol = check_settings(settings)
        store_lock = lock_store(settings)  # before any work: a second run on this store stops here
        try:
            inputs = collect_inputs(settings, protocol, generation_progress)
        except BaseException:
            store_lock.close()
            raise
    if inputs.outputs_reused is not None:
        err_console.print(f"{'reused' if inputs.outputs_reused else 'wrote'} {inputs.outputs_source}")
    if inputs.left_out:
        err_console.print(f"[yellow]{inputs.left_out}[/yellow]", highlight=False)
    try:
        judge = open_judge(settings, protocol)
    except BaseException:
        store_lock.close()
        raise
    if judge.is_demo:
        err_console.print(f"[yellow]--judge {settings.judge_label} is a {DEMO_LABEL}[/yellow]")
    total = len(inputs.items) * (2 if protocol.order == "both" else 1)
    with progress_bar() as bar:
        task = bar.add_task(f"judging ({protocol.name})", total=total, status="")
        tallies = {"ok": 0, "failed": 0, "identical": 0}

        def on_result(result) -> None:
            tallies[result.status] += 1
            bar.update(task, advance=1, status=f"ok {tallies['ok']} failed {tallies['failed']}")

        async def judge_and_close() -> JudgedEval:
            try:
                return await evaluate_judged(settings, inputs, judge=judge, on_result=on_result,
                                             store_lock=store_lock)
            finally:
                store_lock.close()
                await judge.aclose()

        return asyncio.run(judge_and_close())


def _print_evaluation(settings: JudgedEvalSettings, evaluation: JudgedEval) -> None:
    summary = evaluation.summary
    protocol_label = f"{summary['protocol']} ({summary['template_version']})"
    kind = "demo judge" if summary["demo_judge"] else judge_kind(settings.judge_specs[0])
    ci = summary["ci95"] or [None, None]
    rows = [
        ("protocol", protocol_label),
        ("judge", f"{settings.judge_label} ({kind})"),
        ("items", summary["n"]),
        ("winrate %", summary["winrate"] if summary["winrate"] is not None else "n/a"),
        ("95% CI %", f"[{ci[0]}, {ci[1]}]" if ci[0] is not None else "n/a"),
        ("avg length model / reference", f"{summary['avg_length']} / {summary['reference_avg_length']}"),
        ("wins / losses / ties", f"{summary['wins']} / {summary['losses']} / {summary['ties']}"),
        ("failed judgments", summary["failed"]),
        ("identical outputs (no call)", summary["identical"]),
        ("reused from store", summary["reused"]),
    ]
    if summary["order"] == "random":
        rows.insert(5, (f"LC winrate % ({summary['lc_glm']})", summary["lc_winrate"]
                        if summary["lc_winrate"] is not None else f"n/a ({summary['lc_note']})"))
    if summary["logprob_weighted"]:
        rows.append(("log-prob weighted", summary["logprob_weighted"]))
    if summary["order"] == "both":
        rows.append(("flip rate %", summary["flip_rate"] if summary["flip_rate"] is not None else "n/a"))
    usage = summary["usage"]
    if usage["prompt_tokens"] or usage["completion_tokens"]:
        cost = f", ~${usage['cost_usd']:.4f}" if usage["cost_usd"] is not None else ""
        rows.append(("judge tokens in / out", f"{usage['prompt_tokens']} / {usage['completion_tokens']}{cost}"))
    if usage["budget_raised"]:
        rows.append(("replies retried with a larger budget", usage["budget_raised"]))
    rows.append(("results", str(evaluation.results_file)))
    console.print(summary_table(f"prefcli eval {summary['protocol']}", rows))
    if evaluation.too_many_failed:
        for error, reply in evaluation.failures:
            err_console.print(f"  last failure: {error}" + (f"; reply {reply[:80]!r}" if reply else ""),
                              highlight=False)
        raise JudgeError(f"{summary['failed']} of {summary['judgments'] - summary['identical']} judgments failed "
                         f"({100 * summary['failed_frac']:.1f}% > --max-failed-frac {settings.max_failed_frac}); "
                         "results.json counts them as failed; rerun the same command to retry only those")


def status_command(
    run_dir: Path = typer.Argument(..., help="Run directory (holds judgments.sqlite and results.json)."),
    store: Path | None = typer.Option(None, "--store", help="Judgment store (default DIR/judgments.sqlite)."),
) -> None:
    store_path = store or run_dir / "judgments.sqlite"
    results = _read_results(run_dir / "results.json")
    with JudgmentStore(store_path, readonly=True) as judgment_store:
        try:
            groups = judgment_store.counts()
            failures = judgment_store.failures(3)
        except sqlite3.DatabaseError as error:
            raise ConfigError(f"{store_path}: not a judgment store (SQLite: {error})") from None
    table = Table(title=f"judgments in {store_path}", header_style="bold")
    for column in ("judge", "protocol", "status", "judgments", "attempts"):
        table.add_column(column, justify="right" if column in ("judgments", "attempts") else "left")
    for judge_name, proto, status, count, attempts in groups:
        table.add_row(judge_name, proto, f"[green]{status}[/green]" if status == "ok" else f"[red]{status}[/red]",
                      str(count), str(attempts))
    console.print(table)
    totals = {"ok": sum(g[3] for g in groups if g[2] == "ok"), "failed": sum(g[3] for g in groups if g[2] != "ok")}
    rows: list[tuple[str, object]] = [("ok", totals["ok"]), ("failed", totals["failed"])]
    if results is not None:
        rows += [("last run: protocol", results.get("protocol")), ("last run: winrate %", results.get("winrate")),
                 ("last run: items", results.get("n")), ("last run: failed", results.get("failed"))]
    for error, _ in failures:
        rows.append(("recent failure", error))
    console.print(summary_table("status", rows))


def _read_results(path: Path) -> dict | None:
    """A run's ``results.json`` (None when absent); anything but a JSON object is one clear error."""
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(path, None, "not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise DataError(path, error.lineno, f"not valid JSON: {error.msg}") from None
    if not isinstance(results, dict):
        raise DataError(path, None, f"expected a JSON object of results, got a {type(results).__name__}")
    return results
