"""Iterative pairwise ranking: the expected winner with exactly n - 1 judge calls (2(n - 1) with both orders),
counted on the judge's side and in the store; a rerun calls nothing; ties and order disagreements keep the
incumbent; failed calls stop with a JudgeError."""

from __future__ import annotations

import sqlite3

import pytest

from prefcli.errors import JudgeError
from prefcli.eval.judges.base import JudgeReply, TransientJudgeError
from prefcli.eval.judges.rule import LengthRuleJudge
from prefcli.eval.protocols import load_protocol
from prefcli.eval.store import JudgmentStore
from prefcli.online.ranking import JudgeSettings, challenger_shown_first, rank_candidates


class CountingJudge:
    """Wraps a judge and records every call (instruction, first output, second output)."""

    is_demo = True

    def __init__(self, inner):
        self.inner, self.name, self.calls, self.closed = inner, inner.name, [], 0

    async def complete(self, request):
        self.calls.append((request.instruction, request.output_1, request.output_2))
        return await self.inner.complete(request)

    async def aclose(self):
        self.closed += 1


class FirstShownWins:
    """A purely position-biased judge: whatever is shown first wins."""

    is_demo = True
    name = "first-shown-wins"

    def __init__(self, protocol):
        self.protocol, self.calls = protocol, 0

    async def complete(self, request):
        self.calls += 1
        return JudgeReply(self.protocol.reply_for(1.0))

    async def aclose(self):
        return None


# lengths chosen so that the longest is in every position: first, middle, last, and a 6-candidate set
SETS = [
    ["x" * 9, "x" * 3, "x" * 5, "x" * 1],                      # winner 0: never replaced
    ["y" * 2, "y" * 7, "y" * 3, "y" * 1],                      # winner 1
    ["z" * 1, "z" * 2, "z" * 3],                               # winner 2: replaced every round
    ["w" * 4, "w" * 6, "w" * 2, "w" * 8, "w" * 5, "w" * 7],    # winner 3
]
INSTRUCTIONS = [f"question {i}" for i in range(len(SETS))]
EXPECTED = [0, 1, 2, 3]


def store_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM judgments WHERE status = 'ok'").fetchone()[0]


@pytest.mark.parametrize("both_orders", [False, True])
def test_longest_wins_with_n_minus_one_calls_and_rerun_calls_nothing(tmp_path, both_orders):
    protocol = load_protocol("alpaca")
    judge = CountingJudge(LengthRuleJudge(protocol))
    store_path = tmp_path / "store.sqlite"
    with JudgmentStore(store_path) as store:
        rankings = rank_candidates(INSTRUCTIONS, SETS, judge=judge, protocol=protocol, store=store,
                                   both_orders=both_orders, seed=3)
    assert [r.winner for r in rankings] == EXPECTED
    per_order = 2 if both_orders else 1
    expected_calls = sum(len(s) - 1 for s in SETS) * per_order  # 3 + 3 + 2 + 5 = 13
    assert len(judge.calls) == expected_calls == 13 * per_order
    assert store_rows(store_path) == expected_calls
    for instruction, texts in zip(INSTRUCTIONS, SETS):
        assert sum(call[0] == instruction for call in judge.calls) == (len(texts) - 1) * per_order
    assert judge.closed == 1  # one client for every round, closed once
    # the recorded comparisons chain: each round's incumbent is the previous round's winner
    for ranking in rankings:
        incumbent = 0
        for round_index, comparison in enumerate(ranking.comparisons, 1):
            assert (comparison.incumbent, comparison.challenger) == (incumbent, round_index)
            incumbent = comparison.winner
            assert len(comparison.scores) == per_order
        assert incumbent == ranking.winner
    if not both_orders:  # the one-order coin decides who is shown first
        for instruction, ranking in zip(INSTRUCTIONS, rankings):
            for comparison in ranking.comparisons:
                assert comparison.challenger_first == [challenger_shown_first(3, instruction, comparison.round)]

    rerun = CountingJudge(LengthRuleJudge(protocol))
    with JudgmentStore(store_path) as store:
        again = rank_candidates(INSTRUCTIONS, SETS, judge=rerun, protocol=protocol, store=store,
                                both_orders=both_orders, seed=3)
    assert rerun.calls == []
    assert [r.winner for r in again] == EXPECTED
    assert sum(c.reused for r in again for c in r.comparisons) == expected_calls


def test_order_disagreement_and_ties_keep_the_incumbent(tmp_path):
    protocol = load_protocol("alpaca")
    biased = FirstShownWins(protocol)
    with JudgmentStore(tmp_path / "store.sqlite") as store:
        rankings = rank_candidates(INSTRUCTIONS, SETS, judge=biased, protocol=protocol, store=store,
                                   both_orders=True)
    # each order prefers the output shown first: mean score 1/2, so the earlier candidate stays
    assert [r.winner for r in rankings] == [0, 0, 0, 0]
    assert biased.calls == 2 * 13
    assert all(c.scores in ([1.0, 0.0], [0.0, 1.0]) for r in rankings for c in r.comparisons)

    equal = [["aaa", "bbb", "ccc"]]  # the length judge ties: with both orders the incumbent stays
    with JudgmentStore(tmp_path / "store2.sqlite") as store:
        tie = rank_candidates(["q"], equal, judge=LengthRuleJudge(protocol), protocol=protocol, store=store,
                              both_orders=True)
    assert tie[0].winner == 0


def test_identical_candidates_need_no_call(tmp_path):
    protocol = load_protocol("alpaca")
    judge = CountingJudge(LengthRuleJudge(protocol))
    with JudgmentStore(tmp_path / "store.sqlite") as store:
        rankings = rank_candidates(["q"], [["same", "same", "longer one"]], judge=judge, protocol=protocol,
                                   store=store)
    assert rankings[0].winner == 2
    assert len(judge.calls) == 1


class AlwaysDown:
    is_demo = False
    name = "down"

    def __init__(self):
        self.calls = 0

    async def complete(self, request):
        self.calls += 1
        raise TransientJudgeError("connection error: refused")

    async def aclose(self):
        return None


def test_failed_judgments_stop_with_a_judge_error(tmp_path):
    protocol = load_protocol("alpaca")
    judge = AlwaysDown()
    with JudgmentStore(tmp_path / "store.sqlite") as store, pytest.raises(JudgeError, match="round 1"):
        rank_candidates(INSTRUCTIONS, SETS, judge=judge, protocol=protocol, store=store, max_retries=1,
                        retry_delay=0.0)
    assert judge.calls == 2 * len(SETS)  # one try and one retry per first-round comparison, then stop
    with sqlite3.connect(tmp_path / "store.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM judgments WHERE status = 'failed'").fetchone()[0] == len(SETS)


def test_judge_settings_errors():
    from prefcli.errors import ConfigError

    with pytest.raises(ConfigError, match="--judge"):
        JudgeSettings(judge="").check()
    with pytest.raises(ConfigError, match="--judge-model"):
        JudgeSettings(judge="http://127.0.0.1:9/v1").check()
    with pytest.raises(ConfigError, match="unknown rule"):
        JudgeSettings(judge="rule:lenght").check()
