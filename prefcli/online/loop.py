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
    segments/k/data.jsonl        the segment's candidate records (+ .meta.json: model path and weights checksum)
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
import difflib
import json
import os
import shutil
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.errors import ConfigError

#: ``progress(phase, done, total, metrics)``; phase is ``"segment K/S: generate|judge|reference|train"``.
Progress = Callable[[str, int, int, dict], None]

DONE = "DONE"
GENERATION = "generation.json"
RUN_CONFIG = "online-config.yaml"

#: Train settings that may change on --resume (they do not change what is trained).
RESUMABLE_TRAIN = ("resume", "save_every", "keep_checkpoints", "log_every", "report_to", "ref_cache_dir")
#: Online settings that may change on --resume.
RESUMABLE_ONLINE = ("judge", "judge_key_env", "concurrency", "max_retries", "retry_delay", "timeout")


@dataclass(frozen=True)
class OnlineConfig:
    """The online part of a ``prefcli train --online`` run (YAML: the ``online:`` mapping of the train config;
    flags: ``--segments``, ``--judge``, ``--temperatures``...). Defaults follow the paper's instruct setup."""

    segments: int = 3
    restart_schedule: bool = False       # each segment its own optimizer + schedule (default: one across segments)
    # candidates (MC-PO paper: two completions at each of three temperatures)
    temperatures: tuple[float, ...] = (0.6, 0.8, 1.0)
    per_temperature: int = 2
    max_new_tokens: int = 512
    top_p: float = 1.0
    gen_batch_size: int = 8
    backend: str = "hf"
    # the judge of the iterative pairwise ranking
    judge: str = ""
    judge_model: str | None = None
    judge_key_env: str | None = None     # the NAME of the environment variable holding the key (read by the CLI)
    protocol: str = "alpaca"
    judge_prompt: str | None = None
    both_orders: bool = False
    concurrency: int = 8
    max_retries: int = 3
    retry_delay: float = 1.0
    timeout: float = 120.0
    judge_max_tokens: int | None = None

    @classmethod
    def from_dict(cls, values: dict | None, source: str = "online") -> OnlineConfig:
        """Build from a mapping (YAML / flags); unknown keys and wrong types fail naming the key."""
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        changes = {}
        for key, value in (values or {}).items():
            name = str(key).replace("-", "_")
            if name not in names:
                close = difflib.get_close_matches(name, names, n=1)
                raise ConfigError(f"{source}: unknown key {key!r}" + (f" (did you mean {close[0]}?)" if close else ""))
            changes[name] = _coerce(name, value, hints[name], source)
        return cls(**changes)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["temperatures"] = list(self.temperatures)
        return values

    def validate(self) -> None:
        if self.segments < 1:
            raise ConfigError("--segments: must be at least 1")
        self.candidate_settings(0).validate()
        self.judge_settings().check()

    def candidate_settings(self, seed: int):
        from prefcli.online.candidates import CandidateSettings

        return CandidateSettings(temperatures=tuple(self.temperatures), per_temperature=self.per_temperature,
                                 max_new_tokens=self.max_new_tokens, top_p=self.top_p,
                                 batch_size=self.gen_batch_size, backend=self.backend, seed=seed)

    def judge_settings(self):
        from prefcli.online.ranking import JudgeSettings

        return JudgeSettings(judge=self.judge, judge_model=self.judge_model, protocol=self.protocol,
                             judge_prompt=self.judge_prompt, both_orders=self.both_orders,
                             concurrency=self.concurrency, max_retries=self.max_retries,
                             retry_delay=self.retry_delay, timeout=self.timeout, max_tokens=self.judge_max_tokens)


def _coerce(name: str, value, annotation, source: str):
    """Like the train config's check, plus ``temperatures`` given as "0.6,0.8,1.0" or a list of numbers."""
    from prefcli.online.candidates import parse_temperatures
    from prefcli.train.config import coerce_value

    if name == "temperatures":
        if isinstance(value, str):
            return parse_temperatures(value)
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    for v in value):
            return tuple(float(v) for v in value)
        raise ConfigError(f"{source}: temperatures: expected a list of numbers or '0.6,0.8,1.0', got {value!r}")
    return coerce_value(name, value, annotation, source)


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


def plan_segments(config, online: OnlineConfig, items: list) -> list[SegmentPlan]:
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


