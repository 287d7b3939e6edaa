"""The one progress display: a rich bar on a terminal, plain lines with rate and ETA in a log."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from train_helpers import write_pairs

import prefcli.progress as progress_module
from prefcli.progress import ProgressBar


def _lines(console: Console) -> list[str]:
    return [line for line in console.file.getvalue().splitlines() if line.strip()]


def test_off_a_terminal_a_task_logs_at_start_every_few_seconds_and_at_the_end(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: now[0])
    console = Console(file=StringIO(), force_terminal=False, width=200)
    with ProgressBar(console, log_every=5) as bar:
        task = bar.add_task("tokenize", total=1000)
        for clock, done in ((0, 0), (1, 100), (4.9, 400), (6, 600), (8, 1000), (9, 1000)):
            now[0] = 100.0 + clock
            bar.update(task, completed=done)
    assert _lines(console) == [
        "tokenize: 0/1,000 (0.0%) · -/s · elapsed 0:00:00",
        "tokenize: 600/1,000 (60.0%) · 100/s · elapsed 0:00:06 · ETA 0:00:04",
        "tokenize: 1,000/1,000 (100.0%) · 125/s · elapsed 0:00:08",
    ]


def test_the_callback_draws_one_task_per_phase_with_its_label_and_status(monkeypatch):
    console = Console(file=StringIO(), force_terminal=False, width=200)
    with ProgressBar(console, log_every=0) as bar:
        report = bar.callback({"train": "training"}, lambda phase, metrics: f"loss {metrics['loss']:.2f}"
                              if "loss" in metrics else "")
        report("read", 0.5, 2.5)
        report("train", 1, 2, {"loss": 0.6931})
        report("train", 2, 2, {"loss": 0.5})
    lines = _lines(console)
    assert lines[0].startswith("read: 0.5/2.5 (20.0%)")
    assert lines[1].startswith("training: 1/2 (50.0%)") and lines[1].endswith("loss 0.69")
    assert lines[2].startswith("training: 2/2 (100.0%)") and lines[2].endswith("loss 0.50")


def test_an_unfinished_task_gets_a_last_line_when_the_display_closes():
    console = Console(file=StringIO(), force_terminal=False, width=200)
    with ProgressBar(console, log_every=60) as bar:
        task = bar.add_task("judging", total=None)
        for done in range(1, 4):
            bar.update(task, completed=done)
    assert [line.split(" · ")[0] for line in _lines(console)] == ["judging: 1", "judging: 3"]


def test_on_a_terminal_it_is_a_rich_bar_with_rate():
    console = Console(file=StringIO(), force_terminal=True, width=160)
    with ProgressBar(console) as bar:
        task = bar.add_task("tokenize", total=10, status="")
        bar.update(task, completed=10)
    text = console.file.getvalue()
    assert "tokenize" in text and "10/10" in text and "━" in text


def test_reading_a_data_file_reports_megabytes(tmp_path):
    from prefcli.train.record_index import scan

    data = write_pairs(tmp_path / "pairs.jsonl", rows=3000, candidates=1)
    reports = []
    index = scan(data, "sha256:x", lambda *args: reports.append(args), quiet_seconds=0)
    assert len(index) == 3000
    size = data.stat().st_size / 2**20
    assert [phase for phase, *_ in reports] == ["read"] * 3  # after lines 1,024 and 2,048, then at the end
    assert reports[-1] == ("read", size, size) and all(total == size for _, _, total in reports)
    assert [done for _, done, _ in reports] == sorted(done for _, done, _ in reports)


@pytest.mark.slow
def test_train_run_in_a_log_shows_its_progress(tiny_model, tmp_path):
    data = write_pairs(tmp_path / "pairs.jsonl", rows=8)
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "prefcli", "train", "--model", str(tiny_model), "--data",
                             str(data), "--output", str(tmp_path / "run"), "--loss", "dpo", "--max-steps", "2",
                             "--batch-size", "2", "--max-length", "96"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    assert any(line.startswith("tokenize: 4/4 (100.0%)") for line in lines), result.stderr  # 2 steps × 2
    assert any(line.startswith("reference log-probs: ") for line in lines), result.stderr
    assert any(line.startswith("train: 2/2 (100.0%)") and "loss " in line for line in lines), result.stderr
    assert "━" not in result.stderr  # no bar frames in a log
