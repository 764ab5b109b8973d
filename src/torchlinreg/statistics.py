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
* Without intercept, R² is uncentred (``1 - SSR / Σ w y²``) and the F test is of all terms,
  unless the columns hold a constant (a constant column, or columns adding up to one:
  statsmodels' ``k_constant``, found by :mod:`torchlinreg.constant` in the pass over the rows);
  then R² is centred, ``df_model`` is the rank minus 1, and the robust F test leaves the
  constant column out (NaN for an implicit constant, as statsmodels).
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
from typing import Callable, Iterable  # noqa: F401 (importable from here, as before)

import numpy as np
from scipy import special  # the distributions' functions, without scipy.stats' import (about 0.6 s)

from .config import COV_TYPES  # noqa: F401 (importable from here, as before)
from .covariances import (_BLOCK_ROWS, ResidualPass, _Basis, _blocks, _covariance,  # noqa: F401 (re-exported)
                          _intercept_identified, _robust_middle, _wald, check_settings)
from .errors import ConfigError  # noqa: F401 (importable from here, as before)
from .solve import _NULL_TOL, LstsqSolution, _as_array, lstsq  # noqa: F401 (_NULL_TOL: as before)
from . import statistics_tables as tables

INTERCEPT = "intercept"  # the constant term's name


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
    fit_intercept : whether the constant term was fitted
    k_constant : 1 when the model holds a constant (the intercept, or without it a constant column or
        columns adding up to one: statsmodels' ``k_constant``), else 0; it decides R², ``df_model`` and F
    diagnostics : statsmodels' summary diagnostics of the (weighted) residuals, by its labels (Omnibus,
        Prob(Omnibus), Skew, Kurtosis, Durbin-Watson, Jarque-Bera (JB), Prob(JB), Cond. No.: see
        :mod:`torchlinreg.residual_moments`); None when not computed (no pass over the rows)
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
    fit_intercept: bool = True
    k_constant: int = 1
    diagnostics: dict | None = None

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
            "fit_intercept": bool(self.fit_intercept), "k_constant": int(self.k_constant),
            "diagnostics": None if self.diagnostics is None else {k: _plain(v) for k, v in self.diagnostics.items()},
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
                   weighted=bool(record["weighted"]), fit_intercept=bool(record.get("fit_intercept", True)),
                   k_constant=int(record.get("k_constant", 1)), **fields,
                   diagnostics=None if record.get("diagnostics") is None else
                   {str(k): _float(v) for k, v in record["diagnostics"].items()})


