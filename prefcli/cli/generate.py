"""``prefcli generate``: a model's outputs for a set of instructions, in alpaca_eval format (e.g. the reference
outputs that ``prefcli eval alpaca --reference`` compares against)."""

from __future__ import annotations

import inspect
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.eval.items import read_instructions
from prefcli.eval.model_outputs import generate_model_outputs
from prefcli.eval.paths import check_output_file
from prefcli.generate import GenerationParams
from prefcli.settings.cli import options, with_options

#: One output per instruction: every decoding value but the number of replies.
DECODING_FLAGS = [param for param in options(GenerationParams) if param.name != "num_return_sequences"]


def decoding_flags(*own: str) -> list[inspect.Parameter]:
    """The decoding flags of a command that declares the flags named ``own`` itself."""
    return [param for param in DECODING_FLAGS if param.name not in own]


def generation_params(decoding: dict, **own) -> GenerationParams:
    """The GenerationParams of the decoding flags given (the others keep their defaults) and ``own`` values."""
    return GenerationParams(**{name: value for name, value in decoding.items() if value is not None}, **own)


def _files() -> list[inspect.Parameter]:
    def option(name: str, annotation, help: str) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                 default=typer.Option(..., f"--{name}", help=help))

    return [
        option("model", str, "Model directory (full model or LoRA adapter) or hub id."),
        option("instructions", Path, "JSON/JSONL file with an 'instruction' field per item."),
        option("output", Path, "JSON file to write: [{instruction, output, generator}] (not a directory, not the "
               "--instructions file)."),
    ]


def register(app: typer.Typer) -> None:
    @app.command("generate")
    @with_options(DECODING_FLAGS, extra=_files())
    def generate(*, model: str, instructions: Path, output: Path, **decoding) -> None:
        """Generate a model's outputs for instructions, in alpaca_eval format, with a sidecar; a rerun with the
        same model weights, parameters and instructions reuses the file.

        Example: prefcli generate --model ./sft --instructions instructions.json --output ref.json
        """
        # every value checked before any file is read
        generation = generation_params(decoding)
        check_output_file(output, inputs={"--instructions": instructions, "--model": model})
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
