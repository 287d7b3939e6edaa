"""The settings tree: every setting declared once, and the flags, YAML keys, --help and checks derived from it."""

from __future__ import annotations

import click
import pytest
import typer

from prefcli.errors import ConfigError
from prefcli.settings import (
    LOSS_HPARAMS,
    RESUMABLE_CHANGES,
    JudgeSettings,
    OnlineSettings,
    SamplingSettings,
    TrainSettings,
    leaves,
    load_settings,
)
from prefcli.settings.online import GenerateCandidatesSettings


def command_options(*path: str) -> dict[str, click.Option]:
    """Flag -> click option of ``prefcli <path>``."""
    from prefcli.cli import app

    command = typer.main.get_command(app)
    for part in path:
        command = command.commands[part]
    return {name: param for param in command.params for name in param.opts}


def test_every_train_setting_is_one_flag_and_every_flag_one_setting():
    flags = command_options("train")
    expected = {leaf.flag for leaf in leaves(TrainSettings)} | {"--online", "--config"}
    assert set(flags) - {"-o"} == expected
    assert len(flags) > 53  # the 53 options of before, plus the online settings that were YAML-only
    # bools get their off switch; the command-specific spellings hold
    assert flags["--global-sort"].secondary_opts == ["--local-sort"]
    assert flags["--both-orders"].secondary_opts == ["--one-order"]
    assert flags["--resume"].secondary_opts == ["--no-resume"]


def test_help_shows_the_declared_default_and_range():
    flags = command_options("train")
    assert flags["--lr"].help.endswith("(> 0; default: 1e-06)")
    assert flags["--scheduler"].help.endswith("(one of cosine, linear, constant; default: cosine)")
    assert flags["--seed"].help.endswith("(in [0, 2^64 - 1]; default: 42)")
    assert flags["--temperatures"].help.endswith("(>= 0; default: 0.6,0.8,1.0)")
    assert "default: the loss's" in flags["--beta"].help
    generate = command_options("prepare", "generate")
    assert "--batch-size" in generate and "--gen-batch-size" not in generate  # this command's own spelling
    assert "-o" in generate


def test_loss_hparams_and_resumable_settings_are_derived():
    assert LOSS_HPARAMS == ("beta", "label_smoothing", "tau", "gamma", "alpha", "objective", "sort", "temperature",
                            "global_sort", "negatives", "sampler")
    assert set(RESUMABLE_CHANGES) == {"max_steps", "epochs", "save_every", "keep_checkpoints", "log_every",
                                      "report_to", "resume", "ref_cache_dir", "ref_rows"}
    from prefcli.losses import REGISTRY

    declared = {spec.name for cls in REGISTRY.values() for spec in cls.hparam_specs}
    assert set(LOSS_HPARAMS) <= declared  # no flag for a hyper-parameter no loss takes


def test_online_yaml_nested_and_flat_give_the_same_settings(tmp_path):
    nested = tmp_path / "nested.yaml"
    nested.write_text("online:\n  segments: 2\n  sampling:\n    temperatures: [0.7, 1.0]\n    per_temperature: 3\n"
                      "  judging:\n    judge: rule:length\n    both_orders: true\n", encoding="utf-8")
    flat = tmp_path / "flat.yaml"  # the format of earlier versions keeps working
    flat.write_text("online:\n  segments: 2\n  temperatures: 0.7,1.0\n  per_temperature: 3\n  judge: rule:length\n"
                    "  both_orders: true\n", encoding="utf-8")
    a, b = load_settings(nested), load_settings(flat)
    assert a == b and a.online.sampling.temperatures == (0.7, 1.0) and a.online.judging.both_orders is True
    assert a.online.sampling.per_temperature * 2 == a.online.sampling.completions_per_prompt
    assert load_settings(None, {"online": {}}).online == OnlineSettings()
    off = tmp_path / "off.yaml"
    off.write_text("online: null\n", encoding="utf-8")
    assert load_settings(off).online is None


def test_settings_round_trip_through_yaml(tmp_path):
    from prefcli.settings import dump_settings

    config = load_settings(None, {"model": "m", "data": "d", "output": "o", "online": {"judge": "rule:length",
                                                                                       "segments": 4}})
    path = tmp_path / "config.yaml"
    path.write_text(dump_settings(config), encoding="utf-8")
    assert load_settings(path) == config


@pytest.mark.parametrize("values, message", [
    ({"online": {"segmnets": 2}}, "command line: online: unknown key 'segmnets' (did you mean segments?)"),
    ({"online": 3}, "online: expected a mapping"),
    ({"online": {"temperatures": "hot"}}, "temperatures: expected a list of numbers"),
    ({"segments": 2}, "unknown key 'segments'"),  # online settings live under online:
    ({"lr": "fast"}, "lr: expected float"),
])
def test_bad_keys_and_types_name_the_key(values, message):
    with pytest.raises(ConfigError) as error:
        load_settings(None, values)
    assert message in str(error.value)


