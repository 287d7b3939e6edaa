"""Every setting declared once (name, type, default, help, valid range) in typed, nested dataclasses; CLI flags,
YAML keys, ``--help`` and validation are derived from them.

>>> from prefcli.settings import TrainSettings, load_settings
>>> config = load_settings("run.yaml", {"batch_size": 4})
"""

from __future__ import annotations

from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.settings.check import check_values
from prefcli.settings.fields import Spec, leaves, setting
from prefcli.settings.generation import GenerationParams, SamplingSettings
from prefcli.settings.online import JudgeSettings, OnlineSettings
from prefcli.settings.read import build, flatten, to_dict
from prefcli.settings.train import LOSS_HPARAMS, RESUMABLE_CHANGES, TrainSettings


def read_yaml(path: str | Path) -> dict:
    """The mapping of a YAML settings file; a missing file, invalid YAML or a non-mapping is a ``ConfigError``."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--config: no such file: {path}")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: invalid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: must be a mapping of setting: value")
    return values


def load_settings(path: str | Path | None = None, overrides: dict | None = None,
                  cls: type = TrainSettings):
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (e.g. the command line's flags)."""
    settings = cls()
    if path is not None:
        settings = build(cls, read_yaml(path), str(path), settings)
    if overrides:
        settings = build(cls, overrides, "command line", settings)
    return settings


def dump_settings(settings) -> str:
    """The settings as YAML text (every field, in declaration order)."""
    import yaml

    return yaml.safe_dump(to_dict(settings), sort_keys=False, allow_unicode=True)


__all__ = [
    "LOSS_HPARAMS", "RESUMABLE_CHANGES", "GenerationParams", "JudgeSettings", "OnlineSettings", "SamplingSettings",
    "Spec", "TrainSettings", "build", "check_values", "dump_settings", "flatten", "leaves", "load_settings",
    "read_yaml", "setting", "to_dict",
]
