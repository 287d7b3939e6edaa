"""Placeholder until this command group lands."""

from __future__ import annotations

import typer

from prefcli.errors import PrefcliError


def register(app: typer.Typer) -> None:
    @app.command("train", hidden=True)
    def _not_yet() -> None:
        raise PrefcliError("train is not yet available")
