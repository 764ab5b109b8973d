"""statsmodels' residual diagnostics from a pass over the rows, chunk by chunk: normality and autocorrelation.

The block under statsmodels' summary: Omnibus (D'Agostino-Pearson K², with its p value), skewness,
kurtosis, Jarque-Bera (with its p value) and Durbin-Watson, of the (weighted) residuals
``ẽ = √w (y - ŷ)``. :class:`ResidualMoments` keeps per target the count, the mean and the central
moment sums ``M2, M3, M4``, each chunk's own (centred at the chunk's mean) combined with those
before by the exact pairwise update (Pébay 2008), so chunks of any size give the figures of the
whole series to rounding, without the cancellation of raw power sums; and for Durbin-Watson the sum
of squared successive differences, the last residual carried from one chunk to the next (the rows
in file order). The tests behind Omnibus are D'Agostino's skewness test and Anscombe-Glynn's
kurtosis test, the transforms of ``scipy.stats.skewtest``/``kurtosistest`` (statsmodels'
``omni_normtest`` calls ``scipy.stats.normaltest``), written out here from the moments.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

KEYS = ("Omnibus", "Prob(Omnibus)", "Skew", "Kurtosis", "Durbin-Watson", "Jarque-Bera (JB)", "Prob(JB)")


class ResidualMoments:
    """Moments and successive differences of ``m`` residual series given chunk by chunk, in order."""

    def __init__(self, m: int):
        self.n = 0
        self.mean = np.zeros(m)
        self.M2, self.M3, self.M4 = np.zeros(m), np.zeros(m), np.zeros(m)
        self.sum_squares = np.zeros(m)  # Σ ẽ², Durbin-Watson's denominator
        self.sum_diffs = np.zeros(m)  # Σ (ẽ_t - ẽ_{t-1})²
        self.last = None  # (m,): the last residual seen

    def __repr__(self) -> str:
        return f"ResidualMoments(n={self.n}, targets={len(self.mean)})"

    def update(self, e: np.ndarray) -> ResidualMoments:
        """Add the residuals ``e`` (k, m) of the rows that follow those seen so far."""
        e = np.asarray(e, dtype=np.float64).reshape(len(e), -1)
        k = len(e)
        if k == 0:
            return self
        mean_b = e.mean(axis=0)
        c = e - mean_b
        c2 = c * c
        M2b, M3b, M4b = c2.sum(axis=0), (c2 * c).sum(axis=0), (c2 * c2).sum(axis=0)
        na, nb, n = self.n, k, self.n + k
        d = mean_b - self.mean
        M2a, M3a = self.M2, self.M3
        self.M4 = (self.M4 + M4b + d ** 4 * na * nb * (na * na - na * nb + nb * nb) / n ** 3
                   + 6 * d * d * (na * na * M2b + nb * nb * M2a) / n ** 2 + 4 * d * (na * M3b - nb * M3a) / n)
        self.M3 = M3a + M3b + d ** 3 * na * nb * (na - nb) / n ** 2 + 3 * d * (na * M2b - nb * M2a) / n
        self.M2 = M2a + M2b + d * d * na * nb / n
        self.mean = self.mean + d * nb / n
        self.n = n
        self.sum_squares += np.einsum("ij,ij->j", e, e)
        diffs = np.diff(e, axis=0) if self.last is None else np.diff(np.vstack([self.last, e]), axis=0)
        self.sum_diffs += np.einsum("ij,ij->j", diffs, diffs)
        self.last = e[-1].copy()
        return self

    def diagnostics(self) -> list[dict[str, float]]:
        """Per target: Omnibus, Prob(Omnibus), Skew, Kurtosis, Durbin-Watson, Jarque-Bera (JB), Prob(JB)."""
        out = []
        for t in range(len(self.mean)):
            n = self.n
            with np.errstate(divide="ignore", invalid="ignore"):
                skew = float(math.sqrt(n) * self.M3[t] / self.M2[t] ** 1.5) if self.M2[t] > 0 else math.nan
                kurtosis = float(n * self.M4[t] / self.M2[t] ** 2) if self.M2[t] > 0 else math.nan
                dw = float(self.sum_diffs[t] / self.sum_squares[t]) if self.sum_squares[t] > 0 else math.nan
            jb = n / 6 * (skew ** 2 + (kurtosis - 3) ** 2 / 4)
            k2 = omnibus(n, skew, kurtosis)
            out.append({"Omnibus": k2, "Prob(Omnibus)": float(special.chdtrc(2, k2)), "Skew": skew,
                        "Kurtosis": kurtosis, "Durbin-Watson": dw, "Jarque-Bera (JB)": float(jb),
                        "Prob(JB)": float(special.chdtrc(2, jb))})
        return out


def skew_z(n: int, skew: float) -> float:
    """D'Agostino's normal approximation of the sample skewness ``√b1`` of ``n`` values (n >= 8)."""
    y = skew * math.sqrt((n + 1) * (n + 3) / (6.0 * (n - 2)))
    beta2 = 3.0 * (n * n + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    w2 = -1 + math.sqrt(2 * (beta2 - 1))
    delta = 1 / math.sqrt(0.5 * math.log(w2))
    alpha = math.sqrt(2.0 / (w2 - 1))
    y = 1.0 if y == 0 else y
    return delta * math.log(y / alpha + math.sqrt((y / alpha) ** 2 + 1))


def kurtosis_z(n: int, kurtosis: float) -> float:
    """Anscombe and Glynn's normal approximation of the sample kurtosis ``b2`` of ``n`` values (n >= 5)."""
    mean = 3.0 * (n - 1) / (n + 1)
    var = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    x = (kurtosis - mean) / math.sqrt(var)
    root_beta1 = (6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9))
                  * math.sqrt(6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3))))
    a = 6.0 + 8.0 / root_beta1 * (2.0 / root_beta1 + math.sqrt(1 + 4.0 / root_beta1 ** 2))
    term1 = 1 - 2 / (9.0 * a)
    denom = 1 + x * math.sqrt(2 / (a - 4.0))
    term2 = math.copysign(1.0, denom) * ((1 - 2.0 / a) / abs(denom)) ** (1 / 3.0) if denom != 0 else math.nan
    return (term1 - term2) / math.sqrt(2 / (9.0 * a))


