"""``ols``: one target's least-squares fit with statsmodels' results object, names and meanings.

``ols(X, y)`` is ``sm.OLS(y, sm.add_constant(X, prepend=True)).fit()`` (``sm.WLS(..., weights=w)`` with
``sample_weight``) in torchlinreg: the optimum is ``solve.lstsq``'s exact one, the inference figures
``statistics.regression_statistics``' (from the R factor, never an inverse of ``Xᵀ X``), and what they do
not give (leverages, prediction variances, eigenvalues, VIF) comes from the centred, column-scaled R factor
of the data held in memory (``ols_basis``). Arrays are NumPy; ``names`` lists the terms, ``"const"`` first.

Conventions that are not statsmodels': rows of weight 0 are left out of ``nobs`` and ``df_resid`` (as in
``regression_statistics``); ``get_prediction`` takes the features alone (no constant column); on a
rank-deficient design the terms not identified have NaN figures where statsmodels gives a pseudo-inverse's.
"""

from __future__ import annotations

import math
import warnings
from functools import cached_property

import numpy as np
from scipy import special

from .errors import ConfigError
from .ols_basis import Basis, raw_singular_values, vif
from .ols_data import OLSData, prepare
from .solve import lstsq
from .statistics import RegressionStatistics, regression_statistics

HC_TYPES = ("HC0", "HC1", "HC2", "HC3")


def ols(X, y=None, *, data=None, sample_weight=None, fit_intercept=True, feature_names=None, target_name=None,
        missing="none") -> OLSResults:
    """Fit one target by (weighted) least squares and return statsmodels' results, figure by figure.

    ``ols("y ~ x1 + C(group) + x1:x2", data=frame)`` is statsmodels' ``smf.ols(formula, data=frame).fit()``:
    the formula (through formulaic, see :mod:`torchlinreg.formula`) makes the columns, named as
    statsmodels names them with ``"Intercept"`` first; ``- 1`` in the formula fits no intercept.
    ``get_prediction`` then takes new rows of ``frame``'s columns and rebuilds the formula's columns.

    Parameters
    ----------
    X : array, tensor or pandas DataFrame (n_samples, n_features); a 1-D array is one feature; or a formula
    y : array, tensor or pandas Series (n_samples,); None with a formula
    data : with a formula, the pandas DataFrame whose columns it names
    sample_weight : None, one number (every row's), or an array (n_samples,) of finite weights >= 0: WLS
    fit_intercept : add the constant term ``"const"``, first (``add_constant(prepend=True)``)
    feature_names, target_name : default a DataFrame's columns and a Series' name, else x1, x2, ... and y
    missing : "none" (NaN is refused as everywhere in torchlinreg), "drop" (rows with NaN in X, y or the
        weights are left out) or "raise" (a DataError names the first such row)

    Returns
    -------
    OLSResults
    """
    if isinstance(X, str):
        return _ols_formula(X, y, data, sample_weight=sample_weight, fit_intercept=fit_intercept, missing=missing)
    if data is not None:
        raise ConfigError("data= goes with a formula: ols('y ~ x1 + x2', data=frame); or pass X and y")
    data = prepare(X, y, sample_weight=sample_weight, fit_intercept=fit_intercept, feature_names=feature_names,
                   target_name=target_name, missing=missing)
    return OLSResults(data)


def _ols_formula(formula: str, y, frame, *, sample_weight, fit_intercept, missing) -> OLSResults:
    from dataclasses import replace

    from .formula import INTERCEPT, columns_named, design

    if y is not None or frame is None:
        raise ConfigError("a formula takes its columns from data=: ols('y ~ x1 + x2', data=frame), without y")
    if not fit_intercept:
        raise ConfigError("with a formula, leave out the intercept in the formula itself: 'y ~ x1 + x2 - 1'")
    if missing == "drop":  # statsmodels' formula API drops the rows with a missing value in the columns used
        frame = frame.dropna(subset=columns_named(formula, frame.columns))
    made = design(frame, formula)
    if made.Y.shape[1] != 1:
        raise ConfigError(f"ols fits one target; the formula {formula!r} has {made.Y.shape[1]} on its left side")
    data = prepare(made.X, made.Y[:, 0], sample_weight=sample_weight, fit_intercept=made.fit_intercept,
                   feature_names=made.feature_names, target_name=made.target_names[0], missing=missing,
                   const_name=INTERCEPT)
    return OLSResults(replace(data, spec=made.spec))


