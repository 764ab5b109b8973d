"""``LstsqSolution``: a least-squares solution in the layout of ``nn.Linear``, as
``QRAccumulator.solve``, ``refine`` and ``lstsq`` return it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .digits import TARGET_DIGITS, digits
from .numerics import _as_array
from .rank import _Factorization


# --- the solution ---------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LstsqSolution:
    """A least-squares solution, in the layout of ``nn.Linear``.

    Attributes
    ----------
    coef : ndarray of shape (n_targets, n_features), like ``nn.Linear.weight``
    intercept : ndarray of shape (n_targets,), zeros without an intercept
    loss : MSE over all ``n * m`` entries, as ``nn.MSELoss`` reports at these parameters; with
        sample weights the weighted MSE ``Σ w r² / (Σ w · n_targets)``
    loss_per_target : ndarray of shape (n_targets,)
    rank : rank of the design (features, plus the intercept)
    n_samples : rows fitted
    singular_values : of the design with every column scaled to unit norm, centred when
        there is an intercept (whose column then gives 1), largest first; the rank counts
        those above ``rtol`` times the largest
    condition_number : 2-norm condition number of the raw design ``[X, 1]`` (``√w [X, 1]`` with
        sample weights); inf when rank-deficient
    feature_names, target_names : column names
    unidentified : features whose coefficient the data do not determine
    warnings : one line per problem found
    sum_weights : ``Σ w`` of the sample weights; None when fitted without them
    kernels : the block step's kernel for each shape class of the data (``solve.kernels``)
    coef_error, intercept_error : estimated absolute errors of ``coef`` and ``intercept`` (same
        shapes; ``solve.digits``): a first-order bound from R for the R-only solution, the last
        refinement correction after refinement; None when not estimated (the wide path)
    se_relative_error : estimated relative error of the standard errors computed from this
        solution's R (about eps·κ of the scaled design, see ``solve.digits``); None when not estimated
    positive : the coefficients are non-negative least squares' (``torchlinreg.nnls``); rank, condition
        number and singular values stay the design's
    """

    coef: np.ndarray
    intercept: np.ndarray
    loss: float
    loss_per_target: np.ndarray
    rank: int
    n_samples: int
    singular_values: np.ndarray
    condition_number: float
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    unidentified: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    sum_weights: float | None = None
    kernels: dict = field(default_factory=dict)  # shape class -> the kernel that formed its Gram matrices
    coef_error: np.ndarray | None = None
    intercept_error: np.ndarray | None = None
    se_relative_error: float | None = None
    positive: bool = False
    _factor: _Factorization | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        coef = {t: dict(zip(self.feature_names[:5], np.round(row[:5], 6).tolist()))
                for t, row in zip(self.target_names[:3], self.coef)}
        return (f"LstsqSolution(coef={coef}{' ...' if self.coef.shape[1] > 5 else ''}, "
                f"intercept={np.round(self.intercept[:3], 6).tolist()}, loss={self.loss:.6g}, rank={self.rank}, "
                f"n_samples={self.n_samples}, condition_number={self.condition_number:.3g}, "
                f"warnings={len(self.warnings)})")

    @property
    def digits(self) -> np.ndarray | None:
        """Correct significant digits of each coefficient, shape (n_targets, n_features), by the error
        estimate ``coef_error``: ``-log10(error / |coef|)`` rounded down to one decimal, 0 to 15 (an
        exact 0, a constant column's weight, has 15). None when not estimated."""
        return None if self.coef_error is None else digits(self.coef, self.coef_error)

    @property
    def intercept_digits(self) -> np.ndarray | None:
        """Correct significant digits of each intercept (n_targets,), as ``digits``; 15 without one."""
        return None if self.intercept_error is None else digits(self.intercept, self.intercept_error)

    @property
    def min_digits(self) -> float | None:
        """Correct digits of the coefficients as a whole: of each target's vector of identified coefficients
        in standardised units (each times its column's spread), normwise, the fewest over the targets; None
        when not estimated. A coefficient much smaller than the others, or 0, has few digits of its own
        (``digits``) however accurate the fit: the refinement and its warning go by this figure."""
        if self.coef_error is None:
            return None
        identified = np.array([f not in self.unidentified for f in self.feature_names], dtype=bool)
        f = self._factor
        scale = f.scale if f is not None else np.ones(len(self.feature_names))
        size = np.linalg.norm((self.coef * scale)[:, identified], axis=1)  # per target
        if f is not None and f.r:  # at least the size of coefficients that would move the fit by the centred y:
            y_c = np.sqrt(np.sum(f.Rxy ** 2, axis=0) + np.sum(f.Ryy ** 2, axis=0))  # coefficients of 0 have no
            size = np.maximum(size, y_c / f.S[0])  # digits of their own, and their error is measured against it
        error = np.linalg.norm((self.coef_error * scale)[:, identified], axis=1)
        return float(digits(size, error).min(initial=15.0))

    @property
    def se_digits(self) -> float | None:
        """Correct significant digits of the standard errors computed from R (``se_relative_error``)."""
        return None if self.se_relative_error is None else float(digits(1.0, self.se_relative_error))

    @property
    def digits_short(self) -> bool:
        """Whether some identified coefficient holds fewer than ``TARGET_DIGITS`` correct digits."""
        return self.min_digits is not None and self.min_digits < TARGET_DIGITS

    def predict(self, X) -> np.ndarray:
        """Fitted values of shape (n, n_targets) for ``X`` of shape (n, n_features)."""
        X = _as_array(X, "X")
        if X.ndim != 2 or X.shape[1] != len(self.feature_names):
            raise ValueError(f"X must have shape (n_samples, {len(self.feature_names)}), got {X.shape}")
        return X @ self.coef.T + self.intercept

    def to_dict(self) -> dict:
        """Plain data for JSON; an infinite condition number becomes ``None``."""
        record = {
            "coef": {t: dict(zip(self.feature_names, row.tolist())) for t, row in zip(self.target_names, self.coef)},
            "intercept": dict(zip(self.target_names, self.intercept.tolist())),
            "loss": float(self.loss),
            "loss_per_target": dict(zip(self.target_names, self.loss_per_target.tolist())),
            "rank": int(self.rank),
            "n_samples": int(self.n_samples),
            "condition_number": float(self.condition_number) if np.isfinite(self.condition_number) else None,
            "singular_values": self.singular_values.tolist(),
            "unidentified": list(self.unidentified),
            "warnings": list(self.warnings),
        }
        if self.coef_error is not None:
            record["digits"] = {t: dict(zip(self.feature_names, row.tolist()))
                                for t, row in zip(self.target_names, self.digits)}
            record["intercept_digits"] = dict(zip(self.target_names, self.intercept_digits.tolist()))
            record["min_digits"] = self.min_digits
        if self.se_relative_error is not None:
            record["se_digits"] = self.se_digits
        if self.sum_weights is not None:
            record["sum_weights"] = float(self.sum_weights)
        if self.positive:
            record["positive"] = True
        return record
