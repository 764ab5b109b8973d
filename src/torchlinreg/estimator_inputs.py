"""The estimator's inputs: the data checks and conversions of :class:`torchlinreg.LinearRegression`.

``LinearRegression`` (in :mod:`torchlinreg.estimator`) fits and predicts; this module turns what a
scikit-learn user passes into what the library takes: the parameters (seeds, NumPy scalars from a
grid), the sample weights, the coefficients to start from, and the dtype the fitted attributes keep.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils.validation import _check_sample_weight

from . import defaults
from .devices import resolve_device
from .model import LinearModel
from .scaling import Standardizer


def _coef_2d(est) -> tuple[np.ndarray, np.ndarray]:
    """The fitted (coef, intercept) as (n_targets, n_features) and (n_targets,)."""
    return np.atleast_2d(est.coef_), np.atleast_1d(est.intercept_)


def _weights(sample_weight, X) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
    if not np.any(w):
        raise ValueError("Sample weights must contain at least one non-zero number")
    return w


@torch.no_grad()
def _load_params(module: LinearModel, W: np.ndarray, b: np.ndarray, scaler: Standardizer | None) -> None:
    """Set the module to coefficients given in the data's units (the inverse of ``unscale_params``)."""
    if scaler is not None:
        b = (b + W @ scaler.x_mean - scaler.y_mean) / scaler.y_scale
        W = W * scaler.x_scale / scaler.y_scale[:, None]
    module.linear.weight.copy_(torch.as_tensor(W))  # copy_ converts to the module's dtype and device
    if module.linear.bias is not None:  # a model without bias (fit_intercept=False) has intercept 0 throughout
        module.linear.bias.copy_(torch.as_tensor(b))


def _device(name, dtype: str) -> torch.device:
    return resolve_device(name, dtype)  # ConfigError, a ValueError, names the devices available


def _seed(random_state) -> int:
    if random_state is None:
        return defaults.MODEL_SEED
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool) and random_state >= 0:
        return int(random_state)
    raise ValueError(f"random_state must be None, a non-negative integer or a numpy.random.RandomState, "
                     f"got {random_state!r}")


def _number(value):
    """NumPy scalars as Python ones (``GridSearchCV`` grids are often NumPy arrays)."""
    return value.item() if isinstance(value, np.generic) else value
