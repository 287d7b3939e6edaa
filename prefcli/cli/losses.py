"""``prefcli losses``: print the loss registry (names, papers, defaults, what data each loss needs)."""

from __future__ import annotations

import json

import typer

from prefcli.cli.common import console, summary_table


def _format_hparams(hparams: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in hparams.items())


def register(app: typer.Typer) -> None:
    @app.command("losses")
    def losses(
        as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON instead of a table."),
    ) -> None:
        """List every preference loss with its paper, default hyper-parameters and the data it trains on.

        Example: prefcli losses --json
        """
        from rich.table import Table

        from prefcli.losses import list_losses

        entries = list_losses()
        if as_json:
            print(json.dumps([entry.__dict__ for entry in entries], indent=2))
            return
        table = Table(title="prefcli losses", show_header=True, header_style="bold", show_lines=False)
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
