"""Inference for the exact least-squares solution: standard errors, tests, intervals, fit criteria.

Every figure is the one statsmodels reports for ``OLS`` / ``WLS`` on ``sm.add_constant(X)``
with ``.fit()`` or ``.fit(cov_type="HC0" ... "HC3")``, computed from ``solve.lstsq``'s
float64 solution and its R factor instead of a pseudo-inverse of the raw design.

Method
------
``lstsq`` factors the centred design (weighted means, rows scaled by ``√w``) as
``X̃ D⁻¹ = Q U S Vᵀ`` with powers of two ``D`` scaling the columns. Its rank-``r`` part gives
``L = D⁻¹ V_r S_r⁻¹`` (d x r): the rows ``q_i = [√wᵢ (xᵢ - x̄) L, √(wᵢ / Σw)]`` are those of
an orthonormal basis of the weighted design's column space, so the leverages are
``hᵢ = ‖q_i‖²``, and every covariance is ``K C Kᵀ`` with ``K`` the map from that basis to the
parameters (``w = L η``, ``b = c - x̄·w`` with ``c`` the weighted mean's coordinate):

* nonrobust: ``C = σ² I``, ``σ² = SSR / df_resid``;
* HC0-HC3: ``C = Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` with ``ẽ = √w e``, ``ω`` 1, 1, ``1/(1-h)``, ``1/(1-h)²``
  (HC1 then times ``n / df_resid``), summed in one pass over the rows, block by block.

``Xᵀ X`` is never formed or inverted; ``K`` comes from the SVD of a small, well-scaled
factor, so standard errors keep their digits on designs whose raw condition number is large.

Conventions (statsmodels' unless said)
--------------------------------------
* Terms: ``"intercept"`` first, then the features (as ``add_constant(prepend=True)``).
* Without intercept, R² is uncentred (``1 - SSR / Σ w y²``) and the F test is of all terms.
* With ``cov_type`` HC*, t and p use the normal distribution (statsmodels' default
  ``use_t=False`` for robust covariances; pass ``use_t=True`` for Student's t) and the F
  statistic is the Wald test of all slopes with the robust covariance; its p-value uses
  F(df_model, df_resid) in every case.
* WLS: SSR, R² (centred about the weighted mean) and the log-likelihood (which adds
  ``½ Σ log wᵢ``) are weighted; the condition number is that of ``√w [1, X]``.
* Not statsmodels: rows of weight 0 are left out (R's ``lm`` convention): they count
  neither in ``n_obs`` nor in ``df_resid``, and add nothing to the log-likelihood, where
  statsmodels counts them as observations and reports a log-likelihood of -inf.
* Rank deficiency: a term is not identified when the design's null space reaches it (the
  features ``lstsq`` names, and the intercept when a null vector moves it: a constant column,
  or columns summing to a constant). Its figures are NaN; those of identified terms are the
  unique ones of the estimable functions (they equal statsmodels' pseudo-inverse figures), and
  ``df_model``, R² and the tests use the rank.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
from scipy import special  # the distributions' functions, without scipy.stats' import (about 0.6 s)

from .config import COV_TYPES
from .errors import ConfigError
from .solve import _NULL_TOL, LstsqSolution, _as_array, lstsq
from . import statistics_tables as tables

INTERCEPT = "intercept"  # the constant term's name
_BLOCK_ROWS = 8192  # rows per block in the pass for robust covariances


@dataclass(frozen=True, eq=False)
class RegressionStatistics:
    """Inference for one target of a least-squares fit, as statsmodels' ``OLS``/``WLS`` results.

    Attributes
    ----------
    target_name : the target column
    term_names : ``"intercept"`` (when fitted) first, then the features
    params, std_err, t_values, p_values : ndarray of shape (n_terms,); NaN for terms not
        identified. ``t_values`` are z values and ``p_values`` normal when ``use_t`` is False.
    conf_int : ndarray of shape (n_terms, 2), the ``conf_level`` interval of each term
    conf_level : e.g. 0.95
    cov_type : "nonrobust", "HC0", "HC1", "HC2" or "HC3"
    cov_params : ndarray of shape (n_terms, n_terms), rows and columns of unidentified terms NaN
    n_obs : rows fitted (rows of weight 0 excluded)
    df_model, df_resid : rank minus the intercept; ``n_obs`` minus the rank
    r2, adj_r2 : R² (centred with an intercept, uncentred without) and adjusted R²
    f_statistic, f_pvalue : F test that every term but the intercept is zero (a Wald test
        with the robust covariance for HC*); NaN when ``df_model`` is 0
    log_likelihood, aic, bic : Gaussian log-likelihood at the optimum, ``-2 llf + 2 k``,
        ``-2 llf + log(n) k`` with ``k`` the rank
    condition_number : 2-norm condition number of the (weighted) design ``[1, X]``; inf when
        rank-deficient
    unidentified : terms the data cannot identify (rank deficiency)
    use_t : t and p from Student's t (else from the normal distribution)
    weighted : fitted with sample weights (WLS)
    """

    target_name: str
    term_names: tuple[str, ...]
    params: np.ndarray
    std_err: np.ndarray
    t_values: np.ndarray
    p_values: np.ndarray
    conf_int: np.ndarray
    conf_level: float
    cov_type: str
    cov_params: np.ndarray
    n_obs: int
    df_model: float
    df_resid: float
    r2: float
    adj_r2: float
    f_statistic: float
    f_pvalue: float
    log_likelihood: float
    aic: float
    bic: float
    condition_number: float
    unidentified: tuple[str, ...] = ()
    use_t: bool = True
    weighted: bool = False

    def __repr__(self) -> str:
        params = {name: round(float(v), 6) for name, v in zip(self.term_names[:6], self.params[:6])}
        return (f"RegressionStatistics(target={self.target_name!r}, params={params}"
                f"{' ...' if len(self.term_names) > 6 else ''}, cov_type={self.cov_type!r}, n_obs={self.n_obs}, "
                f"r2={self.r2:.6g}, unidentified={list(self.unidentified)})")

    @property
    def title(self) -> str:
        """``OLS regression of 'y'`` (``WLS`` with sample weights)."""
        return tables.title(self)

    def figures(self) -> list[tuple[str, str]]:
        """The fit's figures as the summary shows them: ``(label, value)`` texts, its left column then its right."""
        pairs = tables.fit_figures(self)
        return [left for left, _ in pairs] + [right for _, right in pairs]

    def notes(self) -> list[str]:
        """The lines below the summary's table: the terms not identified, the distribution of z."""
        return tables.notes(self)

    def summary(self) -> str:
        """A readable table in statsmodels' layout: the fit's figures, then one row per term."""
        return tables.summary_text(self)

    def _repr_html_(self) -> str:
        """The same table as HTML (a notebook shows it)."""
        return tables.summary_html(self)

    def __getitem__(self, index):
        """``stats[0]`` is ``stats``: before, :func:`regression_statistics` returned a list for a 1-D ``y`` too."""
        if index == 0:
            warnings.warn("regression_statistics returns one RegressionStatistics for a 1-D y (a list for a 2-D y): "
                          "drop the [0]", FutureWarning, stacklevel=2)
            return self
        raise IndexError("a RegressionStatistics is one target's; index the list regression_statistics returns "
                         "for a 2-D y")

    def to_dict(self) -> dict:
        """Plain data for JSON; NaN and infinities become ``None``."""
        terms = {}
        for i, name in enumerate(self.term_names):
            terms[name] = {"param": _plain(self.params[i]), "std_err": _plain(self.std_err[i]),
                           "t_value": _plain(self.t_values[i]), "p_value": _plain(self.p_values[i]),
                           "conf_int": [_plain(v) for v in self.conf_int[i]],
                           "identified": name not in self.unidentified}
        return {
            "target_name": self.target_name, "term_names": list(self.term_names), "terms": terms,
            "conf_level": float(self.conf_level), "cov_type": self.cov_type, "use_t": bool(self.use_t),
            "weighted": bool(self.weighted), "cov_params": [[_plain(v) for v in row] for row in self.cov_params],
            "n_obs": int(self.n_obs), "df_model": _plain(self.df_model), "df_resid": _plain(self.df_resid),
            **{key: _plain(getattr(self, key)) for key in ("r2", "adj_r2", "f_statistic", "f_pvalue", "log_likelihood",
                                                           "aic", "bic", "condition_number")},
            "unidentified": list(self.unidentified),
        }

    @classmethod
    def from_dict(cls, record: dict) -> RegressionStatistics:
        """The statistics :meth:`to_dict` wrote (``None`` read back as NaN; an infinite condition number too)."""
        names = tuple(record["term_names"])
        terms = record["terms"]

        def column(key: str) -> np.ndarray:
            return _floats([terms[name][key] for name in names])

        fields = {key: _float(record[key]) for key in ("df_model", "df_resid", "r2", "adj_r2", "f_statistic",
                                                        "f_pvalue", "log_likelihood", "aic", "bic")}
        condition = record["condition_number"]
        return cls(target_name=str(record["target_name"]), term_names=names, params=column("param"),
                   std_err=column("std_err"), t_values=column("t_value"), p_values=column("p_value"),
                   conf_int=_floats([terms[name]["conf_int"] for name in names]).reshape(len(names), 2),
                   conf_level=float(record["conf_level"]), cov_type=str(record["cov_type"]),
                   cov_params=_floats(record["cov_params"]).reshape(len(names), len(names)),
                   n_obs=int(record["n_obs"]), condition_number=math.inf if condition is None else float(condition),
                   unidentified=tuple(record["unidentified"]), use_t=bool(record["use_t"]),
                   weighted=bool(record["weighted"]), **fields)


