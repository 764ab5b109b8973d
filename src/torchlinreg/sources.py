"""One Source for the rest of the library: column names, the row count when known, and chunks of rows.

A Source has

- ``feature_names``, ``target_names``: tuples of str; ``weight_name``: str or None;
- ``n_rows``: int, or None when unknown before a pass (a CSV file streamed);
- ``chunks(rows, part=0, parts=1)``: ``(X, y, w)`` float64 NumPy arrays of shape (k, d),
  (k, m) and (k,) or None, in order; with ``parts`` > 1, chunks number ``part``,
  ``part + parts``, ... only (a torchrun rank's share: the parts partition the rows);
- ``in_memory``: whether the rows are held in memory (an :class:`ArraySource`, whose
  ``dataset`` holds them) or read from files in chunks (a :class:`FileSource`).

:func:`open_source` opens a data file or folder and chooses, under a memory budget, whether to
read it whole or stream it; callers that only pass over the rows never need to know which.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Literal

from .columns import check_magnitudes
from .data import ArraySource, Source, as_source  # noqa: F401 - the Source interface, where callers look
from .filesource import FileSource
from .filesource import open_files as open_streamed
from .errors import ConfigError
from .formats import block_limit, check_regular, read_dataset
from .memory import FIT_COPIES, SOLVE_COPIES, plan_reading, stream_read_bytes

__all__ = ["ArraySource", "FileSource", "Source", "as_source", "check_outside", "open_source", "open_streamed",
           "open_whole"]


def check_outside(data: str | os.PathLike | None, out_dir: str | os.PathLike | None, written: Collection[str]) -> None:
    """Refuse an ``out_dir`` that would write into the data or over it, before anything is read or written.

    Refused: ``out_dir`` is the data folder or inside it (the next run would read the outputs as data),
    or the data file or folder is one of the names ``written`` into ``out_dir`` (or inside one).
    Symbolic links are followed: the paths compared are the real ones.

    Raises
    ------
    ConfigError
        naming both paths and the fix (another ``{out_dir}``).
    """
    if data is None or out_dir is None:
        return
    real, out = Path(data).resolve(), Path(out_dir).resolve()
    if real.is_dir() and (out == real or real in out.parents):
        where = "is the data folder" if out == real else f"is inside the data folder {str(data)!r}"
        raise ConfigError(f"{{out_dir}} {str(out_dir)!r} {where}: fit would write its files among the data, "
                          "and the next run would read them as data; choose another {out_dir}")
    if out in real.parents and real.relative_to(out).parts[0] in written:
        raise ConfigError(f"DATA {str(data)!r} is a file that fit writes into {{out_dir}} {str(out_dir)!r}; "
                          "choose another {out_dir}")


def open_whole(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | str | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
) -> ArraySource:
    """A data file read whole (:func:`torchlinreg.formats.read_dataset`), every value checked, and none
    whose square overflows float64 (which least squares sums: :func:`torchlinreg.columns.check_magnitudes`)."""
    data = read_dataset(path, target=target, features=features, weights=weights)
    check_magnitudes(path, data)
    return ArraySource(data, weight_name=weights)


def open_source(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | str | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    max_memory: int | None = None,
    passes: Literal["one", "many"] = "one",
    stream: bool = False,
    read_bytes: int | None = None,
) -> ArraySource | FileSource:
    """A data file (CSV, TSV, Parquet, ``.npy``, ``.npz``) or a folder of CSV/TSV/Parquet files as a Source.

    Parameters
    ----------
    path : the file or folder.
    target, features, weights : the columns, as :func:`torchlinreg.formats.read_dataset` chooses them.
    max_memory : the memory budget in bytes (default: :func:`torchlinreg.memory.default_budget`).
    passes : ``"one"`` when the caller only passes over the rows (the exact solve): a file whose
        format can stream is then streamed, which is faster and smaller; ``"many"`` (the data loop
        of a fit): read whole when that fits in ``max_memory``, streamed otherwise.
    stream : stream a file that could be read whole.
    read_bytes : values per Parquet record batch when streamed (default: within ``max_memory``,
        :func:`torchlinreg.memory.stream_read_bytes`).

    Returns
    -------
    An :class:`ArraySource` when read whole, a :class:`FileSource` when streamed; ``in_memory`` says which.

    Raises
    ------
    DataError
        As the readers raise it: a missing file or column, a value that is not a number, ...
    ConfigError
        A ``.npy``/``.npz`` file too large for ``max_memory``, or columns too many for the solver's factor.
    """
    reading = plan(path, target=target, features=features, weights=weights, max_memory=max_memory, passes=passes,
                   stream=stream)
    return open_planned(path, reading.stream, target=target, features=features, weights=weights,
                        max_memory=max_memory, read_bytes=read_bytes)


def plan(path: str | os.PathLike, *, target=None, features=None, weights=None, max_memory: int | None = None,
         passes: Literal["one", "many"] = "one", stream: bool = False):
    """Whether :func:`open_source` reads ``path`` whole or streams it, and why (a :class:`torchlinreg.memory.Reading`)."""
    if passes not in ("one", "many"):
        raise ValueError(f"passes must be 'one' or 'many', got {passes!r}")
    one = passes == "one"
    check_regular(Path(path))  # before the estimate reads it: a FIFO would block it
    targets = [target] if isinstance(target, str) else target
    selected = len(features) + len(targets or [None]) + (weights is not None) if features else None
    return plan_reading(path, max_memory, copies=SOLVE_COPIES if one else FIT_COPIES, stream=stream,
                        command="solve" if one else "fit", one_pass=one, n_selected=selected)


def open_planned(path: str | os.PathLike, streamed: bool, *, target=None, features=None, weights=None,
                 max_memory: int | None = None, read_bytes: int | None = None) -> ArraySource | FileSource:
    """``path`` read whole (``streamed`` False) or streamed, as :func:`plan` (or several processes together) chose."""
    if not streamed:
        return open_whole(path, target=target, features=features, weights=weights)
    if read_bytes is None:
        read_bytes = stream_read_bytes(max_memory)
    return open_streamed(path, target=target, features=features, weights=weights, read_bytes=read_bytes,
                         max_block=block_limit(max_memory))
