"""The exact least-squares optimum, by QR chunk by chunk, refined in double-double arithmetic.

Method
------
1. ``QRAccumulator`` keeps only the R factor of the augmented matrix ``A = [X, 1, y]`` in
   float64, never ``Xᵀ X`` of the raw columns. Rows arrive in blocks, shifted exactly by
   column means and, by their conditioning, added to a running Gram matrix or factored by
   Cholesky QR twice or Householder QR; two accumulators merge by stacking their R factors.
   Scaling is by powers of two, hence exact.
2. ``QRAccumulator.solve`` works on R alone: the SVD of the centred, column-scaled factor
   gives the rank, the coefficients, and, when the rank is deficient, the minimum-norm
   solution in the data's own units with the intercept outside the norm (scikit-learn's
   convention). A solution beyond float64's range is refused (``DataError``).
3. ``refine`` makes passes over the data, each computing the residual and the gradient in
   double-double arithmetic and correcting the parameters by the corrected semi-normal
   equations; two or three passes give float64 accuracy even for a raw design of condition
   number 1e16. ``lstsq`` does all three on arrays held in memory.

Sample weights (weighted least squares, minimising ``Σ wᵢ rᵢ²``) scale each row of ``A``,
the column of ones included, by ``√wᵢ``; the centring above then uses the weighted means,
the refinement forms ``Aᵀ W r`` with ``W r`` in double-double from the unscaled rows, and
the loss is the weighted MSE ``Σ w r² / (Σ w · n_targets)``. A weight of 0 drops its row.

Modules
-------
One concept each; a module imports only those listed before it:

* ``numerics``: input checks (shapes, NaN/inf, ``MAX_MAGNITUDE``, sample weights, chunks,
  names), exact power-of-two scaling, column norms, the triangular factor
* ``doubledouble``: double-double sums and products (Knuth, Dekker)
* ``kernels``: the Gram matrix of a shifted block, formed the way measured fastest on this CPU
  (library, thread split, tile size; ``TORCHLINREG_KERNEL`` forces one)
* ``machine``: where a run happened (the CPU, both libraries' BLAS), as ``summary.json`` records it
* ``blocks``: one block of rows, shifted by its means, into the running Gram matrix or R
  (``CHOLESKY_ONCE_BELOW``, ``CHOLESKY_TWICE_BELOW``)
* ``rank``: from R to the solution: centring, column scales, SVD and rank (``RANK_RTOL``),
  null space and minimum norm, condition number, the range checks
* ``digits``: error estimates of the coefficients (a priori from R, a posteriori from the last
  refinement correction) and of the standard errors, as correct digits (``TARGET_DIGITS``)
* ``solution``: ``LstsqSolution``
* ``accumulator``: ``QRAccumulator`` (``update``, ``update_columns``, ``merge``, ``loss``, ``solve``)
* ``refinement``: ``refine``, ``needs_refinement``, the pass sums that ``distributed`` adds
  across ranks (``add_pass_sums``)
* ``wide``: fewer rows than features, through the n × n side (``wide_lstsq``)
* ``sparse``: a scipy.sparse ``X`` as dense blocks of rows (``row_blocks``), which ``sparse_lstsq`` adds up
* this package: ``lstsq`` and ``solve_dataset``, and the names above for ``torchlinreg.solve``.
"""

from __future__ import annotations

import numpy as np

# The names other modules, tests and benchmarks import from ``torchlinreg.solve``. A test that
# monkeypatches a function must patch the module that looks it up (e.g. ``accumulator`` for
# ``_block_r``, ``_exact_shift`` and ``UPDATE_BLOCK_ENTRIES``): patching this package changes nothing.
from .accumulator import UPDATE_BLOCK_ENTRIES, QRAccumulator  # noqa: F401
from .blocks import CHOLESKY_ONCE_BELOW, CHOLESKY_TWICE_BELOW, _block_r, _exact_shift  # noqa: F401
from .kernels import Kernel, chosen, set_kernel  # noqa: F401
from .machine import machine  # noqa: F401
from .numerics import _EPS, MAX_MAGNITUDE, _as_array, _column_names, _names, _norms, _triangularize, _weights  # noqa: F401
from .rank import _NULL_TOL, RANK_RTOL, _Factorization, _MinNormGroup  # noqa: F401
from .refinement import MAX_PASSES, REFINE_ABOVE_CONDITION, PassSums, _refine, add_pass_sums  # noqa: F401
from .refinement import needs_refinement, refine  # noqa: F401
from .digits import TARGET_DIGITS  # noqa: F401
from .solution import LstsqSolution  # noqa: F401
from .wide import WIDE_FEATURES_ABOVE, is_wide, wide_lstsq  # noqa: F401
from .sparse import is_sparse, row_blocks  # noqa: F401


# --- one call ---------------------------------------------------------------------------------

