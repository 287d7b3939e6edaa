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


# --- the one reader ---------------------------------------------------------------------------------------------

def _nectar_rows(count: int) -> list[dict]:
    return [{"id": i, "prompt": f"\n\nHuman: q{i} café\n\nAssistant:",
             "answers": [{"answer": f"answer {i} ranked {rank}", "model": "m", "rank": rank} for rank in (2, 1, 3, 4)]}
            for i in range(count)]


def test_gzip_output_is_gzip_and_reads_back(tmp_path):
    import gzip
    import json

    from prepare_helpers import prepare, write_jsonl

    from prefcli.data.records import read_records

    src = write_jsonl(tmp_path / "in.jsonl", _nectar_rows(40))
    plain, packed, again = tmp_path / "out.jsonl", tmp_path / "out.jsonl.gz", tmp_path / "again.jsonl.gz"
    prepare("nectar", "--input", str(src), "--output", str(plain))
    prepare("nectar", "--input", str(src), "--output", str(packed))
    prepare("nectar", "--input", str(src), "--output", str(again))
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    assert packed.read_bytes() == again.read_bytes()  # no name or time in the gzip header
    assert [r["id"] for r in read_records(packed)] == list(range(40))  # train reads .jsonl.gz too
    noised = tmp_path / "noised.jsonl.gz"
    prepare("noise", "--input", str(packed), "--output", str(noised))
    assert len(gzip.decompress(noised.read_bytes()).splitlines()) == 40
    sidecar = json.loads((tmp_path / "noised.jsonl.gz.meta.json").read_text())
    import hashlib
    assert sidecar["inputs"] == {str(packed): "sha256:" + hashlib.sha256(packed.read_bytes()).hexdigest()}


def test_checksum_covers_the_whole_file_whatever_was_read(tmp_path):
    import hashlib

    from prepare_helpers import write_jsonl

    from prefcli.data.readers import open_source

    src = write_jsonl(tmp_path / "in.jsonl", _nectar_rows(3000))
    expected = "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    for rows_read in (0, 1, 2999, 3000):
        source = open_source(src)
        iterator = source.rows()
        for _ in range(rows_read):
            next(iterator)
        assert source.checksum() == expected, rows_read
    source = open_source(src)
    assert sum(1 for _ in source.rows()) == 3000 and source.position == src.stat().st_size


