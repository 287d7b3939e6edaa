"""Every training setting in one dataclass, with every default visible here (nanoGPT's configurator, done with a
dataclass): a YAML file overrides the defaults, the command line overrides the file, each value is type-checked
against its field, and an unknown key fails naming it."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError

SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TRACKERS = ("none", "tensorboard", "wandb")

#: Config fields that are loss hyper-parameters: passed to ``get_loss`` by name, only when set, so the loss's own
#: defaults apply otherwise. A value the chosen loss does not take is an error (see ``prefcli.train.losses``).
LOSS_HPARAMS = ("beta", "label_smoothing", "tau", "gamma", "alpha", "objective", "sort", "temperature",
                "global_sort", "negatives", "sampler")

#: Fields that may change when a run is resumed (they do not change the training trajectory).
RESUMABLE_CHANGES = ("max_steps", "epochs", "save_every", "keep_checkpoints", "log_every", "report_to", "resume",
                     "ref_cache_dir", "ref_rows")


@dataclass
class TrainConfig:
    """The resolved settings of one ``prefcli train`` run (field names are the CLI flags with ``-`` → ``_``)."""

    # what to train, on what
    model: str = ""                      # policy to start from: local HF directory or hub id
    ref_model: str | None = None         # reference model; default: a frozen copy of the initial policy
    data: str = ""                       # JSONL records from `prefcli prepare` (pair / candidates / unpaired)
    output: str = ""                     # run directory: final model, checkpoints/, metrics.jsonl, config.yaml

    # the loss and its hyper-parameters (None = the loss's own default)
    loss: str = "dpo"
    beta: float | None = None
    label_smoothing: float | None = None
    tau: float | None = None
    gamma: float | None = None
    alpha: float | None = None
    objective: str | None = None
    sort: str | None = None
    temperature: float | None = None
    global_sort: bool | None = None
    negatives: int | None = None
    sampler: str | None = None
    loss_args: dict | None = None        # any other hyper-parameter of the loss, e.g. {desirable_weight: 1.3}

    # optimisation
    batch_size: int = 8                  # records per process per micro-step (unpaired: B desirable + B undesirable)
    grad_accum: int = 1                  # micro-steps per optimizer step
    lr: float = 1e-6
    scheduler: str = "cosine"            # cosine | linear | constant (all after the warmup)
    warmup: float = 0.1                  # < 1: fraction of the optimizer steps; >= 1: number of steps
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0           # 0 disables clipping (the norm is still logged)
    epochs: float = 1.0
    max_steps: int | None = None         # optimizer steps; overrides epochs when set
    seed: int = 42

    # sequences
    max_length: int = 1024               # prompt + completion tokens
    max_prompt_length: int | None = None # prompts longer keep their END (cut from the left); default max_length // 2

    # model and memory
    dtype: str = "auto"                  # auto = bfloat16 on a GPU that supports it, float32 otherwise
    gradient_checkpointing: bool = False
    lora_r: int = 0                      # > 0 trains a LoRA adapter (peft) on every linear layer
    lora_alpha: float | None = None      # default 2 * lora_r
    lora_dropout: float = 0.0
    share_prompt: bool = True            # encode each prompt once and continue every completion from its KV cache
    logits_chunk_size: int | None = None  # completion tokens per log-softmax chunk (None: 128 MiB of logits)

    # reference log-probs
    precompute_ref: bool = True          # frozen reference: compute its log-probs once, before training, and cache
    ref_cache_dir: str | None = None     # default: <data dir>/.prefcli-cache (OUTPUT if that is not writable)
    ref_rows: str = "reached"            # precomputed for: reached (the examples the run's steps use) | all

    # saving, logging, resuming
    save_every: int = 0                  # checkpoint every N optimizer steps (0: only the final model)
    keep_checkpoints: int = 2            # newest complete checkpoints kept (0 keeps all)
    resume: bool = False                 # continue from the newest complete checkpoint in OUTPUT/checkpoints
    log_every: int = 1                   # metrics.jsonl line every N optimizer steps
    report_to: str = "none"              # none | tensorboard | wandb (accelerate trackers), comma-separated

    # online (OnMC-PO / online DPO): the settings of prefcli.online.loop.OnlineConfig; None = offline training
    online: dict | None = None

    def loss_hparams(self) -> dict:
        """The loss hyper-parameters that were set (by file or flag, then ``loss_args``)."""
        given = {name: getattr(self, name) for name in LOSS_HPARAMS if getattr(self, name) is not None}
        return {**given, **(self.loss_args or {})}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def trackers(self) -> list[str]:
        return [name for name in (part.strip() for part in self.report_to.split(",")) if name and name != "none"]

    def validate(self) -> None:
        """Check values and combinations that need no file access; raises ``ConfigError`` naming the flag."""
        def need(condition: bool, flag: str, message: str) -> None:
            if not condition:
                raise ConfigError(f"--{flag.replace('_', '-')}: {message}")

        need(bool(self.model), "model", "is required")
        need(bool(self.data), "data", "is required")
        need(bool(self.output), "output", "is required")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.grad_accum >= 1, "grad_accum", "must be at least 1")
        need(self.lr > 0, "lr", "must be positive")
        need(self.scheduler in SCHEDULERS, "scheduler", f"must be one of {', '.join(SCHEDULERS)}")
        need(self.warmup >= 0 and (self.warmup < 1 or float(self.warmup).is_integer()), "warmup",
             "must be a fraction in [0, 1) or a whole number of steps")
        need(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        need(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0")
        need(self.epochs > 0, "epochs", "must be positive")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1")
        need(self.max_length >= 2, "max_length", "must be at least 2")
        if self.max_prompt_length is None:
            self.max_prompt_length = self.max_length // 2
        need(1 <= self.max_prompt_length < self.max_length, "max_prompt_length",
             f"must be at least 1 and below --max-length ({self.max_length})")
        need(self.dtype in DTYPES, "dtype", f"must be one of {', '.join(DTYPES)}")
        need(self.lora_r >= 0, "lora_r", "must be >= 0")
        need(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        need(self.logits_chunk_size is None or self.logits_chunk_size >= 1, "logits_chunk_size",
             "must be at least 1")
        need(self.save_every >= 0, "save_every", "must be >= 0")
        need(self.keep_checkpoints >= 0, "keep_checkpoints", "must be >= 0")
        need(self.log_every >= 1, "log_every", "must be at least 1")
        for tracker in self.trackers():
            need(tracker in TRACKERS, "report_to", f"unknown tracker {tracker!r} (choose from {', '.join(TRACKERS)})")


def _field_types() -> dict[str, object]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def coerce_value(name: str, value, annotation, source: str):
    """Check ``value`` against the field's type (ints are accepted for floats); return it, or raise."""
    allowed = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {name}: may not be empty")
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if kind is dict and isinstance(value, dict):
            return dict(value)
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in allowed if kind is not type(None))
    raise ConfigError(f"{source}: {name}: expected {names}, got {value!r}")


