"""The judging loop against hostile judges, at the library level: non-finite log-probs, stored poisoned rows,
truncated replies, an echoed API key, token usage, several endpoints of one judge."""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from judge_servers import FaultyJudgeServer

from prefcli.eval.items import EvalItem
from prefcli.eval.judges import make_judge
from prefcli.eval.protocols import MalformedScore, load_protocol
from prefcli.eval.run import judge_all_async, judgment_rows, plan_judgments, summarize
from prefcli.eval.store import JudgmentStore
from prefcli.eval.usage import usage_summary


def items(marker: str = "", n: int = 3) -> list[EvalItem]:
    return [EvalItem(f"Q{i} {marker}".strip(), f"answer q={i + 3}", "ref q=2", "policy", "base") for i in range(n)]


def run(protocol, server_or_urls, store_path, its, *, key=None, max_tokens=None, max_retries=3):
    urls = server_or_urls if isinstance(server_or_urls, list) else [server_or_urls.base_url]
    judge = make_judge(urls, protocol=protocol, model="judge", api_key=key, timeout=5)
    planned = plan_judgments(protocol, its, judge_name=judge.name, seed=0)

    async def judged():
        try:
            return await judge_all_async(planned, protocol=protocol, judge=judge, store=store, concurrency=4,
                                         max_retries=max_retries, retry_delay=0.01, max_tokens=max_tokens)
        finally:
            await judge.aclose()

    with JudgmentStore(store_path) as store:
        return asyncio.run(judged()), judge


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 1000.0, "high", None.__class__])
def test_non_finite_or_malformed_logprobs_are_refused(bad):
    protocol = load_protocol("alpaca")
    with pytest.raises(MalformedScore):
        protocol.parse("m", [{"token": "m", "logprob": bad}, {"token": "M", "logprob": -1.0}])
    assert protocol.parse("m", [{"token": "m", "logprob": -0.1}, {"token": "M", "logprob": -3.0}]).weighted


def test_poisoned_logprobs_fail_then_a_rerun_judges_them_again(tmp_path):
    protocol = load_protocol("alpaca")
    with FaultyJudgeServer(logprobs=True) as server:
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-LP-NANx1"), max_retries=0)
        assert [r.status for r in results] == ["failed"] * 3
        assert all("malformed log-probs" in r.error for r in results)
        rows = judgment_rows(results)
        json.loads(json.dumps(rows, allow_nan=False))  # strict JSON
        assert summarize(protocol, items(), results, seed=0)["winrate"] is None
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-LP-NANx1"), max_retries=0)
        assert [r.status for r in results] == ["ok"] * 3 and not any(r.reused for r in results)


def test_rows_stored_poisoned_by_an_older_version_are_judged_again(tmp_path):
    protocol = load_protocol("alpaca")
    its = items()
    planned = plan_judgments(protocol, its, judge_name="judge", seed=0)
    with JudgmentStore(tmp_path / "s.sqlite") as store:
        for plan in planned:  # what an older prefcli stored: "ok" with a NaN log-prob
            store._db.execute(
                "INSERT INTO judgments (key, judge, protocol, instruction, output_1, output_2, model_first, status,"
                " reply, top_logprobs, error, attempts, created_at, updated_at) VALUES (?,?,?,?,?,?,?,'ok','m',?,"
                "NULL,1,0,0)", (plan.key, "judge", protocol.template_version, plan.instruction, plan.output_1,
                                plan.output_2, int(plan.model_first),
                                '[{"token": "m", "logprob": NaN}, {"token": "M", "logprob": -1.0}]'))
    with FaultyJudgeServer(logprobs=True) as server:
        results, _ = run(protocol, server, tmp_path / "s.sqlite", its)
        assert server.count() == 3
    assert all(r.status == "ok" and not r.reused and math.isfinite(r.model_score) for r in results)
    with JudgmentStore(tmp_path / "s.sqlite", readonly=True) as store:
        stored = store.lookup([p.key for p in planned])
    assert all(row.status == "ok" and "NaN" not in json.dumps(row.top_logprobs) for row in stored.values())


def test_truncated_reply_is_retried_with_a_larger_budget_not_unchanged(tmp_path):
    protocol = load_protocol("arena")
    with FaultyJudgeServer() as server:
        # the verdict reply is ~80 characters; with a budget of 16 it is cut, 32 and 64 too, 128 is enough
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-NEEDS-100", n=1), max_tokens=16,
                         max_retries=4)
        budgets = [call["max_tokens"] for call in server.calls]
    assert all(r.status == "ok" for r in results)
    assert sorted(budgets) == [16, 16, 32, 32, 64, 64, 128, 128]
    assert {r.usage["budget_raised_to"] for r in results} == {128}
    assert usage_summary(results)["budget_raised"] == 2


def test_empty_alpaca_reply_gets_a_larger_budget(tmp_path):
    protocol = load_protocol("alpaca")
    with FaultyJudgeServer() as server:
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-NEEDS-2", n=2), max_retries=1)
        assert server.count() == 4
    assert [r.status for r in results] == ["ok", "ok"] and {r.usage["budget_raised_to"] for r in results} == {2}


def test_echoed_key_is_redacted_from_replies_errors_and_the_store(tmp_path):
    secret = "sk-echo-9b1f-never-store-me"
    protocol = load_protocol("arena")
    with FaultyJudgeServer(require_key=secret) as server:
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-ECHO-KEY", n=2), key=secret)
    assert all(r.status == "ok" and "***" in r.reply and secret not in r.reply for r in results)
    assert secret.encode() not in (tmp_path / "s.sqlite").read_bytes()
    for wal in tmp_path.glob("s.sqlite*"):
        assert secret.encode() not in wal.read_bytes(), wal


def test_usage_fingerprint_and_cost(tmp_path):
    protocol = load_protocol("arena")
    with FaultyJudgeServer() as server:
        results, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-500x1", n=2))
        calls = server.count()
    assert calls == 2 * 2 * 2  # two orders, each answered 500 once (no usage) then judged
    summary = usage_summary(results, price_in=2.0, price_out=8.0)
    assert (summary["prompt_tokens"], summary["completion_tokens"]) == (4 * 7, 4 * 3)
    assert summary["system_fingerprints"] == ["fp-test"]
    assert summary["cost_usd"] == pytest.approx((28 * 2.0 + 12 * 8.0) / 1e6)
    assert usage_summary(results)["cost_usd"] is None
    rerun, _ = run(protocol, server, tmp_path / "s.sqlite", items("FAULT-500x1", n=2))
    assert usage_summary(rerun)["prompt_tokens"] == 0  # reused judgments cost nothing now


def test_several_endpoints_of_one_judge_share_the_load(tmp_path):
    protocol = load_protocol("arena")
    with FaultyJudgeServer(delay=0.05) as fast, FaultyJudgeServer(delay=0.05) as other:
        results, judge = run(protocol, [fast.base_url, other.base_url], tmp_path / "s.sqlite", items(n=8))
        assert fast.count() + other.count() == 16 and min(fast.count(), other.count()) >= 6
    assert judge.name == "judge" and all(r.status == "ok" for r in results)
