"""The I/O under every prepare command: the one reader (formats, bad bytes, checksums), gzip output, stale
temporary files, and the O_DIRECT appender writing exactly the bytes it is given (or falling back to plain
writes)."""

from __future__ import annotations

import errno
import os
import random

import pytest
from prefcli.data import appender
from prefcli.data.appender import BUFFER_BYTES, FileAppender


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
