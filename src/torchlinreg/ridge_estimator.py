"""``Ridge`` and ``RidgeCV``: exact ridge (:mod:`torchlinreg.ridge_solve`) as scikit-learn estimators.

Both solve from the R factor of ``[X, 1, y]`` in float64 (the SVD of the centred triangular factor, no
normal equations) and answer as scikit-learn's ``Ridge`` and ``RidgeCV`` do: the intercept is not
penalised, ``alpha`` may be one per target, ``sample_weight`` weights the squared errors.
"""

from __future__ import annotations

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn is an optional dependency
    raise ImportError("torchlinreg.Ridge needs scikit-learn (1.6 or later); "
                      "install it with: pip install torchlinreg[sklearn]") from exc

from .errors import ConfigError
from .ridge_solve import DEFAULT_ALPHAS, MODES, check_alpha, check_alphas, choose, ridge_path


class _RidgeBase(RegressorMixin, BaseEstimator):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _path(self, X, y, sample_weight):
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ConfigError(f"fit_intercept must be True or False, got {self.fit_intercept!r}")
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        w = None if sample_weight is None else _check_sample_weight(sample_weight, X, dtype=np.float64)
        path, X, Y, w = ridge_path(X, y, fit_intercept=bool(self.fit_intercept), sample_weight=w)
        return path, X, Y, w, y.ndim

    def _set(self, solution, ndim: int):
        self.coef_ = solution.coef if ndim == 2 else solution.coef[0]
        self.intercept_ = (solution.intercept if ndim == 2 else float(solution.intercept[0])) if self.fit_intercept \
            else 0.0  # scikit-learn's, without an intercept
        self.solution_ = solution

    def predict(self, X):
        """``X @ coef_.T + intercept_``, of shape (n_samples,) or (n_samples, n_targets) as ``y`` in fit."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.coef_.T + self.intercept_


class Ridge(_RidgeBase):
    """Linear least squares with an L2 penalty on the coefficients, solved exactly: scikit-learn's ``Ridge``.

    Minimises ``Σ wᵢ (yᵢ - xᵢ·coef - intercept)² + alpha · ‖coef‖²`` per target.

    Parameters
    ----------
    alpha : float >= 0 or array of shape (n_targets,), default=1.0
        The penalty; one per target when an array. 0 gives the minimum-norm least-squares solution.
    fit_intercept : bool, default=True
        Fit an (unpenalised) intercept: the problem is solved on the (weighted) centred columns.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
    n_features_in_, feature_names_in_ : as scikit-learn's
    solution_ : torchlinreg.ridge_solve.RidgeSolution
    """

    def __init__(self, alpha=1.0, *, fit_intercept=True):
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def fit(self, X, y, sample_weight=None):
        check_alpha(self.alpha)
        path, _, Y, _, ndim = self._path(X, y, sample_weight)
        self._set(path.solution(path.alphas_per_target(self.alpha)), ndim)
        return self


class RidgeCV(_RidgeBase):
    """Ridge with alpha chosen among ``alphas``: scikit-learn's ``RidgeCV`` (its efficient leave-one-out), or
    generalised cross-validation.

    Parameters
    ----------
    alphas : array of floats > 0, default=(0.1, 1.0, 10.0)
    fit_intercept : bool, default=True
    criterion : {"loo", "gcv"}, default="loo"
        ``"loo"``: the mean squared leave-one-out error ``w r² / (1 - h)²`` from each row's leverage, as
        scikit-learn's ``RidgeCV`` (``cv=None``, ``scoring=None``); ``"gcv"``: Golub, Heath and Wahba's
        ``n · RSS / (n - tr H)²``, from the R factor alone (see :func:`torchlinreg.ridge_solve.ridge_source` for
        streamed data).
    alpha_per_target : bool, default=False
        Choose an alpha for each target.
    store_cv_results : bool, default=False
        Keep the squared leave-one-out errors of every alpha in ``cv_results_`` (``criterion="loo"``).

    Attributes
    ----------
    alpha_ : float or ndarray of shape (n_targets,)
    best_score_ : float or ndarray of shape (n_targets,)
        Minus the chosen alpha's criterion (larger is better, as scikit-learn's).
    cv_results_ : ndarray of shape (n_samples, n_alphas) or (n_samples, n_targets, n_alphas)
    coef_, intercept_, n_features_in_, feature_names_in_, solution_ : as ``Ridge``'s
    """

    def __init__(self, alphas=DEFAULT_ALPHAS, *, fit_intercept=True, criterion="loo", alpha_per_target=False,
                 store_cv_results=False):
        self.alphas = alphas
        self.fit_intercept = fit_intercept
        self.criterion = criterion
        self.alpha_per_target = alpha_per_target
        self.store_cv_results = store_cv_results

    def fit(self, X, y, sample_weight=None):
        alphas = check_alphas(self.alphas)
        if self.criterion not in MODES:
            raise ConfigError(f"unknown criterion {self.criterion!r}; choose one of {', '.join(MODES)}")
        if self.store_cv_results and self.criterion != "loo":
            raise ConfigError("store_cv_results keeps leave-one-out errors: it needs criterion='loo'")
        path, X, Y, w, ndim = self._path(X, y, sample_weight)
        if self.criterion == "gcv":
            scores = path.gcv(alphas)
        else:
            errors = np.stack([path.loo_errors(X, Y, w, a) ** 2 for a in alphas], axis=-1)  # (n, m, n_alphas)
            scores = errors.mean(axis=0).T
            if self.store_cv_results:
                self.cv_results_ = errors if ndim == 2 else errors[:, 0, :]
        per_target = bool(self.alpha_per_target) and ndim == 2
        solution = choose(path, alphas, scores, per_target, self.criterion)
        self._set(solution, ndim)
        if per_target:
            self.alpha_ = solution.alpha.copy()
            self.best_score_ = -scores.min(axis=0)
        else:
            self.alpha_ = float(solution.alpha[0])
            self.best_score_ = float(-scores.mean(axis=1).min())
        return self
