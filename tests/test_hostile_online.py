"""Hostile inputs of ``prefcli train --online``, ``prefcli prepare generate`` and ``prefcli generate`` (rows of the
hostile-input table, see ``hostile.py``): refused up front, before any sampling or judging, in one line naming the
flag as the command spells it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hostile import Case, run_case

ONLINE = ("train", "--online", "--model", "{model}", "--data", "{tmp}/prompts.jsonl", "--output", "{tmp}/out",
          "--judge", "rule:length", "--temperatures", "1.0", "--per-temperature", "2", "--max-new-tokens", "4",
          "--batch-size", "1", "--max-steps", "3")
PREPARE = ("prepare", "generate", "--model", "{model}", "--prompts", "{tmp}/prompts.jsonl", "-o",
           "{tmp}/out.jsonl", "--judge", "rule:length")


def prompts(tmp: Path) -> None:
    with (tmp / "prompts.jsonl").open("w", encoding="utf-8") as handle:
        for index in range(6):
            handle.write(json.dumps({"id": f"p{index}", "prompt": f"Say something about {index}."}) + "\n")


def instructions(tmp: Path) -> None:
    (tmp / "instructions.json").write_text(json.dumps([{"instruction": "Say hi."}]), encoding="utf-8")


CASES = [
    Case("online-negatives-beyond-the-samples", (*ONLINE, "--loss", "mcpo", "--negatives", "2"),
         "--negatives: 2 negatives need at least 3 completions per prompt (the winner + K); --temperatures × "
         "--per-temperature samples 2", setup=prompts, absent=("{tmp}/out",)),
    Case("online-seed-beyond-64-bits", (*ONLINE, "--seed", str(2**64)), "--seed: must be in [0, 2^64 - 1]",
         setup=prompts, absent=("{tmp}/out",)),
    Case("online-top-p-zero", (*ONLINE, "--top-p", "0"), "--top-p: must be in (0, 1], got 0.0", setup=prompts,
         absent=("{tmp}/out",)),
    Case("online-gen-batch-size-zero", (*ONLINE, "--gen-batch-size", "0"), "--gen-batch-size: must be >= 1, got 0",
         setup=prompts, absent=("{tmp}/out",)),
    Case("online-timeout-inf", (*ONLINE, "--timeout", "inf"), "--timeout: must be a finite number, got inf",
         setup=prompts, absent=("{tmp}/out",)),
    Case("prepare-generate-batch-size-zero", (*PREPARE, "--batch-size", "0"), "--batch-size: must be >= 1, got 0",
         setup=prompts, absent=("{tmp}/out.jsonl",)),
    Case("prepare-generate-seed-beyond-64-bits", (*PREPARE, "--seed", str(2**64)),
         "--seed: must be in [0, 2^64 - 1]", setup=prompts, absent=("{tmp}/out.jsonl",)),
    Case("prepare-generate-no-judge", PREPARE[:-2], "--judge: is required", setup=prompts,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-generate-temperatures-not-numbers", (*PREPARE, "--temperatures", "hot,cold"),
         "temperatures: expected a list of numbers or 'a,b,c', got 'hot,cold'", setup=prompts,
         absent=("{tmp}/out.jsonl",)),
    Case("generate-seed-beyond-64-bits",
         ("generate", "--model", "{model}", "--instructions", "{tmp}/instructions.json", "--output",
          "{tmp}/outputs.json", "--seed", str(2**64)), "seed: must be in [0, 2^64 - 1]", setup=instructions,
         absent=("{tmp}/outputs.json",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_online(case, tmp_path, capsys, tiny_model):
    run_case(case, tmp_path, capsys, model=tiny_model)
