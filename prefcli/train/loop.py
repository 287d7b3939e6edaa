"""The training loop, on accelerate: the same code runs as ``prefcli train``, under ``torchrun`` and under
``accelerate launch`` (DDP, FSDP, DeepSpeed), on CPU or GPU.

``train(config)`` runs the preflight checks, tokenizes the data once, loads the policy, precomputes (or loads
cached) reference log-probs, then runs the optimizer steps: gradient accumulation, clipping, a warmup + cosine /
linear / constant schedule, checkpoints every ``save_every`` steps, and a metrics line every ``log_every`` steps.
It returns a summary dict; it never prints (``progress`` is called with what to show).
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import replace
from pathlib import Path

from prefcli.errors import ConfigError, PrefcliError
from prefcli.progress import Progress  # phases: "read" (MB), "tokenize" (examples), "reference" (examples), "train"
from prefcli.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from prefcli.train.config import TrainConfig, dump_config
from prefcli.train.data import UNPAIRED, build_examples
from prefcli.train.preflight import preflight
from prefcli.train.token_cache import cache_root


class TrainingDiverged(PrefcliError):
    """The loss or gradient norm became NaN/inf; the last good state was saved."""


def resolve_dtype(name: str):
    """The compute dtype for ``--dtype``: auto = bfloat16 on a GPU that supports it, float32 otherwise."""
    import torch

    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, name)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = int(config.warmup) if config.warmup >= 1 else math.ceil(config.warmup * total_steps)
    names = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
    return get_scheduler(names[config.scheduler], optimizer, num_warmup_steps=min(warmup, total_steps),
                         num_training_steps=total_steps)


def _has_accelerator() -> bool:
    import torch

    if hasattr(torch, "accelerator"):
        return torch.accelerator.is_available()
    return torch.cuda.is_available()


def _reset_accelerate_state() -> None:
    """Let a later ``train`` call in the same process build a fresh Accelerator (the process group stays)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def _micro_seed(seed: int, micro_step: int, process_index: int) -> int:
    return (seed * 1_000_003 + micro_step * 1_009 + process_index) % (2**63 - 1)


def _load_model(name: str, dtype, config: TrainConfig):
    import torch
    from transformers import AutoModelForCausalLM

    weights_dtype = dtype if dtype == torch.bfloat16 and config.lora_r > 0 else torch.float32
    return AutoModelForCausalLM.from_pretrained(name, dtype=weights_dtype)


def _reference_cache_path(config: TrainConfig, key: str) -> Path:
    import os

    if config.ref_cache_dir:
        return Path(config.ref_cache_dir) / f"ref-logps-{key}.pt"
    data_dir = Path(config.data).resolve().parent
    if os.access(data_dir, os.W_OK):
        return data_dir / ".prefcli-cache" / f"ref-logps-{key}.pt"
    return Path(config.output) / "ref-cache" / f"ref-logps-{key}.pt"


def train(config: TrainConfig, progress: Progress | None = None) -> dict:
    """Train a policy as ``config`` says; returns a summary (steps, losses, throughput, paths, counts)."""
    started = time.perf_counter()
    checks = preflight(config, progress if _is_main_process() else None)
    try:
        return _train(config, checks, progress, started)
    finally:
        _reset_accelerate_state()


