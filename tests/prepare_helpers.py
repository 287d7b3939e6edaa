"""What the prepare tests share: JSONL in and out, and running ``prefcli prepare`` to success or to a user error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prefcli.cli import app, main

runner = CliRunner()


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    # split on "\n" only: str.splitlines() would also split inside texts holding U+2028 or U+0085
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def prepare(*args: str):
    result = runner.invoke(app, ["prepare", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def fails(capsys, *args: str) -> str:
    """Run through the console entry point; assert exit 2 and return the one-line error."""
    with pytest.raises(SystemExit) as info:
        main(["prepare", *args])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())
