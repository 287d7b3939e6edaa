"""Judging throughput: N judgments (AlpacaEval's 805 by default) against a local OpenAI-compatible judge that answers
after 200 ms, at --concurrency 16, compared with its peer measured in the same run: the bare ``openai`` async
client issuing the same requests (same messages, max_tokens, temperature and log-prob request) under a semaphore of
the same size (no store, no parsing, no retries) — the floor any judging loop on this client can reach.

Target: prefcli's judging span within 1.10x the bare client's. The machine is shared and noisy, so rounds are
interleaved (prefcli, bare, bare, prefcli, ...) and every round's ratio is printed with the median; each prefcli
round starts from an empty store. The ideal N * delay / concurrency is printed for reference only.

    python benchmarks/judge_throughput.py [--n 805] [--delay 0.2] [--concurrency 16] [--rounds 3]
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
    from prefcli.eval.run import plan_judgments

    protocol = load_protocol("alpaca")
    # the same requests prefcli sends: same order coin, same rendering, same parameters
    planned = plan_judgments(protocol, items, judge_name="judge", seed=0)
    prompts = [protocol.render(p.instruction, p.output_1, p.output_2) for p in planned]
    extra = {"logprobs": True, "top_logprobs": protocol.logprobs["top_logprobs"]}

    async def run() -> float:
        client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=30)
        gate = asyncio.Semaphore(concurrency)

        async def one(messages):
            async with gate:
                await client.chat.completions.create(model="judge", messages=messages, max_tokens=protocol.max_tokens,
                                                     temperature=protocol.temperature, **extra)

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
    parser.add_argument("--rounds", type=int, default=3, help="prefcli/bare pairs, interleaved")
    parser.add_argument("--target", type=float, default=1.10, help="prefcli / bare client ratio to meet")
    args = parser.parse_args()
    items = make_items(args.n)
    ideal = args.n * args.delay / args.concurrency
    server, port = start_judge(args.delay)
    base_url = f"http://127.0.0.1:{port}/v1"
    ours_times, bare_times = [], []
    try:
        for round_index in range(args.rounds):
            order = ("prefcli", "bare") if round_index % 2 == 0 else ("bare", "prefcli")
            for who in order:
                if who == "prefcli":
                    with tempfile.TemporaryDirectory() as tmp:
                        ours, summary = time_prefcli(base_url, items, args.concurrency, Path(tmp) / "j.sqlite")
                    assert summary["judged"] == args.n and summary["failed"] == 0, summary
                    ours_times.append(ours)
                else:
                    bare_times.append(time_bare_client(base_url, items, args.concurrency))
            print(f"round {round_index + 1}: prefcli {ours_times[-1]:.2f} s, bare client {bare_times[-1]:.2f} s, "
                  f"ratio {ours_times[-1] / bare_times[-1]:.3f}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)
    ratios = sorted(o / b for o, b in zip(ours_times, bare_times))
    median = ratios[len(ratios) // 2]
    print(f"judgments: {args.n}, judge delay {args.delay * 1000:.0f} ms, concurrency {args.concurrency}, "
          f"{args.rounds} interleaved rounds")
    print(f"ideal {ideal:.2f} s | prefcli median {sorted(ours_times)[len(ours_times) // 2]:.2f} s | bare client "
          f"median {sorted(bare_times)[len(bare_times) // 2]:.2f} s")
    print(f"prefcli / bare client: median {median:.3f} (rounds: {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"target <= {args.target})   bare client / ideal = {min(bare_times) / ideal:.3f} (best round)")
    return 0 if median <= args.target else 1


if __name__ == "__main__":
    sys.exit(main())