def omnibus(n: int, skew: float, kurtosis: float) -> float:
    """D'Agostino-Pearson's K² = Z(skew)² + Z(kurtosis)²; NaN below 8 values (the skewness test's minimum)."""
    if n < 8 or not (math.isfinite(skew) and math.isfinite(kurtosis)):
        return math.nan
    return skew_z(n, skew) ** 2 + kurtosis_z(n, kurtosis) ** 2


def residual_diagnostics(e: np.ndarray) -> dict[str, float]:
    """The diagnostics of one residual series held in memory (``OLSResults.diagnostics``)."""
    return ResidualMoments(1).update(np.asarray(e, dtype=np.float64).reshape(-1, 1)).diagnostics()[0]


def weighted_residuals(solution, X, y, w) -> np.ndarray:
    """``√w (y - X Wᵀ - b)`` (k, m) of a chunk's rows at ``solution``'s coefficients."""
    X = np.asarray(X, dtype=np.float64)
    e = np.asarray(y, dtype=np.float64).reshape(len(X), -1) - (X @ solution.coef.T + solution.intercept)
    return e if w is None else e * np.sqrt(np.asarray(w, dtype=np.float64))[:, None]


def moments_pass(source, solution, chunk_rows: int) -> ResidualMoments:
    """One pass over every row of ``source``, in file order (under torchrun each process makes it whole)."""
    moments = ResidualMoments(len(solution.target_names))
    for X, y, w in source.chunks(chunk_rows):
        moments.update(weighted_residuals(solution, X, y, w))
    return moments


def with_diagnostics(stats, moments: ResidualMoments):
    """``stats`` (a StatisticsList) with each target's diagnostics."""
    from dataclasses import replace

    from .statistics_tables import StatisticsList

    return StatisticsList(replace(s, diagnostics=g) for s, g in zip(stats, moments.diagnostics()))
