"""``prefcli prepare generate`` on the tiny model with the deterministic length judge: the winner is the longest
completion, the other completions are the candidates, the judge was called n - 1 times per prompt (store rows), a
rerun repeats no call and no sampling; bad input exits with code 2 and writes nothing."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest
from cli_helpers import invoke_cli

from prefcli.errors import PrefcliError


def write_prompts(path: Path, count: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({"id": f"p{index}", "prompt": f"Write about the number {index}."}) + "\n")
        # a pair record whose prompt repeats p0: its completions are ignored and the prompt is used once
        handle.write(json.dumps({"id": "dup", "prompt": "Write about the number 0.", "chosen": "a",
                                 "rejected": "b"}) + "\n")
    return path


def generate_args(model, prompts, output, *extra):
    return ["prepare", "generate", "--model", model, "--prompts", prompts, "--output", output,
            "--temperatures", "0.7,1.0", "--per-temperature", "2", "--max-new-tokens", "8", "--judge", "rule:length",
            "--seed", "5", *extra]


def test_generate_ranks_and_writes_candidate_records(tiny_model, tmp_path):
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    output = tmp_path / "out" / "generated.jsonl"
    code, text = invoke_cli(generate_args(tiny_model, prompts, output))
    assert code == 0, text
    records = [json.loads(line) for line in output.read_text().splitlines()]
    meta = json.loads((tmp_path / "out" / "generated.jsonl.meta.json").read_text())
    assert meta["skipped"].get("repeated prompt") == 1
    assert [r["id"] for r in records] == ["p0", "p1", "p2", "p3"][:len(records)]
    expected_calls = 0
    for record in records:
        texts = [record["chosen"], *record["candidates"]]
        assert len(texts) == len(set(texts)) >= 2
        assert len(record["chosen"]) == max(len(t) for t in texts)  # the length judge's preferred completion
        assert record["rejected"] in record["candidates"]
        temperatures = [record["meta"]["chosen_temperature"], *record["meta"]["candidate_temperatures"]]
        dropped = record["meta"]["dropped_empty"] + record["meta"]["dropped_duplicates"]
        assert len(temperatures) + dropped == 4 and set(temperatures) <= {0.7, 1.0}
        judgments = record["meta"]["judgments"]
        assert len(judgments) == len(texts) - 1
        assert judgments[-1]["winner"] == record["meta"]["chosen_index"]
        expected_calls += len(texts) - 1
    assert meta["counts"]["judgments"] == expected_calls
    assert meta["config"]["model_checksum"].startswith("sha256:")
    store = tmp_path / "out" / "generated.jsonl.judgments.sqlite"
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == expected_calls

    # the same command again: completions come from the cache, every judgment from the store
    before = output.read_text()
    code, text = invoke_cli(generate_args(tiny_model, prompts, output))
    assert code == 0, text
    meta = json.loads((tmp_path / "out" / "generated.jsonl.meta.json").read_text())
    assert meta["counts"]["completions_reused"] is True
    assert meta["counts"]["judgments_reused"] == expected_calls
    assert output.read_text() == before
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT SUM(attempts) FROM judgments").fetchone()[0] == expected_calls


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("case", ["missing", "empty", "one-completion", "no-prompt-field", "unreachable"])
def test_bad_input_exits_2_and_writes_nothing(tiny_model, tmp_path, case):
    prompts = write_prompts(tmp_path / "prompts.jsonl", count=2)
    output = tmp_path / "generated.jsonl"
    extra: list[str] = []
    expected = ""
    if case == "missing":
        prompts, expected = tmp_path / "nope.jsonl", "nope.jsonl: no such file"
    elif case == "empty":
        prompts.write_text("\n")
        expected = "contains no prompts"
    elif case == "one-completion":
        expected = "ranking needs at least two"
    elif case == "no-prompt-field":
        prompts.write_text(json.dumps({"id": 1, "question": "hi"}) + "\n")
        expected = "prompts.jsonl:1: prompt: missing"
    args = generate_args(tiny_model, prompts, output, *extra)
    if case == "one-completion":
        args[args.index("--temperatures") + 1] = "1.0"
        args[args.index("--per-temperature") + 1] = "1"
    if case == "unreachable":
        judge_at = args.index("--judge") + 1
        args[judge_at] = f"http://127.0.0.1:{_closed_port()}/v1"
        args += ["--judge-model", "judge", "--max-retries", "1", "--retry-delay", "0.01", "--timeout", "5"]
        expected = "ranking judgments failed"
    code, text = invoke_cli(args)
    assert code == 2, text
    assert expected in " ".join(text.split()), text
    assert not output.exists()


def test_generation_in_a_child_process_matches_in_process(tiny_model):
    """The vLLM path runs each engine in a spawned process; the plumbing is checked with the hf backend."""
    from prefcli.generate import generate_outputs
    from prefcli.online.candidates import _generate_in_child

    prompts = [[{"role": "user", "content": "Hello there."}], [{"role": "user", "content": "Count to three."}]]
    kwargs = {"max_new_tokens": 6, "temperature": 1.0, "num_return_sequences": 2, "backend": "hf", "seed": 11}
    assert _generate_in_child(str(tiny_model), prompts, kwargs) == generate_outputs(str(tiny_model), prompts,
                                                                                     **kwargs)
    with pytest.raises(PrefcliError, match="not found|cannot load|no such"):
        _generate_in_child(str(tiny_model) + "-missing", prompts, kwargs)


def test_too_few_distinct_candidates_are_refilled_with_replacement(tmp_path, monkeypatch):
    """Exact repeats and empty samples are dropped before ranking; a record left with fewer than the K negatives
    the loss draws gets the missing ones drawn (seeded) with replacement from what is left, and says so."""
    import prefcli.online.candidates as candidates
    from prefcli.online.prompts import PromptItem
    from prefcli.settings import JudgeSettings, SamplingSettings

    items = [PromptItem("a", [{"role": "user", "content": "A?"}], 1),
             PromptItem("b", [{"role": "user", "content": "B?"}], 2)]
    samples = [[("x", 1.0), ("x", 1.0), ("", 1.0), ("longer x", 1.0)],     # 2 distinct: 1 negative left
               [("p", 1.0), ("qq", 1.0), ("rrr", 1.0), ("ssss", 1.0)]]     # 4 distinct: 3 negatives
    monkeypatch.setattr(candidates, "sample_completions", lambda *args, **kwargs: samples)
    monkeypatch.setattr(candidates, "weights_checksum", lambda model: None)
    settings = SamplingSettings(temperatures=(1.0,), per_temperature=4)

    def run(min_candidates: int):
        return candidates.generate_candidates(
            "stub-model", items, settings, JudgeSettings(judge="rule:length"), seed=3,
            store_path=tmp_path / f"store-{min_candidates}.sqlite", min_candidates=min_candidates)

    plain, refilled = run(0), run(3)
    first, second = refilled.records
    assert first["chosen"] == "longer x" and first["candidates"] == ["x", "x", "x"]
    assert first["rejected"] == "x" and first["meta"]["refilled"] == 2
    assert first["meta"]["dropped_duplicates"] == 1 and first["meta"]["dropped_empty"] == 1
    assert first["meta"]["candidate_temperatures"] == [1.0, 1.0, 1.0]
    assert second["meta"]["refilled"] == 0 and second["candidates"] == plain.records[1]["candidates"]
    assert refilled.refilled == 1 and plain.refilled == 0
    assert plain.records[0]["candidates"] == ["x"]  # nothing asked for: nothing added
    assert [r["rejected"] for r in plain.records] == [r["rejected"] for r in refilled.records]
    assert run(3).records == refilled.records  # seeded: the same draws again


def test_refill_draws_among_the_distinct_candidates():
    from prefcli.online.candidates import CandidateSet, build_records
    from prefcli.online.prompts import PromptItem
    from prefcli.online.ranking import Ranking

    item = PromptItem("q", [{"role": "user", "content": "Q?"}], 1)
    found = CandidateSet(["w", "a", "b"], [0.6, 0.8, 1.0])
    record, = build_records([item], [found], [Ranking(winner=0)], seed=9, model_label="m", judge_name="j",
                            protocol_version="v", both_orders=False, min_candidates=6)
    assert record["candidates"][:2] == ["a", "b"] and len(record["candidates"]) == 6
    assert set(record["candidates"]) == {"a", "b"} and record["meta"]["refilled"] == 4
    temperature_of = {"a": 0.8, "b": 1.0}
    assert record["meta"]["candidate_temperatures"] == [temperature_of[t] for t in record["candidates"]]
