"""How good a fit is: error metrics, and a seeded train/validation split."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import ConfigError


def regression_metrics(y_true, y_pred, *, target_names: Sequence[str] | None = None) -> dict:
    """Mean squared error, its root, mean absolute error and R², averaged over targets.

    Parameters
    ----------
    y_true, y_pred : Tensor or ndarray of shape (n_samples, n_targets) or (n_samples,)
    target_names : one name per target; if given, the result also has ``"per_target"``.

    Returns
    -------
    dict
        ``{"mse", "rmse", "mae", "r2"}``, each the uniform average of the per-target
        values, as scikit-learn's default ``multioutput="uniform_average"`` (so ``rmse``
        is the mean of the per-target RMSEs, which is not ``sqrt(mse)`` for several
        targets). With ``target_names``, ``"per_target": {name: {"mse", ...}}``.

    Notes
    -----
    R² is ``1 - SS_res / SS_tot`` per target. For a constant target (``SS_tot == 0``) it
    follows scikit-learn (``force_finite=True``): 1.0 if the prediction is perfect,
    otherwise 0.0, instead of NaN or -inf.
    """
    y_true, y_pred = _as_2d(y_true, "y_true"), _as_2d(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    if y_true.shape[0] == 0:
        raise ValueError("y_true and y_pred are empty; metrics need at least one row")
    if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
        raise ValueError("y_true or y_pred contains inf or NaN; a diverged model has no metrics")

    residual = y_true - y_pred  # (n, m)
    per = {
        "mse": np.mean(residual**2, axis=0),
        "mae": np.mean(np.abs(residual), axis=0),
    }
    per["rmse"] = np.sqrt(per["mse"])
    ss_res = np.sum(residual**2, axis=0)
    ss_tot = np.sum((y_true - y_true.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ss_res / ss_tot
    per["r2"] = np.where(ss_tot == 0, np.where(ss_res == 0, 1.0, 0.0), r2)

    result = {name: float(np.mean(per[name])) for name in ("mse", "rmse", "mae", "r2")}
    if target_names is not None:
        names = list(target_names)
        if len(names) != y_true.shape[1]:
            raise ValueError(f"got {len(names)} target names for {y_true.shape[1]} targets")
        result["per_target"] = {
            name: {metric: float(per[metric][j]) for metric in ("mse", "rmse", "mae", "r2")}
            for j, name in enumerate(names)
        }
    return result


class MetricSums:
    """:func:`regression_metrics` of rows seen chunk by chunk: sums that merge across chunks and processes.

    Per target: the rows, ``Σ r²``, ``Σ |r|``, and the mean and centred sum of squares of
    ``y`` (merged as Chan et al.'s parallel variance, so R² keeps its digits when the
    targets' mean is large next to their spread). :meth:`result` equals
    ``regression_metrics`` on all the rows to rounding.
    """

    def __init__(self, n_targets: int):
        self.n = 0
        self.sq, self.abs = np.zeros(n_targets), np.zeros(n_targets)  # Σ r², Σ |r| per target
        self.mean, self.m2 = np.zeros(n_targets), np.zeros(n_targets)  # of y: mean, Σ (y - mean)²

    def __repr__(self) -> str:
        return f"MetricSums(n_targets={len(self.sq)}, n={self.n})"

    def update(self, y_true, y_pred) -> MetricSums:
        """Add rows: ``y_true`` and ``y_pred`` of shape (k, n_targets) (or (k,) for one target)."""
        y_true, y_pred = _as_2d(y_true, "y_true"), _as_2d(y_pred, "y_pred")
        if y_true.shape != y_pred.shape or y_true.shape[1] != len(self.sq):
            raise ValueError(f"y_true and y_pred must both have shape (k, {len(self.sq)}), got {y_true.shape} "
                             f"and {y_pred.shape}")
        if not len(y_true):
            return self
        if not (np.all(np.isfinite(y_true)) and np.all(np.isfinite(y_pred))):
            raise ValueError("y_true or y_pred contains inf or NaN; a diverged model has no metrics")
        residual = y_true - y_pred
        mean = y_true.mean(axis=0)
        return self._add(len(y_true), np.sum(residual**2, axis=0), np.sum(np.abs(residual), axis=0), mean,
                         np.sum((y_true - mean) ** 2, axis=0))

    def _add(self, n, sq, abs_, mean, m2) -> MetricSums:
        total = self.n + n
        delta = mean - self.mean
        self.m2 = self.m2 + m2 + delta**2 * (self.n * n / total)
        self.mean = self.mean + delta * (n / total)
        self.sq, self.abs, self.n = self.sq + sq, self.abs + abs_, total
        return self

    def merge(self, other: MetricSums) -> MetricSums:
        """Add the sums of other rows."""
        if other.n:
            self._add(other.n, other.sq, other.abs, other.mean, other.m2)
        return self

    def to_vector(self) -> np.ndarray:
        """The sums as one float64 vector (to send to other processes); :meth:`from_vector` reads it."""
        return np.concatenate([[self.n], self.sq, self.abs, self.mean, self.m2])

    @classmethod
    def from_vector(cls, v) -> MetricSums:
        v = np.asarray(v, dtype=np.float64)
        m = (len(v) - 1) // 4
        sums = cls(m)
        sums.n = int(v[0])
        sums.sq, sums.abs, sums.mean, sums.m2 = (v[1 + i * m:1 + (i + 1) * m].copy() for i in range(4))
        return sums

    def result(self) -> dict:
        """``{"mse", "rmse", "mae", "r2"}`` averaged over targets, as :func:`regression_metrics`."""
        if self.n == 0:
            raise ValueError("no rows yet; metrics need at least one row")
        mse, mae = self.sq / self.n, self.abs / self.n
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = 1.0 - self.sq / self.m2
        r2 = np.where(self.m2 == 0, np.where(self.sq == 0, 1.0, 0.0), r2)
        per = {"mse": mse, "rmse": np.sqrt(mse), "mae": mae, "r2": r2}
        return {name: float(np.mean(per[name])) for name in ("mse", "rmse", "mae", "r2")}


def train_validation_split(n_samples: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a seeded random split: ``(train_indices, validation_indices)``.

    ``round(n_samples * fraction)`` rows (Python's ``round``) go to validation, the rest
    to training; both are in shuffled order, disjoint, and together cover ``range(n_samples)``.
    The same seed gives the same split; the global random state is not touched.
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ConfigError(f"the number of samples must be a positive integer, got {n_samples!r}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"the validation fraction must be between 0 and 1 (exclusive), got {fraction!r}; "
                          "pass e.g. {validation_fraction=0.2}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"the split seed must be a non-negative integer, got {seed!r}")
    n_val = round(n_samples * fraction)
    if n_val < 1 or n_val > n_samples - 1:
        side = "validation" if n_val < 1 else "training"
        fix = ("a split needs at least 2 rows; use more data or no validation split" if n_samples < 2 else
               f"use a fraction from 1/{n_samples} to {n_samples - 1}/{n_samples}, or more data")
        raise ConfigError(f"a validation fraction of {fraction:g} of {n_samples} rows leaves no {side} rows; {fix}")
    order = np.random.default_rng(seed).permutation(n_samples)
    return order[n_val:], order[:n_val]


def _as_2d(a, name: str) -> np.ndarray:
    """A tensor or array as float64 of shape (n_samples, n_targets); a 1-D input is one target."""
    if hasattr(a, "detach"):  # a torch tensor; metrics need not import torch
        a = a.detach().cpu().double().numpy()
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (n_samples, n_targets), got shape {a.shape}")
    return a
