"""A saved model's inference state: what ``predict --interval`` and ``SavedModel.get_prediction`` need.

The exact least-squares fit a model was trained beside is kept in the model file (safetensors
tensors and one JSON entry, never a pickle), so that intervals for new rows can be computed
without the training data:

* ``optimum_weight`` (n_targets, n_features) and ``optimum_bias`` (n_targets,): the optimum's coefficients;
* ``scale`` (n_targets,): ``SSR / df_resid`` per target (statsmodels' ``scale``);
* ``xbar`` (n_features,) and ``basis`` (n_features, rank): the map ``L`` that takes a row's centred
  features to coordinates in an orthonormal basis of the (weighted) design's column space, so that
  ``q = [(x - x̄) L, 1/√Σw]`` (without intercept ``q = x L``) and the normalized covariance
  ``(Zᵀ W Z)⁻¹`` is ``K Kᵀ`` (see :class:`torchlinreg.covariances._Basis`). A factor, not the
  covariance itself: positive semi-definite by construction, and ``x (Zᵀ W Z)⁻¹ xᵀ = ‖q‖²`` is summed
  without the cancellation of the raw quadratic form on an ill-conditioned design;
* the JSON's ``"inference"``: ``df_resid``, ``n_obs`` and ``sum_weights`` (``Σ w``; the rows without weights).

Intervals are statsmodels' ``get_prediction(exog).summary_frame(alpha)`` of the same fit: the mean's
``mean ± t se_mean`` and the new observation's ``mean ± t √(se_mean² + scale)`` (a new row of weight 1),
``t`` Student's with ``df_resid`` degrees of freedom, centred on the least-squares prediction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .errors import ConfigError, ModelFileError

TENSORS = ("optimum_weight", "optimum_bias", "scale", "xbar", "basis")
INTERVALS = ("confidence", "prediction")
REFIT = "refit the model with this version of torchlinreg ('torchlinreg fit ... --save') to store it"


@dataclass(frozen=True, eq=False)
class InferenceState:
    """The exact least-squares fit's state for intervals at new rows (see the module's docstring)."""

    optimum_weight: np.ndarray  # (m, d)
    optimum_bias: np.ndarray  # (m,)
    scale: np.ndarray  # (m,)
    xbar: np.ndarray  # (d,)
    basis: np.ndarray  # (d, r)
    df_resid: float
    n_obs: int
    sum_weights: float
    fit_intercept: bool = True

    @classmethod
    def from_solution(cls, solution, basis) -> InferenceState | None:
        """The state of a ``LstsqSolution`` (in-memory, streamed or merged) and its ``covariances._Basis``;
        None when the fit leaves no residual degrees of freedom (no interval can be estimated)."""
        f = solution._factor
        df_resid = float(f.n - solution.rank)
        if df_resid <= 0 or basis.sum_weights <= 0:
            return None
        ssr = np.asarray(solution.loss_per_target, dtype=np.float64) * basis.sum_weights
        return cls(np.array(solution.coef, dtype=np.float64), np.array(solution.intercept, dtype=np.float64),
                   ssr / df_resid, np.array(basis.xbar, dtype=np.float64), np.array(basis.L, dtype=np.float64),
                   df_resid, int(f.n), float(basis.sum_weights), bool(f.fit_intercept))

    def tensors(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), dtype=np.float64) for name in TENSORS}

    def description(self) -> dict:
        return {"df_resid": self.df_resid, "n_obs": self.n_obs, "sum_weights": self.sum_weights}

    def rows(self, X: np.ndarray) -> np.ndarray:
        """The rows ``q`` (n, r [+ 1]) of new features ``X`` (n, d) in the orthonormal basis."""
        q = (X - self.xbar) @ self.basis
        if self.fit_intercept:
            q = np.hstack([q, np.full((len(X), 1), 1 / math.sqrt(self.sum_weights))])
        return q

    @property
    def normalized_cov_params(self) -> np.ndarray:
        """``(Zᵀ W Z)⁻¹`` in statsmodels' order: the intercept (when fitted) first, then the features."""
        d, r = self.basis.shape
        K = np.zeros((d + self.fit_intercept, r + self.fit_intercept))
        K[self.fit_intercept:, :r] = self.basis
        if self.fit_intercept:
            K[0, :r] = -self.xbar @ self.basis
            K[0, r] = 1 / math.sqrt(self.sum_weights)
        return K @ K.T


