"""Hostile inputs of ``prefcli prepare`` and of the record reader under ``train --data`` (rows of the hostile-input
table, see ``hostile.py``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from hostile import Case, run_case

NECTAR_ROW = {"prompt": "\n\nHuman: Hi?\n\nAssistant:",
              "answers": [{"answer": f"answer {rank}", "model": f"m{rank}", "rank": rank} for rank in (1, 2, 3, 4)]}
PAIR_RECORD = {"id": 1, "prompt": "Hi?", "chosen": "alpha beta gamma", "rejected": "no"}
UF_ROW = {"prompt": "Hi?", "prompt_id": "p0", "chosen": [{"role": "user", "content": "Hi?"},
                                                         {"role": "assistant", "content": "Hello there."}],
          "rejected": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Go away."}],
          "score_chosen": 8.0, "score_rejected": 2.0}
INPUTS = {"nectar": ("nectar.jsonl", NECTAR_ROW), "ultrafeedback": ("uf.jsonl", UF_ROW),
          "pairs": ("pairs.jsonl", PAIR_RECORD), "unpair": ("pairs.jsonl", PAIR_RECORD),
          "noise": ("pairs.jsonl", PAIR_RECORD)}


def _write_inputs(tmp: Path) -> None:
    for name, row in {name: row for name, row in INPUTS.values()}.items():
        (tmp / name).write_text(json.dumps(row) + "\n", encoding="utf-8")
    (tmp / "afile").write_text("keep me\n")


def _nectar_text(tmp: Path, name: str, text: str) -> None:
    (tmp / name).write_text(text, encoding="utf-8")


def _minus_infinity_json(tmp: Path) -> None:
    good = json.dumps(NECTAR_ROW)
    bad = good.replace('"rank": 4', '"rank": -Infinity')
    _nectar_text(tmp, "in.json", f"[\n{good},\n{bad}\n]\n")


def _minus_infinity_jsonl(tmp: Path) -> None:
    good = json.dumps(NECTAR_ROW)
    _nectar_text(tmp, "in.jsonl", good + "\n" + good.replace('"rank": 4', '"rank": -Infinity') + "\n")


def _minus_infinity_parquet(tmp: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = json.loads(json.dumps(NECTAR_ROW))
    bad["answers"][3]["rank"] = float("-inf")
    rows = [json.loads(json.dumps(NECTAR_ROW)), bad]
    for row in rows:
        for answer in row["answers"]:
            answer["rank"] = float(answer["rank"])
    pq.write_table(pa.Table.from_pylist(rows), tmp / "in.parquet")


def _nan_score(tmp: Path) -> None:
    row = dict(UF_ROW, score_rejected=float("nan"))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([UF_ROW, row]), tmp / "uf.parquet")


def _truncated_gzip(tmp: Path) -> None:
    data = gzip.compress(("".join(json.dumps(dict(NECTAR_ROW, id=i)) + "\n" for i in range(200))).encode())
    (tmp / "in.jsonl.gz").write_bytes(data[: len(data) // 2])


def _not_gzip(tmp: Path) -> None:
    (tmp / "in.jsonl.gz").write_text(json.dumps(NECTAR_ROW) + "\n")


def _latin1_jsonl(tmp: Path) -> None:
    good = json.dumps(NECTAR_ROW).encode()
    (tmp / "in.jsonl").write_bytes(good + b"\n" + good.replace(b"answer 3", b"caf\xe9 3") + b"\n")


def _latin1_records(tmp: Path) -> None:
    good = json.dumps(PAIR_RECORD).encode()
    (tmp / "data.jsonl").write_bytes(good + b"\n" + good.replace(b"alpha", b"\xe0lpha") + b"\n")


def _latin1_json_array(tmp: Path) -> None:
    good = json.dumps(NECTAR_ROW).encode()
    (tmp / "in.json").write_bytes(b"[\n" + good + b",\n" + good.replace(b"answer 3", b"caf\xe9 3") + b"\n]\n")


def _json_array_cut_in_a_character(tmp: Path) -> None:
    good = json.dumps(NECTAR_ROW).encode()
    (tmp / "in.json").write_bytes(b"[\n" + good + b",\n" + good[:20] + "é".encode()[:1])


def _stale_output_dir(tmp: Path) -> None:
    _write_inputs(tmp)
    (tmp / "out.jsonl").mkdir()


NECTAR_OUT = ("--output", "{tmp}/out.jsonl")

CASES = [
    Case("prepare-nectar-minus-infinity-json", ("prepare", "nectar", "--input", "{tmp}/in.json", *NECTAR_OUT),
         "in.json:3: invalid JSON (-Infinity is not a JSON number)", setup=_minus_infinity_json,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-minus-infinity-jsonl", ("prepare", "nectar", "--input", "{tmp}/in.jsonl", *NECTAR_OUT),
         "in.jsonl:2: invalid JSON (-Infinity is not a JSON number)", setup=_minus_infinity_jsonl,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-minus-infinity-parquet",
         ("prepare", "nectar", "--input", "{tmp}/in.parquet", *NECTAR_OUT),
         "in.parquet:2: answers[3].rank: must be a finite number, got -inf", setup=_minus_infinity_parquet,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-truncated-gzip", ("prepare", "nectar", "--input", "{tmp}/in.jsonl.gz", *NECTAR_OUT),
         "unreadable gzip data (the file is truncated)", setup=_truncated_gzip, absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-gz-name-not-gzip", ("prepare", "nectar", "--input", "{tmp}/in.jsonl.gz", *NECTAR_OUT),
         "in.jsonl.gz:1: unreadable gzip data (not a gzip file)", setup=_not_gzip, absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-non-utf8-jsonl", ("prepare", "nectar", "--input", "{tmp}/in.jsonl", *NECTAR_OUT),
         "in.jsonl:2: not valid UTF-8 (byte 0xe9", setup=_latin1_jsonl, absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-non-utf8-json-array", ("prepare", "nectar", "--input", "{tmp}/in.json", *NECTAR_OUT),
         "in.json:3: not valid UTF-8 (byte 0xe9)", setup=_latin1_json_array, absent=("{tmp}/out.jsonl",)),
    Case("prepare-nectar-json-array-ends-inside-a-character",
         ("prepare", "nectar", "--input", "{tmp}/in.json", *NECTAR_OUT), "in.json:3: not valid UTF-8 (byte 0xc3)",
         setup=_json_array_cut_in_a_character, absent=("{tmp}/out.jsonl",)),
    Case("prepare-ultrafeedback-min-score-gap-nan",
         ("prepare", "ultrafeedback", "--input", "{tmp}/uf.jsonl", "--output", "{tmp}/out.jsonl",
          "--min-score-gap", "nan"), "--min-score-gap must be a finite number", setup=_write_inputs,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-ultrafeedback-nan-score-parquet",
         ("prepare", "ultrafeedback", "--input", "{tmp}/uf.parquet", "--output", "{tmp}/out.jsonl"),
         "uf.parquet:2: score_rejected: must be a finite number, got nan", setup=_nan_score,
         absent=("{tmp}/out.jsonl",)),
    Case("prepare-workers-is-deprecated-and-harmless",
         ("prepare", "nectar", "--input", "{tmp}/nectar.jsonl", "--output", "{tmp}/o.jsonl", "--workers", "4"),
         "", code=0, setup=_write_inputs),
]
for command, (input_name, _) in INPUTS.items():
    base = ("prepare", command, "--input", f"{{tmp}}/{input_name}")
    CASES += [
        Case(f"prepare-{command}-output-is-a-directory", (*base, "--output", "{tmp}"),
             "is a directory, expected a file path", setup=_write_inputs),
        Case(f"prepare-{command}-output-under-a-file", (*base, "--output", "{tmp}/afile/out.jsonl"),
             "afile is a file, so nothing can be written under it", setup=_write_inputs, unchanged=("{tmp}/afile",)),
        Case(f"prepare-{command}-output-is-the-input", (*base, "--output", f"{{tmp}}/{input_name}"),
             "is the --input file; writing it would overwrite the input", setup=_write_inputs, unchanged=(f"{{tmp}}/{input_name}",)),
        Case(f"prepare-{command}-sidecar-is-a-directory", (*base, "--output", "{tmp}/o.jsonl"),
             "o.jsonl.meta.json: is a directory", setup=lambda tmp: (_write_inputs(tmp),
                                                                    (tmp / "o.jsonl.meta.json").mkdir()),
             absent=("{tmp}/o.jsonl",)),
    ]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_prepare(case, tmp_path, capsys):
    run_case(case, tmp_path, capsys)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [], f"{case.id}: temporary files left: {leftovers}"


RECORD_CASES = [
    Case("train-data-non-utf8", ("train", "--model", "{model}", "--data", "{tmp}/data.jsonl",
                                 "--output", "{tmp}/run"), "data.jsonl:2: not valid UTF-8 (byte 0xe0",
         setup=_latin1_records, absent=("{tmp}/run",)),
]


@pytest.mark.parametrize("case", RECORD_CASES, ids=lambda case: case.id)
def test_hostile_records(case, tmp_path, capsys, tiny_model):
    run_case(case, tmp_path, capsys, model=tiny_model)


def test_workers_flag_warns_that_it_does_nothing(tmp_path, capsys):
    from cli_helpers import run_main

    _write_inputs(tmp_path)
    capsys.readouterr()
    assert run_main(["prepare", "nectar", "--input", str(tmp_path / "nectar.jsonl"), "--output",
                     str(tmp_path / "o.jsonl"), "--workers", "2"]) == 0
    assert "warning: --workers is deprecated and has no effect" in capsys.readouterr().err
