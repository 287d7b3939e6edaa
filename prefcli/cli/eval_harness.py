"""Placeholder until this command group lands."""

from __future__ import annotations

import typer

from prefcli.errors import PrefcliError


def register(app: typer.Typer) -> None:
    @app.command("eval_harness", hidden=True)
    def _not_yet() -> None:
        raise PrefcliError("eval_harness is not yet available")
