"""An orthonormal basis of the (weighted) design's column space, from its centred, column-scaled R factor.

With an intercept the design ``√w [1, X]`` spans the same space as ``√w (X - x̄)`` (weighted
means) and ``√w / √Σw``, which are orthogonal. Householder QR of the centred columns scaled to
unit norm gives ``R``; the SVD ``R = U S Vᵀ`` restricted to the rank ``r`` gives
``L = D⁻¹ V_r S_r⁻¹``, so the rows ``q_i = [√wᵢ (xᵢ - x̄) L, √wᵢ / √Σw]`` are those of an
orthonormal basis (``X R⁻¹`` taken block by block, never ``Xᵀ X`` inverted). Then

* the leverages are ``hᵢ = ‖q_i‖²``;
* the parameters' normalized covariance ``(Zᵀ W Z)⁺ = G Gᵀ`` with ``G`` the map from the basis to
  the parameters (``const = c / √Σw - x̄ · L η``, slopes ``L η``);
* a new row ``x`` has ``Var(x̂ β) = σ² ‖[(x - x̄) L, 1 / √Σw]‖²``, with no cancellation between
  large terms.

The centring and scaling make the factor's condition number that of the correlation matrix,
not the raw design's (Longley: 4.3e4 against 4.9e9).
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_ROWS = 8192  # rows per block of X R⁻¹


class Basis:
    """The basis for rows ``X`` (n, d) with ``√w`` (n,); ``rank`` is the design's, the intercept included."""

    def __init__(self, X: np.ndarray, sqrt_w: np.ndarray, *, fit_intercept: bool, rank: int):
        self.fit_intercept = fit_intercept
        w = sqrt_w ** 2
        self.sum_weights = float(np.sum(w))
        self.xbar = (w @ X) / self.sum_weights if fit_intercept else np.zeros(X.shape[1])
        centred = sqrt_w[:, None] * (X - self.xbar)
        norms = np.linalg.norm(centred, axis=0)
        norms[norms == 0] = 1.0
        R = np.linalg.qr(centred / norms, mode="r") if X.shape[1] else np.zeros((0, 0))
        _, S, Vt = np.linalg.svd(R)
        r = min(rank - int(fit_intercept), len(S))
        self.L = Vt[:r].T / S[:r] / norms[:, None]  # (d, r)
        d = X.shape[1]
        G = np.zeros((int(fit_intercept) + d, r + int(fit_intercept)))
        if fit_intercept:  # parameters in statsmodels' order: const first
            G[0, :r] = -self.xbar @ self.L
            G[0, r] = 1 / math.sqrt(self.sum_weights)
        G[int(fit_intercept):, :r] = self.L
        self.G = G

    def rows(self, X: np.ndarray, sqrt_w: np.ndarray | None = None) -> np.ndarray:
        """The coordinates ``q`` (k, r [+ 1]) of rows ``X`` (k, d), weighted by ``√w`` (default 1)."""
        sqrt_w = np.ones(len(X)) if sqrt_w is None else sqrt_w
        out = []
        for start in range(0, max(len(X), 1), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            q = (sqrt_w[block, None] * (X[block] - self.xbar)) @ self.L
            if self.fit_intercept:
                q = np.hstack([q, (sqrt_w[block] / math.sqrt(self.sum_weights))[:, None]])
            out.append(q)
        return np.vstack(out)

    def leverage(self, X: np.ndarray, sqrt_w: np.ndarray) -> np.ndarray:
        """``hᵢ``, the diagonal of the hat matrix of the weighted design."""
        return np.sum(self.rows(X, sqrt_w) ** 2, axis=1)

    @property
    def normalized_cov(self) -> np.ndarray:
        """``(Zᵀ W Z)⁻¹`` (pseudo-inverse when rank-deficient), const first."""
        return self.G @ self.G.T


def raw_singular_values(X: np.ndarray, sqrt_w: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """Singular values of the raw weighted design ``√w [1, X]``, largest first (QR, then the SVD of R)."""
    Z = np.column_stack([np.ones(len(X))] * fit_intercept + [X]) * sqrt_w[:, None]
    if Z.shape[0] > Z.shape[1]:
        Z = np.linalg.qr(Z, mode="r")
    return np.linalg.svd(Z, compute_uv=False)


def vif(X: np.ndarray) -> np.ndarray:
    """Variance inflation factors of the features: ``1 / (1 - R²ⱼ)`` of each column regressed on the others and
    a constant, from the R factor of the centred columns scaled to unit norm: the squared row norms of ``R⁻¹``.
    Unweighted and centred with or without an intercept in the model, as statsmodels' (0.14+)
    ``variance_inflation_factor(model.exog, j)``, which standardizes the columns by default."""
    centred = X - X.mean(axis=0)
    norms = np.linalg.norm(centred, axis=0)
    norms[norms == 0] = 1.0
    R = np.linalg.qr(centred / norms, mode="r")
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.any(np.abs(np.diag(R)) <= 1e-14 * np.abs(R).max()):
            return np.full(X.shape[1], np.inf)  # a column lies in the span of the others
        from scipy.linalg import solve_triangular
        Rinv = solve_triangular(R, np.eye(len(R)))
    return np.sum(Rinv ** 2, axis=1)
