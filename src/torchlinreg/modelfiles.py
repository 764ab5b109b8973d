"""A model's two files on disk: read back within bounds, and replaced as one generation.

Reading (:func:`read_regular`): only a regular file is read (a FIFO, a device such as
``/dev/zero`` behind a symlink, or a folder is refused without blocking: the file is opened
with ``O_NONBLOCK`` and checked with ``fstat`` before a byte is read), and only up to a size
given by the caller, checked before reading.

Writing (:func:`write_pair`): the JSON is the commit record. It holds the SHA-256 of the tensors
file it belongs to, and it is put in place last. Before the new tensors file replaces
``m.safetensors``, the tensors that the current ``m.json`` names are kept as the hidden sibling
``.m.safetensors.previous``; :func:`committed_tensors` reads whichever of the two matches the
JSON. So a save killed at any moment leaves the previous model (new tensors, old JSON, the old
tensors beside them) or the new one (both new), never a pair that cannot be loaded. Each
file is written to a temporary file, flushed to disk, then renamed; the folder is flushed after
each rename that a later step depends on. The temporaries and the sibling of a killed save are
removed by the next save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from .bounded import ReadRefused, read_bounded
from .errors import ModelFileError, OutputError

PREVIOUS = ".previous"  # the hidden sibling holding the tensors of the committed JSON, during a save
SAVE = "choose another {save} path"


def read_regular(path: Path, limit: int, *, what: str = "model file", fix: str) -> bytes:
    """The bytes of the regular file at ``path`` (a symlink to one is followed), at most ``limit`` of them.

    Raises FileNotFoundError if it is missing, and :class:`ModelFileError` (ending with ``fix``) if it
    is no regular file, is larger than ``limit`` or cannot be read. Never blocks on a FIFO or device.
    """
    try:
        return read_bounded(path, limit)
    except ReadRefused as refused:
        where = f"{what} {str(path)!r}"
        message = {
            "unreadable": f"cannot read {where} ({refused.strerror}); check that it is a readable file",
            "not regular": f"{where} is {refused.kind}, not a regular file; {fix}",
            "too large": f"{where} is {refused.size:,} bytes, more than the {limit:,} its model can need; {fix}",
            "grew": f"{where} grew past {limit:,} bytes while read; {fix}",
        }[refused.reason]
        raise ModelFileError(message) from None


def previous_path(tensors_path: Path) -> Path:
    """``run/.m.safetensors.previous``: the committed tensors, kept while a save replaces ``run/m.safetensors``."""
    return tensors_path.parent / f".{tensors_path.name}{PREVIOUS}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def committed_tensors(tensors_path: Path, expected_sha: str, limit: int, *, fix: str) -> tuple[bytes, bool]:
    """The tensors file whose SHA-256 is ``expected_sha``: ``tensors_path``, else its hidden sibling left by
    a save that was stopped before its JSON was put in place. Returns ``(bytes, matched)``: the bytes of
    ``tensors_path`` and False when neither matches. Nothing is parsed before the checksum matches."""
    try:
        data = read_regular(tensors_path, limit, fix=fix)
    except FileNotFoundError:
        data = None  # a first save stopped after its JSON: the tensors are still the hidden sibling
    if data is not None and sha256(data) == expected_sha:
        return data, True
    with contextlib.suppress(FileNotFoundError, ModelFileError):
        kept = read_regular(previous_path(tensors_path), limit, fix=fix)
        if sha256(kept) == expected_sha:
            return kept, True
    if data is None:
        raise FileNotFoundError(tensors_path)
    return data, False


# ---------------------------------------------------------------------------- writing


def _first_pair(tensors_path: Path, json_path: Path, staged: Path, tensor_bytes: bytes, json_bytes: bytes) -> None:
    """A first save: the tensors go to the hidden sibling, the JSON commits, then the tensors take their name.
    Killed before the commit, it leaves no model (only hidden files the next save removes); after it, the JSON's
    tensors are found under either name (:func:`committed_tensors`)."""
    try:
        _put(staged, tensor_bytes)
        _sync_folder(tensors_path.parent)
        _put(json_path, json_bytes)  # the commit
    except BaseException:
        with contextlib.suppress(OSError):
            staged.unlink()
        raise
    try:
        os.replace(staged, tensors_path)
    except OSError as exc:  # the save failed as a whole: no model, as before it
        with contextlib.suppress(OSError):
            json_path.unlink()
            staged.unlink()
        raise _cannot_write(tensors_path, exc) from None
    _sync_folder(tensors_path.parent)


def _temporaries(target: Path) -> re.Pattern:
    """The names of ``target``'s temporary files: ``.<name>.<8 characters of mkstemp>.tmp``."""
    return re.compile(rf"\.{re.escape(target.name)}\.[A-Za-z0-9_]{{8}}\.tmp")


