"""A model's outputs for a list of instructions, saved in alpaca_eval format with a sidecar and reused by a rerun
only when the same weights (by fingerprint, not by path), generation settings and instructions made them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from prefcli.data.atomic import write_json
from prefcli.data.sidecar import sidecar_path, write_sidecar
from prefcli.errors import ConfigError
from prefcli.eval.items import read_outputs
from prefcli.generate import GenerationParams, generate_outputs


def generation_record(generation: GenerationParams) -> dict:
    """The decoding values that decide one output per instruction, as saved outputs' sidecars and ``results.json``
    record them (the keys they had before ``GenerationParams`` was used here, so earlier outputs are reused)."""
    values = asdict(generation)
    del values["num_return_sequences"]
    return values


def weights_identity(model_path: str | Path) -> dict:
    """The model's path and a cheap fingerprint of its files (names, sizes, mtimes, config.json)."""
    from prefcli.train.reference_cache import model_fingerprint  # imports torch; only needed once a model is in play

    path = Path(model_path)
    return {"model": str(path.resolve()) if path.exists() else str(model_path),
            "weights": model_fingerprint(str(model_path))}


def generate_model_outputs(model_path: str | Path, instructions: list[str], outputs_file: Path, *,
                           generation: GenerationParams, progress: Callable[[int], None] | None = None
                           ) -> tuple[dict[str, tuple[str, str]], bool]:
    """Outputs of ``model_path`` for ``instructions`` (one user turn each), saved to ``outputs_file``. Returns
    ``(instruction -> (output, generator), reused)``."""
    if generation.num_return_sequences != 1:
        raise ConfigError("num_return_sequences: model outputs are one reply per instruction; use 1")
    generator = Path(str(model_path).rstrip("/")).name or str(model_path)
    fingerprint = {**weights_identity(model_path), "generation": generation_record(generation),
                   "instructions_sha256": hashlib.sha256(json.dumps(instructions).encode()).hexdigest()}
    meta_file = sidecar_path(outputs_file)
    if outputs_file.is_file() and meta_file.is_file():
        try:
            previous = json.loads(meta_file.read_text(encoding="utf-8")).get("config")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            previous = None
        if previous == fingerprint:
            return read_outputs(outputs_file), True

    texts = [replies[0] for replies in generate_outputs(
        model_path, [[{"role": "user", "content": i}] for i in instructions], progress=progress, **asdict(generation))]
    rows = [{"instruction": i, "output": t, "generator": generator} for i, t in zip(instructions, texts)]
    write_json(outputs_file, rows)
    write_sidecar(outputs_file, config=fingerprint, seed=generation.seed, inputs={}, counts={"outputs": len(rows)})
    return {row["instruction"]: (row["output"], generator) for row in rows}, False
