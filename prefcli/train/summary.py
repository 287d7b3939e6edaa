"""The summary a training run returns (and ``prefcli train`` prints as its closing table)."""

from __future__ import annotations

import os

from prefcli.train.checkpoint import latest_checkpoint


def process_age() -> float:
    """Seconds since this process started (Linux: from /proc; elsewhere 0, so start-up counts from ``train``)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            started_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def describe_reference(run, cache) -> str:
    if getattr(run.loss, "reference_free", False):
        return "none (reference-free loss)"
    if cache is None:
        return "computed every step"
    if cache.hit:
        return f"loaded from cache ({cache.loaded} examples, {cache.seconds:.1f} s)"
    reused = f", {cache.loaded} from cache" if cache.loaded else ""
    return f"precomputed {cache.scored} of {len(run.examples)} examples{reused} ({cache.seconds:.1f} s)"


def summarize(run, checks, stats, cache, *, startup_seconds: float, total_seconds: float) -> dict:
    config = run.config
    steps_run = run.total_steps - stats.start_step
    latest = latest_checkpoint(run.output)
    last = stats.last
    return {
        "output": str(run.output), "final_model": str(run.output), "loss": config.loss, "layout": run.layout,
        "steps": run.total_steps, "steps_run": steps_run,
        "resumed_from": stats.start_step if checks.resume_from else None,
        "epochs": round(run.total_steps * config.grad_accum / run.micro_per_epoch, 4),
        "examples": len(run.examples), "records": len(checks.records.records),
        "processes": run.accelerator.num_processes,
        "final_loss": last.get("loss"), "final_accuracy": last.get("rewards/accuracy"),
        "final_margin": last.get("rewards/margin"),
        "train_seconds": stats.seconds, "startup_seconds": startup_seconds,
        "reference_seconds": cache.seconds if cache else 0.0, "total_seconds": total_seconds,
        "examples_per_s": stats.examples / stats.seconds if steps_run else 0.0,
        "tokens_per_s": stats.tokens / stats.seconds if steps_run else 0.0,
        "reference_cache": cache.path if cache else None, "reference_cache_hit": bool(cache and cache.hit),
        "reference_scored": cache.scored if cache else 0, "reference_loaded": cache.loaded if cache else 0,
        "reference": describe_reference(run, cache),
        "latest_checkpoint": str(latest[1]) if latest else None, "history": stats.history,
        **run.truncation.as_dict(),
    }
