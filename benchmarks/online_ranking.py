"""Ranking throughput of the online candidate step: P prompts × n candidates ranked by iterative pairwise ranking
(n - 1 judge calls per prompt) with a judge that answers after ``--delay`` seconds (the length rule behind an
artificial latency, standing in for a served judge model).

Ours: ``prefcli.online.ranking.rank_candidates`` — rounds in sequence, every prompt's comparison of a round judged
concurrently (``--concurrency``) through the durable SQLite store. The ideal is rounds × ceil(P / concurrency) ×
delay seconds.

Measured in the same run, as the peer: the direct reading of the algorithm — each prompt ranked on its own, one
comparison after another (no store). Then a rerun of ours against the same store (every judgment reused).

    python benchmarks/online_ranking.py [--prompts 200] [--candidates 6] [--delay 0.01] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import tempfile
import time
from pathlib import Path

from prefcli.eval.judges.base import JudgeRequest
from prefcli.eval.judges.rule import LengthRuleJudge
from prefcli.eval.protocols import load_protocol
from prefcli.eval.store import JudgmentStore
from prefcli.online.ranking import rank_candidates


class SlowJudge:
    is_demo = True
    name = "rule:length-slow"

    def __init__(self, protocol, delay: float):
        self.inner, self.delay, self.calls = LengthRuleJudge(protocol), delay, 0

    async def complete(self, request):
        self.calls += 1
        await asyncio.sleep(self.delay)
        return await self.inner.complete(request)

    async def aclose(self):
        return None


async def sequential(instructions, sets, judge, protocol) -> list[int]:
    """Each prompt on its own: compare the incumbent with the next candidate, one call at a time."""
    winners = []
    for instruction, texts in zip(instructions, sets):
        incumbent = 0
        for challenger in range(1, len(texts)):
            request = JudgeRequest(protocol.render(instruction, texts[challenger], texts[incumbent]), instruction,
                                   texts[challenger], texts[incumbent], protocol.max_tokens)
            verdict = protocol.parse((await judge.complete(request)).text)
            if verdict.first > 0.5:
                incumbent = challenger
        winners.append(incumbent)
    return winners


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--candidates", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    rng = random.Random(0)
    sets = [["x" * length for length in rng.sample(range(5, 500), args.candidates)] for _ in range(args.prompts)]
    instructions = [f"prompt {i}" for i in range(args.prompts)]
    expected = [max(range(args.candidates), key=lambda k, s=s: len(s[k])) for s in sets]
    protocol = load_protocol("alpaca")
    calls = args.prompts * (args.candidates - 1)

    peer_judge = SlowJudge(protocol, args.delay)
    started = time.perf_counter()
    peer_winners = asyncio.run(sequential(instructions, sets, peer_judge, protocol))
    peer_seconds = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store.sqlite"
        judge = SlowJudge(protocol, args.delay)
        with JudgmentStore(store_path) as store:
            started = time.perf_counter()
            ours = rank_candidates(instructions, sets, judge=judge, protocol=protocol, store=store,
                                   concurrency=args.concurrency, retry_delay=0.0)
            ours_seconds = time.perf_counter() - started
        rerun_judge = SlowJudge(protocol, args.delay)
        with JudgmentStore(store_path) as store:
            started = time.perf_counter()
            rank_candidates(instructions, sets, judge=rerun_judge, protocol=protocol, store=store,
                            concurrency=args.concurrency)
            rerun_seconds = time.perf_counter() - started

    assert [r.winner for r in ours] == expected == peer_winners
    assert judge.calls == peer_judge.calls == calls and rerun_judge.calls == 0
    ideal = (args.candidates - 1) * math.ceil(args.prompts / args.concurrency) * args.delay
    print(f"{args.prompts} prompts x {args.candidates} candidates = {calls} judge calls, "
          f"delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"peer (sequential per prompt): {peer_seconds:8.2f} s")
    print(f"ours (round-batched, store):  {ours_seconds:8.2f} s   ideal {ideal:.2f} s   "
          f"speed-up x{peer_seconds / ours_seconds:.1f}   ours / ideal {ours_seconds / ideal:.2f}")
    print(f"ours rerun (all from store):  {rerun_seconds:8.2f} s   0 judge calls")


if __name__ == "__main__":
    main()
