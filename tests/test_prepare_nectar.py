"""``prefcli prepare nectar``: prompt parsing, selection, formats, determinism, readers and bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest
from prepare_helpers import fails, prepare, read_jsonl, runner, write_jsonl

from prefcli.cli import app
from prefcli.data.nectar import parse_nectar_prompt
from prefcli.data.records import read_records, validate_record


def answers(*ranks, texts=None, models=None) -> list[dict]:
    texts = texts or [f"answer ranked {rank}" for rank in ranks]
    models = models or [f"m{rank}" for rank in ranks]
    return [{"answer": text, "model": model, "rank": rank} for text, model, rank in zip(texts, models, ranks)]


def row(prompt="\n\nHuman: Hi?\n\nAssistant:", ranks=(3, 1, 4, 2, 5), **extra) -> dict:
    return {"prompt": prompt, "answers": answers(*ranks), **extra}




def expected_draw(seed: int, line: int, n: int) -> int:
    """The documented per-row draw, written out: BLAKE2b-64 of "seed:rejected:line", modulo n."""
    digest = hashlib.blake2b(f"{seed}:rejected:{line}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n






# --- prompt parsing ---------------------------------------------------------------------------------------------

def test_prompt_single_and_multi_turn():
    assert parse_nectar_prompt("\n\nHuman: What is 2+2?\n\nAssistant:") == [
        {"role": "user", "content": "What is 2+2?"}]
    text = "\n\nHuman: Hi there \n\nAssistant: Hello! How can I help?\n\nHuman: Tell me a joke.\n\nAssistant:"
    assert parse_nectar_prompt(text) == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    # a turn may span several lines and blank lines; no leading blank lines needed
    assert parse_nectar_prompt("Human: line one\n\nline two\n\nAssistant:") == [
        {"role": "user", "content": "line one\n\nline two"}]
    assert parse_nectar_prompt("just a question") == [{"role": "user", "content": "just a question"}]


@pytest.mark.parametrize("text, message", [
    ("", "is empty"),
    ("\n\nAssistant: hi\n\nHuman: x\n\nAssistant:", "must start with a 'Human:' turn"),
    ("\n\nHuman: hi\n\nAssistant: already answered", "must end with an empty 'Assistant:' turn"),
    ("\n\nHuman: \n\nAssistant:", "turn 1 (user) is empty"),
    ("preamble\n\nHuman: hi\n\nAssistant:", "text before the first 'Human:' turn"),
])
def test_prompt_errors(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_nectar_prompt(text)


# --- selection --------------------------------------------------------------------------------------------------

def test_candidates_format_selection_meta_and_draw(tmp_path):
    rows = [row(ranks=(3, 1, 4, 2, 5, 7, 6), id=f"r{i}", turns=1, source=["x"], good_natured=True)
            for i in range(6)]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = prepare("nectar", "--input", str(src), "--output", str(out), "--seed", "7")
    records = read_jsonl(out)
    assert len(records) == 6
    for line, record in enumerate(records, 1):
        assert record["id"] == f"r{line - 1}"
        assert record["prompt"] == [{"role": "user", "content": "Hi?"}]
        assert record["chosen"] == "answer ranked 1"
        # rank 2 dropped (skip-ranks 1); candidates are ranks 3..7, best first
        assert record["candidates"] == [f"answer ranked {rank}" for rank in (3, 4, 5, 6, 7)]
        pick = expected_draw(7, line, 5)
        assert record["rejected"] == record["candidates"][pick]
        meta = record["meta"]
        assert meta["rejected_index"] == pick and meta["rejected_rank"] == 3 + pick
        assert meta["chosen_model"] == "m1" and meta["chosen_rank"] == 1
        assert meta["candidate_models"] == ["m3", "m4", "m5", "m6", "m7"]
        assert meta["candidate_ranks"] == [3, 4, 5, 6, 7]
        assert meta["dropped_models"] == ["m2"] and meta["dropped_ranks"] == [2]
        assert meta["turns"] == 1 and meta["source"] == ["x"] and meta["good_natured"] is True
        validate_record(record)
    assert len(list(read_records(out))) == 6
    assert "rows read" in result.stdout and "candidates per record" in result.stdout


def test_draws_cover_candidates_uniformly(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [row(ranks=(1, 2, 3, 4, 5, 6)) for _ in range(800)])
    out = tmp_path / "out.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(out), "--seed", "3")
    picks = [record["meta"]["rejected_index"] for record in read_jsonl(out)]
    assert picks == [expected_draw(3, line, 4) for line in range(1, 801)]
    counts = [picks.count(k) for k in range(4)]
    assert all(150 <= count <= 250 for count in counts), counts  # 200 expected each


def test_multi_turn_unicode_long_and_float_ranks(tmp_path):
    long_text = "數據 naïve café 🙂 " * 20_000  # ~340k characters
    prompt = "\n\nHuman: Привет, мир! 東京\n\nAssistant: Hola 🙂\n\nHuman: second\u2028\u0085 \"turn\"\\n\n\nAssistant:"
    rows = [{"prompt": prompt, "answers": answers(2.0, 1.0, 3.0, 4.0, texts=["b 🙂", long_text, "c\u0000é", "d"])}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(out))
    (record,) = read_jsonl(out)
    assert record["prompt"] == [{"role": "user", "content": "Привет, мир! 東京"},
                                {"role": "assistant", "content": "Hola 🙂"},
                                {"role": "user", "content": "second\u2028\u0085 \"turn\"\\n"}]
    assert record["chosen"] == long_text
    assert record["candidates"] == ["c\u0000é", "d"] and record["meta"]["candidate_ranks"] == [3.0, 4.0]
    assert record["id"] == 1  # no id in the row: its line number
    assert "Привет".encode() in out.read_bytes()  # written as UTF-8, not \u-escaped


def test_shuffled_and_tied_ranks_are_deterministic(tmp_path):
    # ranks tie at 1 (positions 1 and 3) and at 3: the stable order is (rank, position in the row)
    texts = ["w", "x", "y", "z", "v"]
    rows = [{"prompt": "q", "answers": answers(3, 1, 3, 1, 5, texts=texts)}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(out), "--skip-ranks", "0")
    (record,) = read_jsonl(out)
    assert record["chosen"] == "x"
    assert record["candidates"] == ["z", "w", "y", "v"]
    assert record["meta"]["candidate_ranks"] == [1, 3, 3, 5]


def test_skip_ranks_max_and_min_candidates_and_too_few_answers(tmp_path):
    rows = [row(ranks=(1, 2, 3, 4, 5, 6, 7)), row(ranks=(2, 1)), row(ranks=(1, 2, 3)), row(ranks=(1,))]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    result = prepare("nectar", "--input", str(src), "--output", str(out), "--skip-ranks", "2",
                     "--max-candidates", "3")
    records = read_jsonl(out)
    assert len(records) == 1
    assert records[0]["meta"]["candidate_ranks"] == [4, 5, 6]
    assert records[0]["meta"]["dropped_ranks"] == [2, 3, 7]
    assert "too few answers" in result.stdout
    sidecar = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert sidecar["skipped"] == {"too few answers": 3}
    assert sidecar["counts"]["rows_read"] == 4 and sidecar["counts"]["records_written"] == 1
    assert sidecar["counts"]["candidates_per_record"] == 3.0

    prepare("nectar", "--input", str(src), "--output", str(out), "--skip-ranks", "0", "--min-candidates", "2")
    assert [len(r["candidates"]) for r in read_jsonl(out)] == [6, 2]


def test_pairs_and_unpaired_formats_share_the_draw(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [row(ranks=(1, 2, 3, 4, 5), id=i) for i in range(5)])
    cands, pairs, one, every = (tmp_path / f"{name}.jsonl" for name in ("c", "p", "u1", "ua"))
    prepare("nectar", "--input", str(src), "--output", str(cands))
    prepare("nectar", "--input", str(src), "--output", str(pairs), "--format", "pairs")
    prepare("nectar", "--input", str(src), "--output", str(one), "--format", "unpaired")
    prepare("nectar", "--input", str(src), "--output", str(every), "--format", "unpaired", "--negatives", "all")
    cand_records, pair_records = read_jsonl(cands), read_jsonl(pairs)
    assert all("candidates" not in record for record in pair_records)
    assert [r["rejected"] for r in pair_records] == [r["rejected"] for r in cand_records]
    unpaired = read_jsonl(one)
    assert len(unpaired) == 10
    for index, record in enumerate(cand_records):
        good, bad = unpaired[2 * index], unpaired[2 * index + 1]
        assert (good["label"], good["completion"], good["id"]) == (True, record["chosen"], f"{index}:chosen")
        assert (bad["label"], bad["completion"], bad["id"]) == (False, record["rejected"], f"{index}:rejected")
        assert good["meta"] == {"pair_id": index, "model": "m1", "rank": 1}
        assert bad["meta"]["pair_id"] == index and bad["meta"]["rank"] == record["meta"]["rejected_rank"]
        assert good["prompt"] == bad["prompt"] == record["prompt"]
    all_records = read_jsonl(every)
    assert len(all_records) == 5 * 4
    assert [r["completion"] for r in all_records[1:4]] == cand_records[0]["candidates"]
    for record in unpaired + all_records:
        validate_record(record)


# --- determinism, --limit, sidecar ------------------------------------------------------------------------------

def test_same_seed_same_bytes_and_limit_is_a_prefix(tmp_path):
    from prefcli.fixtures import write_synthetic_nectar

    src = write_synthetic_nectar(tmp_path / "in.jsonl", rows=60, seed=1)
    a, b, c, limited = (tmp_path / f"{name}.jsonl" for name in ("a", "b", "c", "limited"))
    prepare("nectar", "--input", str(src), "--output", str(a), "--seed", "5")
    prepare("nectar", "--input", str(src), "--output", str(b), "--seed", "5")
    prepare("nectar", "--input", str(src), "--output", str(c), "--seed", "6")
    prepare("nectar", "--input", str(src), "--output", str(limited), "--seed", "5", "--limit", "17")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert a.read_text().splitlines()[:17] == limited.read_text().splitlines()
    multi_turn = [r for r in read_jsonl(a) if len(r["prompt"]) == 3]
    assert len(multi_turn) == 15 and [m["role"] for m in multi_turn[0]["prompt"]] == ["user", "assistant", "user"]


def test_sidecar_contents(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [row(), row(ranks=(1,))])
    out = tmp_path / "out.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(out), "--seed", "4", "--max-candidates", "2")
    sidecar = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert sidecar["command"].startswith("prefcli prepare nectar --input ")
    assert "--max-candidates 2" in sidecar["command"] and "--seed 4" in sidecar["command"]
    assert sidecar["config"]["max_candidates"] == 2 and sidecar["config"]["skip_ranks"] == 1
    assert sidecar["config"]["format"] == "candidates"
    assert sidecar["seed"] == 4
    assert sidecar["inputs"] == {str(src): "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()}
    assert sidecar["counts"] == {"rows_read": 2, "rows_skipped": 1, "records_written": 1,
                                 "mean_chosen_chars": len("answer ranked 1"),
                                 "mean_rejected_chars": len("answer ranked 3"),
                                 "mean_candidate_chars": len("answer ranked 3"), "candidates_per_record": 2.0}
    assert sidecar["skipped"] == {"too few answers": 1}
    from prefcli import __version__
    assert sidecar["prefcli_version"] == __version__


# --- readers ----------------------------------------------------------------------------------------------------

def test_json_array_parquet_gzip_and_save_to_disk_inputs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset, DatasetDict

    rows = [row(ranks=(2, 1, 3, 4), id=i) for i in range(5)]
    jsonl = write_jsonl(tmp_path / "in.jsonl", rows)
    expected_out = tmp_path / "expected.jsonl"
    prepare("nectar", "--input", str(jsonl), "--output", str(expected_out))
    expected = read_jsonl(expected_out)

    array = tmp_path / "in.json"
    array.write_text("[\n" + ",\n".join(json.dumps(r, indent=1) for r in rows) + "\n]\n")
    parquet = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet, row_group_size=2)
    lines_named_json = tmp_path / "lines.json"  # JSON Lines under a .json name
    lines_named_json.write_bytes(jsonl.read_bytes())
    gz = tmp_path / "in.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl.read_bytes()))
    disk = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(disk))
    for source in (array, lines_named_json, parquet, gz, disk):
        out = tmp_path / f"out-{source.name}.jsonl"
        prepare("nectar", "--input", str(source), "--output", str(out))
        got = read_jsonl(out)
        assert [r["id"] for r in got] == [r["id"] for r in expected], source
        assert [r["chosen"] for r in got] == [r["chosen"] for r in expected], source
        assert [r["candidates"] for r in got] == [r["candidates"] for r in expected], source


def test_json_array_error_reports_the_line(tmp_path, capsys):
    array = tmp_path / "in.json"
    good = json.dumps(row())
    array.write_text(f"[\n{good},\n{good},\n{{\"prompt\": oops}}\n]\n")
    err = fails(capsys, "nectar", "--input", str(array), "--output", str(tmp_path / "o.jsonl"))
    assert f"{array}:4: invalid JSON" in err


# --- bad input --------------------------------------------------------------------------------------------------

BAD_ROWS = [
    ("{not json", "invalid JSON"),
    (json.dumps({"answers": answers(1, 2, 3)}), "prompt: missing"),
    (json.dumps({"prompt": 5, "answers": answers(1, 2, 3)}), "prompt: must be a string or a list of messages"),
    (json.dumps({"prompt": "q"}), "answers: missing"),
    (json.dumps({"prompt": "q", "answers": "many"}), "answers: must be a list"),
    (json.dumps({"prompt": "q", "answers": []}), "answers: is empty (no answers)"),
    (json.dumps({"prompt": "q", "answers": answers(1, 2, texts=["ok", "  "])}), "answers[1].answer: is empty"),
    (json.dumps({"prompt": "q", "answers": [{"answer": "a", "model": "m"}]}), "answers[0].rank: missing"),
    (json.dumps({"prompt": "q", "answers": [{"answer": "a", "rank": "1"}]}), "answers[0].rank: must be a number"),
    (json.dumps({"prompt": "q", "answers": [{"rank": 1}]}), "answers[0].answer: missing"),
    (json.dumps({"prompt": "q", "answers": [{"answer": 3, "rank": 1}]}), "answers[0].answer: must be a string"),
    (json.dumps([1, 2]), "row must be a JSON object"),
]


@pytest.mark.parametrize("bad, message", BAD_ROWS)
def test_strict_mode_stops_at_the_first_bad_row(tmp_path, capsys, bad, message):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(row()) + "\n\n" + bad + "\n" + json.dumps(row()) + "\n")
    out = tmp_path / "out.jsonl"
    err = fails(capsys, "nectar", "--input", str(src), "--output", str(out))
    assert err.startswith(f"error: {src}:3: {message}")
    assert not out.exists() and not (tmp_path / "out.jsonl.meta.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # no temp file left either


def test_skip_invalid_counts_by_reason(tmp_path):
    lines = [json.dumps(row())] + [bad for bad, _ in BAD_ROWS] + [json.dumps(row(ranks=(1, 2)))]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = prepare("nectar", "--input", str(src), "--output", str(out), "--skip-invalid")
    assert len(read_jsonl(out)) == 1
    sidecar = json.loads((tmp_path / "out.jsonl.meta.json").read_text())
    assert sidecar["skipped"] == {
        "invalid JSON": 1, "missing prompt": 1, "mistyped prompt": 1, "missing answers": 1,
        "mistyped answers": 1, "no answers": 1, "empty answer": 1, "missing answers[].rank": 1,
        "mistyped answers[].rank": 1, "missing answers[].answer": 1, "mistyped answers[].answer": 1,
        "not an object": 1, "too few answers": 1}
    assert sidecar["counts"]["rows_read"] == len(lines) and sidecar["counts"]["rows_skipped"] == len(lines) - 1
    assert "skipped: empty answer" in result.stdout


def test_input_and_output_errors(tmp_path, capsys):
    good = write_jsonl(tmp_path / "in.jsonl", [row()])
    out = str(tmp_path / "out.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert f"{empty}: contains no rows" in fails(capsys, "nectar", "--input", str(empty), "--output", out)
    missing = tmp_path / "missing.jsonl"
    assert f"{missing}: no such file" in fails(capsys, "nectar", "--input", str(missing), "--output", out)
    csv = tmp_path / "data.csv"
    csv.write_text("a,b\n")
    assert "unknown input format '.csv'" in fails(capsys, "nectar", "--input", str(csv), "--output", out)
    assert "is the --input file" in fails(capsys, "nectar", "--input", str(good), "--output", str(good))
    assert "is a directory" in fails(capsys, "nectar", "--input", str(good), "--output", str(tmp_path))
    all_skipped = write_jsonl(tmp_path / "few.jsonl", [row(ranks=(1, 2))])
    assert "all 1 rows were skipped (too few answers: 1)" in fails(
        capsys, "nectar", "--input", str(all_skipped), "--output", out)
    not_parquet = tmp_path / "bad.parquet"
    not_parquet.write_text("nope")
    assert "not a readable Parquet file" in fails(capsys, "nectar", "--input", str(not_parquet), "--output", out)
    assert not Path(out).exists()
    assert good.read_text() == json.dumps(row()) + "\n"


def test_unknown_output_format_is_a_usage_error(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [row()])
    result = runner.invoke(app, ["prepare", "nectar", "--input", str(src), "--output", str(tmp_path / "o.jsonl"),
                                 "--format", "triples"])
    assert result.exit_code == 2
    assert "triples" in result.output


def test_existing_output_survives_a_failed_run(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(row()) + "\n{bad\n")
    out = tmp_path / "out.jsonl"
    out.write_text("previous\n")
    fails(capsys, "nectar", "--input", str(src), "--output", str(out))
    assert out.read_text() == "previous\n"


def test_hub_id_without_network_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = fails(capsys, "nectar", "--input", "nobody/no-such-dataset", "--output", str(tmp_path / "o.jsonl"))
    assert "nobody/no-such-dataset: not a local file, and loading it from the Hugging Face hub failed" in err
