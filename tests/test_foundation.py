"""The package, CLI skeleton, record contract, atomic writes and tiny-model fixture."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from prefcli import __version__
from prefcli.cli import app
from prefcli.data.atomic import atomic_open
from prefcli.data.records import RecordError, read_records, validate_record
from prefcli.errors import DataError

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"prefcli {__version__}"


def test_console_script_reports_user_errors_in_one_line(tmp_path):
    missing = tmp_path / "nope.jsonl"
    proc = subprocess.run([sys.executable, "-m", "prefcli", "prepare", "nectar", "--input", str(missing),
                           "--output", str(tmp_path / "out.jsonl")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "nope.jsonl" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_record_kinds():
    pair = validate_record({"id": 1, "prompt": "hi", "chosen": "a", "rejected": "b"})
    assert pair["prompt"] == [{"role": "user", "content": "hi"}] and pair["meta"] == {}
    cands = validate_record({"id": 2, "prompt": "hi", "chosen": "a", "candidates": ["b", "c"]})
    assert cands["candidates"] == ["b", "c"]
    unpaired = validate_record({"id": 3, "prompt": "hi", "completion": "a", "label": False})
    assert unpaired["label"] is False


@pytest.mark.parametrize("record, field", [
    ({"id": 1, "prompt": "hi", "chosen": "a"}, "rejected"),
    ({"id": 1, "prompt": "", "chosen": "a", "rejected": "b"}, "prompt"),
    ({"id": 1, "prompt": [{"role": "bot", "content": "x"}], "chosen": "a", "rejected": "b"}, "prompt[0].role"),
    ({"id": 1, "prompt": "hi", "chosen": " ", "rejected": "b"}, "chosen"),
    ({"id": 1, "prompt": "hi", "chosen": "a", "candidates": []}, "candidates"),
    ({"id": 1, "prompt": "hi", "completion": "a", "label": "yes"}, "label"),
    ({"prompt": "hi", "chosen": "a", "rejected": "b"}, "id"),
])
def test_validate_record_names_the_field(record, field):
    with pytest.raises(RecordError) as info:
        validate_record(record)
    assert info.value.field == field


def test_read_records_locates_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"id": 1, "prompt": "hi", "chosen": "a", "rejected": "b"}) + "\n{oops\n")
    with pytest.raises(DataError) as info:
        list(read_records(path))
    assert str(info.value).startswith(f"{path}:2: invalid JSON")


def test_atomic_open_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_tiny_model_chat_template(tiny_model, tiny_model_no_bos):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for path, has_bos in ((tiny_model, True), (tiny_model_no_bos, False)):
        tokenizer = AutoTokenizer.from_pretrained(path)
        text = tokenizer.apply_chat_template([{"role": "user", "content": "café 東京 🙂"}], tokenize=False,
                                             add_generation_prompt=True)
        assert text.endswith("<|assistant|>\n")
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text
        assert (ids[0] == tokenizer.bos_token_id) == has_bos
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "llama"


def test_generate_writes_alpaca_format_and_reuses_it(tiny_model, tmp_path):
    from prefcli.fixtures import write_synthetic_instructions

    instructions = write_synthetic_instructions(tmp_path / "instructions.json", rows=3)
    output = tmp_path / "ref.json"
    args = ["generate", "--model", str(tiny_model), "--instructions", str(instructions), "--output", str(output),
            "--max-new-tokens", "4"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    rows = json.loads(output.read_text())
    assert [row["instruction"] for row in rows] == [i["instruction"] for i in json.loads(instructions.read_text())]
    assert all(row["generator"] == tiny_model.name for row in rows)
    before = output.stat().st_mtime_ns
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and output.stat().st_mtime_ns == before


@pytest.mark.parametrize("text, hub_id, model_name", [
    ("HuggingFaceH4/ultrafeedback_binarized", True, True),
    ("meta-llama/Llama-3.1-8B", True, True),
    ("gpt2", False, True),                 # a bare name is a hub id only where models are meant
    ("org/data.jsonl", False, False),      # a data file that does not exist, not a hub id
    ("./org/name", False, False),
    ("/abs/path", False, False),
    ("~/models/x", False, False),
    ("a/b/c", False, False),
    ("org/na--me", False, False),
    ("org/", False, False),
])
def test_one_hub_id_test_for_data_models_and_eval_sets(text, hub_id, model_name):
    from prefcli.hub import looks_like_hub_id

    assert looks_like_hub_id(text) is hub_id
    assert looks_like_hub_id(text, bare_name=True) is model_name
