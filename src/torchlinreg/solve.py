"""The exact least-squares optimum, by QR chunk by chunk, refined in double-double arithmetic.

Method
------
1. ``QRAccumulator`` keeps only the R factor of the augmented matrix ``A = [X, 1, y]`` in
   float64, never ``Xᵀ X`` of the raw columns. Rows arrive in blocks; each block is shifted
   by column means (exactly: the shift is carried in a small matrix, see "one block of rows"
   below) and, when the shifted, column-scaled block is well conditioned, its Gram matrix
   (one BLAS pass) joins a running Gram matrix that one Cholesky factorisation turns into R;
   other blocks are factored by Cholesky QR twice or Householder QR and stacked under the
   running R. Two accumulators merge by stacking their R factors, so rows may be split among
   chunks and processes in any order. Columns of very different magnitude (1e13 next to
   1e-3) need no care from the caller: scaling is by powers of two, hence exact; so is the
   scaling up of a column of values far below 1e-150, whose squares would underflow.
2. ``QRAccumulator.solve`` works on R alone. With an intercept, the column of ones is
   moved first and R re-triangularised: the rows below the first are then the R factor
   of the centred data ``[X - x̄, y - ȳ]``. Its feature columns are scaled to unit norm by
   powers of two (exact), and the SVD of that small ``d x d`` factor gives the rank, the
   coefficients, and, when the rank is deficient, the minimum-norm solution in the data's
   own units with the intercept outside the norm (scikit-learn's convention:
   ``b = ȳ - x̄·w``, a constant column gets weight 0), computed in the scaled units group
   by group of dependent features, so that it stays exact with scales 1e16 apart
   (``_MinNormGroup``). A solution beyond float64's range is refused (``DataError``).
3. ``refine`` makes passes over the data. Each pass computes the residual
   ``r = y - X w - b`` and the gradient ``Aᵀ r`` in double-double arithmetic (about 32
   significant digits, vectorised NumPy, the same on every platform) and corrects the
   parameters by the corrected semi-normal equations ``Rᵀ R δ = Aᵀ r``. A pass shrinks
   the error by a factor of about ``eps * cond(scaled design)``, so two or three passes
   give float64 accuracy even for a raw design of condition number 1e16, where
   ``numpy.linalg.lstsq`` keeps no correct digit (``tests/test_solve.py`` measures both
   against exact rational arithmetic). A pass costs one to two times the float64 QR of
   the same rows (``lstsq`` makes two on well-conditioned data); ``refine=False`` skips them.

Sample weights (weighted least squares, minimising ``Σ wᵢ rᵢ²``) scale each row of ``A``,
the column of ones included, by ``√wᵢ``; the centring above then uses the weighted means,
the refinement forms ``Aᵀ W r`` with ``W r`` in double-double from the unscaled rows, and
the loss is the weighted MSE ``Σ w r² / (Σ w · n_targets)``. A weight of 0 drops its row.

Rank is decided on the centred, column-scaled design: a singular value at most
``rtol`` (default ``RANK_RTOL``) times the largest counts as zero, and a centred column
whose norm is at most ``rtol`` times its raw norm is constant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Sequence
from warnings import catch_warnings, simplefilter, warn

import numpy as np

from .errors import ConvergenceWarning, DataError, RankDeficiencyWarning

# 1e6 x float64's eps: far above the rounding noise of QR over many chunks and of centring
# columns whose mean is up to ~1e4 times their spread, far below the smallest scaled singular
# value of a degree-10 polynomial design on raw x (about 6e-8 for x = 1..30).
RANK_RTOL = 1e-10
MAX_PASSES = 6  # refinement passes at most; two or three reach float64 accuracy
_EPS = np.finfo(np.float64).eps
_NULL_TOL = 1e-8  # a feature is unidentified when the null space (unit scaled basis) reaches it by more


# --- inputs -------------------------------------------------------------------------------

REFINE_ABOVE_CONDITION = 1e7  # below this the R-only solution already has ~10+ correct digits (eps·cond)
UPDATE_BLOCK_ENTRIES = 2 ** 22  # rows × columns per block inside update(): a 32 MB workspace, reused; fewer, larger BLAS calls
CHOLESKY_ONCE_BELOW = 1e3  # scaled block condition (2-norm): Cholesky QR's error eps·cond² < 2.2e-10
CHOLESKY_TWICE_BELOW = 1e6  # Cholesky QR twice is backward stable while eps·cond² ≪ 1; Householder above
MAX_MAGNITUDE = 1e150  # beyond this, squared residuals and sums of squares can overflow float64
_SCALED_GRADIENT_BELOW = 2.0 ** -200  # column norms below this (6e-61): refinement scales the columns, see _refine
_TINY_GRAM = 2.0 ** -960  # a Gram diagonal below rows × this may hold squares that underflowed (values below ~1e-145)


def _as_array(a, name: str, keep_float32: bool = False) -> np.ndarray:
    """A float64 NumPy copy or view of a NumPy array, torch tensor or nested list.

    With ``keep_float32``, float32 data stay float32 (a view): the caller converts block by block.
    """
    if hasattr(a, "detach"):  # a torch.Tensor, recognised without importing torch
        a = a.detach().cpu()
        a = (a if keep_float32 and str(a.dtype) == "torch.float32" else a.double()).numpy()
    try:
        if keep_float32 and isinstance(a, np.ndarray) and a.dtype == np.float32:
            return a
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc


def _shaped(X, y, n_features: int, n_targets: int, keep_float32: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``X`` of shape (k, n_features) and ``y`` of shape (k, n_targets), float64 (or float32 kept), shapes checked."""
    X, y = _as_array(X, "X", keep_float32), _as_array(y, "y", keep_float32)
    if y.ndim == 1:
        y = y[:, None]  # one target
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}), got {X.shape}")
    if y.ndim != 2 or y.shape[1] != n_targets:
        raise ValueError(f"y must have shape (n_samples, {n_targets}), got {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X has {X.shape[0]} rows but y has {y.shape[0]}")
    return X, y


def _check_values(X, y, first_row: int = 0) -> None:
    """Raise ``DataError`` naming the first row with NaN/inf, or a column whose squares would overflow.

    ``X`` and ``y`` are 2-D arrays, or lists of 1-D columns (checked one by one, not stacked).
    """
    for name, a in (("X", X), ("y", y)):
        columns = a if isinstance(a, list) else None
        if columns is None:  # NaN propagates to max/min: no n×d mask unless one is there
            finite = bool(np.isfinite(a.max()) and np.isfinite(a.min())) if a.size else True
        else:
            finite = all(np.isfinite(c.max()) and np.isfinite(c.min()) for c in columns if c.size)
        if not finite:
            bad = ~np.isfinite(a).all(axis=1) if columns is None else \
                np.logical_or.reduce([~np.isfinite(c) for c in columns])
            count = int(bad.sum())
            raise DataError(f"{name} has NaN or infinite values in {count} row{'s' * (count > 1)} (the first is "
                            f"row {first_row + int(np.argmax(bad))} of the chunk); drop or impute them before "
                            "fitting")
        if columns is None:
            if not a.size or float(max(a.max(), -a.min())) <= MAX_MAGNITUDE:  # float: no float32 overflow
                continue
            peaks = np.abs(a).max(axis=0)
        else:
            peaks = np.array([float(max(c.max(), -c.min())) if c.size else 0.0 for c in columns])
        if peaks.max() > MAX_MAGNITUDE:
            raise DataError(f"{name} column {int(np.argmax(peaks)) + 1} holds values up to {peaks.max():.3g}, "
                            f"whose squares overflow float64 (the limit is {MAX_MAGNITUDE:.0e}); rescale that "
                            "column, e.g. divide it by a power of ten")