def check_xy(X, y) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (n, d) and ``y`` (n,) or (n, m) as float64 arrays, their shapes checked."""
    X, y = _as_array(X, "X"), _as_array(y, "y")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}; "
                         f"reshape a single feature with X.reshape(-1, 1)")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (n_samples, n_targets), got shape {y.shape}")
    return X, y


def lstsq(X, y, *, feature_names=None, target_names=None, fit_intercept: bool = True, refine: bool | None = None,
          rtol: float = RANK_RTOL, sample_weight=None) -> LstsqSolution:
    """The least-squares solution of ``X w + b ≈ y`` in float64 (weighted: minimising ``Σ w r²``).

    Parameters
    ----------
    X : array, tensor, pandas DataFrame or scipy.sparse matrix of shape (n_samples, n_features), any float dtype
    y : array, tensor, pandas Series or DataFrame of shape (n_samples, n_targets) or (n_samples,)
    feature_names, target_names : column names; default a DataFrame's columns and a named Series' name,
        else 'x' or 'x0', 'x1', ...; 'y' or 'y0', ...
    fit_intercept : fit ``b`` (else it is 0)
    refine : correct the QR solution by passes over the data in double-double (see ``refine``);
        None (default) refines when some coefficient's estimated correct digits are below
        ``TARGET_DIGITS`` (``needs_refinement``)
    rtol : relative tolerance on the scaled singular values for the rank decision
    sample_weight : array of shape (n_samples,), finite, >= 0, not all 0 (default: 1 each)
        weighted least squares; the loss is then ``Σ w r² / (Σ w · n_targets)``

    Returns
    -------
    LstsqSolution; rank deficiency gives the minimum-norm solution and a ``RankDeficiencyWarning``.
    A solution beyond float64's range (a column of values far below the targets') raises ``DataError``.
    """
    feature_names = _column_names(X) if feature_names is None else feature_names
    target_names = _column_names(y) if target_names is None else target_names
    if is_sparse(X):  # CSR, CSC, COO: block by block, never densified whole
        return sparse_lstsq(X, y, feature_names=feature_names, target_names=target_names, rtol=rtol,
                            fit_intercept=fit_intercept, refine=refine, sample_weight=sample_weight)
    X, y = check_xy(X, y)
    w = None if sample_weight is None else _weights(sample_weight, len(X))
    if not 0 <= rtol < 1:
        raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
    if is_wide(len(X) if w is None else int(np.count_nonzero(w)), X.shape[1]):  # the n × n side
        Y = y.reshape(len(y), -1)
        return wide_lstsq(X, Y, w, _names(feature_names, X.shape[1], "x", "feature_names"),
                          _names(target_names, Y.shape[1], "y", "target_names"), fit_intercept=fit_intercept, rtol=rtol)
    acc = QRAccumulator(X.shape[1], 1 if y.ndim == 1 else y.shape[-1], fit_intercept=fit_intercept).update(X, y, w)
    solution = acc.solve(feature_names=feature_names, target_names=target_names, rtol=rtol)
    chunks = [(X, y)] if w is None else [(X, y, w)]
    if refine is None:
        refine = needs_refinement(solution)
    return _refine(solution, lambda: chunks, MAX_PASSES) if refine else solution


def solve_dataset(data, **kw) -> LstsqSolution:
    """``lstsq`` on a ``torchlinreg.data.Dataset``, with its column names and sample weights."""
    if getattr(data, "sample_weight", None) is not None:
        kw.setdefault("sample_weight", data.sample_weight)
    return lstsq(data.X, data.y, feature_names=data.feature_names, target_names=data.target_names, **kw)


def sparse_lstsq(X, y, *, feature_names, target_names, fit_intercept: bool, refine: bool | None, rtol: float,
                 sample_weight) -> LstsqSolution:
    """``lstsq`` of a scipy.sparse ``X``: blocks of rows densified one at a time into the accumulator and,
    for the refinement, again on each pass; never the whole matrix (``sparse``). The arguments are ``lstsq``'s."""
    y = _as_array(y, "y")
    Y = y.reshape(len(y), -1)
    if X.ndim != 2 or len(Y) != X.shape[0]:
        raise ValueError(f"X (shape {X.shape}) must be 2-D with one row per target value; y has {len(Y)}")
    w = None if sample_weight is None else _weights(sample_weight, X.shape[0])
    acc = QRAccumulator(X.shape[1], Y.shape[1], fit_intercept=fit_intercept)
    for Xb, Yb, wb in row_blocks(X, Y, w):
        acc.update(Xb, Yb if y.ndim == 2 else Yb[:, 0], wb)
    solution = acc.solve(feature_names=_names(feature_names, X.shape[1], "x", "feature_names"),
                         target_names=_names(target_names, Y.shape[1], "y", "target_names"), rtol=rtol)
    if not (needs_refinement(solution) if refine is None else refine):
        return solution
    return _refine(solution, lambda: (b if w is not None else b[:2] for b in row_blocks(X, Y, w)), MAX_PASSES)
