"""OnMC-PO segments form one run by default (MC-PO paper, App. B.1): one learning-rate schedule over every
segment's steps and the optimizer state carried across segments; ``restart_schedule: true`` restarts both per
segment (iterative online DPO)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from test_online_loop import online_args, write_prompts

from prefcli.train.schedule import lr_scheduler

LR = 0.02


def schedule(total: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    scheduler = lr_scheduler(optimizer, "cosine", 0, total)
    rates = []
    for _ in range(total):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def train_lrs(output: Path) -> list[float]:
    lines = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return [line["lr"] for line in lines if line.get("event") == "train"]


@pytest.mark.parametrize("restart", [False, True])
def test_segments_share_one_schedule_and_optimizer_unless_restarted(tiny_model, tmp_path, restart):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    output = tmp_path / "run"
    config = tmp_path / "online.yaml"
    config.write_text(yaml.safe_dump({"online": {"restart_schedule": restart}}), encoding="utf-8")
    code, text = invoke_cli(online_args(tiny_model, prompts, output, "--config", config, "--scheduler", "cosine",
                                        "--max-steps", "6"))
    assert code == 0, text
    lrs = train_lrs(output)
    if restart:
        assert lrs == pytest.approx(schedule(2) * 3)  # each segment: a 2-step cosine from the full learning rate
    else:
        assert lrs == pytest.approx(schedule(6))      # one 6-step cosine across the three segments
        # segment 2 started from segment 1's Adam state: after its own 2 steps Adam has counted 4, not 2
        state = torch.load(output / "segments" / "2" / "model" / "checkpoints" / "step-2" / "optimizer.bin",
                           weights_only=True)
        assert {int(s["step"]) for s in state["state"].values()} == {4}