def _chunk(X, y, n_features: int, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """Checked float64 ``X`` of shape (k, n_features) and ``y`` of shape (k, n_targets)."""
    X, y = _shaped(X, y, n_features, n_targets)
    _check_values(X, y)
    return X, y


def _weights(sample_weight, n_rows: int) -> np.ndarray:
    """Checked float64 sample weights of shape (n_rows,): finite and non-negative."""
    w = _as_array(sample_weight, "sample_weight")
    if w.shape != (n_rows,):
        raise ValueError(f"sample_weight must have shape ({n_rows},), one weight per row, got {w.shape}")
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"sample_weight has NaN or infinite values (the first in row {int(np.argmax(bad))}); "
                         f"give every row a finite weight >= 0")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(f"sample_weight has negative values (the first is {float(w[i])!r} in row {i}); "
                         f"weights must be >= 0 (a weight of 0 leaves its row out)")
    return w


def _unpack(chunk) -> tuple:
    """``(X, y, w)`` from a chunk ``(X, y)`` (``w`` None) or ``(X, y, sample_weight)``."""
    try:
        parts = tuple(chunk)
    except TypeError:
        parts = ()
    if len(parts) not in (2, 3):
        raise ValueError("each chunk must be a pair (X, y) or a triple (X, y, sample_weight)")
    return parts if len(parts) == 3 else (*parts, None)


def _names(names, count: int, stem: str, what: str) -> tuple[str, ...]:
    """Column names as ``Dataset`` makes them: given ones checked, else 'x' or 'x0', 'x1', ..."""
    if not names:
        return (stem,) if count == 1 else tuple(f"{stem}{i}" for i in range(count))
    names = tuple(str(name) for name in names)
    if len(names) != count:
        raise ValueError(f"{what} has {len(names)} names for {count} columns")
    if len(set(names)) != count:
        raise ValueError(f"{what} has duplicate names: {list(names)}")
    return names


def _power_of_two(v: np.ndarray) -> np.ndarray:
    """The power of two just above each positive ``v``: scaling by it is exact."""
    return np.ldexp(1.0, np.frexp(v)[1])


def _norms(A: np.ndarray) -> np.ndarray:
    """2-norms of the columns of ``A``, each scaled by a power of two first, so that no square underflows."""
    big = np.abs(A).max(axis=0, initial=0.0)
    unit = _power_of_two(np.where(big > 0, big, 1.0))
    return np.linalg.norm(A / unit, axis=0) * unit


def _triangularize(M: np.ndarray) -> np.ndarray:
    """R factor of ``M`` with a non-negative diagonal, so that it is unique for full-rank ``M``."""
    R = np.linalg.qr(M, mode="r")
    return R * np.where(np.diagonal(R) < 0, -1.0, 1.0)[:, None]


# --- one block of rows -------------------------------------------------------------------
#
# A block of rows enters shifted by column means ``μ``: with ``s = √w`` and
# ``C = √w ([X, y] - μ)``, ``A = √w [X, 1, y] = [C, s] T`` exactly, where ``T`` carries ``μ`` in
# the row of ``s`` (see ``_shift_map``). ``[C, s]`` with unit-scaled columns is about as well
# conditioned as the centred design, which is what decides how its R factor can be had:
#
# * condition at most ``CHOLESKY_ONCE_BELOW``: the Gram matrix ``[C, s]ᵀ[C, s]`` (one BLAS pass)
#   is added to a running Gram matrix, and one Cholesky factorisation at the end gives R
#   (Cholesky QR; error about eps·cond², under 1e-12). The condition number of a sum of
#   positive definite matrices is at most the largest of theirs, so the sum stays as good.
# * up to ``CHOLESKY_TWICE_BELOW``: Cholesky QR twice (one more pass over the block), which is
#   backward stable like Householder QR while eps·cond² ≪ 1; the block's R joins the running R.
# * above: Householder QR of the block.
#
# A block that fails the first test is first shifted again by its own means (the data may
# drift, e.g. rows sorted by a feature): the running Gram matrix is folded into R and the new
# means become the shift of the blocks that follow.
#
# Squares of values below ~1e-154 underflow. A column whose Gram diagonal is that small
# (``_TINY_GRAM``) is scaled in place by the power of two that brings its largest value to
# [0.5, 1), and the Gram matrix formed again; ``_shift_map`` undoes the scaling exactly on the
# block's R factor, and such a block always takes the R route (the running Gram matrix holds
# unscaled blocks only). Ordinary data never get here: the test is on the diagonal alone.

class _Rows:
    """A block of rows of ``[X, y]``: the matrices ``X`` (k, d) and ``y`` (k, m), or one 1-D array
    per column (a streamed chunk's columns, which go into the shifted block without first being
    copied into a matrix)."""

    def __init__(self, X: np.ndarray | None = None, y: np.ndarray | None = None,
                 columns: Sequence[np.ndarray] | None = None, n_features: int | None = None):
        self.X, self.y, self.columns = X, y, columns
        self.n_features = X.shape[1] if columns is None else n_features

    def __len__(self) -> int:
        return len(self.X) if self.columns is None else len(self.columns[0])

    def column(self, j: int) -> np.ndarray:
        if self.columns is not None:
            return self.columns[j]
        return self.X[:, j] if j < self.n_features else self.y[:, j - self.n_features]

    def rows(self, block: slice) -> _Rows:
        if self.columns is None:
            return _Rows(self.X[block], self.y[block])
        return _Rows(columns=[c[block] for c in self.columns], n_features=self.n_features)

    def parts(self) -> tuple:
        """``X`` and ``y`` as given: matrices, or lists of columns (for ``_check_values``)."""
        if self.columns is None:
            return self.X, self.y
        return list(self.columns[:self.n_features]), list(self.columns[self.n_features:])

    def means(self, w: np.ndarray | None) -> np.ndarray:
        if self.columns is None:
            X, y = self.X, self.y
            return (np.concatenate([X.mean(axis=0, dtype=np.float64), y.mean(axis=0, dtype=np.float64)])
                    if w is None else np.concatenate([w @ X, w @ y]) / w.sum())
        return np.array([c.mean(dtype=np.float64) if w is None else (w @ c) / w.sum() for c in self.columns])

    def shift_into(self, out, mu: np.ndarray) -> None:
        """``out[:, :q] = [X, y] - mu`` (``out`` a tensor of shape (k, q + 1))."""
        import torch

        if self.columns is None:
            d, q = self.n_features, len(mu)
            torch.sub(_tensor(self.X), torch.from_numpy(mu[:d]), out=out[:, :d])
            torch.sub(_tensor(self.y), torch.from_numpy(mu[d:]), out=out[:, d:q])
        else:
            for j, column in enumerate(self.columns):
                torch.sub(_tensor(column), float(mu[j]), out=out[:, j])


def _tensor(a: np.ndarray):
    """A tensor sharing ``a``'s memory (only read), or a copy when PyTorch cannot view it."""
    import torch

    if a.flags.writeable and all(stride >= 0 for stride in a.strides):
        return torch.from_numpy(a)
    with catch_warnings():  # a read-only array (e.g. from pyarrow): only read below
        simplefilter("ignore", UserWarning)
        return torch.from_numpy(a if all(stride >= 0 for stride in a.strides) else np.ascontiguousarray(a))


