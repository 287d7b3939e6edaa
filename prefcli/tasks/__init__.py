"""Synthetic tasks with a verifiable, graded reward: the ground-truth testbed where a claim about learning is made.

``prefcli fixtures task NAME DIR`` calls :func:`build_task`, which writes into ``DIR``:

- ``model/``: a random tiny Llama and a word-level tokenizer over the task's vocabulary (with a chat template);
- ``sft.jsonl``: demonstrations of mixed quality (``prompt`` + ``chosen``) for ``prefcli train --loss sft``;
- ``prompts.jsonl``: other prompts, to sample candidates from the SFT policy and rank them by the reward;
- ``heldout.json``: held-out instructions (AlpacaEval format), disjoint from both, for evaluation;
- ``reward.py``: the reward function's source, for ``--judge reward:DIR/reward.py:reward``;
- ``task.json``: what was made, with which sizes and seed.
"""

from __future__ import annotations

import difflib
import inspect
import json
import random
from pathlib import Path

from prefcli.data.atomic import atomic_open
from prefcli.errors import ConfigError
from prefcli.tasks import sort
from prefcli.tasks.assets import build_task_model, distinct_prompts, write_jsonl

TASKS = {"sort": sort}
TASK_FILES = ("model", "sft.jsonl", "prompts.jsonl", "heldout.json", "reward.py", "task.json")


def task_module(name: str):
    """The module of task ``name`` (``ConfigError`` with the close match and the valid names otherwise)."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigError(f"unknown task {name!r}; {hint}available: {', '.join(TASKS)}")
    return TASKS[name]


def build_task(name: str, output_dir: str | Path, *, sft_rows: int = 3000, prompts: int = 256, heldout: int = 64,
               hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
               overwrite: bool = False) -> dict:
    """Write task ``name``'s files (see the module docstring) into ``output_dir``; returns ``task.json``'s dict."""
    module = task_module(name)
    for what, value in (("--sft-rows", sft_rows), ("--prompts", prompts), ("--heldout", heldout),
                        ("--hidden-size", hidden_size), ("--layers", layers), ("--heads", heads)):
        if value < 1:
            raise ConfigError(f"{what}: must be at least 1, got {value}")
    if hidden_size % heads:
        raise ConfigError(f"--hidden-size {hidden_size} must be a multiple of --heads {heads}")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"{output_dir}: exists and is not a directory")
    existing = [item for item in TASK_FILES if (output_dir / item).exists()]
    if existing and not overwrite:
        raise ConfigError(f"{output_dir}: already holds {', '.join(existing)}; pass --overwrite to replace them")
    rng = random.Random(seed)
    heldout_prompts = distinct_prompts(module.make_prompt, random.Random(seed + 1), heldout, set())
    sft_prompts = distinct_prompts(module.make_prompt, rng, sft_rows, set(heldout_prompts))
    preference_prompts = distinct_prompts(module.make_prompt, rng, prompts, set(heldout_prompts))
    output_dir.mkdir(parents=True, exist_ok=True)
    build_task_model(output_dir / "model", module.vocabulary(), hidden_size=hidden_size, num_layers=layers,
                     num_heads=heads, seed=seed)
    write_jsonl(output_dir / "sft.jsonl",
                [{"id": f"sft-{index}", "prompt": [{"role": "user", "content": prompt}],
                  "chosen": module.demonstration(prompt, rng)} for index, prompt in enumerate(sft_prompts)])
    write_jsonl(output_dir / "prompts.jsonl",
                [{"id": f"prompt-{index}", "prompt": [{"role": "user", "content": prompt}]}
                 for index, prompt in enumerate(preference_prompts)])
    with atomic_open(output_dir / "heldout.json") as handle:
        json.dump([{"instruction": prompt, "dataset": f"task:{name}"} for prompt in heldout_prompts], handle,
                  indent=1)
    with atomic_open(output_dir / "reward.py") as handle:
        handle.write(inspect.getsource(module))
    info = {"task": name, "seed": seed, "sft_rows": sft_rows, "prompts": prompts, "heldout": heldout,
            "model": {"hidden_size": hidden_size, "layers": layers, "heads": heads},
            "reward": f"reward:{output_dir / 'reward.py'}:reward", "reward_module": f"prefcli.tasks.{name}:reward"}
    with atomic_open(output_dir / "task.json") as handle:
        json.dump(info, handle, indent=2)
    return info
