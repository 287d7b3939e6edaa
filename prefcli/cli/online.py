"""``prefcli train --online``: the batched online loop (OnMC-PO / online DPO) and its summary. The train command
hands over here when ``--online`` is given or the config has an ``online:`` mapping."""

from __future__ import annotations

import os

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError


def run_online_command(config) -> None:
    """Run the online loop of ``config`` (its ``online`` group set) and print its summary."""
    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise ConfigError("--online: runs in one process (generation and judging between segments); launch it "
                          "without torchrun / accelerate launch")
    from prefcli.cli.prepare_generate import judge_api_key
    from prefcli.online.loop import run_online

    api_key = judge_api_key(config.online.judging.judge_key_env)
    with progress_bar() as bar:
        summary = run_online(config, api_key=api_key, progress=bar.callback(status=_status))
    _print_summary(summary)


def _status(phase: str, metrics) -> str:
    return f"loss {metrics['loss']:.4f}" if "loss" in metrics else ""


def _print_summary(summary: dict) -> None:
    rows = [("loss", summary["loss"]), ("prompts", summary["prompts"]), ("steps", summary["steps"])]
    for segment in summary["segments"]:
        rows.append((f"segment {segment['segment']}",
                     f"{segment['records']} records, {segment['judgments']} judge calls, {segment['steps']} steps, "
                     f"loss {segment['final_loss']:.4f}" if segment["final_loss"] is not None else "-"))
    rows += [
        ("generated / trained now", f"{summary['generated_now'] or '-'} / {summary['trained_now'] or '-'}"),
        ("candidates refilled", summary["candidates_refilled"]),
        ("sampling time (s)", summary["generation_seconds"]),
        ("judging time (s)", summary["judge_seconds"]),
        ("training time (s)", summary["train_seconds"]),
        ("model", summary["final_model"]),
    ]
    if summary["repeated_prompts_dropped"]:
        err_console.print(f"note: {summary['repeated_prompts_dropped']} repeated prompts were used once")
    if summary["candidates_refilled"]:
        err_console.print(f"note: {summary['candidates_refilled']} records had fewer than --negatives distinct "
                          "candidates after dropping empty and repeated samples; their negatives were drawn with "
                          "replacement from what was left")
    console.print(summary_table("prefcli train --online", rows))
