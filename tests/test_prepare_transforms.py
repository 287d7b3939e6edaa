"""``prefcli prepare ultrafeedback / pairs / unpair / noise`` on fixture files."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from prepare_helpers import fails, prepare, read_jsonl, runner, write_jsonl

from prefcli.cli import app
from prefcli.data.records import validate_record
from prefcli.data.transforms import swap_two_tokens


def sidecar(path: Path) -> dict:
    return json.loads(path.with_name(path.name + ".meta.json").read_text())


def uf_row(index: int, chosen="Paris is the capital.", rejected="Lyon, I think.", gap=(8.0, 5.5), turns=1) -> dict:
    convo = [{"role": "user", "content": f"Question {index}: capital of France? été 🙂"}]
    for turn in range(1, turns):
        convo += [{"role": "assistant", "content": f"earlier answer {turn}"},
                  {"role": "user", "content": f"follow-up {turn}"}]
    return {"prompt": convo[0]["content"], "prompt_id": f"p{index}",
            "chosen": convo + [{"role": "assistant", "content": chosen}],
            "rejected": convo + [{"role": "assistant", "content": rejected}],
            "messages": convo + [{"role": "assistant", "content": chosen}],
            "score_chosen": gap[0], "score_rejected": gap[1]}


# --- ultrafeedback ----------------------------------------------------------------------------------------------

def test_ultrafeedback_pairs_multi_turn_and_scores(tmp_path):
    rows = [uf_row(0), uf_row(1, turns=2), uf_row(2, gap=(7, 7)), uf_row(3, rejected="Paris is the capital.")]
    src = write_jsonl(tmp_path / "uf.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = prepare("ultrafeedback", "--input", str(src), "--output", str(out), "--min-score-gap", "0.5")
    records = read_jsonl(out)
    assert [r["id"] for r in records] == ["p0", "p1"]
    assert records[0] == {"id": "p0", "prompt": rows[0]["chosen"][:1], "chosen": "Paris is the capital.",
                          "rejected": "Lyon, I think.", "meta": {"score_chosen": 8.0, "score_rejected": 5.5}}
    assert [m["role"] for m in records[1]["prompt"]] == ["user", "assistant", "user"]
    assert records[1]["prompt"][1]["content"] == "earlier answer 1"
    assert sidecar(out)["skipped"] == {"identical chosen and rejected": 1, "score gap below 0.5": 1}
    assert "skipped: score gap below 0.5" in result.stdout
    for record in records:
        validate_record(record)


def test_ultrafeedback_unpaired_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "uf.parquet"
    pq.write_table(pa.Table.from_pylist([uf_row(i) for i in range(3)]), parquet)
    out = tmp_path / "out.jsonl"
    prepare("ultrafeedback", "--input", str(parquet), "--output", str(out), "--format", "unpaired")
    records = read_jsonl(out)
    assert [(r["id"], r["label"]) for r in records] == [("p0:chosen", True), ("p0:rejected", False),
                                                        ("p1:chosen", True), ("p1:rejected", False),
                                                        ("p2:chosen", True), ("p2:rejected", False)]
    assert records[1]["completion"] == "Lyon, I think." and records[1]["meta"]["pair_id"] == "p0"
    for record in records:
        validate_record(record)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("score_chosen"), "score_chosen: missing"),
    (lambda r: r.update(score_rejected="high"), "score_rejected: must be a number"),
    (lambda r: r.update(chosen=[]), "chosen: is an empty message list"),
    (lambda r: r.update(rejected=[{"role": "user", "content": "x"}]), "rejected[0]: the last message must be"),
    (lambda r: r["chosen"][-1].update(content=""), "chosen[1].content: is empty"),
    (lambda r: r.update(rejected=[{"role": "user", "content": "another question"}, r["rejected"][-1]]),
     "rejected: its conversation before the answer differs"),
    (lambda r: r.pop("rejected"), "rejected: missing"),
])
def test_ultrafeedback_bad_rows(tmp_path, capsys, change, message):
    bad = uf_row(1)
    change(bad)
    src = write_jsonl(tmp_path / "uf.jsonl", [uf_row(0), bad])
    out = tmp_path / "out.jsonl"
    assert f"{src}:2: {message}" in fails(capsys, "ultrafeedback", "--input", str(src), "--output", str(out))
    assert not out.exists()
    prepare("ultrafeedback", "--input", str(src), "--output", str(out), "--skip-invalid")
    assert len(read_jsonl(out)) == 1 and sum(sidecar(out)["skipped"].values()) == 1


# --- pairs ------------------------------------------------------------------------------------------------------

def test_pairs_field_mapping_dotted_fields_and_ids(tmp_path):
    rows = [{"qid": 10 + i, "data": {"question": f"Why {i}? 🙂"}, "response_j": f"good {i}",
             "response_k": f"bad {i}", "score": i} for i in range(3)]
    src = write_jsonl(tmp_path / "se.jsonl", rows)
    out = tmp_path / "out.jsonl"
    prepare("pairs", "--input", str(src), "--output", str(out), "--prompt-field", "data.question",
            "--chosen-field", "response_j", "--rejected-field", "response_k", "--id-field", "qid")
    records = read_jsonl(out)
    assert records[2] == {"id": 12, "prompt": [{"role": "user", "content": "Why 2? 🙂"}], "chosen": "good 2",
                          "rejected": "bad 2", "meta": {"score": 2}}
    assert "--prompt-field data.question" in sidecar(out)["command"]


def test_pairs_anthropic_hh_transcripts(tmp_path):
    rows = [{"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: Knock knock.",
             "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No."}]
    src = write_jsonl(tmp_path / "hh.jsonl", rows)
    out = tmp_path / "out.jsonl"
    prepare("pairs", "--input", str(src), "--output", str(out))
    (record,) = read_jsonl(out)
    assert record["prompt"] == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                                {"role": "user", "content": "Joke?"}]
    assert (record["chosen"], record["rejected"], record["id"]) == ("Knock knock.", "No.", 1)


def test_pairs_missing_mapped_field(tmp_path, capsys):
    src = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "a": "x", "b": "y"}])
    err = fails(capsys, "pairs", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                "--prompt-field", "question", "--chosen-field", "a", "--rejected-field", "answer_b")
    assert f"{src}:1: answer_b: missing" in err


# --- unpair -----------------------------------------------------------------------------------------------------

def candidate_records(n: int) -> list[dict]:
    return [{"id": i, "prompt": [{"role": "user", "content": f"q{i}"}], "chosen": f"good answer number {i}",
             "candidates": [f"bad{i}-{k}" for k in range(3)], "meta": {}} for i in range(n)]


def test_unpair_keep_one_and_all(tmp_path):
    pair = {"id": "x", "prompt": "hello", "chosen": "yes", "rejected": "no", "candidates": ["no", "maybe"]}
    src = write_jsonl(tmp_path / "in.jsonl", [pair] + candidate_records(3))
    one, every = tmp_path / "one.jsonl", tmp_path / "all.jsonl"
    prepare("unpair", "--input", str(src), "--output", str(one), "--seed", "2")
    prepare("unpair", "--input", str(src), "--output", str(every), "--negatives", "all")
    records = read_jsonl(one)
    assert [(r["id"], r["label"], r["completion"]) for r in records[:2]] == [("x:chosen", True, "yes"),
                                                                             ("x:rejected", False, "no")]
    assert records[0]["prompt"] == [{"role": "user", "content": "hello"}]
    for index in range(3):  # candidate sets without rejected: one seeded draw among the candidates
        good, bad = records[2 + 2 * index], records[3 + 2 * index]
        assert good["completion"] == f"good answer number {index}" and bad["completion"].startswith(f"bad{index}-")
    assert [r["completion"] for r in read_jsonl(every)[:3]] == ["yes", "no", "maybe"]
    assert len(read_jsonl(every)) == 3 + 3 * 4
    for record in read_jsonl(one) + read_jsonl(every):
        validate_record(record)


def test_unpair_shuffle_breaks_adjacency_and_keeps_every_record(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", candidate_records(40))
    keep, shuffled, again = (tmp_path / f"{name}.jsonl" for name in ("keep", "shuffle", "again"))
    prepare("unpair", "--input", str(src), "--output", str(keep), "--negatives", "all")
    prepare("unpair", "--input", str(src), "--output", str(shuffled), "--negatives", "all", "--pairing", "shuffle")
    prepare("unpair", "--input", str(src), "--output", str(again), "--negatives", "all", "--pairing", "shuffle")
    kept, moved = read_jsonl(keep), read_jsonl(shuffled)
    assert again.read_bytes() == shuffled.read_bytes()
    key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    assert sorted(map(key, kept)) == sorted(map(key, moved))
    # desirable records keep their order, each followed by one prompt's 3 undesirable records
    goods = [r for r in moved if r["label"]]
    assert [r["id"] for r in goods] == [f"{i}:chosen" for i in range(40)]
    followers = [moved[4 * i + 1]["meta"]["pair_id"] for i in range(40)]
    assert sorted(followers) == list(range(40)) and followers != list(range(40))
    assert all(moved[4 * i + k]["meta"]["pair_id"] == followers[i] for i in range(40) for k in (1, 2, 3))
    for record in moved:  # every completion still belongs to its own prompt
        assert record["prompt"][0]["content"] == f"q{record['meta']['pair_id']}"


def test_unpair_one_sided(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", candidate_records(60))
    out = tmp_path / "out.jsonl"
    prepare("unpair", "--input", str(src), "--output", str(out), "--pairing", "one-sided")
    records = read_jsonl(out)
    by_prompt = Counter(r["meta"]["pair_id"] for r in records)
    assert len(records) == 60 and set(by_prompt.values()) == {1}
    labels = Counter(r["label"] for r in records)
    assert 15 <= labels[True] <= 45


def test_unpair_rejects_unpaired_input(tmp_path, capsys):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "prompt": "p", "completion": "c", "label": True}])
    err = fails(capsys, "unpair", "--input", str(src), "--output", str(tmp_path / "o.jsonl"))
    assert f"{src}:1: label: is an unpaired record" in err


# --- noise ------------------------------------------------------------------------------------------------------

def test_swap_two_tokens_keeps_words_and_whitespace():
    import random

    text = "The  quick\tbrown fox\n\njumps over 🙂 the lazy dog"
    for seed in range(50):
        noisy, (first, second) = swap_two_tokens(text, random.Random(seed))
        words, noisy_words = text.split(), noisy.split()
        assert first < second
        assert sorted(words) == sorted(noisy_words) and noisy != text
        assert [i for i in range(len(words)) if words[i] != noisy_words[i]] == [first, second]
        assert re.findall(r"\s+", noisy) == re.findall(r"\s+", text)
    assert swap_two_tokens("same same same", random.Random(0)) is None
    assert swap_two_tokens("single", random.Random(0)) is None
    noisy, positions = swap_two_tokens("a a a a a a a a a b", random.Random(1))
    assert noisy != "a a a a a a a a a b" and 9 in positions


def test_noise_adds_a_candidate_and_dpo_noise_uses_it(tmp_path):
    records = candidate_records(4)
    records[1]["chosen"] = "one two three four five"
    records.append({"id": "pair", "prompt": "p", "chosen": "alpha beta gamma", "rejected": "r"})
    records.append({"id": "flat", "prompt": "p", "chosen": "same same", "rejected": "r"})
    src = write_jsonl(tmp_path / "in.jsonl", records)
    added, dpo_noise, again = (tmp_path / f"{name}.jsonl" for name in ("added", "dpo", "again"))
    result = prepare("noise", "--input", str(src), "--output", str(added), "--seed", "1")
    prepare("noise", "--input", str(src), "--output", str(dpo_noise), "--seed", "1", "--as-rejected")
    prepare("noise", "--input", str(src), "--output", str(again), "--seed", "1")
    assert added.read_bytes() == again.read_bytes()
    plain, dpo = read_jsonl(added), read_jsonl(dpo_noise)
    assert len(plain) == 5 and sidecar(added)["skipped"] == {"chosen has fewer than two distinct tokens": 1}
    assert "skipped: chosen has fewer than two distinct tokens" in result.stdout
    second = plain[1]
    noise = second["candidates"][-1]
    assert second["candidates"][:-1] == records[1]["candidates"]
    assert sorted(noise.split()) == sorted(records[1]["chosen"].split()) and noise != records[1]["chosen"]
    assert second["meta"]["noise_index"] == 3
    assert plain[4]["candidates"][:-1] == ["r"]  # pair: [rejected, noise]
    for plain_record, dpo_record in zip(plain, dpo):
        assert dpo_record["rejected"] == dpo_record["candidates"][-1] == plain_record["candidates"][-1]
        assert dpo_record["meta"]["rejected_is_noise"] is True
        validate_record(plain_record)
        validate_record(dpo_record)


def test_noise_baseline_redraws_rejected_from_the_augmented_candidates(tmp_path):
    """Without --as-rejected, rejected is a seeded uniform draw over the candidates plus the noise sample (MC-PO's
    DPO baseline under noise), so DPO on the file meets the noise in about 1 record of len(candidates)."""
    import hashlib

    records = [{"id": i, "prompt": "p", "chosen": f"word{i} alpha beta gamma", "rejected": "r",
                "candidates": ["c0", "c1", "c2"]} for i in range(600)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out.jsonl"
    prepare("noise", "--input", str(src), "--output", str(out), "--seed", "4")
    noisy = 0
    for line, record in enumerate(read_jsonl(out), 1):
        digest = hashlib.blake2b(f"4:noise-rejected:{line}".encode(), digest_size=8).digest()
        pick = int.from_bytes(digest, "big") % 4
        assert record["meta"]["rejected_index"] == pick and record["rejected"] == record["candidates"][pick]
        assert record["meta"]["rejected_is_noise"] is (pick == 3)
        noisy += pick == 3
    assert 110 <= noisy <= 190, noisy  # 150 expected


def test_noise_bad_record_line(tmp_path, capsys):
    records = candidate_records(2)
    records[1]["candidates"] = []
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "o.jsonl"
    assert f"{src}:2: candidates: must be a non-empty list" in fails(capsys, "noise", "--input", str(src),
                                                                     "--output", str(out))
    prepare("noise", "--input", str(src), "--output", str(out), "--skip-invalid")
    assert sidecar(out)["skipped"] == {"invalid candidates": 1}


def test_ultrafeedback_from_a_saved_dataset_dict_picks_the_split(tmp_path, capsys):
    from datasets import Dataset, DatasetDict

    saved = tmp_path / "uf"
    DatasetDict({"train_prefs": Dataset.from_list([uf_row(0), uf_row(1)]),
                 "test_prefs": Dataset.from_list([uf_row(9)])}).save_to_disk(str(saved))
    out = tmp_path / "out.jsonl"
    prepare("ultrafeedback", "--input", str(saved), "--output", str(out))
    assert [r["id"] for r in read_jsonl(out)] == ["p0", "p1"]
    prepare("ultrafeedback", "--input", str(saved), "--output", str(out), "--split", "test_prefs")
    assert [r["id"] for r in read_jsonl(out)] == ["p9"]
    err = fails(capsys, "ultrafeedback", "--input", str(saved), "--output", str(out), "--split", "nope")
    assert "no split 'nope'; choose --split from test_prefs, train_prefs" in err


@pytest.mark.parametrize("command", ["nectar", "ultrafeedback", "pairs", "unpair", "noise"])
def test_every_prepare_command_has_an_example(command):
    result = runner.invoke(app, ["prepare", command, "--help"])
    assert result.exit_code == 0
    assert f"Example: prefcli prepare {command} --input" in " ".join(result.output.split())
