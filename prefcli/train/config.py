"""The training settings as the trainer imports them. They are declared once, in ``prefcli.settings.train``; this
module keeps the names the trainer and its callers use (``TrainConfig``, ``load_config``...) and the model-path
check shared by ``train`` and ``train --online``."""

from __future__ import annotations

from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.hub import looks_like_hub_id
from prefcli.settings import LOSS_HPARAMS, RESUMABLE_CHANGES, build, dump_settings, load_settings
from prefcli.settings.read import coerce
from prefcli.settings.train import DTYPES, SCHEDULERS, TRACKERS, TrainSettings

TrainConfig = TrainSettings


def apply_overrides(config: TrainConfig, values: dict, source: str) -> TrainConfig:
    """A copy of ``config`` with ``values`` applied; keys may use ``-`` or ``_``."""
    return build(TrainSettings, values, source, config)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (e.g. the command line's flags)."""
    return load_settings(path, overrides, TrainSettings)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML text (every field, in declaration order)."""
    return dump_settings(config)


def check_model_path(flag: str, value: str) -> None:
    """A model argument must be an existing directory or look like a hub id (``org/name``)."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"--{flag}: {value} is a file; expected a model directory or hub id")
        return
    if not looks_like_hub_id(value, bare_name=True):
        raise ConfigError(f"--{flag}: no such model directory: {value}")


__all__ = ["DTYPES", "LOSS_HPARAMS", "RESUMABLE_CHANGES", "SCHEDULERS", "TRACKERS", "TrainConfig", "apply_overrides",
           "check_model_path", "coerce", "dump_config", "load_config"]
