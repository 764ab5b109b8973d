"""Writing output files safely: a file is either the old one, the whole new one, or absent.

An output folder is written as one generation (:func:`new_generation`, :func:`commit_generation`;
:func:`torchlinreg.publish.claim_output_dir` locks the folder, :mod:`torchlinreg.locks`): a run writes its
files into a hidden staging folder ``.run-<id>``, ``summary.json`` last (it lists every file with
its SHA-256), then moves them into place, ``summary.json`` last. A reader sees the previous
complete run, or the new one; a folder without ``summary.json`` holds no complete run. A run
killed while moving its files is finished by the next run (it rolls the staged files
forward); one killed before is forgotten (its staging folder removed).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from pathlib import Path

from . import bounded
from .errors import OutputError


RUN_MARKER = "summary.json"  # a folder holding this file, written by torchlinreg, is a torchlinreg run
CHECKPOINT_DIR = "checkpoint"  # ... and so is one whose checkpoint/state.json is a torchlinreg checkpoint
CHECKPOINT_STATE = "state.json"
CHECKPOINT_FORMAT = "torchlinreg-checkpoint"
STAGE_PREFIX = ".run-"  # a generation being written: .run-<32 hex digits>
_STAGE = re.compile(r"\.run-[0-9a-f]{32}")
MAX_JSON_BYTES = 64 << 20  # what an earlier run's JSON may take when read back (a summary is a few kB)


def prepare_output_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = (), force: bool = False) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    ``owned`` names the files a run writes there. A folder of an earlier torchlinreg run
    (it holds our ``summary.json``) is the tool's own: those files get replaced. Any other
    folder that already holds a file of those names is refused unless ``force``, so that
    nothing the user had is overwritten by surprise.
    """
    out = Path(path)
    check_path(out)
    if out.is_dir() and not force and not is_run_folder(out):
        clash = next((name for name in owned if (out / name).exists()), None)
        if clash is not None:
            raise OutputError(f"output folder {str(out)!r} already holds {clash!r}, not from a torchlinreg run; "
                              "pass {force=True} to replace it, or choose another {out_dir}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {str(out)!r} ({reason(exc)}); "
                          "pass {out_dir} with a folder you can write to") from None
    return out


def check_path(out: Path) -> None:
    if out.is_symlink() and not out.exists():
        raise OutputError(f"output folder {str(out)!r} is a symbolic link to {os.readlink(out)!r}, which does not "
                          "exist; create that folder, or pass another {out_dir}")
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} is a file; pass {{out_dir}} with a folder path")


def reason(exc: OSError) -> str:
    """An OSError in words, saying what a read-only file system is."""
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or type(exc).__name__


def _unwritable(folder: Path) -> str:
    """Why ``folder`` cannot be written: a read-only file system, or no permission."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return "no permission"


def check_output_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = (), force: bool = False) -> None:
    """The refusals of :func:`prepare_output_dir`, creating nothing: before any data is read."""
    out = Path(path)
    check_path(out)
    if out.exists():
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to output folder {str(out)!r} ({_unwritable(out)}); "
                              "pass {out_dir} with a folder you can write to")
        prepare_output_dir(out, owned=owned, force=force)  # there already: checks it, makes nothing
        return
    probe = Path(os.path.abspath(out)).parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot make output folder {str(out)!r}: {str(probe)!r} is a file; "
                          "pass {out_dir} with a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot make output folder {str(out)!r}: {_unwritable(probe)}, cannot write in {str(probe)!r}; "
                          "pass {out_dir} with a folder you can write to")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds the summary of a torchlinreg run (also one still being moved into place), or
    the checkpoint of an interrupted one."""
    summaries = [folder / RUN_MARKER, *(stage / RUN_MARKER for stage in _stages(folder))]
    checkpoint = read_json_object(folder / CHECKPOINT_DIR / CHECKPOINT_STATE)
    return any("torchlinreg_version" in read_json_object(p) for p in summaries) \
        or checkpoint.get("format") == CHECKPOINT_FORMAT


