"""The judging loop: plan the judge calls, look each one up in the store, run the missing ones with ``concurrency``
calls in flight, write every result to the store the moment it arrives, and summarize.

Order policy. ``random`` (AlpacaEval): one call per item; whether the model is shown first is drawn from
sha256(seed, instruction), so it is stable across reruns and independent of the item's position. ``both``
(Arena-Hard): two calls per item, the model shown first, then second.

Retries. A call is tried at most ``max_retries + 1`` times per run. 429, 5xx, connection errors, timeouts and
unparseable replies are retried after :func:`~prefcli.eval.judges.retry.backoff_delay` (exponential, jittered, at
least ``Retry-After``); then the call is recorded as ``failed`` (with the last reply and error) and the next run
tries it again. A per-item refusal (e.g. HTTP 400) is recorded as failed at once. A score that cannot be a
probability (NaN, infinite, positive or non-numeric log-prob) is an unparseable reply: retried, then failed, never
stored as a result; rows stored that way by older versions are judged again.

Truncated replies. A reply cut at ``max_tokens`` (``finish_reason == "length"``) is not read for a verdict unless
the protocol says ``verdict.truncated: accept`` (AlpacaEval's one-token replies), since its last tag need not be the
final verdict. Such a reply, or one with empty content, is not sent again unchanged: the next attempt doubles the
reply budget (up to ``MAX_BUDGET_FACTOR`` times the protocol's), at once, without backoff; the judgment records the
budget it ended with.

Token counts. Each call's ``usage`` (prompt and completion tokens, over all its attempts) is kept in the store and
summed in the summary, with the judge's ``system_fingerprint`` values.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import functools
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from prefcli.eval.items import EvalItem
from prefcli.eval.judges import JudgeRequest, PermanentJudgeError, TransientJudgeError, backoff_delay
from prefcli.eval.protocols import MalformedScore, Protocol, Verdict
from prefcli.eval.store import JudgmentStore, judgment_key
from prefcli.eval.winrate import bootstrap_ci, flip_rate, tally


@dataclass(frozen=True)
class PlannedJudgment:
    item: int
    instruction: str
    output_1: str
    output_2: str
    model_first: bool
    key: str | None  # None: identical outputs, a tie without a judge call
    category: str | None = None  # selects the protocol's per-category template (arena-hard-auto v2.0)


@dataclass
class JudgmentResult:
    planned: PlannedJudgment
    status: str  # "ok" | "failed" | "identical"
    verdict: Verdict | None = None
    reply: str | None = None
    error: str | None = None
    attempts: int = 0
    reused: bool = False
    usage: dict | None = None  # {"prompt_tokens", "completion_tokens", "budget_raised_to", "fingerprints"}

    @property
    def model_score(self) -> float | None:
        """The model's score in this judgment (1 win, 0.5 tie, 0 loss, or a probability)."""
        if self.status == "identical":
            return 0.5
        if self.verdict is None:
            return None
        return self.verdict.first if self.planned.model_first else 1.0 - self.verdict.first

    @property
    def weight(self) -> int:
        return 1 if self.verdict is None else self.verdict.weight


def model_shown_first(seed: int, instruction: str) -> bool:
    """The seeded per-item coin of the ``random`` order policy."""
    return hashlib.sha256(f"prefcli-order:{seed}:{instruction}".encode()).digest()[0] % 2 == 0


def plan_judgments(protocol: Protocol, items: list[EvalItem], *, judge_name: str, seed: int
                   ) -> list[PlannedJudgment]:
    """Every judge call the protocol needs for ``items``, keyed for the store."""
    planned = []
    for index, item in enumerate(items):
        orders = [True, False] if protocol.order == "both" else [model_shown_first(seed, item.instruction)]
        for model_first in orders:
            first, second = (item.output, item.reference) if model_first else (item.reference, item.output)
            identical = protocol.identical_outputs == "tie" and item.output == item.reference
            key = None if identical else judgment_key(judge_name, protocol.template_version, item.instruction,
                                                      first, second, model_first)
            planned.append(PlannedJudgment(index, item.instruction, first, second, model_first, key,
                                           getattr(item, "category", None)))
    return planned


