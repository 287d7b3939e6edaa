"""Errors a user can cause. The CLI prints their message as one line and exits with code 2."""

from __future__ import annotations


class PrefcliError(Exception):
    """Base class of every error caused by user input (bad file, bad flag, missing checkpoint...)."""


class DataError(PrefcliError):
    """A problem in an input file, located as ``PATH:LINE: field: message``."""

    def __init__(self, path, line: int | None, message: str, field: str | None = None, reason: str | None = None):
        self.path, self.line, self.field = str(path), line, field
        self.reason = reason or message
        where = self.path if line is None else f"{self.path}:{line}"
        what = f"{field}: {message}" if field else message
        super().__init__(f"{where}: {what}")


class ConfigError(PrefcliError):
    """An invalid option, option combination or configuration file."""


class JudgeError(PrefcliError):
    """A judge endpoint that cannot be used (unreachable, wrong model name, too many failed judgments)."""
