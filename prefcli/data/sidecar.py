"""The ``<output>.meta.json`` sidecar that records how an output file was made."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from prefcli import __version__
from prefcli.data.atomic import write_json


def file_checksum(path: str | Path) -> str:
    """``sha256:<hex>`` of a file, or of every file under a directory in sorted order."""
    path = Path(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]:
        hash_file_into(digest, file)
    return f"sha256:{digest.hexdigest()}"


def hash_file_into(digest, path: str | Path, start: int = 0) -> None:
    """Feed the bytes of ``path`` from offset ``start`` to ``digest`` (a ``hashlib`` object), 1 MB at a time."""
    with open(path, "rb") as handle:
        handle.seek(start)
        while chunk := handle.read(1 << 20):
            digest.update(chunk)


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
