"""Writing named columns to a CSV, TSV or Parquet file."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from ..columns import suffix_text
from ..errors import OutputError
from ..outputs import atomic_write_bytes
from .text import DELIMITERS

WRITABLE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq")


def write_table(
    path: str | os.PathLike,
    columns: Mapping[str, np.ndarray | Sequence[float]],
    *,
    force: bool = False,
) -> Path:
    """Write named columns to a CSV, TSV or Parquet file (chosen by extension), atomically.

    Parameters
    ----------
    path : the file to write; its extension is one of ``WRITABLE_SUFFIXES``.
    columns : column name -> 1-D values of equal length (array, sequence or CPU/GPU tensor).
        Floats are written as float64 in the shortest text that reads back to the same bits.
    force : replace ``path`` if it exists.

    Returns
    -------
    The path written.

    Raises
    ------
    OutputError
        Unsupported extension, ``path`` exists (and not ``force``) or is a folder, or it cannot be written.
    ValueError
        ``columns`` is empty, a column is not 1-D numbers, or the lengths differ.
    """
    import pyarrow.parquet as pq

    path = check_target(path, force=force)
    suffix = path.suffix.lower()
    table = _arrow_table(columns)
    sink = pa.BufferOutputStream()
    if suffix in DELIMITERS:
        pa_csv.write_csv(table, sink, pa_csv.WriteOptions(delimiter=DELIMITERS[suffix]))
    else:
        pq.write_table(table, sink)
    try:
        return atomic_write_bytes(path, sink.getvalue().to_pybytes(), setting="output")  # predict's and make-data's -o
    except OutputError:
        raise
    except OSError as exc:  # atomic_write_bytes creates its temporary file outside its own handler
        raise OutputError(f"{path}: cannot be written ({exc.strerror or exc}); "
                          "choose a folder you can write to") from None


def check_target(path: str | os.PathLike, *, force: bool = False) -> Path:
    """``path`` as a Path if a table may be written there: a known extension, not a folder, not an existing
    file unless ``force``, in a folder that exists. Call it before long work whose result goes there."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_SUFFIXES:
        raise OutputError(f"{path}: cannot write {suffix_text(path)} files; "
                          f"use one of {', '.join(WRITABLE_SUFFIXES)}")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; pass a file path")
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists; pass {{force=True}} to replace it, or choose another path")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {str(path.parent)!r} does not exist; create it or choose another path")
    return path


def _arrow_table(columns: Mapping[str, np.ndarray | Sequence[float]]) -> pa.Table:
    """Named 1-D columns of equal length as an Arrow table; floats as float64."""
    if not isinstance(columns, Mapping) or not columns:
        raise ValueError("columns must be a non-empty mapping of column name to values")
    arrays: dict[str, pa.Array] = {}
    for name, values in columns.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"column names must be non-empty strings, got {name!r}")
        array = _numbers(name, values)
        first = next(iter(arrays), None)
        if first is not None and len(array) != len(arrays[first]):
            raise ValueError(f"column {name!r} has {len(array)} values but {first!r} has {len(arrays[first])}")
        arrays[name] = pa.array(array)
    return pa.table(arrays)


def _numbers(name: str, values) -> np.ndarray:
    """One column's values as a 1-D NumPy array of numbers; floats as float64."""
    torch = sys.modules.get("torch")  # not imported: no value is a tensor
    if torch is not None and isinstance(values, torch.Tensor):  # on any device
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"column {name!r} must be 1-D, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"column {name!r} must hold numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False) if array.dtype.kind == "f" else array


class TableWriter:
    """Named columns written to a CSV, TSV or Parquet file a block at a time, for tables larger than memory.

    The blocks go to a temporary file beside ``path``; :meth:`close` flushes it to disk and renames it into
    place, so a reader never sees a half-written file and a failure (an exception inside the ``with``, a
    full disk) leaves whatever ``path`` held before untouched. ``setting`` names the setting that chose
    ``path``, for the messages.
    """

    def __init__(self, path: str | os.PathLike, *, force: bool = False, setting: str = "output"):
        import tempfile

        self.path = check_target(path, force=force)
        self.setting = setting
        self._delimiter = DELIMITERS.get(self.path.suffix.lower())
        try:
            fd, self._tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:
            raise OutputError(f"cannot write {str(self.path)!r} ({exc.strerror or exc}); choose a folder you can "
                              f"write to with {{{setting}}}") from None
        os.close(fd)
        self._writer = None
        self.n_rows = 0

    def __repr__(self) -> str:
        return f"TableWriter({str(self.path)!r}, n_rows={self.n_rows})"

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        """Append rows: the same column names, in the same order, at every call."""
        import pyarrow.parquet as pq

        table = _arrow_table(columns)
        try:
            if self._writer is None:
                self._writer = (pa_csv.CSVWriter(self._tmp, table.schema,
                                                 write_options=pa_csv.WriteOptions(delimiter=self._delimiter))
                                if self._delimiter else pq.ParquetWriter(self._tmp, table.schema))
            self._writer.write_table(table)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {str(self.path)!r} ({exc.strerror or exc}); free some space or pass "
                              f"{{{self.setting}}} with another path") from None
        self.n_rows += table.num_rows

    def close(self) -> Path:
        """Finish the file and move it into place."""
        from ..outputs import _file_mode

        try:
            if self._writer is not None:
                self._writer.close()
            with open(self._tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(self._tmp, _file_mode())
            os.replace(self._tmp, self.path)
        except OSError as exc:
            self.abort()
            raise OutputError(f"cannot write {str(self.path)!r} ({exc.strerror or exc}); free some space or pass "
                              f"{{{self.setting}}} with another path") from None
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; ``path`` keeps what it held."""
        try:
            if self._writer is not None:
                self._writer.close()
        except OSError:
            pass
        self._writer = None
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()
