"""Write-then-rename, so an interrupted command never leaves a half-written file or directory behind.

Every temporary file or directory is created beside its target as ``.NAME.HOST.PID.RANDOM.tmp``. A writer killed
with ``kill -9`` cannot remove its temporary file, so each new write to the same target first removes the ones
whose writer (same host, by process id) is gone; a temporary file of a live writer, or of another host sharing
the directory, is never touched. SIGTERM and Ctrl-C unwind normally (the CLI turns SIGTERM into an exit), which
removes the temporary file on the way out.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

_HOST = socket.gethostname().replace(".", "-").replace("/", "-") or "localhost"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8"):
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as handle:
        yield handle


def write_json(path: str | Path, obj, indent: int = 2) -> None:
    """Atomically write ``obj`` as pretty JSON (UTF-8, non-ASCII kept)."""
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=indent, ensure_ascii=False)
        handle.write("\n")


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """For writers that open the file themselves: yields a temporary path beside ``path`` that replaces ``path``
    once the block ends (synced to disk first) and is removed if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    _default_permissions(tmp)
    try:
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def staging_dir(target: str | Path) -> Path:
    """A fresh, empty temporary directory beside ``target``, to be published with :func:`publish_dir` or
    :func:`publish_into` (stale ones of dead writers are removed first)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    return Path(tempfile.mkdtemp(prefix=_temporary_prefix(target), suffix=".tmp", dir=target.parent))


def publish_dir(staging: str | Path, target: str | Path) -> None:
    """Make the finished directory ``staging`` appear as ``target`` in one rename (an older ``target`` is
    removed first)."""
    staging, target = Path(staging), Path(target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    os.replace(staging, target)
    _fsync(target.parent)


def publish_into(staging: str | Path, target: str | Path) -> None:
    """Move every entry of the finished directory ``staging`` into the directory ``target``, each in one rename
    (an entry of the same name is replaced), then remove ``staging``."""
    staging, target = Path(staging), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        destination = target / item.name
        if destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        elif destination.is_file() and os.path.samefile(item, destination):
            item.unlink()  # a hard link to the same file is already there; rename() would do nothing
            continue
        os.replace(item, destination)
    staging.rmdir()
    _fsync(target)


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Remove the temporary files and directories of ``target`` left by writers of this host that are no longer
    running (killed before they could clean up); returns what was removed."""
    target = Path(target)
    prefix = f".{target.name}.{_HOST}."
    removed = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            pid = name[len(prefix):].split(".", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def _temporary_prefix(target: Path) -> str:
    return f".{target.name}.{_HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _fsync(path: str | Path) -> None:
    """Flush a file's (or a directory's entries') data to disk; filesystems that cannot are left alone."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _default_permissions(path: str) -> None:
    """Give a ``mkstemp`` file (created 0600) the mode a plain ``open`` would: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
