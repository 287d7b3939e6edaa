"""Hostile inputs of ``prefcli eval alpaca|arena|report|status|harness`` and ``prefcli generate`` (rows of the
hostile-input table, see ``hostile.py``): outputs that cannot be written are refused before any work, inputs are
never overwritten, non-UTF-8 input names its file and line, a broken run directory is one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cli_helpers import invoke_cli
from hostile import Case, run_case

TASKS_DIR = str(Path(__file__).parents[1] / "examples" / "harness_tasks")
INSTRUCTIONS = ["Name a color.", "Add 2 and 2.", "Say hi."]


def _pairs(tmp: Path) -> None:
    (tmp / "outputs.json").write_text(json.dumps(
        [{"instruction": i, "output": f"answer {n}", "generator": "m"} for n, i in enumerate(INSTRUCTIONS)]))
    (tmp / "reference.json").write_text(json.dumps(
        [{"instruction": i, "output": "ref", "generator": "r"} for i in INSTRUCTIONS]))
    (tmp / "instructions.json").write_text(json.dumps([{"instruction": i} for i in INSTRUCTIONS]))
    (tmp / "afile").write_text("not a directory\n")


def _run_dir(tmp: Path) -> None:
    _pairs(tmp)
    run = tmp / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"protocol": "alpaca", "winrate": 50.0, "ci95": [40.0, 60.0],
                                                  "seed": 0, "judge": "j", "judge_model": "j"}))


def _store(tmp: Path, results: str | None) -> None:
    from prefcli.eval.store import JudgmentStore

    (tmp / "run").mkdir()
    with JudgmentStore(tmp / "run" / "judgments.sqlite"):
        pass
    if results is not None:
        (tmp / "run" / "results.json").write_text(results)


def _not_utf8(name: str, line: int):
    def setup(tmp: Path) -> None:
        _pairs(tmp)
        rows = [json.dumps({"instruction": i, "output": "x", "generator": "m"}).encode() for i in INSTRUCTIONS]
        rows[line - 1] = rows[line - 1].replace(b'"x"', b'"caf\xe9"')  # latin-1 bytes
        (tmp / name).write_bytes(b"\n".join(rows) + b"\n")
    return setup


def _difficulty_not_utf8(tmp: Path) -> None:
    _pairs(tmp)
    (tmp / "d.csv").write_bytes(b"instruction,instruction_difficulty\nName a color.,0.5\ncaf\xe9,1.0\n")


JUDGED = ("--outputs", "{tmp}/outputs.json", "--reference", "{tmp}/reference.json", "--judge", "rule:length")

CASES = [
    Case("eval-alpaca-output-is-a-file", ("eval", "alpaca", *JUDGED, "--output", "{tmp}/afile"),
         "is an existing file, expected a directory", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("eval-alpaca-output-under-a-file", ("eval", "alpaca", *JUDGED, "--output", "{tmp}/afile/run"),
         "afile is a file, so no directory can be made under it", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("eval-arena-output-is-a-file", ("eval", "arena", *JUDGED, "--output", "{tmp}/afile"),
         "is an existing file, expected a directory", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("eval-alpaca-outputs-not-utf8", ("eval", "alpaca", "--outputs", "{tmp}/outputs.jsonl", "--reference",
                                          "{tmp}/reference.json", "--judge", "rule:length", "--output", "{tmp}/o"),
         "outputs.jsonl:2: not valid UTF-8 (byte 0xe9", setup=_not_utf8("outputs.jsonl", 2),
         absent=("{tmp}/o/results.json", "{tmp}/o/judgments.jsonl")),
    Case("eval-alpaca-reference-not-utf8", ("eval", "alpaca", "--outputs", "{tmp}/outputs.json", "--reference",
                                            "{tmp}/ref.jsonl", "--judge", "rule:length", "--output", "{tmp}/o"),
         "ref.jsonl:3: not valid UTF-8 (byte 0xe9", setup=_not_utf8("ref.jsonl", 3),
         absent=("{tmp}/o/results.json", "{tmp}/o/judgments.jsonl")),
    # read before the model generates anything
    Case("eval-alpaca-instructions-not-utf8", ("eval", "alpaca", "--model", "{model}", "--instructions",
                                               "{tmp}/bad.jsonl", "--reference", "{tmp}/reference.json", "--judge",
                                               "rule:length", "--output", "{tmp}/o"),
         "bad.jsonl:1: not valid UTF-8 (byte 0xe9", setup=_not_utf8("bad.jsonl", 1),
         absent=("{tmp}/o/outputs.json", "{tmp}/o/results.json")),
    Case("eval-alpaca-lc-difficulty-not-utf8", ("eval", "alpaca", "--model", "{model}", "--instructions",
                                                "{tmp}/instructions.json", "--reference", "{tmp}/reference.json",
                                                "--judge", "rule:length", "--lc-difficulty", "{tmp}/d.csv",
                                                "--output", "{tmp}/o"),
         "d.csv:3: not valid UTF-8 (byte 0xe9 at byte 4 of the line)", setup=_difficulty_not_utf8,
         absent=("{tmp}/o/outputs.json", "{tmp}/o/results.json")),
    Case("eval-report-output-is-a-file", ("eval", "report", "{tmp}/run", "--output", "{tmp}/afile"),
         "is an existing file, expected a directory", setup=_run_dir, unchanged=("{tmp}/afile",)),
    Case("eval-report-output-under-a-file", ("eval", "report", "{tmp}/run", "--output", "{tmp}/afile/report"),
         "afile is a file, so no directory can be made under it", setup=_run_dir, unchanged=("{tmp}/afile",)),
    Case("eval-status-store-not-sqlite", ("eval", "status", "{tmp}/run", "--store", "{tmp}/afile"),
         "afile: not a judgment store", setup=_run_dir, unchanged=("{tmp}/afile",)),
    Case("eval-status-results-broken", ("eval", "status", "{tmp}/run"), "results.json:1: not valid JSON",
         setup=lambda tmp: _store(tmp, '{"protocol": "alpaca",')),
    Case("eval-status-results-a-list", ("eval", "status", "{tmp}/run"),
         "results.json: expected a JSON object of results, got a list", setup=lambda tmp: _store(tmp, "[1, 2]")),
    Case("eval-harness-output-is-a-file", ("eval", "harness", "--model", "{model}", "--tasks", "prefcli_tiny_mc",
                                           "--include-path", TASKS_DIR, "--output", "{tmp}/afile"),
         "is an existing file, expected a directory", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("eval-harness-output-under-a-file", ("eval", "harness", "--model", "{model}", "--tasks",
                                              "prefcli_tiny_mc", "--include-path", TASKS_DIR, "--output",
                                              "{tmp}/afile/h"),
         "afile is a file, so no directory can be made under it", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("generate-output-is-the-instructions", ("generate", "--model", "{model}", "--instructions",
                                                 "{tmp}/instructions.json", "--output", "{tmp}/instructions.json"),
         "is the --instructions file; writing it would overwrite the input", setup=_pairs,
         unchanged=("{tmp}/instructions.json",)),
    Case("generate-output-is-the-model", ("generate", "--model", "{model}", "--instructions",
                                          "{tmp}/instructions.json", "--output", "{model}/config.json"),
         "is inside the --model directory", setup=_pairs, unchanged=("{model}",)),
    Case("generate-output-is-a-directory", ("generate", "--model", "{model}", "--instructions",
                                            "{tmp}/instructions.json", "--output", "{tmp}"),
         "is a directory, expected a file path", setup=_pairs),
    Case("generate-output-under-a-file", ("generate", "--model", "{model}", "--instructions",
                                          "{tmp}/instructions.json", "--output", "{tmp}/afile/out.json"),
         "afile is a file, so nothing can be written under it", setup=_pairs, unchanged=("{tmp}/afile",)),
    Case("generate-instructions-not-utf8", ("generate", "--model", "{model}", "--instructions",
                                            "{tmp}/bad.jsonl", "--output", "{tmp}/out.json"),
         "bad.jsonl:3: not valid UTF-8 (byte 0xe9", setup=_not_utf8("bad.jsonl", 3), absent=("{tmp}/out.json",)),
    Case("generate-top-p-zero", ("generate", "--model", "{model}", "--instructions", "{tmp}/instructions.json",
                                 "--output", "{tmp}/out.json", "--top-p", "0"),
         "top_p: must be in (0, 1], got 0.0", setup=_pairs, absent=("{tmp}/out.json",)),
    Case("generate-backend-unknown", ("generate", "--model", "{model}", "--instructions", "{tmp}/instructions.json",
                                      "--output", "{tmp}/out.json", "--backend", "tgi"),
         "backend: must be one of hf, vllm, got 'tgi'", setup=_pairs, absent=("{tmp}/out.json",)),
    Case("eval-alpaca-model-top-p-above-one", ("eval", "alpaca", "--model", "{model}", "--instructions",
                                               "{tmp}/instructions.json", "--reference", "{tmp}/reference.json",
                                               "--judge", "rule:length", "--top-p", "1.5", "--output", "{tmp}/o"),
         "top_p: must be in (0, 1], got 1.5", setup=_pairs, absent=("{tmp}/o",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_eval(case, tmp_path, capsys, tiny_model):
    run_case(case, tmp_path, capsys, model=tiny_model)


def said(text: str, word: str, path: Path) -> bool:
    """``word PATH`` in the output, however the console wrapped it."""
    return f"{word}{path}" in "".join(text.split())


def test_reuse_of_outputs_follows_the_weights_not_the_path(tmp_path, tiny_model):
    """Same path, same settings, changed weights: generated again, never "reused" (for `generate` and for
    `eval alpaca|arena --model`, which share prefcli.eval.model_outputs)."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    _pairs(tmp_path)
    args = ["generate", "--model", model, "--instructions", tmp_path / "instructions.json", "--output",
            tmp_path / "out.json", "--max-new-tokens", "4"]
    out = tmp_path / "out.json"
    code, text = invoke_cli(args)
    assert code == 0 and said(text, "wrote", out), text
    code, text = invoke_cli(args)
    assert code == 0 and said(text, "reused", out), text
    meta = json.loads((tmp_path / "out.json.meta.json").read_text())
    assert meta["config"]["weights"].startswith("sha256:")
    # the keys outputs saved by earlier versions carry, so those are reused too
    assert meta["config"]["generation"] == {"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "batch_size": 8,
                                            "seed": 0, "backend": "hf"}

    weights = model / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # new weights written in place
    code, text = invoke_cli(args)
    assert code == 0 and said(text, "wrote", out), text

    run = ["eval", "arena", "--model", model, "--instructions", tmp_path / "instructions.json", "--reference",
           tmp_path / "reference.json", "--judge", "rule:length", "--max-new-tokens", "4", "--output", tmp_path / "a"]
    outputs = tmp_path / "a" / "outputs.json"
    code, text = invoke_cli(run)
    assert code == 0 and said(text, "wrote", outputs), text
    code, text = invoke_cli(run)
    assert code == 0 and said(text, "reused", outputs), text
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    code, text = invoke_cli(run)
    assert code == 0 and said(text, "wrote", outputs), text


def test_model_outputs_refuse_several_replies_per_instruction(tmp_path):
    from prefcli.errors import ConfigError
    from prefcli.eval.model_outputs import generate_model_outputs
    from prefcli.generate import GenerationParams

    with pytest.raises(ConfigError, match="num_return_sequences: model outputs are one reply per instruction"):
        generate_model_outputs("unused", ["Say hi."], tmp_path / "out.json",
                               generation=GenerationParams(temperature=1.0, num_return_sequences=2))
    assert not (tmp_path / "out.json").exists()
