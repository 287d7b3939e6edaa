"""arena-hard-auto's own files read as they are (small copies written here in both versions' shapes), matched by
uid; alpaca_eval's outputs JSON as before; items in one file and not the other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prefcli.errors import DataError
from prefcli.eval.items import match_items, read_instruction_rows, read_outputs


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def v2_files(tmp: Path):
    questions = jsonl(tmp / "question.jsonl", [
        {"uid": "a1", "category": "hard_prompt", "subcategory": "coding", "prompt": "Write a sort."},
        {"uid": "b2", "category": "creative_writing", "subcategory": "poem", "prompt": "Write a poem."},
        {"uid": "c3", "category": "hard_prompt", "subcategory": "math", "prompt": "Prove it."}])
    answers = tmp / "model_answer"
    answers.mkdir()
    model = jsonl(answers / "my-model.jsonl", [
        {"uid": "b2", "ans_id": "x", "model": "my-model", "tstamp": 1.0, "metadata": {"token_len": 3},
         "messages": [{"role": "user", "content": "Write a poem."},
                      {"role": "assistant", "content": {"answer": "Roses are red."}}]},
        {"uid": "a1", "model": "my-model", "messages": [{"role": "user", "content": "Write a sort."},
                                                         {"role": "assistant", "content": "sorted(x)"}]}])
    baseline = jsonl(answers / "o3-mini-2025-01-31.jsonl", [
        {"uid": uid, "model": "o3-mini-2025-01-31",
         "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": {"answer": f"ref {uid}"}}]}
        for uid, text in (("a1", "Write a sort."), ("b2", "Write a poem."), ("c3", "Prove it."))])
    return questions, model, baseline


def test_v2_question_and_model_answer_files_match_by_uid(tmp_path):
    questions, model, baseline = v2_files(tmp_path)
    instructions = read_instruction_rows(questions)
    assert [(i.uid, i.category) for i in instructions] == [("a1", "hard_prompt"), ("b2", "creative_writing"),
                                                           ("c3", "hard_prompt")]
    warnings = []
    items = match_items(instructions, read_outputs(model), read_outputs(baseline), outputs_source=str(model),
                        reference_source=str(baseline), warn=warnings.append)
    assert [(i.uid, i.instruction, i.output, i.reference, i.generator, i.reference_generator, i.category)
            for i in items] == [
        ("a1", "Write a sort.", "sorted(x)", "ref a1", "my-model", "o3-mini-2025-01-31", "hard_prompt"),
        ("b2", "Write a poem.", "Roses are red.", "ref b2", "my-model", "o3-mini-2025-01-31", "creative_writing")]
    assert warnings == [f"left out 1 of 3 instructions: 1 without a model output ({model}), 0 without a reference "
                        f"output ({baseline}); --strict refuses instead"]
    with pytest.raises(DataError, match=r"my-model.jsonl: uid: no model output for uid c3 'Prove it.' \(--strict\)"):
        match_items(instructions, read_outputs(model), read_outputs(baseline), outputs_source=str(model),
                    reference_source=str(baseline), strict=True)


def test_v2_answers_without_an_instruction_file_use_their_user_turn(tmp_path):
    _, model, baseline = v2_files(tmp_path)
    items = match_items(None, read_outputs(model), read_outputs(baseline), outputs_source=str(model),
                        reference_source=str(baseline))
    assert [i.instruction for i in items] == ["Write a poem.", "Write a sort."]


def test_v01_question_and_answer_files(tmp_path):
    questions = jsonl(tmp_path / "question.jsonl", [
        {"question_id": "q1", "category": "arena-hard-v0.1", "cluster": "x", "turns": [{"content": "What is 2+2?"}]},
        {"question_id": "q2", "category": "arena-hard-v0.1", "cluster": "y", "turns": [{"content": "Name a fruit."}]}])
    model = jsonl(tmp_path / "model.jsonl", [
        {"question_id": qid, "answer_id": "z", "model_id": "old-model", "tstamp": 0,
         "choices": [{"index": 0, "turns": [{"content": text, "token_len": 2}]}]}
        for qid, text in (("q2", "Apple."), ("q1", "4"))])
    reference = jsonl(tmp_path / "gpt-4-0314.jsonl", [
        {"question_id": qid, "model_id": "gpt-4-0314", "choices": [{"index": 0, "turns": [{"content": text}]}]}
        for qid, text in (("q1", "Four."), ("q2", "A pear."))])
    items = match_items(read_instruction_rows(questions), read_outputs(model), read_outputs(reference),
                        outputs_source="m", reference_source="r")
    assert [(i.instruction, i.output, i.reference, i.generator, i.reference_generator) for i in items] == [
        ("What is 2+2?", "4", "Four.", "old-model", "gpt-4-0314"),
        ("Name a fruit.", "Apple.", "A pear.", "old-model", "gpt-4-0314")]
    with pytest.raises(DataError, match="without the question text: pass --instructions"):
        match_items(None, read_outputs(model), read_outputs(reference), outputs_source="m", reference_source="r")


def test_alpaca_eval_files_as_before_and_bad_native_rows(tmp_path):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps([{"instruction": "Hi", "output": "Hello", "generator": "g"}]))
    assert read_outputs(outputs) == {"Hi": ("Hello", "g")}
    bad = jsonl(tmp_path / "bad.jsonl", [{"uid": "a", "model": "m", "messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: messages: no assistant message"):
        read_outputs(bad)
    bad.write_text(json.dumps({"uid": "a", "messages": [{"role": "assistant", "content": {"text": 1}}]}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: messages: the last assistant content is neither"):
        read_outputs(bad)
    binary = tmp_path / "latin1.jsonl"
    binary.write_bytes(b'{"instruction": "caf\xe9", "output": "x"}\n')
    with pytest.raises(DataError, match="latin1.jsonl"):
        read_outputs(binary)
