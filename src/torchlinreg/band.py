"""The confidence band of a least-squares line, and the normal quantiles of a Q-Q plot: the two statistics
the pictures draw (in NumPy and ``scipy.special``, without ``scipy.stats``' import)."""

from __future__ import annotations

import numpy as np

LEVEL = 0.95  # the confidence band's level


def line_band(x: np.ndarray, y: np.ndarray, at: np.ndarray, level: float = LEVEL):
    """The ``level`` confidence band of the mean response of the least-squares line of ``y`` on ``x``.

    ``ŷ(x₀) ± t_{n-2} · s · √(1/n + (x₀ - x̄)² / Sxx)`` with ``s² = SSR / (n - 2)``, the line fitted by
    ordinary least squares to the rows (centred sums: ``b = Sxy / Sxx``). Rows where ``x`` or ``y``
    is not finite are left out.

    Parameters
    ----------
    x, y : ndarray of shape (n_samples,)
    at : ndarray of shape (n_points,), where the band is evaluated
    level : the band's confidence level, in (0, 1)

    Returns
    -------
    (fit, low, high) : three ndarrays of shape (n_points,), the line and the band's edges; or None
        when the rows cannot give a band (fewer than 3, or every x the same).
    """
    from scipy.special import stdtrit

    keep = np.isfinite(x) & np.isfinite(y)
    x, y = np.asarray(x, dtype=np.float64)[keep], np.asarray(y, dtype=np.float64)[keep]
    n = len(x)
    if n < 3:
        return None
    x_mean, y_mean = x.mean(), y.mean()
    dx = x - x_mean
    sxx = float(dx @ dx)
    if not sxx > 0:
        return None
    slope = float(dx @ (y - y_mean)) / sxx
    residuals = (y - y_mean) - slope * dx
    s = np.sqrt(float(residuals @ residuals) / (n - 2))
    at = np.asarray(at, dtype=np.float64)
    fit = y_mean + slope * (at - x_mean)
    half = stdtrit(n - 2, 0.5 + level / 2) * s * np.sqrt(1 / n + (at - x_mean) ** 2 / sxx)
    return fit, fit - half, fit + half


def normal_quantiles(n: int) -> np.ndarray:
    """The standard normal quantiles a Q-Q plot sets ``n`` ordered values against, as R's ``qqnorm``:
    ``Φ⁻¹((i - a) / (n + 1 - 2a))`` for ``i = 1..n``, ``a = 3/8`` up to 10 values and ``1/2`` beyond."""
    from scipy.special import ndtri

    a = 3 / 8 if n <= 10 else 1 / 2
    return ndtri((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))
