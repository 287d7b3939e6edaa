"""``prefcli train --online``: the flags of the batched online loop (OnMC-PO / online DPO) and its summary. The
train command hands over here when ``--online`` is given or the config has an ``online:`` mapping."""

from __future__ import annotations

import os

from prefcli.cli.common import console, err_console, progress_bar, summary_table
from prefcli.errors import ConfigError

#: The train command's online flags (option name → OnlineConfig field; ``online`` switches the mode on).
ONLINE_FLAGS = ("online", "segments", "judge", "judge_model", "judge_key_env", "max_new_tokens", "temperatures",
                "per_temperature", "both_orders")


def run_if_online(config, flags: dict) -> bool:
    """Run the online loop when asked (``--online`` or ``online:`` in the config) and return True; return False
    for offline training. Online flags without online mode are an error."""
    given = {name: value for name, value in flags.items() if name != "online" and value is not None}
    if not flags.get("online") and config.online is None:
        if given:
            names = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ConfigError(f"{names}: only with --online (the batched online loop)")
        return False
    if os.environ.get("WORLD_SIZE", "1") != "1":
        raise ConfigError("--online: runs in one process (generation and judging between segments); launch it "
                          "without torchrun / accelerate launch")
    from prefcli.cli.prepare_generate import judge_api_key
    from prefcli.online.loop import OnlineConfig, run_online

    online = OnlineConfig.from_dict({**(config.online or {}), **given}, "online")
    api_key = judge_api_key(online.judge_key_env)
    with progress_bar() as bar:
        summary = run_online(config, online, api_key=api_key, progress=bar.callback(status=_status))
    _print_summary(summary)
    return True


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
        ("sampling time (s)", summary["generation_seconds"]),
        ("judging time (s)", summary["judge_seconds"]),
        ("training time (s)", summary["train_seconds"]),
        ("model", summary["final_model"]),
    ]
    if summary["repeated_prompts_dropped"]:
        err_console.print(f"note: {summary['repeated_prompts_dropped']} repeated prompts were used once")
    console.print(summary_table("prefcli train --online", rows))
