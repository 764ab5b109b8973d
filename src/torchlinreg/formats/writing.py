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

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITABLE_SUFFIXES:
        raise OutputError(f"{path}: cannot write {suffix_text(path)} files; "
                          f"use one of {', '.join(WRITABLE_SUFFIXES)}")
    table = _arrow_table(columns)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; pass a file path")
    if path.exists() and not force:
        raise OutputError(f"{path}: already exists; pass {{force=True}} to replace it, or choose another path")
    if not path.parent.is_dir():
        raise OutputError(f"{path}: folder {str(path.parent)!r} does not exist; create it or choose another path")
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
