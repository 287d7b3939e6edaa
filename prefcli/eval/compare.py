"""Paired comparison of two judged runs on the same items: ``prefcli eval compare RUN_A RUN_B``.

Both runs judged their model against the same reference with the same protocol, template and judge, so an item's
judgments in A and in B are paired. Per item ``i`` and run ``r``: the score sum ``S_ri = sum(w * s)`` and weight sum
``W_ri = sum(w)`` of its successful judgments (as in ``winrate.py``). Over the items ``I`` judged in both runs:

    winrate_r = 100 * sum_I S_ri / sum_I W_ri        diff = winrate_a - winrate_b  (percentage points)

``ci95``: percentile interval of ``diff`` over bootstrap resamples of the common items (the same resampled items
in both runs: a paired bootstrap). ``p_value``: two-sided paired permutation (randomization) test of "A and B are
exchangeable on every item": each item's (S, W) pair of A and B is swapped with probability 1/2, and p is the share
of such relabelings whose |diff| is at least the observed one; exact over all 2^n relabelings when 2^n <= ``rounds``,
otherwise Monte Carlo with ``(k + 1) / (rounds + 1)``.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prefcli.data.readers import iter_rows
from prefcli.errors import ConfigError, DataError

# results.json fields that must agree for the two runs to be paired
MUST_MATCH = (("protocol", "protocol"), ("template_version", "template version"), ("judge_model", "judge"),
              ("reference", "reference"))


@dataclass(frozen=True)
class RunScores:
    path: Path
    results: dict
    items: dict[str, tuple[float, float]]  # instruction -> (sum w*s, sum w) over successful judgments


def load_run(run_dir: str | Path) -> RunScores:
    """A run's ``results.json`` and its per-item score sums from ``judgments.jsonl``."""
    run_dir = Path(run_dir)
    results_file, judgments_file = run_dir / "results.json", run_dir / "judgments.jsonl"
    for file in (results_file, judgments_file):
        if not file.is_file():
            raise DataError(file, None, "not found (is this a prefcli eval alpaca/arena run directory?)")
    try:
        results = json.loads(results_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(results_file, None, f"not valid JSON: {error}") from None
    if not isinstance(results, dict):
        raise DataError(results_file, None, "expected a JSON object")
    items: dict[str, tuple[float, float]] = {}
    for line_number, row in iter_rows(judgments_file):
        score, weight = row.get("model_score"), row.get("weight") or 0
        if row.get("status") == "failed" or score is None or not weight:
            continue
        if not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(judgments_file, line_number, f"not a finite number: {score!r}", field="model_score")
        total, weights = items.get(row["instruction"], (0.0, 0.0))
        items[row["instruction"]] = (total + float(score) * weight, weights + weight)
    return RunScores(run_dir, results, items)


def check_comparable(a: RunScores, b: RunScores) -> None:
    """ConfigError naming the first setting in which the runs differ."""
    for key, label in MUST_MATCH:
        if a.results.get(key) != b.results.get(key):
            raise ConfigError(f"{a.path} and {b.path} were judged with a different {label} "
                              f"({a.results.get(key)!r} vs {b.results.get(key)!r}): a paired comparison needs "
                              "the same protocol, template, judge and reference")
    ref_a, ref_b = _reference_checksum(a.path), _reference_checksum(b.path)
    if ref_a and ref_b and ref_a != ref_b:
        raise ConfigError(f"{a.path} and {b.path} were judged against different reference files "
                          "(checksums differ): a paired comparison needs the same reference")


def _reference_checksum(run_dir: Path) -> str | None:
    from prefcli.data.sidecar import sidecar_path

    meta = sidecar_path(run_dir / "results.json")
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("inputs", {}).get("reference")
    except (OSError, json.JSONDecodeError, AttributeError):
        return None


def paired_arrays(a: RunScores, b: RunScores) -> tuple[list[str], np.ndarray]:
    """The common instructions (in A's order) and an ``(n, 4)`` array of S_a, W_a, S_b, W_b."""
    common = [instruction for instruction in a.items if instruction in b.items]
    table = np.array([[*a.items[i], *b.items[i]] for i in common], dtype=np.float64).reshape(-1, 4)
    return common, table


def diff_of(table: np.ndarray) -> float:
    return 100.0 * (table[:, 0].sum() / table[:, 1].sum() - table[:, 2].sum() / table[:, 3].sum())


def paired_bootstrap_ci(table: np.ndarray, *, rounds: int = 2000, seed: int = 0, level: float = 0.95
                        ) -> tuple[float, float]:
    """Percentile interval of ``diff`` over resamples of the rows (the same rows for A and B)."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(table), size=(rounds, len(table)))
    sums = table[index].sum(axis=1)  # (rounds, 4)
    diffs = 100.0 * (sums[:, 0] / sums[:, 1] - sums[:, 2] / sums[:, 3])
    tail = (1.0 - level) / 2 * 100.0
    low, high = np.percentile(diffs, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_permutation_p(table: np.ndarray, *, rounds: int = 10000, seed: int = 0) -> tuple[float, bool]:
    """``(p, exact)``: two-sided p-value of the paired permutation test described in the module docstring."""
    observed = abs(diff_of(table))
    n = len(table)
    if 2 ** n <= rounds:
        flips = np.array(list(itertools.product((False, True), repeat=n)), dtype=bool).reshape(-1, n)
        exact = True
    else:
        flips = np.random.default_rng(seed).random((rounds, n)) < 0.5
        exact = False
    a = np.where(flips[..., None], table[None, :, 2:], table[None, :, :2]).sum(axis=1)
    b = np.where(flips[..., None], table[None, :, :2], table[None, :, 2:]).sum(axis=1)
    diffs = np.abs(100.0 * (a[:, 0] / a[:, 1] - b[:, 0] / b[:, 1]))
    extreme = int((diffs >= observed - 1e-9).sum())
    return (extreme / len(flips), True) if exact else ((extreme + 1) / (rounds + 1), False)


def compare_runs(run_a: str | Path, run_b: str | Path, *, bootstrap_rounds: int = 2000,
                 permutation_rounds: int = 10000, seed: int = 0) -> dict:
    """The content of ``compare.json`` for two run directories."""
    a, b = load_run(run_a), load_run(run_b)
    check_comparable(a, b)
    common, table = paired_arrays(a, b)
    if not common:
        raise ConfigError(f"{a.path} and {b.path} have no judged item in common")
    low, high = paired_bootstrap_ci(table, rounds=bootstrap_rounds, seed=seed)
    p_value, exact = paired_permutation_p(table, rounds=permutation_rounds, seed=seed)
    return {
        "run_a": str(a.path), "run_b": str(b.path),
        "model_a": a.results.get("model"), "model_b": b.results.get("model"),
        "protocol": a.results.get("protocol"), "template_version": a.results.get("template_version"),
        "judge_model": a.results.get("judge_model"), "reference": a.results.get("reference"),
        "n": len(common), "only_in_a": len(a.items) - len(common), "only_in_b": len(b.items) - len(common),
        "winrate_a": round(100.0 * table[:, 0].sum() / table[:, 1].sum(), 4),
        "winrate_b": round(100.0 * table[:, 2].sum() / table[:, 3].sum(), 4),
        "diff": round(diff_of(table), 4), "ci95": [round(low, 4), round(high, 4)],
        "p_value": round(p_value, 6), "p_value_exact": exact,
        "bootstrap_rounds": bootstrap_rounds, "permutation_rounds": permutation_rounds, "seed": seed,
        "demo_judge": bool(a.results.get("demo_judge")),
    }
