"""``prefcli eval report``: many evaluation runs (seeds, models, methods) in one mean (std) table, like Table 1 of
the MC-PO paper (arXiv 2502.04567): rows are methods, columns are the AlpacaEval and Arena-Hard winrates and each
lm-eval headline metric. Written as Markdown, JSON and a PNG bar chart with 95% intervals.

Inputs. Each DIR is one run. Its results are the ``results.json`` (judged winrate) and ``harness.json`` (lm-eval)
files in DIR itself and in its immediate subdirectories (so ``runs/mcpo-seed0/{alpaca,arena,harness}/`` is one run).

Grouping (``name_by``):
  ``dir``   (default) the run directory's name with a trailing seed marker removed (``mcpo-seed1``, ``mcpo_seed1``,
            ``mcpo.seed1`` -> ``mcpo``); a directory named only ``seed1`` takes its parent's name
            (``runs/mcpo/seed1`` -> ``mcpo``);
  ``model`` the ``model`` field recorded in the result files, with the same seed marker removed;
  ``path``  the directory path as given: no merging, one row per directory.
Runs with the same name form one row.

Numbers. Winrates are percent; lm-eval proportions (accuracy, exact match, ...) are multiplied by 100 (other
lm-eval metrics, e.g. perplexity, are shown as they are and labeled "raw"); intervals of percentages are clipped to
[0, 100].
A cell is the mean over the row's runs with the sample standard deviation (n - 1) in parentheses; one run shows
its value alone. The 95% interval drawn in the chart is, for one run, the judge result's bootstrap ``ci95`` or
value +- 1.96 stderr for a harness metric; for several runs, the t-interval of the mean over runs,
mean +- t(0.975, n - 1) * std / sqrt(n). Winrate columns are kept apart per protocol and judge; a judge named
``rule:...`` is prefcli's deterministic demo judge and is labeled as such everywhere.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from prefcli.errors import ConfigError, DataError, PrefcliError

NAME_BY = ("dir", "model", "path")
_SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$", re.IGNORECASE)
_PROTOCOL_LABELS = (("alpaca", "AlpacaEval"), ("arena", "Arena-Hard"))
# lm-eval metrics that are proportions in [0, 1]; the report shows them in percent. Others are shown as they are.
_PROPORTION_METRICS = {"acc", "acc_norm", "exact_match", "em", "f1", "mc1", "mc2", "acc_mutual_info", "mcc",
                       "pass@1", "inst_level_strict_acc", "prompt_level_strict_acc", "inst_level_loose_acc",
                       "prompt_level_loose_acc", "brier_score"}
# Two-sided 95% quantiles of Student's t by degrees of freedom (beyond the table: the normal 1.96).
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
         20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str  # "winrate" | "harness"
    details: dict = field(default_factory=dict, compare=False, hash=False)
    demo_judge: bool = False


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


def t_quantile_975(degrees_of_freedom: int) -> float:
    if degrees_of_freedom in _T975:
        return _T975[degrees_of_freedom]
    larger = [df for df in _T975 if df > degrees_of_freedom]
    return _T975[min(larger)] if larger else 1.96  # conservative: the next tabulated df is never smaller


def strip_seed(name: str) -> str:
    return _SEED_SUFFIX.sub("", name)


def run_name(run_dir: Path, given: str, name_by: str, recorded_model: str | None) -> str:
    """The row a run belongs to (see the module docstring)."""
    if name_by == "path":
        return given
    if name_by == "model":
        if not recorded_model:
            raise DataError(run_dir, None, "no result file records a model (use --name-by dir)", field="model")
        parts = recorded_model.rstrip("/").split("/")
        last = strip_seed(parts[-1])
        return "/".join(parts[:-1] + ([last] if last else [])) or recorded_model
    resolved = run_dir.resolve()
    name = strip_seed(resolved.name)
    return name or strip_seed(resolved.parent.name) or resolved.name


def find_result_files(run_dir: Path) -> list[Path]:
    """``results.json`` / ``harness.json`` in ``run_dir`` and one level below, in a stable order."""
    files = []
    for pattern in ("results.json", "harness.json", "*/results.json", "*/harness.json"):
        files.extend(sorted(run_dir.glob(pattern)))
    return files


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(path, None, f"cannot read JSON: {error}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, "must be a JSON object")
    return data


def _number(path: Path, data: dict, key: str, required: bool = True) -> float | None:
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


def winrate_observations(path: Path, data: dict) -> list[tuple[Column, float, tuple[float, float] | None]]:
    """The column, winrate (percent) and its ``ci95`` from one judged ``results.json``; nothing when the run has
    no winrate (every judgment failed)."""
    protocol = data.get("protocol")
    if not isinstance(protocol, str) or not protocol:
        raise DataError(path, None, "missing (expected e.g. 'alpaca' or 'arena')", field="protocol")
    if data.get("winrate") is None or (isinstance(data["winrate"], float) and math.isnan(data["winrate"])):
        return []
    winrate = _number(path, data, "winrate")
    if not 0 <= winrate <= 100:
        raise DataError(path, None, f"must be a percentage in [0, 100], got {winrate}", field="winrate")
    interval = None
    ci95 = data.get("ci95")
    if ci95 is not None:
        if not (isinstance(ci95, list) and len(ci95) == 2 and all(isinstance(v, (int, float)) for v in ci95)):
            raise DataError(path, None, "must be [low, high] in percent", field="ci95")
        interval = (float(ci95[0]), float(ci95[1]))
    judge = str(data.get("judge_model") or data.get("judge") or "unknown judge")
    demo = is_demo_judge(data)
    base = next((label for prefix, label in _PROTOCOL_LABELS if protocol.lower().startswith(prefix)), protocol)
    column = Column(key=f"winrate|{protocol}|{judge}", label=f"{base} WR", kind="winrate", demo_judge=demo,
                    details={"protocol": protocol, "judge": data.get("judge"), "judge_model": data.get("judge_model"),
                             "template_version": data.get("template_version")})
    return [(column, winrate, interval)]


def reward_observations(path: Path, data: dict) -> list[tuple[Column, float, tuple[float, float] | None]]:
    """The mean reward of a ``prefcli eval reward`` result, x 100 when every score is in [0, 1] (raw otherwise),
    with its ``ci95``; nothing when no output was scored."""
    if data.get("mean") is None:
        return []
    mean = _number(path, data, "mean")
    scale = 100.0 if data.get("unit_interval") is True else 1.0
    ci95 = data.get("ci95")
    interval = (scale * float(ci95[0]), scale * float(ci95[1])) if isinstance(ci95, list) and len(ci95) == 2 \
        else None
    judge = str(data.get("reward_model") or data.get("reward"))
    column = Column(key=f"reward|{judge}|{scale}", label="reward x100" if scale == 100 else "reward (raw)",
                    kind="reward", details={"reward": data.get("reward"), "judge_model": judge,
                                            "unit": "percent" if scale == 100 else "raw"})
    return [(column, scale * mean, interval)]


def harness_observations(path: Path, data: dict) -> list[tuple[Column, float, tuple[float, float] | None]]:
    """One (column, value, value +- 1.96 stderr) per headline task of a ``harness.json``; proportions (accuracy,
    exact match, ...) are scaled to percent."""
    headline = data.get("headline")
    if not isinstance(headline, dict):
        raise DataError(path, None, "missing or not an object", field="headline")
    found = []
    for task, entry in headline.items():
        if not isinstance(entry, dict):
            raise DataError(path, None, "must be an object", field=f"headline.{task}")
        value = entry.get("value")
        if value is None:
            continue  # the metric was not produced; nothing to average
        value = _number(path, entry, "value")
        stderr = entry.get("stderr")
        metric, shots = str(entry.get("metric")), entry.get("num_fewshot")
        scale = 100.0 if metric.split(",")[0] in _PROPORTION_METRICS else 1.0
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


def collect(run_dirs: list[str], name_by: str = "dir") -> tuple[list[Observation], list[str]]:
    """Every observation in the given run directories, and the result files that hold no number (a judged run
    whose judgments all failed). A directory without result files is a ``PrefcliError``."""
    if name_by not in NAME_BY:
        raise ConfigError(f"--name-by: must be one of {', '.join(NAME_BY)}, got {name_by!r}")
    if not run_dirs:
        raise ConfigError("give at least one run directory")
    observations: list[Observation] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    for given in run_dirs:
        run_dir = Path(given)
        if not run_dir.is_dir():
            raise PrefcliError(f"{given}: not a directory")
        if run_dir.resolve() in seen:
            continue
        seen.add(run_dir.resolve())
        files = find_result_files(run_dir)
        if not files:
            raise PrefcliError(f"{given}: no results.json or harness.json in it or in its subdirectories")
        parsed = [(path, read_json_object(path)) for path in files]
        models = [data.get("model") for _, data in parsed if isinstance(data.get("model"), str)]
        name = run_name(run_dir, given, name_by, models[0] if models else None)
        for path, data in parsed:
            if path.name == "harness.json":
                config = data.get("config") if isinstance(data.get("config"), dict) else {}
                seed = config.get("seed")
                found = harness_observations(path, data)
            elif data.get("kind") == "reward":
                seed = data.get("seed")
                found = reward_observations(path, data)
            else:
                seed = data.get("seed")
                found = winrate_observations(path, data)
                if not found:
                    skipped.append(f"{path}: no winrate (no judgment succeeded)")
            for column, value, interval in found:
                observations.append(Observation(run=given, name=name, column=column, value=value,
                                                interval=interval, seed=seed if isinstance(seed, int) else None,
                                                source=str(path)))
    return observations, skipped


def _sample_std(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def aggregate_cell(observations: list[Observation]) -> dict:
    """Mean, sample std and 95% interval of one (row, column) cell."""
    values = [obs.value for obs in observations]
    n = len(values)
    mean = sum(values) / n
    std = _sample_std(values)
    if n == 1:
        interval = list(observations[0].interval) if observations[0].interval else None
        method = ("1.96 stderr" if observations[0].column.kind == "harness" else "run ci95") if interval else None
    else:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        interval, method = [mean - half, mean + half], f"t-interval over {n} runs"
    column = observations[0].column
    if interval is not None and (column.kind == "winrate" or column.details.get("unit") == "percent"):
        interval = [max(0.0, interval[0]), min(100.0, interval[1])]  # a percentage cannot leave [0, 100]
    return {"n": n, "mean": mean, "std": std, "ci95": interval, "interval_method": method, "values": values,
            "seeds": [obs.seed for obs in observations], "runs": [obs.run for obs in observations]}


def build_report(observations: list[Observation], name_by: str = "dir", skipped: list[str] | None = None) -> dict:
    """The report as a JSON-ready dict: ordered columns, and one row per name with a cell per column."""
    from prefcli import __version__

    rows: dict[str, dict] = {}
    columns: dict[str, Column] = {}
    for obs in observations:
        columns.setdefault(obs.column.key, obs.column)
        row = rows.setdefault(obs.name, {"name": obs.name, "runs": [], "cells": {}})
        if obs.run not in row["runs"]:
            row["runs"].append(obs.run)
    ordered = sorted(columns.values(), key=lambda c: (c.kind != "winrate", _protocol_rank(c) if c.kind == "winrate"
                                                        else 0))  # stable: first appearance within each kind
    labels = _column_labels(ordered)
    for row in rows.values():
        for column in ordered:
            members = [obs for obs in observations if obs.name == row["name"] and obs.column.key == column.key]
            if members:
                row["cells"][column.key] = aggregate_cell(members)
    demo = sorted({column.details.get("judge_model") or column.details.get("judge")
                   for column in ordered if column.demo_judge})
    return {
        "name_by": name_by,
        "columns": [{"key": c.key, "label": labels[c.key], "kind": c.kind, "demo_judge": c.demo_judge, **c.details}
                    for c in ordered],
        "rows": list(rows.values()),
        "demo_judges": demo,
        "skipped": list(skipped or []),
        "prefcli_version": __version__,
    }


def _protocol_rank(column: Column) -> int:
    protocol = column.details.get("protocol", "").lower()
    for rank, (prefix, _) in enumerate(_PROTOCOL_LABELS):
        if protocol.startswith(prefix):
            return rank
    return len(_PROTOCOL_LABELS)


def _column_labels(columns: list[Column]) -> dict[str, str]:
    """Winrate labels name their judge when a protocol was judged by more than one judge, and always say so
    when the judge was the demo judge."""
    judges_per_label: dict[str, set] = {}
    for column in columns:
        judges_per_label.setdefault(column.label, set()).add(column.key)
    labels = {}
    for column in columns:
        label = column.label
        judge = column.details.get("judge_model") or column.details.get("judge")
        if column.kind == "winrate" and column.demo_judge:
            label += f" (demo judge {judge})"
        elif column.kind == "winrate" and len(judges_per_label[column.label]) > 1:
            label += f" [{judge}]"
        labels[column.key] = label
    return labels


def format_cell(cell: dict | None, digits: int = 2) -> str:
    if cell is None:
        return "–"
    if cell["std"] is None:
        return f"{cell['mean']:.{digits}f}"
    return f"{cell['mean']:.{digits}f} ({cell['std']:.{digits}f})"


def render_markdown(report: dict) -> str:
    columns = report["columns"]
    lines = ["# prefcli evaluation report", "",
             "| Method | runs | " + " | ".join(_header(c) for c in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    for row in report["rows"]:
        cells = [format_cell(row["cells"].get(c["key"])) for c in columns]
        lines.append(f"| {row['name']} | {len(row['runs'])} | " + " | ".join(cells) + " |")
    lines += ["", ("Cells are mean (std) over a row's runs, in percent; std is the sample standard deviation "
                   "(n - 1); a single run shows its value alone. Winrates are adjusted: (W + T/2) / (W + L + T). "
                   "Harness proportions are lm-eval's values x 100."), ""]
    if report["demo_judges"]:
        judges = ", ".join(f"`{judge}`" for judge in report["demo_judges"])
        lines += [(f"**Demo judge:** {judges} is prefcli's deterministic built-in demo judge, not a language model: "
                   "its winrates only show the pipeline working and say nothing about model quality."), ""]
    if report.get("skipped"):
        lines += ["Result files without a number (left out): " + "; ".join(f"`{item}`" for item in report["skipped"]),
                  ""]
    lines += ["## Runs", "", "| Method | run | seeds |", "|---|---|---|"]
    for row in report["rows"]:
        for run in row["runs"]:
            seeds = sorted({seed for cell in row["cells"].values() for seed, r in zip(cell["seeds"], cell["runs"])
                            if r == run and seed is not None})
            lines.append(f"| {row['name']} | `{run}` | {', '.join(map(str, seeds)) or '–'} |")
    return "\n".join(lines) + "\n"


def _header(column: dict) -> str:
    return column["label"] if column.get("unit") == "raw" or column["kind"] == "reward" else f"{column['label']} (%)"


def render_chart(report: dict, path: Path) -> None:
    """Grouped bars (one group per column, one bar per row) with the 95% intervals, written as PNG."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("the report chart needs matplotlib (pip install 'prefcli[eval]')") from None
    from prefcli.data.atomic import atomic_open

    columns, rows = report["columns"], report["rows"]
    width = 0.8 / max(1, len(rows))
    figure = Figure(figsize=(max(6.0, 1.6 * len(columns) + 2), 4.8), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, row in enumerate(rows):
        xs, heights, lower, upper = [], [], [], []
        for position, column in enumerate(columns):
            cell = row["cells"].get(column["key"])
            if cell is None:
                continue
            xs.append(position + (index - (len(rows) - 1) / 2) * width)
            heights.append(cell["mean"])
            low, high = cell["ci95"] if cell["ci95"] else (cell["mean"], cell["mean"])
            lower.append(max(0.0, cell["mean"] - low))
            upper.append(max(0.0, high - cell["mean"]))
        axes.bar(xs, heights, width=width, yerr=[lower, upper], capsize=3, label=f"{row['name']} (n={len(row['runs'])})")
    axes.set_xticks(range(len(columns)))
    axes.set_xticklabels([column["label"] for column in columns], rotation=25, ha="right", fontsize=8)
    axes.set_ylabel("percent, or raw where labeled (bar: mean; whisker: 95% interval)", fontsize=8)
    axes.set_ylim(bottom=0)
    title = "prefcli evaluation report"
    if report["demo_judges"]:
        title += " - winrates from a DEMO judge"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    with atomic_open(path, "wb") as handle:
        figure.savefig(handle, format="png")


def write_report(report: dict, output_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and ``report.png`` atomically into ``output_dir``."""
    from prefcli.data.atomic import atomic_open, write_json

    output_dir = Path(output_dir)
    paths = {"markdown": output_dir / "report.md", "json": output_dir / "report.json",
             "chart": output_dir / "report.png"}
    with atomic_open(paths["markdown"]) as handle:
        handle.write(render_markdown(report))
    write_json(paths["json"], report)
    render_chart(report, paths["chart"])
    return paths
