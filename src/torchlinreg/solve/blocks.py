"""One block of rows into the running R factor: shifted exactly by column means, then, by its
conditioning, into the running Gram matrix (Cholesky QR), Cholesky QR twice, or Householder QR.

How a block is routed is told in the comment below; ``QRAccumulator`` (``accumulator``) calls
these block by block.
"""

from __future__ import annotations

import sys
from typing import Sequence
from warnings import catch_warnings, simplefilter

import numpy as np

from .kernels import shifted_gram, torch_in_use
from .numerics import MAX_MAGNITUDE, _check_values, _power_of_two, _triangularize

CHOLESKY_ONCE_BELOW = 1e3  # scaled block condition (2-norm): Cholesky QR's error eps·cond² < 2.2e-10
CHOLESKY_TWICE_BELOW = 1e6  # Cholesky QR twice is backward stable while eps·cond² ≪ 1; Householder above
_TINY_GRAM = 2.0 ** -960  # a Gram diagonal below rows × this may hold squares that underflowed (values below ~1e-145)


def _torch():
    """PyTorch for the small products of a block's route when the kernel forming its Gram matrix is
    PyTorch's (``kernels.torch_in_use``); None: NumPy's."""
    return torch_in_use()


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

    def arrays(self) -> list[np.ndarray]:
        return [self.X, self.y] if self.columns is None else list(self.columns)

    def shift_into(self, out, mu: np.ndarray, torch=None) -> None:
        """``out[:, :q] = [X, y] - mu``: ``out`` a tensor of shape (k, q + 1) when ``torch`` is given, else an array."""
        if torch is None:
            if self.columns is None:
                d, q = self.n_features, len(mu)
                np.subtract(self.X, mu[:d], out=out[:, :d])
                np.subtract(self.y, mu[d:], out=out[:, d:q])
            else:  # two calls, not one a column: a split's threads would wait on Python's lock between calls
                q = len(mu)
                np.stack(self.columns, axis=1, out=out[:, :q], casting="same_kind")
                np.subtract(out[:, :q], mu, out=out[:, :q])
            return
        if self.columns is None:
            d, q = self.n_features, len(mu)
            torch.sub(_tensor(self.X), torch.from_numpy(mu[:d]), out=out[:, :d])
            torch.sub(_tensor(self.y), torch.from_numpy(mu[d:]), out=out[:, d:q])
        else:
            q = len(mu)
            torch.stack([_tensor(c) for c in self.columns], dim=1, out=out[:, :q])
            out[:, :q].sub_(torch.from_numpy(mu))


def _tensor(a: np.ndarray):
    """A tensor sharing ``a``'s memory (only read), or a copy when PyTorch cannot view it."""
    import torch

    if a.flags.writeable and all(stride >= 0 for stride in a.strides):
        return torch.from_numpy(a)
    with catch_warnings():  # a read-only array (e.g. from pyarrow): only read below
        simplefilter("ignore", UserWarning)
        return torch.from_numpy(a if all(stride >= 0 for stride in a.strides) else np.ascontiguousarray(a))


@np.errstate(over="ignore", invalid="ignore", divide="ignore")  # overflow and NaN are diagnosed from the Gram
def _shifted_gram(rows: _Rows, w: np.ndarray | None, mu: np.ndarray, rows_before: int, *,
                  keep: bool = False, used: dict | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray | None]:
    """The Gram matrix of ``B = [C, s]``, ``B`` itself when ``keep`` (else None), and the exponents its
    columns were scaled by.

    ``B`` is kept only for a block that takes the R route, or one whose columns must be scaled:
    otherwise ``kernels.shifted_gram`` forms the Gram matrix tile by tile and ``B`` is never whole
    (``used`` gets the kernel it took, see there).
    A NaN or inf makes a Gram entry non-finite, and ``|x_j| ≤ |μ_j| + ‖C_j‖`` bounds the
    magnitudes (unweighted); only then, or with weights, are the values scanned. The exponents
    are None unless a column of tiny values was scaled up (``B_j`` is then ``C_j 2^e_j``).
    """
    k, q = len(rows), len(mu)
    B, G = _whole(rows, w, mu) if keep else (None, shifted_gram(rows, w, mu, used))
    diag = np.diagonal(G)
    if not np.isfinite(G).all() or w is not None or (np.abs(mu) + np.sqrt(diag[:q])).max() > MAX_MAGNITUDE:
        _check_values(*rows.parts(), rows_before)  # raises naming the row or column, or finds the values fine
    exponents = None
    low = np.flatnonzero(diag < k * _TINY_GRAM)
    if low.size:  # all-zero columns (constant in the block) too: only these columns are read
        if B is None:
            B, G = _whole(rows, w, mu)
        big = np.abs(B[:, low]).max(axis=0)
        low, big = low[big > 0], big[big > 0]
        if low.size:
            exponents = np.zeros(q + 1, dtype=np.int64)
            exponents[low] = -np.frexp(big)[1]  # the largest |value| to [0.5, 1)
            for j in low:
                np.ldexp(B[:, j], exponents[j], out=B[:, j])  # exact (a subnormal only gains bits)
            G = _gram(B if _torch() is None else _torch().from_numpy(B))
    return B, G, exponents


