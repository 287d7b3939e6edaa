"""What a report column is, and which numbers of a result file become columns.

To report another number of a judged ``results.json`` (say a length-controlled winrate written as ``lc_winrate``
with its interval ``lc_ci95``), add one :class:`JudgedMetric` to :data:`JUDGED_METRICS`; collection, statistics,
the Markdown table, the JSON and the chart follow. lm-eval metrics need no entry: every headline metric of a
``harness.json`` is a column (:data:`PROPORTION_METRICS` says which are shown in percent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.errors import DataError

PROTOCOL_LABELS = (("alpaca", "AlpacaEval"), ("arena", "Arena-Hard"))
# lm-eval metrics that are proportions in [0, 1]; the report shows them in percent. Others are shown as they are.
PROPORTION_METRICS = {"acc", "acc_norm", "exact_match", "em", "f1", "mc1", "mc2", "acc_mutual_info", "mcc",
                      "pass@1", "inst_level_strict_acc", "prompt_level_strict_acc", "inst_level_loose_acc",
                      "prompt_level_loose_acc", "brier_score"}


@dataclass(frozen=True)
class JudgedMetric:
    """One number of a judged ``results.json`` shown as a column (in percent, kept in [0, 100])."""

    field: str  # the key in results.json
    label: str  # appended to the protocol's name: "AlpacaEval WR"
    interval_field: str | None = None  # [low, high] in percent, that run's own 95% interval
    optional: bool = True  # absent from older result files: no column, no complaint


# In column order within a protocol. ``winrate`` is the headline: a file whose winrate is null is named as skipped.
JUDGED_METRICS: tuple[JudgedMetric, ...] = (
    JudgedMetric("winrate", "WR", interval_field="ci95", optional=False),
    JudgedMetric("lc_winrate", "LC WR"),  # AlpacaEval's length-controlled winrate (prefcli.eval.length_control)
)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "winrate" (any judged metric) | "harness" | "reward" (prefcli eval reward)
    details: dict = field(default_factory=dict, compare=False, hash=False)
    demo_judge: bool = False
    order: int = 0  # position of its metric within a protocol's columns

    @property
    def is_percent(self) -> bool:
        return self.kind == "winrate" or self.details.get("unit") == "percent"

    @property
    def single_run_interval(self) -> str:
        """How one run's own interval was obtained."""
        return "1.96 stderr" if self.kind == "harness" else "run ci95"


@dataclass(frozen=True)
class Observation:
    """One number from one run: ``value`` in percent, ``interval`` that run's own 95% interval (or None)."""

    run: str
    name: str
    column: Column
    value: float
    interval: tuple[float, float] | None
    seed: int | None
    source: str


Found = list[tuple[Column, float, tuple[float, float] | None]]


def finite_number(path: Path, data: dict, key: str, required: bool = True) -> float | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise DataError(path, None, "missing or not a finite number", field=key)
    return float(value)


def is_demo_judge(data: dict) -> bool:
    """``demo_judge: true`` in the results, or a ``rule:...`` judge (prefcli's built-in deterministic judges)."""
    return data.get("demo_judge") is True or any(
        isinstance(data.get(key), str) and data[key].startswith("rule:") for key in ("judge", "judge_model"))


def protocol_label(protocol: str) -> str:
    return next((label for prefix, label in PROTOCOL_LABELS if protocol.lower().startswith(prefix)), protocol)


def protocol_rank(column: Column) -> int:
    protocol = column.details.get("protocol", "").lower()
    for rank, (prefix, _) in enumerate(PROTOCOL_LABELS):
        if protocol.startswith(prefix):
            return rank
    return len(PROTOCOL_LABELS)


