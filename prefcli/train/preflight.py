"""Every check that can fail on user input, run before any model is loaded (so a typo costs a second, not the
minutes of loading a model): settings, model paths, the loss and its hyper-parameters, the data records, the
output directory and the checkpoint to resume from."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.progress import Progress
from prefcli.train.checkpoint import TRAINER_STATE, complete_checkpoints, latest_checkpoint
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
    data_checksum: str


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def _check_model_dir(flag: str, value: str, needs_tokenizer: bool) -> None:
    """A local model directory has a readable config.json (and, for the policy, a tokenizer)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        return  # a hub id: transformers resolves it
    config = path / "config.json"
    if not config.is_file():
        raise ConfigError(f"--{flag}: {config}: missing (not a transformers model directory)")
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"--{flag}: {config}: invalid JSON ({error})") from None
    if not isinstance(values, dict) or not isinstance(values.get("model_type"), str):
        raise ConfigError(f"--{flag}: {config}: no model_type; not a transformers model config")
    if needs_tokenizer and not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ConfigError(f"--{flag}: {path} has no tokenizer ({', '.join(_TOKENIZER_FILES)}); save the "
                          "tokenizer with the model (tokenizer.save_pretrained)")


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def _check_output(config: TrainConfig) -> None:
    """OUTPUT is (or will be) a directory, and never the starting or reference model's directory."""
    output = Path(config.output).expanduser().resolve()
    for flag, value in (("model", config.model), ("ref-model", config.ref_model)):
        if value and Path(value).expanduser().is_dir() and _inside(output, Path(value).expanduser().resolve()):
            raise ConfigError(f"--output: {config.output} is inside --{flag} {value}; training would overwrite "
                              "the model it starts from: choose another directory")
    for parent in (output, *output.parents):
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--output: {parent} is a file; expected a directory")


def _finished_model(output: Path) -> bool:
    return any((output / name).is_file() for name in _WEIGHT_FILES)


def _read_state(path: Path) -> dict:
    file = path / TRAINER_STATE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"--resume: {file}: unreadable ({str(error).splitlines()[0]}); delete {path} to resume "
                          "from an older checkpoint") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise ConfigError(f"--resume: {file}: no step; not a prefcli trainer state (delete {path} to resume from "
                          "an older checkpoint)")
    return state


def _check_checkpoint(path: Path, data_checksum: str, data: str) -> None:
    """The checkpoint holds every file it was saved with, and was trained on these data bytes."""
    state = _read_state(path)
    for name, size in (state.get("files") or {}).items():
        file = path / name
        if not file.is_file() or file.stat().st_size != size:
            what = "missing" if not file.is_file() else f"{file.stat().st_size} bytes, saved with {size}"
            raise ConfigError(f"--resume: checkpoint {path} is damaged: {name} is {what}; delete it to resume "
                              "from an older checkpoint")
    saved = state.get("data_checksum")
    if saved is not None and saved != data_checksum:
        raise ConfigError(f"--resume: --data {data} differs from the file this run trained on (checksum "
                          f"{saved[:19]}... now {data_checksum[:19]}...); resume with the same data or start a new "
                          "run in another --output")


def _check_settings(config: TrainConfig, output: Path) -> None:
    saved = output / "config.yaml"
    if not saved.is_file():
        return
    import yaml

    before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    now = config.to_dict()
    changed = [key for key in now if key not in RESUMABLE_CHANGES and key in before and before[key] != now[key]]
    if changed:
        detail = ", ".join(f"{key}: {before[key]!r} -> {now[key]!r}" for key in changed)
        raise ConfigError(f"--resume: settings differ from the run in {output} ({detail}); only "
                          f"{', '.join(RESUMABLE_CHANGES)} may change on resume")


def _check_resume(config: TrainConfig, data_checksum: str) -> tuple[int, Path] | None:
    """The checkpoint to resume from, or None to start at step 0.

    A run interrupted before its first checkpoint left nothing worth keeping: it restarts (with or without
    ``--resume``). A run with a checkpoint or a final model is continued only with ``--resume``."""
    output = Path(config.output)
    latest = latest_checkpoint(output)
    if config.resume:
        if latest is None and not (output / "config.yaml").is_file():
            raise ConfigError(f"--resume: no complete checkpoint in {output / 'checkpoints'}")
        _check_settings(config, output)
        if latest is not None:
            _check_checkpoint(latest[1], data_checksum, config.data)
        return latest
    if complete_checkpoints(output) or _finished_model(output):
        raise ConfigError(f"--output: {output} already holds a training run; pass --resume to continue it or "
                          "choose another directory")
    return None


def preflight(config: TrainConfig, progress: Progress | None = None) -> Preflight:
    """Run every check; raises a ``PrefcliError`` (one line, exit code 2 in the CLI) on the first failure."""
    config.validate()
    check_model_path("model", config.model)
    _check_model_dir("model", config.model, needs_tokenizer=True)
    if config.ref_model is not None:
        check_model_path("ref-model", config.ref_model)
        _check_model_dir("ref-model", config.ref_model, needs_tokenizer=False)
    _check_output(config)
    for tracker in config.trackers():
        if importlib.util.find_spec(_TRACKER_MODULES[tracker]) is None:
            raise ConfigError(f"--report-to {tracker}: the {tracker} package is not installed "
                              f"(pip install {tracker})")
    if config.lora_r > 0 and importlib.util.find_spec("peft") is None:
        raise ConfigError("--lora-r: LoRA needs the peft package (pip install 'prefcli[lora]')")
    loss = build_loss(config)
    records = load_records(config.data, loss, config.loss, progress=progress,
                           cache_dir=cache_root(config.data, config.output, config.ref_cache_dir))
    resume_from = _check_resume(config, records.checksum)  # the index already hashed the file
    return Preflight(loss, records, resume_from, records.checksum)
