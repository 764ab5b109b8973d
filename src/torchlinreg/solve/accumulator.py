"""The running R factor: ``QRAccumulator`` (``update``, ``update_columns``, ``merge``, ``loss``, ``solve``).

``QRAccumulator`` keeps only the R factor of the augmented matrix ``A = [X, 1, y]`` in
float64, never ``Xᵀ X`` of the raw columns. Rows arrive in blocks; each block is shifted
by column means (exactly: the shift is carried in a small matrix, see "one block of rows"
in ``blocks``) and, when the shifted, column-scaled block is well conditioned, its Gram matrix
(one BLAS pass) joins a running Gram matrix that one Cholesky factorisation turns into R;
other blocks are factored by Cholesky QR twice or Householder QR and stacked under the
running R. Two accumulators merge by stacking their R factors, so rows may be split among
chunks and processes in any order. Columns of very different magnitude (1e13 next to
1e-3) need no care from the caller: scaling is by powers of two, hence exact; so is the
scaling up of a column of values far below 1e-150, whose squares would underflow.
"""

from __future__ import annotations

from typing import Sequence
from warnings import warn

import numpy as np

from ..errors import RankDeficiencyWarning
from .blocks import (CHOLESKY_ONCE_BELOW, _block_r, _drifted, _exact_shift, _gram_r, _Rows, _scaled_cholesky,
                     _shift_map, _shifted_gram, _unshift)
from .digits import a_priori, se_relative_error
from .kernels import one_pass
from .numerics import _as_array, _check_values, _names, _shaped, _triangularize, _weights
from .rank import RANK_RTOL, _affine, _check_normal, _check_range, _Factorization
from .solution import LstsqSolution

