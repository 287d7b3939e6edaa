"""``prefcli train``: train a policy with any registered preference loss. Its flags are derived from
``prefcli.settings.TrainSettings`` (one option per setting, ``--online`` and its flags from the online group);
flags → settings → library."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.settings import TrainSettings
from prefcli.settings.cli import given, options, with_options

EXAMPLE = "prefcli train --model ./sft --data nectar.jsonl --loss mcpo --negatives 4 --output runs/mcpo"
_ONLINE_PANEL = "Online (--online: OnMC-PO / online DPO)"


PHASE_LABELS = {"reference": "reference log-probs", "tokenize": "tokenize", "read": "read data (MB)",
                "train": "train"}


def _status(phase: str, metrics) -> str:
    if phase == "train" and "loss" in metrics:
        return f"loss {metrics['loss']:.4f} · {metrics['examples_per_s']:.1f} ex/s"
    return ""


_CONFIG_OPTION = inspect.Parameter(
    "config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Path | None,
    default=typer.Option(None, "--config", help="YAML with any of these settings (keys = flags with _); flags "
                                                "override it."))


def register(app: typer.Typer) -> None:
    @app.command("train", help=f"Train a policy on preference records with any loss.\n\nExample: {EXAMPLE}")
    @with_options(options(TrainSettings, panel=lambda leaf: _ONLINE_PANEL if leaf.path[0] == "online" else None),
                  extra=[_CONFIG_OPTION])
    def train_command(config_file: Path | None = None, **flags) -> None:
        config = settings_from_flags(config_file, flags)
        if config.online is not None:
            from prefcli.cli.online import run_online_command

            run_online_command(config)
            return
        from prefcli.train import train

        if os.environ.get("RANK", "0") != "0":  # torchrun / accelerate launch: only the main process reports
            train(config)
            return
        with progress_bar() as bar:
            summary = train(config, progress=bar.callback(PHASE_LABELS, _status))
        _print_summary(summary)


def settings_from_flags(config_file: Path | None, flags: dict) -> TrainSettings:
    """Defaults, then ``--config``, then the flags; online flags need ``--online`` (or ``online:`` in the file).
    Checked before anything is loaded."""
    from prefcli.errors import ConfigError
    from prefcli.settings import build, read_yaml

    flags = {name: str(value) if isinstance(value, Path) else value for name, value in flags.items()}
    overrides = given(TrainSettings, flags)
    config = TrainSettings() if config_file is None else build(TrainSettings, read_yaml(config_file), str(config_file))
    online = overrides.get("online")
    if online and not flags.get("online") and config.online is None:
        names = ", ".join(options_flag(name) for name in online)
        raise ConfigError(f"{names}: only with --online (the batched online loop)")
    config = build(TrainSettings, overrides, "command line", config)
    config.validate()
    return config


def options_flag(name: str) -> str:
    from prefcli.settings import leaves

    return next(leaf.flag for leaf in leaves(TrainSettings) if leaf.name == name)


def _print_summary(summary: dict) -> None:
    truncated = summary["truncated_examples"]
    if truncated:
        checked = summary.get("examples_checked", summary["examples"])
        err_console.print(f"[yellow]note:[/yellow] {truncated} of {checked} examples used were truncated "
                          f"({summary['truncated_prompts']} prompts cut from the left, "
                          f"{summary['truncated_completions']} completions cut at the end)")
    rows = [
        ("loss", summary["loss"]),
        ("steps", f"{summary['steps_run']} run / {summary['steps']}"
                  + (f" (resumed at {summary['resumed_from']})" if summary["resumed_from"] is not None else "")),
        ("epochs", summary["epochs"]),
        ("processes", summary["processes"]),
        ("final loss", summary["final_loss"] if summary["final_loss"] is not None else "-"),
        ("final reward accuracy", summary["final_accuracy"] if summary["final_accuracy"] is not None else "-"),
        ("examples / s", summary["examples_per_s"]),
        ("tokens / s", summary["tokens_per_s"]),
        ("start-up (s)", summary["startup_seconds"]),
        ("train time (s)", summary["train_seconds"]),
        ("reference log-probs", summary["reference"]),
        ("truncated examples", truncated),
        ("model", summary["final_model"]),
    ]
    console.print(summary_table("prefcli train", rows))
