"""The parts a training run is built from, one function each (torchtune's recipe ``setup`` steps): the compute
dtype, the Accelerator, the policy (gradient checkpointing, LoRA), the optimizer and the learning-rate schedule."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefcli.train.config import TrainConfig


@dataclass(frozen=True)
class RunPart:
    """This run is one part of a longer one (an online segment): the learning-rate schedule spans
    ``schedule_steps`` and starts ``schedule_offset`` steps in; a fresh (not resumed) part starts from the optimizer
    state in ``init_optimizer`` (the previous part's last checkpoint); every part checkpoints after its last step."""

    schedule_steps: int
    schedule_offset: int
    init_optimizer: str | None = None


def resolve_dtype(name: str):
    """The compute dtype for ``--dtype``: auto = bfloat16 on a GPU that supports it, float32 otherwise."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def has_accelerator() -> bool:
    import torch

    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def build_accelerator(config: TrainConfig, dtype):
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs

    mixed = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    return Accelerator(
        cpu=not has_accelerator(),  # lets torchrun / accelerate launch run multi-process on CPU (gloo)
        gradient_accumulation_steps=config.grad_accum, mixed_precision=mixed,
        log_with=config.trackers() or None, project_dir=str(config.output), step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])


def load_model(name: str, dtype, lora: bool):
    """A causal LM in float32 (bfloat16 only for the frozen base of a bfloat16 LoRA run)."""
    import torch
    from transformers import AutoModelForCausalLM

    weights_dtype = dtype if dtype == torch.bfloat16 and lora else torch.float32
    return AutoModelForCausalLM.from_pretrained(name, dtype=weights_dtype)


def build_policy(config: TrainConfig, dtype):
    """The model to train: the starting model, with gradient checkpointing and a LoRA adapter when asked."""
    model = load_model(config.model, dtype, lora=config.lora_r > 0)
    model.config.use_cache = False
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        if config.gradient_checkpointing:
            model.enable_input_require_grads()
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha or 2 * config.lora_r,
                          lora_dropout=config.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
    return model


def build_optimizer(parameters, config: TrainConfig):
    import torch

    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    return torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int, part: RunPart | None = None):
    """Warmup, then cosine / linear / constant over ``total_steps`` optimizer steps (or, for one part of a longer
    run, over all its steps from the part's offset)."""
    from prefcli.train.schedule import lr_scheduler

    span = part.schedule_steps if part else total_steps
    warmup = int(config.warmup) if config.warmup >= 1 else math.ceil(config.warmup * span)
    return lr_scheduler(optimizer, config.scheduler, min(warmup, span), span,
                        offset=part.schedule_offset if part else 0)


def load_optimizer_state(optimizer, checkpoint: str) -> None:
    """Start from the optimizer state (Adam moments, step counts) saved in another run's checkpoint."""
    from pathlib import Path

    import torch

    from prefcli.errors import ConfigError

    path = Path(checkpoint) / "optimizer.bin"
    if not path.is_file():
        raise ConfigError(f"{path}: missing (the previous part of the run saved no optimizer state)")
    optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
