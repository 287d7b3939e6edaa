"""``prefcli fixtures``: make the tiny offline assets that tests, the demo and benchmarks use."""

from __future__ import annotations

from pathlib import Path

import typer

from prefcli.cli.common import console
from prefcli.errors import ConfigError
from prefcli.eval.paths import check_output_dir, check_output_file

app = typer.Typer(help="Make tiny offline assets: a random Llama model with a trained BPE tokenizer, and "
                       "synthetic data in the public datasets' schemas. For demos and tests; no network.",
                  no_args_is_help=True)


@app.command("model")
def model(
    output: Path = typer.Argument(..., help="Directory to write the model and tokenizer to."),
    hidden_size: int = typer.Option(64, min=2, help="Hidden size (a multiple of --heads, with an even head size)."),
    layers: int = typer.Option(2, min=1, help="Number of transformer layers."),
    heads: int = typer.Option(4, min=1, help="Attention heads."),
    vocab_size: int = typer.Option(512, min=1, help="BPE vocabulary size."),
    bos: bool = typer.Option(True, help="Whether the tokenizer adds a BOS token."),
    seed: int = typer.Option(0, help="Seed of the weights and the tokenizer corpus."),
) -> None:
    """Write a random Llama-architecture model with a chat template.

    Example: prefcli fixtures model demo/tiny-model
    """
    from prefcli.fixtures import build_tiny_model

    if hidden_size % heads or (hidden_size // heads) % 2:
        raise ConfigError(f"--hidden-size {hidden_size} must be a multiple of --heads {heads} with an even head size "
                          "(hidden size / heads), as rotary embeddings need")
    check_output_dir(output, flag="OUTPUT")
    build_tiny_model(output, hidden_size=hidden_size, num_layers=layers, num_heads=heads,
                     vocab_size=vocab_size, add_bos=bos, seed=seed)
    console.print(f"wrote tiny model to {output}")


def _synthetic_file_command(name: str, *, writer: str, kind: str, rows: int, rows_help: str, noun: str,
                            summary: str, example: str) -> None:
    """Register ``prefcli fixtures NAME OUTPUT --rows N --seed S``, writing with ``prefcli.fixtures.<writer>``."""
    def command(
        output: Path = typer.Argument(..., help=f"{kind} file to write."),
        rows: int = typer.Option(rows, min=1, help=rows_help),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        import prefcli.fixtures

        check_output_file(output, flag="OUTPUT")
        getattr(prefcli.fixtures, writer)(output, rows=rows, seed=seed)
        console.print(f"wrote {rows} {noun} to {output}")

    command.__doc__ = f"{summary}\n\nExample: {example}"
    command.__name__ = name
    app.command(name)(command)


_synthetic_file_command(
    "nectar", writer="write_synthetic_nectar", kind="JSONL", rows=64, rows_help="Number of rows.",
    noun="Nectar-schema rows", summary="Write synthetic rows in the Nectar schema (ranked answers, some multi-turn "
    "prompts).", example="prefcli fixtures nectar demo/nectar.jsonl --rows 64")
_synthetic_file_command(
    "instructions", writer="write_synthetic_instructions", kind="JSON", rows=16,
    rows_help="Number of instructions.", noun="instructions",
    summary="Write synthetic evaluation instructions in AlpacaEval's format.",
    example="prefcli fixtures instructions demo/instructions.json")


@app.command("reward-model")
def reward_model(
    output: Path = typer.Argument(..., help="Directory to write the reward model and tokenizer to."),
    hidden_size: int = typer.Option(64, min=4, help="Hidden size."),
    layers: int = typer.Option(2, min=1, help="Number of transformer layers."),
    seed: int = typer.Option(0, help="Seed of the weights and the tokenizer corpus."),
) -> None:
    """Write a random one-logit Llama reward model (sequence classification) with a chat template, for
    --judge rm:PATH and eval reward --reward rm:PATH.

    Example: prefcli fixtures reward-model demo/tiny-rm
    """
    from prefcli.fixtures import build_tiny_reward_model

    build_tiny_reward_model(output, hidden_size=hidden_size, num_layers=layers, seed=seed)
    console.print(f"wrote tiny reward model to {output}")


@app.command("task")
def task(
    name: str = typer.Argument(..., help="Task name (available: sort)."),
    output: Path = typer.Argument(..., help="Directory to write the task's files to."),
    sft_rows: int = typer.Option(3000, "--sft-rows", help="SFT demonstrations (mixed quality)."),
    prompts: int = typer.Option(256, "--prompts", help="Prompts to sample and rank preference candidates on."),
    heldout: int = typer.Option(64, "--heldout", help="Held-out evaluation prompts (never trained on)."),
    hidden_size: int = typer.Option(64, "--hidden-size", help="Hidden size of the random tiny Llama."),
    layers: int = typer.Option(2, "--layers", help="Transformer layers."),
    heads: int = typer.Option(4, "--heads", help="Attention heads."),
    seed: int = typer.Option(0, "--seed", help="Seed of the prompts, demonstrations and weights."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the task files already in OUTPUT."),
) -> None:
    """Write a synthetic task with a verifiable, graded reward: a random tiny Llama and its tokenizer (model/),
    SFT demonstrations (sft.jsonl), preference prompts (prompts.jsonl), held-out instructions (heldout.json) and
    the reward function (reward.py, for --judge reward:OUTPUT/reward.py:reward).

    Example: prefcli fixtures task sort runs/sort
    """
    from prefcli.cli.common import summary_table
    from prefcli.tasks import build_task

    info = build_task(name, output, sft_rows=sft_rows, prompts=prompts, heldout=heldout, hidden_size=hidden_size,
                      layers=layers, heads=heads, seed=seed, overwrite=overwrite)
    console.print(summary_table(f"prefcli fixtures task {name}", [
        ("directory", str(output)), ("SFT demonstrations", sft_rows), ("preference prompts", prompts),
        ("held-out prompts", heldout), ("model", f"Llama, hidden {hidden_size}, {layers} layers"),
        ("reward judge", info["reward"])]))
