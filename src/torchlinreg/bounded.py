"""Reading a file that may be hostile: only a regular file, and at most so many bytes of it.

A FIFO, a device such as ``/dev/zero`` or a folder is never read (the open does not block on a
FIFO), and a file larger than the limit, or one that grows past it while read, is refused. The
callers turn :class:`ReadRefused` into their own messages (model files, checkpoints, run records).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ReadRefused(Exception):
    """Why a file was not read: ``reason`` is ``"not regular"`` (``kind`` says what it is instead),
    ``"too large"`` (``size`` bytes), ``"grew"`` (past the limit while read) or ``"unreadable"``
    (``strerror``)."""

    def __init__(self, reason: str, *, kind: str = "", size: int = 0, strerror: str = ""):
        super().__init__(reason)
        self.reason, self.kind, self.size, self.strerror = reason, kind, size, strerror


def kind_of(mode: int) -> str:
    """What a file of ``st_mode`` ``mode`` is, in words (for one that is not a regular file)."""
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a device"),
             (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (a symlink to one is followed), at most ``limit`` of them.

    Raises FileNotFoundError if it is missing, and :class:`ReadRefused` otherwise when it is not read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO does not block the open
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ReadRefused("unreadable", strerror=exc.strerror or str(exc)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ReadRefused("not regular", kind=kind_of(info.st_mode))
        if info.st_size > limit:
            raise ReadRefused("too large", size=info.st_size)
        chunks, total = [], 0
        while total <= limit:  # a file that grows while read stops here too
            chunk = os.read(fd, min(1 << 24, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise ReadRefused("grew", size=total)
        return b"".join(chunks)
    except OSError as exc:
        raise ReadRefused("unreadable", strerror=exc.strerror or str(exc)) from None
    finally:
        os.close(fd)
