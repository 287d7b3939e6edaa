"""The commands end to end from a local model directory (generation + the demo judge), the local HF judge, and the
user errors that must be one clear line with exit code 2."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import invoke_cli
from judge_servers import FaultyJudgeServer
from test_judge_e2e import judge_args, read_results, write_pairs


@pytest.fixture(scope="module")
def instruction_set(tmp_path_factory):
    from prefcli.fixtures import write_synthetic_instructions

    directory = tmp_path_factory.mktemp("instructions")
    instructions = write_synthetic_instructions(directory / "instructions.json", rows=4, seed=3)
    rows = json.loads(instructions.read_text())
    reference = [{"instruction": r["instruction"], "output": "A reference answer of middling length.",
                  "generator": "reference-model"} for r in rows]
    (directory / "reference.json").write_text(json.dumps(reference))
    return instructions, directory / "reference.json"


def test_model_to_results_with_the_demo_judge_and_reused_outputs(tmp_path, tiny_model, instruction_set):
    instructions, reference = instruction_set
    run = tmp_path / "run"
    common = ["--model", tiny_model, "--instructions", instructions, "--reference", reference,
              "--judge", "rule:length", "--max-new-tokens", "12", "--batch-size", "4", "--output", run]
    code, text = invoke_cli(["eval", "arena", *common])
    assert code == 0, text
    assert "demo judge" in text
    outputs = json.loads((run / "outputs.json").read_text())
    assert [o["instruction"] for o in outputs] == [r["instruction"] for r in json.loads(instructions.read_text())]
    assert all(o["generator"] == Path(tiny_model).name for o in outputs)
    results = read_results(run)
    assert results["demo_judge"] is True and results["judge"] == "rule:length (demo judge)"
    assert results["model"] == str(tiny_model) and results["generation"]["max_new_tokens"] == 12
    # hand count with the demo rule (longer wins, 2x longer is strong, equal ties), both orders
    ref_len = len("A reference answer of middling length.")
    wins = losses = ties = 0
    for output in outputs:
        length = len(output["output"])
        weight = 3 if max(length, ref_len) >= 2 * max(min(length, ref_len), 1) else 1
        if output["output"] == "A reference answer of middling length.":
            ties += 2
        elif length > ref_len:
            wins += 2 * weight
        elif length < ref_len:
            losses += 2 * weight
        else:
            ties += 2
    assert (results["wins"], results["losses"], results["ties"]) == (wins, losses, ties)
    assert results["flip_rate"] == 0.0

    stamp = (run / "outputs.json").stat().st_mtime_ns
    code, text = invoke_cli(["eval", "arena", *common])
    assert code == 0 and "reused" in text
    assert (run / "outputs.json").stat().st_mtime_ns == stamp
    assert read_results(run)["reused"] == results["judged"]
    # another generation setting generates again
    code, _ = invoke_cli(["eval", "arena", *[c if c != "12" else "6" for c in common]])
    assert code == 0 and (run / "outputs.json").stat().st_mtime_ns != stamp

    code, text = invoke_cli(["eval", "alpaca", *common[:-1], tmp_path / "alpaca"])
    assert code == 0, text
    assert read_results(tmp_path / "alpaca")["protocol"] == "alpaca"
    # both runs feed `prefcli eval report` (table + PNG)
    code, text = invoke_cli(["eval", "report", run, tmp_path / "alpaca", "--output", tmp_path / "report"])
    assert code == 0, text
    assert (tmp_path / "report" / "report.png").stat().st_size > 0


def test_local_hf_judge_returns_the_models_greedy_text_and_top_logprobs(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefcli.eval.judges import JudgeRequest, make_judge
    from prefcli.eval.protocols import load_protocol

    protocol = load_protocol("alpaca")
    judge = make_judge(f"hf:{tiny_model}", protocol=protocol)
    messages = protocol.render("Which is better?", "first", "second")
    reply = asyncio.run(judge.complete(JudgeRequest(messages, "Which is better?", "first", "second",
                                                    max_tokens=3, top_logprobs=5)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(ids).logits[0, -1].float(), dim=-1)
    values, indices = logprobs.topk(5)
    assert [e["token"] for e in reply.top_logprobs] == [tokenizer.decode([i]) for i in indices.tolist()]
    assert [e["logprob"] for e in reply.top_logprobs] == pytest.approx(values.tolist(), abs=1e-4)
    greedy = ids
    for _ in range(3):
        with torch.no_grad():
            next_id = model(greedy).logits[0, -1].argmax()
        greedy = torch.cat([greedy, next_id.view(1, 1)], dim=1)
        if int(next_id) == tokenizer.eos_token_id:
            break
    assert reply.text == tokenizer.decode(greedy[0, ids.shape[1]:], skip_special_tokens=True)


def test_user_errors_are_one_line_with_exit_code_2(tmp_path):
    outputs, reference = write_pairs(tmp_path / "data", [("Q1", "a q=1", "b q=2"), ("Q2", "c q=3", "d q=1")])
    base = ["eval", "alpaca", "--judge", "rule:length", "--output", tmp_path / "run"]
    code, text = invoke_cli([*base, "--outputs", outputs, "--reference", reference, "--model", tmp_path])
    assert code == 2 and "exactly one of --model" in text
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"instruction": "Q1", "output": "x"}]))
    code, text = invoke_cli([*base, "--outputs", outputs, "--reference", partial, "--strict"])
    assert code == 2 and f"{partial}: instruction: no reference output for instruction 'Q2'" in text
    code, text = invoke_cli([*base, "--outputs", outputs, "--reference", partial])
    assert code == 0 and "left out 1 of 2 instructions: 0 without a model output" in text
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "Q1", "output": "x"}\n{"instruction": 3, "output": "y"}\n')
    code, text = invoke_cli([*base, "--outputs", bad, "--reference", reference])
    assert code == 2 and f"{bad}:2: instruction: must be a string, got int" in text
    code, text = invoke_cli([*base, "--outputs", outputs, "--reference", reference, "--protocol", "alpacca"])
    assert code == 2 and "did you mean 'alpaca'" in text
    code, text = invoke_cli(["eval", "alpaca", "--judge", "http://127.0.0.1:9/v1", "--outputs", outputs,
                          "--reference", reference, "--output", tmp_path / "run"])
    assert code == 2 and "--judge-model is required" in text
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    code, text = invoke_cli(["eval", "alpaca", "--judge", f"http://127.0.0.1:{closed_port}/v1", "--judge-model", "j",
                          "--outputs", outputs, "--reference", reference, "--output", tmp_path / "run"])
    assert code == 2 and f"cannot reach the judge at http://127.0.0.1:{closed_port}/v1" in text
    code, text = invoke_cli(["eval", "status", tmp_path / "nowhere"])
    assert code == 2 and "no judgment store" in text


def test_rejected_key_stops_the_run_without_retries(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFCLI_TEST_WRONG_KEY", "wrong")
    outputs, reference = write_pairs(tmp_path / "data", [("Q1", "a q=1", "b q=2"), ("Q2", "c q=3", "d q=1")])
    with FaultyJudgeServer(require_key="right") as server:
        code, text = invoke_cli(["eval", "alpaca", *judge_args(server, outputs, reference, tmp_path / "run"),
                              "--judge-key-env", "PREFCLI_TEST_WRONG_KEY", "--concurrency", "1"])
        assert server.count() == 1
    assert code == 2 and "refused the request (HTTP 401)" in text and "wrong" not in text.split("HTTP 401")[1]


def test_users_own_arena_judge_prompt(tmp_path):
    prompt = tmp_path / "my-judge.yaml"
    prompt.write_text('system: "You are a strict grader."\n'
                      'user: "Task: {instruction}\\n<|The Start of Assistant A\'s Answer|>\\n{output_1}\\n'
                      '<|The End of Assistant A\'s Answer|>\\n<|The Start of Assistant B\'s Answer|>\\n{output_2}\\n'
                      '<|The End of Assistant B\'s Answer|>"\n')
    outputs, reference = write_pairs(tmp_path / "data", [("Q1", "a q=5", "b q=2")])
    with FaultyJudgeServer() as server:
        code, text = invoke_cli(["eval", "arena", *judge_args(server, outputs, reference, tmp_path / "run"),
                              "--judge-prompt", prompt])
        assert code == 0, text
        assert all(call["prompt"].startswith("You are a strict grader.\nTask: Q1") for call in server.calls)
    results = read_results(tmp_path / "run")
    assert (results["wins"], results["losses"]) == (3 + 3, 0)  # q 5 vs 2: a strong win in both orders
    assert results["template_version"].startswith("arena-v1-")
