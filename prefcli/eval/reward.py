"""``prefcli eval reward``: the mean true reward of a model's outputs under a reward function or reward model.

Each output is scored with ``reward:FILE.py:FUNCTION`` / ``reward:package.module:FUNCTION`` (the prompt is the
instruction as one user turn) or ``rm:PATH_OR_ID`` (batched). A score that fails (the function raised, or the
value is not a finite number) is reported per item and left out of the statistics. The summary holds the mean, the
sample standard deviation over items, the t-interval of the mean (``ci95``) and ``n``, the number of scored items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefcli.errors import ConfigError
from prefcli.eval.judges.reward import RewardFunctionError


@dataclass
class ScoredItem:
    instruction: str
    output: str
    score: float | None
    error: str | None = None


class _FunctionScorer:
    def __init__(self, spec: str):
        from prefcli.eval.judges.reward import load_reward_function

        self.reward = load_reward_function(spec)
        self.name = self.reward.name

    def score_all(self, prompts, completions, progress=None) -> list[tuple[float | None, str | None]]:
        results = []
        for index, (prompt, completion) in enumerate(zip(prompts, completions)):
            try:
                results.append((self.reward.score(prompt, completion), None))
            except RewardFunctionError as error:
                results.append((None, str(error)))
            if progress is not None:
                progress(index + 1)
        return results


class _ModelScorer:
    def __init__(self, spec: str, batch_size: int):
        from prefcli.eval.judges.rm import RewardModelScorer

        self.scorer = RewardModelScorer(spec[len("rm:"):], batch_size=batch_size)
        self.name = self.scorer.name

    def score_all(self, prompts, completions, progress=None) -> list[tuple[float | None, str | None]]:
        results = []
        size = self.scorer.batch_size
        for start in range(0, len(prompts), size):
            batch_prompts, batch_outputs = prompts[start:start + size], completions[start:start + size]
            try:
                results.extend((score, None) for score in self.scorer.score_batch(batch_prompts, batch_outputs))
            except RewardFunctionError:  # find which item of the batch is non-finite
                for prompt, completion in zip(batch_prompts, batch_outputs):
                    try:
                        results.append((self.scorer.score(prompt, completion), None))
                    except RewardFunctionError as error:
                        results.append((None, str(error)))
            if progress is not None:
                progress(len(results))
        return results


def make_scorer(spec: str, *, batch_size: int = 16):
    """The scorer ``--reward`` names: ``reward:…`` (a Python function) or ``rm:…`` (a reward model)."""
    if spec.startswith("reward:"):
        return _FunctionScorer(spec)
    if spec.startswith("rm:") and len(spec) > 3:
        return _ModelScorer(spec, batch_size)
    raise ConfigError(f"--reward: {spec!r} is neither reward:FILE.py:FUNCTION, reward:package.module:FUNCTION "
                      "nor rm:PATH_OR_ID")


def score_outputs(scorer, items: list[tuple[str, str]], progress=None) -> list[ScoredItem]:
    """One :class:`ScoredItem` per ``(instruction, output)``."""
    prompts = [[{"role": "user", "content": instruction}] for instruction, _ in items]
    scores = scorer.score_all(prompts, [output for _, output in items], progress)
    return [ScoredItem(instruction, output, score, error)
            for (instruction, output), (score, error) in zip(items, scores)]


def summarize_scores(scored: list[ScoredItem]) -> dict:
    """``mean``, ``std`` (sample, n - 1), ``ci95`` (t-interval of the mean), ``n`` (scored items), ``failed``, and
    ``unit_interval`` (every score in [0, 1])."""
    from scipy import stats

    values = [item.score for item in scored if item.score is not None]
    n = len(values)
    failed = len(scored) - n
    if n == 0:
        return {"mean": None, "std": None, "ci95": None, "n": 0, "failed": failed, "unit_interval": False}
    mean = math.fsum(values) / n
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (n - 1)) if n > 1 else None
    ci95 = None
    if std is not None:
        half = float(stats.t.ppf(0.975, n - 1)) * std / math.sqrt(n)
        ci95 = [mean - half, mean + half]
    return {"mean": mean, "std": std, "ci95": ci95, "n": n, "failed": failed,
            "min": min(values), "max": max(values), "unit_interval": all(0.0 <= value <= 1.0 for value in values)}