async def judge_all_async(planned: list[PlannedJudgment], *, protocol: Protocol, judge, store: JudgmentStore,
                          concurrency: int = 8, max_retries: int = 3, retry_delay: float = 1.0,
                          max_tokens: int | None = None,
                          on_result: Callable[[JudgmentResult], None] | None = None,
                          check_judge: bool = True) -> list[JudgmentResult]:
    """One :class:`JudgmentResult` per planned judgment, in plan order. Stored successes are reused without a
    call; everything else is judged now and recorded before the next result is reported. The judge belongs to the
    caller, who closes it (in the same event loop: its connections live there). With ``check_judge`` a judge that
    can be probed (``judge.check()``) is probed once before the first call, so an unreachable endpoint fails fast."""
    notify = on_result or (lambda result: None)
    results: list[JudgmentResult | None] = [None] * len(planned)
    stored = store.lookup(sorted({p.key for p in planned if p.key is not None}))
    poisoned: dict[str, str] = {}
    to_call: dict[str, list[int]] = {}
    for index, plan in enumerate(planned):
        if plan.key is None:
            results[index] = JudgmentResult(plan, "identical")
            notify(results[index])
            continue
        row = stored.get(plan.key)
        verdict = None
        if row is not None and row.status == "ok":
            try:
                verdict = protocol.parse(row.reply, row.top_logprobs)
            except MalformedScore as problem:
                poisoned[plan.key] = str(problem)
        if verdict is not None:
            results[index] = JudgmentResult(plan, "ok", verdict, row.reply, None, row.attempts, reused=True)
            notify(results[index])
        else:
            to_call.setdefault(plan.key, []).append(index)

    for key, problem in poisoned.items():
        store.invalidate([key], f"stored reply no longer valid: {problem}")
    if to_call and check_judge and hasattr(judge, "check"):
        await judge.check()
    queue: asyncio.Queue[list[int]] = asyncio.Queue()
    for indices in to_call.values():
        queue.put_nowait(indices)
    jitter = random.Random()

    async def worker() -> None:
        while True:
            try:
                indices = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            plan = planned[indices[0]]
            result = await _judge_one(plan, protocol=protocol, judge=judge, max_retries=max_retries,
                                      retry_delay=retry_delay, max_tokens=max_tokens, jitter=jitter)
            # committed before the result is reported, on the writer thread: the event loop keeps the other
            # calls moving while SQLite writes
            await loop.run_in_executor(writer, functools.partial(
                store.record, plan.key, judge=judge.name, protocol=protocol.template_version,
                instruction=plan.instruction, output_1=plan.output_1, output_2=plan.output_2,
                model_first=plan.model_first, status=result.status, reply=result.reply,
                top_logprobs=result.top_logprobs, error=result.error, attempts=result.attempts, usage=result.usage))
            for position, index in enumerate(indices):
                results[index] = JudgmentResult(planned[index], result.status, result.verdict, result.reply,
                                                 result.error, result.attempts,
                                                 usage=result.usage if position == 0 else None)
                notify(results[index])

    loop = asyncio.get_running_loop()
    writer = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefcli-store")
    tasks = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, len(to_call))))]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # re-raise a fatal error (e.g. the judge refused the key)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.shutdown(wait=True)  # a write already started finishes before the store is closed
    return results  # type: ignore[return-value]


@dataclass
class _CallOutcome:
    status: str
    verdict: Verdict | None
    reply: str | None
    top_logprobs: list[dict] | None
    error: str | None
    attempts: int
    usage: dict | None = None


MAX_BUDGET_FACTOR = 8  # a truncated reply is retried with up to 8x the protocol's max_tokens


async def _judge_one(plan: PlannedJudgment, *, protocol: Protocol, judge, max_retries: int, retry_delay: float,
                     max_tokens: int | None, jitter: random.Random) -> _CallOutcome:
    budget = base_budget = max_tokens or protocol.max_tokens
    request = JudgeRequest(
        messages=protocol.render(plan.instruction, plan.output_1, plan.output_2, plan.category),
        instruction=plan.instruction, output_1=plan.output_1, output_2=plan.output_2,
        max_tokens=budget, temperature=protocol.temperature,
        top_logprobs=(protocol.logprobs or {}).get("top_logprobs"))
    reply_text, top_logprobs, error = None, None, None
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "budget_raised_to": None, "fingerprints": []}

    def outcome(status: str, verdict: Verdict | None, attempts: int) -> _CallOutcome:
        return _CallOutcome(status, verdict, reply_text, top_logprobs, error, attempts, usage)

    for attempt in range(1, max_retries + 2):
        retry_after, wait = None, True
        try:
            reply = await judge.complete(request)
        except TransientJudgeError as failure:
            error, retry_after = str(failure), failure.retry_after
        except PermanentJudgeError as failure:
            error = str(failure)
            return outcome("failed", None, attempt)
        else:
            _count_usage(usage, reply)
            reply_text, top_logprobs = reply.text, reply.top_logprobs
            cut = reply.finish_reason == "length" and not protocol.accept_truncated
            try:
                verdict = None if cut else protocol.parse(reply.text, reply.top_logprobs)
            except MalformedScore as problem:
                verdict, error = None, str(problem)
            else:
                error = None if verdict is not None else "unparseable reply"
            if verdict is not None:
                return outcome("ok", verdict, attempt)
            if (cut or reply.truncated) and error == "unparseable reply":
                error = (f"reply cut at max_tokens={budget}" if reply.finish_reason == "length"
                         else "empty reply")
                if budget < base_budget * MAX_BUDGET_FACTOR:
                    budget = min(budget * 2, base_budget * MAX_BUDGET_FACTOR)
                    usage["budget_raised_to"] = budget
                    request = dataclasses.replace(request, max_tokens=budget)
                    wait = False  # not the server's fault: ask again now, with room to finish
        if attempt <= max_retries and wait:
            await asyncio.sleep(backoff_delay(attempt, base=retry_delay, retry_after=retry_after, rng=jitter))
    return outcome("failed", None, max_retries + 1)