@pytest.mark.parametrize("changes, message", [
    ({"epochs": float("inf")}, "--epochs: must be a finite number, got inf"),
    ({"lr": float("inf")}, "--lr: must be a finite number, got inf"),
    ({"lr": 0.0}, "--lr: must be > 0, got 0.0"),
    ({"seed": 2**64}, "--seed: must be in [0, 2^64 - 1], got 18446744073709551616"),
    ({"seed": -1}, "--seed: must be in [0, 2^64 - 1], got -1"),
    ({"lora_dropout": 1.0}, "--lora-dropout: must be in [0, 1), got 1.0"),
    ({"online": {"judge": "rule:length", "top_p": 0}}, "--top-p: must be in (0, 1], got 0"),
    ({"online": {"judge": "rule:length", "gen_batch_size": 0}}, "--gen-batch-size: must be >= 1, got 0"),
    ({"online": {"judge": "rule:length", "temperatures": [1.0, 1.0]}}, "--temperatures: a temperature is listed"),
    ({"online": {}}, "--judge: is required"),
])
def test_values_are_checked_naming_the_flag(changes, message):
    config = load_settings(None, {"model": "m", "data": "d", "output": "o", **changes})
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert str(error.value).startswith(message)


def test_ref_cache_dir_must_not_be_a_file(tmp_path):
    existing = tmp_path / "cache"
    existing.write_text("x", encoding="utf-8")
    config = TrainSettings(model="m", data="d", output="o", ref_cache_dir=str(existing))
    with pytest.raises(ConfigError, match=f"--ref-cache-dir: {existing} is a file; expected a directory"):
        config.validate()
    TrainSettings(model="m", data="d", output="o", ref_cache_dir=str(tmp_path / "new")).validate()


def test_a_command_spells_its_own_flags():
    settings = GenerateCandidatesSettings(model="m", prompts="p", output="o",
                                          sampling=SamplingSettings(gen_batch_size=0),
                                          judging=JudgeSettings(judge="rule:length"))
    with pytest.raises(ConfigError, match="^--batch-size: must be >= 1, got 0$"):
        settings.check()
    with pytest.raises(ConfigError, match="^--per-temperature: must be >= 1"):
        SamplingSettings(per_temperature=0).check()


def test_unpaired_negatives_is_the_new_name_of_prepare_negatives(tmp_path, capsys):
    """``--negatives`` means K in train; prepare's one|all is ``--unpaired-negatives`` (the old name still works,
    with a warning)."""
    import json

    from cli_helpers import run_main

    source = tmp_path / "pairs.jsonl"
    source.write_text(json.dumps({"id": "a", "prompt": "P?", "chosen": "c", "rejected": "r",
                                  "candidates": ["r", "s"]}) + "\n", encoding="utf-8")
    outputs = {}
    for name, flag in (("new", "--unpaired-negatives"), ("old", "--negatives")):
        outputs[name] = tmp_path / f"{name}.jsonl"
        capsys.readouterr()
        assert run_main(["prepare", "unpair", "--input", str(source), "--output", str(outputs[name]),
                         flag, "all"]) == 0
        err = capsys.readouterr().err
        assert ("--negatives is deprecated; use --unpaired-negatives" in err) == (name == "old")
    assert outputs["new"].read_text() == outputs["old"].read_text()
    assert len(outputs["new"].read_text().splitlines()) == 3  # chosen + r + s
    assert run_main(["prepare", "unpair", "--input", str(source), "--output", str(tmp_path / "x.jsonl"),
                     "--negatives", "all", "--unpaired-negatives", "one"]) == 2


def test_shipped_online_example_loads_and_validates():
    from pathlib import Path

    example = Path(__file__).resolve().parent.parent / "examples" / "online-onmcpo-llama31-8b-instruct.yaml"
    config = load_settings(example)  # written in the flat online: format
    config.validate()
    assert config.online.segments == 3 and config.online.sampling.completions_per_prompt == 6
    assert config.online.judging.concurrency == 32 and config.online.sampling.backend == "vllm"


def test_resume_compares_an_online_run_saved_in_the_flat_format(tmp_path):
    """A run started by an earlier version saved ``online:`` flat; --resume compares it leaf by leaf."""
    import yaml

    from prefcli.online.loop import RUN_CONFIG, _check_output

    output = tmp_path / "run"
    output.mkdir()
    config = load_settings(None, {"model": "m", "data": "d", "output": str(output), "resume": True,
                                  "online": {"judge": "rule:length"}})
    config.validate()
    old_flat = {"segments": 3, "temperatures": [0.6, 0.8, 1.0], "per_temperature": 2, "max_new_tokens": 512,
                "top_p": 1.0, "gen_batch_size": 8, "backend": "hf", "judge": "http://old/v1", "judge_model": None,
                "judge_key_env": None, "protocol": "alpaca", "judge_prompt": None, "both_orders": False,
                "concurrency": 8, "max_retries": 3, "retry_delay": 1.0, "timeout": 120.0, "judge_max_tokens": None}
    train = {k: v for k, v in config.to_dict().items() if k != "online"}
    (output / RUN_CONFIG).write_text(yaml.safe_dump({"train": train, "online": old_flat}), encoding="utf-8")
    _check_output(config, output)  # only the judge moved, which may change on resume
    (output / RUN_CONFIG).write_text(yaml.safe_dump({"train": train, "online": {**old_flat, "per_temperature": 3}}),
                                     encoding="utf-8")
    with pytest.raises(ConfigError, match=r"--resume: settings differ .*per_temperature: 3 -> 2"):
        _check_output(config, output)
