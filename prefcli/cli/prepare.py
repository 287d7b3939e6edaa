"""``prefcli prepare``: placeholder until the preparation commands land."""

import typer

app = typer.Typer(help="Turn public preference datasets into prefcli records.", no_args_is_help=True)
