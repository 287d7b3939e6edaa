"""The ``<output>.meta.json`` sidecar that records how an output file was made."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from prefcli import __version__
from prefcli.data.atomic import write_json


def file_checksum(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """``sha256:<hex>`` of a file, or of every file under a directory in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def sidecar_path(output: str | Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".meta.json")


def write_sidecar(output: str | Path, *, config: dict, seed: int | None, inputs: dict[str, str],
                  counts: dict, skipped: dict | None = None, argv: list[str] | None = None) -> Path:
    """Write the sidecar next to ``output``: command line, config, seed, input checksums, counts, version."""
    meta = {
        "command": " ".join(argv if argv is not None else ["prefcli", *sys.argv[1:]]),
        "config": config,
        "seed": seed,
        "inputs": inputs,
        "counts": counts,
        "skipped": dict(sorted((skipped or {}).items())),
        "prefcli_version": __version__,
    }
    path = sidecar_path(output)
    write_json(path, meta)
    return path


class BackgroundChecksum:
    """``file_checksum(path)`` computed in a daemon thread while the input is being processed (hashing and reading
    release the GIL, so on two cores it is nearly free). ``result()`` waits for it; ``cancel()`` stops it."""

    def __init__(self, path: str | Path, chunk_size: int = 1 << 20):
        import threading

        self._path, self._chunk_size = Path(path), chunk_size
        self._stop = threading.Event()
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="prefcli-checksum", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            path = self._path
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                with file.open("rb") as handle:
                    while chunk := handle.read(self._chunk_size):
                        if self._stop.is_set():
                            return
                        digest.update(chunk)
            self._value = f"sha256:{digest.hexdigest()}"
        except BaseException as error:  # reported by result()
            self._error = error

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._value is None:
            raise RuntimeError("checksum was cancelled")
        return self._value

    def cancel(self) -> None:
        self._stop.set()
