"""The batched online loop (MC-PO paper, Sec. 3.2 and App. B, "batched online setup"; Rosset et al., 2024).

The training steps are split into ``segments`` equal parts, and the prompts into as many equal, contiguous chunks.
Before segment ``k``, the policy as it is at that point (segment 1: the initial model; then segment ``k - 1``'s
final weights) samples completions for chunk ``k``, the judge ranks them (``prefcli.online.candidates``), and the
segment trains on those records with the chosen loss — ``mcpo`` for OnMC-PO, ``dpo`` on the records' random
``rejected`` for online DPO — starting from the previous segment's weights. The reference model stays the initial
policy throughout. Each segment is a ``prefcli.train.train`` job of its own, but by default they form one run, as
the MC-PO paper describes it (App. B.1): one warmup + decay schedule over all segments' steps, and the optimizer
state carried from one segment to the next. ``restart_schedule: true`` gives each segment a fresh optimizer and
schedule instead, as in iterative / batched online DPO.

Layout of OUTPUT::

    online-config.yaml           every setting of the run (checked on --resume)
    judgments.sqlite             the durable judgment store (every ranking call of every segment)
    segments/k/completions.json  the sampled completions (reused if the segment is restarted)
    segments/k/data.jsonl        the segment's candidate records (+ .meta.json: model path and fingerprint)
    segments/k/generation.json   sampling and judging time, counts: written last, marks the data as final
    segments/k/model/            the segment's training run: checkpoints/, metrics.jsonl, final weights
    segments/k/DONE              written atomically when the segment's training finished
    metrics.jsonl                every segment's generation line and training steps (global step numbers)
    online.json                  the run's summary; the final model's files are in OUTPUT itself

``resume`` skips finished segments (their data is never regenerated), reuses a segment's data once it is final,
and continues a segment's training from its newest checkpoint with train's own resume.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.data.atomic import atomic_open, publish_into, staging_dir, write_json
from prefcli.data.sidecar import file_checksum
from prefcli.errors import ConfigError
from prefcli.progress import Progress  # phases: "segment K/S: generate|judge|tokenize|reference|train"
from prefcli.settings import RESUMABLE_CHANGES, OnlineSettings, flatten, leaves
from prefcli.train.metrics import read_metrics

DONE = "DONE"
GENERATION = "generation.json"
RUN_CONFIG = "online-config.yaml"

#: Train settings that may change on --resume: those that may change for any training run, except --epochs and
#: --max-steps, which the segment plan depends on.
RESUMABLE_TRAIN = tuple(name for name in RESUMABLE_CHANGES if name not in ("epochs", "max_steps"))
#: Online settings that may change on --resume (where the judge is and how it is called).
RESUMABLE_ONLINE = tuple(leaf.name for leaf in leaves(OnlineSettings) if leaf.spec.resumable)


@dataclass
class SegmentPlan:
    index: int             # 1-based
    prompts: list          # PromptItem
    steps: int
    step_offset: int       # global steps done before this segment
    directory: Path = field(default=Path("."))


def split_evenly(count: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous, nearly equal parts of ``count`` (the first ones take the remainder)."""
    return [count // parts + (1 if index < count % parts else 0) for index in range(parts)]


def total_steps(config, prompts: int) -> int:
    """Optimizer steps of the whole run: ``--max-steps``, or ``--epochs`` passes over the prompts as one
    training job on them would count them (one record per prompt, one process)."""
    if config.max_steps:
        return config.max_steps
    return max(1, int(config.epochs * (prompts // config.batch_size) // config.grad_accum))


def plan_segments(config, items: list) -> list[SegmentPlan]:
    online: OnlineSettings = config.online
    output = Path(config.output)
    total = total_steps(config, len(items))
    if online.segments > len(items):
        raise ConfigError(f"--segments: {online.segments} segments need at least as many prompts; "
                          f"{config.data} has {len(items)}")
    if total < online.segments:
        raise ConfigError(f"--segments: {online.segments} segments need at least one optimizer step each; the "
                          f"run has {total} (raise --max-steps or --epochs)")
    plans, start, offset = [], 0, 0
    for index, (size, steps) in enumerate(zip(split_evenly(len(items), online.segments),
                                              split_evenly(total, online.segments)), 1):
        if size < config.batch_size:
            raise ConfigError(f"--batch-size: segment {index} has {size} prompts, fewer than one batch of "
                              f"{config.batch_size}; use fewer --segments, a smaller --batch-size or more prompts")
        plans.append(SegmentPlan(index, items[start:start + size], steps, offset,
                                 output / "segments" / str(index)))
        start += size
        offset += steps
    return plans


def negatives_needed(config) -> int:
    """The candidates each record must hold for the loss (K for a candidate loss, else 0); K beyond what sampling
    can give is refused before anything is generated."""
    from prefcli.losses import loss_class

    try:
        cls = loss_class(config.loss)
    except ValueError as error:
        raise ConfigError(f"--loss: {error}") from None
    if not cls.needs_candidates:
        return 0
    negatives = config.negatives if config.negatives is not None else cls.defaults().get("negatives", 1)
    sampled = config.online.sampling.completions_per_prompt
    if negatives > sampled - 1:
        raise ConfigError(f"--negatives: {negatives} negatives need at least {negatives + 1} completions per prompt "
                          f"(the winner + K); --temperatures × --per-temperature samples {sampled}")
    return negatives


def run_online(config, *, api_key: str | None = None, progress: Progress | None = None) -> dict:
    """Run (or, with ``config.resume``, continue) the batched online loop; returns a summary dict.

    ``config`` is the ``TrainSettings`` of the run (``data`` = the prompts file, ``output`` = the run directory)
    with its ``online`` group set. Errors a user can cause raise ``PrefcliError`` before anything is written or,
    mid-run, leave every finished segment in place.
    """
    from prefcli.online.prompts import read_prompts
    from prefcli.train.config import check_model_path
    from prefcli.train.preflight import build_loss

    if config.online is None:
        raise ConfigError("--online: the run has no online settings")
    started = time.perf_counter()
    config.validate()
    check_model_path("model", config.model)
    if config.ref_model is not None:
        check_model_path("ref-model", config.ref_model)
    build_loss(config)  # the loss and its hyper-parameters, before any sampling
    min_candidates = negatives_needed(config)
    items, duplicates = read_prompts(config.data)
    plans = plan_segments(config, items)
    output = Path(config.output)
    _check_output(config, output)

    initial_model = config.model
    reference_model = config.ref_model or config.model
    store_path = output / "judgments.sqlite"
    generated, trained = [], []
    metrics: list[dict] = []
    segments: list[dict] = []
    policy = initial_model
    for plan in plans:
        label = f"segment {plan.index}/{len(plans)}"
        done_marker = plan.directory / DONE
        if done_marker.is_file():
            generation, done = _read_json(plan.directory / GENERATION), _read_json(done_marker)
        else:
            data_path = plan.directory / "data.jsonl"
            if (plan.directory / GENERATION).is_file():
                generation = _read_json(plan.directory / GENERATION)
            else:
                generation = _generate_segment(config, plan, policy, data_path, store_path, api_key, label,
                                               min_candidates, progress)
                generated.append(plan.index)
            trained.append(plan.index)
            summary = _train_segment(config, plan, policy, reference_model, data_path, label, progress,
                                     None if config.online.restart_schedule else sum(p.steps for p in plans))
            done = {"segment": plan.index, "steps": plan.steps, "step_offset": plan.step_offset,
                    "policy": str(policy), "final_model": summary["final_model"],
                    "final_loss": summary["final_loss"], "train_seconds": summary["train_seconds"],
                    "reference_seconds": summary["reference_seconds"], "resumed_from": summary["resumed_from"]}
            write_json(done_marker, done)
        metrics += _segment_metrics(plan, generation)
        _write_metrics(output, metrics)
        segments.append({"segment": plan.index, "prompts": len(plan.prompts), "steps": plan.steps,
                         "records": generation["records"], "judgments": generation["judgments"],
                         "refilled": generation.get("refilled", 0),
                         "generation_seconds": generation["generation_seconds"],
                         "judge_seconds": generation["judge_seconds"], "train_seconds": done["train_seconds"],
                         "final_loss": done["final_loss"], "policy": generation["policy"],
                         "policy_checksum": generation["policy_checksum"]})
        policy = str(plan.directory / "model")

    _publish_final_model(Path(policy), output)
    summary = {
        "output": str(output), "final_model": str(output), "loss": config.loss, "segments": segments,
        "prompts": len(items), "repeated_prompts_dropped": duplicates,
        "steps": sum(plan.steps for plan in plans), "generated_now": generated, "trained_now": trained,
        "candidates_refilled": sum(s["refilled"] for s in segments),
        "generation_seconds": sum(s["generation_seconds"] for s in segments),
        "judge_seconds": sum(s["judge_seconds"] for s in segments),
        "train_seconds": sum(s["train_seconds"] for s in segments),
        "total_seconds": time.perf_counter() - started,
        "initial_model": initial_model, "reference_model": reference_model, "store": str(store_path),
    }
    write_json(output / "online.json", summary)
    return summary


def _check_output(config, output: Path) -> None:
    """A new run needs a fresh OUTPUT; ``--resume`` needs this run's settings (except the resumable ones)."""
    import yaml

    saved = output / RUN_CONFIG
    train_settings = {k: v for k, v in config.to_dict().items() if k != "online"}
    settings = {"train": train_settings, "online": config.online.to_dict()}
    if not config.resume:
        if saved.is_file() or (output / "segments").is_dir():
            raise ConfigError(f"--output: {output} already holds an online run; pass --resume to continue it or "
                              "choose another directory")
        with atomic_open(saved) as handle:
            handle.write(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        return
    if not saved.is_file():
        raise ConfigError(f"--resume: no online run in {output} (no {RUN_CONFIG})")
    before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    changed = []
    # a run saved with the flat online mapping of earlier versions compares leaf by leaf all the same
    for allowed, old, new in (
            (RESUMABLE_TRAIN, before.get("train", {}), settings["train"]),
            (RESUMABLE_ONLINE, flatten(OnlineSettings, before.get("online") or {}),
             flatten(OnlineSettings, settings["online"]))):
        changed += [f"{key}: {old[key]!r} -> {new[key]!r}" for key in new
                    if key not in allowed and key in old and old[key] != new[key]]
    if changed:
        raise ConfigError(f"--resume: settings differ from the run in {output} ({', '.join(changed)}); only "
                          f"{', '.join(RESUMABLE_TRAIN + RESUMABLE_ONLINE)} may change on resume")


def _generate_segment(config, plan: SegmentPlan, policy: str, data_path: Path, store_path: Path, api_key,
                      label: str, min_candidates: int, progress) -> dict:
    """Sample, judge and write the segment's records; returns what ``generation.json`` holds."""
    from prefcli.data.seeding import row_hash
    from prefcli.online.candidates import _free_accelerator_memory, generate_candidates, write_candidates

    _free_accelerator_memory()  # the previous segment's model, optimizer and activations
    seed = row_hash(config.seed, "online-generation", plan.index) % (2**31)
    sampling, judging = config.online.sampling, config.online.judging
    on_progress = None
    if progress is not None:
        def on_progress(phase: str, done: int, total: int) -> None:
            progress(f"{label}: {phase}", done, total, {})

    plan.directory.mkdir(parents=True, exist_ok=True)
    result = generate_candidates(policy, plan.prompts, sampling, judging, seed=seed, store_path=store_path,
                                 api_key=api_key, completions_cache=plan.directory / "completions.json",
                                 min_candidates=min_candidates, progress=on_progress)
    _free_accelerator_memory()
    inputs = {}
    if Path(config.data).is_file():
        inputs["prompts"] = file_checksum(config.data)
    write_candidates(data_path, result, inputs=inputs, argv=["prefcli train --online", f"segment {plan.index}"],
                     config={**sampling.to_dict(), **judging.to_dict(), "seed": seed, "model": str(policy),
                             "segment": plan.index, "prompts_file": str(config.data),
                             "store": str(store_path)})
    generation = {
        "segment": plan.index, "policy": str(policy), "policy_checksum": result.model_checksum,
        "prompts": result.prompts, "records": len(result.records), "skipped": result.skipped,
        "refilled": result.refilled, "judgments": result.judgments, "judgments_reused": result.judgments_reused,
        "generation_seconds": round(result.generation_seconds, 3), "judge_seconds": round(result.judge_seconds, 3),
        "completions_reused": result.completions_reused, "seed": seed}
    write_json(plan.directory / GENERATION, generation)
    return generation


def _train_segment(config, plan: SegmentPlan, policy: str, reference_model: str, data_path: Path, label: str,
                   progress, schedule_steps: int | None) -> dict:
    """Train one segment; with ``schedule_steps`` (one run across segments) its schedule is that run's, from the
    segment's offset, and its optimizer starts from the state the previous segment saved after its last step."""
    from prefcli.train import train
    from prefcli.train.checkpoint import latest_checkpoint

    run_dir = plan.directory / "model"
    resume = latest_checkpoint(run_dir) is not None
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # a start without a complete checkpoint: nothing worth keeping
    segment_config = dataclasses.replace(
        config, model=str(policy), ref_model=config.ref_model if plan.index == 1 else reference_model,
        data=str(data_path), output=str(run_dir), max_steps=plan.steps, resume=resume, online=None)
    part = None
    if schedule_steps is not None:
        from prefcli.train.setup import RunPart

        previous = plan.directory.parent / str(plan.index - 1) / "model"
        part = RunPart(schedule_steps, plan.step_offset,
                       init_optimizer=None if plan.index == 1 else str(_last_checkpoint(previous)))
    on_progress = None
    if progress is not None:
        def on_progress(phase: str, done: int, total: int | None = None, metrics: dict | None = None) -> None:
            progress(f"{label}: {phase}", done, total, metrics or {})

    return train(segment_config, progress=on_progress, part=part)


def _last_checkpoint(run_dir: Path) -> Path:
    """The previous segment's final checkpoint (its optimizer state)."""
    from prefcli.train.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir)
    if found is None:
        raise ConfigError(f"{run_dir}: the previous segment saved no optimizer state (a run from before segments "
                          "shared one schedule); set restart_schedule: true to continue it")
    return found[1]


def _read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def _segment_metrics(plan: SegmentPlan, generation: dict) -> list[dict]:
    """A segment's lines of OUTPUT/metrics.jsonl: its generation line, then its training lines with global step
    numbers (read once, when the segment has finished training)."""
    lines = [{"segment": plan.index, "event": "generation", "step": plan.step_offset,
              "generation_seconds": generation["generation_seconds"], "judge_seconds": generation["judge_seconds"],
              "records": generation["records"], "judgments": generation["judgments"],
              "policy": generation["policy"]}]
    metrics_file = plan.directory / "model" / "metrics.jsonl"
    if metrics_file.is_file():
        for record in read_metrics(metrics_file):
            record["segment_step"] = record["step"]
            record["step"] = record["step"] + plan.step_offset
            lines.append({"segment": plan.index, "event": "train", **record})
    return lines


def _write_metrics(output: Path, lines: list[dict]) -> None:
    """OUTPUT/metrics.jsonl from the lines gathered so far (atomic: a reader never sees half a file)."""
    with atomic_open(output / "metrics.jsonl") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")


_NOT_MODEL = {"checkpoints", "metrics.jsonl", "config.yaml", "ref-cache", "runs", ".prefcli-cache"}


def _publish_final_model(model_dir: Path, output: Path) -> None:
    """Put the last segment's model files in OUTPUT (hard links where possible: no second copy of the weights),
    through a temporary directory so OUTPUT never holds half a model. Publishing again (``--resume`` of a finished
    run, or of one killed while publishing) finds links to the same files already in place and keeps them."""
    shutil.rmtree(output / ".final-tmp", ignore_errors=True)  # the staging name of earlier versions
    tmp = staging_dir(output / "final")
    for item in sorted(model_dir.iterdir()):
        if item.name in _NOT_MODEL or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, tmp / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, tmp / item.name)
    publish_into(tmp, output)


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
