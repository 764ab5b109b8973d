"""Small array helpers the modules without PyTorch share, written once: the sizes a class reads from the
arrays it holds (``n_samples``, ``n_features``, ``n_targets``), and a linear model's predictions from its
parameters as plain data; and :class:`Table`, what drawing code reads of a data set."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


def dimension(attribute: str, axis: int) -> property:
    """A read-only property: the size of axis ``axis`` of ``self.<attribute>`` (a tensor or an ndarray)."""
    def size(self) -> int:
        return getattr(self, attribute).shape[axis]

    return property(size, doc=f"``{attribute}.shape[{axis}]``")


def predict(X: np.ndarray, params: dict) -> np.ndarray:
    """Predictions ``X @ W.T + b`` in float64.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    params : ``{"linear.weight": (n_targets, n_features), "linear.bias": (n_targets,)}`` nested lists

    Returns
    -------
    ndarray of shape (n_samples, n_targets)
    """
    weight = np.asarray(params["linear.weight"], dtype=np.float64)  # (m, d)
    bias = np.asarray(params["linear.bias"], dtype=np.float64)  # (m,)
    with np.errstate(all="ignore"):  # a diverging run's parameters may overflow; matplotlib skips inf/NaN
        return np.asarray(X, dtype=np.float64) @ weight.T + bias


class Table(Protocol):
    """What the pictures read of a data set (a :class:`torchlinreg.data.Dataset` or a
    :class:`torchlinreg.plots.PlotData`): ``X`` (n_samples, n_features) and ``y`` (n_samples,
    n_targets), tensors or arrays, and the columns' names."""

    X: Any
    y: Any
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
