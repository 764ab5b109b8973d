"""The covariance of the exact solution's parameters, from ``solve.lstsq``'s R factor and one pass over the rows.

:mod:`torchlinreg.statistics` turns these into statsmodels' tables; its docstring gives the method
(the orthonormal basis ``q_i`` of the weighted design's column space, the map ``K`` from it to the
parameters, and the covariances ``K C Kᵀ``). This module holds that machinery: the basis
(:class:`_Basis`), the pass over the rows that sums the HC middle matrices and ``Σ log w``
(:class:`ResidualPass`, mergeable across chunks and processes), one target's covariance and F
statistic (:func:`_covariance`, :func:`_wald`), and the check of the settings they take.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from .config import COV_TYPES
from .constant import ConstantSums
from . import dependence
from .residual_moments import ResidualMoments
from .errors import ConfigError
from .solve import _NULL_TOL, LstsqSolution, _as_array

_BLOCK_ROWS = 8192  # rows per block in the pass for robust covariances


def check_settings(conf_level, cov_type) -> tuple[float, str]:
    if isinstance(conf_level, bool) or not isinstance(conf_level, (int, float, np.floating)) \
            or not 0 < conf_level < 1:
        raise ConfigError(f"confidence level must be between 0 and 1, e.g. 0.95; got {conf_level!r}")
    names = {name.lower(): name for name in COV_TYPES}
    if not isinstance(cov_type, str) or cov_type.lower() not in names:
        raise ConfigError(f"unknown covariance type {cov_type!r}; choose one of {', '.join(COV_TYPES)}")
    return float(conf_level), names[cov_type.lower()]


# --- the basis of the design's column space, from lstsq's factorization --------------------------

class _Basis:
    """Orthonormal coordinates of the weighted design's column space, and the map ``K`` to the parameters.

    Internal parameter order: the d features, then the intercept. Basis order: the ``r``
    centred directions, then (with an intercept) the weighted mean's direction.
    """

    def __init__(self, solution: LstsqSolution):
        f = solution._factor
        self.fit_intercept, self.r, self.sum_weights = f.fit_intercept, f.r, f.sum_weights
        self.xbar = f.xbar
        self.L = f.Vt[:f.r].T / f.S[:f.r] / f.scale[:, None]  # (d, r): w = L η
        self.eta_map = f.S[:f.r, None] * f.Vt[:f.r] * f.scale  # (r, d): η = (S V_rᵀ D) w, the slopes' coordinates
        d = len(self.xbar)
        K = np.zeros((d + f.fit_intercept, f.r + f.fit_intercept))
        K[:d, :f.r] = self.L
        if f.fit_intercept:  # b = c - x̄·w, where c = Σ w ŷ / Σ w is the last coordinate over √Σw
            K[d, :f.r] = -self.xbar @ self.L
            K[d, f.r] = 1 / math.sqrt(f.sum_weights)
        self.K = K
        identified = np.array([name not in solution.unidentified for name in solution.feature_names]
                              + [_intercept_identified(f)] * f.fit_intercept)
        self.identified = identified
        # (m,): Σ w (y - ȳ)² from the centred R (Σ w y² without intercept): the total sum of squares
        self.tss = np.sum(f.Rxy ** 2, axis=0) + np.sum(f.Ryy ** 2, axis=0)

    def rows(self, X: np.ndarray, sqrt_w: np.ndarray) -> np.ndarray:
        """The rows ``q_i`` (k, r [+ 1]) of the orthonormal basis for rows ``X`` (k, d) with ``√w`` (k,)."""
        q = (sqrt_w[:, None] * (X - self.xbar)) @ self.L
        if self.fit_intercept:
            q = np.hstack([q, (sqrt_w / math.sqrt(self.sum_weights))[:, None]])
        return q


def _intercept_identified(f) -> bool:
    """Whether the intercept is estimable: no null vector of ``[X, 1]`` moves it (measured with unit-norm columns)."""
    if not f.fit_intercept or f.null_scaled.shape[1] == 0:
        return True
    N = f.null_scaled / f.scale[:, None]  # (d, d - r): null vectors of the centred design, data units
    # [X, 1] (N; -x̄·N) = 0; scale each row by its column's norm, then ask how far the null space reaches the 1.
    U = np.vstack([N * f.raw_norms[:, None], -(f.xbar @ N)[None, :] * math.sqrt(f.sum_weights)])
    P, sv, _ = np.linalg.svd(U, full_matrices=False)  # P: orthonormal basis of the reach (an all-zero column adds none)
    if sv.size == 0 or sv[0] == 0:
        return True
    return bool(np.linalg.norm(P[-1, sv > 1e-12 * sv[0]]) <= _NULL_TOL)


def _robust_middle(chunks: Iterable, solution: LstsqSolution, basis: _Basis, cov_type: str, dependent=None,
                   groups=None) -> np.ndarray:
    """``C = Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` per target (m, k, k), in one pass over ``(X, Y, √w)`` chunks; for HAC and
    cluster the scores go to ``dependent`` (a :class:`~torchlinreg.dependence.LagSums` or ``ClusterSums``)
    instead, with the chunks' ``groups``, and C is zero."""
    m, k = len(solution.target_names), basis.K.shape[1]
    C = np.zeros((m, k, k))
    start = 0
    for X, Y, sqrt_w in chunks:
        q = basis.rows(X, sqrt_w)  # (rows, k)
        e = sqrt_w[:, None] * (Y - X @ solution.coef.T - solution.intercept)  # (rows, m): weighted residuals
        if dependent is not None:
            s = dependence.scores(q, e)
            dependent.update(s) if groups is None else dependent.update(s, groups[start:start + len(X)])
            start += len(X)
            continue
        h = np.sum(q ** 2, axis=1)  # leverages
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = {"HC2": 1 / (1 - h), "HC3": 1 / (1 - h) ** 2}.get(cov_type, np.ones_like(h))
        C += np.einsum("it,ij,il->tjl", e ** 2 * omega[:, None], q, q)
    return C


def _blocks(X: np.ndarray, Y: np.ndarray, sqrt_w: np.ndarray):
    for start in range(0, len(X), _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        yield X[block], Y[block], sqrt_w[block]


class ResidualPass:
    """What the statistics need beyond the R factor, summed in one pass over the rows.

    ``Σ log w`` over the rows of positive weight (the weighted log-likelihood) and, for the
    HC covariances, ``C = Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` per target at the solution; without intercept,
    the sums that tell whether the columns hold a constant (:mod:`torchlinreg.constant`). The
    rows may come in chunks of any size (:meth:`update`), and passes over parts of the rows add
    up (:meth:`merge`), so a file can be streamed and split among processes. The classical
    covariance of unweighted data with an intercept needs no pass (:attr:`needed` is False).
    """

    def __init__(self, solution: LstsqSolution, cov_type: str = "nonrobust", *, maxlags: int | None = None,
                 clustered: bool | None = None, diagnostics: bool = False):
        if solution._factor is None:
            raise ValueError("this solution carries no factorization; make it with QRAccumulator.solve or lstsq")
        _, self.cov_type = check_settings(0.95, cov_type)
        self.maxlags = dependence.check_options(self.cov_type, maxlags, self.cov_type == "cluster"
                                                if clustered is None else clustered)
        self.solution = solution
        self.basis = _Basis(solution)
        m, k = len(solution.target_names), self.basis.K.shape[1]
        self.middle = None if self.cov_type == "nonrobust" else np.zeros((m, k, k))
        self.dependent = (dependence.LagSums(m, k, self.maxlags) if self.cov_type == "HAC"
                          else dependence.ClusterSums(m, k) if self.cov_type == "cluster" else None)
        if self.cov_type == "HAC":
            self.middle = self.dependent.middle  # the same array, summed in place
        self.log_weights = 0.0  # Σ log w over rows of positive weight
        self.n_rows = 0
        # without intercept: whether the columns hold a constant all the same (statsmodels' k_constant)
        self.constant = None if self.basis.fit_intercept else ConstantSums(len(solution.feature_names), m)
        # diagnostics: statsmodels' summary diagnostics of the residuals (the chunks given in file order; under
        # torchrun each process's, merged by ResidualMoments.gathered)
        self.moments = ResidualMoments(m) if diagnostics else None

    @property
    def needed(self) -> bool:
        """Whether the statistics need this pass: an HC covariance, or weighted rows (for the log-likelihood)."""
        return (self.middle is not None or self.solution.sum_weights is not None or self.constant is not None
                or self.moments is not None)

    def __repr__(self) -> str:
        return f"ResidualPass(cov_type={self.cov_type!r}, n_rows={self.n_rows})"

    def update(self, X, y, sample_weight=None, groups=None) -> ResidualPass:
        """Add rows: ``X`` (k, n_features), ``y`` (k, n_targets) or (k,), ``sample_weight`` (k,) or None;
        ``groups`` (k,): the rows' clusters, for the cluster covariance (and only for it). For HAC, the
        rows of successive calls follow each other in time."""
        if (groups is not None) != (self.cov_type == "cluster"):
            raise ValueError("groups (each row's cluster) go with cov_type 'cluster', and only with it")
        X = _as_array(X, "X")
        Y = _as_array(y, "y").reshape(len(X), -1)  # (k, m)
        w = np.ones(len(X)) if sample_weight is None else _as_array(sample_weight, "sample_weight")
        self.log_weights += float(np.sum(np.log(w[w > 0])))
        if self.constant is not None:
            self.constant.update(X, Y, w)
        if self.moments is not None:  # the weighted residuals √w e of the rows of positive weight
            kept = w > 0
            e = np.sqrt(w[kept])[:, None] * (Y[kept] - X[kept] @ self.solution.coef.T - self.solution.intercept)
            self.moments.update(e)
        if self.middle is not None:
            middle = _robust_middle(_blocks(X, Y, np.sqrt(w)), self.solution, self.basis, self.cov_type,
                                    self.dependent, groups)
            if self.dependent is None:
                self.middle += middle
        self.n_rows += len(X)
        return self

    def merge(self, other: ResidualPass) -> ResidualPass:
        """Add the sums of a pass over other rows (of the same solution and covariance type)."""
        if not isinstance(other, ResidualPass) or other.cov_type != self.cov_type:
            raise ValueError(f"can only merge a ResidualPass of cov_type {self.cov_type!r}, got {other!r}")
        self._refuse_split("merge")
        self.moments = None  # Durbin-Watson needs the rows in order: passes over parts give no diagnostics
        self.log_weights += other.log_weights
        if self.cov_type == "cluster":
            self.dependent.merge(other.dependent)
        elif self.middle is not None:
            self.middle += other.middle
        if self.constant is not None:
            self.constant.merge(other.constant)
        self.n_rows += other.n_rows
        return self

    def _refuse_split(self, what: str) -> None:
        if self.cov_type == "HAC":
            raise ConfigError(f"the HAC covariance cannot {what} passes over parts of the rows: its lags cross "
                              "from one part to the next; pass every row, in order, to one ResidualPass")

    def robust_middle(self) -> np.ndarray | None:
        """The middle matrices ``C`` (m, k, k) of the robust covariance (None for nonrobust)."""
        if self.cov_type == "cluster":
            self.dependent.check()
            return self.dependent.middle()
        return self.middle

    def factor(self, n_obs: int, df_resid) -> float:
        """statsmodels' small-sample factor of the covariance: ``n / df_resid`` for HC1, that of
        :func:`~torchlinreg.dependence.cluster_factor` for cluster, else 1."""
        if self.cov_type == "HC1":
            return n_obs / df_resid
        if self.cov_type == "cluster":
            return dependence.cluster_factor(self.dependent.n_groups, n_obs, self.basis.K.shape[0])
        return 1.0

    def to_vector(self) -> np.ndarray:
        """The sums as one float64 vector (to send to other processes); :meth:`add_vector` reads it.
        Not for HAC (see :meth:`merge`) nor cluster (whose sums are keyed by cluster: merge the passes)."""
        self._refuse_split("to_vector")
        if self.cov_type == "cluster":
            raise ValueError("a cluster pass's sums are keyed by cluster; merge ResidualPass objects instead")
        middle = self.middle.ravel() if self.middle is not None else np.zeros(0)
        constant = self.constant.to_vector() if self.constant is not None else np.zeros(0)
        return np.concatenate([[self.log_weights, self.n_rows], middle, constant])

    def add_vector(self, v: np.ndarray) -> ResidualPass:
        """Add the sums of another pass given as :meth:`to_vector` made them."""
        self._refuse_split("add_vector")
        v = np.asarray(v, dtype=np.float64)
        self.log_weights += float(v[0])
        self.n_rows += int(v[1])
        size = self.middle.size if self.middle is not None else 0
        if self.middle is not None:
            self.middle += v[2:2 + size].reshape(self.middle.shape)
        if self.constant is not None:
            self.constant.add_vector(v[2 + size:])
        return self


@np.errstate(divide="ignore", invalid="ignore")
def _covariance(basis: _Basis, middle: np.ndarray | None, coef: np.ndarray, ssr, tss, hc1, df_resid,
                df_model) -> tuple[np.ndarray, float]:
    """One target's covariance of the parameters (features, then the intercept) and its F statistic.

    ``middle`` is the target's HC middle matrix from the pass, None for the classical covariance;
    ``coef`` (n_features,) its slopes, ``ssr`` and ``tss`` its residual and total sums of squares.
    """
    scale = ssr / df_resid
    if middle is None:
        cov = scale * (basis.K @ basis.K.T)
        f_statistic = (tss - ssr) / df_model / scale
    else:
        cov = hc1 * (basis.K @ middle @ basis.K.T)
        eta = basis.eta_map @ coef  # the slopes in the basis; F tests η = 0
        f_statistic = _wald(eta, hc1 * middle[:basis.r, :basis.r])
    if df_resid == 0:  # the fit interpolates: the noise, and so every test, is not estimable
        cov, f_statistic = np.full_like(cov, np.nan), np.nan
    if df_model == 0:
        f_statistic = np.nan
    return cov, f_statistic


def _wald(eta: np.ndarray, cov_eta: np.ndarray) -> float:
    """``ηᵀ C⁻¹ η / r``: the Wald F statistic of ``η = 0``; NaN when ``C`` is singular."""
    try:
        return float(eta @ np.linalg.solve(cov_eta, eta) / len(eta))
    except np.linalg.LinAlgError:
        return float("nan")
