"""How many digits of a solution hold: error estimates for the coefficients and the standard errors.

Two estimates, both per coefficient and per target, in the data's units:

* ``a_priori`` (the R-only solution of ``QRAccumulator.solve``, no pass over the data): the
  first-order perturbation bound of least squares for a design perturbed by rounding. In the
  centred design with unit-norm columns ``Xs = U S Vᵀ`` (its R factor's SVD) and scaled
  coefficients ``u``, a perturbation ``E`` of size ``eps ‖Xs‖`` moves coefficient ``j`` by at most
  ``eps ‖V_j S⁻²‖ (‖Xs‖² ‖u‖ + ‖Xs‖ ‖r‖) + eps ‖V_j S⁻¹‖ (‖Xs‖ ‖u‖ + ‖r‖)``: the first term is the
  normal-equation-like error of a Gram matrix formed in float64 (the Cholesky QR of well-conditioned
  blocks) and of a large residual ``r``, the second that of a backward-stable QR. Times
  ``SAFETY`` for the rounding of the many steps, plus the float64 rounding of the coefficient itself.
* ``a_posteriori`` (after a refinement pass): the correction ``δ`` computed at the returned
  coefficients is the error estimate of those coefficients, itself accurate to a relative
  ``ρ ≈ SAFETY · eps · κ`` (κ: the scaled design's condition number, capped at 1) in norm; the
  estimate is ``|δ_j| + ρ ‖δ‖`` (scaled units), plus the rounding of the coefficient.

``digits`` turns an error into correct significant digits, ``-log10(error / |value|)``, between
0 and ``MAX_DIGITS`` (float64's 15.65 rounded down). The standard errors come from R alone
(``(RᵀR)⁻¹``, no refinement corrects them): their relative error is estimated by
``se_relative_error``, ``SAFETY · eps · κ · min(κ, CHOLESKY_ONCE_BELOW)`` (R is backward stable
to ``eps ‖A‖`` from Householder and Cholesky QR twice, to ``eps κ_block ‖A‖`` from the Gram matrix,
used only for blocks of condition up to ``CHOLESKY_ONCE_BELOW``).
"""

from __future__ import annotations

import numpy as np

from .numerics import _EPS

TARGET_DIGITS = 10  # refinement passes run until every coefficient holds this many digits, where the data allow
MAX_DIGITS = 15.0  # float64 keeps 15.65 significant digits
SAFETY = 8.0  # the first-order bounds' factor for the rounding of the many steps (sums, QR, SVD)


def digits(values: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Correct significant digits of ``values`` with absolute ``errors``, from 0 to ``MAX_DIGITS``,
    rounded down to one decimal; an exact value (error 0, a constant column's 0) gets ``MAX_DIGITS``."""
    values, errors = np.abs(np.asarray(values, float)), np.asarray(errors, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(errors == 0, MAX_DIGITS, -np.log10(errors / values))
    d = np.where(np.isnan(d), 0.0, d)  # an unbounded error
    return np.floor(np.clip(d, 0.0, MAX_DIGITS) * 10) / 10


def condition(factor) -> float:
    """The condition number of the centred design with unit-norm columns, over the kept singular values."""
    r = factor.r
    return float(factor.S[0] / factor.S[r - 1]) if r else 1.0


def se_relative_error(factor, gram_below: float) -> float:
    """Relative error estimate of the standard errors, which come from R (see the module docstring);
    ``gram_below``: the largest block condition number whose R comes from its Gram matrix
    (``blocks.CHOLESKY_ONCE_BELOW``)."""
    kappa = condition(factor)
    return float(SAFETY * _EPS * kappa * min(kappa, gram_below))


def _intercept_error(factor, err_scaled: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The intercept's error from the scaled coefficients' (``b = ȳ - x̄·w``), plus its rounding."""
    if not factor.fit_intercept:
        return np.zeros_like(b)
    return np.abs(factor.xbar / factor.scale) @ err_scaled + _EPS * np.abs(b)


def a_priori(factor, W: np.ndarray, b: np.ndarray, sse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error estimates (d, m) and (m,) of the R-only solution ``W``, ``b`` with residual sums ``sse``."""
    r = factor.r
    if r == 0:  # every column constant: the coefficients are exactly 0
        return np.zeros_like(W), _EPS * np.abs(b)
    V, S = factor.Vt[:r].T, factor.S[:r]
    norm_x = S[0]
    u = np.linalg.norm(W * factor.scale[:, None], axis=0)  # ‖u‖ per target (m,)
    res = np.sqrt(np.maximum(sse, 0.0))
    gram = np.linalg.norm(V / S ** 2, axis=1)[:, None] * (norm_x ** 2 * u + norm_x * res)[None, :]
    stable = np.linalg.norm(V / S, axis=1)[:, None] * (norm_x * u + res)[None, :]
    err_scaled = SAFETY * _EPS * (gram + stable)  # (d, m)
    err_scaled[factor.constant] = 0.0
    err_W = err_scaled / factor.scale[:, None] + _EPS * np.abs(W)
    return err_W, _intercept_error(factor, err_scaled, b)


def a_posteriori(factor, W: np.ndarray, b: np.ndarray, dW: np.ndarray, db: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Error estimates of ``W``, ``b`` from the correction ``dW``, ``db`` computed at them (or at the
    iterate before, a conservative estimate then)."""
    rho = min(1.0, SAFETY * _EPS * condition(factor))
    dU = np.abs(dW * factor.scale[:, None])
    err_scaled = dU + rho * np.linalg.norm(dU, axis=0)[None, :]
    err_scaled[factor.constant] = 0.0
    err_W = err_scaled / factor.scale[:, None] + _EPS * np.abs(W)
    if not factor.fit_intercept:
        return err_W, np.zeros_like(b)
    err_b = np.abs(db) + rho * (np.abs(factor.xbar / factor.scale) @ err_scaled) + _EPS * np.abs(b)
    return err_W, err_b
