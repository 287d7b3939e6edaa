"""Checkpoints that are either complete or ignored.

``OUTPUT/checkpoints/step-N/`` holds accelerate's state (model, optimizer, scheduler, every process's RNG),
``trainer_state.json`` (the step, hence the data position: the batch order is a function of the step) and, written
last, the ``COMPLETE`` marker. Everything is first written to ``.tmp-step-N`` and renamed when complete, so a
process killed mid-save leaves only a temporary directory that resuming ignores (and the next save removes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from prefcli.data.atomic import publish_dir

COMPLETE = "COMPLETE"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoints_dir(output: str | Path) -> Path:
    return Path(output) / "checkpoints"


def complete_checkpoints(output: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every complete checkpoint, oldest first."""
    root = checkpoints_dir(output)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / COMPLETE).is_file() and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def latest_checkpoint(output: str | Path) -> tuple[int, Path] | None:
    found = complete_checkpoints(output)
    return found[-1] if found else None


def read_trainer_state(path: Path) -> dict:
    return json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))


def save_checkpoint(accelerator, output: str | Path, step: int, trainer_state: dict, keep: int) -> Path:
    """Save the full training state after ``step`` optimizer steps; every process must call this."""
    root = checkpoints_dir(output)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        # the files accelerate wrote, with their sizes: a resume refuses a checkpoint that lost one
        files = {str(path.relative_to(tmp)): path.stat().st_size for path in sorted(tmp.rglob("*")) if path.is_file()}
        trainer_state = {**trainer_state, "files": files}
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n", encoding="utf-8")
        with open(tmp / COMPLETE, "w", encoding="utf-8") as marker:
            marker.write(f"{step}\n")
            marker.flush()
            os.fsync(marker.fileno())
        publish_dir(tmp, final)
        if keep > 0:
            for _, old in complete_checkpoints(output)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, path: Path) -> dict:
    """Restore model, optimizer, scheduler and RNG states; returns the trainer state."""
    accelerator.load_state(str(path))
    return read_trainer_state(path)
