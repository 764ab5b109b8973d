"""Rank, null space and minimum norm, from R alone: what ``QRAccumulator.solve`` computes.

``QRAccumulator.solve`` works on R alone. With an intercept, the column of ones is
moved first and R re-triangularised: the rows below the first are then the R factor
of the centred data ``[X - x̄, y - ȳ]``. Its feature columns are scaled to unit norm by
powers of two (exact), and the SVD of that small ``d x d`` factor gives the rank, the
coefficients, and, when the rank is deficient, the minimum-norm solution in the data's
own units with the intercept outside the norm (scikit-learn's convention:
``b = ȳ - x̄·w``, a constant column gets weight 0), computed in the scaled units group
by group of dependent features, so that it stays exact with scales 1e16 apart
(``_MinNormGroup``). A solution beyond float64's range is refused (``DataError``).

Rank is decided on the centred, column-scaled design: a singular value at most
``rtol`` (default ``RANK_RTOL``) times the largest counts as zero. A column is constant when
all its values are equal, exactly (``QRAccumulator.varies``); R is that of the rows shifted by
the first counted row, so the decisions see the columns' spread, not their magnitude (1e18 + i).
Only an R given without that knowledge (``QRAccumulator.R = ...``) falls back to calling
constant a centred column whose norm is at most ``rtol`` times its raw norm.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .doubledouble import _dd_sum, _split, _split_wide, _two_prod, _two_sum
from .numerics import _EPS, _norms, _power_of_two

# 1e6 x float64's eps: far above the rounding noise of QR over many chunks and of centring
# columns whose mean is up to ~1e4 times their spread, far below the smallest scaled singular
# value of a degree-10 polynomial design on raw x (about 6e-8 for x = 1..30).
RANK_RTOL = 1e-10
_NULL_TOL = 1e-8  # a feature is unidentified when the null space (unit scaled basis) reaches it by more
_SCALED_GRADIENT_BELOW = 2.0 ** -200  # column norms below this (6e-61): refinement scales the columns, see refinement._refine


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


@np.errstate(over="ignore", invalid="ignore")  # a W beyond float64 is refused by _check_range
def _affine(constants: list[np.ndarray], rows: list[np.ndarray], W: np.ndarray) -> np.ndarray:
    """``Σ constants + Σ_k rows[k] @ W`` (m,) in double-double, rounded once: the intercept of data
    far from zero, ``ȳ - x̄·w``, is a difference of terms up to 1e18 times larger than itself."""
    if not np.isfinite(W).all():
        return sum(constants) + sum(r @ W for r in rows)
    W_split = _split_wide(W)
    hi, lo = [np.atleast_2d(c) for c in constants], [np.zeros((1, W.shape[1]))] * len(constants)
    for r in rows:
        p, e = _two_prod(r[:, None], _split(r[:, None]), W, W_split)  # (d, m), exact
        hi.append(p)
        lo.append(e)
    h, l = _dd_sum(np.vstack(hi), np.vstack(lo))
    return h + l


class _Factorization:
    """What the solution and its refinement need from R: centring, column scales, SVD, null space.

    ``R`` is a ``QRAccumulator``'s factor of ``[X, 1, y]`` (the 1 column only with ``fit_intercept``),
    ``n_samples`` its rows, ``n_positive`` those of positive weight and ``sum_weights`` their ``Σ w``.
    """

    def __init__(self, R: np.ndarray, n_features: int, *, fit_intercept: bool, n_samples: int, n_positive: int,
                 sum_weights: float, rtol: float, raw: np.ndarray | None = None, reference: np.ndarray | None = None,
                 varies: np.ndarray | None = None):
        """``R``: of ``[X - ref_x, 1, y - ref_y]`` (``reference``; 0 when None), ``raw`` that of ``[X, 1, y]``
        (default ``R``); ``varies``: which columns of ``[X, y]`` hold two different values (None: decide
        from R, to its rounding)."""
        p = R.shape[1]
        d, m = n_features, p - n_features - fit_intercept
        self.fit_intercept = fit_intercept
        self.n = n_positive  # rows that count: a zero weight leaves its row out
        self.zero_weight_rows = n_samples - n_positive
        self.sum_weights = sum_weights  # ‖√w‖²: the squared norm of the column of ones
        R = _square(R, p)
        raw = R if raw is None else _square(raw, p)
        raw_norms = _norms(raw[:, :d])  # ‖X_j‖ (‖√w X_j‖ with weights)
        self.raw_norms = raw_norms
        reference = np.zeros(d + m) if reference is None or not fit_intercept else reference
        if self.fit_intercept:
            Rp = np.linalg.qr(R[:, [d, *range(d), *range(d + 1, p)]], mode="r")  # R of [1, X', y']
            xbar, ybar = Rp[0, 1:d + 1] / Rp[0, 0], Rp[0, d + 1:] / Rp[0, 0]  # of the shifted columns
            Rc = Rp[1:, 1:]  # R of the centred [X - x̄, y - ȳ] (weighted means, rows scaled by √w)
        else:
            xbar, ybar, Rc = np.zeros(d), np.zeros(m), R
        self.xbar, self.xbar_lo = _two_sum(reference[:d], xbar)  # x̄ rounded, and exactly as a pair
        self._ybar_parts = list(_two_sum(reference[d:], ybar))
        ybar_hi = self._ybar_parts[0]
        Rxx, self.Rxy, self.Ryy = Rc[:d, :d].copy(), Rc[:d, d:], Rc[d:, d:]
        norms = _norms(Rxx)  # ‖X_j - x̄_j‖
        # A column is constant when all its values are equal (exactly); else when, without that
        # knowledge, what is left of it after centring is rounding.
        self.constant = ~varies[:d] if varies is not None else norms <= rtol * raw_norms
        Rxx[:, self.constant] = 0.0
        self.scale = _power_of_two(np.where(self.constant, 1.0, norms))
        self.U, self.S, self.Vt = np.linalg.svd(Rxx / self.scale)
        # The intercept column scaled to unit norm, √w/‖√w‖, is orthogonal to the centred ones.
        sv = np.sort(np.concatenate([self.S, [1.0] * self.fit_intercept]))[::-1]
        self.singular_values = sv
        self.r = int(np.sum(self.S > rtol * sv[0])) if sv[0] > 0 else 0
        self.rank = self.r + self.fit_intercept
        self.ybar = ybar_hi
        null = _split_constant(self.Vt[self.r:].T, self.constant)  # (d, d - r), scaled units
        self.null_scaled = null
        self.groups = self._groups(null)
        q = d + self.fit_intercept
        self.condition_number = _condition_number(raw[:q, :q]) if self.rank == q else np.inf
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
        b = self.intercept(W)
        sse = np.sum(self.Ryy ** 2, axis=0) + np.sum(z[r:] ** 2, axis=0)
        return W, b, sse

    def intercept(self, W: np.ndarray) -> np.ndarray:
        """``ȳ - x̄·W`` (m,), in double-double (see ``_affine``); 0 without an intercept."""
        if not self.fit_intercept:
            return np.zeros(W.shape[1])
        return _affine(self._ybar_parts, [-self.xbar, -self.xbar_lo], W)

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
            parts.append(np.sqrt(self.sum_weights) * _affine([b], [self.xbar, self.xbar_lo], W))
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


def _square(R: np.ndarray, p: int) -> np.ndarray:
    """``R`` padded with zero rows to (p, p): they change nothing while fewer rows than columns were seen."""
    out = np.zeros((p, p))
    out[:len(R)] = R
    return out


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
