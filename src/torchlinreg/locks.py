"""Locks on the places torchlinreg writes: one writer at a time, named when another is refused.

:func:`hold` takes an exclusive ``fcntl.flock`` on a lock file and records in it who holds
it (pid, start time). The kernel drops a flock when its holder dies, however it dies, so a
lock file left by a killed process is simply taken over; a live holder refuses the second
writer with :class:`~torchlinreg.errors.OutputError` naming it. Nothing ever waits.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

MAX_LOCK_BYTES = 4096  # what a lock file's record may take; more is not ours


@contextlib.contextmanager
def hold(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold the lock file ``path`` while inside; ``what`` names the place it guards, for the message.

    Refused at once (:class:`~torchlinreg.errors.OutputError`, naming the holder's pid and
    start time) while another process holds it. A lock file whose holder died (killed,
    crashed) is taken over. On leaving, the lock file is removed, then released.
    """
    import fcntl

    path = Path(path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot lock {what} {str(path.parent)!r} ({exc.strerror or exc}); "
                              "pass {out_dir} with a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(f"{what} {str(path.parent)!r} is in use by another torchlinreg process ({holder}); "
                              "wait for it to finish, or choose another {out_dir}") from None
        except OSError as exc:  # a file system without locks
            os.close(fd)
            raise OutputError(f"cannot lock {what} {str(path.parent)!r} ({exc.strerror or exc}); "
                              "pass {out_dir} on a local file system") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # its holder removed it between our open and our lock: lock the new one
    try:
        record = json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                             "time": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                path.unlink()  # before the release: a process that opened it retries on the new file
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock, as its file records it (the holder may not have written it yet)."""
    try:
        record = json.loads(os.pread(fd, MAX_LOCK_BYTES, 0).decode("utf-8"))
        pid, started = int(record["pid"]), str(record["started"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return "pid unknown, it is starting"
    return f"pid {pid}, started {started}"