def remove_leftovers(tensors_path: Path, json_path: Path) -> None:
    """Remove the temporary files that a killed save of this model left (the caller holds its lock)."""
    patterns = [_temporaries(p) for p in (tensors_path, json_path, previous_path(tensors_path))]
    with contextlib.suppress(OSError):
        for entry in os.scandir(tensors_path.parent):
            if any(p.fullmatch(entry.name) for p in patterns):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _cannot_write(path: Path, exc: OSError) -> OutputError:
    return OutputError(f"cannot write {str(path)!r} ({exc.strerror or exc}); free some space, or {SAVE}")


def _file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (the renames in it) to disk, where the system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _put(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files; a model is meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from None
        raise


def _committed_sha(json_path: Path, limit: int) -> str | None:
    """The tensors' SHA-256 that the JSON in place names; None if there is none that can be read."""
    try:
        desc = json.loads(read_regular(json_path, limit, fix=""))
        sha = desc.get("tensors_sha256") if isinstance(desc, dict) else None
    except (OSError, ModelFileError, ValueError, RecursionError):
        return None
    return sha.lower() if isinstance(sha, str) else None


def _keep_previous(tensors_path: Path, json_path: Path, json_limit: int, limit: int) -> bool:
    """Make ``.m.safetensors.previous`` hold the tensors the JSON in place names (else the tensors file in
    place, to put back should the save fail); whether it holds any."""
    previous = previous_path(tensors_path)
    sha = _committed_sha(json_path, json_limit)
    if sha is not None:
        with contextlib.suppress(OSError, ModelFileError):
            current = read_regular(tensors_path, limit, fix="")
            if sha256(current) == sha:
                _put(previous, current)
                _sync_folder(tensors_path.parent)
                return True
            if sha256(read_regular(previous, limit, fix="")) == sha:
                return True  # a killed save replaced the tensors: the sibling holds the committed ones
    with contextlib.suppress(OSError, ModelFileError):  # no pair that loads: keep what is there, to put it back
        _put(previous, read_regular(tensors_path, limit, fix=""))
        return True
    with contextlib.suppress(FileNotFoundError):
        previous.unlink()
    return False


def write_pair(tensors_path: Path, json_path: Path, tensor_bytes: bytes, json_bytes: bytes, *,
               json_limit: int, tensors_limit: int) -> None:
    """Replace the model's two files as one generation (see the module's docstring); the caller holds its lock.

    If a write fails (a full disk), the previous pair is put back as it was, or the new files are
    removed when there was none. The limits bound what is read of the files in place.
    """
    folder = tensors_path.parent
    remove_leftovers(tensors_path, json_path)
    kept = _keep_previous(tensors_path, json_path, json_limit, tensors_limit)
    previous = previous_path(tensors_path)
    if not kept and not json_path.exists():  # a first save: nothing in sight until the JSON commits
        _first_pair(tensors_path, json_path, previous, tensor_bytes, json_bytes)
        return
    replaced = False
    try:
        _put(tensors_path, tensor_bytes)
        replaced = True
        _sync_folder(folder)  # the tensors are in place before the JSON that names them
        _put(json_path, json_bytes)  # the commit
    except BaseException:
        with contextlib.suppress(OSError):  # best effort: the old pair back, or no pair
            if kept and replaced:
                os.replace(previous, tensors_path)
            elif replaced:
                tensors_path.unlink()
            elif kept:
                previous.unlink()
        raise
    with contextlib.suppress(FileNotFoundError):
        previous.unlink()
    _sync_folder(folder)
