"""How a setting is declared, read and checked: a dataclass field made with :func:`setting` carries its help, flag
name and valid range next to its type and default, and everything else (YAML keys, CLI flags, ``--help``, type and
range checks) is derived from the dataclass. Groups nest: a field whose type is a settings dataclass is a group (in
YAML a mapping; on the command line its leaves are flags of their own, so every leaf name is unique in a tree)."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass

from prefcli.errors import ConfigError
from prefcli.suggest import did_you_mean

_MISSING = dataclasses.MISSING


@dataclass(frozen=True)
class Spec:
    """Everything about a setting that its type and default do not say."""

    help: str = ""
    flag: str | None = None              # default: --name-with-dashes
    short: str | None = None             # a one-letter alias, e.g. -o
    negative: str | None = None          # a bool's off switch (default --no-NAME)
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    required: bool = False               # must be non-empty after files and flags are applied
    directory: bool = False              # a path that, when it exists, must be a directory
    cli: bool = True                     # exposed as a flag (False: YAML key only)
    loss_hparam: bool = False            # a loss hyper-parameter: None keeps the loss's default
    resumable: bool = False              # may change when a run is resumed (does not change what is trained)
    default_text: str | None = None      # what --help shows as the default, when the default does not say it

    def flag_name(self, name: str) -> str:
        return self.flag or "--" + name.replace("_", "-")

    def describe_range(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(self.choices)
        low, high = _number_text(self.low), _number_text(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""


def _number_text(value) -> str:
    if isinstance(value, int) and value > 2**16 and (value + 1) & value == 0:
        return f"2^{value.bit_length()} - 1"
    return str(value) if isinstance(value, int) else f"{value:g}" if value is not None else ""


def setting(default=_MISSING, help: str = "", *, default_factory=_MISSING, **spec) -> typing.Any:
    """A dataclass field with its :class:`Spec` (``help``, ``flag``, ``low``/``high``, ``choices``...)."""
    metadata = {"spec": Spec(help=help, **spec)}
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def spec_of(field: dataclasses.Field) -> Spec:
    return field.metadata.get("spec", Spec())


@dataclass(frozen=True)
class Leaf:
    """One setting of a tree: its path of field names, its field, type and spec."""

    path: tuple[str, ...]
    field: dataclasses.Field
    annotation: object
    spec: Spec

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def flag(self) -> str:
        return self.spec.flag_name(self.name)


def _allowed(annotation) -> tuple:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def group_class(annotation) -> type | None:
    """The settings dataclass a field holds (``X`` or ``X | None``), or None for a plain value."""
    for kind in _allowed(annotation):
        if dataclasses.is_dataclass(kind):
            return kind
    return None


def hints(cls) -> dict[str, object]:
    return typing.get_type_hints(cls)


def leaves(cls, prefix: tuple[str, ...] = ()) -> Iterator[Leaf]:
    """Every plain setting of ``cls``, groups expanded in declaration order."""
    annotations = hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        annotation = annotations[field.name]
        nested = group_class(annotation)
        if nested is not None:
            yield from leaves(nested, (*prefix, field.name))
        else:
            yield Leaf((*prefix, field.name), field, annotation, spec_of(field))


def coerce(key: str, value, annotation, source: str):
    """``value`` checked against the field's type (ints are accepted for floats, a comma-separated string or a list
    for a tuple of numbers); returned converted, or a ``ConfigError`` naming ``source`` and ``key``."""
    allowed = _allowed(annotation)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{source}: {key}: may not be empty")
    for kind in allowed:
        origin = typing.get_origin(kind)
        if kind is bool and isinstance(value, bool):
            return value
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if kind is str and isinstance(value, str):
            return value
        if kind is dict and isinstance(value, dict):
            return dict(value)
        if origin is tuple:
            numbers = _numbers(value)
            if numbers is not None:
                return numbers
            raise ConfigError(f"{source}: {key}: expected a list of numbers or 'a,b,c', got {value!r}")
    names = " or ".join(getattr(kind, "__name__", str(kind)) for kind in allowed if kind is not type(None))
    raise ConfigError(f"{source}: {key}: expected {names}, got {value!r}")


def _numbers(value) -> tuple[float, ...] | None:
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        try:
            return tuple(float(part) for part in parts)
        except ValueError:
            return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                for v in value):
        return tuple(float(v) for v in value)
    return None


def build(cls, values: dict | None, source: str, base=None):
    """``base`` (default: ``cls()``) with ``values`` applied: a nested mapping, where the leaves of a group that is
    always present may also be given flat (every leaf name is unique, so ``online: {judge: ...}`` means
    ``online.judging.judge``). An optional group (``online``) is switched on by its mapping and off by ``null``.
    Keys may use ``-``; unknown keys and wrong types fail naming the key, with the closest valid one."""
    base = cls() if base is None else base
    annotations = hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    groups = {name: group_class(annotations[name]) for name in fields if group_class(annotations[name])}
    flat_owner: dict[str, str] = {}  # leaf name -> the always-present group holding it
    for group, nested in groups.items():
        if type(None) not in _allowed(annotations[group]):
            for leaf in leaves(nested):
                flat_owner.setdefault(leaf.name, group)
    changes: dict = {}
    routed: dict[str, dict] = {}
    for key, value in (values or {}).items():
        name = str(key).replace("-", "_")
        if name in groups:
            if value is None and type(None) in _allowed(annotations[name]):
                changes[name] = None
                routed.pop(name, None)
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key}: expected a mapping of setting: value, got {value!r}")
            routed.setdefault(name, {}).update(value)
        elif name in fields:
            changes[name] = coerce(name, value, annotations[name], source)
        elif name in flat_owner:
            routed.setdefault(flat_owner[name], {})[name] = value
        else:
            hint = did_you_mean(name, [*fields, *flat_owner], quote=False)
            raise ConfigError(f"{source}: unknown key {key!r}" + (f" ({hint.strip()})" if hint else ""))
    for group, nested_values in routed.items():
        changes[group] = build(groups[group], nested_values, f"{source}: {group}", getattr(base, group))
    return dataclasses.replace(base, **changes)


def flatten(cls, values: dict) -> dict:
    """A settings mapping of ``cls`` (nested or flat) with its groups' leaves lifted to the top (leaf names are
    unique), e.g. to compare the settings of a saved run with today's."""
    annotations = hints(cls)
    flat: dict = {}
    for key, value in values.items():
        nested = group_class(annotations[key]) if key in annotations else None
        if nested is not None and isinstance(value, dict):
            flat.update(flatten(nested, value))
        else:
            flat[key] = value
    return flat


def flat_values(obj, prefix: tuple[str, ...] = ()) -> dict[str, object]:
    """Every leaf value of a settings object by leaf name (a missing optional group contributes nothing)."""
    values: dict[str, object] = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            values.update(flat_values(value))
        elif group_class(hints(type(obj))[field.name]) is None:
            values[field.name] = list(value) if isinstance(value, tuple) else value
    return values


def to_dict(obj) -> dict:
    """The settings as plain YAML/JSON-ready data (groups as mappings, tuples as lists)."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return dict(value)
        return value

    return plain(obj)


def flag_for(cls, name: str, rename: dict[str, str] | None = None) -> str:
    """How a command spells leaf ``name`` of ``cls``: ``rename[name]`` (a command's own spelling, or ``name``
    itself for a library API) or the declared flag."""
    if rename and name in rename:
        return rename[name]
    return next(leaf.flag for leaf in leaves(cls) if leaf.name == name)


def check_values(obj, rename: dict[str, str] | None = None) -> None:
    """Range, choice, finiteness and presence checks of every leaf of ``obj`` (groups included); the first failure
    is a ``ConfigError`` naming the flag (``rename`` as in :func:`flag_for`)."""
    from pathlib import Path

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
