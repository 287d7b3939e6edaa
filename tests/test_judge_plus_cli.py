"""The judged-evaluation additions from the command line: arena-hard-auto v2.0 files and protocol with per-category
baselines, LC winrate and average lengths, token usage and cost, several judge endpoints."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from judge_servers import FaultyJudgeServer
from test_judge_e2e import judge_args, read_results, write_pairs

from prefcli.eval.length_control import length_controlled_winrate


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def answers(model: str, answers_by_uid: dict[str, str]) -> list[dict]:
    return [{"uid": uid, "model": model, "messages": [{"role": "user", "content": "?"},
                                                      {"role": "assistant", "content": {"answer": text}}]}
            for uid, text in answers_by_uid.items()]


def test_arena_v2_native_files_per_category_baselines(tmp_path):
    bench = tmp_path / "arena-hard-v2.0"
    questions = jsonl(bench / "question.jsonl", [
        {"uid": "h1", "category": "hard_prompt", "subcategory": "x", "prompt": "Hard one."},
        {"uid": "h2", "category": "hard_prompt", "subcategory": "x", "prompt": "Hard two."},
        {"uid": "c1", "category": "creative_writing", "subcategory": "y", "prompt": "Write a story."}])
    model = jsonl(bench / "model_answer" / "mine.jsonl",
                  answers("mine", {"h1": "mine h1 q=6", "h2": "mine h2 q=1", "c1": "mine c1 q=9"}))
    jsonl(bench / "model_answer" / "o3-mini-2025-01-31.jsonl",
          answers("o3-mini-2025-01-31", {"h1": "o3 h1 q=5", "h2": "o3 h2 q=5", "c1": "o3 c1 q=0"}))
    jsonl(bench / "model_answer" / "gemini-2.0-flash-001.jsonl",
          answers("gemini-2.0-flash-001", {"h1": "g h1 q=0", "h2": "g h2 q=0", "c1": "g c1 q=5"}))
    with FaultyJudgeServer() as server:
        code, text = invoke_cli(["eval", "arena", "--protocol-version", "v2.0", "--instructions", questions,
                                 "--outputs", model, "--reference", bench / "model_answer", "--judge",
                                 server.base_url, "--judge-model", "judge", "--output", tmp_path / "run"])
        assert code == 0, text
        prompts = {call["prompt"] for call in server.calls}
    results = read_results(tmp_path / "run")
    assert results["protocol"] == "arena-v2" and results["protocol_version"] == "v2.0"
    # h1: 6 vs o3 5 (win x2), h2: 1 vs o3 5 (strong loss x2, 3 games each), c1: 9 vs gemini 5 (strong win x2)
    assert (results["wins"], results["losses"]) == (1 + 1 + 3 + 3, 3 + 3)
    assert any("o3 h1 q=5" in p for p in prompts) and any("g c1 q=5" in p for p in prompts)
    assert not any("g h1" in p or "o3 c1" in p for p in prompts)
    creative = [p for p in prompts if "Write a story." in p]
    assert creative and all("generating your own answer" not in p for p in creative)
    assert all("generating your own answer" in p for p in prompts - set(creative))
    rows = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    assert {row["uid"] for row in rows} == {"h1", "h2", "c1"} and all("model_style" in row for row in rows)


def test_lc_winrate_lengths_usage_and_cost_in_results(tmp_path):
    pairs = [(f"Question {i}?", f"{'long ' * (i % 5 + 1)}answer q={(i * 3) % 8 + 1}",
              f"ref {'x' * (i % 3)} q={(i * 5) % 8 + 1}") for i in range(20)]
    outputs, reference = write_pairs(tmp_path / "data", pairs)
    with FaultyJudgeServer(logprobs=True) as server, FaultyJudgeServer(logprobs=True) as second:
        code, text = invoke_cli(["eval", "alpaca", *judge_args(server, outputs, reference, tmp_path / "run"),
                                 "--judge", second.base_url, "--price-in", "3", "--price-out", "15"])
        assert code == 0, text
        assert server.count() + second.count() == 20 and min(server.count(), second.count()) >= 5
    results = read_results(tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    expected = length_controlled_winrate([row["model_score"] for row in rows], [len(o) for _, o, _ in pairs],
                                         [len(r) for _, _, r in pairs])
    assert results["lc_winrate"] == pytest.approx(expected["lc_winrate"]) and results["lc_winrate"] is not None
    assert results["lc_glm"] == "length_controlled_minimal"
    assert results["avg_length"] == pytest.approx(sum(len(o) for _, o, _ in pairs) / 20, abs=0.05)
    assert results["reference_avg_length"] == pytest.approx(sum(len(r) for _, _, r in pairs) / 20, abs=0.05)
    usage = results["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (20 * 7, 20 * 3)
    assert usage["system_fingerprints"] == ["fp-test"]
    assert usage["cost_usd"] == pytest.approx((140 * 3 + 60 * 15) / 1e6)
    assert "LC winrate" in text and "judge tokens in / out" in text


def test_lc_difficulty_file_selects_the_difficulty_glm(tmp_path):
    pairs = [(f"Q{i}", f"{'a' * (i * 7 % 30 + 1)} q={i % 7 + 1}", f"b q={(i * 3) % 7 + 1}") for i in range(12)]
    outputs, reference = write_pairs(tmp_path / "data", pairs)
    difficulty = tmp_path / "difficulty.csv"
    difficulty.write_text("instruction,instruction_difficulty\n" + "".join(f"Q{i},{i / 4 - 1}\n" for i in range(12)))
    with FaultyJudgeServer() as server:
        code, text = invoke_cli(["eval", "alpaca", *judge_args(server, outputs, reference, tmp_path / "run"),
                                 "--lc-difficulty", difficulty])
    assert code == 0, text
    results = read_results(tmp_path / "run")
    assert results["lc_glm"] == "length_controlled_noreg" and "instruction_difficulty" in results["lc_features"]


def test_a_judge_echoing_the_key_leaves_it_nowhere(tmp_path, monkeypatch):
    secret = "sk-echo-cli-3e7a-never-print-me"
    monkeypatch.setenv("PREFCLI_TEST_ECHO_KEY", secret)
    outputs, reference = write_pairs(tmp_path / "data", [("FAULT-ECHO-KEY Q1", "a q=5", "b q=2"),
                                                          ("FAULT-ECHO-KEY Q2", "c q=1", "d q=3")])
    with FaultyJudgeServer(require_key=secret) as server:
        code, text = invoke_cli(["eval", "arena", *judge_args(server, outputs, reference, tmp_path / "run"),
                                 "--judge-key-env", "PREFCLI_TEST_ECHO_KEY", "--max-retries", "0",
                                 "--max-failed-frac", "1"])
    assert code == 0, text
    assert secret not in text
    rows = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    assert any("Bearer ***" in (row["reply"] or row["error"] or "") for row in rows)
    for file in (tmp_path / "run").rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file
