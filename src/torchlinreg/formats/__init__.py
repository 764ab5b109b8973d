"""Data files: CSV, TSV, Parquet, ``.npy`` and ``.npz`` read whole, CSV/TSV/Parquet in record batches, tables written.

One section per format: :mod:`.text` (CSV, TSV), :mod:`.parquet`, :mod:`.arrays` (``.npy``,
``.npz``), :mod:`.writing`. Columns are chosen and values checked by :mod:`torchlinreg.columns`.
A file that cannot be used raises ``DataError`` with a one-line message naming the file, the
column and the row (1-based, the header not counted) and saying how to fix it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..columns import ROLE_FIX, Table, check_has_rows, check_unique, check_weights, choose, column_names, matrix
from ..columns import suffix_text, target_fix
from ..data import Dataset
from ..errors import DataError
from .arrays import open_npy, open_npz
from .blocks import MAX_BLOCK, block_limit
from .parquet import open_parquet, parquet_batches, parquet_sample, parquet_schema
from .text import SNIFF_BYTES, check_text, open_text, text_batches, text_head
from .writing import WRITABLE_SUFFIXES, write_table

__all__ = ["MAX_BLOCK", "SUPPORTED_SUFFIXES", "WRITABLE_SUFFIXES", "block_limit", "check_file", "check_regular",
           "check_text", "open_table", "parquet_batches", "parquet_sample", "parquet_schema", "read_columns",
           "read_dataset", "text_batches", "text_head", "write_table"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".parquet", ".pq", ".npy", ".npz")

_OPENERS: dict[str, Callable[[Path, str, bytes], Table]] = {
    ".csv": open_text, ".tsv": open_text, ".parquet": open_parquet, ".pq": open_parquet,
    ".npy": open_npy, ".npz": open_npz,
}


def check_file(path: Path) -> tuple[str, bytes]:
    """The file's lower-case extension and its first bytes, after checking it can be read."""
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a data file; pass the path of a file inside it")
    if not path.exists():
        raise DataError(f"{path}: no such file; check the path")
    check_regular(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(f"{path}: cannot read {suffix_text(path)} files; "
                        f"use one of {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened ({exc.strerror or exc}); check its permissions") from None
    if not head:
        raise DataError(f"{path}: the file is empty (0 bytes); write a header and data rows into it")
    return suffix, head


def check_regular(path: Path) -> None:
    """Refuse a path that exists but is neither a folder nor a regular file: a FIFO would block a read
    forever, a device never end."""
    if path.exists() and not path.is_dir() and not path.is_file():
        raise DataError(f"{path}: is not a regular file (a FIFO, a device or a socket); pass a data file")


def open_table(path: Path) -> Table:
    """A data file's columns (names, types, row count), ready to read whole."""
    suffix, head = check_file(path)
    return _OPENERS[suffix](path, suffix, head)


def read_dataset(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    dtype=None,
) -> Dataset:
    """Read a regression data set from a CSV, TSV, Parquet, ``.npy`` or ``.npz`` file.

    Parameters
    ----------
    path : the file; its extension (one of ``SUPPORTED_SUFFIXES``) says how to read it.
    target : the target column name(s); default: the last column (``.npz``: the ``y`` columns).
    features : the input column names, in the order wanted; default: every other numeric
        (integer, float, bool, decimal) column in file order (``.npz``: the ``X`` columns).
    weights : a column of non-negative sample weights (weighted least squares); it is
        neither a feature nor a target.
    dtype : floating-point torch dtype of the returned tensors; default float64, which keeps the file's values
        exactly.

    Returns
    -------
    Dataset with ``X`` of shape (n_samples, n_features) and ``y`` of shape (n_samples, n_targets).

    Column names: see :mod:`.arrays` for ``.npy`` and ``.npz`` files.

    Raises
    ------
    DataError
        The file is missing, empty, not of its extension's format, lacks a named column, or a
        selected column holds a non-number, a missing value, NaN or an infinity.
    """
    import torch  # the data set's rows are tensors

    dtype = torch.float64 if dtype is None else dtype
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype such as torch.float64, got {dtype!r}")
    path = Path(path)
    return table_dataset(path, open_table(path), target, features, weights, dtype)


def table_dataset(path, table: Table, target, features, weights, dtype) -> Dataset:
    """The chosen columns of ``table`` as a Dataset, every value checked; ``path`` names it in messages."""
    import torch

    chosen = choose(path, table, target, features, weights)
    columns = table.read(list(chosen.columns))
    X = matrix(path, columns, chosen.features, dtype, ROLE_FIX["feature"])  # (n, d)
    y = matrix(path, columns, chosen.targets, dtype, target_fix(chosen.note))  # (n, m)
    w = None
    if chosen.weight:
        w = matrix(path, columns, chosen.weight, torch.float64, ROLE_FIX["weight"])[:, 0]  # (n,)
        check_weights(path, weights, w.numpy())
    return Dataset(X, y, chosen.features, chosen.targets, sample_weight=w)


def read_columns(path: str | os.PathLike, names: Sequence[str]) -> np.ndarray:
    """The named columns of a data file as a float64 array of shape (n_samples, len(names)).

    For prediction: the file must hold those columns (other columns, such as the target,
    may be there or not). Raises :class:`DataError` like :func:`read_dataset`.
    """
    path = Path(path)
    table = open_table(path)
    chosen = column_names(path, list(names), "feature", table.schema.names)
    check_unique(path, table.schema.names, set(chosen))
    check_has_rows(path, table.num_rows)
    columns = table.read(list(chosen))
    import torch

    return matrix(path, columns, chosen, torch.float64, ROLE_FIX["feature"]).numpy()

