"""Settings from YAML and flags: values checked against each field's type, nested groups built, unknown keys
named with the closest valid one; and back to plain data for YAML/JSON."""

from __future__ import annotations

import dataclasses
import typing

from prefcli.errors import ConfigError
from prefcli.settings.fields import group_class, hints, leaves, union_members
from prefcli.suggest import did_you_mean


def coerce(key: str, value, annotation, source: str):
    """``value`` checked against the field's type (ints are accepted for floats, a comma-separated string or a list
    for a tuple of numbers); returned converted, or a ``ConfigError`` naming ``source`` and ``key``."""
    allowed = union_members(annotation)
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
        if type(None) not in union_members(annotations[group]):
            for leaf in leaves(nested):
                flat_owner.setdefault(leaf.name, group)
    changes: dict = {}
    routed: dict[str, dict] = {}
    for key, value in (values or {}).items():
        name = str(key).replace("-", "_")
        if name in groups:
            if value is None and type(None) in union_members(annotations[name]):
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
