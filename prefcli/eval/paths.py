"""Checks run before any work: an output path that cannot be written, an output that would overwrite an input, an
input that is not UTF-8. Each failure is one line naming the flag or the file and line."""

from __future__ import annotations

from pathlib import Path

from prefcli.errors import ConfigError


def _blocking_file(path: Path) -> Path | None:
    """The existing non-directory at or above ``path``, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def check_output_dir(path: str | Path, flag: str = "--output") -> Path:
    """``path`` can be (or already is) a directory: it is neither a file nor under one."""
    path = Path(path)
    blocker = _blocking_file(path)
    if blocker == path:
        raise ConfigError(f"{flag} {path}: is an existing file, expected a directory")
    if blocker is not None:
        raise ConfigError(f"{flag} {path}: {blocker} is a file, so no directory can be made under it")
    return path


def check_output_file(path: str | Path, flag: str = "--output", *, inputs: dict[str, str | Path] | None = None
                      ) -> Path:
    """``path`` can be written as a file: not a directory, not under a file, neither one of ``inputs`` (flag -> path)
    nor inside one that is a directory."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path}: is a directory, expected a file path")
    blocker = _blocking_file(path.parent)
    if blocker is not None:
        raise ConfigError(f"{flag} {path}: {blocker} is a file, so nothing can be written under it")
    for other_flag, other in (inputs or {}).items():
        if other is None or not Path(other).exists():
            continue
        other = Path(other).resolve()
        if path.resolve() == other:
            raise ConfigError(f"{flag} {path}: is the {other_flag} file; writing it would overwrite the input")
        if other.is_dir() and path.resolve().is_relative_to(other):
            raise ConfigError(f"{flag} {path}: is inside the {other_flag} directory; writing it would change the "
                              "input")
    return path