def _whole(rows: _Rows, w: np.ndarray | None, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``B = [C, s]`` of the whole block in a new array (laid out as the rows came), and its Gram matrix."""
    torch = _torch()
    B = np.empty((len(rows), len(mu) + 1), order="F" if rows.columns is not None else "C")
    Bt = B if torch is None else torch.from_numpy(B)  # the same memory
    rows.shift_into(Bt, mu, torch)
    q = len(mu)
    if w is None:
        B[:, q] = 1.0
    else:
        root = np.sqrt(w)
        B[:, :q] *= root[:, None]
        B[:, q] = root
    return B, _gram(Bt)


def _gram(B) -> np.ndarray:
    """``BᵀB`` as a float64 array, by whichever library holds ``B`` (one BLAS pass)."""
    G = B.T @ B
    return G if isinstance(G, np.ndarray) else G.numpy()


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
    torch = _torch()  # one library's BLAS in a pass: OpenBLAS's threads, woken between MKL's products, spin
    if torch is None:  # against them and halve their speed
        bound = float(np.linalg.norm(R1) * np.linalg.norm(_solve_upper(R1, np.eye(len(R1)))))  # R1⁻¹: c × c, small
    else:
        R1t = torch.from_numpy(R1)
        inverse = torch.linalg.solve_triangular(R1t, torch.eye(len(R1), dtype=R1t.dtype), upper=True)
        bound = float(torch.linalg.matrix_norm(R1t) * torch.linalg.matrix_norm(inverse))
    if bound <= CHOLESKY_ONCE_BELOW:  # (False for inf and NaN)
        return 1.0 / bound
    eigenvalues = np.linalg.eigvalsh(Gs)  # ascending; cond(R1)² = cond(Gs)
    return float(np.sqrt(max(eigenvalues[0], 0.0) / eigenvalues[-1]))


def _block_r(B: np.ndarray, cols: np.ndarray, scale: np.ndarray, R1: np.ndarray | None, rcond: float) -> np.ndarray:
    """R of ``B[:, cols] * scale``: Cholesky QR twice when ``R1`` (the first) allows it, else Householder."""
    torch = _torch()
    if torch is None:
        Bs = B[:, cols] * scale
        if R1 is not None and rcond * CHOLESKY_TWICE_BELOW >= 1:
            # Bs R1⁻¹ by one product with the small inverse (NumPy has no triangular solve); its error,
            # about cond(R1)·eps, is what a triangular solve's is, and the second Cholesky takes it out
            Q1 = Bs @ _solve_upper(R1, np.eye(len(R1)))
            return np.linalg.cholesky(Q1.T @ Q1).T @ R1
        return np.linalg.qr(Bs, mode="r")
    Bs = torch.from_numpy(B)[:, torch.from_numpy(cols)] * torch.from_numpy(scale)
    if R1 is not None and rcond * CHOLESKY_TWICE_BELOW >= 1:
        Q1 = torch.linalg.solve_triangular(torch.from_numpy(R1), Bs, upper=True, left=False)  # Bs R1⁻¹, one pass
        R2 = np.linalg.cholesky((Q1.T @ Q1).numpy()).T
        return R2 @ R1
    return torch.linalg.qr(Bs, mode="r")[1].numpy()


def _solve_upper(R: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``R⁻¹ B`` for a small upper-triangular ``R`` (c × c), by back substitution (backward stable).

    SciPy's ``solve_triangular`` without importing SciPy for it; ``B`` is small too (the identity).
    """
    X = np.array(B, dtype=np.float64, copy=True)
    for i in range(len(R) - 1, -1, -1):
        X[i] -= R[i, i + 1:] @ X[i + 1:]
        X[i] /= R[i, i]
    return X


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


def _unshift(R: np.ndarray, delta: np.ndarray, d: int, fit_intercept: bool) -> np.ndarray:
    """R of ``A + 1 deltaᵀ`` (the data columns moved by ``delta``) from R of ``A = [X, 1, y]``:
    column j gains ``delta_j`` times the column of ones (column ``d``). Not triangular; rounded."""
    if not fit_intercept or not np.any(delta):
        return R
    out = R.copy()
    data = np.r_[0:d, d + 1:R.shape[1]]
    out[:, data] += R[:, d:d + 1] * delta[None, :]
    return out