def _fit(data: OLSData, cov_type: str, use_t: bool) -> RegressionStatistics:
    neutral = [f"f{j}" for j in range(data.X.shape[1])]  # a feature may be called "intercept"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the rank deficiency shows as NaN figures
        return regression_statistics(data.X, data.y, sample_weight=data.w, fit_intercept=data.fit_intercept,
                                     feature_names=neutral, target_names=[data.target_name], cov_type=cov_type,
                                     use_t=use_t)


class OLSResults:
    """The results of :func:`ols`, as statsmodels' ``RegressionResults`` names them.

    Arrays follow :attr:`names` (``"const"`` first when fitted). The figures of the fit
    (``rsquared``, ``llf``, ``ssr`` ...) do not depend on the covariance; ``bse``, ``tvalues``,
    ``pvalues``, ``conf_int``, ``cov_params``, ``fvalue`` and ``f_pvalue`` are those of
    :attr:`cov_type` (see :meth:`get_robustcov_results`).
    """

    def __init__(self, data: OLSData, cov_type: str = "nonrobust", base: OLSResults | None = None,
                 use_t: bool = True):
        self.data = data
        self.cov_type = cov_type
        self.use_t = bool(use_t)
        self._base = base if base is not None else self
        self._stats = _fit(data, cov_type, self.use_t) if base is None or cov_type != "nonrobust" else base._stats
        if base is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._solution = lstsq(data.X, data.y, sample_weight=data.w, fit_intercept=data.fit_intercept)
        else:
            self._solution = base._solution

    def __repr__(self) -> str:
        return (f"OLSResults({self.model_name} of {self.data.target_name!r} on {len(self.names)} terms, "
                f"nobs={self.nobs:g}, cov_type={self.cov_type!r}, rsquared={self.rsquared:.6g})")

    # --- the model ---------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return self.data.names

    @property
    def model_name(self) -> str:
        return "OLS" if self.data.w is None else "WLS"

    @property
    def k_constant(self) -> int:
        """1 when the model holds a constant: the intercept, or without it a constant column or columns adding
        up to one (statsmodels' rule, found by the statistics); it decides R², the sums of squares and F."""
        return int(self._stats.k_constant)

    @property
    def nobs(self) -> float:
        return float(self._stats.n_obs)

    @property
    def df_model(self) -> float:
        return self._stats.df_model

    @property
    def df_resid(self) -> float:
        return self._stats.df_resid

    # --- parameters and their covariance ----------------------------------------------------------
    @property
    def params(self) -> np.ndarray:
        return self._stats.params.copy()

    @property
    def bse(self) -> np.ndarray:
        return self._stats.std_err.copy()

    @property
    def tvalues(self) -> np.ndarray:
        return self._stats.t_values.copy()

    @property
    def pvalues(self) -> np.ndarray:
        return self._stats.p_values.copy()

    def cov_params(self) -> np.ndarray:
        return self._stats.cov_params.copy()

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """(k, 2): the ``1 - alpha`` interval of each parameter (Student's t, normal for a robust covariance)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, e.g. 0.05; got {alpha!r}")
        q = special.stdtrit(self.df_resid, 1 - alpha / 2) if self.use_t else special.ndtri(1 - alpha / 2)
        return np.column_stack([self.params - q * self.bse, self.params + q * self.bse])

    @cached_property
    def _basis(self) -> Basis:
        d = self.data
        return Basis(d.X, d.sqrt_w, fit_intercept=d.fit_intercept, rank=self._solution.rank)

    @property
    def normalized_cov_params(self) -> np.ndarray:
        """``(Zᵀ W Z)⁻¹``: the nonrobust covariance over ``scale``."""
        return self._base._basis.normalized_cov

    # --- sums of squares ---------------------------------------------------------------------------
    @cached_property
    def fittedvalues(self) -> np.ndarray:
        return self._solution.predict(self.data.X)[:, 0]

    @cached_property
    def resid(self) -> np.ndarray:
        return self.data.y - self.fittedvalues

    @property
    def wresid(self) -> np.ndarray:
        return self.data.sqrt_w * self.resid

    @cached_property
    def _ybar(self) -> float:
        w = np.ones_like(self.data.y) if self.data.w is None else self.data.w
        return float(w @ self.data.y / np.sum(w))

    def _wsum(self, v: np.ndarray) -> float:
        """``Σ w v²``."""
        return float(np.sum((self.data.sqrt_w * v) ** 2))

    @property
    def ssr(self) -> float:
        return self._wsum(self.resid)

    @property
    def centered_tss(self) -> float:
        return self._wsum(self.data.y - self._ybar)

    @property
    def uncentered_tss(self) -> float:
        return self._wsum(self.data.y)

    @property
    def ess(self) -> float:
        """Explained sum of squares, ``Σ w (ŷ - ȳ)²`` (``Σ w ŷ²`` without constant): TSS - SSR, without the
        difference's cancellation."""
        return self._wsum(self.fittedvalues - self._ybar) if self.k_constant else self._wsum(self.fittedvalues)

    @property
    def scale(self) -> float:
        return self.ssr / self.df_resid if self.df_resid > 0 else math.nan

    @property
    def mse_resid(self) -> float:
        return self.scale

    @property
    def mse_model(self) -> float:
        return self.ess / self.df_model if self.df_model > 0 else math.nan

    @property
    def mse_total(self) -> float:
        tss = self.centered_tss if self.k_constant else self.uncentered_tss
        return tss / (self.df_resid + self.df_model)

    # --- fit criteria ------------------------------------------------------------------------------
    @property
    def rsquared(self) -> float:
        return self._stats.r2

    @property
    def rsquared_adj(self) -> float:
        return self._stats.adj_r2

    @property
    def fvalue(self) -> float:
        return self._stats.f_statistic

    @property
    def f_pvalue(self) -> float:
        return self._stats.f_pvalue

    @property
    def llf(self) -> float:
        return self._stats.log_likelihood

    @property
    def aic(self) -> float:
        return self._stats.aic

    @property
    def bic(self) -> float:
        return self._stats.bic

    @property
    def _k_params(self) -> float:
        return self.df_model + self.k_constant

    @property
    def aicc(self) -> float:
        """``AIC + 2 k (k + 1) / (n - k - 1)``, ``k`` the parameters (statsmodels' ``info_criteria("aicc")``)."""
        k, n = self._k_params, self.nobs
        return -2 * self.llf + 2 * k * n / (n - k - 1) if n - k - 1 > 0 else math.inf

    @property
    def hqic(self) -> float:
        """Hannan-Quinn: ``-2 llf + 2 log(log n) k``."""
        return -2 * self.llf + 2 * math.log(math.log(self.nobs)) * self._k_params

    @property
    def condition_number(self) -> float:
        return self._stats.condition_number

    @cached_property
    def eigenvals(self) -> np.ndarray:
        """Eigenvalues of ``Zᵀ W Z`` (the raw weighted design with its constant), largest first: the squared
        singular values of its R factor."""
        d = self._base.data
        return raw_singular_values(d.X, d.sqrt_w, d.fit_intercept) ** 2

    # --- robust covariances ------------------------------------------------------------------------
    def get_robustcov_results(self, cov_type: str = "HC1", use_t: bool | None = None) -> OLSResults:
        """The same fit with a heteroscedasticity-robust covariance: its ``bse``, t (or z) values, p values and
        intervals, and the Wald F test of the slopes, as statsmodels' ``get_robustcov_results``. ``use_t``: Student's
        t with ``df_resid`` (else the normal distribution); None keeps this results' (statsmodels: t after a
        plain fit; ``sm.OLS(...).fit(cov_type="HC3")`` is ``use_t=False``)."""
        if cov_type not in HC_TYPES:
            raise ValueError(f"cov_type must be one of {', '.join(HC_TYPES)}, got {cov_type!r}")
        use_t = self.use_t if use_t is None else bool(use_t)
        cache = self._base.__dict__.setdefault("_robust", {})
        if (cov_type, use_t) not in cache:
            cache[cov_type, use_t] = OLSResults(self.data, cov_type, base=self._base, use_t=use_t)
        return cache[cov_type, use_t]

    HC0_se = property(lambda self: self.get_robustcov_results("HC0").bse, doc="HC0 standard errors")
    HC1_se = property(lambda self: self.get_robustcov_results("HC1").bse, doc="HC1 standard errors")
    HC2_se = property(lambda self: self.get_robustcov_results("HC2").bse, doc="HC2 standard errors")
    HC3_se = property(lambda self: self.get_robustcov_results("HC3").bse, doc="HC3 standard errors")

    # --- hypothesis tests (ols_tests) --------------------------------------------------------------
    def t_test(self, r_matrix):
        """Each linear restriction ``R b = q`` tested alone: ``r_matrix`` a string (``"x1 = 0, x1 = x2"``), a
        matrix R (q = 0) or a tuple (R, q), over :attr:`names`; uses :meth:`cov_params` (robust if these are)."""
        from .ols_tests import t_test
        return t_test(self, r_matrix)

    def f_test(self, r_matrix):
        """The joint F test of the restrictions (see :meth:`t_test` for ``r_matrix``)."""
        from .ols_tests import f_test
        return f_test(self, r_matrix)

    def wald_test(self, r_matrix, use_f: bool | None = None, scalar: bool = True):
        """The joint Wald test: F when ``use_f`` (None: :attr:`use_t`), else chi² (see :meth:`t_test`)."""
        from .ols_tests import wald_test
        return wald_test(self, r_matrix, use_f=use_f, scalar=scalar)

    def compare_f_test(self, restricted: OLSResults) -> tuple[float, float, float]:
        """(F, p value, df_diff) of a nested, restricted fit against this one."""
        from .ols_tests import compare_f_test
        return compare_f_test(self, restricted)

    def compare_lr_test(self, restricted: OLSResults) -> tuple[float, float, float]:
        """(likelihood ratio, chi² p value, df_diff) of a nested, restricted fit against this one."""
        from .ols_tests import compare_lr_test
        return compare_lr_test(self, restricted)

    # --- diagnostics, influence, prediction, summary -----------------------------------------------
    def diagnostics(self) -> dict[str, float]:
        """The summary's bottom block, statsmodels' labels: Omnibus, Prob(Omnibus), Skew, Kurtosis,
        Durbin-Watson, Jarque-Bera (JB), Prob(JB), Cond. No. (of the weighted residuals)."""
        from .residual_moments import ResidualMoments  # the commands' --summary computes them the same way
        return ResidualMoments(1).update(self.wresid[:, None]).diagnostics(self.condition_number)[0]

    def get_influence(self):
        """Leverage, studentized residuals, Cook's distance and DFFITS (an ``OLSInfluence``)."""
        from .ols_influence import OLSInfluence
        return OLSInfluence(self)

    def leverage(self) -> np.ndarray:
        return self._base._basis.leverage(self.data.X, self.data.sqrt_w)

    def vif(self) -> np.ndarray:
        """Variance inflation factor of each feature: ``1 / (1 - R²)`` of its regression on the other features and
        a constant (unweighted), as statsmodels' ``variance_inflation_factor``."""
        return vif(self.data.X)

    def get_prediction(self, exog):
        """Predictions at the rows ``exog`` (the features, without a constant column) with their standard
        errors; ``.summary_frame(alpha)`` gives statsmodels' columns."""
        from .ols_influence import Prediction
        return Prediction(self, exog)

    def summary(self, alpha: float = 0.05) -> str:
        """A text table in statsmodels' layout: the fit's figures, the coefficients, the diagnostics, notes."""
        from .ols_tables import summary_text
        return summary_text(self, alpha)
