"""``prefcli losses``: print the loss registry (names, papers, defaults, what data each loss needs), or one
loss's formula and hyper-parameters."""

from __future__ import annotations

import inspect
import json

import typer

from prefcli.cli.common import console, summary_table
from prefcli.errors import ConfigError


def _format_hparams(hparams: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in hparams.items())


def _loss_class(name: str):
    from prefcli.losses import loss_class

    try:
        return loss_class(name)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _show_one(name: str) -> None:
    from rich.table import Table

    cls = _loss_class(name)
    console.print(f"[bold]{cls.name}[/bold] — {cls.paper}", highlight=False)
    console.print(inspect.cleandoc(cls.__doc__ or ""), highlight=False, markup=False)
    table = Table(title=f"{cls.name} hyper-parameters", show_header=True, header_style="bold")
    for column in ("name", "default", "valid", "meaning"):
        table.add_column(column, overflow="fold")
    for spec in cls.hparam_specs:
        table.add_row(spec.name, repr(spec.default), spec.describe_range(), spec.help)
    console.print(table)
    flags = ("reference_free", "batch_coupled", "needs_candidates", "unpaired", "needs_kl_pairs", "uses_lengths")
    console.print(summary_table("summary", [("data", cls.data_kind())]
                                + [(flag, str(getattr(cls, flag))) for flag in flags]))


def register(app: typer.Typer) -> None:
    @app.command("losses")
    def losses(
        name: str = typer.Argument(None, help="Show one loss's formula and hyper-parameters instead of the list."),
        as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON instead of a table."),
    ) -> None:
        """List every preference loss with its paper, default hyper-parameters and the data it trains on.

        Example: prefcli losses mcpo
        """
        from rich.table import Table

        from prefcli.losses import list_losses

        if name is not None and not as_json:
            _show_one(name)
            return
        wanted = None if name is None else _loss_class(name).name
        entries = [entry for entry in list_losses() if wanted is None or entry.name == wanted]
        if as_json:
            print(json.dumps([entry.__dict__ for entry in entries], indent=2, ensure_ascii=False))
            return
        table = Table(title="prefcli losses", show_header=True, header_style="bold")
        for column in ("name", "data", "reference", "defaults", "loss", "paper"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            table.add_row(entry.name, entry.data_kind, "no" if entry.reference_free else "yes",
                          _format_hparams(entry.hparams), entry.formula, entry.paper)
        console.print(table)
        console.print(summary_table("summary", [
            ("losses", len(entries)),
            ("reference-free", sum(entry.reference_free for entry in entries)),
            ("unpaired", sum(entry.data_kind == "unpaired" for entry in entries)),
            ("multi-candidate", sum(entry.data_kind == "candidates" for entry in entries)),
        ]))
