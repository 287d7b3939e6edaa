"""``prefcli eval alpaca``, ``prefcli eval arena`` and ``prefcli eval status``: judged winrates against a reference,
with every judge call kept in a durable store so nothing is lost or paid for twice."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import typer
from rich.table import Table

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError, DataError, JudgeError
from prefcli.eval.judged import (
    JudgedEval,
    JudgedEvalSettings,
    check_settings,
    collect_inputs,
    evaluate_judged,
    open_judge,
)
from prefcli.eval.judges import DEMO_LABEL, judge_kind
from prefcli.eval.model_outputs import GenerationSettings
from prefcli.eval.store import JudgmentStore

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
    def command(
        output: Path = typer.Option(..., "--output", "-o", help="Run directory: results.json, judgments.jsonl, "
                                    "outputs.json (with --model) and the default store."),
        judge: str = typer.Option(..., "--judge", help="OpenAI-compatible base URL (http://127.0.0.1:8000/v1), "
                                  "hf:PATH (local HF model) or rule:length (DEMO judge: prefers the longer output)."),
        model: Path | None = typer.Option(None, "--model", help="Model directory to generate outputs with "
                                          "(saved to OUTPUT/outputs.json, reused on rerun)."),
        outputs: Path | None = typer.Option(None, "--outputs", help="Model outputs, alpaca_eval format: JSON "
                                            "list (or JSONL) of {instruction, output, generator}."),
        instructions: str | None = typer.Option(None, "--instructions", help="JSON/JSONL file with "
                                                "'instruction' (default: the outputs' instructions, or the "
                                                "public set from the hub with --model)."),
        reference: str | None = typer.Option(None, "--reference", help="Reference outputs, same format as "
                                             "--outputs (default: the public baseline from the hub)."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="Model name the judge server "
                                               "expects (required with a URL)."),
        judge_key_env: str | None = typer.Option(None, "--judge-key-env", help="Name of the environment "
                                                 "variable holding the judge's API key (never printed or "
                                                 "written)."),
        judge_prompt: Path | None = typer.Option(None, "--judge-prompt", help="Your own judge prompt: YAML "
                                                 "with system/user, ChatML or plain text, placeholders "
                                                 "{instruction} {output_1} {output_2}."),
        protocol: str = typer.Option(protocol_name, "--protocol", help="Protocol name or YAML path."),
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
                                          "OUTPUT/judgments.sqlite)."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Judge only the first N items."),
        bootstrap_rounds: int = typer.Option(1000, "--bootstrap-rounds", min=10, help="Bootstrap resamples."),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", min=1, help="Generation (--model)."),
        temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="Generation; 0 = greedy."),
        top_p: float = typer.Option(1.0, "--top-p", help="Generation (sampling only)."),
        batch_size: int = typer.Option(8, "--batch-size", min=1, help="Generation batch size."),
        backend: str = typer.Option("hf", "--backend", help="Generation backend: hf or vllm."),
    ) -> None:
        settings = JudgedEvalSettings(
            output=output, judge=judge, protocol=protocol, model=model, outputs=outputs,
            instructions=instructions, reference=reference, judge_model=judge_model, judge_key_env=judge_key_env,
            judge_prompt=judge_prompt, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
            retry_delay=retry_delay, max_failed_frac=max_failed_frac, judge_max_tokens=judge_max_tokens, seed=seed,
            store=store, limit=limit, bootstrap_rounds=bootstrap_rounds,
            generation=GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                          batch_size=batch_size, seed=seed, backend=backend))
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
        inputs = collect_inputs(settings, protocol, generation_progress)
    if inputs.outputs_reused is not None:
        err_console.print(f"{'reused' if inputs.outputs_reused else 'wrote'} {inputs.outputs_source}")
    judge = open_judge(settings, protocol)
    if judge.is_demo:
        err_console.print(f"[yellow]--judge {settings.judge} is a {DEMO_LABEL}[/yellow]")
    total = len(inputs.items) * (2 if protocol.order == "both" else 1)
    with progress_bar() as bar:
        task = bar.add_task(f"judging ({protocol.name})", total=total, status="")
        tallies = {"ok": 0, "failed": 0, "identical": 0}

        def on_result(result) -> None:
            tallies[result.status] += 1
            bar.update(task, advance=1, status=f"ok {tallies['ok']} failed {tallies['failed']}")

        async def judge_and_close() -> JudgedEval:
            try:
                return await evaluate_judged(settings, inputs, judge=judge, on_result=on_result)
            finally:
                await judge.aclose()

        return asyncio.run(judge_and_close())


def _print_evaluation(settings: JudgedEvalSettings, evaluation: JudgedEval) -> None:
    summary = evaluation.summary
    protocol_label = f"{summary['protocol']} ({summary['template_version']})"
    kind = "demo judge" if summary["demo_judge"] else judge_kind(settings.judge)
    ci = summary["ci95"] or [None, None]
    rows = [
        ("protocol", protocol_label),
        ("judge", f"{settings.judge} ({kind})"),
        ("items", summary["n"]),
        ("winrate %", summary["winrate"] if summary["winrate"] is not None else "n/a"),
        ("95% CI %", f"[{ci[0]}, {ci[1]}]" if ci[0] is not None else "n/a"),
        ("wins / losses / ties", f"{summary['wins']} / {summary['losses']} / {summary['ties']}"),
        ("failed judgments", summary["failed"]),
        ("identical outputs (no call)", summary["identical"]),
        ("reused from store", summary["reused"]),
    ]
    if summary["logprob_weighted"]:
        rows.append(("log-prob weighted", summary["logprob_weighted"]))
    if summary["order"] == "both":
        rows.append(("flip rate %", summary["flip_rate"] if summary["flip_rate"] is not None else "n/a"))
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
