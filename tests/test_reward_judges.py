"""Reward judges: ``reward:FILE.py:FUNCTION``, ``reward:package.module:FUNCTION`` and ``rm:PATH`` in ``eval alpaca``,
``eval arena``, ``prepare generate`` and ``eval reward``; the store keys verdicts by the function's source."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
from cli_helpers import run_main

from prefcli.errors import ConfigError
from prefcli.eval.judges import JudgeRequest, PermanentJudgeError, judge_kind, make_judge
from prefcli.eval.protocols import load_protocol

# Scores: the number of "a" characters; "boom" raises; "nan" returns NaN.
REWARD_SOURCE = '''
def count_a(prompt, completion):
    assert prompt[0]["role"] == "user"
    if "boom" in completion:
        raise RuntimeError("cannot score boom")
    if "nan" in completion:
        return float("nan")
    return float(completion.count("a"))
'''

INSTRUCTIONS = [f"question {i}" for i in range(6)]
# model vs reference: wins on 0, 1, 2 (more a's), loses on 3, ties on 4, fails (the function raises) on 5
MODEL_OUTPUTS = ["aaa", "aa", "a b", "x", "a", "boom"]
REFERENCE_OUTPUTS = ["a", "b", "c", "aa", "a ", "a"]


def _write_outputs(path: Path, outputs: list[str], generator: str) -> Path:
    path.write_text(json.dumps([{"instruction": i, "output": o, "generator": generator}
                                for i, o in zip(INSTRUCTIONS, outputs)]))
    return path


@pytest.fixture
def judged_inputs(tmp_path):
    reward = tmp_path / "reward_fn.py"
    reward.write_text(REWARD_SOURCE)
    model = _write_outputs(tmp_path / "model.json", MODEL_OUTPUTS, "model")
    reference = _write_outputs(tmp_path / "reference.json", REFERENCE_OUTPUTS, "reference")
    return reward, model, reference


def _alpaca(tmp_path, reward, model, reference, run="run"):
    code = run_main(["eval", "alpaca", "--outputs", str(model), "--reference", str(reference),
                     "--judge", f"reward:{reward}:count_a", "--output", str(tmp_path / run), "--max-retries", "0",
                     "--max-failed-frac", "1"])
    return code, json.loads((tmp_path / run / "results.json").read_text())


def test_reward_function_verdicts_in_alpaca(tmp_path, judged_inputs):
    code, results = _alpaca(tmp_path, *judged_inputs)
    assert code == 0
    assert (results["wins"], results["losses"], results["ties"], results["failed"]) == (3, 1, 1, 1)
    assert results["winrate"] == pytest.approx(100 * (3 + 0.5) / 5)
    assert results["judge_model"].startswith(f"reward:{judged_inputs[0]}:count_a@")
    rows = [json.loads(line) for line in (tmp_path / "run" / "judgments.jsonl").read_text().splitlines()]
    failed = [row for row in rows if row["status"] == "failed"]
    assert len(failed) == 1 and "RuntimeError: cannot score boom" in failed[0]["error"]


def test_arena_judges_both_orders_with_the_same_scores(tmp_path, judged_inputs):
    reward, model, reference = judged_inputs
    code = run_main(["eval", "arena", "--outputs", str(model), "--reference", str(reference),
                     "--judge", f"reward:{reward}:count_a", "--output", str(tmp_path / "arena"),
                     "--max-retries", "0", "--max-failed-frac", "1"])
    results = json.loads((tmp_path / "arena" / "results.json").read_text())
    assert code == 0
    assert results["flip_rate"] == 0.0  # a reward function never depends on the order
    assert results["failed"] == 2  # the raising item, in both orders


def test_store_reuses_verdicts_until_the_function_changes(tmp_path, judged_inputs):
    reward, model, reference = judged_inputs
    _, first = _alpaca(tmp_path, reward, model, reference)
    _, again = _alpaca(tmp_path, reward, model, reference)
    assert again["reused"] == 5 and again["winrate"] == first["winrate"]  # the failed one is retried, not reused
    reward.write_text(REWARD_SOURCE.replace('completion.count("a")', 'completion.count("b")'))
    _, changed = _alpaca(tmp_path, reward, model, reference)
    assert changed["reused"] == 0
    assert changed["judge_model"] != first["judge_model"]
    # now only item 1 ("aa" vs "b") and 2 ("a b" vs "c") differ: one loss, one win, three ties
    assert (changed["wins"], changed["losses"], changed["ties"]) == (1, 1, 3)


def test_non_finite_score_is_a_failed_judgment_never_stored_as_ok(tmp_path, judged_inputs):
    reward, _, _ = judged_inputs
    protocol = load_protocol("alpaca")
    judge = make_judge(f"reward:{reward}:count_a", protocol=protocol)
    request = JudgeRequest(messages=[], instruction="q", output_1="nan", output_2="a", max_tokens=1)
    with pytest.raises(PermanentJudgeError, match="non-finite score"):
        asyncio.run(judge.complete(request))
    ok = asyncio.run(judge.complete(JudgeRequest(messages=[], instruction="q", output_1="a", output_2="aa",
                                                 max_tokens=1)))
    assert protocol.parse(ok.text, None).first == 0.0  # the second output has more a's


def test_module_spec_loads_the_task_reward():
    assert judge_kind("reward:prefcli.tasks.sort:reward") == "reward"
    judge = make_judge("reward:prefcli.tasks.sort:reward", protocol=load_protocol("alpaca"))
    assert judge.name.startswith("reward:prefcli.tasks.sort:reward@")
    from prefcli.tasks.sort import reward

    assert reward([{"role": "user", "content": "sort: 3 1 2"}], "1 2 3") == 1.0


@pytest.mark.parametrize(("spec", "message"), [
    ("reward:nofunction", "expected reward:FILE.py:FUNCTION"),
    ("reward:missing.py:f", "no such file"),
    ("reward:prefcli.tasks.sort:nothere", "defines no 'nothere'"),
    ("reward:not_a_module_xyz:f", "cannot import module"),
])
def test_bad_reward_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        make_judge(spec, protocol=load_protocol("alpaca"))


def test_eval_reward_with_a_function(tmp_path, judged_inputs):
    reward, model, _ = judged_inputs
    code = run_main(["eval", "reward", "--outputs", str(model), "--reward", f"reward:{reward}:count_a",
                     "--output", str(tmp_path / "scored")])
    assert code == 0
    results = json.loads((tmp_path / "scored" / "results.json").read_text())
    values = [3.0, 2.0, 1.0, 0.0, 1.0]  # "boom" fails and is left out
    mean = sum(values) / 5
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 4)
    assert results["n"] == 5 and results["failed"] == 1
    assert results["mean"] == pytest.approx(mean) and results["std"] == pytest.approx(std)
    half = 2.7764451051977987 * std / math.sqrt(5)  # t(0.975, 4)
    assert results["ci95"] == pytest.approx([mean - half, mean + half])
    scores = [json.loads(line) for line in (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()]
    assert [row["score"] for row in scores] == [*values, None]
    assert "RuntimeError" in scores[-1]["error"]


def test_eval_report_reads_reward_results(tmp_path, judged_inputs):
    reward, model, reference = judged_inputs
    for seed, outputs in ((0, model), (1, reference)):
        assert run_main(["eval", "reward", "--outputs", str(outputs), "--reward", f"reward:{reward}:count_a",
                         "--output", str(tmp_path / f"m-seed{seed}" / "reward"), "--seed", str(seed)]) == 0
    assert run_main(["eval", "report", str(tmp_path / "m-seed0"), str(tmp_path / "m-seed1"),
                     "--output", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (row,) = report["rows"]
    (cell,) = row["cells"].values()
    assert cell["values"] == pytest.approx([7 / 5, 5 / 6])  # raw: scores outside [0, 1]
    assert report["columns"][0]["kind"] == "reward"
    assert (tmp_path / "report" / "report.png").stat().st_size > 0


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-rm")
    assert run_main(["fixtures", "reward-model", str(path)]) == 0
    return path


def test_reward_model_scores_match_the_model_batched_or_not(tiny_rm):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from prefcli.eval.judges.rm import RewardModelScorer

    scorer = RewardModelScorer(str(tiny_rm), device="cpu", batch_size=3)
    prompts = [[{"role": "user", "content": f"question {i}"}] for i in range(5)]
    completions = ["short", "a much longer answer here", "x", "another answer", ""]
    batched = scorer.score_batch(prompts, completions)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_rm)
    for prompt, completion, score in zip(prompts, completions, batched):
        text = tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": completion}],
                                             tokenize=False)
        with torch.no_grad():
            logit = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0]
        assert score == pytest.approx(float(logit), abs=1e-4)
    assert len(set(batched)) == 5  # a random model still tells the texts apart


def test_reward_model_judge_in_alpaca_and_eval_reward(tmp_path, tiny_rm, judged_inputs):
    _, model, reference = judged_inputs
    code = run_main(["eval", "alpaca", "--outputs", str(model), "--reference", str(reference),
                     "--judge", f"rm:{tiny_rm}", "--output", str(tmp_path / "rm-run")])
    results = json.loads((tmp_path / "rm-run" / "results.json").read_text())
    assert code == 0 and results["failed"] == 0 and results["judged"] == 6
    assert results["judge_model"].startswith(f"rm:{tiny_rm.resolve()}@")
    code = run_main(["eval", "reward", "--outputs", str(model), "--reward", f"rm:{tiny_rm}",
                     "--output", str(tmp_path / "rm-scores"), "--batch-size", "4"])
    scored = json.loads((tmp_path / "rm-scores" / "results.json").read_text())
    assert code == 0 and scored["n"] == 6 and scored["ci95"][0] < scored["mean"] < scored["ci95"][1]


def test_prepare_generate_chooses_the_highest_reward(tmp_path, tiny_model):
    reward = tmp_path / "length.py"
    reward.write_text("def longest(prompt, completion):\n    return float(len(completion))\n")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"say something {i}"}) + "\n" for i in range(3)))
    output = tmp_path / "generated.jsonl"
    code = run_main(["prepare", "generate", "--model", str(tiny_model), "--prompts", str(prompts),
                     "--output", str(output), "--temperatures", "0.8,1.2", "--per-temperature", "2",
                     "--max-new-tokens", "12", "--judge", f"reward:{reward}:longest"])
    assert code == 0
    for line in output.read_text().splitlines():
        record = json.loads(line)
        assert len(record["chosen"]) >= max(len(text) for text in record["candidates"])
