"""What ``OLSResults`` shows beyond the coefficients: residual diagnostics, influence, predictions.

As statsmodels: the diagnostics are those of its ``summary()`` bottom block (``omni_normtest``,
``jarque_bera``, ``durbin_watson`` of the weighted residuals); the influence measures those of
``OLSInfluence`` (on the weighted design and residuals for WLS, i.e. OLS on ``√w y`` and ``√w Z``);
``get_prediction(...).summary_frame()`` its columns, intervals from Student's t with ``df_resid``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from .errors import DataError


class OLSInfluence:
    """Influence of each row on the fit, as statsmodels' ``OLSInfluence``.

    ``hat_matrix_diag`` (leverage ``h``), ``resid_studentized_internal`` (``e / √(s² (1 - h))``),
    ``resid_studentized_external`` (with the variance left out row by row), ``cooks_distance``
    (values, p values of F(k, df_resid)), ``dffits`` (values, threshold ``2 √(k / n)``).
    """

    def __init__(self, results):
        self.results = results
        self.hat_matrix_diag = results.leverage()
        self._e = results.wresid
        self._k = len(results.names)

    @property
    def resid_studentized_internal(self) -> np.ndarray:
        h = self.hat_matrix_diag
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._e / np.sqrt(self.results.scale * (1 - h))

    @property
    def resid_studentized_external(self) -> np.ndarray:
        h, e, df = self.hat_matrix_diag, self._e, self.results.df_resid
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma2_i = (self.results.ssr - e ** 2 / (1 - h)) / (df - 1)  # the scale without row i
            return e / np.sqrt(sigma2_i * (1 - h))

    @property
    def cooks_distance(self) -> tuple[np.ndarray, np.ndarray]:
        h = self.hat_matrix_diag
        with np.errstate(divide="ignore", invalid="ignore"):
            d = self.resid_studentized_internal ** 2 * h / (1 - h) / self._k
        return d, special.fdtrc(self._k, self.results.df_resid, d)

    @property
    def dffits(self) -> tuple[np.ndarray, float]:
        h = self.hat_matrix_diag
        with np.errstate(divide="ignore", invalid="ignore"):
            values = self.resid_studentized_external * np.sqrt(h / (1 - h))
        return values, 2 * math.sqrt(self._k / self.results.nobs)

    def summary_frame(self):
        """The measures per row (a pandas DataFrame when pandas is importable, else a dict of arrays)."""
        columns = {"cooks_d": self.cooks_distance[0], "standard_resid": self.resid_studentized_internal,
                   "hat_diag": self.hat_matrix_diag, "dffits_internal": None, "student_resid":
                   self.resid_studentized_external, "dffits": self.dffits[0]}
        h = self.hat_matrix_diag
        with np.errstate(divide="ignore", invalid="ignore"):
            columns["dffits_internal"] = self.resid_studentized_internal * np.sqrt(h / (1 - h))
        return _frame(columns)


def _frame(columns: dict):
    try:
        import pandas as pd
    except ImportError:
        return columns
    return pd.DataFrame(columns)


def robust_middle(results) -> np.ndarray:
    """``M = c Σᵢ ωᵢ ẽᵢ² q_i q_iᵀ`` in the basis of ``ols_basis`` (HC0-HC3: ``ω`` 1, 1, ``1/(1-h)``, ``1/(1-h)²``,
    ``c = n / df_resid`` for HC1, else 1), so that the robust covariance of the parameters is ``G M Gᵀ``."""
    data, basis = results.data, results._base._basis
    q = basis.rows(data.X, data.sqrt_w)
    h = np.sum(q ** 2, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        omega = {"HC2": 1 / (1 - h), "HC3": 1 / (1 - h) ** 2}.get(results.cov_type, np.ones_like(h))
    c = results.nobs / results.df_resid if results.cov_type == "HC1" else 1.0
    return c * (q * (results.wresid ** 2 * omega)[:, None]).T @ q


class Prediction:
    """Predicted means at new rows and their standard errors (statsmodels' ``PredictionResults``)."""

    def __init__(self, results, exog):
        names = results.data.feature_names
        if results.data.spec is not None and hasattr(exog, "columns"):  # a formula's: rebuild its columns
            from .formula import rebuild
            exog = rebuild(results.data.spec, exog)
        columns = getattr(exog, "columns", None)
        if columns is not None and set(map(str, columns)) >= set(names):
            exog = exog[[c for n in names for c in columns if str(c) == n]]
        try:
            X = np.asarray(exog, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"exog must hold numbers only ({exc}); give the features' values") from None
        X = X.reshape(1, -1) if X.ndim == 1 and len(names) > 1 else X.reshape(-1, 1) if X.ndim == 1 else X
        if X.ndim != 2 or X.shape[1] != len(names):
            raise DataError(f"exog must have {len(names)} columns, the features {list(names)} (no constant column); "
                            f"got shape {X.shape}")
        self.results = results
        params = np.nan_to_num(results.params)  # an unidentified term's NaN: its min-norm solution gives 0 there
        intercept = int(results.data.fit_intercept)  # params[0] is the intercept's (an implicit constant is a column)
        const = params[0] if intercept else 0.0
        self.predicted_mean = X @ params[intercept:] + const
        if results.cov_type == "nonrobust":
            q = results._base._basis.rows(X)
            self.se_mean = np.sqrt(results.scale * np.sum(q ** 2, axis=1))
        else:  # u M uᵀ in the basis (the robust covariance is G M Gᵀ): no cancellation between the raw terms
            u = results._base._basis.rows(X)
            self.se_mean = np.sqrt(np.einsum("ij,jk,ik->i", u, robust_middle(results), u))
        self.se_obs = np.sqrt(self.se_mean ** 2 + results.scale)

    def summary_frame(self, alpha: float = 0.05):
        """mean, mean_se, mean_ci_lower, mean_ci_upper, obs_ci_lower, obs_ci_upper (``1 - alpha`` intervals)."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, e.g. 0.05; got {alpha!r}")
        q = special.stdtrit(self.results.df_resid, 1 - alpha / 2)
        m = self.predicted_mean
        return _frame({"mean": m, "mean_se": self.se_mean, "mean_ci_lower": m - q * self.se_mean,
                       "mean_ci_upper": m + q * self.se_mean, "obs_ci_lower": m - q * self.se_obs,
                       "obs_ci_upper": m + q * self.se_obs})
