"""Value checks of a settings object, from the field specs: range, choices, finiteness, presence, and paths that
must be directories. The first failure is one ``ConfigError`` line naming the flag."""

from __future__ import annotations

import math
from pathlib import Path

from prefcli.errors import ConfigError
from prefcli.settings.fields import Spec, leaves


def check_values(obj, rename: dict[str, str] | None = None) -> None:
    """Range, choice, finiteness and presence checks of every leaf of ``obj`` (groups included); the first failure
    is a ``ConfigError`` naming the flag (``rename`` as in :func:`flag_for`)."""
    for leaf in leaves(type(obj)):
        holder = obj
        for part in leaf.path[:-1]:
            holder = getattr(holder, part)
            if holder is None:
                break
        if holder is None:
            continue
        value = getattr(holder, leaf.name)
        name = (rename or {}).get(leaf.name, leaf.flag)
        problem = _problem(leaf.spec, value)
        if problem is None and leaf.spec.directory and value:
            path = Path(str(value))
            if path.exists() and not path.is_dir():
                problem = f"{value} is a file; expected a directory"
        if problem is not None:
            raise ConfigError(f"{name}: {problem}")


def _problem(spec: Spec, value) -> str | None:
    if value is None or value == "":
        return "is required" if spec.required else None
    if spec.choices is not None and isinstance(value, str) and value not in spec.choices:
        return f"must be {spec.describe_range()}, got {value!r}"
    numbers = value if isinstance(value, tuple) else (value,)
    for number in numbers:
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            continue
        if isinstance(number, float) and not math.isfinite(number):
            return f"must be a finite number, got {number!r}"
        too_low = spec.low is not None and (number < spec.low or (spec.low_open and number == spec.low))
        too_high = spec.high is not None and (number > spec.high or (spec.high_open and number == spec.high))
        if too_low or too_high:
            return f"must be {spec.describe_range()}, got {number!r}"
    return None
