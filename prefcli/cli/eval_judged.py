"""``prefcli eval alpaca``, ``prefcli eval arena`` and ``prefcli eval status``: judged winrates against a reference,
with every judge call kept in a durable store so nothing is lost or paid for twice."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError, JudgeError
from prefcli.hub import looks_like_hub_id

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
        settings = dict(locals())
        _run_judged(**settings)

    command.__name__ = f"eval_{protocol_name}"
    return command


def _run_judged(*, output: Path, judge: str, model, outputs, instructions, reference, judge_model, judge_key_env,
                judge_prompt, protocol, concurrency, timeout, max_retries, retry_delay, max_failed_frac,
                judge_max_tokens, seed, store, limit, bootstrap_rounds, max_new_tokens, temperature, top_p,
                batch_size, backend) -> None:
    from prefcli import __version__
    from prefcli.data.atomic import atomic_open, write_json
    from prefcli.data.sidecar import file_checksum, write_sidecar
    from prefcli.eval import items as items_lib
    from prefcli.eval.judges import DEMO_LABEL, judge_kind, make_judge
    from prefcli.eval.protocols import load_protocol
    from prefcli.eval.run import judge_all, judgment_rows, plan_judgments, summarize
    from prefcli.eval.store import JudgmentStore

    if (model is None) == (outputs is None):
        raise ConfigError("pass exactly one of --model (generate the outputs) or --outputs FILE")
    kind = judge_kind(judge)
    api_key = None
    if judge_key_env:
        api_key = os.environ.get(judge_key_env)
        if not api_key:
            raise ConfigError(f"--judge-key-env: the environment variable {judge_key_env} is not set")
    proto = load_protocol(protocol, judge_prompt=judge_prompt)
    output.mkdir(parents=True, exist_ok=True)
    store_path = store or output / "judgments.sqlite"

    instruction_list = _load_instructions(items_lib, instructions, proto, need=model is not None)
    if limit and instruction_list is not None:
        instruction_list = instruction_list[:limit]
    ref_table, reference_source = _load_reference(items_lib, reference, proto)
    generation = None
    if model is not None:
        generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p,
                      "batch_size": batch_size, "seed": seed, "backend": backend}
        with progress_bar(transient=True) as bar:
            task = bar.add_task("generating", total=len(instruction_list), status="")
            out_table, reused = items_lib.generate_model_outputs(
                model, instruction_list, output / "outputs.json", generation=generation,
                progress=lambda done: bar.update(task, completed=done))
        err_console.print(f"{'reused' if reused else 'wrote'} {output / 'outputs.json'}")
        outputs_source = str(output / "outputs.json")
    else:
        out_table, outputs_source = items_lib.read_outputs(outputs), str(outputs)
    items = items_lib.match_items(instruction_list, out_table, ref_table, outputs_source=outputs_source,
                                  reference_source=reference_source)
    if limit:
        items = items[:limit]

    judge_impl = make_judge(judge, protocol=proto, model=judge_model, api_key=api_key, timeout=timeout)
    if judge_impl.is_demo:
        err_console.print(f"[yellow]--judge {judge} is a {DEMO_LABEL}[/yellow]")
    planned = plan_judgments(proto, items, judge_name=judge_impl.name, seed=seed)

    with JudgmentStore(store_path) as judgment_store, progress_bar() as bar:
        task = bar.add_task(f"judging ({proto.name})", total=len(planned), status="")
        tallies = {"ok": 0, "failed": 0, "identical": 0}

        def on_result(result) -> None:
            tallies[result.status] += 1
            bar.update(task, advance=1, status=f"ok {tallies['ok']} failed {tallies['failed']}")

        results = judge_all(planned, protocol=proto, judge=judge_impl, store=judgment_store,
                            concurrency=concurrency, max_retries=max_retries, retry_delay=retry_delay,
                            max_tokens=judge_max_tokens, on_result=on_result)
        failures = judgment_store.failures(3)

    summary = summarize(proto, items, results, seed=seed, bootstrap_rounds=bootstrap_rounds)
    judge_label = f"{judge} ({'demo judge' if judge_impl.is_demo else kind})"
    summary.update({
        "judge": f"{judge} (demo judge)" if judge_impl.is_demo else judge,
        "judge_model": judge_impl.name,
        "demo_judge": bool(judge_impl.is_demo),
        "judge_note": DEMO_LABEL if judge_impl.is_demo else None,
        "model": str(model) if model is not None else items[0].generator if items else None,
        "reference": items[0].reference_generator if items else None,
        "generation": generation,
        "max_failed_frac": max_failed_frac,
        "store": str(store_path),
        "prefcli_version": __version__,
    })
    write_json(output / "results.json", summary)
    with atomic_open(output / "judgments.jsonl") as handle:
        for row in judgment_rows(results):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    inputs = {name: file_checksum(path) for name, path in
              (("outputs", outputs_source), ("reference", reference_source), ("instructions", instructions))
              if path and Path(path).is_file()}
    write_sidecar(output / "results.json", seed=seed, inputs=inputs, argv=["prefcli", *sys.argv[1:]],
                  config={"protocol": proto.source, "template_version": proto.template_version, "judge": judge,
                          "judge_model": judge_model, "concurrency": concurrency, "timeout": timeout,
                          "max_retries": max_retries, "judge_max_tokens": judge_max_tokens},
                  counts={k: summary[k] for k in ("n", "judgments", "judged", "failed", "identical", "reused")})

    ci = summary["ci95"] or [None, None]
    rows = [
        ("protocol", f"{proto.name} ({proto.template_version})"),
        ("judge", judge_label),
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
    if proto.order == "both":
        rows.append(("flip rate %", summary["flip_rate"] if summary["flip_rate"] is not None else "n/a"))
    rows.append(("results", str(output / "results.json")))
    console.print(summary_table(f"prefcli eval {proto.name}", rows))
    if summary["failed_frac"] > max_failed_frac:
        for error, reply in failures:
            err_console.print(f"  last failure: {error}" + (f"; reply {reply[:80]!r}" if reply else ""),
                              highlight=False)
        raise JudgeError(f"{summary['failed']} of {summary['judgments'] - summary['identical']} judgments failed "
                         f"({100 * summary['failed_frac']:.1f}% > --max-failed-frac {max_failed_frac}); results.json "
                         "counts them as failed; rerun the same command to retry only those")


def _load_instructions(items_lib, instructions: str | None, proto, *, need: bool) -> list[str] | None:
    if instructions is None:
        if not need:
            return None
        if not proto.instructions_hub:
            raise ConfigError(f"--instructions FILE is required (protocol {proto.name} names no public set)")
        return [row["instruction"] for row in items_lib.load_hub_rows(proto.instructions_hub, "instructions")]
    if Path(instructions).exists() or not looks_like_hub_id(instructions):
        return items_lib.read_instructions(instructions)
    return [row["instruction"] for row in
            items_lib.load_hub_rows({"id": instructions, "split": "train"}, "instructions")]


def _load_reference(items_lib, reference: str | None, proto) -> tuple[dict, str]:
    if reference is not None and (Path(reference).exists() or not looks_like_hub_id(reference)):
        return items_lib.read_outputs(reference), str(reference)
    spec = {"id": reference, "split": "train"} if reference is not None else proto.reference_hub
    if not spec:
        raise ConfigError(f"--reference FILE is required (protocol {proto.name} names no public reference)")
    rows = items_lib.load_hub_rows(spec, "reference outputs")
    if any(not isinstance(row["output"], str) for row in rows):
        raise ConfigError(f"{spec['id']}: rows have no 'output' field; pass --reference FILE")
    return {row["instruction"]: (row["output"], str(row["generator"])) for row in rows}, spec["id"]


def status_command(
    run_dir: Path = typer.Argument(..., help="Run directory (holds judgments.sqlite and results.json)."),
    store: Path | None = typer.Option(None, "--store", help="Judgment store (default DIR/judgments.sqlite)."),
) -> None:
    from rich.table import Table

    from prefcli.eval.store import JudgmentStore

    store_path = store or run_dir / "judgments.sqlite"
    with JudgmentStore(store_path, readonly=True) as judgment_store:
        groups = judgment_store.counts()
        failures = judgment_store.failures(3)
    table = Table(title=f"judgments in {store_path}", header_style="bold")
    for column in ("judge", "protocol", "status", "judgments", "attempts"):
        table.add_column(column, justify="right" if column in ("judgments", "attempts") else "left")
    for judge_name, proto, status, count, attempts in groups:
        table.add_row(judge_name, proto, f"[green]{status}[/green]" if status == "ok" else f"[red]{status}[/red]",
                      str(count), str(attempts))
    console.print(table)
    totals = {"ok": sum(g[3] for g in groups if g[2] == "ok"), "failed": sum(g[3] for g in groups if g[2] != "ok")}
    rows: list[tuple[str, object]] = [("ok", totals["ok"]), ("failed", totals["failed"])]
    results_file = run_dir / "results.json"
    if results_file.is_file():
        results = json.loads(results_file.read_text(encoding="utf-8"))
        rows += [("last run: protocol", results.get("protocol")), ("last run: winrate %", results.get("winrate")),
                 ("last run: items", results.get("n")), ("last run: failed", results.get("failed"))]
    for error, _ in failures:
        rows.append(("recent failure", error))
    console.print(summary_table("status", rows))
