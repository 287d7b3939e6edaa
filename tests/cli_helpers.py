"""Two ways the tests run ``prefcli``: through the console entry point, or in-process with output captured."""

from __future__ import annotations

from prefcli.errors import PrefcliError


def run_main(args: list[str]) -> int:
    """Exit code of ``prefcli.cli.main(args)`` (user errors: 2, as on the command line)."""
    from prefcli.cli import main

    try:
        main(args)
    except SystemExit as exit_:
        return exit_.code or 0
    return 0


def invoke_cli(args) -> tuple[int, str]:
    """``(exit code, output)`` of ``prefcli`` invoked in-process; a PrefcliError is exit code 2, as in
    ``prefcli.cli.main``, and any other exception is re-raised."""
    from typer.testing import CliRunner

    from prefcli.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if isinstance(result.exception, PrefcliError):
        return 2, result.output + str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output
