"""Every ``prefcli train`` setting, declared once: name, type, default, help and valid range. The flags, the YAML
keys of ``--config``, ``--help`` and the value checks all come from here (``prefcli.settings.cli``); the trainer
reads the flat attributes (``config.batch_size``, ``config.beta``...), the online loop its ``online`` group."""

from __future__ import annotations

from dataclasses import dataclass

from prefcli.errors import ConfigError
from prefcli.settings.check import check_values
from prefcli.settings.fields import leaves, setting
from prefcli.settings.generation import SEED_RANGE
from prefcli.settings.online import OnlineSettings
from prefcli.settings.read import to_dict

SCHEDULERS = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TRACKERS = ("none", "tensorboard", "wandb")


def loss_setting(kind_help: str = ""):
    """A loss hyper-parameter exposed as a flag: ``None`` keeps the loss's own default; its type, range and which
    losses take it come from the losses' declarations (``prefcli.losses``)."""
    return setting(None, kind_help, loss_hparam=True, default_text="the loss's")


@dataclass
class TrainSettings:
    """The resolved settings of one ``prefcli train`` run (field names are the flags with ``-`` → ``_``)."""

    # what to train, on what
    model: str = setting("", "Policy to start from: HF directory or hub id.", required=True)
    ref_model: str | None = setting(None, "Reference model.", default_text="a frozen copy of the initial policy")
    data: str = setting("", "Records from `prefcli prepare` (JSONL); with --online, the prompts.", required=True)
    output: str = setting("", "Run directory (model, checkpoints, metrics, config.yaml).", required=True)

    # the loss and its hyper-parameters (None = the loss's own default)
    loss: str = setting("dpo", "Loss name (see `prefcli losses`).")
    beta: float | None = loss_setting("Loss β: inverse temperature of the implicit reward.")
    label_smoothing: float | None = loss_setting("Label-flip probability ε (cDPO, robust, exo).")
    tau: float | None = loss_setting("Loss τ, where the loss has one.")
    gamma: float | None = loss_setting("SimPO margin γ, where the loss has one.")
    alpha: float | None = loss_setting("NLL weight α (cpo, rpo), where it applies.")
    objective: str | None = loss_setting("AOT objective: logistic|hinge2|ls.")
    sort: str | None = loss_setting("AOT sort: hard|soft.")
    temperature: float | None = loss_setting("AOT soft-sort temperature.")
    global_sort: bool | None = setting(None, "AOT: sort over the batch of all processes.", loss_hparam=True,
                                        negative="--local-sort", default_text="the loss's")
    negatives: int | None = loss_setting("Negatives K drawn per record (candidate losses).")
    sampler: str | None = loss_setting("MC-PO sampler: mcmc|max|min|random.")
    loss_args: dict | None = setting(None, "Other loss hyper-parameter, KEY=VALUE (repeatable).",
                                     flag="--loss-arg")

    # optimisation
    batch_size: int = setting(8, "Records per process per micro-step (unpaired: B desirable + B undesirable).",
                              low=1)
    grad_accum: int = setting(1, "Micro-steps per optimizer step.", low=1)
    lr: float = setting(1e-6, "Peak learning rate.", low=0.0, low_open=True)
    scheduler: str = setting("cosine", "Learning-rate schedule after the warmup.", choices=SCHEDULERS)
    warmup: float = setting(0.1, "Warmup: fraction of the steps (<1) or a whole number of steps (>=1).", low=0.0)
    weight_decay: float = setting(0.0, "AdamW weight decay.", low=0.0)
    max_grad_norm: float = setting(1.0, "Clip norm (0: no clipping; the norm is still logged).", low=0.0)
    epochs: float = setting(1.0, "Passes over the data.", low=0.0, low_open=True, resumable=True)
    max_steps: int | None = setting(None, "Optimizer steps (overrides --epochs).", low=1, resumable=True)
    seed: int = setting(42, "Seed of data order, sampling and init.", **SEED_RANGE)

    # sequences
    max_length: int = setting(1024, "Prompt + completion tokens.", low=2)
    max_prompt_length: int | None = setting(None, "Prompt tokens kept, from the end.", low=1,
                                            default_text="half of --max-length")

    # model and memory
    dtype: str = setting("auto", "Weights dtype (auto: bfloat16 on a GPU that supports it, else float32).",
                         choices=DTYPES)
    gradient_checkpointing: bool = setting(False, "Recompute activations to save memory.")
    lora_r: int = setting(0, "Train a LoRA adapter of this rank on every linear layer (peft; 0: full).", low=0)
    lora_alpha: float | None = setting(None, "LoRA alpha.", default_text="2 × r")
    lora_dropout: float = setting(0.0, "LoRA dropout.", low=0.0, high=1.0, high_open=True)
    share_prompt: bool = setting(True, "Encode each prompt once per step and continue every completion from its "
                                       "KV cache.")
    logits_chunk_size: int | None = setting(None, "Completion tokens per log-softmax chunk.", low=1,
                                            default_text="128 MiB of logits")

    # reference log-probs
    precompute_ref: bool = setting(True, "Compute the frozen reference's log-probs once, before training, and "
                                         "cache them.")
    ref_cache_dir: str | None = setting(None, "Where reference log-probs, the data index and token ids are cached.",
                                        directory=True,
                                        resumable=True, default_text="<data dir>/.prefcli-cache")
    ref_rows: str = setting("reached", "Precompute reference log-probs for the examples the run reaches (reached) "
                                       "or for every example (all).", choices=("reached", "all"), resumable=True)

    # saving, logging, resuming
    save_every: int = setting(0, "Checkpoint every N optimizer steps (0: only the final model).", low=0,
                              resumable=True)
    keep_checkpoints: int = setting(2, "Newest complete checkpoints kept (0: all).", low=0, resumable=True)
    resume: bool = setting(False, "Continue from the newest complete checkpoint in --output.", resumable=True)
    log_every: int = setting(1, "Metrics line every N optimizer steps.", low=1, resumable=True)
    report_to: str = setting("none", "Trackers, comma-separated: none, tensorboard, wandb.", resumable=True)

    # online (OnMC-PO / online DPO); None = offline training
    online: OnlineSettings | None = setting(None, "Batched online loop (OnMC-PO / online DPO): --data holds "
                                                  "prompts; candidates are regenerated before each segment.")

    def loss_hparams(self) -> dict:
        """The loss hyper-parameters that were set (by file or flag, then ``loss_args``)."""
        given = {name: getattr(self, name) for name in LOSS_HPARAMS if getattr(self, name) is not None}
        return {**given, **(self.loss_args or {})}

    def to_dict(self) -> dict:
        return to_dict(self)

    def trackers(self) -> list[str]:
        return [name for name in (part.strip() for part in self.report_to.split(",")) if name and name != "none"]

    def validate(self) -> None:
        """Check values and combinations that need no model or data; raises ``ConfigError`` naming the flag."""
        check_values(self)
        if not float(self.warmup) < 1 and not float(self.warmup).is_integer():
            raise ConfigError(f"--warmup: must be a fraction in [0, 1) or a whole number of steps, got {self.warmup}")
        if self.max_prompt_length is None:
            self.max_prompt_length = self.max_length // 2
        if self.max_prompt_length >= self.max_length:
            raise ConfigError(f"--max-prompt-length: must be at least 1 and below --max-length ({self.max_length})")
        for tracker in self.trackers():
            if tracker not in TRACKERS:
                raise ConfigError(f"--report-to: unknown tracker {tracker!r} (choose from {', '.join(TRACKERS)})")
        if self.online is not None:
            self.online.check()


#: Settings that are loss hyper-parameters: passed to the loss by name, only when set.
LOSS_HPARAMS = tuple(leaf.name for leaf in leaves(TrainSettings) if leaf.spec.loss_hparam)
#: Settings that may change when a run is resumed (they do not change the training trajectory).
RESUMABLE_CHANGES = tuple(leaf.name for leaf in leaves(TrainSettings)
                          if leaf.spec.resumable and len(leaf.path) == 1)