def _plain(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _float(v) -> float:
    return math.nan if v is None else float(v)


def _floats(values) -> np.ndarray:
    """A JSON list of numbers (None for NaN), any depth, as a float64 array."""
    return np.array(values, dtype=object).astype(np.float64) if values is not None else np.zeros(0)


# --- the statistics ------------------------------------------------------------------------------

def regression_statistics(X, y, *, sample_weight=None, conf_level: float = 0.95, cov_type: str = "nonrobust",
                          feature_names=None, target_names=None, fit_intercept: bool = True,
                          use_t: bool | None = None, maxlags: int | None = None,
                          groups=None) -> RegressionStatistics | tables.StatisticsList:
    """Standard errors, t and p values, confidence intervals and fit criteria of the least-squares fit.

    Parameters
    ----------
    X : array, tensor or pandas DataFrame of shape (n_samples, n_features)
    y : array, tensor, pandas Series or DataFrame of shape (n_samples,) or (n_samples, n_targets); each target
        is its own regression
    sample_weight : array of shape (n_samples,), finite, >= 0, not all 0: weighted least squares (WLS)
    conf_level : level of the confidence intervals, in (0, 1)
    cov_type : "nonrobust" (homoscedastic errors), a heteroscedasticity-robust "HC0", "HC1", "HC2", "HC3",
        "HAC" (Newey-West: the rows are a time series in order; needs ``maxlags``) or "cluster" (needs ``groups``)
    maxlags : for "HAC": the most lags of the Bartlett-weighted sum (an integer >= 0)
    groups : for "cluster": array of shape (n_samples,), each row's cluster (numbers or text)
    feature_names, target_names : column names; default a DataFrame's columns and a Series' name, else as
        ``lstsq``: 'x' or 'x0', ...; 'y' or 'y0', ...
    fit_intercept : include the constant term ``"intercept"`` (first among the terms)
    use_t : t and p from Student's t with ``df_resid`` degrees of freedom, else from the normal
        distribution; default (None) as statsmodels: t for "nonrobust", normal for the robust ones (cluster:
        Student's t and the F test with G - 1 degrees of freedom, G clusters)

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
    residuals = ResidualPass(solution, cov_type, maxlags=maxlags, clustered=groups is not None)
    if residuals.needed:
        residuals.update(X, y, sample_weight, groups=None if groups is None else _groups(groups, len(X)))
    results = solution_statistics(solution, residuals if residuals.needed else None, conf_level=conf_level,
                                  cov_type=cov_type, use_t=use_t)
    return results[0] if np.ndim(y) == 1 else results


def _groups(groups, n_rows: int) -> np.ndarray:
    """The clusters as a 1-D array of one value per row (a pandas Series or a tensor too)."""
    if hasattr(groups, "detach"):
        groups = groups.detach().cpu().numpy()
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise ValueError(f"groups must hold one cluster per row: {n_rows} rows, got shape {groups.shape}")
    return groups


def _check_names(feature_names, fit_intercept: bool) -> None:
    if fit_intercept and feature_names is not None and INTERCEPT in [str(name) for name in feature_names]:
        raise ValueError(f"a feature is named {INTERCEPT!r}, the name of the constant term; rename that column "
                         f"(or pass fit_intercept=False if it is a column of ones)")



def solution_statistics(solution: LstsqSolution, residuals: ResidualPass | None = None, *,
                        conf_level: float = 0.95, cov_type: str = "nonrobust",
                        use_t: bool | None = None) -> tables.StatisticsList:
    """:func:`regression_statistics` from a solution and, where needed, one pass over its rows.

    ``solution`` comes from ``lstsq``, ``QRAccumulator.solve`` or ``refine`` (a streamed or
    merged R factor works: everything but the pass comes from R). ``residuals`` is a
    :class:`ResidualPass` of ``cov_type`` over all the rows the solution was fitted on,
    needed for a robust covariance (HC*, HAC, cluster) and weighted rows (``ResidualPass.needed``);
    the classical covariance of unweighted rows needs none.
    """
    conf_level, cov_type = check_settings(conf_level, cov_type)
    _check_pass(solution, residuals, cov_type)
    fit_intercept, weighted = solution._factor.fit_intercept, solution.sum_weights is not None
    use_t = cov_type == "nonrobust" if use_t is None else bool(use_t)
    basis = residuals.basis if residuals is not None else _Basis(solution)
    n_obs = int(solution._factor.n)  # a row of weight 0 is left out
    k_const, const_idx = (1, None) if fit_intercept else residuals.constant.k_constant(basis.L)
    rank = solution.rank
    df_resid, df_model = np.float64(n_obs - rank), np.float64(rank - k_const)  # NumPy: x / 0 is inf or nan
    log_weights = residuals.log_weights if weighted else 0.0
    middle = None if cov_type == "nonrobust" else residuals.robust_middle()
    df_tests = df_resid if cov_type != "cluster" else np.float64(residuals.dependent.n_groups - 1)  # statsmodels'
    with np.errstate(divide="ignore", invalid="ignore"):
        hc1 = 1.0 if middle is None else residuals.factor(n_obs, df_resid)
        q = (special.stdtrit(df_tests, 0.5 + conf_level / 2) if use_t else special.ndtri(0.5 + conf_level / 2))
    d, order, terms = _terms(solution.feature_names, fit_intercept)
    missing = ~basis.identified[order]  # their parameters, covariances and tests are NaN
    unidentified = tuple(name for name, gone in zip(terms, missing) if gone)
    results = tables.StatisticsList()
    for t, target in enumerate(solution.target_names):
        theta = np.append(solution.coef[t], solution.intercept[t])[:d + int(fit_intercept)]
        ssr = solution.loss_per_target[t] * basis.sum_weights
        tss = residuals.constant.m2[t] if k_const > int(fit_intercept) else basis.tss[t]  # centred without intercept
        cov, f_statistic = _covariance(basis, None if middle is None else middle[t], solution.coef[t], ssr, tss,
                                       hc1, df_resid, df_model)
        if middle is not None and k_const > int(fit_intercept) and df_model > 0 and df_resid > 0:
            f_statistic = _wald_but(theta, cov, basis.identified, const_idx)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = cov[np.ix_(order, order)]
            params = theta[order]
            params[missing] = np.nan
            cov[missing, :] = np.nan
            cov[:, missing] = np.nan
            std_err = np.sqrt(np.diagonal(cov))
            t_values = params / std_err
            tail = -np.abs(t_values)  # both tails: twice the lower one
            p_values = 2 * (special.stdtr(df_tests, tail) if use_t else special.ndtr(tail))
            r2 = 1 - ssr / tss
            llf = -n_obs / 2 * (1 + math.log(2 * math.pi / n_obs)) - n_obs / 2 * np.log(ssr) + log_weights / 2
            results.append(RegressionStatistics(
                target_name=target, term_names=terms, params=params, std_err=std_err, t_values=t_values,
                p_values=p_values, conf_int=np.column_stack([params - q * std_err, params + q * std_err]),
                conf_level=conf_level, cov_type=cov_type, cov_params=cov, n_obs=n_obs, df_model=float(df_model),
                df_resid=float(df_resid), r2=float(r2), adj_r2=float(1 - (n_obs - k_const) / df_resid * (1 - r2)),
                f_statistic=float(f_statistic), f_pvalue=float(special.fdtrc(df_model, df_tests, f_statistic)),
                log_likelihood=float(llf), aic=float(-2 * llf + 2 * rank), bic=float(-2 * llf + math.log(n_obs) * rank),
                condition_number=float(solution.condition_number), unidentified=unidentified, use_t=use_t,
                weighted=weighted, fit_intercept=fit_intercept, k_constant=k_const, diagnostics=_diagnostics(residuals, t)))
    return results


def _diagnostics(residuals: ResidualPass | None, target: int) -> dict | None:
    """statsmodels' summary diagnostics of a target, when the pass summed them (:mod:`residual_moments`)."""
    if residuals is None or residuals.moments is None:
        return None
    return residuals.moments.diagnostics(residuals.solution.condition_number)[target]


def _terms(feature_names, fit_intercept: bool) -> tuple[int, list[int], tuple[str, ...]]:
    """The number of features, the terms' order among the internal parameters (intercept first) and their names."""
    d = len(feature_names)
    order = [d, *range(d)] if fit_intercept else list(range(d))
    names = (*feature_names, INTERCEPT)
    return d, order, tuple(names[i] for i in order)


def _check_pass(solution: LstsqSolution, residuals: ResidualPass | None, cov_type: str) -> None:
    """Refuse a solution without its factorization, and a pass that is missing or made for another fit."""
    if solution._factor is None:
        raise ValueError("this solution carries no factorization; make it with QRAccumulator.solve or lstsq")
    _check_names(solution.feature_names, solution._factor.fit_intercept)
    weighted = solution.sum_weights is not None
    if residuals is None and (cov_type != "nonrobust" or weighted):
        raise ValueError(f"the {cov_type} covariance of {'weighted ' if weighted else ''}rows needs a pass over "
                         "them: give a ResidualPass(solution, cov_type) updated with every row")
    if residuals is None and not solution._factor.fit_intercept:
        raise ValueError("a fit without intercept needs a pass over its rows (to find a constant among the columns, "
                         "as statsmodels does): give a ResidualPass(solution, cov_type) updated with every row")
    if residuals is not None and (residuals.cov_type != cov_type or residuals.solution is not solution):
        raise ValueError(f"the ResidualPass is for cov_type {residuals.cov_type!r} of another solution; "
                         f"make it with ResidualPass(solution, {cov_type!r})")


def _wald_but(theta: np.ndarray, cov: np.ndarray, identified: np.ndarray, const_idx: int | None) -> float:
    """The robust F statistic without intercept but with a constant: the Wald test of every identified
    coefficient but the constant column ``const_idx``; NaN when the constant is implicit (statsmodels)."""
    if const_idx is None:
        return float("nan")
    keep = identified.copy()
    keep[const_idx] = False
    return _wald(theta[keep], cov[np.ix_(keep, keep)])
