"""``prefcli train``: train a policy with any registered preference loss (flags → TrainConfig → library)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from prefcli.cli.common import console, err_console, progress_bar, summary_table

EXAMPLE = "prefcli train --model ./sft --data nectar.jsonl --loss mcpo --negatives 4 --output runs/mcpo"


def _progress_callback(bar):
    tasks: dict[str, int] = {}

    def update(phase: str, done: int, total: int, metrics: dict) -> None:
        if phase not in tasks:
            label = "reference log-probs" if phase == "reference" else "train"
            tasks[phase] = bar.add_task(label, total=total, status="")
        status = ""
        if phase == "train":
            status = f"loss {metrics['loss']:.4f} · {metrics['examples_per_s']:.1f} ex/s"

        bar.update(tasks[phase], completed=done, total=total, status=status)

    return update


def register(app: typer.Typer) -> None:
    @app.command("train", help=f"Train a policy on preference records with any loss.\n\nExample: {EXAMPLE}")
    def train_command(
        model: str | None = typer.Option(None, "--model", help="Policy to start from: HF directory or hub id."),
        ref_model: str | None = typer.Option(None, "--ref-model",
                                                help="Reference model (default: frozen copy of the initial policy)."),
        data: Path | None = typer.Option(None, "--data", help="Records from `prefcli prepare` (JSONL)."),
        output: Path | None = typer.Option(None, "--output", help="Run directory (model, checkpoints, metrics)."),
        config_file: Path | None = typer.Option(None, "--config",
                                                   help="YAML with any of these settings; flags override it."),
        loss: str | None = typer.Option(None, "--loss", help="Loss name (see `prefcli losses`). (default: dpo)"),
        beta: float | None = typer.Option(None, "--beta", help="Loss beta (the loss's default when unset)."),
        label_smoothing: float | None = typer.Option(None, "--label-smoothing", help="cDPO / robust / exo ε."),
        tau: float | None = typer.Option(None, "--tau", help="Loss tau, where the loss has one."),
        gamma: float | None = typer.Option(None, "--gamma", help="SimPO margin γ, where the loss has one."),
        alpha: float | None = typer.Option(None, "--alpha", help="NLL weight α (cpo, rpo), where it applies."),
        objective: str | None = typer.Option(None, "--objective", help="AOT objective: logistic|hinge2|ls."),
        sort: str | None = typer.Option(None, "--sort", help="AOT sort: hard|soft."),
        temperature: float | None = typer.Option(None, "--temperature", help="AOT soft-sort temperature."),
        global_sort: bool | None = typer.Option(None, "--global-sort/--local-sort",
                                                   help="AOT: sort over the batch of all processes."),
        negatives: int | None = typer.Option(None, "--negatives", help="Negatives K drawn per record."),
        sampler: str | None = typer.Option(None, "--sampler", help="MC-PO sampler: mcmc|max|min|random."),
        loss_arg: list[str] | None = typer.Option(None, "--loss-arg",
                                                     help="Other loss hyper-parameter, KEY=VALUE (repeatable)."),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Records per process per micro-step."),
        grad_accum: int | None = typer.Option(None, "--grad-accum", help="Micro-steps per optimizer step."),
        lr: float | None = typer.Option(None, "--lr", help="Peak learning rate. (default: 1e-6)"),
        scheduler: str | None = typer.Option(None, "--scheduler", help="cosine|linear|constant."),
        warmup: float | None = typer.Option(None, "--warmup", help="Warmup: fraction (<1) or steps (>=1)."),
        weight_decay: float | None = typer.Option(None, "--weight-decay", help="AdamW weight decay."),
        max_grad_norm: float | None = typer.Option(None, "--max-grad-norm", help="Clip norm (0: no clipping)."),
        epochs: float | None = typer.Option(None, "--epochs", help="Passes over the data. (default: 1)"),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Optimizer steps (overrides --epochs)."),
        max_length: int | None = typer.Option(None, "--max-length", help="Prompt + completion tokens."),
        max_prompt_length: int | None = typer.Option(
            None, "--max-prompt-length", help="Prompt tokens kept, from the end (default: half of --max-length)."),
        seed: int | None = typer.Option(None, "--seed", help="Seed of data order, sampling and init."),
        save_every: int | None = typer.Option(None, "--save-every", help="Checkpoint every N steps (0: never)."),
        keep_checkpoints: int | None = typer.Option(None, "--keep-checkpoints",
                                                       help="Newest checkpoints kept (0: all). (default: 2)"),
        resume: bool | None = typer.Option(None, "--resume/--no-resume",
                                              help="Continue from the newest complete checkpoint in --output."),
        dtype: str | None = typer.Option(None, "--dtype", help="auto|float32|bfloat16|float16."),
        gradient_checkpointing: bool | None = typer.Option(None, "--gradient-checkpointing/"
                                                              "--no-gradient-checkpointing",
                                                              help="Recompute activations to save memory."),
        lora_r: int | None = typer.Option(None, "--lora-r", help="Train a LoRA adapter of this rank (peft)."),
        lora_alpha: float | None = typer.Option(None, "--lora-alpha", help="LoRA alpha (default: 2 × r)."),
        lora_dropout: float | None = typer.Option(None, "--lora-dropout", help="LoRA dropout. (default: 0)"),
        precompute_ref: bool | None = typer.Option(None, "--precompute-ref/--no-precompute-ref",
                                                      help="Compute reference log-probs once and cache them."),
        ref_cache_dir: Path | None = typer.Option(None, "--ref-cache-dir",
                                                  help="Where reference log-probs are cached "
                                                       "(default: <data dir>/.prefcli-cache)."),
        ref_rows: str | None = typer.Option(None, "--ref-rows",
                                            help="Precompute reference log-probs for the examples the run reaches "
                                                 "(reached) or for every example (all). (default: reached)"),
        share_prompt: bool | None = typer.Option(None, "--share-prompt/--no-share-prompt",
                                                    help="Encode each prompt once per step (KV cache)."),
        logits_chunk_size: int | None = typer.Option(None, "--logits-chunk-size",
                                                     help="Completion tokens per log-softmax chunk."),
        log_every: int | None = typer.Option(None, "--log-every", help="Metrics line every N steps."),
        report_to: str | None = typer.Option(None, "--report-to", help="none|tensorboard|wandb."),
        online: bool | None = typer.Option(None, "--online", help="Batched online loop (OnMC-PO / online DPO): "
                                              "--data holds prompts; candidates are regenerated per segment."),
        segments: int | None = typer.Option(None, "--segments", help="Online: training segments (default 3)."),
        judge: str | None = typer.Option(None, "--judge", help="Online: judge URL, hf:PATH or rule:length."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="Online: judge server's model name."),
        judge_key_env: str | None = typer.Option(None, "--judge-key-env", help="Online: env var of the judge key."),
        max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", help="Online: completion length."),
        temperatures: str | None = typer.Option(None, "--temperatures", help="Online: e.g. 0.6,0.8,1.0."),
        per_temperature: int | None = typer.Option(None, "--per-temperature",
                                                      help="Online: completions per temperature (default 2)."),
        both_orders: bool | None = typer.Option(None, "--both-orders/--one-order",
                                                   help="Online: judge each comparison in both orders."),
    ) -> None:
        flags = dict(locals())  # first statement: exactly the options
        flags.pop("config_file")
        from prefcli.cli.online import ONLINE_FLAGS, run_if_online

        online_flags = {name: flags.pop(name) for name in ONLINE_FLAGS}
        flags["loss_args"] = _parse_loss_args(flags.pop("loss_arg"))
        from prefcli.train import load_config, train

        overrides = {name: str(value) if isinstance(value, Path) else value
                     for name, value in flags.items() if value is not None}
        config = load_config(config_file, overrides)
        if run_if_online(config, online_flags):
            return
        if os.environ.get("RANK", "0") != "0":  # torchrun / accelerate launch: only the main process reports
            train(config)
            return
        with progress_bar() as bar:
            summary = train(config, progress=_progress_callback(bar))
        _print_summary(summary)


def _parse_loss_args(items: list[str] | None) -> dict | None:
    """``["desirable_weight=1.3", ...]`` → ``{"desirable_weight": 1.3}`` (values read as YAML scalars)."""
    import yaml

    from prefcli.errors import ConfigError

    if not items:
        return None
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--loss-arg: expected KEY=VALUE, got {item!r}")
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return parsed


def _print_summary(summary: dict) -> None:
    truncated = summary["truncated_examples"]
    if truncated:
        err_console.print(f"[yellow]note:[/yellow] {truncated} of {summary['examples']} examples were truncated "
                          f"({summary['truncated_prompts']} prompts cut from the left, "
                          f"{summary['truncated_completions']} completions cut at the end)")
    rows = [
        ("loss", summary["loss"]),
        ("steps", f"{summary['steps_run']} run / {summary['steps']}"
                  + (f" (resumed at {summary['resumed_from']})" if summary["resumed_from"] is not None else "")),
        ("epochs", summary["epochs"]),
        ("processes", summary["processes"]),
        ("final loss", summary["final_loss"] if summary["final_loss"] is not None else "-"),
        ("final reward accuracy", summary["final_accuracy"] if summary["final_accuracy"] is not None else "-"),
        ("examples / s", summary["examples_per_s"]),
        ("tokens / s", summary["tokens_per_s"]),
        ("start-up (s)", summary["startup_seconds"]),
        ("train time (s)", summary["train_seconds"]),
        ("reference log-probs", summary["reference"]),
        ("truncated examples", truncated),
        ("model", summary["final_model"]),
    ]
    console.print(summary_table("prefcli train", rows))
