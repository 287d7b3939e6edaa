"""``prefcli fixtures task sort``: the files it writes, the graded reward, the mixed-quality demonstrations."""

from __future__ import annotations

import json
import random

import pytest
from cli_helpers import run_main

from prefcli.eval.judges.reward import load_reward_function
from prefcli.tasks import sort

PROMPT = [{"role": "user", "content": "sort: 7 2 9 4"}]


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("task") / "sort"
    assert run_main(["fixtures", "task", "sort", str(path), "--sft-rows", "400", "--prompts", "64",
                     "--heldout", "32", "--seed", "3"]) == 0
    return path


def test_reward_values_by_hand():
    assert sort.reward(PROMPT, "2 4 7 9") == 1.0
    # last two swapped: position 2/4, prefix 2/4, content 1, order 2/3
    assert sort.reward(PROMPT, "2 4 9 7") == pytest.approx(0.4 * 2 / 4 + 0.2 * 2 / 4 + 0.2 + 0.2 * 2 / 3)
    # one digit dropped: position 3/4 ("2 4 7" matches the first three), prefix 3/4, content 3/4, order 1
    assert sort.reward(PROMPT, "2 4 7") == pytest.approx(0.4 * 3 / 4 + 0.2 * 3 / 4 + 0.2 * 3 / 4 + 0.2 * 3 / 4)
    assert sort.reward(PROMPT, "") == 0.0
    assert sort.reward(PROMPT, "sort sort") == 0.0
    assert sort.reward("sort: 3 1", "1 3") == 1.0  # a plain string prompt is one user turn


def test_reward_is_in_unit_interval_and_one_only_when_exact():
    rng = random.Random(0)
    for _ in range(500):
        prompt = sort.make_prompt(rng)
        messages = [{"role": "user", "content": prompt}]
        answer = sort.answer(prompt)
        noisy = answer.split()
        rng.shuffle(noisy)
        for completion in (answer, " ".join(noisy), sort.demonstration(prompt, rng), answer + " 5"):
            value = sort.reward(messages, completion)
            assert 0.0 <= value <= 1.0
            assert (value == 1.0) == (completion.split() == answer.split())


def test_reward_ranks_near_misses_with_few_ties():
    """Seven different kinds of answers to one prompt get seven different rewards, best first."""
    prompt = [{"role": "user", "content": "sort: 8 3 5 1 6 0"}]
    answers = ["0 1 3 5 6 8", "0 1 3 5 6", "0 1 3 5 8 6", "0 1 3 6 5 8", "1 0 3 5 6 8", "0 3 1 8 5 6",
               "8 6 5 3 1 0"]
    scores = [sort.reward(prompt, answer) for answer in answers]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) == len(scores)


def test_demonstrations_follow_the_mix():
    rng = random.Random(1)
    kinds = {"exact": 0, "swap_last": 0, "other": 0}
    for _ in range(4000):
        prompt = sort.make_prompt(rng)
        answer = sort.answer(prompt).split()
        demo = sort.demonstration(prompt, rng).split()
        if demo == answer:
            kinds["exact"] += 1
        elif demo == answer[:-2] + [answer[-1], answer[-2]]:
            kinds["swap_last"] += 1
        else:
            kinds["other"] += 1
    assert kinds["exact"] / 4000 == pytest.approx(0.35, abs=0.03)
    assert kinds["swap_last"] / 4000 == pytest.approx(0.50, abs=0.03)


def test_task_files(task_dir):
    info = json.loads((task_dir / "task.json").read_text())
    assert info["task"] == "sort" and info["seed"] == 3
    sft_rows = [json.loads(line) for line in (task_dir / "sft.jsonl").read_text().splitlines()]
    prompts = [json.loads(line) for line in (task_dir / "prompts.jsonl").read_text().splitlines()]
    heldout = json.loads((task_dir / "heldout.json").read_text())
    assert (len(sft_rows), len(prompts), len(heldout)) == (400, 64, 32)
    assert set(sft_rows[0]) == {"id", "prompt", "chosen"}
    held = {item["instruction"] for item in heldout}
    assert len(held) == 32
    assert not held & {row["prompt"][0]["content"] for row in sft_rows}
    assert not held & {row["prompt"][0]["content"] for row in prompts}
    exact = sum(row["chosen"] == sort.answer(row["prompt"]) for row in sft_rows)
    assert 0.2 < exact / 400 < 0.5  # mixed quality


def test_reward_file_is_the_same_function(task_dir):
    from_file = load_reward_function(f"reward:{task_dir / 'reward.py'}:reward")
    from_module = load_reward_function("reward:prefcli.tasks.sort:reward")
    assert from_file.source_sha256 == from_module.source_sha256
    for completion in ("2 4 7 9", "2 4 9 7", "9", ""):
        assert from_file.score(PROMPT, completion) == sort.reward(PROMPT, completion)


def test_task_tokenizer_round_trips_and_model_loads(task_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(task_dir / "model")
    ids = tokenizer("0 3 5 9", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == "0 3 5 9"
    text = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert tokenizer.unk_token_id not in tokenizer(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(task_dir / "model")
    assert model.config.vocab_size == len(tokenizer) < 32
    assert sum(parameter.numel() for parameter in model.parameters()) < 200_000


def test_task_refuses_to_overwrite(task_dir, capsys):
    before = (task_dir / "sft.jsonl").read_bytes()
    assert run_main(["fixtures", "task", "sort", str(task_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err.strip().splitlines()[-1]
    assert (task_dir / "sft.jsonl").read_bytes() == before