def run_online(config, online: OnlineConfig, *, api_key: str | None = None,
               progress: Progress | None = None) -> dict:
    """Run (or, with ``config.resume``, continue) the batched online loop; returns a summary dict.

    ``config`` is the ``TrainConfig`` of the run (``data`` = the prompts file, ``output`` = the run directory);
    ``online`` the generation / judge / segment settings. Errors a user can cause raise ``PrefcliError`` before
    anything is written or, mid-run, leave every finished segment in place.
    """
    from prefcli.online.prompts import read_prompts
    from prefcli.train.config import check_model_path

    started = time.perf_counter()
    config.validate()
    online.validate()
    check_model_path("model", config.model)
    items, duplicates = read_prompts(config.data)
    plans = plan_segments(config, online, items)
    output = Path(config.output)
    _check_output(config, online, output)

    initial_model = config.model
    reference_model = config.ref_model or config.model
    store_path = output / "judgments.sqlite"
    generated, trained = [], []
    policy = initial_model
    for plan in plans:
        label = f"segment {plan.index}/{len(plans)}"
        done_marker = plan.directory / DONE
        if done_marker.is_file():
            policy = str(plan.directory / "model")
            continue
        data_path = plan.directory / "data.jsonl"
        if not (plan.directory / GENERATION).is_file():
            _generate_segment(config, online, plan, policy, data_path, store_path, api_key, label, progress)
            generated.append(plan.index)
        trained.append(plan.index)
        summary = _train_segment(config, plan, policy, reference_model, data_path, label, progress,
                                 None if online.restart_schedule else sum(p.steps for p in plans))
        _write_json(done_marker, {"segment": plan.index, "steps": plan.steps, "step_offset": plan.step_offset,
                                  "policy": str(policy), "final_model": summary["final_model"],
                                  "final_loss": summary["final_loss"], "train_seconds": summary["train_seconds"],
                                  "reference_seconds": summary["reference_seconds"],
                                  "resumed_from": summary["resumed_from"]})
        _write_metrics(output, plans)
        policy = str(plan.directory / "model")

    _write_metrics(output, plans)
    _publish_final_model(Path(policy), output)
    segments = []
    for plan in plans:
        generation = json.loads((plan.directory / GENERATION).read_text(encoding="utf-8"))
        done = json.loads((plan.directory / DONE).read_text(encoding="utf-8"))
        segments.append({"segment": plan.index, "prompts": len(plan.prompts), "steps": plan.steps,
                         "records": generation["records"], "judgments": generation["judgments"],
                         "generation_seconds": generation["generation_seconds"],
                         "judge_seconds": generation["judge_seconds"], "train_seconds": done["train_seconds"],
                         "final_loss": done["final_loss"], "policy": generation["policy"],
                         "policy_checksum": generation["policy_checksum"]})
    summary = {
        "output": str(output), "final_model": str(output), "loss": config.loss, "segments": segments,
        "prompts": len(items), "repeated_prompts_dropped": duplicates,
        "steps": sum(plan.steps for plan in plans), "generated_now": generated, "trained_now": trained,
        "generation_seconds": sum(s["generation_seconds"] for s in segments),
        "judge_seconds": sum(s["judge_seconds"] for s in segments),
        "train_seconds": sum(s["train_seconds"] for s in segments),
        "total_seconds": time.perf_counter() - started,
        "initial_model": initial_model, "reference_model": reference_model, "store": str(store_path),
    }
    _write_json(output / "online.json", summary)
    return summary


def _check_output(config, online: OnlineConfig, output: Path) -> None:
    """A new run needs a fresh OUTPUT; ``--resume`` needs this run's settings (except the resumable ones)."""
    import yaml

    saved = output / RUN_CONFIG
    settings = {"train": {k: v for k, v in config.to_dict().items() if k != "online"}, "online": online.to_dict()}
    if not config.resume:
        if saved.is_file() or (output / "segments").is_dir():
            raise ConfigError(f"--output: {output} already holds an online run; pass --resume to continue it or "
                              "choose another directory")
        from prefcli.data.atomic import atomic_open

        with atomic_open(saved) as handle:
            handle.write(yaml.safe_dump(settings, sort_keys=False, allow_unicode=True))
        return
    if not saved.is_file():
        raise ConfigError(f"--resume: no online run in {output} (no {RUN_CONFIG})")
    before = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    changed = []
    for part, allowed in (("train", RESUMABLE_TRAIN), ("online", RESUMABLE_ONLINE)):
        old, new = before.get(part, {}), settings[part]
        changed += [f"{key}: {old[key]!r} -> {new[key]!r}" for key in new
                    if key not in allowed and key in old and old[key] != new[key]]
    if changed:
        raise ConfigError(f"--resume: settings differ from the run in {output} ({', '.join(changed)}); only "
                          f"{', '.join(RESUMABLE_TRAIN + RESUMABLE_ONLINE)} may change on resume")