def _count_usage(usage: dict, reply) -> None:
    usage["prompt_tokens"] += getattr(reply, "prompt_tokens", None) or 0
    usage["completion_tokens"] += getattr(reply, "completion_tokens", None) or 0
    fingerprint = getattr(reply, "system_fingerprint", None)
    if fingerprint and fingerprint not in usage["fingerprints"]:
        usage["fingerprints"].append(fingerprint)


def summarize(protocol: Protocol, items: list[EvalItem], results: list[JudgmentResult], *, seed: int,
              bootstrap_rounds: int = 1000) -> dict:
    """The protocol's numbers: adjusted winrate (percent), weighted W/L/T, failed judgments, bootstrap 95%
    interval over items, and the flip rate when every item is judged in both orders."""
    per_item: list[list[tuple[float, int]]] = [[] for _ in items]
    by_order: dict[int, dict[bool, float]] = {}
    for result in results:
        score = result.model_score
        if score is None:
            continue
        per_item[result.planned.item].append((score, result.weight))
        if result.status == "ok":  # the flip rate measures the judge, so untried identical pairs stay out
            by_order.setdefault(result.planned.item, {})[result.planned.model_first] = score
    counts = tally([judgment for judgments in per_item for judgment in judgments])
    low, high = bootstrap_ci(per_item, rounds=bootstrap_rounds, seed=seed)
    pairs = [(orders[True], orders[False]) for orders in by_order.values() if len(orders) == 2]
    called = [r for r in results if r.status != "identical"]
    failed = sum(r.status == "failed" for r in results)
    return {
        "protocol": protocol.name,
        "template_version": protocol.template_version,
        "winrate": _round(counts.winrate),
        "discrete_winrate": _round(counts.discrete_winrate),
        "wins": counts.wins,
        "losses": counts.losses,
        "ties": counts.ties,
        "failed": failed,
        "n": len(items),
        "judgments": len(results),
        "judged": sum(r.status == "ok" for r in results),
        "identical": sum(r.status == "identical" for r in results),
        "logprob_weighted": sum(bool(r.verdict and r.verdict.weighted) for r in results),
        "reused": sum(r.reused for r in results),
        "failed_frac": failed / len(called) if called else 0.0,
        "ci95": None if math.isnan(low) else [_round(low), _round(high)],  # None when nothing was judged
        "flip_rate": (_round(flip_rate(pairs)) if pairs else None) if protocol.order == "both" else None,
        "order": protocol.order,
        "seed": seed,
    }


def judgment_rows(results: list[JudgmentResult], items: list[EvalItem] | None = None) -> list[dict]:
    """One plain record per judgment, for ``OUTPUT/judgments.jsonl``; with ``items``, each row also carries the
    style features of the model's and the reference's answers (for style control in ``eval report``)."""
    from prefcli.eval.style_control import style_features

    styles: dict[int, dict] = {}
    rows = []
    for result in results:
        plan = result.planned
        row = {
            "item": plan.item, "instruction": plan.instruction,
            "model_position": "first" if plan.model_first else "second", "status": result.status,
            "verdict": result.verdict.label if result.verdict else None,
            "model_score": result.model_score, "weight": result.weight if result.status != "failed" else 0,
            "attempts": result.attempts, "reused": result.reused, "error": result.error, "reply": result.reply,
            "budget_raised_to": (result.usage or {}).get("budget_raised_to"),
        }
        if items is not None:
            item = items[plan.item]
            if plan.item not in styles:
                styles[plan.item] = {"model": style_features(item.output),
                                     "reference": style_features(item.reference),
                                     "uid": item.uid, "category": item.category}
            row.update({"uid": styles[plan.item]["uid"], "category": styles[plan.item]["category"],
                        "model_style": styles[plan.item]["model"],
                        "reference_style": styles[plan.item]["reference"]})
        rows.append(row)
    return rows


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isnan(value):  # NaN: nothing was judged
        return None
    return round(float(value), digits)
