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


# --- scipy.sparse, float32, minimum norm, non-negative weights ----------------------------------

SPARSE = ("csr", "csc", "coo")  # the scipy.sparse formats fit and predict accept (as scikit-learn's)


def _out_dtype(dtype, X) -> type:
    """The dtype of ``coef_``, ``intercept_`` and predictions: float32 for float32 ``X`` unless the
    ``dtype`` parameter was given (scikit-learn keeps float32); the solve itself is float64."""
    return np.float32 if dtype is None and X.dtype == np.float32 else np.float64


def _matmul(X, A: np.ndarray) -> np.ndarray:
    """``X @ A`` in float64, for a dense or scipy.sparse ``X``."""
    return np.asarray((X.astype(np.float64) if issparse(X) else np.asarray(X, dtype=np.float64)) @ A)


def minimum_norm(W: np.ndarray, b: np.ndarray, X, w, rank: int, fit_intercept: bool):
    """The coefficients of least norm that predict on ``X``'s rows what ``(W, b)`` predicts: ``W`` less
    its component in the null space of the (weighted, centred when ``fit_intercept``) design, whose
    dimension is ``n_features - rank``; the intercept takes up the constant that component added.
    On a rank-deficient design this is scikit-learn's answer (the minimum-norm optimum, the
    intercept outside the norm) from any optimum the training reached."""
    X64 = np.asarray(X, dtype=np.float64)
    mean = np.zeros(X64.shape[1])
    if fit_intercept:
        mean = X64.mean(axis=0) if w is None else (w @ X64) / w.sum()
    design = X64 - mean if w is None else (X64 - mean) * np.sqrt(w)[:, None]
    row_space = np.linalg.svd(design, full_matrices=False)[2][:rank]  # (rank, d), orthonormal rows
    W_min = (W @ row_space.T) @ row_space  # less the null-space component: O(n·d·min(n, d)), not O(d³)
    return W_min, b + (W - W_min) @ mean


def issparse(X) -> bool:
    from scipy.sparse import issparse as scipy_issparse

    return scipy_issparse(X)