@np.errstate(over="ignore", invalid="ignore", divide="ignore")  # overflow and NaN are diagnosed from the Gram
def _shifted_gram(rows: _Rows, w: np.ndarray | None, mu: np.ndarray, first_row: int,
                  work: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``B = [C, s]`` written into ``work``, its Gram matrix, and the exponents its columns were scaled by.

    A NaN or inf makes a Gram entry non-finite, and ``|x_j| ≤ |μ_j| + ‖C_j‖`` bounds the
    magnitudes (unweighted); only then, or with weights, are the values scanned. The exponents
    are None unless a column of tiny values was scaled up (``B_j`` is then ``C_j 2^e_j``).
    """
    import torch  # PyTorch's BLAS runs these narrow passes about twice as fast as NumPy's

    k, q = len(rows), len(mu)
    B = work[:k]
    Bt = torch.from_numpy(B)  # the same memory
    rows.shift_into(Bt, mu)
    if w is None:
        B[:, q] = 1.0
    else:
        root = np.sqrt(w)
        Bt[:, :q] *= torch.from_numpy(root)[:, None]
        B[:, q] = root
    G = (Bt.T @ Bt).numpy()  # (q + 1, q + 1)
    diag = np.diagonal(G)
    if not np.isfinite(G).all() or w is not None or (np.abs(mu) + np.sqrt(diag[:q])).max() > MAX_MAGNITUDE:
        _check_values(*rows.parts(), first_row)  # raises naming the row or column, or finds the values fine
    exponents = None
    low = np.flatnonzero(diag < k * _TINY_GRAM)
    if low.size:  # all-zero columns (constant in the block) too: only these columns are read
        big = np.abs(B[:, low]).max(axis=0)
        low, big = low[big > 0], big[big > 0]
        if low.size:
            exponents = np.zeros(q + 1, dtype=np.int64)
            exponents[low] = -np.frexp(big)[1]  # the largest |value| to [0.5, 1)
            for j in low:
                np.ldexp(B[:, j], exponents[j], out=B[:, j])  # exact (a subnormal only gains bits)
            G = (Bt.T @ Bt).numpy()
    return B, G, exponents


def _exact_shift(rows: _Rows, w: np.ndarray | None, G: np.ndarray | None,
                 mu: np.ndarray | None, exponents: np.ndarray | None = None) -> np.ndarray:
    """The block's (weighted) column means of ``[X, y]``, from its Gram matrix when there is one
    (whose columns were scaled by ``2^exponents``, see ``_shifted_gram``).

    A column constant in the block takes its value exactly, so that its ``C_j`` is exactly zero
    (a column of rounding errors parallel to ``s`` would make ``[C, s]`` singular).
    """
    if G is None:
        with np.errstate(over="ignore", invalid="ignore"):
            means = rows.means(w)
    else:
        q = len(G) - 1
        means = mu + G[:q, q] / G[q, q] if exponents is None else \
            mu + np.ldexp(G[:q, q] / G[q, q], exponents[q] - exponents[:q])
    taken = np.flatnonzero(w) if w is not None else slice(None)
    for j in range(len(means)):
        column = rows.column(j)[taken]
        if len(column) and column[0] == column[-1] and (column == column[0]).all():
            means[j] = column[0]
    return means


def _drifted(G: np.ndarray) -> bool:
    """Whether some column's mean in the block is more than a standard deviation away from its shift
    (or the column is constant there): shifting by the block's own means would then help."""
    q = len(G) - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = G[:q, q] / G[q, q]  # block mean - shift
        variance = np.diagonal(G)[:q] / G[q, q] - offset ** 2
    return bool(np.any((offset ** 2 >= variance) & (offset != 0)))


def _scaled_cholesky(G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """Active columns (non-zero), their power-of-two scales, the Cholesky R of the scaled Gram matrix,
    and R's reciprocal 2-norm condition number (from the Gram matrix's eigenvalues: O(c³), no pass)."""
    diag = np.diagonal(G)
    cols = np.flatnonzero(diag > 0)
    scale = 1.0 / _power_of_two(np.sqrt(diag[cols]))  # exact scaling to about unit norm
    Gs = G[np.ix_(cols, cols)] * scale[:, None] * scale[None, :]
    try:
        R1 = np.linalg.cholesky(Gs).T
    except np.linalg.LinAlgError:
        return cols, scale, None, 0.0
    return cols, scale, R1, _reciprocal_condition(Gs, R1)


def _reciprocal_condition(Gs: np.ndarray, R1: np.ndarray) -> float:
    """``1 / cond₂(R1)`` where ``R1ᵀR1 = Gs``, or a lower bound of it that is close enough to route on.

    ``‖R1‖_F ‖R1⁻¹‖_F`` bounds the 2-norm condition number from above (by at most a factor of
    the column count) for one triangular inverse, an eighth of the cost of the eigenvalues;
    only a block whose bound is too large for the Gram route is looked at exactly.
    """
    import torch

    R1t = torch.from_numpy(R1)
    inverse = torch.linalg.solve_triangular(R1t, torch.eye(len(R1), dtype=R1t.dtype), upper=True)
    bound = float(torch.linalg.matrix_norm(R1t) * torch.linalg.matrix_norm(inverse))
    if bound <= CHOLESKY_ONCE_BELOW:  # (False for inf and NaN)
        return 1.0 / bound
    eigenvalues = np.linalg.eigvalsh(Gs)  # ascending; cond(R1)² = cond(Gs)
    return float(np.sqrt(max(eigenvalues[0], 0.0) / eigenvalues[-1]))


def _block_r(B: np.ndarray, cols: np.ndarray, scale: np.ndarray, R1: np.ndarray | None, rcond: float) -> np.ndarray:
    """R of ``B[:, cols] * scale``: Cholesky QR twice when ``R1`` (the first) allows it, else Householder."""
    import torch

    Bs = torch.from_numpy(B)[:, torch.from_numpy(cols)] * torch.from_numpy(scale)
    if R1 is not None and rcond * CHOLESKY_TWICE_BELOW >= 1:
        Q1 = torch.linalg.solve_triangular(torch.from_numpy(R1), Bs, upper=True, left=False)  # Bs R1⁻¹, one pass
        R2 = np.linalg.cholesky((Q1.T @ Q1).numpy()).T
        return R2 @ R1
    return torch.linalg.qr(Bs, mode="r")[1].numpy()


def _gram_r(G: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A factor ``R`` (active columns, scaled) with ``RᵀR`` = the scaled Gram matrix, even when it is singular."""
    cols, scale, R1, _ = _scaled_cholesky(G)
    if R1 is None:  # only for a sum that rounding made indefinite: take the PSD part
        Gs = G[np.ix_(cols, cols)] * scale[:, None] * scale[None, :]
        values, vectors = np.linalg.eigh(Gs)
        R1 = _triangularize(np.sqrt(np.clip(values, 0, None))[:, None] * vectors.T)
    return cols, scale, R1


def _shift_map(Rs: np.ndarray, cols: np.ndarray, scale: np.ndarray, mu: np.ndarray, d: int,
               fit_intercept: bool, exponents: np.ndarray | None = None) -> np.ndarray:
    """Rows for the running R of ``A = [C, s] T`` from a factor ``Rs`` of ``[C, s][:, cols] * 2^exponents * scale``."""
    q = len(mu)
    R = np.zeros((len(Rs), q + 1))  # fewer rows than columns when the block is short
    R[:, cols] = Rs / scale[None, :]
    if exponents is not None:
        R = np.ldexp(R, -exponents[None, :])  # exact unless the result is subnormal
    c = q + fit_intercept
    a_cols = np.r_[0:d, d + fit_intercept:c]  # data column j of A is C_j + μ_j s
    T = np.zeros((q + 1, c))
    T[np.arange(q), a_cols] = 1.0
    T[q, a_cols] = mu
    if fit_intercept:
        T[q, d] = 1.0  # the intercept column is s
    return R @ T


# --- the running R factor -------------------------------------------------------------------

class QRAccumulator:
    """Running R factor of the augmented matrix ``[X, 1, y]`` in float64 (the 1 column only with fit_intercept).

    Attributes
    ----------
    R : ndarray of shape (p, d + 1 + m), upper triangular, non-negative diagonal
        ``Rᵀ R = Aᵀ A`` for all rows seen so far; ``p = min(n_samples, d + 1 + m)``.
    n_samples : int
        Rows seen so far.
    sum_weights : float
        ``Σ w`` over the rows seen (``n_samples`` without sample weights).
    n_positive : int
        Rows seen whose weight is positive (``n_samples`` without sample weights).
    weighted : bool
        Whether any rows came with sample weights (each row of ``A`` is then scaled by ``√w``).
    """

    def __init__(self, n_features: int, n_targets: int = 1, *, fit_intercept: bool = True):
        for name, value in (("n_features", n_features), ("n_targets", n_targets)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.n_features = int(n_features)
        self.n_targets = int(n_targets)
        self.fit_intercept = bool(fit_intercept)
        self.n_samples = 0
        self.sum_weights = 0.0
        self.n_positive = 0
        self.weighted = False
        self._R = np.zeros((0, self.n_columns))  # R of the rows folded in so far
        self._G = None  # Gram matrix of [C, s] (shifted by _shift) of well-conditioned blocks not yet in _R
        self._shift = None  # column means of [X, y] that blocks are shifted by

    @property
    def R(self) -> np.ndarray:
        if self._G is not None:  # fold the running Gram matrix in: one Cholesky factorisation
            cols, scale, Rs = _gram_r(self._G)
            rows = _shift_map(Rs, cols, scale, self._shift, self.n_features, self.fit_intercept)
            self._R, self._G = _triangularize(np.vstack([self._R, rows])), None
        return self._R

    @R.setter
    def R(self, value: np.ndarray) -> None:
        self._R, self._G = np.asarray(value, dtype=np.float64), None

    @property
    def n_columns(self) -> int:
        return self.n_features + self.fit_intercept + self.n_targets

    def __repr__(self) -> str:
        return (f"QRAccumulator(n_features={self.n_features}, n_targets={self.n_targets}, "
                f"fit_intercept={self.fit_intercept}, n_samples={self.n_samples})")

    def update(self, X, y, sample_weight=None) -> QRAccumulator:
        """Add rows: ``X`` of shape (k, n_features), ``y`` of shape (k, n_targets) or (k,).

        ``sample_weight`` of shape (k,), finite and >= 0, weights the rows' squared residuals
        (default 1 each); their rows of ``[X, 1, y]`` enter R scaled by ``√w``.
        """
        X, y = _shaped(X, y, self.n_features, self.n_targets, keep_float32=True)
        layout = "F" if X.flags.f_contiguous and not X.flags.c_contiguous else "C"  # X's, for contiguous passes
        return self._add(_Rows(X, y), sample_weight, layout)

    def update_columns(self, columns: Sequence, sample_weight=None) -> QRAccumulator:
        """Add rows given column by column: the ``n_features`` feature columns, then the
        ``n_targets`` target columns, 1-D arrays of one length (as ``update``, without first
        copying them into a matrix: a streamed chunk's columns go straight into the shifted block).
        """
        columns = [_as_array(c, f"column {j}") for j, c in enumerate(columns)]
        if len(columns) != self.n_features + self.n_targets:
            raise ValueError(f"expected {self.n_features + self.n_targets} columns (n_features + n_targets), "
                             f"got {len(columns)}")
        if any(c.ndim != 1 or len(c) != len(columns[0]) for c in columns):
            raise ValueError(f"columns must be 1-D arrays of one length, got shapes {[c.shape for c in columns]}")
        return self._add(_Rows(columns=columns, n_features=self.n_features), sample_weight, "F")

    def _add(self, data: _Rows, sample_weight, layout: str) -> QRAccumulator:
        n = len(data)
        w = None if sample_weight is None else _weights(sample_weight, n)
        if n:
            rows = max(UPDATE_BLOCK_ENTRIES // (self.n_columns + 1), 4 * self.n_columns)
            work = np.empty((min(rows, n), self.n_features + self.n_targets + 1), order=layout)  # for every block
            for start in range(0, n, rows):
                block = slice(start, start + rows)
                self._absorb(data.rows(block), None if w is None else w[block], start, work)
            self.weighted = self.weighted or w is not None
            self.n_samples += n
            self.sum_weights += n if w is None else float(w.sum())
            self.n_positive += n if w is None else int(np.count_nonzero(w))
        return self

    def _absorb(self, rows: _Rows, w, first_row: int, work: np.ndarray) -> None:
        """One block of rows into the running Gram matrix or, when ill-conditioned, into R (see above)."""
        if w is not None and not w.any():  # rows of weight 0 change nothing, but must still be numbers
            _check_values(*rows.parts(), first_row)
            return
        if self._shift is None:
            self._shift = _exact_shift(rows, w, None, None)
        B, G, exponents = _shifted_gram(rows, w, self._shift, first_row, work)
        cols, scale, R1, rcond = _scaled_cholesky(G)
        if rcond * CHOLESKY_ONCE_BELOW < 1 and _drifted(G):  # shift by this block's own means and look again
            shift = _exact_shift(rows, w, G, self._shift, exponents)
            if np.any(shift != self._shift):
                self.R  # fold the Gram matrix of the old shift
                self._shift = shift
                B, G, exponents = _shifted_gram(rows, w, shift, first_row, work)
                cols, scale, R1, rcond = _scaled_cholesky(G)
        if rcond * CHOLESKY_ONCE_BELOW >= 1 and exponents is None:
            self._G = G if self._G is None else self._G + G
        else:
            block_rows = _shift_map(_block_r(B, cols, scale, R1, rcond), cols, scale, self._shift, self.n_features,
                                    self.fit_intercept, exponents)
            self._R = _triangularize(np.vstack([self._R, block_rows]))

    def merge(self, other: QRAccumulator) -> QRAccumulator:
        """Add the rows another accumulator has seen (from another chunk range or process)."""
        shape = (self.n_features, self.n_targets, self.fit_intercept)
        if not isinstance(other, QRAccumulator) or (other.n_features, other.n_targets, other.fit_intercept) != shape:
            raise ValueError(f"can only merge a QRAccumulator with (n_features, n_targets, fit_intercept) = {shape}, "
                             f"got {other!r}")
        if other.n_samples:
            self.R = _triangularize(np.vstack([self.R, other.R]))
            self.n_samples += other.n_samples
            self.sum_weights += other.sum_weights
            self.n_positive += other.n_positive
            self.weighted |= other.weighted
        return self

    def _params(self, coef, intercept) -> tuple[np.ndarray, np.ndarray]:
        """``coef`` (m, d) as in ``nn.Linear.weight`` and ``intercept`` (m,) as W (d, m), b (m,)."""
        d, m = self.n_features, self.n_targets
        coef = _as_array(coef, "coef")
        if coef.shape not in ((m, d),) + (((d,),) if m == 1 else ()):
            raise ValueError(f"coef must have shape ({m}, {d}), got {coef.shape}")
        b = np.zeros(m) if intercept is None else _as_array(intercept, "intercept").reshape(-1)
        if b.shape != (m,):
            raise ValueError(f"intercept must have shape ({m},), got {b.shape}")
        if not self.fit_intercept and np.any(b != 0):
            raise ValueError("this accumulator has no column of ones (fit_intercept=False), so it can only "
                             "evaluate intercept 0")
        return coef.reshape(m, d).T, b

    def loss(self, coef, intercept=None) -> float:
        """MSE over all ``n * m`` entries (as ``nn.MSELoss``) at any parameters, from R alone.

        With sample weights, the weighted MSE ``Σ w r² / (Σ w · m)``.
        ``‖X w + b - y‖² = ‖R v‖²`` with ``v = [w; b; -e_t]``; accurate to about
        ``eps * Σ_j ‖A_j‖ |v_j|``, which is plenty unless the residual is tiny.
        """
        if self.n_samples == 0:
            raise ValueError("no rows yet: call update(X, y) first")
        W, b = self._params(coef, intercept)
        rows = [W, b[None, :]] if self.fit_intercept else [W]
        V = np.vstack(rows + [-np.eye(self.n_targets)])  # (d + 1 + m, m): A @ V = X W + b - y
        return float(np.sum((self.R @ V) ** 2) / (self.sum_weights * self.n_targets))

    def solve(self, *, feature_names=None, target_names=None, rtol: float = RANK_RTOL) -> LstsqSolution:
        """The least-squares solution from R alone, without another pass over the data.

        Accurate to about ``eps * cond`` of the centred, column-scaled design; ``refine``
        brings it to float64 accuracy. Rank deficiency warns (``RankDeficiencyWarning``)
        with the columns involved, and the minimum-norm solution is returned.
        """
        if self.n_samples == 0:
            raise ValueError("no rows yet: call update(X, y) before solve()")
        if self.sum_weights == 0:
            raise ValueError(f"all {self.n_samples} sample weights are 0, so no row counts; "
                             f"give at least one row a positive weight")
        if not 0 <= rtol < 1:
            raise ValueError(f"rtol must be in [0, 1), got {rtol!r}")
        features = _names(feature_names, self.n_features, "x", "feature_names")
        targets = _names(target_names, self.n_targets, "y", "target_names")
        _check_normal(self.R, self.n_features, self.fit_intercept, features, targets)
        factor = _Factorization(self, rtol)
        W, b, sse = factor.minimizer()
        _check_range(W, b, features, factor.raw_norms)
        unidentified, messages = factor.deficiencies(features)
        for message in messages:
            warn(message, RankDeficiencyWarning, stacklevel=2)
        return LstsqSolution(
            coef=W.T.copy(), intercept=b, loss=float(sse.sum() / (self.sum_weights * self.n_targets)),
            loss_per_target=sse / self.sum_weights, rank=factor.rank, n_samples=self.n_samples,
            singular_values=factor.singular_values, condition_number=factor.condition_number,
            feature_names=features, target_names=targets, unidentified=unidentified,
            warnings=tuple(messages), sum_weights=self.sum_weights if self.weighted else None, _factor=factor)


def _check_normal(R: np.ndarray, d: int, fit_intercept: bool, features: tuple[str, ...],
                  targets: tuple[str, ...]) -> None:
    """Refuse a feature or target whose values all lie below float64's normal range (2.2e-308).

    Such subnormal numbers carry only a few significant bits (1e-319 has 14), and R, kept in the
    data's units, would hold the column with no more: the coefficients would lose digits. A
    column whose norm is normal loses nothing that counts (its subnormal values are below eps
    of its norm).
    """
    norms = _norms(R) if len(R) else np.zeros(R.shape[1])
    columns = [("feature", name, j) for j, name in enumerate(features)]
    columns += [("target", name, d + fit_intercept + t) for t, name in enumerate(targets)]
    for role, name, j in columns:
        if 0 < norms[j] < np.finfo(np.float64).tiny:
            raise DataError(f"{role} {name!r} holds only values below 2.2e-308 (norm {norms[j]:.3g}), float64's "
                            "subnormal range, where numbers keep a few significant bits; rescale it, e.g. "
                            "multiply it by 1e300, or check that the data are not damaged")


def _check_range(W: np.ndarray, b: np.ndarray, features: tuple[str, ...], raw_norms: np.ndarray) -> None:
    """Refuse a solution beyond float64's range: a coefficient of a column of values far below 1e-150."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(W).all(axis=1)
        if not bad.any() and np.isfinite(b).all():
            return
        j = int(np.argmax(bad)) if bad.any() else int(np.argmax(np.nan_to_num(np.abs(W), nan=np.inf).max(axis=1)))
    raise DataError(f"the least-squares coefficient of {features[j]!r} overflows float64: the column's values "
                    f"(norm {raw_norms[j]:.3g}) are too small for the targets; rescale that column, e.g. multiply "
                    f"it by a power of ten")


class _Factorization:
    """What the solution and its refinement need from R: centring, column scales, SVD, null space."""

    def __init__(self, acc: QRAccumulator, rtol: float):
        d, m, p = acc.n_features, acc.n_targets, acc.n_columns
        self.fit_intercept = acc.fit_intercept
        self.n = acc.n_positive  # rows that count: a zero weight leaves its row out
        self.zero_weight_rows = acc.n_samples - acc.n_positive
        self.sum_weights = acc.sum_weights  # ‖√w‖²: the squared norm of the column of ones
        R = np.zeros((p, p))
        R[:len(acc.R)] = acc.R  # zero rows change nothing while fewer rows than columns were seen
        raw_norms = _norms(R[:, :d])  # ‖X_j‖ (‖√w X_j‖ with weights)
        self.raw_norms = raw_norms
        if self.fit_intercept:
            Rp = np.linalg.qr(R[:, [d, *range(d), *range(d + 1, p)]], mode="r")  # R of [1, X, y]
            self.xbar, ybar = Rp[0, 1:d + 1] / Rp[0, 0], Rp[0, d + 1:] / Rp[0, 0]
            Rc = Rp[1:, 1:]  # R of the centred [X - x̄, y - ȳ] (weighted means, rows scaled by √w)
        else:
            self.xbar, ybar, Rc = np.zeros(d), np.zeros(m), R
        Rxx, self.Rxy, self.Ryy = Rc[:d, :d].copy(), Rc[:d, d:], Rc[d:, d:]
        norms = _norms(Rxx)  # ‖X_j - x̄_j‖
        self.constant = norms <= rtol * raw_norms  # what is left of such a column is rounding
        Rxx[:, self.constant] = 0.0
        self.scale = _power_of_two(np.where(self.constant, 1.0, norms))
        self.U, self.S, self.Vt = np.linalg.svd(Rxx / self.scale)
        # The intercept column scaled to unit norm, √w/‖√w‖, is orthogonal to the centred ones.
        sv = np.sort(np.concatenate([self.S, [1.0] * self.fit_intercept]))[::-1]
        self.singular_values = sv
        self.r = int(np.sum(self.S > rtol * sv[0])) if sv[0] > 0 else 0
        self.rank = self.r + self.fit_intercept
        self.ybar = ybar
        null = _split_constant(self.Vt[self.r:].T, self.constant)  # (d, d - r), scaled units
        self.null_scaled = null
        self.groups = self._groups(null)
        q = d + self.fit_intercept
        self.condition_number = _condition_number(R[:q, :q]) if self.rank == q else np.inf
        # Refinement forms the gradient of the scaled columns (exactly) when some are so small
        # that products x r could fall below float64's normal range.
        self.exponents = np.frexp(self.scale)[1] - 1 if self.scale.min() < _SCALED_GRADIENT_BELOW else None

    def _groups(self, null: np.ndarray) -> list[_MinNormGroup]:
        """The groups of dependent features for ``min_norm``, with the finest cleaning that keeps the fit.

        The null space is accurate to about eps times the condition number of the kept part, so
        entries below that are rounding. A dependency that reaches a column by little more (a
        1e13 column's 1e-10 fine structure standing in for a 1e-140 column) is as good as exact
        for the minimum norm in theory, but the moves it asks for are too large for the fit to
        survive their rounding: each candidate is tried on the row space (one solve) and kept
        only if the fit moves by at most 1e-5 (the refinement puts it back; the norm, flat at its
        minimum, moves by the square of that); else the scaled minimum norm ``u / scale``.
        """
        if self.r == len(self.scale):
            return []
        V = self.Vt[:self.r].T  # every class of equivalent solutions, once
        for tol in (min(_NULL_TOL, 1e3 * _EPS * self.S[0] / self.S[self.r - 1]) if self.r else _EPS, _NULL_TOL):
            self.groups = _null_groups(null, self.scale, tol)
            with np.errstate(all="ignore"):
                moved = self.min_norm(V) * self.scale[:, None] - V  # the null-space moves, scaled units
                fit = np.abs(self.S[:, None] * (self.Vt @ moved)).max(initial=0.0)
            if fit <= 1e-5 * self.S[0]:  # (False for NaN)
                return self.groups
        return []

    @np.errstate(over="ignore", invalid="ignore")  # a solution beyond float64's range is refused by _check_range
    def min_norm(self, u: np.ndarray) -> np.ndarray:
        """The minimum-norm ``W`` (d, m), data units, of the solutions equivalent to ``u`` (d, m), scaled units.

        Features the null space does not reach keep ``u_j / scale_j``; each group of features tied
        by the null space gets the minimum-norm solution of its equations (``_MinNormGroup``).
        """
        W = u / self.scale[:, None]
        for group in self.groups:
            W[group.cols] = group.solve(u[group.cols])
        return W

    @np.errstate(over="ignore", invalid="ignore")  # as min_norm
    def minimizer(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """W (d, m), b (m,) and the minimum sum of squared residuals per target (m,)."""
        r = self.r
        z = self.U.T @ self.Rxy  # (d, m): the centred targets in the left singular basis
        W = self.min_norm(self.Vt[:r].T @ (z[:r] / self.S[:r, None]))
        W[self.constant] = 0.0  # exactly, not rounding away from it
        b = self.ybar - self.xbar @ W
        sse = np.sum(self.Ryy ** 2, axis=0) + np.sum(z[r:] ** 2, axis=0)
        return W, b, sse

    def correction(self, gc: np.ndarray, gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Solve ``Rᵀ R δ = Aᵀ W r`` given the centred gradient ``(X - x̄)ᵀ W r`` (d, m) and ``Σ w r`` (m,);
        with ``exponents``, ``gc`` is already that of the scaled columns."""
        V, S = self.Vt[:self.r].T, self.S[:self.r, None]
        g = gc / self.scale[:, None] if self.exponents is None else gc.copy()
        g[self.constant] = 0.0  # Σ x r - x̄ Σ r of a constant column is rounding, up to 1e-32 |x̄| Σ |r|
        dW = self.min_norm(V @ ((V.T @ g) / S ** 2))
        dW[self.constant] = 0.0
        db = gb / self.sum_weights - self.xbar @ dW if self.fit_intercept else np.zeros_like(gb)
        return dW, db

    def scaled_norm(self, W: np.ndarray, b: np.ndarray) -> float:
        """Norm of the parameters in the units of the centred design with unit-norm columns."""
        parts = [(W * self.scale[:, None]).ravel()]
        if self.fit_intercept:
            parts.append(np.sqrt(self.sum_weights) * (b + self.xbar @ W))
        return float(_norms(np.concatenate(parts)[:, None])[0])

    def deficiencies(self, names: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
        """The unidentified features and one message per reason."""
        d = len(names)
        if self.r == d:
            return (), []
        involved = np.linalg.norm(self.null_scaled, axis=1) > _NULL_TOL
        unidentified = tuple(names[j] for j in np.flatnonzero(involved))
        n_params = d + self.fit_intercept
        if self.n < n_params:
            rows = "1 row" if self.n == 1 else f"{self.n} rows"
            rows += " with a positive weight" * (self.zero_weight_rows > 0)
            return unidentified, [f"{rows} for {n_params} parameters; the minimum-norm solution is returned"]
        what = "constant, so collinear with the intercept" if self.fit_intercept else "all zeros"
        messages = [f"column {names[j]!r} is {what}; its coefficient is set to 0"
                    for j in np.flatnonzero(self.constant)]
        keep = np.flatnonzero(involved & ~self.constant)
        for group in _dependent_groups(self.null_scaled[keep].T):
            if len(group) == 1:  # only when rtol is large: the column is nearly its own mean
                messages.append(f"column {names[keep[group[0]]]!r} is nearly {what.split(',')[0]}; "
                                f"the minimum-norm coefficients are returned")
            else:
                messages.append(f"columns {_join([names[keep[j]] for j in group])} are linearly dependent; "
                                f"the minimum-norm coefficients are returned")
        if not messages:  # the null space is numerical only and reaches no column clearly
            messages.append(f"the design has rank {self.rank} for {n_params} parameters; "
                            f"the minimum-norm solution is returned")
        return unidentified, messages


def _rref(N: np.ndarray, tol: float = _NULL_TOL) -> tuple[np.ndarray, np.ndarray]:
    """The non-zero rows of the reduced row echelon form of ``N`` (rows: null vectors, unit scaled basis)
    and their pivot columns; a column whose entries are all up to ``tol`` gets no pivot."""
    N = N.copy()
    pivots: list[int] = []
    for col in range(N.shape[1]):
        row = len(pivots)
        if row == len(N):
            break
        i = row + int(np.argmax(np.abs(N[row:, col])))
        if abs(N[i, col]) <= tol:
            continue
        N[[row, i]] = N[[i, row]]
        N[row] /= N[row, col]
        others = np.arange(len(N)) != row
        N[others] -= np.outer(N[others, col], N[row])
        pivots.append(col)
    return N[:len(pivots)], np.array(pivots, dtype=np.int64)


def _split_constant(null: np.ndarray, constant: np.ndarray) -> np.ndarray:
    """The null space ``null`` (d, k; orthonormal columns) with the constant columns' unit vectors
    split off exactly.

    A constant column is zeroed, so ``e_j`` lies in the null space, but the SVD returns any
    orthonormal basis of it: rounding mixes the constant columns into the other null vectors
    (1e-7 seen), and the minimum-norm groups then tie a constant column to the dependent ones.
    The other null vectors are the live rows' leading left singular vectors.
    """
    n_constant = int(constant.sum())
    if not n_constant or null.shape[1] == 0:
        return null
    live = ~constant
    k = null.shape[1] - n_constant  # the live columns' own dependencies
    out = np.zeros_like(null)
    if k > 0:
        out[live, :k] = np.linalg.svd(null[live], full_matrices=False)[0][:, :k]
    out[np.flatnonzero(constant), k + np.arange(n_constant)] = 1.0
    return out


def _supports(N: np.ndarray, tol: float = _NULL_TOL) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """``N``'s reduced row echelon form with entries up to ``tol`` times their row's largest set to 0
    (rounding), its pivot columns, and the groups of columns its rows tie together."""
    N, pivots = _rref(N, tol)
    small = np.abs(N) <= tol * np.abs(N).max(axis=1, initial=0.0, keepdims=True)
    small[np.arange(len(pivots)), pivots] = False
    N[small] = 0.0
    groups: list[set[int]] = []
    for row in N:
        support = set(np.flatnonzero(row).tolist())
        for g in [g for g in groups if g & support]:
            support |= g
            groups.remove(g)
        groups.append(support)
    return N, pivots, sorted(sorted(g) for g in groups)


def _dependent_groups(N: np.ndarray) -> list[list[int]]:
    """Groups of columns tied together by the null vectors (rows of ``N``), via the reduced row echelon form."""
    return _supports(N)[2]


def _null_groups(null: np.ndarray, scale: np.ndarray, tol: float) -> list[_MinNormGroup]:
    """The features tied together by the null space (columns of ``null``, scaled units), group by group.

    The null space is put in reduced row echelon form with the features in order of scale, the
    smallest first; what is left below ``tol`` (the null space's rounding) is taken as exactly
    0: features of large scale that depend on each other alone (1e13 duplicates next to 1e-3
    columns) keep exactly that, while a dependency that reaches a small-scale column only by
    the ratio of the scales (1e-9 for 1e-150 next to 1e-141) is kept whole.
    """
    if null.shape[1] == 0:
        return []
    order = np.argsort(scale, kind="stable")
    rows, pivots, groups = _supports(null.T[:, order], tol)
    out = []
    for group in groups:
        cols = np.array(group)  # positions in `order`, ascending
        mine = np.abs(rows[:, cols]).sum(axis=1) > 0
        out.append(_MinNormGroup(order[cols], rows[mine][:, cols], np.searchsorted(cols, pivots[mine]),
                                 scale[order[cols]]))
    return out


class _MinNormGroup:
    """Minimum-norm coefficients, in data units, of a group of features tied together by the null space.

    In scaled units ``u = D w`` (``D``: the column scales, powers of two) the equivalent solutions
    are ``u + Σ c_i a_i`` over the echelon rows ``a_i = e_{p_i} + Σ_j a_ij e_j`` (``j``: the free
    features, of scale at least the pivot's ``s_{p_i}``); ``τ_j = u_j - Σ_i a_ij u_{p_i}`` is the
    same for all. With the pivots' coefficients ``t`` as the unknowns the norm to minimise is
    ``‖t‖² + ‖A t + τ / s‖²``, ``A_ji = a_ij s_{p_i} / s_j`` (at most ``|a_ij|``): least squares
    on ``[I; A]``, by Householder QR. Each reflection starts at its pivot's row and reaches a
    free row ``j`` by ``s_{p_i} / s_j`` only, so rounding stays at each row's own scale: every
    ``u_j`` is accurate to the rounding of ``u``, for a 1e13 column as for a 1e-3 one, and a
    small pivot's coefficient comes out directly, not as a difference. (A projection in data
    units is accurate to the largest coefficient only; ``x̄ · w`` then multiplies a 1e-60 error
    in a 1e147 column's coefficient by that column's mean.)
    """

    def __init__(self, cols: np.ndarray, rows: np.ndarray, pivots: np.ndarray, scale: np.ndarray):
        self.cols, self.pivots = cols, pivots
        self.free = np.setdiff1d(np.arange(len(cols)), pivots)
        self.a = rows[:, self.free]  # (k, free)
        self.free_scale = scale[self.free]
        exponent = np.frexp(scale)[1]
        # [I; A], A exact: a_ij times a power of two (0 where it underflows: a negligible term)
        self.B = np.vstack([np.eye(len(pivots)),
                            np.ldexp(self.a, exponent[pivots][:, None] - exponent[self.free][None, :]).T])

    def solve(self, u: np.ndarray) -> np.ndarray:
        """The minimum-norm ``w`` (|g|, m), data units, equivalent to ``u`` (|g|, m), scaled units."""
        from scipy.linalg import solve_triangular

        k, free = len(self.pivots), len(self.free)
        c = -(u[self.free] - self.a.T @ u[self.pivots]) / self.free_scale[:, None]  # -τ / s
        if not np.isfinite(c).all():  # beyond float64: refused by _check_range (LAPACK must not see an inf)
            t = np.full((k, u.shape[1]), np.nan)
        elif free:
            R = np.linalg.qr(np.hstack([self.B, np.vstack([np.zeros((k, u.shape[1])), c])]), mode="r")
            t = solve_triangular(R[:k, :k], R[:k, k:], check_finite=False)
        else:  # the data do not reach these features: their coefficients are 0
            t = np.zeros((k, u.shape[1]))
        w = np.empty_like(u)
        w[self.pivots] = t
        w[self.free] = self.B[k:] @ t - c
        return w


def _join(names: list[str], limit: int = 8) -> str:
    """``'a' and 'b'``, ``'a', 'b' and 'c'``; long lists end in ``and N more``."""
    quoted = [repr(name) for name in names]
    if len(quoted) > limit:
        return ", ".join(quoted[:limit]) + f" and {len(quoted) - limit} more"
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _condition_number(R: np.ndarray) -> float:
    """2-norm condition number of the design whose R factor is ``R`` (square, upper triangular).

    ``‖R⁻¹‖`` is taken from the column-scaled factor, ``R⁻¹ = D⁻¹ (R D⁻¹)⁻¹``, so that columns
    of very different magnitude do not limit its accuracy.
    """
    if not np.all(np.diagonal(R)):
        return np.inf
    scale = _power_of_two(_norms(R))
    R, scale = R / scale.max(), scale / scale.max()  # the same condition number; tiny columns do not overflow R⁻¹
    with np.errstate(all="ignore"):
        try:
            inverse = np.linalg.inv(R / scale) / scale[:, None]
        except np.linalg.LinAlgError:
            return np.inf
        if not np.isfinite(inverse).all():  # beyond float64 (LAPACK must not see an inf: it prints to stderr)
            return np.inf
        cond = float(np.linalg.norm(R, 2) * np.linalg.norm(inverse, 2))
    return cond if np.isfinite(cond) else np.inf


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
    _factor: _Factorization | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        coef = {t: dict(zip(self.feature_names[:5], np.round(row[:5], 6).tolist()))
                for t, row in zip(self.target_names[:3], self.coef)}
        return (f"LstsqSolution(coef={coef}{' ...' if self.coef.shape[1] > 5 else ''}, "
                f"intercept={np.round(self.intercept[:3], 6).tolist()}, loss={self.loss:.6g}, rank={self.rank}, "
                f"n_samples={self.n_samples}, condition_number={self.condition_number:.3g}, "
                f"warnings={len(self.warnings)})")

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
        if self.sum_weights is not None:
            record["sum_weights"] = float(self.sum_weights)
        return record


# --- refinement: one pass over the data per step, in double-double -------------------------
# A double-double value is a pair (hi, lo) of float64 arrays standing for hi + lo.

_BLOCK_ENTRIES = 1 << 16  # entries of X (times targets) handled at once in a pass
_SPLITTER = 134217729.0  # 2**27 + 1: splits a float64 into halves whose products are exact (Dekker)


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _split_wide(a):
    """``_split`` for values up to float64's largest (coefficients of tiny columns): those above 2^995,
    where ``_SPLITTER * a`` overflows, are split 2^54 lower and scaled back (exact)."""
    big = np.abs(a) > 2.0 ** 995
    if not big.any():
        return _split(a)
    unit = np.where(big, 2.0 ** 54, 1.0)
    hi, lo = _split(a / unit)
    return hi * unit, lo * unit


def _two_sum(a, b):
    """``s + e == a + b`` exactly (Knuth)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _two_prod(a, a_split, b, b_split):
    """``p + e == a * b`` exactly (Dekker), given ``_split`` of both."""
    (ah, al), (bh, bl) = a_split, b_split
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_add(xh, xl, yh, yl):
    s, e = _two_sum(xh, yh)
    e = e + (xl + yl)
    h = s + e
    return h, e - (h - s)


def _dd_sum(h, l):
    """Double-double sum over axis 0, pairwise."""
    while len(h) > 1:
        if len(h) % 2:
            h, l = h.copy(), l.copy()
            h[0], l[0] = _dd_add(h[0], l[0], h[-1], l[-1])
            h, l = h[:-1], l[:-1]
        h, l = _dd_add(h[0::2], l[0::2], h[1::2], l[1::2])
    return h[0], l[0]


def _block_sums(X, y, W, W_split, b, w=None, exponents=None):
    """Double-double ``Σ w r²`` (m,) and ``[X, 1]ᵀ W r`` (d + 1, m) over a block of rows, ``r = y - X W - b``.

    ``w`` (k,) are the rows' sample weights (all 1 when None). With ``exponents`` (d,), the
    gradient is of the columns scaled by ``2^-exponents``: ``[X 2^-e, 1]ᵀ W r``.
    """
    X1 = np.hstack([X, np.ones((len(X), 1))])[:, :, None]  # (k, d + 1, 1); the 1 gives Σ r
    Xs = _split(X1)
    p, e = _two_prod(X1[:, :-1], (Xs[0][:, :-1], Xs[1][:, :-1]), W[None], (W_split[0][None], W_split[1][None]))
    fit = _dd_sum(np.moveaxis(p, 1, 0), np.moveaxis(e, 1, 0))  # Σ_j X_j W_j, (k, m)
    rh, rl = _dd_add(*_dd_add(y, 0.0, -fit[0], -fit[1]), -b, 0.0)
    r_split = _split(rh)
    if w is None:
        gh, gl, g_split = rh, rl, r_split  # the residual as the gradient weights it
    else:
        w = w[:, None]
        gh, e = _two_prod(w, _split(w), rh, r_split)  # w r, exactly, plus w times the low part
        gl, g_split = e + w * rl, _split(gh)
    if exponents is not None:  # exact, and no product x r of a tiny column underflows
        X1 = np.ldexp(X1, -np.append(exponents, 0)[None, :, None])
        Xs = _split(X1)
    p, e = _two_prod(X1, Xs, gh[:, None], (g_split[0][:, None], g_split[1][:, None]))  # (k, d + 1, m)
    return _dd_sum(*_two_prod(rh, r_split, gh, g_split)), _dd_sum(p, e + X1 * gl[:, None])


PassSums = tuple  # (n, Σ w, Σ w r² (m,), (hi, lo) of Xᵀ W r (d, m), (hi, lo) of Σ w r (m,))


def add_pass_sums(a: PassSums, b: PassSums) -> PassSums:
    """The sums of a refinement pass over the rows of ``a`` and of ``b`` (double-doubles added as such)."""
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], _dd_add(*a[3], *b[3]), _dd_add(*a[4], *b[4]))


def _residual_pass(W, b, chunks: Iterable, d: int, m: int, exponents=None) -> PassSums:
    """One pass: rows, ``Σ w``, ``Σ w r²`` (m,), then ``Xᵀ W r`` (d, m) and ``Σ w r`` (m,) as double-doubles.

    With ``exponents``, ``Xᵀ W r`` is of the columns scaled by ``2^-exponents`` (see ``_block_sums``).
    """
    n, sum_w = 0, 0.0
    sse = (np.zeros(m), np.zeros(m))
    G = (np.zeros((d + 1, m)), np.zeros((d + 1, m)))
    W_split = _split_wide(W)
    rows = max(64, _BLOCK_ENTRIES // ((d + 1) * m))  # rows per block: the temporaries stay in cache
    for chunk in chunks:
        X, y, w = _unpack(chunk)
        X, y = _chunk(X, y, d, m)
        w = None if w is None else _weights(w, len(X))
        for start in range(0, len(X), rows):
            block = slice(start, start + rows)
            block_sse, block_G = _block_sums(X[block], y[block], W, W_split, b, None if w is None else w[block],
                                             exponents)
            sse, G = _dd_add(*sse, *block_sse), _dd_add(*G, *block_G)
        n += len(X)
        sum_w += len(X) if w is None else float(w.sum())
    return n, sum_w, sse[0] + sse[1], (G[0][:d], G[1][:d]), (G[0][d], G[1][d])


def _pass_source(chunks) -> Callable[[], Iterable]:
    """A function giving a fresh iterable of ``(X, y)`` or ``(X, y, sample_weight)`` chunks for every pass."""
    if callable(chunks):
        return chunks
    if iter(chunks) is chunks:
        raise ValueError("chunks is a one-shot iterator, but refinement reads the data once per pass: "
                         "pass a list of (X, y) or (X, y, sample_weight) chunks or a function that returns a "
                         "fresh iterator")
    return lambda: chunks


def refine(solution: LstsqSolution, chunks, *, max_passes: int = MAX_PASSES,
           combine: Callable[[PassSums], PassSums] | None = None) -> LstsqSolution:
    """Refine a solution by corrected semi-normal equations, one pass over the data per step.

    Parameters
    ----------
    solution : from ``QRAccumulator.solve`` (or ``lstsq``) on the same rows
    chunks : a list of ``(X, y)`` chunks, or ``(X, y, sample_weight)`` for a weighted fit, or a
        function returning a fresh iterable of them (called once per pass), holding exactly the
        rows (and weights) the solution was fitted on
    max_passes : passes at most; refinement stops early once a correction is below rounding
    combine : for rows split among processes: maps this process's sums of a pass to the sums
        over all processes (``torchlinreg.distributed.sum_pass``); every process then takes the
        same steps. ``chunks`` are then this process's rows only.

    Returns
    -------
    LstsqSolution with refined ``coef`` and ``intercept``, and ``loss`` measured in the last pass.
    """
    if solution._factor is None:
        raise ValueError("this solution carries no factorization; make it with QRAccumulator.solve or lstsq")
    if isinstance(max_passes, bool) or not isinstance(max_passes, int) or max_passes < 1:
        raise ValueError(f"max_passes must be a positive integer, got {max_passes!r}")
    return _refine(solution, _pass_source(chunks), max_passes, combine)


def _refine(solution: LstsqSolution, source: Callable[[], Iterable], max_passes: int,
            combine: Callable[[PassSums], PassSums] | None = None) -> LstsqSolution:
    factor = solution._factor
    W, b = solution.coef.T.copy(), solution.intercept.copy()
    d, m = W.shape
    previous, done = np.inf, False
    for k in range(max_passes):
        sums = _residual_pass(W, b, source(), d, m, factor.exponents)
        n, sum_w, sse, G, gb = sums if combine is None else combine(sums)
        if n != solution.n_samples:
            raise ValueError(f"the chunks hold {n} rows but the solution was fitted on {solution.n_samples}; "
                             f"refine on the same data")
        if abs(sum_w - factor.sum_weights) > 1e-9 * factor.sum_weights:  # more than a different summation order
            raise ValueError(f"the chunks' sample weights sum to {sum_w:.12g} but the solution was fitted with "
                             f"weights summing to {factor.sum_weights:.12g}; refine on the same (X, y, "
                             f"sample_weight) chunks")
        if factor.fit_intercept:  # (X - x̄)ᵀ r = Xᵀ r - x̄ Σ r, still in double-double
            xbar = (factor.xbar if factor.exponents is None else np.ldexp(factor.xbar, -factor.exponents))[:, None]
            p, e = _two_prod(xbar, _split(xbar), gb[0][None, :], _split(gb[0][None, :]))
            gc = np.add(*_dd_add(*G, -p, -(e + xbar * gb[1][None, :])))
        else:
            gc = G[0] + G[1]
        dW, db = factor.correction(gc, gb[0] + gb[1])
        step = factor.scaled_norm(dW, db)
        if not np.isfinite(step):
            break
        # Done when no coefficient moves by more than its last bits, or when the steps stop
        # shrinking (the error is then at the rounding floor: each pass shrinks it by ~eps*cond).
        # A coefficient that is zero has no last bits: a step below the rounding of the whole
        # solution (or of the targets, when the solution is near zero) is done too.
        scale = max(factor.scaled_norm(W, b), float(np.sqrt(sse.sum() / factor.sum_weights)))
        done = bool(np.all(np.abs(dW) <= 2 * _EPS * np.abs(W)) and np.all(np.abs(db) <= 2 * _EPS * np.abs(b))
                    or step > 0.5 * previous or step <= 2 * _EPS * scale)
        if step <= previous and (done or k + 1 < max_passes):  # else the loss of the last pass would not match
            W, b = W + dW, b + db  # a last, tiny correction moves the loss by less than its rounding
            _check_range(W, b, solution.feature_names, factor.raw_norms)
        if done:
            break
        previous = step
    messages = solution.warnings
    if not done or step > 1e-8 * scale:
        message = (f"iterative refinement did not converge in {max_passes} passes; the coefficients may "
                   f"have fewer than 8 correct digits (the design is close to rank-deficient: raise rtol)")
        warn(message, ConvergenceWarning, stacklevel=3)
        messages = messages + (message,)
    return replace(solution, coef=W.T.copy(), intercept=b, loss=float(sse.sum() / (factor.sum_weights * m)),
                   loss_per_target=sse / factor.sum_weights, warnings=messages)


# --- one call ---------------------------------------------------------------------------------

def lstsq(X, y, *, feature_names=None, target_names=None, fit_intercept: bool = True, refine: bool | None = None,
          rtol: float = RANK_RTOL, sample_weight=None) -> LstsqSolution:
    """The least-squares solution of ``X w + b ≈ y`` in float64 (weighted: minimising ``Σ w r²``).

    Parameters
    ----------
    X : array or tensor of shape (n_samples, n_features), any float dtype
    y : array or tensor of shape (n_samples, n_targets) or (n_samples,)
    feature_names, target_names : column names (default 'x' or 'x0', 'x1', ...; 'y' or 'y0', ...)
    fit_intercept : fit ``b`` (else it is 0)
    refine : correct the QR solution by passes over the data in double-double (see ``refine``);
        None (default) refines when the condition number is above ``REFINE_ABOVE_CONDITION``
    rtol : relative tolerance on the scaled singular values for the rank decision
    sample_weight : array of shape (n_samples,), finite, >= 0, not all 0 (default: 1 each)
        weighted least squares; the loss is then ``Σ w r² / (Σ w · n_targets)``

    Returns
    -------
    LstsqSolution; rank deficiency gives the minimum-norm solution and a ``RankDeficiencyWarning``.
    A solution beyond float64's range (a column of values far below the targets') raises ``DataError``.
    """
    X, y = _as_array(X, "X"), _as_array(y, "y")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}; "
                         f"reshape a single feature with X.reshape(-1, 1)")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D (n_samples, n_targets), got shape {y.shape}")
    w = None if sample_weight is None else _weights(sample_weight, len(X))
    acc = QRAccumulator(X.shape[1], 1 if y.ndim == 1 else y.shape[-1], fit_intercept=fit_intercept).update(X, y, w)
    solution = acc.solve(feature_names=feature_names, target_names=target_names, rtol=rtol)
    chunks = [(X, y)] if w is None else [(X, y, w)]
    if refine is None:
        refine = needs_refinement(solution)
    return _refine(solution, lambda: chunks, MAX_PASSES) if refine else solution


def needs_refinement(solution: LstsqSolution) -> bool:
    """Whether refinement passes pay: the design is ill-conditioned enough for the R-only
    solution to lose digits (its error grows like eps times the condition number)."""
    return not solution.condition_number < REFINE_ABOVE_CONDITION  # inf (singular) refines too


def solve_dataset(data, **kw) -> LstsqSolution:
    """``lstsq`` on a ``torchlinreg.data.Dataset``, with its column names and sample weights."""
    if getattr(data, "sample_weight", None) is not None:
        kw.setdefault("sample_weight", data.sample_weight)
    return lstsq(data.X, data.y, feature_names=data.feature_names, target_names=data.target_names, **kw)