def _plain(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _floats(values) -> np.ndarray:
    """A JSON list of numbers (None for NaN), any depth, as a float64 array."""
    return np.array(values, dtype=object).astype(np.float64) if values is not None else np.zeros(0)


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


def _robust_middle(chunks: Iterable, solution: LstsqSolution, basis: _Basis, cov_type: str) -> np.ndarray:
    """``C = Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` per target (m, k, k), in one pass over ``(X, Y, √w)`` chunks."""
    m, k = len(solution.target_names), basis.K.shape[1]
    C = np.zeros((m, k, k))
    for X, Y, sqrt_w in chunks:
        q = basis.rows(X, sqrt_w)  # (rows, k)
        e = sqrt_w[:, None] * (Y - X @ solution.coef.T - solution.intercept)  # (rows, m): weighted residuals
        h = np.sum(q ** 2, axis=1)  # leverages
        with np.errstate(divide="ignore", invalid="ignore"):
            omega = {"HC2": 1 / (1 - h), "HC3": 1 / (1 - h) ** 2}.get(cov_type, np.ones_like(h))
        C += np.einsum("it,ij,il->tjl", e ** 2 * omega[:, None], q, q)
    return C


def _blocks(X: np.ndarray, Y: np.ndarray, sqrt_w: np.ndarray):
    for start in range(0, len(X), _BLOCK_ROWS):
        block = slice(start, start + _BLOCK_ROWS)
        yield X[block], Y[block], sqrt_w[block]


# --- the statistics ------------------------------------------------------------------------------

def check_settings(conf_level, cov_type) -> tuple[float, str]:
    if isinstance(conf_level, bool) or not isinstance(conf_level, (int, float, np.floating)) \
            or not 0 < conf_level < 1:
        raise ConfigError(f"confidence level must be between 0 and 1, e.g. 0.95; got {conf_level!r}")
    names = {name.lower(): name for name in COV_TYPES}
    if not isinstance(cov_type, str) or cov_type.lower() not in names:
        raise ConfigError(f"unknown covariance type {cov_type!r}; choose one of {', '.join(COV_TYPES)}")
    return float(conf_level), names[cov_type.lower()]


def regression_statistics(X, y, *, sample_weight=None, conf_level: float = 0.95, cov_type: str = "nonrobust",
                          feature_names=None, target_names=None, fit_intercept: bool = True,
                          use_t: bool | None = None) -> RegressionStatistics | tables.StatisticsList:
    """Standard errors, t and p values, confidence intervals and fit criteria of the least-squares fit.

    Parameters
    ----------
    X : array, tensor or pandas DataFrame of shape (n_samples, n_features)
    y : array, tensor, pandas Series or DataFrame of shape (n_samples,) or (n_samples, n_targets); each target
        is its own regression
    sample_weight : array of shape (n_samples,), finite, >= 0, not all 0: weighted least squares (WLS)
    conf_level : level of the confidence intervals, in (0, 1)
    cov_type : "nonrobust" (homoscedastic errors) or a heteroscedasticity-robust "HC0", "HC1", "HC2", "HC3"
    feature_names, target_names : column names; default a DataFrame's columns and a Series' name, else as
        ``lstsq``: 'x' or 'x0', ...; 'y' or 'y0', ...
    fit_intercept : include the constant term ``"intercept"`` (first among the terms)
    use_t : t and p from Student's t with ``df_resid`` degrees of freedom, else from the normal
        distribution; default (None) as statsmodels: t for "nonrobust", normal for HC*

    Returns
    -------
    RegressionStatistics for a 1-D ``y``; for a 2-D ``y`` a StatisticsList (a list) of them, one per target.
    Their figures equal statsmodels' ``OLS``/``WLS(...).fit(cov_type=...)`` on ``sm.add_constant(X)`` (see the
    module's conventions); ``summary()`` prints them in its layout, and a notebook shows them as HTML tables.
    """
    conf_level, cov_type = check_settings(conf_level, cov_type)
    _check_names(feature_names, fit_intercept)
    solution = lstsq(X, y, feature_names=feature_names, target_names=target_names, fit_intercept=fit_intercept,
                     sample_weight=sample_weight)  # checks every input
    X = _as_array(X, "X")
    residuals = ResidualPass(solution, cov_type)
    if residuals.needed:
        residuals.update(X, y, sample_weight)
    results = solution_statistics(solution, residuals if residuals.needed else None, conf_level=conf_level,
                                  cov_type=cov_type, use_t=use_t)
    return results[0] if np.ndim(y) == 1 else results


def _check_names(feature_names, fit_intercept: bool) -> None:
    if fit_intercept and feature_names is not None and INTERCEPT in [str(name) for name in feature_names]:
        raise ValueError(f"a feature is named {INTERCEPT!r}, the name of the constant term; rename that column "
                         f"(or pass fit_intercept=False if it is a column of ones)")


class ResidualPass:
    """What the statistics need beyond the R factor, summed in one pass over the rows.

    ``Σ log w`` over the rows of positive weight (the weighted log-likelihood) and, for the
    HC covariances, ``C = Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` per target at the solution. The rows may come
    in chunks of any size (:meth:`update`), and passes over parts of the rows add up
    (:meth:`merge`), so a file can be streamed and split among processes. The classical
    covariance of unweighted data needs no pass (:attr:`needed` is False).
    """

    def __init__(self, solution: LstsqSolution, cov_type: str = "nonrobust"):
        if solution._factor is None:
            raise ValueError("this solution carries no factorization; make it with QRAccumulator.solve or lstsq")
        _, self.cov_type = check_settings(0.95, cov_type)
        self.solution = solution
        self.basis = _Basis(solution)
        m, k = len(solution.target_names), self.basis.K.shape[1]
        self.middle = None if self.cov_type == "nonrobust" else np.zeros((m, k, k))
        self.log_weights = 0.0  # Σ log w over rows of positive weight
        self.n_rows = 0

    @property
    def needed(self) -> bool:
        """Whether the statistics need this pass: an HC covariance, or weighted rows (for the log-likelihood)."""
        return self.middle is not None or self.solution.sum_weights is not None

    def __repr__(self) -> str:
        return f"ResidualPass(cov_type={self.cov_type!r}, n_rows={self.n_rows})"

    def update(self, X, y, sample_weight=None) -> ResidualPass:
        """Add rows: ``X`` (k, n_features), ``y`` (k, n_targets) or (k,), ``sample_weight`` (k,) or None."""
        X = _as_array(X, "X")
        Y = _as_array(y, "y").reshape(len(X), -1)  # (k, m)
        w = np.ones(len(X)) if sample_weight is None else _as_array(sample_weight, "sample_weight")
        self.log_weights += float(np.sum(np.log(w[w > 0])))
        if self.middle is not None:
            self.middle += _robust_middle(_blocks(X, Y, np.sqrt(w)), self.solution, self.basis, self.cov_type)
        self.n_rows += len(X)
        return self

    def merge(self, other: ResidualPass) -> ResidualPass:
        """Add the sums of a pass over other rows (of the same solution and covariance type)."""
        if not isinstance(other, ResidualPass) or other.cov_type != self.cov_type:
            raise ValueError(f"can only merge a ResidualPass of cov_type {self.cov_type!r}, got {other!r}")
        self.log_weights += other.log_weights
        if self.middle is not None:
            self.middle += other.middle
        self.n_rows += other.n_rows
        return self

    def to_vector(self) -> np.ndarray:
        """The sums as one float64 vector (to send to other processes); :meth:`add_vector` reads it."""
        middle = self.middle.ravel() if self.middle is not None else np.zeros(0)
        return np.concatenate([[self.log_weights, self.n_rows], middle])

    def add_vector(self, v: np.ndarray) -> ResidualPass:
        """Add the sums of another pass given as :meth:`to_vector` made them."""
        v = np.asarray(v, dtype=np.float64)
        self.log_weights += float(v[0])
        self.n_rows += int(v[1])
        if self.middle is not None:
            self.middle += v[2:].reshape(self.middle.shape)
        return self


def solution_statistics(solution: LstsqSolution, residuals: ResidualPass | None = None, *,
                        conf_level: float = 0.95, cov_type: str = "nonrobust",
                        use_t: bool | None = None) -> tables.StatisticsList:
    """:func:`regression_statistics` from a solution and, where needed, one pass over its rows.

    ``solution`` comes from ``lstsq``, ``QRAccumulator.solve`` or ``refine`` (a streamed or
    merged R factor works: everything but the pass comes from R). ``residuals`` is a
    :class:`ResidualPass` of ``cov_type`` over all the rows the solution was fitted on,
    needed for an HC covariance and for weighted rows (``ResidualPass.needed``); the
    classical covariance of unweighted rows needs none.
    """
    conf_level, cov_type = check_settings(conf_level, cov_type)
    _check_pass(solution, residuals, cov_type)
    fit_intercept = solution._factor.fit_intercept
    weighted = solution.sum_weights is not None
    use_t = cov_type == "nonrobust" if use_t is None else bool(use_t)
    basis = residuals.basis if residuals is not None else _Basis(solution)
    n_obs = int(solution._factor.n)  # a row of weight 0 is left out
    k_const, rank = int(fit_intercept), solution.rank
    df_resid, df_model = np.float64(n_obs - rank), np.float64(rank - k_const)  # NumPy: x / 0 is inf or nan
    log_weights = residuals.log_weights if weighted else 0.0
    middle = None if cov_type == "nonrobust" else residuals.middle
    with np.errstate(divide="ignore", invalid="ignore"):
        hc1 = n_obs / df_resid if cov_type == "HC1" else 1.0
        q = (special.stdtrit(df_resid, 0.5 + conf_level / 2) if use_t else special.ndtri(0.5 + conf_level / 2))
    d = len(solution.feature_names)
    order = [d, *range(d)] if fit_intercept else list(range(d))  # intercept first
    names = (*solution.feature_names, INTERCEPT)
    terms = tuple(names[i] for i in order)
    missing = ~basis.identified[order]  # their parameters, covariances and tests are NaN
    unidentified = tuple(name for name, gone in zip(terms, missing) if gone)
    results = tables.StatisticsList()
    for t, target in enumerate(solution.target_names):
        theta = np.append(solution.coef[t], solution.intercept[t])[:d + k_const]
        ssr = solution.loss_per_target[t] * basis.sum_weights
        tss = basis.tss[t]
        cov, f_statistic = _covariance(basis, None if middle is None else middle[t], solution.coef[t], ssr, tss,
                                       hc1, df_resid, df_model)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = cov[np.ix_(order, order)]
            params = theta[order]
            params[missing] = np.nan
            cov[missing, :] = np.nan
            cov[:, missing] = np.nan
            std_err = np.sqrt(np.diagonal(cov))
            t_values = params / std_err
            tail = -np.abs(t_values)  # both tails: twice the lower one
            p_values = 2 * (special.stdtr(df_resid, tail) if use_t else special.ndtr(tail))
            r2 = 1 - ssr / tss
            llf = -n_obs / 2 * (1 + math.log(2 * math.pi / n_obs)) - n_obs / 2 * np.log(ssr) + log_weights / 2
            results.append(RegressionStatistics(
                target_name=target, term_names=terms, params=params, std_err=std_err, t_values=t_values,
                p_values=p_values, conf_int=np.column_stack([params - q * std_err, params + q * std_err]),
                conf_level=conf_level, cov_type=cov_type, cov_params=cov, n_obs=n_obs, df_model=float(df_model),
                df_resid=float(df_resid), r2=float(r2), adj_r2=float(1 - (n_obs - k_const) / df_resid * (1 - r2)),
                f_statistic=float(f_statistic), f_pvalue=float(special.fdtrc(df_model, df_resid, f_statistic)),
                log_likelihood=float(llf), aic=float(-2 * llf + 2 * rank), bic=float(-2 * llf + math.log(n_obs) * rank),
                condition_number=float(solution.condition_number), unidentified=unidentified, use_t=use_t,
                weighted=weighted))
    return results


def _check_pass(solution: LstsqSolution, residuals: ResidualPass | None, cov_type: str) -> None:
    """Refuse a solution without its factorization, and a pass that is missing or made for another fit."""
    if solution._factor is None:
        raise ValueError("this solution carries no factorization; make it with QRAccumulator.solve or lstsq")
    _check_names(solution.feature_names, solution._factor.fit_intercept)
    weighted = solution.sum_weights is not None
    if residuals is None and (cov_type != "nonrobust" or weighted):
        raise ValueError(f"the {cov_type} covariance of {'weighted ' if weighted else ''}rows needs a pass over "
                         "them: give a ResidualPass(solution, cov_type) updated with every row")
    if residuals is not None and (residuals.cov_type != cov_type or residuals.solution is not solution):
        raise ValueError(f"the ResidualPass is for cov_type {residuals.cov_type!r} of another solution; "
                         f"make it with ResidualPass(solution, {cov_type!r})")


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