def state_from_file(path, desc: dict, tensors: dict, n_targets: int, n_features: int,
                    fit_intercept: bool) -> InferenceState | None:
    """The inference state of a model file whose tensors and description passed ``modelcheck``'s checks (shapes
    as described, finite floats); None for a file without one. Raises ModelFileError for a bad one."""
    entry = desc.get("inference")
    if entry is None and not any(name in tensors for name in TENSORS):
        return None

    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{str(path)!r} holds an invalid inference state ({what}); {REFIT}")

    if not isinstance(entry, dict) or sorted(entry) != ["df_resid", "n_obs", "sum_weights"]:
        raise bad("its 'inference' entry needs df_resid, n_obs and sum_weights")
    if any(name not in tensors for name in TENSORS):
        raise bad(f"it needs the tensors {', '.join(TENSORS)}")
    numbers = [entry[k] for k in ("df_resid", "n_obs", "sum_weights")]
    if (not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in numbers)
            or not isinstance(entry["n_obs"], int) or entry["df_resid"] > entry["n_obs"]):
        raise bad("df_resid, n_obs and sum_weights must be positive numbers, n_obs whole and at least df_resid")
    t = {name: np.asarray(tensors[name], dtype=np.float64) for name in TENSORS}
    d, r = t["basis"].shape if t["basis"].ndim == 2 else (None, None)
    shapes = {"optimum_weight": (n_targets, n_features), "optimum_bias": (n_targets,), "scale": (n_targets,),
              "xbar": (n_features,)}
    for name, shape in shapes.items():
        if t[name].shape != shape:
            raise bad(f"{name} has shape {t[name].shape}, expected {shape}")
    if d != n_features or r > n_features:
        raise bad(f"basis has shape {t['basis'].shape}, expected ({n_features}, rank) with rank <= {n_features}")
    if not all(np.isfinite(a).all() for a in t.values()):
        raise bad("it holds non-finite values")
    if np.any(t["scale"] < 0):
        raise bad("a negative scale")
    if not fit_intercept and (np.any(t["optimum_bias"] != 0) or np.any(t["xbar"] != 0)):
        raise bad("a model without intercept has a non-zero optimum_bias or xbar")
    state = InferenceState(t["optimum_weight"], t["optimum_bias"], t["scale"], t["xbar"], t["basis"],
                           float(entry["df_resid"]), int(entry["n_obs"]), float(entry["sum_weights"]),
                           fit_intercept)
    cov = state.normalized_cov_params  # K Kᵀ: symmetric PSD by construction, unless K's values overflow
    if not np.isfinite(cov).all():
        raise bad("its normalized covariance overflows")
    return state


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"alpha must be between 0 and 1 (exclusive), e.g. 0.05 for 95% intervals; got {alpha!r}")
    return float(alpha)


class SavedPrediction:
    """Predictions of a saved model's least-squares fit at new rows, with standard errors (statsmodels'
    ``PredictionResults``, one column per target). ``predicted_mean``, ``se_mean``, ``se_obs``: (n, n_targets)."""

    def __init__(self, state: InferenceState, X: np.ndarray, target_names: tuple[str, ...]):
        self.state, self.target_names = state, tuple(target_names)
        self.predicted_mean = X @ state.optimum_weight.T + state.optimum_bias
        leverage = np.sum(state.rows(X) ** 2, axis=1)  # x (Zᵀ W Z)⁻¹ xᵀ, (n,)
        self.se_mean = np.sqrt(leverage[:, None] * state.scale)
        self.se_obs = np.sqrt(self.se_mean ** 2 + state.scale)
        self.df = state.df_resid

    def conf_int(self, alpha: float = 0.05, obs: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The ``1 - alpha`` interval of the mean (``obs=False``) or of a new observation: ``(lower, upper)``,
        each (n, n_targets)."""
        q = special.stdtrit(self.df, 1 - check_alpha(alpha) / 2)
        half = q * (self.se_obs if obs else self.se_mean)
        return self.predicted_mean - half, self.predicted_mean + half

    def summary_frame(self, alpha: float = 0.05, target: str | None = None):
        """statsmodels' columns for one target (the only one by default): mean, mean_se, mean_ci_lower,
        mean_ci_upper, obs_ci_lower, obs_ci_upper. A pandas DataFrame (a dict of arrays without pandas)."""
        if target is None and len(self.target_names) > 1:
            raise ValueError(f"the model has {len(self.target_names)} targets; pass target= one of "
                             f"{list(self.target_names)!r}")
        if target is not None and target not in self.target_names:
            raise ValueError(f"no target {target!r}; the model's targets are {list(self.target_names)!r}")
        j = 0 if target is None else self.target_names.index(target)
        (mean_lo, mean_hi), (obs_lo, obs_hi) = self.conf_int(alpha), self.conf_int(alpha, obs=True)
        columns = {"mean": self.predicted_mean[:, j], "mean_se": self.se_mean[:, j],
                   "mean_ci_lower": mean_lo[:, j], "mean_ci_upper": mean_hi[:, j],
                   "obs_ci_lower": obs_lo[:, j], "obs_ci_upper": obs_hi[:, j]}
        try:
            import pandas as pd
        except ImportError:
            return columns
        return pd.DataFrame(columns)


def interval_columns(model, X: np.ndarray, y_pred: np.ndarray, interval: str, alpha: float) -> dict[str, np.ndarray]:
    """``lower_<t>`` and ``upper_<t>`` per target for ``predict --interval``; warns once when the model's own
    predictions ``y_pred`` are not the least-squares fit's (a model trained short of the optimum)."""
    import warnings

    if interval not in INTERVALS:
        raise ConfigError(f"unknown interval {interval!r}; choose confidence (the mean's) or prediction "
                          "(a new observation's)")
    alpha = check_alpha(alpha)
    prediction = model.get_prediction(X)
    lower, upper = prediction.conf_int(alpha, obs=interval == "prediction")
    centre = prediction.predicted_mean
    gap = np.abs(y_pred - centre)
    tolerance = 1e-9 * np.maximum(np.abs(centre), (upper - lower) / 2)
    if len(gap) and np.any(gap > tolerance):
        half = (upper - lower) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.nanmax(np.where(half > 0, gap / half, np.inf))
        warnings.warn(f"the intervals are those of the exact least-squares fit, centred on its predictions; this "
                      f"model's own predictions differ from them by up to {float(gap.max()):.6g} "
                      f"({float(ratio):.3g} times the interval's half-width): it stopped short of the optimum",
                      UserWarning, stacklevel=2)
    columns = {}
    for j, name in enumerate(model.target_names):
        columns[f"lower_{name}"], columns[f"upper_{name}"] = lower[:, j], upper[:, j]
    return columns
