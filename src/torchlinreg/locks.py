"""One writer at a time: a lock file beside what is written, naming the process that holds it.

``with hold(target, what="the model files 'run/m.safetensors' and 'run/m.json'"):`` takes an
exclusive ``flock`` on ``.<name>.lock`` beside ``target`` (a file or a folder; the lock is
beside it, so a folder's lock does not sit among its files) and writes the holder's record
into it: its pid, its host and the time the process started. While it is held, a second
writer (another process) is refused at once with an :class:`~torchlinreg.errors.OutputError`
naming the holder:

    process 1234 (started 2026-12-07 21:10:02) is writing the model files ...; wait for it to
    finish, or choose another path

A lock is never stale for long: the kernel drops a ``flock`` when its holder dies, SIGKILL
included. One case remains: a child that inherited the lock's descriptor outlives its parent.
Then the record names a process that is gone (or a pid since reused by a process that started
later), and the lock is taken over. The lock file is removed when released; a taker checks
that the file it locked is still the one at the path, so a lock removed meanwhile is not held
twice.

``hold`` is re-entrant within a process (a fit holding its model's lock may call ``save_model``,
which holds it too). It works where ``fcntl.flock`` does: Linux and macOS, and NFS through the
kernel's emulation.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

from .errors import OutputError

RECORD_LIMIT = 4096  # bytes of a lock's record read back; ours is under 200
_held: dict[str, int] = {}  # lock paths this process holds, and how many times (re-entrant holds)
_held_guard = threading.Lock()


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.<name>.lock`` in the same folder (``run/m`` -> ``run/.m.lock``)."""
    target = Path(os.path.abspath(target))
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def hold(target: str | os.PathLike, *, what: str, fix: str = "wait for it to finish, or choose another path"):
    """Hold the lock of ``target`` for the ``with`` block; refuse (OutputError) if another process holds it.

    ``what`` names the thing written, for the message (``"the output folder 'out'"``); ``fix`` is the
    advice after it. The lock's folder must exist.
    """
    path = lock_path(target)
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd = _acquire(path, what, fix)
    with _held_guard:
        _held[key] = 1
    try:
        yield path
    finally:
        with _held_guard:
            del _held[key]
        _release(path, fd)


def _acquire(path: Path, what: str, fix: str) -> int:
    """The descriptor of ``path``, locked by this process and holding its record."""
    import fcntl

    for _ in range(100):  # each turn either locks, or finds the file replaced or a dead holder's lock removed
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0),
                         0o666)
        except OSError as exc:
            raise OutputError(f"cannot write {what}: cannot make its lock file {str(path)!r} "
                              f"({exc.strerror or exc}); choose another path") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OutputError(f"cannot write {what}: its lock file {str(path)!r} is not a regular file; "
                                  "remove it, or choose another path")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                if _alive(holder):
                    raise OutputError(f"{_describe(holder)} is writing {what}; {fix}") from None
                _unlink_if_same(path, fd)  # its holder died and a child of it keeps the lock: take it over
                os.close(fd)
                continue
            if not _unlink_if_same(path, fd, unlink=False):
                os.close(fd)  # released and removed by its holder after we opened it: lock the new one
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps(_record()).encode("ascii"))
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    raise OutputError(f"cannot take the lock {str(path)!r} of {what}: it keeps changing; {fix}")


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        _unlink_if_same(path, fd)  # still holding it: nobody else can have it
    with contextlib.suppress(OSError):
        os.close(fd)


def _unlink_if_same(path: Path, fd: int, *, unlink: bool = True) -> bool:
    """Whether ``path`` is still the file open as ``fd``; if so and ``unlink``, remove it."""
    try:
        on_disk, ours = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except FileNotFoundError:
        return False
    same = (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino)
    if same and unlink:
        os.unlink(path)
    return same


def _record() -> dict:
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": process_start(pid) or time.time()}


def _holder(fd: int) -> dict:
    """The record the holder wrote; empty if it cannot be read (for a moment after the holder locked)."""
    for _ in range(20):
        try:
            data = os.pread(fd, RECORD_LIMIT, 0)
            record = json.loads(data.decode("ascii")) if data else None
        except (OSError, ValueError, RecursionError):
            record = None
        if isinstance(record, dict) and _is_int(record.get("pid")):
            return record
        time.sleep(0.01)
    return {}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _alive(holder: dict) -> bool:
    """Whether the holder may still be writing: true unless its record shows it on this host and gone."""
    pid, started = holder.get("pid"), holder.get("started")
    if not _is_int(pid) or holder.get("host") != socket.gethostname():
        return True  # a holder we cannot check is alive: refusing is safe
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    now = process_start(pid)
    return not (isinstance(started, (int, float)) and now is not None and now > started + 2.0)  # else pid reused


def _describe(holder: dict) -> str:
    pid, started, host = holder.get("pid"), holder.get("started"), holder.get("host")
    if not _is_int(pid):
        return "another process"
    when = ""
    if isinstance(started, (int, float)) and 0 < started < 1e11:
        when = f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
    if isinstance(host, str) and host != socket.gethostname():
        when = f"on host {host[:64]!r}" + (", " + when if when else "")
    return f"process {pid}" + (f" ({when})" if when else "")


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), where ``/proc`` tells (Linux); else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of stat(5): start time in clock ticks after boot
        with open("/proc/stat", "rb") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
