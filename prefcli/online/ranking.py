"""Iterative pairwise ranking with a judge (Chen et al., 2024b, as used by MC-PO's instruct and online setups):
compare the first two candidates, then the winner with the next one, and so on; the last winner is the preferred
completion. Under transitivity and symmetry of the judge this finds the best of ``n`` candidates in ``n - 1``
comparisons.

Orders. By default each comparison is judged once, with the challenger shown first or second by a seeded coin
(sha256 of seed, instruction and round), so position bias does not systematically favour either side. With
``both_orders`` every comparison is judged twice (challenger first, then second): ``2 (n - 1)`` judge calls.

Decision. The challenger's score in a judgment is 1 (preferred), 0 (not) or a probability (log-prob weighted
protocols); with both orders the two scores are averaged. The challenger replaces the incumbent only when its
(mean) score is strictly above 1/2. A tie, or a disagreement between the two orders (each order preferring the
output shown first, i.e. pure position bias), keeps the incumbent: the earlier candidate wins ties.

Rounds run one after another (round ``r`` needs round ``r - 1``'s winner) but each round judges every prompt's
comparison concurrently, through the durable judgment store: a rerun repeats no successful call.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from prefcli.errors import JudgeError
from prefcli.settings import JudgeSettings  # noqa: F401 - the settings the ranking is run with


@dataclass
class Comparison:
    """One step of the ranking: ``challenger`` against the ``incumbent`` (candidate indices); ``scores`` are the
    challenger's score in each judged order (``challenger_first`` says which)."""

    round: int
    incumbent: int
    challenger: int
    challenger_first: list[bool]
    scores: list[float]
    winner: int
    reused: int = 0

    def to_dict(self) -> dict:
        """The record's view (``reused`` describes one run, not the data, and stays out)."""
        values = asdict(self)
        del values["reused"]
        return values


@dataclass
class Ranking:
    winner: int
    comparisons: list[Comparison] = field(default_factory=list)


def challenger_shown_first(seed: int, instruction: str, round_index: int) -> bool:
    """The seeded coin of the one-order policy (stable across reruns, so the store is hit)."""
    digest = hashlib.sha256(f"prefcli-rank-order:{seed}:{round_index}:{instruction}".encode()).digest()
    return digest[0] % 2 == 0


def count_judgments(candidate_sets: list[list[str]], both_orders: bool) -> int:
    """The judge calls the ranking plans: ``(n - 1)`` per prompt, twice that with both orders."""
    return sum(max(0, len(texts) - 1) for texts in candidate_sets) * (2 if both_orders else 1)


def rank_candidates(instructions: list[str], candidate_sets: list[list[str]], *, judge, protocol, store,
                    both_orders: bool = False, seed: int = 0, concurrency: int = 8, max_retries: int = 3,
                    retry_delay: float = 1.0, max_tokens: int | None = None,
                    progress: Callable[[int, int], None] | None = None) -> list[Ranking]:
    """The iterative pairwise ranking of each prompt's candidates (see the module docstring). ``progress(done,
    total)`` is called after every judgment. Raises ``JudgeError`` when a judgment failed after its retries
    (the successful ones are in the store, so rerunning repeats none). The judge is closed at the end."""
    if len(instructions) != len(candidate_sets):
        raise ValueError("instructions and candidate_sets must have the same length")
    return asyncio.run(_rank(instructions, candidate_sets, judge=judge, protocol=protocol, store=store,
                             both_orders=both_orders, seed=seed, concurrency=concurrency,
                             max_retries=max_retries, retry_delay=retry_delay, max_tokens=max_tokens,
                             progress=progress))


async def _rank(instructions, candidate_sets, *, judge, protocol, store, both_orders, seed, concurrency,
                max_retries, retry_delay, max_tokens, progress) -> list[Ranking]:
    from prefcli.eval.run import PlannedJudgment, judge_all_async
    from prefcli.eval.store import judgment_key

    rankings = [Ranking(winner=0) for _ in candidate_sets]
    total = count_judgments(candidate_sets, both_orders)
    done = [0]

    def on_result(_result) -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    rounds = max((len(texts) for texts in candidate_sets), default=0)
    try:
        for round_index in range(1, rounds):
            planned: list[PlannedJudgment] = []
            for item, (instruction, texts) in enumerate(zip(instructions, candidate_sets)):
                if round_index >= len(texts):
                    continue
                incumbent = rankings[item].winner
                orders = [True, False] if both_orders else [challenger_shown_first(seed, instruction, round_index)]
                for first_is_challenger in orders:
                    challenger_text, incumbent_text = texts[round_index], texts[incumbent]
                    first, second = ((challenger_text, incumbent_text) if first_is_challenger
                                     else (incumbent_text, challenger_text))
                    key = None if challenger_text == incumbent_text else judgment_key(
                        judge.name, protocol.template_version, instruction, first, second, first_is_challenger)
                    planned.append(PlannedJudgment(item, instruction, first, second, first_is_challenger, key))
            results = await judge_all_async(planned, protocol=protocol, judge=judge, store=store,
                                            concurrency=concurrency, max_retries=max_retries,
                                            retry_delay=retry_delay, max_tokens=max_tokens, on_result=on_result,
                                            check_judge=False)
            failed = [result for result in results if result.status == "failed"]
            if failed:
                raise JudgeError(
                    f"{len(failed)} of {len(results)} ranking judgments failed in round {round_index} (last error: "
                    f"{failed[-1].error}); the successful ones are stored, rerun to retry only the failed ones")
            by_item: dict[int, list] = {}
            for result in results:
                by_item.setdefault(result.planned.item, []).append(result)
            for item, item_results in by_item.items():
                scores = [float(result.model_score) for result in item_results]
                incumbent = rankings[item].winner
                winner = round_index if sum(scores) / len(scores) > 0.5 else incumbent
                rankings[item].comparisons.append(Comparison(
                    round=round_index, incumbent=incumbent, challenger=round_index,
                    challenger_first=[result.planned.model_first for result in item_results], scores=scores,
                    winner=winner, reused=sum(result.reused for result in item_results)))
                rankings[item].winner = winner
    finally:
        await judge.aclose()
    return rankings
