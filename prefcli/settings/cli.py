"""Typer options derived from a settings dataclass (what ``HfArgumentParser`` does for argparse): one option per
leaf, named by its flag, typed by its annotation, its help ending with the valid range and the default. Every option
defaults to ``None`` (= not given), so a YAML file can set what the command line leaves out."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable

import typer

from prefcli.errors import ConfigError
from prefcli.settings.fields import Leaf, group_class, hints, leaves, spec_of, union_members


def _help(leaf: Leaf) -> str:
    """The leaf's help, then its valid values and default: ``Peak learning rate. (> 0; default: 1e-06)``."""
    from rich.markup import escape

    spec = leaf.spec
    notes = [spec.describe_range()] if spec.describe_range() else []
    default = spec.default_text
    if default is None and not spec.required:
        value = leaf.field.default
        if isinstance(value, tuple):
            default = ",".join(f"{v:g}" for v in value)
        elif isinstance(value, bool):
            default = "on" if value else "off"
        elif value is not None and value != "" and value is not dataclasses.MISSING:
            default = f"{value:g}" if isinstance(value, float) else str(value)
    if default is not None:
        notes.append(f"default: {default}")
    text = spec.help + (f" ({'; '.join(notes)})" if notes else "")
    return escape(text)


def _option_type(annotation) -> object:
    kinds = [kind for kind in union_members(annotation) if kind is not type(None)]
    kind = kinds[0]
    if typing.get_origin(kind) is tuple:
        return str | None                      # "0.6,0.8,1.0"
    if kind is dict:
        return list[str] | None                # repeated KEY=VALUE
    return kind | None


def options(cls, rename: dict[str, str] | None = None,
            panel: Callable[[Leaf], str | None] | None = None) -> list[inspect.Parameter]:
    """The keyword parameters of a Typer command taking every leaf of ``cls`` (``rename``: a command's own
    spelling of a flag; ``panel``: the ``--help`` section of a leaf).
    An optional group (``online``) gets a switch flag of its own."""
    rename = rename or {}
    params = []
    for leaf in _leaves_and_switches(cls):
        flag = rename.get(leaf.name, leaf.flag)
        names = [flag]
        kinds = [kind for kind in union_members(leaf.annotation) if kind is not type(None)]
        if kinds == [bool] and not _is_switch(leaf):
            names = [f"{flag}/{leaf.spec.negative or '--no-' + flag[2:]}"]
        if leaf.spec.short:
            names.append(leaf.spec.short)
        option_type = bool | None if _is_switch(leaf) else _option_type(leaf.annotation)
        default = typer.Option(None, *names, help=_help(leaf), show_default=False,
                               rich_help_panel=panel(leaf) if panel else None)
        params.append(inspect.Parameter(leaf.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=option_type))
    return params


def _is_switch(leaf: Leaf) -> bool:
    return group_class(leaf.annotation) is not None


def _leaves_and_switches(cls):
    """The leaves of ``cls``; an optional group contributes a switch (its own field) before its leaves."""
    annotations = hints(cls)
    for field in dataclasses.fields(cls):
        annotation = annotations[field.name]
        nested = group_class(annotation)
        if nested is None:
            yield next(leaf for leaf in leaves(cls) if leaf.path == (field.name,))
            continue
        if type(None) in union_members(annotation):
            yield Leaf((field.name,), field, annotation, spec_of(field))
        yield from (Leaf((field.name, *leaf.path), leaf.field, leaf.annotation, leaf.spec)
                    for leaf in _leaves_and_switches(nested))


def with_options(params: list[inspect.Parameter], extra: list[inspect.Parameter] = ()):
    """Give ``function(**flags)`` the signature Typer reads: ``extra`` parameters first, then ``params``."""
    def decorate(function):
        function.__signature__ = inspect.Signature([*extra, *params])
        return function

    return decorate


def with_more_options(params: list[inspect.Parameter]):
    """Keep a command's own Typer parameters and take ``params`` after them, into its ``**flags``."""
    def decorate(function):
        own = [param for param in inspect.signature(function).parameters.values()
               if param.kind is not inspect.Parameter.VAR_KEYWORD]
        return with_options(params, extra=own)(function)

    return decorate


def given(cls, flags: dict) -> dict:
    """The flags that were given, nested the way :func:`prefcli.settings.fields.build` reads them: leaves of an
    optional group under its name (only when the group is switched on or already set); tuples and
    ``KEY=VALUE`` lists read into a mapping."""
    flat = {name: value for name, value in flags.items() if value is not None}
    result: dict = {}
    annotations = hints(cls)
    for field in dataclasses.fields(cls):
        nested = group_class(annotations[field.name])
        if nested is None:
            if field.name in flat:
                value = flat.pop(field.name)
                if dict in union_members(annotations[field.name]) and isinstance(value, list):
                    value = key_values(spec_of(field).flag_name(field.name), value)
                result[field.name] = value
            continue
        inner = {leaf.name: flat.pop(leaf.name) for leaf in leaves(nested) if leaf.name in flat}
        switch = flat.pop(field.name, None)
        if switch is False:
            result[field.name] = None
        elif switch or inner:
            result[field.name] = inner
    return result


def key_values(flag: str, items: list[str]) -> dict | None:
    """``["desirable_weight=1.3", ...]`` → ``{"desirable_weight": 1.3}`` (values read as YAML scalars)."""
    import yaml

    if not items:
        return None
    parsed = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag}: expected KEY=VALUE, got {item!r}")
        parsed[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return parsed
