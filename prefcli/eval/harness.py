"""lm-evaluation-harness benchmarks for a trained model (``prefcli eval harness``).

A thin, strict wrapper around ``lm_eval.simple_evaluate`` with an ``HFLM`` model: the numbers are lm-eval's own.
What it adds: suites whose tasks each keep their own few-shot count (``simple_evaluate`` takes one ``num_fewshot``,
so the tasks are evaluated in one call per few-shot group and the results merged), a named headline metric per
task, LoRA adapter directories (HFLM's ``peft=`` on the base model named in ``adapter_config.json``), relative data
files of local task YAMLs resolved against the YAML's directory, and clear one-line errors for an unknown task, a
path that is not a model, or a dataset that is not available offline.

The result (``harness.json``) is::

    {"model": str,
     "headline": {task: {"metric": "acc_norm,none", "value": float, "stderr": float | None, "num_fewshot": int}},
     "results": <lm-eval's output: results, groups, configs, versions, n-shot, n-samples, ...>,
     "config": {...}, "versions": {...}, "prefcli_version": str}
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from prefcli import __version__
from prefcli.data.atomic import atomic_open, write_json
from prefcli.errors import ConfigError, PrefcliError
from prefcli.eval import lm_eval_private
from prefcli.eval.suites import SuiteTask, list_suites, load_suite
from prefcli.generate.loading import ModelRef, default_device, resolve_model
from prefcli.suggest import close_matches

# lm-eval result keys that are bookkeeping, not metrics.
_NOT_METRICS = {"alias", "name", "sample_len", "samples"}
# The lm-eval sections keyed by task name; merged across the per-few-shot calls.
_PER_TASK_SECTIONS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                      "n-samples")


@dataclass(frozen=True)
class HarnessConfig:
    """Everything that defines a harness run (recorded in ``harness.json``). ``seed`` None keeps lm-eval's
    defaults (python 0, numpy/torch/few-shot 1234); an integer sets all four."""

    model: str
    tasks: tuple[SuiteTask, ...]
    suite: str | None = None
    limit: int | float | None = None
    batch_size: int | str = 8
    include_path: tuple[str, ...] = ()
    apply_chat_template: bool = False
    seed: int | None = None
    device: str | None = None
    bootstrap_iters: int = 100_000
    log_samples: bool = False

    def to_dict(self) -> dict:
        record = asdict(self)
        record["tasks"] = [asdict(task) for task in self.tasks]
        record["include_path"] = list(self.include_path)
        return record


def plan_tasks(tasks: list[str] | None = None, suite: str | None = None,
               num_fewshot: int | None = None) -> list[SuiteTask]:
    """The tasks of ``suite`` followed by the extra ``tasks`` (``name`` or ``name:shots``), without duplicates.

    A task named with ``--tasks`` that belongs to a preset suite headlines the preset's metric; any other task
    headlines its first metric. ``num_fewshot`` overrides every task's few-shot count (lm-eval itself keeps 0 for
    tasks whose YAML fixes it at 0)."""
    planned: list[SuiteTask] = list(load_suite(suite).tasks) if suite else []
    known_metrics = {task.task: task.metric for name in list_suites() for task in load_suite(name).tasks}
    for item in tasks or []:
        name, _, shots_text = item.strip().partition(":")
        if not name:
            raise ConfigError(f"--tasks: empty task name in {item!r}")
        shots = None
        if shots_text:
            if not shots_text.isdigit():
                raise ConfigError(f"--tasks: {item!r}: the few-shot count after ':' must be an integer >= 0")
            shots = int(shots_text)
        planned.append(SuiteTask(name, shots, known_metrics.get(name)))
    if not planned:
        raise ConfigError("give --tasks and/or --suite (valid suites: " + ", ".join(list_suites()) + ")")
    unique: dict[str, SuiteTask] = {}
    for task in planned:
        unique.setdefault(task.task, task)
    if num_fewshot is not None:
        if num_fewshot < 0:
            raise ConfigError(f"--num-fewshot: must be >= 0, got {num_fewshot}")
        unique = {name: replace(task, num_fewshot=num_fewshot) for name, task in unique.items()}
    return list(unique.values())


def build_task_manager(include_path: tuple[str, ...] | list[str], names: list[str]):
    """An lm-eval ``TaskManager`` that knows every name in ``names`` (else a ``ConfigError`` with "did you mean").

    Indexing lm-eval's ~14,000 built-in task YAMLs takes seconds, so when every requested name is a plain task
    found under ``include_path`` the built-in tasks are not indexed."""
    include = tuple(str(Path(path).resolve()) for path in include_path)
    for given, path in zip(include_path, include):
        if not Path(path).is_dir():
            raise ConfigError(f"--include-path: {given}: not a directory")
    if include:
        local = task_manager(include, include_defaults=False)
        index = local.task_index
        if all(name in index and lm_eval_private.is_plain_task(index[name]) for name in names):
            return local
    manager = task_manager(include)
    for name in names:
        if name not in manager.task_index:
            close = similar_names(name, manager.all_tasks)
            hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
            raise ConfigError(f"--tasks: unknown lm-eval task {name!r}; {hint}"
                              f"({len(manager.all_tasks)} tasks known; `prefcli eval harness --list-tasks` "
                              "lists them, --include-path adds your own)")
    return manager


def similar_names(name: str, known: list[str], count: int = 3) -> list[str]:
    """Close matches for a mistyped task name. difflib over all ~14,000 names takes seconds, so look first among
    names with the same two-letter prefix, then among names of about the same length."""
    for pool in ([k for k in known if k[:2].lower() == name[:2].lower()],
                 [k for k in known if abs(len(k) - len(name)) <= 2]):
        close = close_matches(name, pool, n=count, cutoff=0.75)
        if close:
            return close
    return []


def task_manager(include_path: tuple[str, ...] = (), include_defaults: bool = True):
    """lm-eval's task index over its built-in tasks and ``include_path`` (cached: it only reads YAML files)."""
    return _cached_task_manager(tuple(include_path), bool(include_defaults))


