"""Two CPU processes under torchrun (gloo) with the same global batch log the same losses as one process, and
write one checkpoint, not two."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys

import pytest
from train_helpers import write_pairs

from prefcli.train import TrainConfig, train
from prefcli.train.config import dump_config
from prefcli.train.metrics import read_metrics


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=16)
    single = TrainConfig(model=str(tiny_model), data=str(data), output=str(tmp_path / "one"), batch_size=4,
                         max_steps=4, save_every=4, lr=5e-3, warmup=0, seed=5, max_length=96, max_prompt_length=48,
                         ref_cache_dir=str(tmp_path / "cache-one"))
    one = train(single)

    # fresh reference cache: the two processes precompute their shares and all-gather them
    double = dataclasses.replace(single, batch_size=2, output=str(tmp_path / "two"),
                                 ref_cache_dir=str(tmp_path / "cache-two"))
    config_file = tmp_path / "two.yaml"
    config_file.write_text(dump_config(double), encoding="utf-8")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(free_port()), "-m", "prefcli", "train", "--config", str(config_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "│ processes" in done.stdout and done.stdout.count("prefcli train") == 1  # one summary, from rank 0
    assert "2 │" in next(line for line in done.stdout.splitlines() if "processes" in line)

    two = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [line["step"] for line in two] == [1, 2, 3, 4]  # each step logged once, not once per process
    assert [line["loss"] for line in two] == pytest.approx([h["loss"] for h in one["history"]], abs=1e-5)
    assert [line["rewards/accuracy"] for line in two] == pytest.approx(
        [line["rewards/accuracy"] for line in read_metrics(tmp_path / "one" / "metrics.jsonl")], abs=1e-6)

    checkpoints = sorted(path.name for path in (tmp_path / "two" / "checkpoints").iterdir())
    assert checkpoints == ["step-4"]
    step_dir = tmp_path / "two" / "checkpoints" / "step-4"
    assert (step_dir / "random_states_0.pkl").is_file() and (step_dir / "random_states_1.pkl").is_file()
    assert (tmp_path / "two" / "model.safetensors").is_file()
