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


@app.command("nectar")
def nectar(
    output: Path = typer.Argument(..., help="JSONL file to write."),
    rows: int = typer.Option(64, min=1, help="Number of rows."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Write synthetic rows in the Nectar schema (ranked answers, some multi-turn prompts).

    Example: prefcli fixtures nectar demo/nectar.jsonl --rows 64
    """
    from prefcli.fixtures import write_synthetic_nectar

    check_output_file(output, flag="OUTPUT")
    write_synthetic_nectar(output, rows=rows, seed=seed)
    console.print(f"wrote {rows} Nectar-schema rows to {output}")


@app.command("instructions")
def instructions(
    output: Path = typer.Argument(..., help="JSON file to write."),
    rows: int = typer.Option(16, min=1, help="Number of instructions."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Write synthetic evaluation instructions in AlpacaEval's format.

    Example: prefcli fixtures instructions demo/instructions.json
    """
    from prefcli.fixtures import write_synthetic_instructions

    check_output_file(output, flag="OUTPUT")
    write_synthetic_instructions(output, rows=rows, seed=seed)
    console.print(f"wrote {rows} instructions to {output}")
