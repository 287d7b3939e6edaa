"""TrainConfig: defaults, YAML then command-line precedence, type checks, unknown keys, value checks."""

from __future__ import annotations

import pytest

from prefcli.errors import ConfigError
from prefcli.train.config import TrainConfig, apply_overrides, check_model_path, dump_config, load_config


def test_yaml_then_command_line_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("loss: mcpo\nnegatives: 4\nlr: 5.0e-7\nbatch_size: 16\nbeta: 1\n", encoding="utf-8")
    config = load_config(path, {"batch_size": 2, "max-steps": 7})
    assert config.loss == "mcpo" and config.negatives == 4 and config.lr == 5e-7
    assert config.batch_size == 2 and config.max_steps == 7  # command line wins; dashes accepted
    assert config.beta == 1.0 and isinstance(config.beta, float)  # an int is fine for a float field
    assert config.scheduler == TrainConfig().scheduler  # untouched fields keep their defaults


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-6\nbatch_sise: 4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"unknown key 'batch_sise' \(did you mean batch_size\?\)"):
        apply_overrides(TrainConfig(), {"batch_sise": 4}, str(path))


@pytest.mark.parametrize("key, value", [("batch_size", 2.5), ("batch_size", "8"), ("lr", "fast"),
                                        ("gradient_checkpointing", 1), ("model", None)])
def test_values_are_type_checked(key, value):
    with pytest.raises(ConfigError, match=key):
        apply_overrides(TrainConfig(), {key: value}, "run.yaml")


def test_yaml_must_be_a_mapping(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("changes, flag", [
    ({"max_prompt_length": 2048}, "--max-prompt-length"), ({"scheduler": "step"}, "--scheduler"),
    ({"warmup": 2.5}, "--warmup"), ({"dtype": "int8"}, "--dtype"), ({"report_to": "mlflow"}, "--report-to"),
    ({"batch_size": 0}, "--batch-size"), ({"model": ""}, "--model"),
])
def test_validate_names_the_flag(changes, flag):
    config = apply_overrides(TrainConfig(model="m", data="d.jsonl", output="out"), changes, "test")
    with pytest.raises(ConfigError, match=flag):
        config.validate()


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = TrainConfig(model="m", data="d.jsonl", output="out", loss="kto", beta=0.2,
                         loss_args={"desirable_weight": 1.3})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(config), encoding="utf-8")
    assert load_config(path) == config


def test_model_path_must_exist_or_look_like_a_hub_id(tmp_path):
    check_model_path("model", str(tmp_path))
    check_model_path("model", "meta-llama/Llama-3.2-1B-Instruct")
    for bad in ("./no/such/model", str(tmp_path / "missing"), "a/b/c"):
        with pytest.raises(ConfigError, match="--model: no such model directory"):
            check_model_path("model", bad)


def test_shipped_examples_load():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parent.parent / "examples"
    presets = sorted(root.glob("train-*.yaml"))
    assert len(presets) >= 4
    for preset in presets:
        config = load_config(preset, {"model": "m", "data": "d.jsonl", "output": "out"})
        config.validate()
    for launcher in sorted((root / "accelerate").glob("*.yaml")):
        assert yaml.safe_load(launcher.read_text(encoding="utf-8"))["distributed_type"] in (
            "MULTI_GPU", "FSDP", "DEEPSPEED")


def test_every_setting_is_a_flag():
    """Each TrainConfig field can be given on the command line (loss_args as repeatable --loss-arg)."""
    import dataclasses

    import typer

    from prefcli.cli import app

    command = typer.main.get_command(app).commands["train"]
    flags = {option for param in command.params for option in (*param.opts, *param.secondary_opts)}
    for field in dataclasses.fields(TrainConfig):
        flag = "--loss-arg" if field.name == "loss_args" else "--" + field.name.replace("_", "-")
        assert flag in flags, flag


def test_max_prompt_length_defaults_to_half_of_max_length():
    config = TrainConfig(model="m", data="d.jsonl", output="o", max_length=256)
    config.validate()
    assert config.max_prompt_length == 128
    explicit = TrainConfig(model="m", data="d.jsonl", output="o", max_length=256, max_prompt_length=200)
    explicit.validate()
    assert explicit.max_prompt_length == 200
