"""``prefcli fixtures``: make the tiny offline assets that tests, the demo and benchmarks use."""

from __future__ import annotations

from pathlib import Path

import typer

from prefcli.cli.common import console

app = typer.Typer(help="Make tiny offline assets: a random Llama model with a trained BPE tokenizer, and "
                       "synthetic data in the public datasets' schemas. For demos and tests; no network.",
                  no_args_is_help=True)


@app.command("model")
def model(
    output: Path = typer.Argument(..., help="Directory to write the model and tokenizer to."),
    hidden_size: int = typer.Option(64, help="Hidden size."),
    layers: int = typer.Option(2, help="Number of transformer layers."),
    heads: int = typer.Option(4, help="Attention heads."),
    vocab_size: int = typer.Option(512, help="BPE vocabulary size."),
    bos: bool = typer.Option(True, help="Whether the tokenizer adds a BOS token."),
    seed: int = typer.Option(0, help="Seed of the weights and the tokenizer corpus."),
) -> None:
    """Write a random Llama-architecture model with a chat template.

    Example: prefcli fixtures model demo/tiny-model
    """
    from prefcli.fixtures import build_tiny_model

    build_tiny_model(output, hidden_size=hidden_size, num_layers=layers, num_heads=heads,
                     vocab_size=vocab_size, add_bos=bos, seed=seed)
    console.print(f"wrote tiny model to {output}")


@app.command("nectar")
def nectar(
    output: Path = typer.Argument(..., help="JSONL file to write."),
    rows: int = typer.Option(64, help="Number of rows."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Write synthetic rows in the Nectar schema (ranked answers, some multi-turn prompts).

    Example: prefcli fixtures nectar demo/nectar.jsonl --rows 64
    """
    from prefcli.fixtures import write_synthetic_nectar

    write_synthetic_nectar(output, rows=rows, seed=seed)
    console.print(f"wrote {rows} Nectar-schema rows to {output}")


@app.command("instructions")
def instructions(
    output: Path = typer.Argument(..., help="JSON file to write."),
    rows: int = typer.Option(16, help="Number of instructions."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Write synthetic evaluation instructions in AlpacaEval's format.

    Example: prefcli fixtures instructions demo/instructions.json
    """
    from prefcli.fixtures import write_synthetic_instructions

    write_synthetic_instructions(output, rows=rows, seed=seed)
    console.print(f"wrote {rows} instructions to {output}")
