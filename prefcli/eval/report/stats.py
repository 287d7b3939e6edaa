"""The statistics of one report cell: mean, sample standard deviation and a 95% interval."""

from __future__ import annotations

import math
import statistics

from scipy import stats

from prefcli.eval.report.columns import Observation


def t_quantile_975(degrees_of_freedom: int) -> float:
    """The two-sided 95% quantile of Student's t with ``degrees_of_freedom``."""
    return float(stats.t.ppf(0.975, degrees_of_freedom))


def sample_std(values: list[float]) -> float | None:
    """The standard deviation with n - 1 in the denominator; None for fewer than two values."""
    return statistics.stdev(values) if len(values) >= 2 else None


def aggregate_cell(observations: list[Observation]) -> dict:
    """Mean, sample std and 95% interval of one (row, column) cell: one run keeps its own interval (the judge's
    bootstrap ``ci95``, or 1.96 stderr of a harness metric); several runs get the t-interval of their mean."""
    values = [obs.value for obs in observations]
    n = len(values)
    mean = sum(values) / n
    std = sample_std(values)
    column = observations[0].column
    if n == 1:
        interval = list(observations[0].interval) if observations[0].interval else None
        method = column.single_run_interval if interval else None
    else:
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        interval, method = [mean - half, mean + half], f"t-interval over {n} runs"
    if interval is not None and column.is_percent:
        interval = [max(0.0, interval[0]), min(100.0, interval[1])]  # a percentage cannot leave [0, 100]
    return {"n": n, "mean": mean, "std": std, "ci95": interval, "interval_method": method, "values": values,
            "seeds": [obs.seed for obs in observations], "runs": [obs.run for obs in observations]}
