"""NumPy ``.npy`` and ``.npz`` files, read whole through NumPy (never unpickling).

``.npy`` columns are ``c1, c2, ...``; ``.npz`` arrays ``X`` (1-D or 2-D) and ``y`` give ``x`` or
``x1, x2, ...`` and ``y`` or ``y1, y2, ...`` (as ``make-data`` names them). An ``.npz`` without
both ``X`` and ``y`` but with exactly one 2-D array is read like a ``.npy``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..columns import MAX_LISTED, Table, clean, show
from ..data import default_names
from ..errors import DataError

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def open_npy(path: Path, suffix: str, head: bytes) -> Table:
    if not head.startswith(_NPY_MAGIC):
        raise DataError(f"{path}: is not a NumPy .npy file (it lacks the .npy header); check the file type")
    try:
        with open(path, "rb") as f:  # our own handle: closed even when NumPy gives up half-way
            array = np.load(f, allow_pickle=False)
    except Exception as exc:  # a damaged header: ValueError, SyntaxError, TokenError, MemoryError, OverflowError...
        raise DataError(_load_message(path, ".npy", exc)) from None
    _check_numeric(path, "the array", array)
    if array.ndim != 2 or array.shape[1] == 0:
        raise DataError(f"{path}: holds an array of shape {array.shape}; save a 2-D array of shape "
                        "(n_samples, n_columns) with the target in the last column")
    return _columns_table(array)


def open_npz(path: Path, suffix: str, head: bytes) -> Table:
    if not head.startswith(_ZIP_MAGICS):
        raise DataError(f"{path}: is not a NumPy .npz file (not a zip archive); check the file type")
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:  # f: closed even if it is no zip
            names = list(npz.files)
            wanted = ["X", "y"] if {"X", "y"} <= set(names) else names
            arrays = {name: npz[name] for name in wanted}
    except Exception as exc:  # a damaged zip or member: BadZipFile, zlib.error, EOFError, ValueError, ...
        raise DataError(_load_message(path, ".npz", exc)) from None
    for name, array in arrays.items():
        if not isinstance(array, np.ndarray):  # a zip member that is not a .npy
            raise DataError(f"{path}: member {show(name)} is not a NumPy array; save the file with numpy.savez")
    if "X" in arrays and "y" in arrays:
        return _xy_table(path, arrays["X"], arrays["y"])
    two_d = [name for name, array in arrays.items() if array.ndim == 2]
    if len(two_d) != 1 or arrays[two_d[0]].shape[1] == 0:
        held = ", ".join(map(show, names[:MAX_LISTED])) or "no arrays"
        raise DataError(f"{path}: needs arrays 'X' and 'y', or a single 2-D array, but holds {held}; "
                        "save it with numpy.savez(path, X=..., y=...)")
    array = arrays[two_d[0]]
    _check_numeric(path, f"array {show(two_d[0])}", array)
    return _columns_table(array)


def _xy_table(path: Path, X: np.ndarray, y: np.ndarray) -> Table:
    """The table of an ``.npz`` file's arrays ``X`` and ``y``: targets ``y...``, features ``x...``."""
    for name, array in (("X", X), ("y", y)):
        _check_numeric(path, f"array {show(name)}", array)
        if array.ndim not in (1, 2):
            raise DataError(f"{path}: array {show(name)} has shape {array.shape}; save it as 1-D or 2-D")
    X, y = (a[:, None] if a.ndim == 1 else a for a in (X, y))  # (n, d), (n, m)
    if len(X) != len(y):
        raise DataError(f"{path}: array 'X' has {len(X)} rows but 'y' has {len(y)}; "
                        "save one row per sample in both")
    x_names, y_names = list(default_names("x", X.shape[1])), list(default_names("y", y.shape[1]))
    pairs = [*zip(x_names, X.T), *zip(y_names, y.T)]
    return _array_table(pairs, len(X), tuple(y_names), tuple(x_names))


def _load_message(path: Path, kind: str, exc: Exception) -> str:
    if "allow_pickle" in str(exc):
        return (f"{path}: holds Python objects, which are never unpickled; "
                f"save numeric arrays (a float or integer dtype) instead")
    return f"{path}: cannot be read as {kind} ({clean(exc)}); the file may be damaged"


def _check_numeric(path: Path, what: str, array: np.ndarray) -> None:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: {what} holds {array.dtype} values, not real numbers; "
                        "save an integer, float or bool array")


def _columns_table(array: np.ndarray) -> Table:
    """A 2-D array's columns as ``c1, c2, ...``, the last the default target."""
    return _array_table([(f"c{j + 1}", array[:, j]) for j in range(array.shape[1])], array.shape[0])


def _array_table(pairs, num_rows: int, default_target: tuple[str, ...] = (),
                 feature_pool: tuple[str, ...] | None = None) -> Table:
    """A table over NumPy columns: (name, 1-D array) pairs in order."""
    table = pa.table({name: pa.array(np.ascontiguousarray(values)) for name, values in pairs})
    names = table.column_names
    return Table(table.schema, num_rows, table.select, default_target or tuple(names[-1:]), feature_pool)