def judged_observations(path: Path, data: dict) -> Found:
    """A (column, value in percent, interval) per :data:`JUDGED_METRICS` entry present in one judged
    ``results.json``; nothing for a metric that is null (e.g. every judgment failed)."""
    protocol = data.get("protocol")
    if not isinstance(protocol, str) or not protocol:
        raise DataError(path, None, "missing (expected e.g. 'alpaca' or 'arena')", field="protocol")
    judge = str(data.get("judge_model") or data.get("judge") or "unknown judge")
    details = {"protocol": protocol, "judge": data.get("judge"), "judge_model": data.get("judge_model"),
               "template_version": data.get("template_version")}
    found: Found = []
    for order, metric in enumerate(JUDGED_METRICS):
        if metric.field not in data and metric.optional:
            continue
        value = data.get(metric.field)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        value = finite_number(path, data, metric.field)
        if not 0 <= value <= 100:
            raise DataError(path, None, f"must be a percentage in [0, 100], got {value}", field=metric.field)
        interval = _interval(path, data, metric.interval_field)
        prefix = "winrate" if metric.field == "winrate" else metric.field  # keeps the keys of older reports
        column = Column(key=f"{prefix}|{protocol}|{judge}", label=f"{protocol_label(protocol)} {metric.label}",
                        kind="winrate", demo_judge=is_demo_judge(data), order=order,
                        details={**details, "metric": metric.field})
        found.append((column, value, interval))
    return found


def _interval(path: Path, data: dict, key: str | None) -> tuple[float, float] | None:
    ci95 = data.get(key) if key else None
    if ci95 is None:
        return None
    if not (isinstance(ci95, list) and len(ci95) == 2 and all(isinstance(v, (int, float)) for v in ci95)):
        raise DataError(path, None, "must be [low, high] in percent", field=key)
    return float(ci95[0]), float(ci95[1])


def reward_observations(path: Path, data: dict) -> Found:
    """The mean reward of a ``prefcli eval reward`` result (``kind: reward``), x 100 when every score is in [0, 1]
    (raw otherwise), with its ``ci95``; nothing when no output was scored."""
    if data.get("mean") is None:
        return []
    mean = finite_number(path, data, "mean")
    scale = 100.0 if data.get("unit_interval") is True else 1.0
    ci95 = data.get("ci95")
    interval = None
    if isinstance(ci95, list) and len(ci95) == 2 and all(isinstance(v, (int, float)) for v in ci95):
        interval = (scale * float(ci95[0]), scale * float(ci95[1]))
    judge = str(data.get("reward_model") or data.get("reward"))
    column = Column(key=f"reward|{judge}|{scale}", label="reward x100" if scale == 100 else "reward (raw)",
                    kind="reward", details={"reward": data.get("reward"), "judge_model": judge,
                                            "unit": "percent" if scale == 100 else "raw"})
    return [(column, scale * mean, interval)]


def harness_observations(path: Path, data: dict) -> Found:
    """One (column, value, value +- 1.96 stderr) per headline task of a ``harness.json``; proportions (accuracy,
    exact match, ...) are scaled to percent."""
    headline = data.get("headline")
    if not isinstance(headline, dict):
        raise DataError(path, None, "missing or not an object", field="headline")
    found: Found = []
    for task, entry in headline.items():
        if not isinstance(entry, dict):
            raise DataError(path, None, "must be an object", field=f"headline.{task}")
        if entry.get("value") is None:
            continue  # the metric was not produced; nothing to average
        value = finite_number(path, entry, "value")
        stderr = entry.get("stderr")
        metric, shots = str(entry.get("metric")), entry.get("num_fewshot")
        scale = 100.0 if metric.split(",")[0] in PROPORTION_METRICS else 1.0
        metric_label = metric.split(",")[0] if metric.endswith(",none") else metric.replace(",", " ")
        shots_label = f" {shots}-shot" if isinstance(shots, int) else ""
        unit_label = "" if scale == 100 else " (raw)"
        column = Column(key=f"harness|{task}|{metric}|{shots}",
                        label=f"{task} {metric_label}{shots_label}{unit_label}", kind="harness",
                        details={"task": task, "metric": metric, "num_fewshot": shots,
                                 "unit": "percent" if scale == 100 else "raw"})
        interval = None
        if isinstance(stderr, (int, float)) and math.isfinite(stderr):
            interval = (scale * (value - 1.96 * stderr), scale * (value + 1.96 * stderr))
        found.append((column, scale * value, interval))
    return found
