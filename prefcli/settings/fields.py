"""How a setting is declared: a dataclass field made with :func:`setting` carries its help, flag name and valid
range next to its type and default, and everything else (YAML keys in ``read``, CLI flags and ``--help`` in ``cli``,
value checks in ``check``) is derived from the dataclass. Groups nest: a field whose type is a settings dataclass is
a group (in YAML a mapping; on the command line its leaves are flags of their own, so every leaf name is unique in
a tree)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass

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


def union_members(annotation) -> tuple:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return typing.get_args(annotation)
    return (annotation,)


def group_class(annotation) -> type | None:
    """The settings dataclass a field holds (``X`` or ``X | None``), or None for a plain value."""
    for kind in union_members(annotation):
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


def flag_for(cls, name: str, rename: dict[str, str] | None = None) -> str:
    """How a command spells leaf ``name`` of ``cls``: ``rename[name]`` (a command's own spelling, or ``name``
    itself for a library API) or the declared flag."""
    if rename and name in rename:
        return rename[name]
    return next(leaf.flag for leaf in leaves(cls) if leaf.name == name)
