"""Hostile inputs of ``prefcli train`` settings (rows of the hostile-input table, see ``hostile.py``): each is
refused up front, in one line naming the flag, exit code 2, before a model is loaded or OUTPUT is created."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import Case, run_case
from train_helpers import write_pairs

BASE = ("train", "--model", "{model}", "--data", "{tmp}/pairs.jsonl", "--output", "{tmp}/out")


def pairs(tmp: Path) -> None:
    write_pairs(tmp / "pairs.jsonl", rows=8)


def pairs_and_a_file(tmp: Path) -> None:
    pairs(tmp)
    (tmp / "cache").write_text("not a directory", encoding="utf-8")


def config_file(text: str):
    def setup(tmp: Path) -> None:
        pairs(tmp)
        (tmp / "run.yaml").write_text(text, encoding="utf-8")

    return setup


CASES = [
    Case("train-epochs-inf", (*BASE, "--epochs", "inf"), "--epochs: must be a finite number, got inf",
         setup=pairs, absent=("{tmp}/out",)),
    Case("train-lr-inf", (*BASE, "--lr", "inf"), "--lr: must be a finite number, got inf", setup=pairs,
         absent=("{tmp}/out",)),
    Case("train-lr-nan", (*BASE, "--lr", "nan"), "--lr: must be a finite number, got nan", setup=pairs,
         absent=("{tmp}/out",)),
    Case("train-seed-beyond-64-bits", (*BASE, "--seed", str(2**64)),
         "--seed: must be in [0, 2^64 - 1], got 18446744073709551616", setup=pairs, absent=("{tmp}/out",)),
    Case("train-seed-negative", (*BASE, "--seed", "-3"), "--seed: must be in [0, 2^64 - 1], got -3", setup=pairs,
         absent=("{tmp}/out",)),
    Case("train-ref-cache-dir-is-a-file", (*BASE, "--ref-cache-dir", "{tmp}/cache"),
         "--ref-cache-dir: {tmp}/cache is a file; expected a directory", setup=pairs_and_a_file,
         unchanged=("{tmp}/cache",), absent=("{tmp}/out",)),
    Case("train-scheduler-unknown", (*BASE, "--scheduler", "step"),
         "--scheduler: must be one of cosine, linear, constant, got 'step'", setup=pairs, absent=("{tmp}/out",)),
    Case("train-loss-arg-not-key-value", (*BASE, "--loss-arg", "oops"), "--loss-arg: expected KEY=VALUE",
         setup=pairs, absent=("{tmp}/out",)),
    Case("train-online-flag-offline", (*BASE, "--segments", "2"), "--segments: only with --online", setup=pairs,
         absent=("{tmp}/out",)),
    Case("train-config-epochs-inf", (*BASE, "--config", "{tmp}/run.yaml"),
         "--epochs: must be a finite number, got inf", setup=config_file("epochs: .inf\n"),
         absent=("{tmp}/out",)),
    Case("train-config-online-not-a-mapping", (*BASE, "--config", "{tmp}/run.yaml"),
         "online: expected a mapping of setting: value, got 3", setup=config_file("online: 3\n"),
         absent=("{tmp}/out",)),
    Case("train-config-unknown-online-key", (*BASE, "--config", "{tmp}/run.yaml"),
         "online: unknown key 'judg' (did you mean judge?)", setup=config_file("online:\n  judg: rule:length\n"),
         absent=("{tmp}/out",)),
]


@pytest.fixture()
def no_model_loading(monkeypatch):
    import transformers

    def refuse(*_, **__):
        raise AssertionError("a model was loaded before the settings were checked")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_train(case, tmp_path, capsys, tiny_model, no_model_loading):
    case = Case(case.id, case.args, case.message.replace("{tmp}", str(tmp_path)), case.setup, case.code,
                case.unchanged, case.absent)
    run_case(case, tmp_path, capsys, model=tiny_model)
