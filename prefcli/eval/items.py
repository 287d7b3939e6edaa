"""What gets judged: instructions, the model's outputs and the reference outputs, matched by instruction.

Files are in alpaca_eval's format: a JSON list (or JSONL) of ``{"instruction", "output", "generator"}``; instruction
files need only ``instruction``. arena-hard-auto's own files are read as they are: ``question.jsonl`` (``uid``,
``category``, ``prompt``; v0.1: ``question_id``, ``turns``) as instructions and ``model_answer/*.jsonl`` (``uid``,
``model``, ``messages`` whose last assistant ``content`` is a string or ``{"answer": ...}``; v0.1: ``question_id``,
``model_id``, ``choices[0].turns``) as outputs or reference, matched by ``uid``. Instructions missing from the
outputs or the reference are left out with one line saying how many (``--strict`` refuses).

The public sets (AlpacaEval, Arena-Hard) load from the hub when no file is given
and the network is there. With ``--model`` the outputs are generated with :func:`prefcli.generate.generate_outputs`
and saved as ``OUTPUT/outputs.json`` (plus its ``.meta.json``), reused by a rerun with the same model, parameters and
instructions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prefcli.errors import ConfigError, DataError


@dataclass(frozen=True)
class EvalItem:
    instruction: str
    output: str
    reference: str
    generator: str
    reference_generator: str
    uid: str | None = None       # arena-hard-auto's question id, when the files carry one
    category: str | None = None  # arena-hard-auto v2.0: hard_prompt | creative_writing (per-category baselines)


@dataclass(frozen=True)
class Instruction:
    text: str
    uid: str | None = None
    category: str | None = None


class OutputTable(dict):
    """``instruction -> (output, generator)``; ``by_uid`` holds the same rows by arena-hard-auto ``uid`` when the
    file is one of its ``model_answer/*.jsonl`` files (which may not carry the question text)."""

    def __init__(self, *args, by_uid: dict[str, tuple[str, str]] | None = None, native: bool = False):
        super().__init__(*args)
        self.by_uid = by_uid or {}
        self.native = native


def read_rows(path: str | Path, required: tuple[str, ...] = ()) -> list[tuple[int | None, str, dict]]:
    """``(line, where, row)`` for each object of a JSON list or JSONL file (read with
    :func:`prefcli.data.readers.open_source`), checking that ``required`` fields are strings. ``where`` is empty:
    the line number names the row in error messages."""
    from prefcli.data.readers import BadJSON, open_source

    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    source = open_source(path, input_format="jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "json")
    rows = []
    try:
        for line, row in source.rows():
            if isinstance(row, BadJSON):
                raise DataError(path, line, row.message)
            if not isinstance(row, dict):
                raise DataError(path, line, "expected a JSON object")
            for name in required:
                if not isinstance(row.get(name), str):
                    problem = "missing" if name not in row else f"must be a string, got {type(row[name]).__name__}"
                    raise DataError(path, line, problem, field=name)
            rows.append((line, "", row))
    except UnicodeDecodeError as error:
        raise DataError(path, None, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    if not rows:
        raise DataError(path, None, "no rows")
    return rows


def _question_text(row: dict) -> str | None:
    """The question of an instruction row: ``instruction``, arena-hard-auto v2.0's ``prompt``, or the first of
    v0.1's ``turns``."""
    for name in ("instruction", "prompt"):
        if isinstance(row.get(name), str):
            return row[name]
    turns = row.get("turns")
    if isinstance(turns, list) and turns:
        first = turns[0]
        text = first.get("content") if isinstance(first, dict) else first
        return text if isinstance(text, str) else None
    return None


def _uid(row: dict) -> str | None:
    for name in ("uid", "question_id"):
        if row.get(name) is not None and not isinstance(row[name], (dict, list)):
            return str(row[name])
    return None


def read_instruction_rows(source: str | Path) -> list[Instruction]:
    """Instructions from a JSON/JSONL file: ``instruction`` (alpaca_eval), or arena-hard-auto's
    ``question.jsonl`` (``uid`` + ``prompt`` in v2.0, ``question_id`` + ``turns`` in v0.1; ``category`` kept).
    Duplicates are an error."""
    instructions, seen = [], set()
    for line, _, row in read_rows(source):
        text = _question_text(row)
        if text is None:
            field = "instruction" if "instruction" in row else "prompt" if "prompt" in row else "instruction"
            problem = "missing (or arena-hard-auto's prompt / turns)" if field not in row else "must be a string"
            raise DataError(source, line, problem, field=field)
        uid = _uid(row)
        identity = uid if uid is not None else text
        if identity in seen:
            raise DataError(source, line, f"duplicate {'uid' if uid is not None else 'instruction'}",
                            field="uid" if uid is not None else "instruction")
        seen.add(identity)
        category = row.get("category")
        instructions.append(Instruction(text, uid, category if isinstance(category, str) else None))
    return instructions


def read_instructions(source: str | Path) -> list[str]:
    """Instruction texts (see :func:`read_instruction_rows`)."""
    return [instruction.text for instruction in read_instruction_rows(source)]


def _native_answer(row: dict, path, line) -> tuple[str | None, str]:
    """(question text or None, answer) of an arena-hard-auto ``model_answer`` row: ``messages`` whose last
    assistant ``content`` is a string or ``{"answer": ...}`` (v2.0), or ``choices[0].turns[-1].content`` (v0.1)."""
    messages = row.get("messages")
    if isinstance(messages, list):
        answers = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
        if not answers:
            raise DataError(path, line, "no assistant message", field="messages")
        content = answers[-1].get("content")
        if isinstance(content, dict):
            content = content.get("answer")
        if not isinstance(content, str):
            raise DataError(path, line, "the last assistant content is neither a string nor {\"answer\": string}",
                            field="messages")
        users = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return (users[0] if users and isinstance(users[0], str) else None), content
    choices = row.get("choices")
    try:
        content = choices[0]["turns"][-1]
        content = content.get("content") if isinstance(content, dict) else content
    except (TypeError, KeyError, IndexError):
        content = None
    if not isinstance(content, str):
        raise DataError(path, line, "expected messages (arena-hard-auto v2.0) or choices[0].turns (v0.1)",
                        field="choices")
    return None, content


def read_outputs(path: str | Path) -> OutputTable:
    """Outputs from an alpaca_eval-format file (``instruction``, ``output``, ``generator`` defaulting to the
    file's stem) or an arena-hard-auto ``model_answer/*.jsonl`` file (``uid``/``question_id``, ``model``/
    ``model_id``, ``messages`` or ``choices``)."""
    rows = read_rows(path)
    first = rows[0][2]
    native = "output" not in first and ("messages" in first or "choices" in first)
    table, by_uid = OutputTable(), {}
    for line, _, row in rows:
        if native:
            uid = _uid(row)
            if uid is None:
                raise DataError(path, line, "missing", field="uid")
            question, output = _native_answer(row, path, line)
            generator = row.get("model") or row.get("model_id") or Path(path).stem
            if uid in by_uid:
                raise DataError(path, line, "duplicate uid", field="uid")
            by_uid[uid] = (output, str(generator))
            if question is not None:
                table[question] = (output, str(generator))
            continue
        for name in ("instruction", "output"):
            if not isinstance(row.get(name), str):
                problem = "missing" if name not in row else f"must be a string, got {type(row[name]).__name__}"
                raise DataError(path, line, problem, field=name)
        if row["instruction"] in table:
            raise DataError(path, line, "duplicate instruction", field="instruction")
        generator = row.get("generator")
        table[row["instruction"]] = (row["output"], str(generator) if generator is not None else Path(path).stem)
        if _uid(row) is not None:
            by_uid[_uid(row)] = table[row["instruction"]]
    table.by_uid, table.native = by_uid, native
    return table


def load_hub_rows(spec: dict, what: str) -> list[dict]:
    """Rows of a public set from the hub (``{"id", "config", "split"}``), each with ``instruction`` (read from
    ``instruction``, ``prompt``, ``question`` or the first of ``turns``) and, when present, ``output``/``generator``.
    Any failure (offline, gated, renamed) is one ConfigError telling the user which file flag to pass instead."""
    flag = "--instructions" if what == "instructions" else "--reference"
    try:
        import datasets

        dataset = datasets.load_dataset(spec["id"], spec.get("config"), split=spec.get("split") or "train")
    except Exception as error:  # noqa: BLE001 - any hub failure means "use a local file"
        raise ConfigError(f"could not load the public {what} {spec['id']!r} from the hub "
                          f"({type(error).__name__}: {str(error)[:200]}); pass {flag} FILE") from None
    rows = []
    for row in dataset:
        instruction = row.get("instruction") or row.get("prompt") or row.get("question")
        if instruction is None and row.get("turns"):
            first = row["turns"][0]
            instruction = first.get("content") if isinstance(first, dict) else first
        if not isinstance(instruction, str):
            raise ConfigError(f"{spec['id']}: rows have no instruction/prompt/question/turns field; pass {flag} FILE")
        rows.append({"instruction": instruction, "output": row.get("output"),
                     "generator": row.get("generator") or spec["id"]})
    return rows


class CategoryReferences(dict):
    """arena-hard-auto v2.0's per-category baselines: ``category -> OutputTable`` read from a ``model_answer``
    directory (``MODEL.jsonl`` for each baseline MODEL the protocol names)."""

    def for_category(self, category: str | None) -> dict:
        return self.get(category, {})


def read_category_references(directory: str | Path, baselines: dict[str, str]) -> CategoryReferences:
    """Each category's baseline answers from ``directory/MODEL.jsonl``; ConfigError when the protocol names no
    baselines or none of their files is there."""
    directory = Path(directory)
    if not baselines:
        raise ConfigError(f"--reference {directory}: a directory needs a protocol with per-category baselines "
                          "(--protocol-version v2.0); otherwise pass a file")
    tables, read = CategoryReferences(), {}
    for category, model in baselines.items():
        file = directory / f"{model}.jsonl"
        if file.is_file():
            read.setdefault(model, read_outputs(file))
            tables[category] = read[model]
    if not tables:
        raise ConfigError(f"--reference {directory}: none of the baseline files "
                          f"{', '.join(sorted({m + '.jsonl' for m in baselines.values()}))} is there")
    return tables


def match_items(instructions: list[str] | list[Instruction] | None, outputs: dict, reference: dict, *,
                outputs_source: str, reference_source: str, strict: bool = False,
                warn: Callable[[str], None] | None = None) -> list[EvalItem]:
    """Pair each instruction's model output with its reference output: by ``uid`` when the instructions carry
    one and the file is keyed that way (arena-hard-auto's files), else by instruction text. Without
    ``instructions`` the set is the outputs file's instructions, in order. Instructions without an output or a
    reference are left out with one ``warn`` line saying how many (``strict``: a DataError naming the first)."""
    if instructions is None:
        if getattr(outputs, "native", False) and not outputs:
            raise DataError(outputs_source, None, "arena-hard-auto answers without the question text: pass "
                            "--instructions question.jsonl", field="messages")
        chosen = [Instruction(text) for text in outputs]
    else:
        chosen = [i if isinstance(i, Instruction) else Instruction(i) for i in instructions]
    items, missing = [], {"output": [], "reference": []}
    for instruction in chosen:
        found = {}
        reference_table = (reference.for_category(instruction.category) if isinstance(reference, CategoryReferences)
                           else reference)
        for what, table, source in (("output", outputs, outputs_source),
                                    ("reference", reference_table, reference_source)):
            by_uid = getattr(table, "by_uid", {})
            if instruction.uid is not None and instruction.uid in by_uid:
                found[what] = by_uid[instruction.uid]
            elif instruction.text in table:
                found[what] = table[instruction.text]
            else:
                if strict:
                    label = "model output" if what == "output" else "reference output"
                    raise DataError(source, None, f"no {label} for "
                                    f"{'uid ' + instruction.uid if instruction.uid else 'instruction'} "
                                    f"{_preview(instruction.text)} (--strict)",
                                    field="uid" if instruction.uid else "instruction")
                missing[what].append(instruction)
        if len(found) == 2:
            (output, generator), (ref_output, ref_generator) = found["output"], found["reference"]
            items.append(EvalItem(instruction.text, output, ref_output, generator, ref_generator,
                                  instruction.uid, instruction.category))
    if missing["output"] or missing["reference"]:
        message = (f"left out {len(chosen) - len(items)} of {len(chosen)} instructions: "
                   f"{len(missing['output'])} without a model output ({outputs_source}), "
                   f"{len(missing['reference'])} without a reference output ({reference_source}); "
                   "--strict refuses instead")
        if not items:
            raise DataError(outputs_source, None, "no instruction has both a model output and a reference output "
                            f"({message.split(': ', 1)[1].split('; ')[0]})")
        if warn is not None:
            warn(message)
    return items


def generate_model_outputs(model_path: str | Path, instructions: list[str], outputs_file: Path, *,
                           generation: dict, progress: Callable[[int], None] | None = None
                           ) -> tuple[dict[str, tuple[str, str]], bool]:
    """Outputs of ``model_path`` for ``instructions`` (one user turn each), saved to ``outputs_file`` in alpaca_eval
    format with a sidecar. Returns ``(outputs, reused)``: a previous file made with the same model, parameters and
    instructions is reused instead of generating again."""
    from prefcli.data.atomic import write_json
    from prefcli.data.sidecar import sidecar_path, write_sidecar

    generator = Path(str(model_path).rstrip("/")).name or str(model_path)
    fingerprint = {"model": str(Path(model_path).resolve()) if Path(model_path).exists() else str(model_path),
                   "generation": generation,
                   "instructions_sha256": hashlib.sha256(json.dumps(instructions).encode()).hexdigest()}
    meta_file = sidecar_path(outputs_file)
    if outputs_file.is_file() and meta_file.is_file():
        try:
            previous = json.loads(meta_file.read_text(encoding="utf-8")).get("config")
        except json.JSONDecodeError:
            previous = None
        if previous == fingerprint:
            return read_outputs(outputs_file), True

    from prefcli.generate import generate_outputs

    texts = generate_outputs(model_path, [[{"role": "user", "content": i}] for i in instructions],
                             progress=progress, **generation)
    rows = [{"instruction": i, "output": t, "generator": generator} for i, t in zip(instructions, texts)]
    write_json(outputs_file, rows)
    write_sidecar(outputs_file, config=fingerprint, seed=generation.get("seed"), inputs={},
                  counts={"outputs": len(rows)})
    return {row["instruction"]: (row["output"], generator) for row in rows}, False


def _preview(text: str, limit: int = 60) -> str:
    text = text.replace("\n", " ")
    return repr(text if len(text) <= limit else text[:limit] + "…")
