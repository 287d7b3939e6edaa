"""``OUTPUT/metrics.jsonl``: one JSON line per logged optimizer step, each step exactly once.

On resume, lines past the checkpoint's step (logged by the interrupted run after its last checkpoint) are
dropped before training continues, so the file never holds a step twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from prefcli.data.atomic import atomic_open


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    return value


class MetricsWriter:
    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        kept: list[str] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    step = json.loads(line).get("step")
                except json.JSONDecodeError:
                    continue  # a line cut by the kill
                if isinstance(step, int) and step <= resume_step:
                    kept.append(line)
        with atomic_open(self.path) as handle:
            handle.writelines(line + "\n" for line in kept)
        self.handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps({key: _clean(value) for key, value in record.items()}) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_metrics(path: str | Path) -> list[dict]:
    """Every line of a metrics.jsonl file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
