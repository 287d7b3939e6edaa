"""The ``prefcli`` command: one Typer sub-app per command group. Commands parse and validate their flags, call
the library, and print; the logic lives in the library."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings

import typer
from rich.markup import escape

from prefcli import __version__
from prefcli.cli import (
    eval_compare,
    eval_harness,
    eval_judged,
    eval_reward,
    fixtures,
    generate,
    losses,
    prepare,
    train,
)
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
eval_app = typer.Typer(help="Evaluate a model: judged winrates (AlpacaEval, Arena-Hard), lm-eval benchmarks and "
                            "the mean reward under a reward function or reward model.",
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
eval_reward.register(eval_app)
app.add_typer(eval_app, name="eval")
app.add_typer(fixtures.app, name="fixtures")


def main(argv: list[str] | None = None) -> None:
    """Console entry point. A user error (bad input, bad flag, bad usage) ends the output as one line
    ``error: …`` and exits 2; Ctrl-C exits 130 and SIGTERM 143, both after removing what was half-written."""
    # prefcli draws its own progress bars; the hub's per-file bars would interleave with them.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _silence_known_deprecation_noise()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code = app(args=argv, prog_name="prefcli", standalone_mode=False)
    except PrefcliError as error:
        _fail(str(error), 2)
    except typer.TyperException as error:  # Typer's usage errors (bad flag, bad value, missing option)
        if type(error).__name__ == "NoArgsIsHelpError":
            error.show()
            sys.exit(error.exit_code)
        context = getattr(error, "ctx", None)
        if context is not None:
            err_console.print(context.get_usage(), highlight=False, markup=False, soft_wrap=True)
            err_console.print(f"Try '{context.command_path} --help' for help.", highlight=False, markup=False)
        _fail(error.format_message(), error.exit_code)
    except typer.Abort as error:
        if isinstance(error.__cause__, EOFError):
            raise error.__cause__ from None
        _fail("interrupted", 130)
    if code == 130:
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> None:
    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _exit_on_sigterm(signum, frame) -> None:
    """Unwind like Ctrl-C does (``finally`` blocks remove temporary files), then exit 143."""
    _fail("terminated (SIGTERM)", 128 + signal.SIGTERM)


def _not_a_deprecation_note(record: logging.LogRecord) -> bool:
    return "deprecated" not in record.getMessage()


def _silence_known_deprecation_noise() -> None:
    """Deprecation notices of the libraries underneath (transformers, torch, datasets) that a prefcli user can do
    nothing about: transformers' log line about ``past_key_values`` and ``FutureWarning``s announcing removals."""
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"(?s).*\bdeprecated\b")
    warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"(?s).*\bdeprecated\b")
    # addFilter skips a filter already there, so however often main() runs this function is added once
    logging.getLogger("transformers.utils.generic").addFilter(_not_a_deprecation_note)
