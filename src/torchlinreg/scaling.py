"""Standardising features and targets, and mapping what was learnt back to raw units.

Gradient descent on raw features is slow when the columns have very different scales
(the tutorial's x runs to 50 while the bias sees a column of ones); on standardised
columns the loss's Hessian is close to a multiple of the identity. The statistics come
from the training data only and travel with the model, so that predictions and the
reported coefficients are in the data's own units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Standardizer:
    """Column means and scales of ``X`` and ``y``, fitted on training data.

    Attributes
    ----------
    x_mean, x_scale : ndarray of shape (n_features,)
    y_mean, y_scale : ndarray of shape (n_targets,)
        The scale is the population standard deviation (``ddof=0``, as
        ``sklearn.preprocessing.StandardScaler``), and 1 for a constant column, which is
        then only centred. With ``scale_y=False`` the targets are left as they are
        (mean 0, scale 1).
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray
    y_scale: np.ndarray

    @classmethod
    def fit(cls, X, y, *, sample_weight=None, scale_y: bool = True, center: bool = True) -> Standardizer:
        """Statistics of ``X`` of shape (n_samples, n_features) and ``y`` of shape (n_samples, n_targets).

        With ``sample_weight`` (n_samples,) they are weighted, ``Σ w x / Σ w`` and
        ``√(Σ w (x - x̄)² / Σ w)``, so that the standardised problem is well scaled for the loss
        actually minimised; a column is constant when it is on the rows of positive weight. The
        streamed fit computes the same statistics from R (``GramObjective.standardizer``).

        ``center=False`` (a model without intercept): means 0 and each column's root mean square
        ``√(Σ w x² / Σ w)`` as its scale (see :meth:`root_mean_squares`).
        """
        X, y = _as_float64(X), _as_float64(y)
        if X.ndim != 2 or y.ndim != 2 or X.shape[0] != y.shape[0] or X.shape[0] == 0:
            raise ValueError(f"X and y must be 2-D with the same, non-zero number of rows; "
                             f"got shapes {X.shape} and {y.shape}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
            raise ValueError("X or y contains inf or NaN; remove or impute those rows before standardising")
        w = None if sample_weight is None else _as_float64(sample_weight).reshape(-1)
        stats = cls.column_stats if center else cls.root_mean_squares
        x_mean, x_scale = stats(X, w)
        if scale_y:
            y_mean, y_scale = stats(y, w)
        else:
            y_mean, y_scale = np.zeros(y.shape[1]), np.ones(y.shape[1])
        return cls(x_mean, x_scale, y_mean, y_scale)

    @staticmethod
    def column_stats(a: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Column means and population standard deviations of ``a`` (n, k), weighted by ``w`` (n,)
        when given; scale 1 where a column is constant (on the rows of positive weight)."""
        counted = a if w is None else a[w > 0]
        # Shifted by the first counted row: a - ref is exact for values within a factor 2 of it and
        # rounded by at most eps times the spread otherwise, so that columns far from zero (1e18 + 37i)
        # keep the digits of their spread, which mean-then-subtract would round away.
        ref = counted[0] if len(counted) else np.zeros(a.shape[1])
        shifted = a - ref
        if w is None:
            offset, scale = shifted.mean(axis=0), shifted.std(axis=0)
        else:
            offset = np.average(shifted, axis=0, weights=w)
            scale = np.sqrt(np.average((shifted - offset) ** 2, axis=0, weights=w))
        mean = ref + offset
        constant = np.ptp(counted, axis=0) == 0  # exactly constant; its computed std may be rounding, not 0
        mean[constant] = ref[constant]  # exactly its value
        scale[constant | (scale == 0)] = 1.0
        return mean, scale

    @staticmethod
    def root_mean_squares(a: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Zeros and the columns' root mean squares ``√(Σ w a² / Σ w)`` (1 for a column of zeros): the scaling of a
        model without intercept.

        Such a model cannot absorb a shift, so its columns are only scaled: dividing column j of X by
        s_j and y by t multiplies its optimal weight by s_j / t and leaves the optimum the same problem
        (centring would add an intercept the model does not have). The root mean square, not the
        standard deviation, is the scale: it puts ones on the diagonal of ``XᵀWX / Σw``, the matrix
        gradient descent sees here, and it is 0 only for a column of zeros (a constant column, a
        column of ones among the features, has standard deviation 0 but carries the fit).
        """
        counted = a if w is None else a[w > 0]
        if not len(counted):
            return np.zeros(a.shape[1]), np.ones(a.shape[1])
        big = np.abs(counted).max(axis=0)  # divided by first: no overflow for values near float64's range
        safe = np.where(big > 0, big, 1.0)
        r = counted / safe
        ms = (r ** 2).mean(axis=0) if w is None else np.average(r ** 2, axis=0, weights=w[w > 0])
        scale = np.sqrt(ms) * safe
        scale[(big == 0) | ~np.isfinite(scale) | (scale == 0)] = 1.0
        return np.zeros(a.shape[1]), scale

    def transform_X(self, X):
        """``(X - x_mean) / x_scale``; a tensor comes back as a tensor of its dtype, an array as an array."""
        return _affine(X, self.x_mean, self.x_scale, inverse=False)

    def transform_y(self, y):
        """``(y - y_mean) / y_scale``, of the type given."""
        return _affine(y, self.y_mean, self.y_scale, inverse=False)

    def inverse_y(self, y_s):
        """``y_s * y_scale + y_mean``: standardised predictions back in the targets' units."""
        return _affine(y_s, self.y_mean, self.y_scale, inverse=True)

    def unscale_params(self, weight_s, bias_s) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients learnt on standardised data, in raw units.

        Parameters
        ----------
        weight_s : array of shape (n_targets, n_features); bias_s : shape (n_targets,)

        Returns
        -------
        weight, bias : ndarrays of the same shapes, float64, such that
            ``X @ weight.T + bias == inverse_y(transform_X(X) @ weight_s.T + bias_s)``.
        """
        W_s = _as_float64(weight_s).reshape(len(self.y_scale), len(self.x_scale))
        b_s = _as_float64(bias_s).reshape(len(self.y_scale))
        weight = self.y_scale[:, None] * W_s / self.x_scale  # (m, d)
        bias = self.y_scale * (b_s - W_s @ (self.x_mean / self.x_scale)) + self.y_mean  # (m,)
        return weight, bias

    def to_dict(self) -> dict:
        return {name: getattr(self, name).tolist() for name in ("x_mean", "x_scale", "y_mean", "y_scale")}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(*(np.asarray(d[name], dtype=np.float64) for name in ("x_mean", "x_scale", "y_mean", "y_scale")))


def _affine(a, mean: np.ndarray, scale: np.ndarray, *, inverse: bool):
    if isinstance(a, torch.Tensor):
        dtype = a.dtype if a.is_floating_point() else torch.get_default_dtype()
        mean_t = torch.as_tensor(mean, dtype=dtype, device=a.device)
        scale_t = torch.as_tensor(scale, dtype=dtype, device=a.device)
        return a * scale_t + mean_t if inverse else (a - mean_t) / scale_t
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    mean, scale = mean.astype(a.dtype), scale.astype(a.dtype)
    return a * scale + mean if inverse else (a - mean) / scale


def _as_float64(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)
