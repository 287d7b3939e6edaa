"""Append large outputs to a file with ``O_DIRECT`` where the filesystem allows it.

Writing through the page cache costs the CPU a copy of every byte (and, on virtual machines, a fault for every
fresh page); a ``prepare`` run writes about as many bytes as it reads, so that copy is a large share of its time.
With ``O_DIRECT`` the data go from an aligned buffer straight to the device. The rules it imposes (buffer address,
length and file offset aligned to 4 KiB) are handled here: data are staged in a page-aligned buffer, only whole
blocks are written, and the tail is written padded to a block and then truncated to the true length. Filesystems
that refuse ``O_DIRECT`` (tmpfs, some network and FUSE filesystems) get plain writes; the bytes are the same.
"""

from __future__ import annotations

import errno
import mmap
import os

ALIGN = 4096
BUFFER_BYTES = 8 << 20


class FileAppender:
    """Appends to an (empty) file at ``path``; ``close()`` flushes, syncs and closes it."""

    def __init__(self, path, direct: bool = True):
        self._path = path
        self._size = 0
        self._written_direct = 0
        self.direct = False
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
                self.direct = True
            except OSError:
                pass
        if not self.direct:
            self._fd = os.open(path, os.O_WRONLY)
        self._buffer = mmap.mmap(-1, BUFFER_BYTES) if self.direct else None
        self._used = 0

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if not self.direct:
            _write_all(self._fd, data)
            return
        view, start = memoryview(data), 0
        while start < len(view):
            take = min(len(view) - start, BUFFER_BYTES - self._used)
            self._buffer[self._used:self._used + take] = view[start:start + take]
            self._used += take
            start += take
            if self._used == BUFFER_BYTES:
                self._drain()
                if not self.direct:  # fell back to plain writes: the rest goes straight through
                    _write_all(self._fd, view[start:])
                    return

    def _drain(self, final: bool = False) -> None:
        """Write the whole blocks staged so far (with ``final``, the tail too, padded to a block)."""
        length = self._used - self._used % ALIGN
        if final and self._used % ALIGN:
            length += ALIGN
            self._buffer[self._used:length] = bytes(length - self._used)
        if not length:
            return
        with memoryview(self._buffer) as whole, whole[:length] as block:
            try:
                _write_all(self._fd, block)
            except OSError as error:
                if error.errno != errno.EINVAL or self._written_direct:
                    raise
                self._fall_back_to_plain_writes()
                return
        self._written_direct += length
        rest = self._used - length
        if rest > 0:
            self._buffer[:rest] = self._buffer[length:self._used]
        self._used = max(rest, 0)

    def _fall_back_to_plain_writes(self) -> None:
        """The filesystem accepted ``O_DIRECT`` at open but refuses the writes (nothing is written yet): go on
        through the page cache."""
        os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_TRUNC)
        self.direct = False
        _write_all(self._fd, self._buffer[:self._used])
        self._used = 0

    def close(self) -> None:
        """Write what is staged, cut the padding, sync and close."""
        if self.direct:
            self._drain(final=True)
            os.ftruncate(self._fd, self._size)
        os.fsync(self._fd)
        self.abort()

    def abort(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._buffer is not None:
            self._buffer.close()
            self._buffer = None


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while len(view):
        view = view[os.write(fd, view):]
