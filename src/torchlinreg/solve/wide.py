"""Wide data, fewer rows than features (20 samples of 10,000 genes): the minimum-norm solution
through the n × n side, in O(n² d) time and O(n d) memory, where the R factor would be d × d.

The answer is the one ``QRAccumulator.solve`` defines for a rank-deficient design: the columns
centred by their (weighted) means, shifted first by the first counted row so that data far from
zero keep their digits; a column that holds one value (exactly) is constant and gets weight 0;
the rank is decided on the centred columns scaled to unit norm by powers of two (``rtol`` times
the largest singular value, the intercept's 1 among them); the weights are the minimum-norm
least-squares solution in the data's own units with the intercept outside the norm,
``b = ȳ - x̄·w`` (scikit-learn's convention), by the SVD of the centred n × d matrix.
"""

from __future__ import annotations

from warnings import warn

import numpy as np

from ..errors import RankDeficiencyWarning
from .doubledouble import _two_sum
from .numerics import _check_values, _norms, _power_of_two
from .rank import _NULL_TOL, _affine, _check_range
from .solution import LstsqSolution

WIDE_FEATURES_ABOVE = 512  # below, the d × d factor's SVD takes well under a second and keeps the refinement path


def is_wide(n_rows: int, n_features: int) -> bool:
    """Whether rows held in memory are solved through the n × n side: fewer rows than features, many features."""
    return n_features > WIDE_FEATURES_ABOVE and n_rows < n_features


def _centred(A: np.ndarray, w: np.ndarray | None, fit_intercept: bool):
    """``√w (A - Ā)`` (rows of weight 0 dropped), the means as an exact pair (hi, lo), and which columns are constant."""
    counted = A if w is None else A[w > 0]
    root = np.ones(len(counted)) if w is None else np.sqrt(w[w > 0])
    if not fit_intercept:
        zeros = np.zeros(A.shape[1])
        return root[:, None] * counted, (zeros, zeros), ~counted.any(axis=0)
    ref = counted[0]
    shifted = counted - ref  # exact within a factor 2 of ref, else rounded by eps of the spread
    offset = np.average(shifted, axis=0, weights=None if w is None else w[w > 0])
    constant = np.ptp(counted, axis=0) == 0
    shifted -= offset
    shifted[:, constant] = 0.0
    return root[:, None] * shifted, _two_sum(ref, offset), constant


def wide_lstsq(X: np.ndarray, Y: np.ndarray, w: np.ndarray | None, features: tuple[str, ...],
               targets: tuple[str, ...], *, fit_intercept: bool, rtol: float) -> LstsqSolution:
    """The minimum-norm least-squares solution of wide float64 ``X`` (n, d) and ``Y`` (n, m), as ``lstsq``'s."""
    _check_values(X, Y)
    n_rows, d = X.shape
    Xc, (xbar, xbar_lo), constant = _centred(X, w, fit_intercept)
    Yc, ybar, _ = _centred(Y, w, fit_intercept)
    norms = _norms(Xc)
    scale = _power_of_two(np.where(norms > 0, norms, 1.0))
    _, S, Vt = np.linalg.svd(Xc / scale, full_matrices=False)  # (n, d): O(n² d)
    sv = np.sort(np.concatenate([S, np.zeros(d - len(S)), [1.0] * fit_intercept]))[::-1]
    r = int(np.sum(S > rtol * sv[0])) if sv[0] > 0 else 0
    U, S_raw, Vt_raw = np.linalg.svd(Xc, full_matrices=False)  # the minimum norm in the data's units
    W = Vt_raw[:r].T @ ((U[:, :r].T @ Yc) / S_raw[:r, None])
    W[constant] = 0.0
    b = _affine(list(ybar), [-xbar, -xbar_lo], W) if fit_intercept else np.zeros(Y.shape[1])
    _check_range(W, b, features, norms)
    residual = Yc - Xc @ W
    sse = np.sum(residual ** 2, axis=0)
    reached = np.sum(Vt[:r] ** 2, axis=0)  # ‖e_j‖² in the row space: 1 when the data determine w_j
    unidentified = tuple(name for name, j in zip(features, reached) if 1.0 - j > _NULL_TOL)
    n = len(Xc)
    rows = ("1 row" if n == 1 else f"{n} rows") + " with a positive weight" * (n < n_rows)
    message = f"{rows} for {d + fit_intercept} parameters; the minimum-norm solution is returned"
    warn(message, RankDeficiencyWarning, stacklevel=3)
    sum_w = float(n if w is None else w.sum())
    return LstsqSolution(
        coef=W.T.copy(), intercept=b, loss=float(sse.sum() / (sum_w * Y.shape[1])), loss_per_target=sse / sum_w,
        rank=r + fit_intercept, n_samples=n_rows, singular_values=sv, condition_number=np.inf,
        feature_names=features, target_names=targets, unidentified=unidentified, warnings=(message,),
        sum_weights=None if w is None else sum_w)