def read_json_object(path: Path, max_bytes: int = MAX_JSON_BYTES) -> dict:
    """The JSON object in ``path``; empty when the file is missing or holds anything else (see :func:`read_json`)."""
    try:
        value = read_json(path, max_bytes)
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def read_json(path: Path, max_bytes: int = MAX_JSON_BYTES):
    """The JSON value in ``path``, read bounded (:func:`read_bounded`, :func:`parse_json`).

    Raises OSError when it cannot be read, ValueError (a one-line reason) when it is not a
    regular file, is larger than ``max_bytes``, or is not JSON nested at most ``MAX_JSON_DEPTH`` deep.
    """
    return parse_json(read_bounded(path, max_bytes))


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused (ValueError) when it is anything else or holds more
    than ``max_bytes``: a FIFO, a device or ``/dev/zero`` is never read (:mod:`torchlinreg.bounded`)."""
    try:
        return bounded.read_bounded(path, max_bytes)
    except bounded.ReadRefused as refused:
        name = Path(path).name
        if refused.reason == "unreadable":
            raise OSError(f"{name} cannot be read ({refused.strerror})") from None
        raise ValueError({
            "not regular": f"{name} is not a regular file",
            "too large": f"{name} holds {refused.size:,} bytes, more than the {max_bytes:,} it may",
            "grew": f"{name} holds more than the {max_bytes:,} bytes it may",
        }[refused.reason]) from None


MAX_JSON_DEPTH = 64  # torchlinreg's JSON files nest fewer than 20 levels
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def parse_json(raw: bytes):
    """JSON from UTF-8 bytes; nesting deeper than ``MAX_JSON_DEPTH`` is refused (ValueError) before parsing,
    so neither the parser nor the code reading the value recurses without bound."""
    text = raw.decode("utf-8-sig")  # UnicodeDecodeError is a ValueError
    depth = 0
    for m in _BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"it is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        return json.loads(text)
    except RecursionError:  # not reached after the count above; kept as the last guard
        raise ValueError("it is nested too deeply") from None


# --- an output folder's generations ---------------------------------------------------------------------

def new_generation(out: Path) -> Path:
    """A new empty staging folder in ``out`` for a run's files (see :func:`commit_generation`)."""
    stage = out / f"{STAGE_PREFIX}{secrets.token_hex(16)}"
    try:
        stage.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write to output folder {str(out)!r} ({reason(exc)}); "
                          "free some space or pass {out_dir} with another folder") from None
    return stage


def generation_record(stage: Path) -> dict:
    """What ``summary.json`` records of the files staged so far: each one's SHA-256 and an id of the set."""
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(stage.iterdir()) if p.is_file() and not p.name.startswith(".")}
    run_id = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:32]
    return {"id": run_id, "files": files}


def commit_generation(out: Path, stage: Path, owned: tuple[str, ...]) -> dict[str, Path]:
    """Move the staged files into ``out`` (``summary.json``, which lists them, last) and remove the files of
    ``owned`` that the run did not write. Returns the paths in ``out`` by file name."""
    record = read_json_object(stage / RUN_MARKER).get("run") or {}
    names = [n for n in record.get("files", {}) if isinstance(n, str) and "/" not in n and n != RUN_MARKER]
    (out / RUN_MARKER).unlink(missing_ok=True)  # from here until the last move no summary claims the folder
    remove_stale(out, owned, [*names, RUN_MARKER])
    for name in [*names, RUN_MARKER]:
        if (stage / name).is_file():
            os.replace(stage / name, out / name)
    _fsync_folder(out)
    shutil.rmtree(stage, ignore_errors=True)
    return {name: out / name for name in [*names, RUN_MARKER]}


def recover(out: Path, owned: tuple[str, ...]) -> None:
    """Settle what a killed run left in ``out`` (under its lock): a generation whose ``summary.json`` was
    staged is moved into place; one killed earlier is removed, as are temporary files."""
    for stage in _stages(out):
        if "torchlinreg_version" in read_json_object(stage / RUN_MARKER):
            commit_generation(out, stage, owned)
        else:
            shutil.rmtree(stage, ignore_errors=True)


def _stages(out: Path) -> list[Path]:
    try:
        return sorted(p for p in out.iterdir() if _STAGE.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale(folder: Path, owned: tuple[str, ...], written) -> list[Path]:
    """Delete the files of ``owned`` that this run did not write, so the folder holds one run only.

    Temporary files that a killed run left beside them (``.<name>.*.tmp``, see
    :func:`atomic_write_bytes`) go too.
    """
    keep = {Path(p).name for p in written}
    removed = []
    for name in owned:
        path = folder / name
        if name not in keep and path.is_file():
            path.unlink()
            removed.append(path)
        for tmp in folder.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def check_writable_path(path: str | os.PathLike) -> None:
    """Refuse early a file path whose folder cannot exist or be written (before hours of training)."""
    parent = Path(os.path.abspath(path)).parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"cannot write {str(path)!r}: {str(probe)!r} is a file, not a folder; choose another path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {str(path)!r}: {_unwritable(probe)}, cannot write in {str(probe)!r}; "
                          "choose another path")


def _file_mode() -> int:
    """The mode a plain ``open(..., "w")`` would give a new file: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, setting: str = "out_dir") -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, then rename it into place.

    ``setting`` names the setting that chose ``path`` (the output folder, or a file's own setting such as
    ``output`` or ``save``): the message of a failed write tells to pass it with another place."""
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
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600 files; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {str(path)!r} ({reason(exc)}); free some space or pass "
                              f"{{{setting}}} with another {'folder' if setting == 'out_dir' else 'path'}") from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
