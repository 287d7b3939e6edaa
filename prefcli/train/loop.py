"""The training recipe, on accelerate: the same code runs as ``prefcli train``, under ``torchrun`` and under
``accelerate launch`` (DDP, FSDP, DeepSpeed), on CPU or GPU.

``train(config)`` reads as the recipe it runs (torchtune's recipe shape):

1. ``preflight``: every check that can fail on user input, before any model is loaded;
2. ``setup_run``: tokenizer and examples, the batch plan, the policy, optimizer, schedule, accelerate;
3. ``setup_reference``: one :class:`~prefcli.train.reference.Reference` whatever its mode;
4. resume from the newest complete checkpoint, if asked;
5. ``run_steps``: per optimizer step, the micro-steps (forward, backward), then one optimizer step (nanoGPT's
   shape), with the metrics brought to the host once per optimizer step;
6. the final model, then the summary dict. It never prints (``progress`` is called with what to show).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.errors import ConfigError, PrefcliError
from prefcli.progress import Progress  # phases: "read" (MB), "tokenize" (examples), "reference" (examples), "train"
from prefcli.train.accelerate_compat import reset_accelerate_state
from prefcli.train.checkpoint import load_checkpoint, save_checkpoint
from prefcli.train.config import TrainConfig, dump_config
from prefcli.train.data import UNPAIRED, build_examples
from prefcli.train.preflight import Preflight, preflight
from prefcli.train.summary import process_age, summarize
from prefcli.train.token_cache import cache_root


class TrainingDiverged(PrefcliError):
    """The loss or gradient norm became NaN/inf; the last good state was saved."""


def train(config: TrainConfig, progress: Progress | None = None, part=None) -> dict:
    """Train a policy as ``config`` says; returns a summary (steps, losses, throughput, paths, counts). ``part``
    (a :class:`~prefcli.train.setup.RunPart`) makes the run one part of a longer one (online segments)."""
    started = time.perf_counter()
    startup_from = started - process_age()
    checks = preflight(config, progress if _is_main_process() else None)
    try:
        run = setup_run(config, checks, part, progress)
        reference, cache = setup_reference(run, checks, progress)
        start_step = 0
        if checks.resume_from is not None:
            start_step = int(load_checkpoint(run.accelerator, checks.resume_from[1])["step"])
        elif part is not None and part.init_optimizer:
            from prefcli.train.setup import load_optimizer_state

            load_optimizer_state(run.optimizer, part.init_optimizer)
        startup_seconds = time.perf_counter() - startup_from - (cache.seconds if cache else 0.0)
        stats = run_steps(run, reference, start_step, resumed=checks.resume_from is not None, progress=progress)
        run.accelerator.wait_for_everyone()
        save_final(run)
        if config.trackers():
            run.accelerator.end_training()
        return summarize(run, checks, stats, cache, startup_seconds=startup_seconds,
                         total_seconds=time.perf_counter() - started)
    finally:
        reset_accelerate_state()


# ---- 2. setup -------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What a run is built from (the recipe's state)."""

    config: TrainConfig
    output: Path
    accelerator: object
    dtype: object
    tokenizer: object
    pad_id: int
    examples: list
    truncation: object
    layout: str
    plan: object
    total_steps: int
    model: object         # the transformers / peft model inside the scorer
    prepared: object      # the SequenceScorer as accelerate wrapped it
    optimizer: object
    scheduler: object
    loss: object
    data_checksum: str
    part: object = None   # RunPart: one part of a longer run

    @property
    def micro_per_epoch(self) -> int:
        return self.plan.micro_batches_per_epoch

    def trainer_state(self, step: int) -> dict:
        return {"step": step, "micro_step": step * self.config.grad_accum,
                "epoch": step * self.config.grad_accum / self.micro_per_epoch, "total_steps": self.total_steps,
                "num_processes": self.accelerator.num_processes, "data_checksum": self.data_checksum}

    def checkpoint(self, step: int) -> Path:
        return save_checkpoint(self.accelerator, self.output, step, self.trainer_state(step),
                               self.config.keep_checkpoints)