@functools.lru_cache(maxsize=4)
def _cached_task_manager(include_path: tuple[str, ...], include_defaults: bool):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path) or None, include_defaults=include_defaults)


def load_task(manager, name: str, include_path: tuple[str, ...] = ()) -> list:
    """Build the lm-eval Task/Group objects for ``name`` (this loads its dataset). A dataset that cannot be
    loaded, e.g. not cached while offline, is a ``PrefcliError`` naming the task and the dataset."""
    entry = manager.task_index[name]
    spec = _spec_with_local_data_files(entry, include_path)
    try:
        loaded = manager.load([spec])
    except Exception as error:  # noqa: BLE001 - datasets raises many types; all mean "this data is not usable"
        dataset = lm_eval_private.entry_config(entry).get("dataset_path", "?")
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrefcliError(f"task {name!r}: cannot load dataset {dataset!r} ({type(error).__name__}: {reason}); "
                           "offline, only cached datasets and local data files are available") from None
    if name in loaded.get("groups", {}):
        return [loaded["groups"][name]]
    if name in loaded["tasks"]:
        return [loaded["tasks"][name]]
    return list(loaded["tasks"].values())  # a tag: its member tasks


def _spec_with_local_data_files(entry, include_path: tuple[str, ...]):
    """For a task YAML under ``include_path`` whose ``dataset_kwargs`` name relative ``data_files``/``data_dir``
    that exist next to the YAML, the full config with those paths made absolute; otherwise the task's name."""
    yaml_path = lm_eval_private.entry_yaml_path(entry)
    roots = [Path(path).resolve() for path in include_path]
    if not lm_eval_private.is_yaml_task(entry) or yaml_path is None or \
            not any(yaml_path.resolve().is_relative_to(root) for root in roots):
        return entry.name
    kwargs = lm_eval_private.entry_config(entry).get("dataset_kwargs") or {}
    base = Path(yaml_path).resolve().parent

    def absolute(value):
        if isinstance(value, str):
            candidate = base / value
            return str(candidate) if not Path(value).is_absolute() and candidate.exists() else value
        if isinstance(value, list):
            return [absolute(item) for item in value]
        if isinstance(value, dict):
            return {key: absolute(item) for key, item in value.items()}
        return value

    resolved = {key: absolute(kwargs[key]) for key in ("data_files", "data_dir") if key in kwargs}
    if all(resolved[key] == kwargs[key] for key in resolved):
        return entry.name
    config = lm_eval_private.load_task_yaml(yaml_path)
    config["dataset_kwargs"] = {**config.get("dataset_kwargs", {}), **resolved}
    return config


