"""What gets judged: instructions, the model's outputs and the reference outputs, matched by instruction.

Files are in alpaca_eval's format: a JSON list (or JSONL) of ``{"instruction", "output", "generator"}``; instruction
files need only ``instruction``. The public sets (AlpacaEval, Arena-Hard) load from the hub when no file is given
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


def read_rows(path: str | Path, required: tuple[str, ...]) -> list[tuple[int, str, dict]]:
    """``(line, where, row)`` for each object of a JSON list or JSONL file (read by
    :func:`prefcli.data.readers.iter_rows`), checking that ``required`` fields are strings. ``line`` is where the
    row starts; ``where`` is a field prefix for error messages (empty: the line already locates the row)."""
    from prefcli.data.readers import iter_rows

    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "file not found")
    rows = [(line, "", row) for line, row in iter_rows(path)]
    for line, where, row in rows:
        if not isinstance(row, dict):
            raise DataError(path, line, "expected a JSON object")
        for name in required:
            if not isinstance(row.get(name), str):
                problem = "missing" if name not in row else f"must be a string, got {type(row[name]).__name__}"
                raise DataError(path, line, problem, field=f"{where}{name}")
    if not rows:
        raise DataError(path, None, "no rows")
    return rows


def read_instructions(source: str | Path) -> list[str]:
    """Instructions from a JSON/JSONL file with ``instruction`` (duplicates are an error)."""
    rows = read_rows(source, ("instruction",))
    instructions, seen = [], set()
    for line, where, row in rows:
        if row["instruction"] in seen:
            raise DataError(source, line, "duplicate instruction", field=f"{where}instruction")
        seen.add(row["instruction"])
        instructions.append(row["instruction"])
    return instructions


def read_outputs(path: str | Path) -> dict[str, tuple[str, str]]:
    """``instruction -> (output, generator)`` from an alpaca_eval-format file (``generator`` defaults to the
    file's stem)."""
    table: dict[str, tuple[str, str]] = {}
    for line, where, row in read_rows(path, ("instruction", "output")):
        if row["instruction"] in table:
            raise DataError(path, line, "duplicate instruction", field=f"{where}instruction")
        generator = row.get("generator")
        table[row["instruction"]] = (row["output"], str(generator) if generator is not None else Path(path).stem)
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


def match_items(instructions: list[str] | None, outputs: dict[str, tuple[str, str]],
                reference: dict[str, tuple[str, str]], *, outputs_source: str, reference_source: str
                ) -> list[EvalItem]:
    """Pair each instruction's model output with its reference output. Without ``instructions`` the set is the
    outputs file's instructions, in order. A missing output or reference is an error naming the instruction."""
    chosen = list(outputs) if instructions is None else instructions
    items = []
    for instruction in chosen:
        if instruction not in outputs:
            raise DataError(outputs_source, None, f"no output for instruction {_preview(instruction)}",
                            field="instruction")
        if instruction not in reference:
            raise DataError(reference_source, None, f"no reference output for instruction {_preview(instruction)}",
                            field="instruction")
        output, generator = outputs[instruction]
        ref_output, ref_generator = reference[instruction]
        items.append(EvalItem(instruction, output, ref_output, generator, ref_generator))
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
