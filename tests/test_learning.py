"""Does it learn? On the ``sort`` task, DPO and MC-PO must raise the held-out reward of the SFT policy.

The whole pipeline runs once per test session (module fixture): task → SFT → 7 samples per prompt ranked by the
true reward → ``prepare nectar`` → DPO and MC-PO. Each policy is then evaluated on the held-out prompts by sampling
at temperature 1 with a few evaluation seeds; the gain over SFT must exceed the spread across those seeds, and the
greedy reward must rise too. A misaligned reference (log-probs of the wrong rows), candidates mapped to the wrong
log-probs or a sampler drawing the wrong index turn the gain into noise or a loss, and the test fails.
"""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from cli_helpers import run_main

from prefcli.tasks import sort

EVAL_SEEDS = (0, 1, 2)
TEMPERATURES = (0.6, 0.8, 0.9, 1.0, 1.1, 1.2, 1.4)


def _cli(*args) -> None:
    assert run_main([str(arg) for arg in args]) == 0, f"prefcli {' '.join(map(str, args))} failed"


def _generate(model, instructions, output, temperature: float, seed: int) -> dict[str, str]:
    _cli("generate", "--model", model, "--instructions", instructions, "--output", output,
         "--temperature", temperature, "--seed", seed, "--max-new-tokens", 12, "--batch-size", 128)
    return {row["instruction"]: row["output"] for row in json.loads(output.read_text())}


def _mean_reward(outputs: dict[str, str]) -> float:
    return statistics.fmean(sort.reward([{"role": "user", "content": instruction}], text)
                            for instruction, text in outputs.items())


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is several times faster on a busy machine
    try:
        yield _run_pipeline(tmp_path_factory.mktemp("learning"))
    finally:
        torch.set_num_threads(threads)


def _run_pipeline(root):
    task = root / "task"
    _cli("fixtures", "task", "sort", task, "--sft-rows", 2000, "--prompts", 512, "--heldout", 64, "--seed", 0)
    _cli("train", "--model", task / "model", "--data", task / "sft.jsonl", "--loss", "sft", "--output",
         root / "sft", "--lr", 3e-3, "--batch-size", 32, "--max-steps", 220, "--max-length", 48, "--warmup", 20,
         "--seed", 0)
    prompts = [json.loads(line)["prompt"][0]["content"] for line in (task / "prompts.jsonl").read_text().splitlines()]
    (root / "prompts.json").write_text(json.dumps([{"instruction": prompt} for prompt in prompts]))
    samples = [_generate(root / "sft", root / "prompts.json", root / f"samples-{index}.json", temperature, index)
               for index, temperature in enumerate(TEMPERATURES)]
    rows = []
    for row_id, prompt in enumerate(prompts):
        texts = [sample[prompt] or "(empty)" for sample in samples]
        scores = [sort.reward([{"role": "user", "content": prompt}], text) for text in texts]
        order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))
        rows.append({"id": row_id, "prompt": f"\n\nHuman: {prompt}\n\nAssistant:",
                     "answers": [{"answer": texts[i], "model": "sft", "rank": float(rank)}
                                 for rank, i in enumerate(order, 1)]})
    (root / "nectar.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    _cli("prepare", "nectar", "--input", root / "nectar.jsonl", "--output", root / "candidates.jsonl",
         "--workers", 1)
    for name, extra in (("dpo", ()), ("mcpo", ("--negatives", 4))):
        _cli("train", "--model", root / "sft", "--data", root / "candidates.jsonl", "--loss", name, "--output",
             root / name, "--lr", 1e-3, "--batch-size", 32, "--max-steps", 40, "--max-length", 48, "--warmup", 0.1,
             "--seed", 0, *extra)
    heldout = task / "heldout.json"
    results = {}
    for name in ("sft", "dpo", "mcpo"):
        sampled = [_mean_reward(_generate(root / name, heldout, root / f"eval-{name}-{seed}.json", 1.0, seed))
                   for seed in EVAL_SEEDS]
        greedy = _mean_reward(_generate(root / name, heldout, root / f"eval-{name}-greedy.json", 0.0, 0))
        results[name] = {"sampled": sampled, "greedy": greedy}
    return results


@pytest.mark.parametrize("method", ["dpo", "mcpo"])
def test_preference_training_raises_the_true_reward(pipeline, method):
    sft, trained = pipeline["sft"], pipeline[method]
    gain = statistics.fmean(trained["sampled"]) - statistics.fmean(sft["sampled"])
    spread = max(max(values) - min(values) for values in (sft["sampled"], trained["sampled"]))
    assert gain > spread, f"{method}: sampled reward gain {gain:.4f} <= eval-seed spread {spread:.4f} ({pipeline})"
    assert trained["greedy"] > sft["greedy"] + spread, f"{method}: greedy {trained['greedy']:.4f} vs SFT " \
                                                        f"{sft['greedy']:.4f} ({pipeline})"
