"""The data ``ols`` fits, held in memory: names, missing values, sample weights, checked once.

``prepare`` takes NumPy arrays, tensors or pandas objects (a DataFrame's columns and a Series'
name become the names), drops or refuses rows with NaN as ``missing`` says, and turns a
scalar weight into one weight per row (statsmodels' ``WLS`` treats a scalar as every row's).
Every problem is a ``DataError`` (or ``ConfigError`` for a bad setting) whose one-line
message names the row or column and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

MISSING = ("none", "drop", "raise")
CONST = "const"  # the constant term's name, statsmodels' (``add_constant``)


@dataclass(frozen=True)
class OLSData:
    """The rows fitted: ``X`` (n, d) float64, ``y`` (n,), ``w`` (n,) or None, and which input rows they are."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray | None
    feature_names: tuple[str, ...]
    target_name: str
    fit_intercept: bool
    kept: np.ndarray  # (n,) indices of the input rows fitted (all of them unless missing="drop")
    const_name: str = CONST  # "Intercept" for a formula, as statsmodels' formula API
    spec: dict | None = None  # a formula's spec (torchlinreg.formula): new rows' columns are rebuilt from it

    @property
    def names(self) -> list[str]:
        """The terms: ``"const"`` (a formula's ``"Intercept"``) first when fitted, then the features."""
        return [self.const_name] * self.fit_intercept + list(self.feature_names)

    @property
    def sqrt_w(self) -> np.ndarray:
        return np.ones(len(self.y)) if self.w is None else np.sqrt(self.w)


def _floats(a, what: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must hold numbers only ({exc}); convert or drop its text columns") from None


def _names_of(X, y, feature_names, target_name, d: int) -> tuple[tuple[str, ...], str]:
    if feature_names is None:
        columns = getattr(X, "columns", None)
        feature_names = [str(c) for c in columns] if columns is not None else [f"x{j + 1}" for j in range(d)]
    feature_names = tuple(str(name) for name in feature_names)
    if len(feature_names) != d:
        raise ConfigError(f"feature_names has {len(feature_names)} names for {d} columns of X; give one per column")
    if len(set(feature_names)) != d:
        raise ConfigError(f"feature_names has duplicate names {list(feature_names)}; give each column its own")
    if target_name is None:
        name = getattr(y, "name", None)
        columns = getattr(y, "columns", None)
        target_name = str(columns[0]) if columns is not None and len(columns) == 1 else \
            str(name) if name is not None else "y"
    return feature_names, str(target_name)


def _weights(sample_weight, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _floats(sample_weight, "sample_weight")
    if w.ndim == 0:  # statsmodels: a scalar weight is every row's
        return np.full(n, float(w))
    w = w.reshape(-1) if w.ndim == 2 and 1 in w.shape else w
    if w.shape != (n,):
        raise DataError(f"sample_weight has shape {w.shape} for {n} rows; give one weight per row, or one number")
    return w


def _check_weights(w: np.ndarray | None, rows: np.ndarray) -> None:
    if w is None:
        return
    for bad, what in ((~np.isfinite(w), "NaN or infinite values"), (w < 0, "negative values")):
        with np.errstate(invalid="ignore"):
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"sample_weight has {what} (the first is {float(w[i])!r} in row {int(rows[i]) + 1}); "
                                "give every row a finite weight >= 0 (a weight of 0 leaves its row out)")
    if not (w > 0).any():
        raise DataError("every sample_weight is 0, so no row is fitted; give some rows a positive weight")


def prepare(X, y, *, sample_weight=None, fit_intercept=True, feature_names=None, target_name=None,
            missing="none", const_name: str = CONST) -> OLSData:
    """The rows to fit, checked (see the module's docstring)."""
    if missing not in MISSING:
        raise ConfigError(f"missing must be one of {', '.join(map(repr, MISSING))}, got {missing!r}")
    if not isinstance(fit_intercept, (bool, np.bool_)):
        raise ConfigError(f"fit_intercept must be True or False, got {fit_intercept!r}")
    Xa, ya = _floats(X, "X"), _floats(y, "y")
    Xa = Xa.reshape(-1, 1) if Xa.ndim == 1 else Xa
    if ya.ndim == 2 and ya.shape[1] == 1:
        ya = ya[:, 0]
    if Xa.ndim != 2 or ya.ndim != 1:
        raise DataError(f"ols fits one target: X must be 2-D and y 1-D, got shapes {Xa.shape} and {ya.shape}; "
                        "fit each target of a 2-D y on its own")
    if len(Xa) != len(ya):
        raise DataError(f"X has {len(Xa)} rows but y has {len(ya)}; give both the same rows")
    names, target = _names_of(X, y, feature_names, target_name, Xa.shape[1])
    if fit_intercept and const_name in names:
        raise ConfigError(f"a feature is named {const_name!r}, the constant term's name; rename it, or pass "
                          "fit_intercept=False if it is a column of ones")
    w = _weights(sample_weight, len(ya))
    kept = np.arange(len(ya))
    if missing != "none":
        nan = np.isnan(Xa).any(axis=1) | np.isnan(ya) | (np.isnan(w) if w is not None else False)
        if nan.any() and missing == "raise":
            i = int(np.argmax(nan))
            where = [what for what, a in (("X", Xa[i]), ("y", ya[i:i + 1]), ("sample_weight", None if w is None else
                                                                              w[i:i + 1])) if a is not None and
                     np.isnan(a).any()]
            raise DataError(f"row {i + 1} has a missing value (NaN) in {' and '.join(where)} ({int(nan.sum())} rows "
                            "have one); drop those rows (missing='drop') or fill them in")
        kept = np.flatnonzero(~nan)
        Xa, ya, w = Xa[kept], ya[kept], None if w is None else w[kept]
    _check_weights(w, kept)
    if len(ya) == 0:
        raise DataError("no rows are left to fit (every row has a missing value); check the data")
    return OLSData(np.ascontiguousarray(Xa), ya, w, names, target, bool(fit_intercept), kept, const_name)
