"""`prefcli train` bad input: one clear line, exit code 2, and no model loaded first."""

from __future__ import annotations

import json

import pytest
from train_helpers import write_pairs, write_unpaired

from prefcli.cli import main


@pytest.fixture()
def no_model_loading(monkeypatch):
    """Loading a model during these tests is a failure: every check must come first."""
    import transformers

    def refuse(*_, **__):
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def run(capsys, *argv) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *map(str, argv)])
    return exit_info.value.code, capsys.readouterr().err.strip()


def one_line(message: str) -> str:
    assert len(message.splitlines()) == 1, message
    return message


@pytest.fixture()
def pairs(tmp_path):
    return write_pairs(tmp_path / "pairs.jsonl", rows=8, candidates=[4, 4, 2, 4, 4, 4, 4, 4])


def test_missing_model_path(capsys, no_model_loading, pairs, tmp_path):
    code, err = run(capsys, "--model", "./no/such/model", "--data", pairs, "--output", tmp_path / "out")
    assert code == 2 and "--model: no such model directory: ./no/such/model" in one_line(err)


def test_records_lacking_candidates_name_file_line_and_field(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    code, err = run(capsys, "--model", tiny_model, "--data", pairs, "--output", tmp_path / "out",
                    "--loss", "mcpo", "--negatives", "4")
    assert code == 2
    assert f"{pairs}:3: candidates: has 2 candidates; --loss mcpo with 4 negatives needs at least 4" in one_line(err)


def test_pair_loss_on_unpaired_records(capsys, no_model_loading, tiny_model, tmp_path):
    data = write_unpaired(tmp_path / "unpaired.jsonl", rows=4)
    code, err = run(capsys, "--model", tiny_model, "--data", data, "--output", tmp_path / "out")
    assert code == 2 and f"{data}:1: rejected: missing: --loss dpo trains on pairs" in one_line(err)


def test_unpaired_loss_needs_both_labels(capsys, no_model_loading, tiny_model, tmp_path):
    data = write_unpaired(tmp_path / "unpaired.jsonl", rows=4, desirable_every=1)
    code, err = run(capsys, "--model", tiny_model, "--data", data, "--output", tmp_path / "out", "--loss", "kto")
    assert code == 2 and "has no undesirable (label false) examples" in one_line(err)


def test_empty_data_file(capsys, no_model_loading, tiny_model, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    code, err = run(capsys, "--model", tiny_model, "--data", empty, "--output", tmp_path / "out")
    assert code == 2 and f"{empty}: contains no records" in one_line(err)


def test_resume_without_checkpoint(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    code, err = run(capsys, "--model", tiny_model, "--data", pairs, "--output", tmp_path / "out", "--resume")
    assert code == 2 and "--resume: no complete checkpoint in" in one_line(err)


def test_unknown_config_key(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_model}\ndata: {pairs}\nlearning_rate: 0.1\n", encoding="utf-8")
    code, err = run(capsys, "--config", config, "--output", tmp_path / "out")
    assert code == 2 and f"{config}: unknown key 'learning_rate'" in one_line(err)


def test_flag_the_loss_does_not_take_and_unknown_loss(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    base = ["--model", tiny_model, "--data", pairs, "--output", tmp_path / "out"]
    code, err = run(capsys, *base, "--tau", "0.1")
    assert code == 2 and "--tau: --loss dpo has no hyper-parameter 'tau'" in one_line(err)
    code, err = run(capsys, *base, "--loss", "dpoo")
    assert code == 2 and "unknown loss 'dpoo'; did you mean 'dpo'?" in one_line(err)
    code, err = run(capsys, *base, "--beta", "-1")
    assert code == 2 and "beta" in one_line(err)
    code, err = run(capsys, *base, "--loss", "kto", "--loss-arg", "desirable_weight=oops")
    assert code == 2 and "desirable_weight" in one_line(err)


def test_existing_run_is_not_overwritten(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"step": 1}) + "\n", encoding="utf-8")
    (out / "model.safetensors").write_bytes(b"finished")
    code, err = run(capsys, "--model", tiny_model, "--data", pairs, "--output", out)
    assert code == 2 and "already holds a training run; pass --resume" in one_line(err)


def test_batch_larger_than_the_data(capsys, no_model_loading, pairs, tiny_model, tmp_path):
    code, err = run(capsys, "--model", tiny_model, "--data", pairs, "--output", tmp_path / "out",
                    "--batch-size", "16")
    assert code == 2 and "--batch-size: the data has 8 examples, fewer than one global batch of 16" in one_line(err)


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Example: prefcli train --model" in out and "--negatives" in out and "--precompute-ref" in out