def _suggest(name: str, names) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def apply_overrides(config: TrainConfig, values: dict, source: str) -> TrainConfig:
    """A copy of ``config`` with ``values`` applied; keys may use ``-`` or ``_``."""
    types_by_name = _field_types()
    changes = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in types_by_name:
            raise ConfigError(f"{source}: unknown key {key!r}{_suggest(name, types_by_name)}")
        changes[name] = coerce_value(name, value, types_by_name[name], source)
    return dataclasses.replace(config, **changes)


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> TrainConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides`` (e.g. the command line's flags)."""
    import yaml

    config = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"--config: no such file: {path}")
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: invalid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: must be a mapping of setting: value")
        config = apply_overrides(config, values, str(path))
    if overrides:
        config = apply_overrides(config, overrides, "command line")
    return config


def dump_config(config: TrainConfig) -> str:
    """The config as YAML text (every field, in declaration order)."""
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True)


HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def check_model_path(flag: str, value: str) -> None:
    """A model argument must be an existing directory or look like a hub id (``org/name``)."""
    path = Path(value).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"--{flag}: {value} is a file; expected a model directory or hub id")
        return
    looks_local = value.startswith((".", "/", "~")) or value.count("/") > 1 or not HUB_ID.match(value)
    if looks_local:
        raise ConfigError(f"--{flag}: no such model directory: {value}")

