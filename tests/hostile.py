"""The hostile-input table: one row a case (command, input, expected exit code, expected one-line message, files that
must be unchanged or absent). Each area keeps its rows in ``tests/test_hostile_<area>.py`` and runs them with
:func:`run_case`; a row is the regression test of one thing hostile testing found."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli_helpers import run_main


@dataclass(frozen=True)
class Case:
    """One hostile input.

    ``args`` and the paths may hold ``{tmp}`` (the case's own directory) and ``{model}`` (the tiny model); ``setup``
    writes the inputs into ``tmp`` before the run. ``message`` must appear in the **last** line on stderr, and that line
    must name the problem, not be a progress bar or a warning. ``unchanged`` files keep their bytes; ``absent`` paths
    do not exist afterwards (nothing half-written)."""

    id: str
    args: tuple[str, ...]
    message: str
    setup: Callable[[Path], None] | None = None
    code: int = 2
    unchanged: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


def _fill(text: str, tmp: Path, model: Path | None) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{model}", str(model) if model else "{model}")


def _digest(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256("".join(
            f"{p.relative_to(path)}:{hashlib.sha256(p.read_bytes()).hexdigest()}"
            for p in sorted(path.rglob("*")) if p.is_file()).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_case(case: Case, tmp: Path, capsys, model: Path | None = None) -> None:
    """Run ``prefcli`` on the case and assert its exit code, its last stderr line and the files it must not touch."""
    if case.setup is not None:
        case.setup(tmp)
    watched = {rel: _digest(Path(_fill(rel, tmp, model))) for rel in case.unchanged}
    capsys.readouterr()
    code = run_main([_fill(a, tmp, model) for a in case.args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == case.code, f"{case.id}: exit {code}, stderr:\n{err}"
    if case.message:
        assert lines, f"{case.id}: nothing on stderr"
        assert case.message in lines[-1], f"{case.id}: last stderr line {lines[-1]!r}; all:\n{err}"
    for rel, before in watched.items():
        assert _digest(Path(_fill(rel, tmp, model))) == before, f"{case.id}: {rel} was changed"
    for rel in case.absent:
        assert not Path(_fill(rel, tmp, model)).exists(), f"{case.id}: {rel} exists"
