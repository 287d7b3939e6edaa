"""Hostile inputs of ``prefcli train`` (rows of the hostile-input table, see ``hostile.py``).

``CASES``: settings refused up front, in one line naming the flag, exit code 2, before a model is loaded or OUTPUT
is created. ``RUN_CASES``: outputs, models, checkpoints and data that a run must refuse (or, for a run interrupted
before its first checkpoint, restart); the rows that need a trained run share one: a 2-step run with a checkpoint
after each step, trained once per module and copied into each case's directory (``{tmp}/run``, trained on
``{tmp}/pairs.jsonl`` with ``{tmp}/run.yaml``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
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


_SHARED: dict[str, Path] = {}


@pytest.fixture(scope="module", autouse=True)
def trained_run(tiny_model, tmp_path_factory):
    """One finished 2-step run (checkpoints step-1 and step-2) that the resume rows copy and damage."""
    from prefcli.train import load_config, train

    root = tmp_path_factory.mktemp("hostile-train-run")
    write_pairs(root / "pairs.jsonl", rows=8)
    settings = {"model": str(tiny_model), "data": "pairs.jsonl", "output": "run", "batch_size": 2, "max_steps": 2,
                "save_every": 1, "keep_checkpoints": 0, "max_length": 64, "max_prompt_length": 32, "lr": 1e-3,
                "ref_cache_dir": "cache"}
    _SHARED["model"] = Path(tiny_model)
    _SHARED["root"] = root
    _SHARED["settings"] = settings
    train(load_config(None, _absolute(settings, root)))


def _absolute(settings: dict, tmp: Path) -> dict:
    return {**settings, **{key: str(tmp / settings[key]) for key in ("data", "output", "ref_cache_dir")}}


def copy_run(tmp: Path) -> None:
    """``{tmp}/run`` (a finished run), its data ``{tmp}/pairs.jsonl`` and its settings ``{tmp}/run.yaml``."""
    root = _SHARED["root"]
    shutil.copytree(root / "run", tmp / "run")
    shutil.copy(root / "pairs.jsonl", tmp / "pairs.jsonl")
    (tmp / "run.yaml").write_text(yaml.safe_dump(_absolute(_SHARED["settings"], tmp)), encoding="utf-8")
    # the copied config.yaml names the shared paths: point it at this case's, as if it had been trained here
    saved = yaml.safe_load((tmp / "run" / "config.yaml").read_text(encoding="utf-8"))
    saved.update(_absolute(_SHARED["settings"], tmp))
    (tmp / "run" / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")


def _rewrite_records(tmp: Path, change) -> None:
    path = tmp / "pairs.jsonl"
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in change(records)), encoding="utf-8")


def reversed_rows(tmp: Path) -> None:
    copy_run(tmp)
    _rewrite_records(tmp, lambda records: records[::-1])


def swapped_pairs(tmp: Path) -> None:
    copy_run(tmp)
    _rewrite_records(tmp, lambda records: [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in records])


def without_weights(tmp: Path) -> None:
    copy_run(tmp)
    (tmp / "run" / "checkpoints" / "step-2" / "model.safetensors").unlink()


def garbage_state(tmp: Path) -> None:
    copy_run(tmp)
    (tmp / "run" / "checkpoints" / "step-2" / "trainer_state.json").write_text("{garbage", encoding="utf-8")


def interrupted_before_checkpoint(tmp: Path) -> None:
    """What a run killed before its first checkpoint leaves: its settings and the metrics of a step."""
    copy_run(tmp)
    for item in ("checkpoints", "model.safetensors", "config.json", "generation_config.json"):
        path = tmp / "run" / item
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def model_copy(tmp: Path, drop=(), config_text: str | None = None) -> None:
    shutil.copytree(_SHARED["model"], tmp / "model")
    for name in drop:
        (tmp / "model" / name).unlink(missing_ok=True)
    if config_text is not None:
        (tmp / "model" / "config.json").write_text(config_text, encoding="utf-8")
    write_pairs(tmp / "pairs.jsonl", rows=8)


def no_tokenizer(tmp: Path) -> None:
    model_copy(tmp, drop=("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                          "vocab.json", "merges.txt", "chat_template.jinja"))


def bad_config(tmp: Path) -> None:
    model_copy(tmp, config_text="{not json")


def data_only(tmp: Path) -> None:
    write_pairs(tmp / "pairs.jsonl", rows=8)


def data_and_file(tmp: Path) -> None:
    data_only(tmp)
    (tmp / "file").write_text("x", encoding="utf-8")


RESUME = ("train", "--config", "{tmp}/run.yaml", "--resume")
RUN_BASE = ("train", "--data", "{tmp}/pairs.jsonl", "--batch-size", "2", "--max-steps", "1", "--max-length", "64")

RUN_CASES = [
    Case("train-resume-reversed-rows", RESUME, "differs from the file this run trained on", setup=reversed_rows,
         unchanged=("{tmp}/run",)),
    Case("train-resume-swapped-chosen-rejected", RESUME, "differs from the file this run trained on",
         setup=swapped_pairs, unchanged=("{tmp}/run",)),
    Case("train-resume-checkpoint-without-weights", RESUME, "model.safetensors is missing", setup=without_weights,
         unchanged=("{tmp}/run",)),
    Case("train-resume-garbage-trainer-state", RESUME, "trainer_state.json: unreadable", setup=garbage_state,
         unchanged=("{tmp}/run",)),
    Case("train-output-is-the-model", (*RUN_BASE, "--model", "{tmp}/model", "--output", "{tmp}/model"),
         "would overwrite the model it starts from", setup=model_copy, unchanged=("{tmp}/model",)),
    Case("train-output-inside-the-model", (*RUN_BASE, "--model", "{tmp}/model", "--output", "{tmp}/model/run"),
         "would overwrite the model it starts from", setup=model_copy, absent=("{tmp}/model/run",)),
    Case("train-output-is-a-file", (*RUN_BASE, "--model", "{model}", "--output", "{tmp}/file"), "is a file",
         setup=data_and_file, unchanged=("{tmp}/file",)),
    Case("train-output-under-a-file", (*RUN_BASE, "--model", "{model}", "--output", "{tmp}/file/run"), "is a file",
         setup=data_and_file, unchanged=("{tmp}/file",)),
    Case("train-ref-rows-unknown", (*RUN_BASE, "--model", "{model}", "--output", "{tmp}/run", "--ref-rows", "some"),
         "--ref-rows: must be one of reached, all", setup=data_only, absent=("{tmp}/run",)),
    Case("train-model-without-tokenizer", (*RUN_BASE, "--model", "{tmp}/model", "--output", "{tmp}/run"),
         "has no tokenizer", setup=no_tokenizer, absent=("{tmp}/run",)),
    Case("train-model-invalid-config", (*RUN_BASE, "--model", "{tmp}/model", "--output", "{tmp}/run"),
         "config.json: invalid JSON", setup=bad_config, absent=("{tmp}/run",)),
    Case("train-finished-run-is-not-overwritten", (*RUN_BASE, "--model", "{model}", "--output", "{tmp}/run"),
         "already holds a training run", setup=copy_run, unchanged=("{tmp}/run",)),
    # a run killed before its first checkpoint restarts, whether rerun or resumed
    Case("train-rerun-after-interrupt-before-checkpoint", RESUME[:3], "", code=0,
         setup=interrupted_before_checkpoint),
    Case("train-resume-after-interrupt-before-checkpoint", RESUME, "", code=0,
         setup=interrupted_before_checkpoint),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda case: case.id)
def test_hostile_train_run(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys, model=_SHARED["model"])
    if case.code == 0:
        assert (tmp_path / "run" / "model.safetensors").is_file()
        lines = (tmp_path / "run" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["step"] for line in lines] == [1, 2]
