"""Every private API of lm-evaluation-harness that prefcli relies on, in one place.

lm-eval (tested with 0.4.x) offers no public way to ask a task's kind, load a task YAML with its ``!function``
references resolved, or list a task's metrics and filters. prefcli uses these private names:

- ``lm_eval.tasks._index.Kind`` and a ``TaskManager.task_index`` entry's ``kind``, ``cfg`` and ``yaml_path``;
- ``lm_eval.tasks._yaml_loader.load_yaml(path, resolve_func=True)``;
- ``Task._metric_fn_list`` (metric name -> function) and ``Task._filters`` (filter ensembles with ``name``).

:func:`check_private_apis` verifies all of them; ``tests/test_harness.py::test_lm_eval_private_apis`` runs it so that
an lm-eval upgrade that renames one fails loudly there, not in the middle of an evaluation. lm-eval is imported
only when a function here is called (it is a heavy optional dependency).
"""

from __future__ import annotations

import inspect
from pathlib import Path


def _kind():
    from lm_eval.tasks._index import Kind

    return Kind


def is_plain_task(entry) -> bool:
    """A task (YAML or Python class), not a group or a tag."""
    kind = _kind()
    return entry.kind in (kind.TASK, kind.PY_TASK)


def is_yaml_task(entry) -> bool:
    """A task defined by a YAML file (its ``yaml_path`` and ``cfg`` are set)."""
    return entry.kind is _kind().TASK


def entry_config(entry) -> dict:
    """The task's YAML configuration as lm-eval indexed it (``{}`` when it has none)."""
    return entry.cfg or {}


def entry_yaml_path(entry) -> Path | None:
    path = getattr(entry, "yaml_path", None)
    return None if path is None else Path(path)


def load_task_yaml(path: str | Path) -> dict:
    """A task YAML with its ``include:`` and ``!function`` references resolved, as lm-eval loads it."""
    from lm_eval.tasks._yaml_loader import load_yaml

    return load_yaml(Path(path), resolve_func=True)


def task_metric_names(task) -> set[str]:
    """The metric names a built task computes."""
    return set(getattr(task, "_metric_fn_list", {}) or {})


def task_filter_names(task) -> set[str]:
    """The names of a built task's filter ensembles (``none``, ``strict-match``, ...)."""
    return {ensemble.name for ensemble in getattr(task, "_filters", []) or []}


def check_private_apis() -> list[str]:
    """What no longer matches in the installed lm-eval (empty when all is well). Checks names and signatures
    without building a task; :func:`task_metric_names`/:func:`task_filter_names` are checked on a built task by the
    smoke test."""
    problems = []
    try:
        kind = _kind()
        missing = [name for name in ("TASK", "PY_TASK", "GROUP", "TAG") if not hasattr(kind, name)]
        if missing:
            problems.append(f"lm_eval.tasks._index.Kind lacks {', '.join(missing)}")
    except ImportError as error:
        problems.append(f"lm_eval.tasks._index.Kind: {error}")
    try:
        from lm_eval.tasks._yaml_loader import load_yaml

        if "resolve_func" not in inspect.signature(load_yaml).parameters:
            problems.append("lm_eval.tasks._yaml_loader.load_yaml has no resolve_func parameter")
    except ImportError as error:
        problems.append(f"lm_eval.tasks._yaml_loader.load_yaml: {error}")
    from lm_eval.api.task import ConfigurableTask

    source = inspect.getsource(ConfigurableTask.__init__)
    for attribute in ("_metric_fn_list", "_filters"):
        if f"self.{attribute}" not in source:
            problems.append(f"lm_eval.api.task.ConfigurableTask no longer sets {attribute}")
    return problems
