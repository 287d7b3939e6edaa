"""The ``prefcli`` command: one Typer sub-app per command group. Commands parse and validate their flags, call
the library, and print; the logic lives in the library."""

from __future__ import annotations

import os
import sys

import typer

from prefcli import __version__
from prefcli.cli import eval_compare, eval_harness, eval_judged, fixtures, generate, losses, prepare, train
from prefcli.cli.common import err_console
from prefcli.errors import PrefcliError

app = typer.Typer(
    name="prefcli",
    help="Preference optimization of language models: prepare ranked data, train with DPO-family, AOT or MC-PO "
         "losses, and evaluate with judged winrates and lm-eval benchmarks.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
eval_app = typer.Typer(help="Evaluate a model: judged winrates (AlpacaEval, Arena-Hard) and lm-eval benchmarks.",
                       no_args_is_help=True)


def _version(value: bool) -> None:
    if value:
        print(f"prefcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """prefcli: from ranked preference data to an aligned model and a trustworthy winrate."""


app.add_typer(prepare.app, name="prepare")
train.register(app)
losses.register(app)
generate.register(app)
eval_judged.register(eval_app)
eval_harness.register(eval_app)
eval_compare.register(eval_app)
app.add_typer(eval_app, name="eval")
app.add_typer(fixtures.app, name="fixtures")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one red line and exit code 2."""
    # prefcli draws its own progress bars; the hub's per-file bars would interleave with them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        app(args=argv, prog_name="prefcli")
    except PrefcliError as error:
        err_console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
