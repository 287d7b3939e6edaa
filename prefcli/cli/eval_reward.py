"""``prefcli eval reward``: mean reward of a model's outputs under a reward function or reward model."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, generating_model_option, progress_bar, summary_table
from prefcli.cli.generate import decoding_flags, generation_params
from prefcli.errors import ConfigError
from prefcli.eval.model_outputs import generate_model_outputs
from prefcli.generate import GenerationParams
from prefcli.settings.cli import with_more_options

EXAMPLE = ("prefcli eval reward --model runs/mcpo --instructions task/heldout.json "
           "--reward reward:task/reward.py:reward --output runs/mcpo/reward")


def register(app: typer.Typer) -> None:
    @app.command("reward", help="Score a model's outputs with a reward function (reward:FILE.py:FUNCTION, "
                                "reward:package.module:FUNCTION) or a reward model (rm:PATH_OR_ID); writes "
                                "OUTPUT/results.json (mean, std, ci95, n) and OUTPUT/scores.jsonl (one score per "
                                f"item), readable by eval report.\n\nExample: {EXAMPLE}")
    @with_more_options(decoding_flags("batch_size"))  # --batch-size also sizes reward-model batches
    def reward(
        reward_spec: str = typer.Option(..., "--reward", help="reward:FILE.py:FUNCTION, "
                                        "reward:package.module:FUNCTION or rm:PATH_OR_ID."),
        output: Path = typer.Option(..., "--output", "-o", help="Run directory: results.json, scores.jsonl "
                                    "(and outputs.json with --model)."),
        model: Path | None = generating_model_option(),
        outputs: Path | None = typer.Option(None, "--outputs", help="Model outputs, alpaca_eval format: JSON "
                                            "list or JSONL with 'instruction' and 'output'."),
        instructions: Path | None = typer.Option(None, "--instructions", help="JSON/JSONL file with "
                                                 "'instruction' per item (required with --model; with --outputs, "
                                                 "scores only these)."),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Score the first N instructions."),
        batch_size: int = typer.Option(16, "--batch-size", min=1, help="Generation batch and reward-model batch."),
        **decoding,
    ) -> None:
        _run(reward_spec=reward_spec, output=output, model=model, outputs=outputs, instructions=instructions,
             limit=limit, batch_size=batch_size, generation=generation_params(decoding, batch_size=batch_size))


def _run(*, reward_spec, output: Path, model, outputs, instructions, limit, batch_size,
         generation: GenerationParams) -> None:
    from prefcli import __version__
    from prefcli.data.atomic import atomic_open, write_json
    from prefcli.data.sidecar import file_checksum, write_sidecar
    from prefcli.eval import items as items_lib
    from prefcli.eval.paths import check_output_dir
    from prefcli.eval.reward import make_scorer, score_outputs, summarize_scores

    if (model is None) == (outputs is None):
        raise ConfigError("pass exactly one of --model (generate the outputs) or --outputs FILE")
    if model is not None and instructions is None:
        raise ConfigError("--instructions FILE is required with --model")
    check_output_dir(output)
    written = {output / "results.json", output / "scores.jsonl"}
    if outputs is not None and outputs.resolve() in {path.resolve() for path in written}:
        raise ConfigError(f"--outputs {outputs} would be overwritten by the results; write them elsewhere")
    instruction_list = items_lib.read_instructions(instructions) if instructions is not None else None
    out_table = items_lib.read_outputs(outputs) if outputs is not None else None
    scorer = make_scorer(reward_spec, batch_size=batch_size)  # loads the function or model: fails before work
    if instruction_list is not None and limit:
        instruction_list = instruction_list[:limit]
    output.mkdir(parents=True, exist_ok=True)

    if model is not None:
        with progress_bar(transient=True) as bar:
            task = bar.add_task("generating", total=len(instruction_list), status="")
            out_table, reused = generate_model_outputs(
                model, instruction_list, output / "outputs.json", generation=generation,
                progress=lambda done: bar.update(task, completed=done))
        err_console.print(f"{'reused' if reused else 'wrote'} {output / 'outputs.json'}")
        outputs_source = str(output / "outputs.json")
    else:
        outputs_source = str(outputs)
        if instruction_list is not None:
            missing = [instruction for instruction in instruction_list if instruction not in out_table]
            if missing:
                raise ConfigError(f"--outputs {outputs}: no output for {len(missing)} of the --instructions, e.g. "
                                  f"{missing[0][:60]!r}")
    wanted = instruction_list if instruction_list is not None else list(out_table)
    if limit:
        wanted = wanted[:limit]
    items = [(instruction, out_table[instruction][0]) for instruction in wanted]
    if not items:
        raise ConfigError("nothing to score: no instructions")

    with progress_bar() as bar:
        task = bar.add_task("scoring", total=len(items), status="")
        scored = score_outputs(scorer, items, progress=lambda done: bar.update(task, completed=done))
    stats = summarize_scores(scored)
    generator = next(iter(out_table.values()))[1] if out_table else None
    summary = {"kind": "reward", "reward": reward_spec, "reward_model": scorer.name, **stats,
               "model": str(model) if model is not None else generator, "outputs": outputs_source,
               "seed": generation.seed, "scores": str(output / "scores.jsonl"), "prefcli_version": __version__}
    with atomic_open(output / "scores.jsonl") as handle:
        for index, item in enumerate(scored):
            handle.write(json.dumps({"item": index, "instruction": item.instruction, "output": item.output,
                                     "score": item.score, "error": item.error}, ensure_ascii=False) + "\n")
    write_json(output / "results.json", summary)
    inputs = {key: file_checksum(Path(value)) for key, value in
              (("outputs", outputs_source), ("instructions", instructions)) if value and Path(value).is_file()}
    write_sidecar(output / "results.json", seed=generation.seed, inputs=inputs,
                  argv=["prefcli", *sys.argv[1:]], counts={"n": stats["n"], "failed": stats["failed"]},
                  config={"reward": reward_spec, "reward_model": scorer.name,
                          "generation": asdict(generation) if model is not None else None})
    failures = [item.error for item in scored if item.error]
    for error in failures[:3]:
        err_console.print(f"[yellow]failed score:[/yellow] {error}", highlight=False)

    def fmt(value):
        return "–" if value is None else f"{value:.4f}"

    ci = stats["ci95"]
    console.print(summary_table("prefcli eval reward", [
        ("reward", scorer.name), ("outputs", outputs_source), ("scored items (n)", stats["n"]),
        ("failed scores", stats["failed"]), ("mean", fmt(stats["mean"])), ("std", fmt(stats["std"])),
        ("95% CI of the mean", "–" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]"),
        ("results", str(output / "results.json"))]))
    if stats["n"] == 0:
        raise ConfigError(f"every score failed (last error: {failures[-1]}); results.json records them")
