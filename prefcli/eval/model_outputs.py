"""A model's outputs for a list of instructions, saved in alpaca_eval format with a sidecar and reused by a rerun
only when the same weights (by fingerprint, not by path), generation settings and instructions made them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from prefcli.data.atomic import write_json
from prefcli.data.sidecar import sidecar_path, write_sidecar
from prefcli.eval.items import read_outputs
from prefcli.generate import generate_outputs


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    batch_size: int = 8
    seed: int = 0
    backend: str = "hf"  # hf or vllm


def weights_identity(model_path: str | Path) -> dict:
    """The model's path and a cheap fingerprint of its files (names, sizes, mtimes, config.json)."""
    from prefcli.train.reference_cache import model_fingerprint  # imports torch; only needed once a model is in play

    path = Path(model_path)
    return {"model": str(path.resolve()) if path.exists() else str(model_path),
            "weights": model_fingerprint(str(model_path))}


def generate_model_outputs(model_path: str | Path, instructions: list[str], outputs_file: Path, *,
                           generation: GenerationSettings, progress: Callable[[int], None] | None = None
                           ) -> tuple[dict[str, tuple[str, str]], bool]:
    """Outputs of ``model_path`` for ``instructions`` (one user turn each), saved to ``outputs_file``. Returns
    ``(instruction -> (output, generator), reused)``."""
    generator = Path(str(model_path).rstrip("/")).name or str(model_path)
    fingerprint = {**weights_identity(model_path), "generation": asdict(generation),
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
