"""Writing output files safely: a file is either the old one, the whole new one, or absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import OutputError


RUN_MARKER = "summary.json"  # a folder holding this file, written by torchlinreg, is a torchlinreg run
CHECKPOINT_DIR = "checkpoint"  # ... and so is one whose checkpoint/state.json is a torchlinreg checkpoint
CHECKPOINT_STATE = "state.json"
CHECKPOINT_FORMAT = "torchlinreg-checkpoint"


def prepare_output_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = (), force: bool = False) -> Path:
    """Create ``path`` (and its parents) if needed and check that files can be written in it.

    ``owned`` names the files a run writes there. A folder of an earlier torchlinreg run
    (it holds our ``summary.json``) is the tool's own: those files get replaced. Any other
    folder that already holds a file of those names is refused unless ``force``, so that
    nothing the user had is overwritten by surprise.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {str(out)!r} is a file; pass {{out_dir}} with a folder path")
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
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot write to output folder {str(out)!r} ({reason}); "
                          "pass {out_dir} with a folder you can write to") from None
    return out


def check_output_dir(path: str | os.PathLike, *, owned: tuple[str, ...] = (), force: bool = False) -> None:
    """The refusals of :func:`prepare_output_dir`, creating nothing: before any data is read."""
    out = Path(path)
    if out.exists():
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write to output folder {str(out)!r} (no permission); "
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
        raise OutputError(f"cannot make output folder {str(out)!r}: no permission to write in {str(probe)!r}; "
                          "pass {out_dir} with a folder you can write to")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds the summary of a torchlinreg run, or the checkpoint of an interrupted one."""
    summary = read_json_object(folder / RUN_MARKER)
    checkpoint = read_json_object(folder / CHECKPOINT_DIR / CHECKPOINT_STATE)
    return "torchlinreg_version" in summary or checkpoint.get("format") == CHECKPOINT_FORMAT


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; empty when the file is missing or holds anything else."""
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
        return {}
    return value if isinstance(value, dict) else {}


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
        raise OutputError(f"cannot write {str(path)!r}: no permission to write in {str(probe)!r}; "
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
            raise OutputError(f"cannot write {str(path)!r} ({exc.strerror or exc}); free some space or pass "
                              f"{{{setting}}} with another {'folder' if setting == 'out_dir' else 'path'}") from None
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
