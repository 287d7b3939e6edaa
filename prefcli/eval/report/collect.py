"""Finding the result files of run directories, naming each run's row, and reading their observations."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prefcli.errors import ConfigError, DataError, PrefcliError
from prefcli.eval.report.columns import Observation, harness_observations, judged_observations, reward_observations

NAME_BY = ("dir", "model", "path")
_SEED_SUFFIX = re.compile(r"[-_.]?seed[-_]?\d+$", re.IGNORECASE)


def strip_seed(name: str) -> str:
    return _SEED_SUFFIX.sub("", name)


def run_name(run_dir: Path, given: str, name_by: str, recorded_model: str | None) -> str:
    """The row a run belongs to (see :mod:`prefcli.eval.report`)."""
    if name_by == "path":
        return given
    if name_by == "model":
        if not recorded_model:
            raise DataError(run_dir, None, "no result file records a model (use --name-by dir)", field="model")
        parts = recorded_model.rstrip("/").split("/")
        last = strip_seed(parts[-1])
        return "/".join(parts[:-1] + ([last] if last else [])) or recorded_model
    resolved = run_dir.resolve()
    name = strip_seed(resolved.name)
    return name or strip_seed(resolved.parent.name) or resolved.name


def find_result_files(run_dir: Path) -> list[Path]:
    """``results.json`` / ``harness.json`` in ``run_dir`` and one level below, in a stable order."""
    files = []
    for pattern in ("results.json", "harness.json", "*/results.json", "*/harness.json"):
        files.extend(sorted(run_dir.glob(pattern)))
    return files


def read_json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(path, None, f"cannot read JSON: {error}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, "must be a JSON object")
    return data


def collect(run_dirs: list[str], name_by: str = "dir") -> tuple[list[Observation], list[str]]:
    """Every observation in the given run directories, and the result files that hold no number (a judged run
    whose judgments all failed). A directory without result files is a ``PrefcliError``."""
    if name_by not in NAME_BY:
        raise ConfigError(f"--name-by: must be one of {', '.join(NAME_BY)}, got {name_by!r}")
    if not run_dirs:
        raise ConfigError("give at least one run directory")
    observations: list[Observation] = []
    skipped: list[str] = []
    seen: set[Path] = set()
    for given in run_dirs:
        run_dir = Path(given)
        if not run_dir.is_dir():
            raise PrefcliError(f"{given}: not a directory")
        if run_dir.resolve() in seen:
            continue
        seen.add(run_dir.resolve())
        files = find_result_files(run_dir)
        if not files:
            raise PrefcliError(f"{given}: no results.json or harness.json in it or in its subdirectories")
        parsed = [(path, read_json_object(path)) for path in files]
        models = [data.get("model") for _, data in parsed if isinstance(data.get("model"), str)]
        name = run_name(run_dir, given, name_by, models[0] if models else None)
        for path, data in parsed:
            if path.name == "harness.json":
                config = data.get("config") if isinstance(data.get("config"), dict) else {}
                seed = config.get("seed")
                found = harness_observations(path, data)
            elif data.get("kind") == "reward":
                seed = data.get("seed")
                found = reward_observations(path, data)
            else:
                seed = data.get("seed")
                found = judged_observations(path, data)
                if not found:
                    skipped.append(f"{path}: no winrate (no judgment succeeded)")
            for column, value, interval in found:
                observations.append(Observation(run=given, name=name, column=column, value=value,
                                                interval=interval, seed=seed if isinstance(seed, int) else None,
                                                source=str(path)))
    return observations, skipped
