"""Every check that can fail on user input, run before any model is loaded (so a typo costs a second, not the
minutes of loading a model): settings, model paths, the loss and its hyper-parameters, the data records, the
output directory and the checkpoint to resume from."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.progress import Progress
from prefcli.train.checkpoint import complete_checkpoints, latest_checkpoint
from prefcli.train.config import LOSS_HPARAMS, RESUMABLE_CHANGES, TrainConfig, check_model_path
from prefcli.train.data import LoadedRecords, load_records
from prefcli.train.token_cache import cache_root

_TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def build_loss(config: TrainConfig):
    """The configured loss module; a hyper-parameter the loss does not take is an error naming the flag."""
    from prefcli.losses import get_loss, loss_class

    try:
        accepted = set(loss_class(config.loss).defaults())
    except ValueError as error:
        raise ConfigError(f"--loss: {error}") from None
    given = config.loss_hparams()
    for name in given:
        if name not in accepted:
            valid = ", ".join(sorted(accepted)) or "none"
            where = f"--{name.replace('_', '-')}" if name in LOSS_HPARAMS else f"--loss-arg {name}"
            raise ConfigError(f"{where}: --loss {config.loss} has no hyper-parameter {name!r} "
                              f"(its hyper-parameters: {valid})")
    try:
        return get_loss(config.loss, **given)
    except ValueError as error:
        raise ConfigError(f"--loss {config.loss}: {error}") from None


@dataclass
class Preflight:
    loss: object
    records: LoadedRecords
    resume_from: tuple[int, Path] | None


def _check_resume(config: TrainConfig) -> tuple[int, Path] | None:
    output = Path(config.output)
    latest = latest_checkpoint(output)
    if config.resume:
        if latest is None:
            raise ConfigError(f"--resume: no complete checkpoint in {output / 'checkpoints'}")
        saved = output / "config.yaml"
        if saved.is_file():
            import yaml

            before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
            now = config.to_dict()
            changed = [key for key in now if key not in RESUMABLE_CHANGES and key in before and before[key] != now[key]]
            if changed:
                detail = ", ".join(f"{key}: {before[key]!r} -> {now[key]!r}" for key in changed)
                raise ConfigError(f"--resume: settings differ from the run in {output} ({detail}); only "
                                  f"{', '.join(RESUMABLE_CHANGES)} may change on resume")
        return latest
    if complete_checkpoints(output) or (output / "metrics.jsonl").is_file():
        raise ConfigError(f"--output: {output} already holds a training run; pass --resume to continue it or "
                          "choose another directory")
    return None


def preflight(config: TrainConfig, progress: Progress | None = None) -> Preflight:
    """Run every check; raises a ``PrefcliError`` (one line, exit code 2 in the CLI) on the first failure."""
    config.validate()
    check_model_path("model", config.model)
    if config.ref_model is not None:
        check_model_path("ref-model", config.ref_model)
    for tracker in config.trackers():
        if importlib.util.find_spec(_TRACKER_MODULES[tracker]) is None:
            raise ConfigError(f"--report-to {tracker}: the {tracker} package is not installed "
                              f"(pip install {tracker})")
    if config.lora_r > 0 and importlib.util.find_spec("peft") is None:
        raise ConfigError("--lora-r: LoRA needs the peft package (pip install 'prefcli[lora]')")
    loss = build_loss(config)
    records = load_records(config.data, loss, config.loss, progress=progress,
                           cache_dir=cache_root(config.data, config.output, config.ref_cache_dir))
    resume_from = _check_resume(config)
    return Preflight(loss, records, resume_from)
