"""``prefcli generate``: a model's outputs for a set of instructions, in alpaca_eval format (e.g. the reference
outputs that ``prefcli eval alpaca --reference`` compares against)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.eval.items import read_instructions
from prefcli.eval.model_outputs import GenerationSettings, generate_model_outputs
from prefcli.eval.paths import check_output_file, check_utf8
from prefcli.generate import GenerationParams


def register(app: typer.Typer) -> None:
    @app.command("generate")
    def generate(
        model: str = typer.Option(..., help="Model directory (full model or LoRA adapter) or hub id."),
        instructions: Path = typer.Option(..., help="JSON/JSONL file with an 'instruction' field per item."),
        output: Path = typer.Option(..., help="JSON file to write: [{instruction, output, generator}] (not a "
                                    "directory, not the --instructions file)."),
        max_new_tokens: int = typer.Option(512, min=1, help="Tokens generated per output."),
        temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy."),
        top_p: float = typer.Option(1.0, help="Nucleus sampling (sampling only)."),
        batch_size: int = typer.Option(8, min=1, help="Prompts per generation batch."),
        seed: int = typer.Option(0, help="Seed of sampling."),
        backend: str = typer.Option("hf", help="hf or vllm (when installed)."),
    ) -> None:
        """Generate a model's outputs for instructions, in alpaca_eval format, with a sidecar; a rerun with the
        same model weights, parameters and instructions reuses the file.

        Example: prefcli generate --model ./sft --instructions instructions.json --output ref.json
        """
        generation = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                        batch_size=batch_size, seed=seed, backend=backend)
        GenerationParams(**asdict(generation))  # every value checked before any file is read
        check_output_file(output, inputs={"--instructions": instructions, "--model": model})
        check_utf8(instructions)
        instruction_list = read_instructions(instructions)
        with progress_bar(transient=True) as bar:
            task = bar.add_task("generating", total=len(instruction_list), status="")
            outputs, reused = generate_model_outputs(model, instruction_list, output, generation=generation,
                                                     progress=lambda done: bar.update(task, completed=done))
        err_console.print(f"{'reused' if reused else 'wrote'} {output}")
        mean_chars = sum(len(text) for text, _ in outputs.values()) / len(outputs)
        console.print(summary_table("prefcli generate", [
            ("model", model), ("outputs", len(outputs)), ("mean output length (chars)", mean_chars),
            ("reused", reused), ("file", str(output))]))
