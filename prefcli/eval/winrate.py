"""Winrates from judgments: adjusted winrate, a bootstrap 95% interval over items, and the flip rate.

Each successful judgment gives the model a score ``s`` (1 win, 0.5 tie, 0 loss; a probability under AlpacaEval
2.0's log-prob weighting) counted ``w`` times (Arena-Hard counts a strong verdict as 3 games). Then

    winrate = 100 * sum(w * s) / sum(w)

which for discrete verdicts is the adjusted winrate 100 * (W + T/2) / (W + L + T) with W, L, T the weighted counts
of wins, losses and ties; for AlpacaEval it equals ``alpaca_eval.metrics.get_winrate``'s ``win_rate`` on
preferences ``1 + s``. The interval resamples items (all judgments of an item together) with replacement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tally:
    wins: int
    losses: int
    ties: int
    winrate: float          # percent, from sum(w * s) / sum(w)
    discrete_winrate: float  # percent, (W + T/2) / (W + L + T)


def adjusted_winrate(wins: float, losses: float, ties: float) -> float:
    """100 * (W + T/2) / (W + L + T); NaN when there is nothing to count."""
    total = wins + losses + ties
    return float("nan") if total == 0 else 100.0 * (wins + ties / 2) / total


def tally(judgments: list[tuple[float, int]]) -> Tally:
    """Counts and winrates of ``(score, weight)`` pairs; a score above 1/2 is a win, below a loss, equal a tie."""
    wins = sum(weight for score, weight in judgments if score > 0.5)
    losses = sum(weight for score, weight in judgments if score < 0.5)
    ties = sum(weight for score, weight in judgments if score == 0.5)
    total_weight = sum(weight for _, weight in judgments)
    winrate = float("nan") if total_weight == 0 else 100.0 * sum(s * w for s, w in judgments) / total_weight
    return Tally(wins, losses, ties, winrate, adjusted_winrate(wins, losses, ties))


def bootstrap_ci(items: list[list[tuple[float, int]]], *, rounds: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval (percent) of the winrate, resampling items with replacement.

    ``items`` holds each item's successful ``(score, weight)`` judgments; items without any are left out.
    """
    items = [judgments for judgments in items if judgments]
    if not items:
        return (float("nan"), float("nan"))
    score_sums = np.array([sum(s * w for s, w in judgments) for judgments in items], dtype=np.float64)
    weight_sums = np.array([sum(w for _, w in judgments) for judgments in items], dtype=np.float64)
    rng = np.random.default_rng(seed)
    rates = []
    chunk = max(1, min(rounds, 2_000_000 // len(items)))
    for start in range(0, rounds, chunk):
        index = rng.integers(0, len(items), size=(min(chunk, rounds - start), len(items)))
        rates.append(score_sums[index].sum(axis=1) / weight_sums[index].sum(axis=1))
    rates = np.concatenate(rates) * 100.0
    tail = (1.0 - level) / 2 * 100.0
    low, high = np.percentile(rates, [tail, 100.0 - tail])
    return (float(low), float(high))


def flip_rate(pairs: list[tuple[float, float]]) -> float | None:
    """Percent of items whose two orders disagree: the model's outcome (win / tie / loss, strength ignored) with
    the model shown first differs from the outcome with the model shown second. None without complete pairs."""
    if not pairs:
        return None

    def outcome(score: float) -> int:
        return (score > 0.5) - (score < 0.5)

    flips = sum(outcome(first) != outcome(second) for first, second in pairs)
    return 100.0 * flips / len(pairs)
