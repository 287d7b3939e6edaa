"""A judged run killed with SIGKILL mid-way loses no successful judgment, and the restarted run never repeats one:
counted on the loopback judge's side, per distinct prompt."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from judge_servers import FaultyJudgeServer, prompt_key
from test_judge_e2e import judge_args, read_results, write_pairs

from prefcli.eval.protocols import load_protocol


@pytest.mark.slow
def test_sigkill_during_judging_then_resume(tmp_path):
    model_q = [(i * 7) % 10 + 1 for i in range(40)]
    reference_q = [6 if q == 5 else 5 for q in model_q]  # never equal: no order-dependent ties
    pairs = [(f"Item {i}: describe the number {i}.", f"Answer {i}. q={qm}", f"Reference {i}. q={qr}")
             for i, (qm, qr) in enumerate(zip(model_q, reference_q))]
    outputs, reference = write_pairs(tmp_path / "data", pairs)
    run = tmp_path / "run"
    with FaultyJudgeServer(delay=0.1) as server:
        args = ["eval", "alpaca", *judge_args(server, outputs, reference, run), "--concurrency", "4"]
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        process = subprocess.Popen([sys.executable, "-m", "prefcli", *map(str, args)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while server.count() < 14 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        calls_before = server.count()
        with sqlite3.connect(run / "judgments.sqlite") as db:
            stored_ok = db.execute(
                "SELECT instruction, output_1, output_2 FROM judgments WHERE status = 'ok'").fetchall()
        assert 10 <= len(stored_ok) < 40, (len(stored_ok), calls_before)

        code, text = invoke_cli(args)
        assert code == 0, text
        calls_after = server.count() - calls_before

    protocol = load_protocol("alpaca")
    for instruction, output_1, output_2 in stored_ok:  # stored before the kill: judged exactly once in total
        assert server.count(prompt_key(protocol.render(instruction, output_1, output_2))) == 1
    assert calls_after == 40 - len(stored_ok)  # the restart asked only for what was not stored
    results = read_results(run)
    wins = sum(qm > qr for qm, qr in zip(model_q, reference_q))
    assert (results["wins"], results["losses"], results["ties"], results["failed"]) == (wins, 40 - wins, 0, 0)
    assert results["reused"] == len(stored_ok)