def _is_main_process() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def setup_run(config: TrainConfig, checks: Preflight, part=None, progress: Progress | None = None) -> Run:
    import torch
    from transformers import AutoTokenizer

    from prefcli.data.atomic import atomic_open
    from prefcli.train.logps import SequenceScorer
    from prefcli.train.sampler import BatchPlan
    from prefcli.train.setup import build_accelerator, build_optimizer, build_policy, build_scheduler, resolve_dtype
    from prefcli.train.tokenize import ChatEncoder

    output = Path(config.output)
    dtype = resolve_dtype(config.dtype)
    accelerator = build_accelerator(config, dtype)

    tokenizer = AutoTokenizer.from_pretrained(config.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoder = ChatEncoder(tokenizer, config.max_length, config.max_prompt_length)
    layout = checks.records.layout
    plan = BatchPlan(checks.records.labels(), config.batch_size, accelerator.num_processes,
                     accelerator.process_index, config.seed, unpaired=layout == UNPAIRED)
    total_steps = config.max_steps or max(1, int(config.epochs * plan.micro_batches_per_epoch // config.grad_accum))
    with accelerator.main_process_first():  # the main process tokenizes into the cache, the others read it
        examples, truncation = build_examples(
            checks.records, encoder, plan.global_indices(total_steps * config.grad_accum),
            cache_dir=cache_root(config.data, config.output, config.ref_cache_dir),
            progress=progress if accelerator.is_main_process else None)

    if accelerator.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
        with atomic_open(output / "config.yaml") as handle:
            handle.write(dump_config(config))

    torch.manual_seed(config.seed)
    model = build_policy(config, dtype)
    sharded = accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")
    if sharded and config.ref_model is not None:
        raise ConfigError("--ref-model is not supported with FSDP or DeepSpeed; the reference is then the initial "
                          "policy, with its log-probs precomputed")
    # sharded engines need every process to make the same decoder calls: one call per pass, no length groups
    scorer = SequenceScorer(model, share_prompt=config.share_prompt, chunk_rows=config.logits_chunk_size,
                            group_by_length=not sharded).to(accelerator.device)
    optimizer = build_optimizer(scorer.parameters(), config)
    scheduler = build_scheduler(optimizer, config, total_steps, part)
    deepspeed = getattr(accelerator.state, "deepspeed_plugin", None)
    if deepspeed is not None and deepspeed.deepspeed_config.get("train_micro_batch_size_per_gpu") in (None, "auto"):
        deepspeed.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size  # no DataLoader to infer it
    scorer.train()
    prepared, optimizer = accelerator.prepare(scorer, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if config.trackers():
        accelerator.init_trackers("prefcli", config={k: v for k, v in config.to_dict().items()
                                                     if isinstance(v, (int, float, str, bool))})
    return Run(config, output, accelerator, dtype, tokenizer, pad_id, examples, truncation, layout, plan,
               total_steps, model, prepared, optimizer, scheduler, checks.loss.to(accelerator.device),
               checks.data_checksum, part)


# ---- 3. the reference -------------------------------------------------------------------------------------------
def setup_reference(run: Run, checks: Preflight, progress: Progress | None):
    """The run's :class:`Reference` (None for reference-free losses) and, in cached mode, the cache's report."""
    import copy

    from prefcli.train.logps import SequenceScorer
    from prefcli.train.reference import Reference, Scoring, fill_table
    from prefcli.train.reference_cache import ReferenceCache, cache_key
    from prefcli.train.setup import load_model

    config, accelerator = run.config, run.accelerator
    if getattr(run.loss, "reference_free", False):
        return None, None
    common = {"examples": run.examples, "pad_id": run.pad_id, "device": accelerator.device,
              "autocast": accelerator.autocast}

    def separate_model():
        return SequenceScorer(load_model(config.ref_model, run.dtype, lora=False),
                              share_prompt=config.share_prompt).to(accelerator.device).eval().requires_grad_(False)

    if not config.precompute_ref:
        if config.ref_model is not None:
            return Reference("model", scorer=separate_model(), **common), None
        if config.lora_r > 0:  # the same model with its adapter disabled is the initial policy
            return Reference("adapter off", scorer=run.prepared, context=run.model.disable_adapter, **common), None
        frozen = copy.deepcopy(accelerator.unwrap_model(run.prepared)).eval().requires_grad_(False)
        return Reference("copy", scorer=frozen, **common), None

    key = cache_key(config.ref_model or config.model, run.data_checksum, run.layout, config.max_length,
                    config.max_prompt_length, str(run.dtype).replace("torch.", ""))
    cache = ReferenceCache(cache_root(config.data, config.output, config.ref_cache_dir, fallback="ref-cache"), key)
    start_step = checks.resume_from[0] if checks.resume_from is not None else 0
    if config.ref_rows == "all":
        needed = list(range(len(run.examples)))
    else:
        needed = run.plan.examples_reached(start_step * config.grad_accum, run.total_steps * config.grad_accum)
    # before the first step (and before any resume) the policy is the initial policy: it is the reference
    scoring = Scoring(make_scorer=separate_model if config.ref_model is not None else lambda: run.prepared,
                      examples_per_batch=max(1, config.batch_size * 2), pad_id=run.pad_id, device=accelerator.device,
                      autocast=accelerator.autocast, processes=accelerator)
    on_progress = None
    if progress is not None:
        def on_progress(done: int, total: int) -> None:
            progress("reference", done, total, {})

    table, report = fill_table(cache, run.examples, needed, scoring, on_progress)
    return Reference("cached", table=table, **common), report


# ---- 5. the optimizer steps ---------------------------------------------------------------------------------
@dataclass
class StepStats:
    history: list = field(default_factory=list)
    last: dict = field(default_factory=dict)
    start_step: int = 0
    tokens: int = 0
    examples: int = 0
    seconds: float = 0.0


def _micro_seed(seed: int, micro_step: int, process_index: int) -> int:
    return (seed * 1_000_003 + micro_step * 1_009 + process_index) % (2**63 - 1)


def run_steps(run: Run, reference, start_step: int, resumed: bool, progress: Progress | None) -> StepStats:
    import torch

    from prefcli.train.metrics import MetricsWriter
    from prefcli.train.step import StepRunner

    config, accelerator = run.config, run.accelerator
    runner = StepRunner(run.loss, run.layout, run.examples, run.prepared, run.pad_id, accelerator.device,
                        reference=reference, autocast=accelerator.autocast)
    writer = MetricsWriter(run.output / "metrics.jsonl", start_step if resumed else None) \
        if accelerator.is_main_process else None
    stats = StepStats(start_step=start_step)
    started = time.perf_counter()
    try:
        for step in range(start_step, run.total_steps):
            step_started = time.perf_counter()
            sums: dict[str, torch.Tensor] = {}
            tokens = examples = 0
            for micro in range(config.grad_accum):
                micro_step = step * config.grad_accum + micro
                generator = torch.Generator()  # CPU: the same draws on every device (see losses.sampling)
                generator.manual_seed(_micro_seed(config.seed, micro_step, accelerator.process_index))
                with accelerator.accumulate(run.prepared):
                    result = runner.run(run.plan.local_batch(micro_step), generator)
                    accelerator.backward(result.loss)  # every process, even on NaN: DDP must not hang
                for name, value in (("loss", result.loss), *result.metrics.items()):
                    value = value.detach().double()
                    sums[name] = sums[name] + value if name in sums else value
                tokens += result.tokens
                examples += result.examples
            metrics, tokens, examples = optimizer_step(run, step, sums, tokens, examples)
            elapsed = time.perf_counter() - step_started
            stats.tokens += tokens
            stats.examples += examples
            done = step + 1
            record = {"step": done, "epoch": round(done * config.grad_accum / run.micro_per_epoch, 6), **metrics,
                      "step_seconds": elapsed, "tokens_per_s": tokens / elapsed, "examples_per_s": examples / elapsed}
            stats.last = record
            stats.history.append({"step": done, "loss": record["loss"]})
            if done % config.log_every == 0 or done == run.total_steps:
                if writer is not None:
                    writer.write(record)
                if config.trackers():
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=done)
            if progress is not None and accelerator.is_main_process:
                progress("train", done, run.total_steps, record)
            if (config.save_every and done % config.save_every == 0) or \
                    (run.part is not None and done == run.total_steps):
                run.checkpoint(done)
    finally:
        if writer is not None:
            writer.close()
    stats.seconds = time.perf_counter() - started
    return stats


def optimizer_step(run: Run, step: int, sums: dict, tokens: int, examples: int) -> tuple[dict, int, int]:
    """Agree on the step's metrics everywhere (one host copy), stop on a non-finite loss or gradient norm, clip,
    step the optimizer and the schedule. Returns the metrics and the step's token and example counts (all
    processes)."""
    import torch

    config, accelerator = run.config, run.accelerator
    names = sorted(sums)
    values = torch.stack([sums[name] / config.grad_accum for name in names]
                         + [torch.tensor(float(tokens), dtype=torch.float64, device=sums["loss"].device),
                            torch.tensor(float(examples), dtype=torch.float64, device=sums["loss"].device)])
    values = accelerator.reduce(values, reduction="mean")
    max_norm = config.max_grad_norm if config.max_grad_norm > 0 else float("inf")
    grad_norm = accelerator.clip_grad_norm_(run.prepared.parameters(), max_norm)
    grad_norm = torch.tensor(float("nan")) if grad_norm is None else grad_norm
    host = torch.cat([values, grad_norm.detach().double().reshape(1).to(values.device)]).tolist()
    metrics = dict(zip(names, host[:-3]))
    tokens_step = round(host[-3] * accelerator.num_processes)
    examples_step = round(host[-2] * accelerator.num_processes)
    grad_norm = host[-1]
    if not math.isfinite(metrics["loss"]):
        raise _diverged(run, step, f"loss is {metrics['loss']}")
    if accelerator.distributed_type.name != "DEEPSPEED" and not math.isfinite(grad_norm):
        raise _diverged(run, step, f"gradient norm is {grad_norm}")
    lr = run.scheduler.get_last_lr()[0]
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {**metrics, "lr": lr, "grad_norm": grad_norm}, tokens_step, examples_step


def _diverged(run: Run, step: int, what: str) -> TrainingDiverged:
    """Save the state after ``step`` good steps and build the error naming the failing step."""
    path = run.checkpoint(step)
    return TrainingDiverged(f"{what} at step {step + 1}; training stopped, the last good state (after step "
                            f"{step}) is in {path} (lower --lr or check the data, then --resume)")


# ---- 6. the final model -------------------------------------------------------------------------------------
def save_final(run: Run) -> Path:
    """``save_pretrained`` the policy (LoRA: the adapter in OUTPUT/adapter, merged weights in OUTPUT) and the
    tokenizer, via a temporary directory so OUTPUT never holds a half-written model."""
    from prefcli.data.atomic import publish_into, staging_dir

    accelerator, output = run.accelerator, run.output
    model = accelerator.unwrap_model(run.prepared).model
    state_dict = accelerator.get_state_dict(run.prepared)
    if accelerator.is_main_process:
        tmp = staging_dir(output / "final")
        if run.config.lora_r > 0:
            model.save_pretrained(tmp / "adapter")
            run.tokenizer.save_pretrained(tmp / "adapter")
            model = model.merge_and_unload()
            model.save_pretrained(tmp)
        else:
            prefix = "model."
            weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
            model.save_pretrained(tmp, state_dict=weights)
        run.tokenizer.save_pretrained(tmp)
        publish_into(tmp, output)
    accelerator.wait_for_everyone()
    return output
