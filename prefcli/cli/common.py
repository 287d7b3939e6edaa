"""What every command shares: the consoles and small rendering helpers."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from prefcli.progress import ProgressBar

console = Console()
err_console = Console(stderr=True)


def progress_bar(transient: bool = False) -> ProgressBar:
    """The progress display every long loop uses, on stderr so stdout stays clean for pipes: a rich bar on a
    terminal, a plain line every few seconds otherwise (see ``prefcli.progress``)."""
    return ProgressBar(err_console, transient=transient)


def summary_table(title: str, rows: list[tuple[str, object]]) -> Table:
    """A two-column summary table (what, value), printed at the end of a command."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def renamed_flag(old_value, new_value, old: str, new: str):
    """The value of a flag that was renamed: the new spelling's, or the old (hidden) spelling's with a warning on
    stderr. Both given and different is an error."""
    from prefcli.errors import ConfigError

    if old_value is None:
        return new_value
    if new_value is not None and new_value != old_value:
        raise ConfigError(f"{old}: is the old name of {new}; give one of them")
    err_console.print(f"[yellow]warning:[/yellow] {old} is deprecated; use {new}", highlight=False)
    return old_value


def generating_model_option():
    """``--model`` of the eval commands that can generate the outputs they score."""
    return typer.Option(None, "--model", help="Model directory to generate outputs with (saved to "
                        "OUTPUT/outputs.json, reused on rerun).")
