"""The I/O under every prepare command: worker processes give the same bytes as the sequential loop, and the
O_DIRECT appender writes exactly the bytes it is given (or falls back to plain writes)."""

from __future__ import annotations

import errno
import json
import os
import random

import pytest
from prepare_helpers import prepare

from prefcli.cli import main
from prefcli.data import appender, parallel
from prefcli.data.appender import BUFFER_BYTES, FileAppender


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of ~4 kB so a small file is cut into many blocks (workers are forked and inherit this)."""
    monkeypatch.setattr(parallel, "BLOCK_BYTES", 4096)


def nectar_file(path, rows: int, bad_lines: dict[int, str] | None = None):
    from prefcli.fixtures import write_synthetic_nectar

    write_synthetic_nectar(path, rows=rows, seed=2)
    if bad_lines:
        lines = path.read_text(encoding="utf-8").split("\n")
        for number, text in bad_lines.items():
            lines[number - 1] = text
        path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_workers_write_the_same_bytes_as_the_sequential_loop(tmp_path, small_blocks):
    src = nectar_file(tmp_path / "in.jsonl", 300)
    assert src.stat().st_size > 20 * 4096
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(one), "--seed", "3", "--workers", "1")
    prepare("nectar", "--input", str(src), "--output", str(two), "--seed", "3", "--workers", "2")
    assert one.read_bytes() == two.read_bytes()
    meta_one = json.loads((tmp_path / "one.jsonl.meta.json").read_text())
    meta_two = json.loads((tmp_path / "two.jsonl.meta.json").read_text())
    assert meta_one["counts"] == meta_two["counts"] and meta_one["inputs"] == meta_two["inputs"]


def test_workers_skip_invalid_counts_match(tmp_path, small_blocks):
    bad = {5: "{broken", 120: json.dumps({"prompt": "q", "answers": []}), 250: json.dumps({"prompt": "q"})}
    src = nectar_file(tmp_path / "in.jsonl", 300, bad)
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    prepare("nectar", "--input", str(src), "--output", str(one), "--skip-invalid", "--workers", "1")
    prepare("nectar", "--input", str(src), "--output", str(two), "--skip-invalid", "--workers", "3")
    assert one.read_bytes() == two.read_bytes()
    skipped = json.loads((tmp_path / "two.jsonl.meta.json").read_text())["skipped"]
    assert skipped == {"invalid JSON": 1, "no answers": 1, "missing answers": 1}


def test_workers_report_the_first_bad_line_in_file_order(tmp_path, capsys, small_blocks):
    src = nectar_file(tmp_path / "in.jsonl", 300, {170: "{broken", 260: json.dumps({"prompt": 1})})
    out = tmp_path / "out.jsonl"
    with pytest.raises(SystemExit) as info:
        main(["prepare", "nectar", "--input", str(src), "--output", str(out), "--workers", "2"])
    assert info.value.code == 2
    assert f"{src}:170: invalid JSON" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


@pytest.mark.parametrize("direct", [True, False])
def test_appender_writes_exact_bytes(tmp_path, direct):
    rng = random.Random(0)
    for total in (0, 1, 4095, 4096, 4097, BUFFER_BYTES - 1, BUFFER_BYTES, 2 * BUFFER_BYTES + 123):
        data = os.urandom(total)
        path = tmp_path / f"out-{total}.bin"
        path.touch()
        out = FileAppender(path, direct=direct)
        position = 0
        while position < total:
            step = rng.randint(1, 3_000_000)
            out.write(data[position:position + step])
            position += step
        out.close()
        assert path.read_bytes() == data, total


def test_appender_falls_back_when_direct_writes_are_refused(tmp_path, monkeypatch):
    real_write_all = appender._write_all
    refused = []

    def refuse_direct(fd, data):
        if _opened_direct(fd) and not refused:
            refused.append(True)
            raise OSError(errno.EINVAL, "direct I/O not supported")
        real_write_all(fd, data)

    monkeypatch.setattr(appender, "_write_all", refuse_direct)
    probe = tmp_path / "probe.bin"
    probe.touch()
    probe_appender = FileAppender(probe)
    direct_supported = probe_appender.direct
    probe_appender.close()
    path = tmp_path / "out.bin"
    path.touch()
    data = os.urandom(BUFFER_BYTES + 5000)
    out = FileAppender(path)
    out.write(data[:100])
    out.write(data[100:])
    out.close()
    assert out.direct is False and path.read_bytes() == data
    assert refused == ([True] if direct_supported else [])


def _opened_direct(fd: int) -> bool:
    import fcntl

    return bool(getattr(os, "O_DIRECT", 0) & fcntl.fcntl(fd, fcntl.F_GETFL))
