"""Hostile inputs of the reward judges, ``eval reward``, ``fixtures task`` and ``--loss sft`` (rows of the
hostile-input table, see ``hostile.py``)."""

from __future__ import annotations

import json

import pytest
from hostile import Case, run_case


def _outputs(tmp, name="outputs.json", rows=(("q1", "a"), ("q2", "bb"))):
    (tmp / name).write_text(json.dumps([{"instruction": i, "output": o} for i, o in rows]))


def _reward(tmp, body="    return 1.0\n", name="r.py"):
    (tmp / name).write_text("def score(prompt, completion):\n" + body)


def _both(tmp):
    _outputs(tmp)
    _reward(tmp)


def _prompts(tmp):
    (tmp / "prompts.jsonl").write_text(json.dumps({"id": 1, "prompt": "sort: 3 1 2"}) + "\n")


def _always_raises(tmp):
    _outputs(tmp)
    _reward(tmp, "    raise KeyError('nope')\n")


def _syntax_error(tmp):
    _outputs(tmp)
    (tmp / "r.py").write_text("def score(:\n")


def _existing_results(tmp):
    (tmp / "out").mkdir()
    _outputs(tmp / "out", "results.json")
    _reward(tmp)


def _task_dir(tmp):
    (tmp / "task").mkdir()
    (tmp / "task" / "sft.jsonl").write_text("keep\n")


def _unpaired_for_sft(tmp):
    (tmp / "bad.jsonl").write_text(json.dumps({"id": 1, "prompt": "p", "completion": "c", "label": True}) + "\n")


EVAL = ("eval", "reward", "--outputs", "{tmp}/outputs.json", "--output", "{tmp}/out")
CASES = [
    Case("eval-reward-unknown-kind", (*EVAL, "--reward", "length"), "'length' is neither reward:", setup=_both,
         absent=("{tmp}/out",)),
    Case("eval-reward-missing-file", (*EVAL, "--reward", "reward:{tmp}/none.py:score"), "none.py: no such file",
         setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-missing-function", (*EVAL, "--reward", "reward:{tmp}/r.py:nothere"),
         "defines no 'nothere' (functions: score)", setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-bad-spec", (*EVAL, "--reward", "reward:{tmp}/r.py"), "expected reward:FILE.py:FUNCTION",
         setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-import-error", (*EVAL, "--reward", "reward:{tmp}/r.py:score"), "cannot import it (SyntaxError",
         setup=_syntax_error, absent=("{tmp}/out",)),
    Case("eval-reward-every-score-fails", (*EVAL, "--reward", "reward:{tmp}/r.py:score"),
         "every score failed (last error: reward:", setup=_always_raises),
    Case("eval-reward-model-and-outputs", (*EVAL, "--model", "{tmp}", "--reward", "reward:{tmp}/r.py:score"),
         "pass exactly one of --model", setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-model-needs-instructions",
         ("eval", "reward", "--model", "{tmp}", "--output", "{tmp}/out", "--reward", "reward:{tmp}/r.py:score"),
         "--instructions FILE is required with --model", setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-outputs-would-be-overwritten",
         ("eval", "reward", "--outputs", "{tmp}/out/results.json", "--output", "{tmp}/out",
          "--reward", "reward:{tmp}/r.py:score"), "would be overwritten", setup=_existing_results,
         unchanged=("{tmp}/out/results.json",)),
    Case("eval-reward-output-is-a-file", (*EVAL[:-1], "{tmp}/outputs.json", "--reward", "reward:{tmp}/r.py:score"),
         "outputs.json: is an existing file, expected a directory", setup=_both,
         unchanged=("{tmp}/outputs.json",)),
    Case("eval-reward-output-under-a-file",
         (*EVAL[:-1], "{tmp}/outputs.json/out", "--reward", "reward:{tmp}/r.py:score"),
         "is a file, so no directory can be made under it", setup=_both, unchanged=("{tmp}/outputs.json",)),
    Case("eval-reward-rm-missing", (*EVAL, "--reward", "rm:{tmp}/no-such-rm"), "cannot load the reward model",
         setup=_both, absent=("{tmp}/out",)),
    Case("eval-reward-rm-not-one-logit", (*EVAL, "--reward", "rm:{model}"), "has 2 labels", setup=_both,
         absent=("{tmp}/out",)),
    Case("alpaca-judge-reward-bad-spec",
         ("eval", "alpaca", "--outputs", "{tmp}/outputs.json", "--reference", "{tmp}/outputs.json",
          "--judge", "reward:nofunction", "--output", "{tmp}/out"), "expected reward:FILE.py:FUNCTION",
         setup=_both),
    Case("generate-judge-reward-missing-file",
         ("prepare", "generate", "--model", "{model}", "--prompts", "{tmp}/prompts.jsonl", "--output",
          "{tmp}/gen.jsonl", "--judge", "reward:{tmp}/none.py:score"), "none.py: no such file", setup=_prompts,
         absent=("{tmp}/gen.jsonl",)),
    Case("fixtures-task-unknown", ("fixtures", "task", "srot", "{tmp}/task"), "did you mean 'sort'",
         absent=("{tmp}/task",)),
    Case("fixtures-task-heads", ("fixtures", "task", "sort", "{tmp}/task", "--hidden-size", "30"),
         "--hidden-size 30 must be a multiple of --heads 4", absent=("{tmp}/task",)),
    Case("fixtures-task-no-overwrite", ("fixtures", "task", "sort", "{tmp}/task"), "pass --overwrite",
         setup=_task_dir, unchanged=("{tmp}/task/sft.jsonl",)),
    Case("fixtures-task-zero-rows", ("fixtures", "task", "sort", "{tmp}/task", "--heldout", "0"),
         "--heldout: must be at least 1", absent=("{tmp}/task",)),
    Case("train-sft-unpaired-record",
         ("train", "--model", "{model}", "--data", "{tmp}/bad.jsonl", "--loss", "sft", "--output", "{tmp}/run"),
         "bad.jsonl:1: chosen: missing: --loss sft trains on chosen completions", setup=_unpaired_for_sft,
         absent=("{tmp}/run",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_reward(case, tmp_path, capsys, tiny_model):
    run_case(case, tmp_path, capsys, model=tiny_model)
