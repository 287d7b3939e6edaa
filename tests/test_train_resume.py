"""A run killed with SIGKILL and resumed ends bit-exactly where an uninterrupted run ends (CPU), and its
metrics.jsonl holds every step exactly once; half-written checkpoints are ignored."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import write_pairs

from prefcli.train import TrainConfig, train
from prefcli.train.checkpoint import latest_checkpoint
from prefcli.train.config import dump_config
from prefcli.train.metrics import read_metrics

STEPS = 24


@pytest.mark.slow
def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=16)
    config = TrainConfig(model=str(tiny_model), data=str(data), output=str(tmp_path / "straight"), batch_size=2,
                         max_steps=STEPS, save_every=3, lr=5e-3, warmup=0.2, scheduler="cosine", seed=11,
                         max_length=96, max_prompt_length=48, ref_cache_dir=str(tmp_path / "cache"))
    straight = train(config)

    killed_dir = tmp_path / "killed"
    killed = dataclasses.replace(config, output=str(killed_dir))
    config_file = tmp_path / "killed.yaml"
    config_file.write_text(dump_config(killed), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "prefcli", "train", "--config", str(config_file)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    second_checkpoint = killed_dir / "checkpoints" / "step-6" / "COMPLETE"
    deadline = time.monotonic() + 180
    while not second_checkpoint.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the run never wrote its second checkpoint"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stderr.close()
    assert not (killed_dir / "model.safetensors").exists(), "the run finished before it was killed"
    logged_before = len(read_metrics(killed_dir / "metrics.jsonl"))

    # a checkpoint being written when the process died, and one without its marker: both ignored
    (killed_dir / "checkpoints" / ".tmp-step-99").mkdir()
    (killed_dir / "checkpoints" / "step-98").mkdir()
    (killed_dir / "checkpoints" / "step-98" / "model.safetensors").write_bytes(b"half")
    newest, _ = latest_checkpoint(killed_dir)
    assert 6 <= newest < STEPS

    resumed = train(dataclasses.replace(killed, resume=True))
    assert resumed["resumed_from"] == newest and resumed["steps_run"] == STEPS - newest

    ours, theirs = load_file(killed_dir / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert torch.equal(ours[name], theirs[name]), name

    lines = read_metrics(killed_dir / "metrics.jsonl")
    assert [line["step"] for line in lines] == list(range(1, STEPS + 1))
    assert [line["loss"] for line in lines] == [h["loss"] for h in straight["history"]]
    assert [line["lr"] for line in lines] == [line["lr"] for line in read_metrics(tmp_path / "straight" / "metrics.jsonl")]
    assert logged_before >= 6
