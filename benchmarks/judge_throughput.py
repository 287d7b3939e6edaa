"""Judging throughput: N judgments (AlpacaEval's 805 by default) against a local OpenAI-compatible judge that answers
after 200 ms, at --concurrency 16. The ideal is N * delay / concurrency seconds; the target is at most 1.25x.

Measured in the same run, as the peer: the bare ``openai`` async client firing the same requests under a semaphore
(no store, no parsing, no retries) — the floor any judging loop on this client can reach.

    python benchmarks/judge_throughput.py [--n 805] [--delay 0.2] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_judge(delay: float) -> tuple[subprocess.Popen, int]:
    """The loopback judge of the tests, in its own process so it does not share our interpreter."""
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "judge_servers.py"), "--delay", str(delay)],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise SystemExit(f"the judge server did not start: {line!r}")
    return process, int(line.split()[1])


def make_items(n: int):
    from prefcli.eval.items import EvalItem

    return [EvalItem(f"Instruction {i}: explain topic {i}.", f"Model answer {i}. q={i % 9 + 1}",
                     f"Reference answer {i}. q={(i * 5) % 9 + 1}", "policy", "reference") for i in range(n)]


def time_prefcli(base_url: str, items, concurrency: int, store_path: Path) -> tuple[float, dict]:
    from prefcli.eval.judges import make_judge
    from prefcli.eval.protocols import load_protocol
    from prefcli.eval.run import judge_all_async, plan_judgments, summarize
    from prefcli.eval.store import JudgmentStore

    protocol = load_protocol("alpaca")
    judge = make_judge(base_url, protocol=protocol, model="judge", timeout=30)
    planned = plan_judgments(protocol, items, judge_name=judge.name, seed=0)
    with JudgmentStore(store_path) as store:
        start = time.perf_counter()
        async def judge_and_close():
            try:
                return await judge_all_async(planned, protocol=protocol, judge=judge, store=store,
                                             concurrency=concurrency, max_retries=3)
            finally:
                await judge.aclose()

        results = asyncio.run(judge_and_close())
        elapsed = time.perf_counter() - start
    return elapsed, summarize(protocol, items, results, seed=0)


def time_bare_client(base_url: str, items, concurrency: int) -> float:
    from openai import AsyncOpenAI

    from prefcli.eval.protocols import load_protocol

    protocol = load_protocol("alpaca")
    prompts = [protocol.render(item.instruction, item.reference, item.output) for item in items]

    async def run() -> float:
        client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=30)
        gate = asyncio.Semaphore(concurrency)

        async def one(messages):
            async with gate:
                await client.chat.completions.create(model="judge", messages=messages, max_tokens=1)

        start = time.perf_counter()
        await asyncio.gather(*(one(messages) for messages in prompts))
        elapsed = time.perf_counter() - start
        await client.close()
        return elapsed

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=805)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    items = make_items(args.n)
    ideal = args.n * args.delay / args.concurrency
    server, port = start_judge(args.delay)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ours, summary = time_prefcli(base_url, items, args.concurrency, Path(tmp) / "judgments.sqlite")
        bare = time_bare_client(base_url, items, args.concurrency)
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert summary["judged"] == args.n and summary["failed"] == 0, summary
    ratio = ours / ideal
    print(f"judgments: {args.n}, judge delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}")
    print(f"ideal {ideal:.2f} s | prefcli {ours:.2f} s (store + parse + retries) | bare openai client {bare:.2f} s")
    print(f"prefcli / ideal = {ratio:.3f} (target <= 1.25)   prefcli / bare client = {ours / bare:.3f}   "
          f"bare client / ideal = {bare / ideal:.3f}")
    return 0 if ratio <= 1.25 else 1


if __name__ == "__main__":
    sys.exit(main())
