"""Writing output files safely: a file is either the old one, the whole new one, or absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


def prepare_output_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} is a file; pass --out with a folder path")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to output folder {str(out)!r} ({reason}); "
                          "pass --out with a folder you can write to") from None
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r} ({exc.strerror or exc}); "
                          "check that the folder exists and is writable, or choose another path") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {str(path)!r} ({exc.strerror or exc}); "
                              "free some space or pass --out with another folder") from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
