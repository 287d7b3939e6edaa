"""Benchmark suites: named lists of lm-eval tasks, each with its own few-shot count and the result key of its
headline metric. A suite is a small YAML file (the presets live beside this module; a user passes a path to their
own), so a benchmark set is data, not code::

    name: my-suite
    tasks:
      - {task: arc_easy, num_fewshot: 25, metric: "acc_norm,none"}
      - {task: gsm8k, num_fewshot: 5, metric: "exact_match,strict-match"}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from prefcli.errors import ConfigError
from prefcli.suggest import did_you_mean

PRESET_DIR = Path(__file__).parent


@dataclass(frozen=True)
class SuiteTask:
    """One task of a suite. ``num_fewshot`` None keeps the task's own default; ``metric`` None headlines the
    task's first metric (``<metric>,<filter>`` as lm-eval names its result keys)."""

    task: str
    num_fewshot: int | None = None
    metric: str | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: tuple[SuiteTask, ...]
    description: str = ""


def list_suites() -> list[str]:
    """Names of the preset suites shipped with prefcli."""
    return sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path) -> Suite:
    """A preset by name (``leaderboard-v1``) or a suite YAML file by path."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        presets = list_suites()
        if str(name_or_path) not in presets:
            hint = did_you_mean(str(name_or_path), presets)
            raise ConfigError(f"--suite: unknown suite {str(name_or_path)!r}; {hint}valid suites: "
                              f"{', '.join(presets)} (or the path of a suite YAML file)")
        path = PRESET_DIR / f"{name_or_path}.yaml"
    return parse_suite(path)


def parse_suite(path: Path) -> Suite:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read suite: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise ConfigError(f"{path}: tasks: must be a non-empty list of {{task, num_fewshot, metric}}")
    tasks = []
    for index, item in enumerate(data["tasks"]):
        where = f"{path}: tasks[{index}]"
        if isinstance(item, str):
            item = {"task": item}
        if not isinstance(item, dict) or not isinstance(item.get("task"), str) or not item["task"]:
            raise ConfigError(f"{where}.task: must be a task name")
        unknown = set(item) - {"task", "num_fewshot", "metric"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                              "(valid: task, num_fewshot, metric)")
        shots, metric = item.get("num_fewshot"), item.get("metric")
        if shots is not None and (not isinstance(shots, int) or isinstance(shots, bool) or shots < 0):
            raise ConfigError(f"{where}.num_fewshot: must be an integer >= 0, got {shots!r}")
        if metric is not None and (not isinstance(metric, str) or "," not in metric):
            raise ConfigError(f"{where}.metric: must be an lm-eval result key such as 'acc_norm,none', "
                              f"got {metric!r}")
        tasks.append(SuiteTask(item["task"], shots, metric))
    return Suite(name=str(data.get("name") or path.stem), tasks=tuple(tasks),
                 description=str(data.get("description") or ""))