def _train(config: TrainConfig, checks, progress, started) -> dict:
    import torch
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import AutoTokenizer

    from prefcli.data.atomic import atomic_open
    from prefcli.train.logps import SequenceScorer
    from prefcli.train.metrics import MetricsWriter
    from prefcli.train.reference import cache_key, load_cache, precompute, save_cache
    from prefcli.train.sampler import BatchPlan
    from prefcli.train.step import StepRunner
    from prefcli.train.tokenize import ChatEncoder

    loss, records = checks.loss, checks.records
    output = Path(config.output)
    dtype = resolve_dtype(config.dtype)
    mixed = {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    accelerator = Accelerator(
        cpu=not _has_accelerator(),  # lets torchrun / accelerate launch run multi-process on CPU (gloo)
        gradient_accumulation_steps=config.grad_accum, mixed_precision=mixed,
        log_with=config.trackers() or None, project_dir=str(output), step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)])
    device = accelerator.device
    main = accelerator.is_main_process

    # ---- data: tokenized once ---------------------------------------------------------------------------------
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoder = ChatEncoder(tokenizer, config.max_length, config.max_prompt_length)
    layout = records.layout
    plan = BatchPlan(records.labels(), config.batch_size, accelerator.num_processes,
                     accelerator.process_index, config.seed, unpaired=layout == UNPAIRED)
    micro_per_epoch = plan.micro_batches_per_epoch
    total_steps = config.max_steps or max(1, int(config.epochs * micro_per_epoch // config.grad_accum))
    with accelerator.main_process_first():  # the main process tokenizes into the cache, the others read it
        examples, truncation = build_examples(
            records, encoder, plan.global_indices(total_steps * config.grad_accum),
            cache_dir=cache_root(config.data, config.output, config.ref_cache_dir),
            progress=progress if main else None)

    if main:
        output.mkdir(parents=True, exist_ok=True)
        with atomic_open(output / "config.yaml") as handle:
            handle.write(dump_config(config))

    # ---- model --------------------------------------------------------------------------------------------------
    torch.manual_seed(config.seed)
    model = _load_model(config.model, dtype, config)
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
    sharded = accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
    if sharded and config.ref_model is not None:
        raise ConfigError("--ref-model is not supported with FSDP or DeepSpeed; the reference is then the initial "
                          "policy, with its log-probs precomputed")
    # sharded engines need every process to make the same decoder calls: one call per pass, no length groups
    scorer = SequenceScorer(model, share_prompt=config.share_prompt, chunk_rows=config.logits_chunk_size,
                            group_by_length=not sharded).to(device)
    needs_reference = not getattr(loss, "reference_free", False)
    reference = reference_scorer = None
    reference_context = contextlib.nullcontext
    if needs_reference and not config.precompute_ref and config.ref_model is None and config.lora_r == 0:
        import copy

        reference_scorer = copy.deepcopy(scorer).eval().requires_grad_(False)  # the frozen initial policy

    # ---- optimizer, schedule, accelerate ----------------------------------------------------------------------
    trainable = [parameter for parameter in scorer.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = build_scheduler(optimizer, config, total_steps)
    deepspeed = getattr(accelerator.state, "deepspeed_plugin", None)
    if deepspeed is not None and deepspeed.deepspeed_config.get("train_micro_batch_size_per_gpu") in (None, "auto"):
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size  # no DataLoader to infer it
    scorer.train()
    prepared, optimizer = accelerator.prepare(scorer, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    loss = loss.to(device)

    # ---- reference log-probs ----------------------------------------------------------------------------------
    reference_seconds = 0.0
    cache_path = None
    cache_hit = False
    if needs_reference and config.precompute_ref:
        t0 = time.perf_counter()
        key = cache_key(config.ref_model or config.model, config.data, layout, config.max_length,
                        config.max_prompt_length, str(dtype).replace("torch.", ""))
        cache_path = _reference_cache_path(config, key)
        loaded = [load_cache(cache_path, key, len(examples)) if main else None]
        if accelerator.num_processes > 1:
            torch.distributed.broadcast_object_list(loaded, src=0)
        reference = loaded[0]
        cache_hit = reference is not None
        if reference is None:
            ref_scorer = prepared  # before the first step (and before any resume) it is the initial policy
            if config.ref_model is not None:
                ref_scorer = SequenceScorer(_load_model(config.ref_model, dtype, replace(config, lora_r=0)),
                                            share_prompt=config.share_prompt).to(device)
            done = [0]

            def advance(count: int) -> None:
                done[0] += count
                if progress is not None and main:
                    progress("reference", done[0], math.ceil(len(examples) / accelerator.num_processes), {})

            module = getattr(ref_scorer, "module", ref_scorer)
            ref_scorer.eval()
            reference = precompute(ref_scorer, examples, max(1, config.batch_size * 2), pad_id, device,
                                   process_index=accelerator.process_index, num_processes=accelerator.num_processes,
                                   autocast=accelerator.autocast, full_rows=not module.uses_shared_prompt(),
                                   progress=advance)
            prepared.train()
            del ref_scorer, module
            if main:
                save_cache(cache_path, key, reference)
        reference_seconds = time.perf_counter() - t0
    elif needs_reference:
        if config.ref_model is not None:
            reference_scorer = SequenceScorer(_load_model(config.ref_model, dtype, replace(config, lora_r=0)),
                                              share_prompt=config.share_prompt).to(device).eval()
            reference_scorer.requires_grad_(False)
        elif config.lora_r > 0:
            reference_scorer = prepared  # the same model with its adapter disabled is the initial policy
            reference_context = model.disable_adapter

    start_step = 0
    if checks.resume_from is not None:
        state = load_checkpoint(accelerator, checks.resume_from[1])
        start_step = int(state["step"])
    if config.trackers():
        accelerator.init_trackers("prefcli", config={k: v for k, v in config.to_dict().items()
                                                     if isinstance(v, (int, float, str, bool))})
    writer = MetricsWriter(output / "metrics.jsonl", start_step if checks.resume_from else None) if main else None

    runner = StepRunner(loss, layout, examples, prepared, pad_id, device, reference=reference,
                        reference_scorer=reference_scorer, reference_context=reference_context,
                        autocast=accelerator.autocast)

    def trainer_state(step: int) -> dict:
        return {"step": step, "micro_step": step * config.grad_accum,
                "epoch": step * config.grad_accum / micro_per_epoch, "total_steps": total_steps,
                "num_processes": accelerator.num_processes}

    def checkpoint(step: int) -> Path:
        return save_checkpoint(accelerator, output, step, trainer_state(step), config.keep_checkpoints)

    history: list[dict] = []
    train_started = time.perf_counter()
    tokens_total = examples_total = 0
    last: dict = {}
    step = start_step
    try:
        for step in range(start_step, total_steps):
            step_started = time.perf_counter()
            sums: dict[str, float] = {}
            tokens = examples_seen = 0
            for micro in range(config.grad_accum):
                micro_step = step * config.grad_accum + micro
                generator = torch.Generator()  # CPU: the same draws on every device (see losses.sampling)
                generator.manual_seed(_micro_seed(config.seed, micro_step, accelerator.process_index))
                with accelerator.accumulate(prepared):
                    result = runner.run(plan.local_batch(micro_step), generator)
                    loss_value = result.loss.detach().float().item()
                    sums["loss"] = sums.get("loss", 0.0) + loss_value
                    for name, value in result.metrics.items():
                        sums[name] = sums.get(name, 0.0) + value
                    tokens += result.tokens
                    examples_seen += result.examples
                    accelerator.backward(result.loss)  # every process, even on NaN: DDP must not hang
                    if micro < config.grad_accum - 1:
                        continue
                    # the end of an optimizer step: agree on the metrics (and on a non-finite loss) everywhere
                    names = sorted(sums)
                    values = torch.tensor([sums[name] / config.grad_accum for name in names]
                                          + [float(tokens), float(examples_seen)], dtype=torch.float64,
                                          device=device)
                    values = accelerator.reduce(values, reduction="mean")
                    metrics = dict(zip(names, values[:-2].tolist()))
                    tokens_step = round(values[-2].item() * accelerator.num_processes)
                    examples_step = round(values[-1].item() * accelerator.num_processes)
                    if not math.isfinite(metrics["loss"]):
                        raise _diverged(accelerator, checkpoint, step, f"loss is {metrics['loss']}")
                    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
                    grad_norm = accelerator.clip_grad_norm_(prepared.parameters(), max_norm)
                    grad_norm = float(grad_norm) if grad_norm is not None else float("nan")
                    if accelerator.distributed_type.name != "DEEPSPEED" and not math.isfinite(grad_norm):
                        raise _diverged(accelerator, checkpoint, step, f"gradient norm is {grad_norm}")
                    lr = scheduler.get_last_lr()[0]
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
            elapsed = time.perf_counter() - step_started
            tokens_total += tokens_step
            examples_total += examples_step
            done = step + 1
            record = {"step": done, "epoch": round(done * config.grad_accum / micro_per_epoch, 6), **metrics,
                      "lr": lr, "grad_norm": grad_norm, "step_seconds": elapsed, "tokens_per_s": tokens_step / elapsed,
                      "examples_per_s": examples_step / elapsed}
            last = record
            history.append({"step": done, "loss": metrics["loss"]})
            if done % config.log_every == 0 or done == total_steps:
                if writer is not None:
                    writer.write(record)
                if config.trackers():
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
            if progress is not None and main:
                progress("train", done, total_steps, record)
            if config.save_every and done % config.save_every == 0:
                checkpoint(done)
        step = total_steps
    finally:
        if writer is not None:
            writer.close()
    train_seconds = time.perf_counter() - train_started

    # ---- final model --------------------------------------------------------------------------------------------
    accelerator.wait_for_everyone()
    final_model = _save_final(accelerator, prepared, tokenizer, output, config)
    if config.trackers():
        accelerator.end_training()
    steps_run = total_steps - start_step
    latest = latest_checkpoint(output)
    return {
        "output": str(output), "final_model": str(final_model), "loss": config.loss, "layout": layout,
        "steps": total_steps, "steps_run": steps_run, "resumed_from": start_step if checks.resume_from else None,
        "epochs": round(total_steps * config.grad_accum / micro_per_epoch, 4),
        "examples": len(examples), "records": len(records.records), "processes": accelerator.num_processes,
        "final_loss": last.get("loss"), "final_accuracy": last.get("rewards/accuracy"),
        "final_margin": last.get("rewards/margin"),
        "train_seconds": train_seconds, "reference_seconds": reference_seconds,
        "total_seconds": time.perf_counter() - started,
        "examples_per_s": examples_total / train_seconds if steps_run else 0.0,
        "tokens_per_s": tokens_total / train_seconds if steps_run else 0.0,
        "reference_cache": str(cache_path) if cache_path else None, "reference_cache_hit": cache_hit,
        "reference": _describe_reference(needs_reference, config, cache_hit, reference_seconds),
        "latest_checkpoint": str(latest[1]) if latest else None, "history": history,
        **truncation.as_dict(),
    }


def _describe_reference(needs_reference: bool, config: TrainConfig, cache_hit: bool, seconds: float) -> str:
    if not needs_reference:
        return "none (reference-free loss)"
    if not config.precompute_ref:
        return "computed every step"
    return f"{'loaded from cache' if cache_hit else 'precomputed'} ({seconds:.1f} s)"


def _diverged(accelerator, checkpoint, step: int, what: str) -> TrainingDiverged:
    """Save the state after ``step`` good steps and build the error naming the failing step."""
    path = checkpoint(step)
    return TrainingDiverged(f"{what} at step {step + 1}; training stopped, the last good state (after step "
                            f"{step}) is in {path} (lower --lr or check the data, then --resume)")


def _save_final(accelerator, prepared, tokenizer, output: Path, config: TrainConfig) -> Path:
    """``save_pretrained`` the policy (LoRA: the adapter in OUTPUT/adapter, merged weights in OUTPUT) and the
    tokenizer, via a temporary directory so OUTPUT never holds a half-written model."""
    from prefcli.data.atomic import publish_into, staging_dir

    scorer = accelerator.unwrap_model(prepared)
    model = scorer.model
    state_dict = accelerator.get_state_dict(prepared)
    if accelerator.is_main_process:
        tmp = staging_dir(output / "final")
        if config.lora_r > 0:
            model.save_pretrained(tmp / "adapter")
            tokenizer.save_pretrained(tmp / "adapter")
            model = model.merge_and_unload()
            model.save_pretrained(tmp)
        else:
            prefix = "model."
            weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
            model.save_pretrained(tmp, state_dict=weights)
        tokenizer.save_pretrained(tmp)
        publish_into(tmp, output)
    accelerator.wait_for_everyone()
    return output
