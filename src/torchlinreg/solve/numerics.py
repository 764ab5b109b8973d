"""What the solver's modules share: input checks and exact scaling.

Input checks turn arrays, tensors or nested lists into float64 (``_as_array``, ``_shaped``),
refuse NaN, inf and values whose squares overflow (``_check_values``, ``MAX_MAGNITUDE``), and
check sample weights, chunks and column names; ``_power_of_two`` scales exactly, ``_norms``
takes column norms without underflow, ``_triangularize`` gives the unique R factor.
"""

from __future__ import annotations

import numpy as np

from ..defaults import MAX_MAGNITUDE
from ..errors import DataError

_EPS = np.finfo(np.float64).eps


# --- inputs -------------------------------------------------------------------------------

def _as_array(a, name: str, keep_float32: bool = False) -> np.ndarray:
    """A float64 NumPy copy or view of a NumPy array, torch tensor or nested list.

    With ``keep_float32``, float32 data stay float32 (a view): the caller converts block by block.
    """
    if hasattr(a, "detach"):  # a torch.Tensor, recognised without importing torch
        a = a.detach().cpu()
        a = (a if keep_float32 and str(a.dtype) == "torch.float32" else a.double()).numpy()
    try:
        if keep_float32 and isinstance(a, np.ndarray) and a.dtype == np.float32:
            return a
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc


def _shaped(X, y, n_features: int, n_targets: int, keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``X`` of shape (k, n_features) and ``y`` of shape (k, n_targets), float64 (or float32 kept), shapes checked."""
    X, y = _as_array(X, "X", keep_float32), _as_array(y, "y", keep_float32)
    if y.ndim == 1:
        y = y[:, None]  # one target
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}), got {X.shape}")
    if y.ndim != 2 or y.shape[1] != n_targets:
        raise ValueError(f"y must have shape (n_samples, {n_targets}), got {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    return X, y


def _check_values(X, y, rows_before: int = 0) -> None:
    """Raise ``DataError`` naming the first row with NaN/inf, or a column whose squares would overflow.

    ``X`` and ``y`` are 2-D arrays, or lists of 1-D columns (checked one by one, not stacked);
    ``rows_before``: the data rows before their first, so that a message names the data row
    (1-based, as every message does).
    """
    for name, a in (("X", X), ("y", y)):
        columns = a if isinstance(a, list) else None
        if columns is None:  # NaN propagates to max/min: no n×d mask unless one is there
            finite = bool(np.isfinite(a.max()) and np.isfinite(a.min())) if a.size else True
        else:
            finite = all(np.isfinite(c.max()) and np.isfinite(c.min()) for c in columns if c.size)
        if not finite:
            bad = ~np.isfinite(a).all(axis=1) if columns is None else \
                np.logical_or.reduce([~np.isfinite(c) for c in columns])
            count = int(bad.sum())
            raise DataError(f"{name} has NaN or infinite values in {count} row{'s' * (count > 1)} (the first is "
                            f"row {rows_before + int(np.argmax(bad)) + 1}); drop or impute them before "
                            "fitting")
        if columns is None:
            if not a.size or float(max(a.max(), -a.min())) <= MAX_MAGNITUDE:  # float: no float32 overflow
                continue
            peaks = np.abs(a).max(axis=0)
        else:
            peaks = np.array([float(max(c.max(), -c.min())) if c.size else 0.0 for c in columns])
        if peaks.max() > MAX_MAGNITUDE:
            raise DataError(f"{name} column {int(np.argmax(peaks)) + 1} holds values up to {peaks.max():.3g}, "
                            f"whose squares overflow float64 (the limit is {MAX_MAGNITUDE:.0e}); rescale that "
                            "column, e.g. divide it by a power of ten")


def _chunk(X, y, n_features: int, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked float64 ``X`` of shape (k, n_features) and ``y`` of shape (k, n_targets)."""
    X, y = _shaped(X, y, n_features, n_targets)
    _check_values(X, y)
    return X, y


def _weights(sample_weight, n_rows: int, rows_before: int = 0) -> np.ndarray:
    """Checked float64 sample weights of shape (n_rows,): finite and non-negative; a message names the
    data row (1-based) of a bad weight, after ``rows_before`` rows."""
    w = _as_array(sample_weight, "sample_weight")
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row, got {w.shape}")
    bad = ~np.isfinite(w)
    if bad.any():
        row = rows_before + int(np.argmax(bad)) + 1
        raise ValueError(f"sample_weight has NaN or infinite values (the first in row {row}); "
                         f"give every row a finite weight >= 0")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(f"sample_weight has negative values (the first is {float(w[i])!r} in row {rows_before + i + 1}); "
                         f"weights must be >= 0 (a weight of 0 leaves its row out)")
    return w


def _unpack(chunk) -> tuple:
    """``(X, y, w)`` from a chunk ``(X, y)`` (``w`` None) or ``(X, y, sample_weight)``."""
    try:
        parts = tuple(chunk)
    except TypeError:
        parts = ()
    if len(parts) not in (2, 3):
        raise ValueError("each chunk must be a pair (X, y) or a triple (X, y, sample_weight)")
    return parts if len(parts) == 3 else (*parts, None)


def _names(names, count: int, stem: str, what: str) -> tuple[str, ...]:
    """Column names as ``Dataset`` makes them: given ones checked, else 'x' or 'x0', 'x1', ..."""
    if not names:
        return (stem,) if count == 1 else tuple(f"{stem}{i}" for i in range(count))
    names = tuple(str(name) for name in names)
    if len(names) != count:
        raise ValueError(f"{what} has {len(names)} names for {count} columns")
    if len(set(names)) != count:
        raise ValueError(f"{what} has duplicate names: {list(names)}")
    return names


def _column_names(a) -> tuple[str, ...] | None:
    """The names a pandas DataFrame (its columns) or a named Series (its name) carries; None for anything else."""
    if hasattr(a, "columns"):
        return tuple(map(str, a.columns))
    name = getattr(a, "name", None)
    if name is not None and getattr(a, "ndim", 0) == 1 and not hasattr(a, "detach"):
        return (str(name),)
    return None


def _power_of_two(v: np.ndarray) -> np.ndarray:
    """The power of two just above each positive ``v``: scaling by it is exact."""
    return np.ldexp(1.0, np.frexp(v)[1])


def _norms(A: np.ndarray) -> np.ndarray:
    """2-norms of the columns of ``A``, each scaled by a power of two first, so that no square underflows."""
    big = np.abs(A).max(axis=0, initial=0.0)
    unit = _power_of_two(np.where(big > 0, big, 1.0))
    return np.linalg.norm(A / unit, axis=0) * unit


def _triangularize(M: np.ndarray) -> np.ndarray:
    """R factor of ``M`` with a non-negative diagonal, so that it is unique for full-rank ``M``."""
    R = np.linalg.qr(M, mode="r")
    return R * np.where(np.diagonal(R) < 0, -1.0, 1.0)[:, None]