UPDATE_BLOCK_ENTRIES = 2 ** 22  # rows × columns per block inside update(): a 32 MB workspace, reused; fewer, larger BLAS calls


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
        self._R = np.zeros((0, self.n_columns))  # R of the shifted rows [X - ref_x, 1, y - ref_y] folded in so far
        self._G = None  # Gram matrix of [C, s] (shifted by _shift) of well-conditioned blocks not yet in _R
        self._shift = None  # column means of [X, y] that blocks are shifted by
        self.reference = None  # (d + m,): the first counted row's [x, y] (zeros without an intercept)
        self.varies = np.zeros(self.n_features + self.n_targets, dtype=bool)  # a value != reference seen
        self.kernels: dict[str, str] = {}  # the block step's kernel for each shape class seen (solve.kernels)

    @property
    def R_shifted(self) -> np.ndarray:
        """R of ``[X - ref_x, 1, y - ref_y]`` (``ref``: ``reference``), which keeps every digit of the
        columns' spread however far their values lie from zero (1e18 + i): what ``solve`` uses."""
        if self._G is not None:  # fold the running Gram matrix in: one Cholesky factorisation
            cols, scale, Rs = _gram_r(self._G)
            rows = _shift_map(Rs, cols, scale, self._shift - self.reference, self.n_features, self.fit_intercept)
            self._R, self._G = _triangularize(np.vstack([self._R, rows])), None
        return self._R

    @property
    def R(self) -> np.ndarray:
        """R of the raw ``[X, 1, y]`` (``Rᵀ R = Aᵀ A``), from ``R_shifted``; rounded in the raw units, so
        columns of a large offset keep fewer digits of their spread here than in ``R_shifted``."""
        if self.reference is None:
            return self.R_shifted
        if not np.any(self.reference):
            return self.R_shifted
        return _triangularize(_unshift(self.R_shifted, self.reference, self.n_features, self.fit_intercept))

    @R.setter
    def R(self, value: np.ndarray) -> None:
        """Set a raw R (reference 0; which columns vary is then decided from R, as to rounding)."""
        self._R, self._G = np.asarray(value, dtype=np.float64), None
        self.reference, self.varies = np.zeros(self.n_features + self.n_targets), None

    def set_state(self, R_shifted: np.ndarray, reference: np.ndarray | None, varies: np.ndarray | None) -> None:
        """Set ``R_shifted``, ``reference`` and ``varies`` (an accumulator sent between processes)."""
        self._R, self._G = np.asarray(R_shifted, dtype=np.float64), None
        self.reference = None if reference is None else np.asarray(reference, dtype=np.float64)
        self.varies = None if varies is None else np.asarray(varies, dtype=bool)

    @property
    def n_columns(self) -> int:
        return self.n_features + self.fit_intercept + self.n_targets

    def __repr__(self) -> str:
        return (f"QRAccumulator(n_features={self.n_features}, n_targets={self.n_targets}, "
                f"fit_intercept={self.fit_intercept}, n_samples={self.n_samples})")

    def update(self, X, y, sample_weight=None, *, first_row: int | None = None) -> QRAccumulator:
        """Add rows: ``X`` of shape (k, n_features), ``y`` of shape (k, n_targets) or (k,).

        ``sample_weight`` of shape (k,), finite and >= 0, weights the rows' squared residuals
        (default 1 each); their rows of ``[X, 1, y]`` enter R scaled by ``√w``. ``first_row``: the
        data row (1-based) of ``X``'s first row, which a message about a bad value counts from;
        default the row after those added so far.
        """
        X, y = _shaped(X, y, self.n_features, self.n_targets, keep_float32=True)
        if X.flags.f_contiguous and not X.flags.c_contiguous:  # column by column: contiguous reads
            rows = _Rows(columns=[X[:, j] for j in range(X.shape[1])] + [y[:, j] for j in range(y.shape[1])],
                         n_features=X.shape[1])
        else:
            rows = _Rows(X, y)
        return self._add(rows, sample_weight, first_row)

    def update_columns(self, columns: Sequence, sample_weight=None, *, first_row: int | None = None) -> QRAccumulator:
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
        return self._add(_Rows(columns=columns, n_features=self.n_features), sample_weight, first_row)

    def _add(self, data: _Rows, sample_weight, first_row: int | None) -> QRAccumulator:
        n = len(data)
        before = self.n_samples if first_row is None else int(first_row) - 1  # data rows before these, for messages
        w = None if sample_weight is None else _weights(sample_weight, n, before)
        if n:
            rows = max(UPDATE_BLOCK_ENTRIES // (self.n_columns + 1), 4 * self.n_columns)
            with one_pass():  # one BLAS thread between the kernel's products (see kernels)
                for start in range(0, n, rows):
                    block = slice(start, start + rows)
                    self._absorb(data.rows(block), None if w is None else w[block], before + start)
            self.weighted = self.weighted or w is not None
            self.n_samples += n
            self.sum_weights += n if w is None else float(w.sum())
            self.n_positive += n if w is None else int(np.count_nonzero(w))
        return self

    def _absorb(self, rows: _Rows, w, rows_before: int) -> None:
        """One block of rows into the running Gram matrix or, when ill-conditioned, into R (see above);
        ``rows_before``: the data rows before the block's first, for messages."""
        if w is not None and not w.any():  # rows of weight 0 change nothing, but must still be numbers
            _check_values(*rows.parts(), rows_before)
            return
        if self._shift is None:
            self._shift = _exact_shift(rows, w, None, None)
        B, G, exponents = _shifted_gram(rows, w, self._shift, rows_before, used=self.kernels)  # (checks the values)
        self._note_values(rows, w)
        cols, scale, R1, rcond = _scaled_cholesky(G)
        if rcond * CHOLESKY_ONCE_BELOW < 1 and _drifted(G):  # shift by this block's own means and look again
            shift = _exact_shift(rows, w, G, self._shift, exponents)
            if np.any(shift != self._shift):
                self.R_shifted  # fold the Gram matrix of the old shift
                self._shift = shift
                B, G, exponents = _shifted_gram(rows, w, shift, rows_before, used=self.kernels)
                cols, scale, R1, rcond = _scaled_cholesky(G)
        if rcond * CHOLESKY_ONCE_BELOW >= 1 and exponents is None:
            self._G = G if self._G is None else self._G + G
        else:
            if B is None:  # the R route needs the block itself
                B, G, exponents = _shifted_gram(rows, w, self._shift, rows_before, keep=True)
                cols, scale, R1, rcond = _scaled_cholesky(G)
            block_rows = _shift_map(_block_r(B, cols, scale, R1, rcond), cols, scale, self._shift - self.reference,
                                    self.n_features, self.fit_intercept, exponents)
            self._R = _triangularize(np.vstack([self._R, block_rows]))

    def _note_values(self, rows: _Rows, w) -> None:
        """Fix the reference at the first counted row, and note the columns that hold another value (exactly)."""
        taken = np.flatnonzero(w) if w is not None else slice(None)
        if self.reference is None:
            first = 0 if w is None else int(taken[0])
            self.reference = np.array([float(rows.column(j)[first]) if self.fit_intercept else 0.0
                                       for j in range(len(self.varies))])
        if self.varies is None:
            return
        for j in np.flatnonzero(~self.varies):
            column, ref = rows.column(j)[taken], self.reference[j]
            self.varies[j] = bool(len(column)) and not (column[0] == ref and column[-1] == ref
                                                         and (column == ref).all())

    def merge(self, other: QRAccumulator) -> QRAccumulator:
        """Add the rows another accumulator has seen (from another chunk range or process)."""
        shape = (self.n_features, self.n_targets, self.fit_intercept)
        if not isinstance(other, QRAccumulator) or (other.n_features, other.n_targets, other.fit_intercept) != shape:
            raise ValueError(f"can only merge a QRAccumulator with (n_features, n_targets, fit_intercept) = {shape}, "
                             f"got {other!r}")
        if other.n_samples:
            R_other = other.R_shifted
            if other.reference is not None and self.reference is None:
                self.reference = other.reference.copy()
            elif other.reference is not None:  # from its reference to ours: rounding of ‖ref - ref'‖ ≤ the spread
                R_other = _unshift(R_other, other.reference - self.reference, self.n_features, self.fit_intercept)
                if self.varies is not None:
                    self.varies |= other.reference != self.reference
            if self.varies is not None:
                self.varies = None if other.varies is None else self.varies | other.varies
            self._R, self._G = _triangularize(np.vstack([self.R_shifted, R_other])), None
            self.kernels.update(other.kernels)
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
        if self.fit_intercept:  # in the shifted units: b' = b + ref_x·W - ref_y, in double-double
            d = self.n_features
            b = _affine([b, -self.reference[d:]], [self.reference[:d]], W)
        rows = [W, b[None, :]] if self.fit_intercept else [W]
        V = np.vstack(rows + [-np.eye(self.n_targets)])  # (d + 1 + m, m): A' @ V = X W + b - y
        return float(np.sum((self.R_shifted @ V) ** 2) / (self.sum_weights * self.n_targets))

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
        raw = self.R
        _check_normal(raw, self.n_features, self.fit_intercept, features, targets)
        reference = np.zeros(self.n_features + self.n_targets) if self.reference is None else self.reference
        factor = _Factorization(self.R_shifted, self.n_features, fit_intercept=self.fit_intercept,
                                n_samples=self.n_samples, n_positive=self.n_positive, sum_weights=self.sum_weights,
                                rtol=rtol, raw=raw, reference=reference, varies=self.varies)
        W, b, sse = factor.minimizer()
        _check_range(W, b, features, factor.raw_norms)
        coef_error, intercept_error = a_priori(factor, W, b, sse)
        unidentified, messages = factor.deficiencies(features)
        for message in messages:
            warn(message, RankDeficiencyWarning, stacklevel=2)
        return LstsqSolution(
            coef=W.T.copy(), intercept=b, loss=float(sse.sum() / (self.sum_weights * self.n_targets)),
            loss_per_target=sse / self.sum_weights, rank=factor.rank, n_samples=self.n_samples,
            singular_values=factor.singular_values, condition_number=factor.condition_number,
            feature_names=features, target_names=targets, unidentified=unidentified,
            warnings=tuple(messages), sum_weights=self.sum_weights if self.weighted else None,
            kernels=dict(self.kernels), coef_error=coef_error.T.copy(), intercept_error=intercept_error,
            se_relative_error=se_relative_error(factor, CHOLESKY_ONCE_BELOW), _factor=factor)