def check_metric(task: SuiteTask, objects: list) -> None:
    """Fail before the (long) evaluation when the suite names a metric or filter the task does not produce."""
    if task.metric is None or len(objects) != 1:
        return
    metric, _, filter_name = task.metric.partition(",")
    target = objects[0]
    if hasattr(target, "aggregate_metric_list"):  # a group: what it aggregates
        metrics = {item.metric for item in target.aggregate_metric_list or []}
        filters = set()
    else:
        metrics = lm_eval_private.task_metric_names(target)
        filters = lm_eval_private.task_filter_names(target)
    if metrics and metric not in metrics:
        raise ConfigError(f"task {task.task!r}: metric {task.metric!r}: {metric!r} is not one of its metrics "
                          f"({', '.join(sorted(metrics))})")
    if filters and filter_name not in filters:
        raise ConfigError(f"task {task.task!r}: metric {task.metric!r}: filter {filter_name!r} is not one of its "
                          f"filters ({', '.join(sorted(filters))})")


def build_lm(ref: ModelRef, config: HarnessConfig):
    """lm-eval's ``HFLM`` for a full model or for a base model plus a PEFT adapter."""
    from lm_eval.models.huggingface import HFLM

    arguments = {"pretrained": ref.base, "tokenizer": ref.tokenizer, "batch_size": config.batch_size,
                 "device": config.device or default_device()}
    if ref.is_adapter:
        arguments["peft"] = ref.adapter
    try:
        return HFLM(**arguments)
    except (OSError, ValueError, ImportError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PrefcliError(f"{ref.path}: cannot load model for lm-eval: {reason}") from None


def run_harness(config: HarnessConfig,
                progress: Callable[[int, int, str], None] | None = None) -> tuple[dict, dict]:
    """Evaluate ``config.model`` on ``config.tasks``. Returns ``(harness_json, samples)``; ``samples`` maps a task
    to lm-eval's per-document records (empty unless ``config.log_samples``). ``progress(done, total, label)`` is
    called after each few-shot group."""
    import lm_eval

    started = time.time()
    ref = resolve_model(config.model)
    names = [task.task for task in config.tasks]
    manager = build_task_manager(config.include_path, names)
    loaded = {task.task: load_task(manager, task.task, config.include_path) for task in config.tasks}
    for task in config.tasks:
        check_metric(task, loaded[task.task])
    lm = build_lm(ref, config)

    seeds = {} if config.seed is None else {
        "random_seed": config.seed, "numpy_random_seed": config.seed, "torch_random_seed": config.seed,
        "fewshot_random_seed": config.seed}
    merged: dict = {}
    samples: dict = {}
    done = 0
    for shots, members in fewshot_groups(config.tasks):
        label = ", ".join(task.task for task in members)
        if progress is not None:
            progress(done, len(config.tasks), label)
        output = lm_eval.simple_evaluate(
            model=lm, tasks=[obj for task in members for obj in loaded[task.task]], num_fewshot=shots,
            limit=config.limit, bootstrap_iters=config.bootstrap_iters, log_samples=config.log_samples,
            apply_chat_template=config.apply_chat_template, task_manager=manager, **seeds)
        samples.update(output.pop("samples", None) or {})
        merge_results(merged, output)
        done += len(members)
        if progress is not None:
            progress(done, len(config.tasks), label)
    merged = json.loads(json.dumps(merged, default=_jsonable))

    requested = {task.task: task.num_fewshot for task in config.tasks}
    headline = {}
    for task in config.tasks:
        for name in _headline_names(task.task, loaded[task.task], merged):
            headline[name] = headline_entry(name, task.metric, merged, requested[task.task])
    result = {
        "model": str(config.model),
        "headline": headline,
        "results": merged,
        "config": {**config.to_dict(), "pretrained": ref.base, "peft": ref.adapter, "tokenizer": ref.tokenizer,
                   "device": config.device or default_device(), "elapsed_s": round(time.time() - started, 3)},
        "versions": library_versions(ref.is_adapter),
        "prefcli_version": __version__,
    }
    return result, samples


def fewshot_groups(tasks: tuple[SuiteTask, ...] | list[SuiteTask]) -> list[tuple[int | None, list[SuiteTask]]]:
    """Tasks grouped by few-shot count, in first-appearance order (one ``simple_evaluate`` call per group)."""
    groups: dict[int | None, list[SuiteTask]] = {}
    for task in tasks:
        groups.setdefault(task.num_fewshot, []).append(task)
    return list(groups.items())


def merge_results(merged: dict, output: dict) -> None:
    """Fold one ``simple_evaluate`` output into ``merged``: per-task sections are united; the run-level fields
    (config, git hash, environment) are kept from the first call."""
    for key, value in output.items():
        if key in _PER_TASK_SECTIONS and isinstance(value, dict):
            merged.setdefault(key, {}).update(value)
        else:
            merged.setdefault(key, value)


def _headline_names(name: str, objects: list, merged: dict) -> list[str]:
    if name in merged.get("results", {}):
        return [name]
    return [obj.task_name for obj in objects if getattr(obj, "task_name", None) in merged.get("results", {})]


def headline_entry(name: str, metric: str | None, merged: dict, requested_shots: int | None) -> dict:
    """The headline number of one task: the named metric, or the task's first metric when none is named."""
    row = merged["results"].get(name, {})
    metric = metric or first_metric(name, merged)
    value = row.get(metric) if metric else None
    metric_name, _, filter_name = (metric or "").partition(",")
    stderr = row.get(f"{metric_name}_stderr,{filter_name}")
    shots = merged.get("n-shot", {}).get(name, requested_shots)
    return {"metric": metric, "value": _number(value), "stderr": _number(stderr),
            "num_fewshot": shots if isinstance(shots, int) else requested_shots}


def first_metric(name: str, merged: dict) -> str | None:
    """The first ``metric,filter`` key of a task: its YAML's first metric under its first filter."""
    config = merged.get("configs", {}).get(name) or {}
    metric_list = config.get("metric_list") or []
    filters = config.get("filter_list") or []
    if metric_list and isinstance(metric_list[0], dict):
        filter_name = filters[0].get("name", "none") if filters and isinstance(filters[0], dict) else "none"
        key = f"{metric_list[0]['metric']},{filter_name}"
        if key in merged["results"].get(name, {}):
            return key
    for key in merged["results"].get(name, {}):
        if "," in key and key not in _NOT_METRICS and "_stderr," not in key:
            return key
    return None


def _number(value) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _jsonable(value):
    from lm_eval.utils import handle_non_serializable

    return handle_non_serializable(value)


def library_versions(with_peft: bool) -> dict:
    versions = {"python": platform.python_version()}
    names = ["lm_eval", "transformers", "torch", "datasets", "accelerate"] + (["peft"] if with_peft else [])
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def save_harness(output_dir: str | Path, result: dict, samples: dict | None = None) -> Path:
    """Write ``OUTPUT/harness.json`` (and ``OUTPUT/samples/<task>.jsonl`` when samples were logged), atomically."""
    output_dir = Path(output_dir)
    path = output_dir / "harness.json"
    write_json(path, result)
    for task, records in (samples or {}).items():
        with atomic_open(output_dir / "samples" / f"{task}.jsonl") as handle:
            for record in records:
                handle.write(json.dumps(record, default=_jsonable, ensure_ascii=False) + "\n")
    return path


def list_tasks(include_path: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Every task, group and tag name lm-eval knows (plus those under ``include_path``)."""
    return task_manager(tuple(str(Path(path).resolve()) for path in include_path)).all_tasks
