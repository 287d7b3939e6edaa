"""Against a real OpenAI-compatible server: ``transformers serve`` on the tiny random model (CPU, offline). A random
model cannot judge, so its replies are unparseable: this is the failure path end to end — every judgment retried,
recorded as failed with its raw reply, counted in ``failed``, and the command exits with code 2."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from test_judge_e2e import read_results, write_pairs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"transformers serve exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"transformers serve did not answer {url} within {seconds} s")


@pytest.mark.slow
def test_transformers_serve_replies_are_failed_not_dropped(tmp_path, tiny_model):
    executable = Path(sys.executable).with_name("transformers")
    executable = str(executable) if executable.exists() else shutil.which("transformers")
    assert executable, "the transformers CLI is not installed"
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    server = subprocess.Popen([executable, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                               str(tiny_model)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server, seconds=120)
        pairs = [("Name a color.", "Red.", "Blue."), ("Count to three.", "1 2 3", "one, two, three"),
                 ("Same?", "yes", "yes")]
        outputs, reference = write_pairs(tmp_path / "data", pairs)
        run = tmp_path / "run"
        code, text = invoke_cli(["eval", "arena", "--outputs", outputs, "--reference", reference,
                              "--judge", f"http://127.0.0.1:{port}/v1", "--judge-model", str(tiny_model),
                              "--judge-max-tokens", "8", "--max-retries", "1", "--retry-delay", "0.05",
                              "--timeout", "60", "--concurrency", "2", "--output", run])
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
    assert code == 2 and "judgments failed" in text, text + (tmp_path / "serve.log").read_text()
    results = read_results(run)
    assert results["failed"] == 4 and results["judged"] == 0 and results["identical"] == 2
    assert results["winrate"] == 50.0 and results["ties"] == 2  # only the identical pair, counted as ties
    with sqlite3.connect(run / "judgments.sqlite") as db:
        rows = db.execute("SELECT status, attempts, error, reply FROM judgments").fetchall()
    # cut at --judge-max-tokens 8, asked again with 16 (not unchanged), cut again
    assert len(rows) == 4 and all(r[0] == "failed" and r[1] == 2 and r[2] == "reply cut at max_tokens=16"
                                  for r in rows)
    assert all(isinstance(r[3], str) for r in rows)  # the raw reply is kept
    lines = [json.loads(line) for line in (run / "judgments.jsonl").read_text().splitlines()]
    assert sum(line["status"] == "failed" for line in lines) == 4