def _generate_segment(config, online, plan: SegmentPlan, policy: str, data_path: Path, store_path: Path,
                      api_key, label: str, progress) -> None:
    from prefcli.data.seeding import row_hash
    from prefcli.online.candidates import _free_accelerator_memory, generate_candidates, write_candidates

    _free_accelerator_memory()  # the previous segment's model, optimizer and activations
    seed = row_hash(config.seed, "online-generation", plan.index) % (2**31)
    settings = online.candidate_settings(seed)
    on_progress = None
    if progress is not None:
        def on_progress(phase: str, done: int, total: int) -> None:
            progress(f"{label}: {phase}", done, total, {})

    plan.directory.mkdir(parents=True, exist_ok=True)
    result = generate_candidates(policy, plan.prompts, settings, online.judge_settings(), store_path=store_path,
                                 api_key=api_key, completions_cache=plan.directory / "completions.json",
                                 progress=on_progress)
    _free_accelerator_memory()
    inputs = {}
    if Path(config.data).is_file():
        from prefcli.data.sidecar import file_checksum

        inputs["prompts"] = file_checksum(config.data)
    write_candidates(data_path, result, inputs=inputs, argv=["prefcli train --online", f"segment {plan.index}"],
                     config={**settings.to_dict(), **online.judge_settings().to_dict(), "model": str(policy),
                             "segment": plan.index, "prompts_file": str(config.data),
                             "store": str(store_path)})
    _write_json(plan.directory / GENERATION, {
        "segment": plan.index, "policy": str(policy), "policy_checksum": result.model_checksum,
        "prompts": result.prompts, "records": len(result.records), "skipped": result.skipped,
        "judgments": result.judgments, "judgments_reused": result.judgments_reused,
        "generation_seconds": round(result.generation_seconds, 3), "judge_seconds": round(result.judge_seconds, 3),
        "completions_reused": result.completions_reused, "seed": seed})


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
        config, model=str(policy), ref_model=config.ref_model if plan.index == 1 else reference_model, data=str(data_path),
        output=str(run_dir), max_steps=plan.steps, resume=resume, online=None)
    part = None
    if schedule_steps is not None:
        from prefcli.train.setup import RunPart

        previous = plan.directory.parent / str(plan.index - 1) / "model"
        part = RunPart(schedule_steps, plan.step_offset,
                       init_optimizer=None if plan.index == 1 else str(_last_checkpoint(previous)))
    on_progress = None
    if progress is not None:
        def on_progress(phase: str, done: int, total: int, metrics: dict) -> None:
            progress(f"{label}: {phase}", done, total, metrics)

    return train(segment_config, progress=on_progress, part=part)


def _last_checkpoint(run_dir: Path) -> Path:
    """The previous segment's final checkpoint (its optimizer state)."""
    from prefcli.train.checkpoint import latest_checkpoint

    found = latest_checkpoint(run_dir)
    if found is None:
        raise ConfigError(f"{run_dir}: the previous segment saved no optimizer state (a run from before segments "
                          "shared one schedule); set restart_schedule: true to continue it")
    return found[1]


def _write_json(path: Path, obj) -> None:
    from prefcli.data.atomic import write_json

    write_json(path, obj)


def _write_metrics(output: Path, plans: list[SegmentPlan]) -> None:
    """OUTPUT/metrics.jsonl: per finished (or generated) segment, a generation line with its time, then its
    training lines with global step numbers."""
    from prefcli.data.atomic import atomic_open

    lines = []
    for plan in plans:
        generation_file = plan.directory / GENERATION
        if not generation_file.is_file():
            break
        generation = json.loads(generation_file.read_text(encoding="utf-8"))
        lines.append({"segment": plan.index, "event": "generation", "step": plan.step_offset,
                      "generation_seconds": generation["generation_seconds"],
                      "judge_seconds": generation["judge_seconds"], "records": generation["records"],
                      "judgments": generation["judgments"], "policy": generation["policy"]})
        metrics_file = plan.directory / "model" / "metrics.jsonl"
        if metrics_file.is_file():
            for raw in metrics_file.read_text(encoding="utf-8").splitlines():
                if raw.strip():
                    record = json.loads(raw)
                    record["segment_step"] = record["step"]
                    record["step"] = record["step"] + plan.step_offset
                    lines.append({"segment": plan.index, "event": "train", **record})
    with atomic_open(output / "metrics.jsonl") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")


_NOT_MODEL = {"checkpoints", "metrics.jsonl", "config.yaml", "ref-cache", "runs", ".prefcli-cache"}


def _publish_final_model(model_dir: Path, output: Path) -> None:
    """Put the last segment's model files in OUTPUT (hard links where possible: no second copy of the weights),
    through a temporary directory so OUTPUT never holds half a model."""
    tmp = output / ".final-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for item in sorted(model_dir.iterdir()):
        if item.name in _NOT_MODEL or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, tmp / item.name, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, tmp / item.name)
    for item in sorted(tmp.iterdir()):
        target = output / item.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(item, target)
    tmp.rmdir()


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