def test_every_format_gives_the_same_rows(tmp_path):
    import gzip
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from prepare_helpers import write_jsonl

    from prefcli.data.readers import iter_rows

    rows = _nectar_rows(5)
    jsonl = write_jsonl(tmp_path / "in.jsonl", rows)
    (tmp_path / "in.json").write_text("\ufeff[\n" + ",\n".join(json.dumps(r, indent=1) for r in rows) + "\n]")
    (tmp_path / "in.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + jsonl.read_bytes()))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    for name in ("in.jsonl", "in.json", "in.jsonl.gz", "in.parquet"):
        assert [row for _, row in iter_rows(tmp_path / name)] == rows, name
    lines_per_row = len(json.dumps(rows[0], indent=1).splitlines())
    assert [line for line, _ in iter_rows(tmp_path / "in.json")] == [2 + lines_per_row * i for i in range(5)]


def test_records_without_id_are_named_by_their_line(tmp_path):
    import json

    from prefcli.data.records import iter_numbered_records

    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n\n"
                    + json.dumps({"id": "x", "prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    assert [(line, record["id"]) for line, record in iter_numbered_records(path)] == [(1, 1), (3, "x")]


# --- temporary files of interrupted writers ---------------------------------------------------------------------

_SLOW_PREPARE = """
import sys, time
from prefcli.data import nectar
real = nectar.nectar_converter
def slow(options):
    convert = real(options)
    def wrapped(row, location):
        if location == 2:
            print("ready", flush=True)
            time.sleep(120)
        return convert(row, location)
    return wrapped
nectar.nectar_converter = slow
from prefcli.cli import main
main(sys.argv[1:])
"""


def _start_slow_prepare(tmp_path):
    import subprocess
    import sys

    from prepare_helpers import write_jsonl

    src = write_jsonl(tmp_path / "in.jsonl", _nectar_rows(5))
    process = subprocess.Popen([sys.executable, "-c", _SLOW_PREPARE, "prepare", "nectar", "--input", str(src),
                                "--output", str(tmp_path / "out.jsonl")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready", process.stderr.read()
    return process


def _temporaries(tmp_path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.jsonl."))


def test_sigterm_removes_the_temporary_file(tmp_path):
    import signal

    process = _start_slow_prepare(tmp_path)
    assert len(_temporaries(tmp_path)) == 1
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143
    assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)"
    assert _temporaries(tmp_path) == [] and not (tmp_path / "out.jsonl").exists()


def test_the_next_write_removes_temporaries_of_killed_writers_only(tmp_path):
    import signal

    from prepare_helpers import prepare

    from prefcli.data.atomic import atomic_path, remove_stale_temporaries

    process = _start_slow_prepare(tmp_path)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    (stale,) = _temporaries(tmp_path)
    assert f".{process.pid}." in stale
    other_host = tmp_path / ".out.jsonl.elsewhere.1.abcdefgh.tmp"
    other_host.write_text("another machine's writer")
    prepare("nectar", "--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "side.jsonl"))
    assert stale in _temporaries(tmp_path)  # writes to other targets leave it alone
    with atomic_path(tmp_path / "out.jsonl") as mine:  # the next write to the same target removes it
        assert _temporaries(tmp_path) == sorted([other_host.name, mine.name])
        assert remove_stale_temporaries(tmp_path / "out.jsonl") == []  # a live writer's file is never removed
        mine.write_text("done\n")
    assert (tmp_path / "out.jsonl").read_text() == "done\n"
    assert _temporaries(tmp_path) == [other_host.name]


def test_evaluation_files_use_the_same_reader(tmp_path):
    from prefcli.errors import DataError
    from prefcli.eval.items import read_instructions, read_outputs

    pretty = tmp_path / "outputs.json"
    pretty.write_text('[\n {"instruction": "a", "output": "x"},\n {"instruction": "b", "output": 3}\n]\n')
    with pytest.raises(DataError, match=r"outputs.json:3: output: must be a string, got int"):
        read_outputs(pretty)
    lines = tmp_path / "instructions.jsonl"
    lines.write_bytes(b'{"instruction": "a"}\n{"instruction": "\xff"}\n')
    with pytest.raises(DataError, match=r"instructions.jsonl:2: not valid UTF-8"):
        read_instructions(lines)
    lines.write_text('{"instruction": "a"}\n{"instruction": NaN}\n')
    with pytest.raises(DataError, match=r"instructions.jsonl:2: invalid JSON \(NaN is not a JSON number\)"):
        read_instructions(lines)


def test_publish_into_replaces_entries_and_keeps_links_to_the_same_file(tmp_path):
    import subprocess
    import sys

    from prefcli.data.atomic import _temporary_prefix, publish_into, staging_dir

    target = tmp_path / "run"
    (target / "adapter").mkdir(parents=True)
    (target / "adapter" / "old.bin").write_text("old adapter")
    (target / "config.json").write_text("{}")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    killed = target / (_temporary_prefix(target / "final").replace(f".{os.getpid()}.", f".{dead}.") + "x.tmp")
    killed.mkdir()  # a publisher killed half-way
    staging = staging_dir(target / "final")
    assert not killed.exists()
    (staging / "adapter").mkdir()
    (staging / "adapter" / "new.bin").write_text("new adapter")
    os.link(target / "config.json", staging / "config.json")  # already published once: same file
    (staging / "model.bin").write_text("weights")
    publish_into(staging, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == [
        "adapter", "adapter/new.bin", "config.json", "model.bin"]


def test_training_index_reads_records_like_the_one_reader(tmp_path):
    """train --data goes through an offset index (prefcli.train.record_index); it names id-less records by their
    line and reports bad bytes with the one reader's messages."""
    import json

    from prefcli.errors import DataError
    from prefcli.train.record_index import load_index

    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n\n"
                    + json.dumps({"id": "x", "prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    index, _ = load_index(path)
    assert [record["id"] for _, record in sorted(index.read(range(len(index))).items())] == [1, "x"]
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                    + '{"prompt": "a", "chosen": NaN, "rejected": "c"}\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: invalid JSON \(NaN is not a JSON number\)"):
        load_index(path)
