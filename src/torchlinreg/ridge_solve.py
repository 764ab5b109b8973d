"""Exact ridge regression from the R factor: the solution, alpha by GCV, and the efficient leave-one-out.

Ridge minimises ``Σ wᵢ (yᵢ - xᵢ·b - c)² + alpha·‖b‖²`` (weights ``w`` default 1; the intercept ``c`` is not
penalised), scikit-learn's ``Ridge``. With an intercept the problem is that of the centred columns (weighted
means), so everything comes from ``R_c``, the R factor of the centred ``[X - x̄, y - ȳ]`` (rows scaled by √w),
which a :class:`~torchlinreg.solve.QRAccumulator` holds whatever way the rows came (in memory, streamed,
merged across torchrun processes): ``R_c = [[Rxx, Rxy], [0, Ryy]]``. With the SVD ``Rxx = U S Vᵀ`` and
``z = Uᵀ Rxy`` (the targets in the left singular basis, ``Uᵀ Qᵀ y``):

* ``b(alpha) = V diag(s / (s² + alpha)) z``, ``c = ȳ - x̄·b``; an alpha per target;
* ``RSS(alpha) = Σ_j (alpha / (s_j² + alpha))² z_j² + ‖Ryy‖²`` (per target), ``tr H = Σ s² / (s² + alpha)``
  (+ 1 for the intercept), so the generalised cross-validation (Golub, Heath and Wahba)
  ``GCV(alpha) = n · RSS / (n - tr H)²`` needs no pass over the rows;
* the leave-one-out residual (rows in memory) ``√wᵢ rᵢ / (1 - hᵢᵢ)``, with the leverage
  ``hᵢᵢ = wᵢ/Σw + Σ_j (√wᵢ (xᵢ - x̄)·v_j)² / (s_j² + alpha)``: scikit-learn ``RidgeCV``'s efficient LOO.

No normal equations are formed: the SVD is that of the triangular factor. ``n`` is the number of rows
of positive weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .solve import RANK_RTOL, QRAccumulator, _Factorization
from .solve.numerics import _as_array, _names, _weights

DEFAULT_ALPHAS = (0.1, 1.0, 10.0)  # scikit-learn RidgeCV's
MODES = ("loo", "gcv")


def check_alpha(alpha, n_targets: int | None = None, *, name: str = "alpha") -> np.ndarray:
    """``alpha`` as an array (scalar, or one per target), refused unless finite and ``>= 0``."""
    try:
        a = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"the ridge penalty {name} must be a number >= 0, got {alpha!r}; pass e.g. 1.0") from None
    if a.ndim > 1 or a.size == 0 or not np.isfinite(a).all() or (a < 0).any():
        raise ConfigError(f"the ridge penalty {name} must be a finite number >= 0 (or one per target), got "
                          f"{alpha!r}; pass e.g. 1.0")
    if n_targets is not None and a.ndim == 1 and len(a) not in (1, n_targets):
        raise ConfigError(f"the ridge penalty holds {len(a)} values for {n_targets} target(s); give one, or one "
                          f"per target")
    return a


@dataclass
class RidgeSolution:
    """A ridge fit: ``coef`` (m, d) as ``nn.Linear.weight``, ``intercept`` (m,), ``alpha`` (m,) per target.

    ``loss`` is the (weighted) MSE of the fit, ``Σ w r² / (Σ w · m)``; ``rss`` per target. With a choice of
    alpha (:func:`ridge_cv`): ``alphas`` tried, ``mode`` ("gcv" or "loo") and ``scores`` (n_alphas, m), the
    criterion per alpha and target (smaller is better; LOO: the mean squared leave-one-out error).
    """

    coef: np.ndarray
    intercept: np.ndarray
    alpha: np.ndarray
    loss: float
    rss: np.ndarray
    n_samples: int
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    alphas: tuple[float, ...] | None = None
    mode: str | None = None
    scores: np.ndarray | None = None

    def predict(self, X) -> np.ndarray:
        """``X @ coef.T + intercept`` (n, m)."""
        return _as_array(X, "X") @ self.coef.T + self.intercept

    def to_dict(self) -> dict:
        record = {
            "coef": {t: dict(zip(self.feature_names, row.tolist())) for t, row in zip(self.target_names, self.coef)},
            "intercept": dict(zip(self.target_names, self.intercept.tolist())),
            "l2": dict(zip(self.target_names, self.alpha.tolist())),
            "loss": float(self.loss),
            "n_samples": int(self.n_samples),
        }
        if self.scores is not None:
            record["alphas"] = list(self.alphas)
            record[self.mode] = {t: self.scores[:, k].tolist() for k, t in enumerate(self.target_names)}
        return record


class RidgePath:
    """What ridge needs of an accumulator, for any alpha: the SVD of the centred ``Rxx`` and ``z = Uᵀ Rxy``."""

    def __init__(self, acc: QRAccumulator, *, feature_names=None, target_names=None):
        if acc.n_samples == 0 or acc.sum_weights == 0:
            raise ValueError("no rows with a positive weight yet: call update(X, y) first")
        reference = np.zeros(acc.n_features + acc.n_targets) if acc.reference is None else acc.reference
        factor = _Factorization(acc.R_shifted, acc.n_features, fit_intercept=acc.fit_intercept,
                                n_samples=acc.n_samples, n_positive=acc.n_positive, sum_weights=acc.sum_weights,
                                rtol=RANK_RTOL, raw=acc.R, reference=reference, varies=acc.varies)
        self.factor = factor
        self.fit_intercept = acc.fit_intercept
        Rxx = (factor.U * factor.S) @ factor.Vt * factor.scale  # the centred Rxx in the data's units (constants 0)
        self.U, self.s, Vt = np.linalg.svd(Rxx)
        self.V = Vt.T
        self.z = self.U.T @ factor.Rxy  # (d, m)
        self.ryy = np.sum(factor.Ryy ** 2, axis=0)  # (m,): the part of RSS no coefficient reaches
        self.n = acc.n_positive
        self.n_samples = acc.n_samples
        self.sum_weights = acc.sum_weights
        self.feature_names = _names(feature_names, acc.n_features, "x", "feature_names")
        self.target_names = _names(target_names, acc.n_targets, "y", "target_names")

    @property
    def n_targets(self) -> int:
        return self.z.shape[1]

    def _cut(self) -> np.ndarray:
        """The singular values that count as zero at alpha 0 (the rank decision of ``lstsq``)."""
        return self.s <= RANK_RTOL * (self.s[0] if len(self.s) else 0.0)

    def _shrink(self, alpha: np.ndarray) -> np.ndarray:
        """``s / (s² + alpha)`` (d, m); at alpha 0 the pseudo-inverse (rank by ``RANK_RTOL``)."""
        s, a = self.s[:, None], alpha[None, :]
        zero = self._cut()[:, None] & (a == 0)
        return np.where(zero, 0.0, s / np.where(zero, 1.0, s ** 2 + a))

    def alphas_per_target(self, alpha) -> np.ndarray:
        return np.broadcast_to(check_alpha(alpha, self.n_targets), (self.n_targets,)).astype(np.float64)

    def coef(self, alpha) -> tuple[np.ndarray, np.ndarray]:
        """W (d, m) and the intercept (m,) at ``alpha`` (scalar or per target)."""
        a = self.alphas_per_target(alpha)
        W = self.V @ (self._shrink(a) * self.z)
        W[self.factor.constant] = 0.0
        return W, self.factor.intercept(W)

    def rss(self, alpha) -> np.ndarray:
        """The (weighted) residual sum of squares per target at ``alpha``, from R alone."""
        a = self.alphas_per_target(alpha)
        s2, zero = self.s[:, None] ** 2, self._cut()[:, None] & (a[None, :] == 0)  # left unfitted at alpha 0
        kept = np.where(zero, 1.0, a[None, :] / np.where(zero, 1.0, s2 + a[None, :]))
        return np.sum((kept * self.z) ** 2, axis=0) + self.ryy

    def dof(self, alpha: float) -> float:
        """``tr H(alpha)``: the effective number of parameters, the intercept counted as one."""
        s2 = self.s ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(s2 > 0, s2 / (s2 + alpha), 0.0)
        return float(t.sum()) + self.fit_intercept

    def gcv(self, alphas) -> np.ndarray:
        """``n · RSS / (n - tr H)²`` (n_alphas, m); inf where ``tr H >= n``."""
        out = np.empty((len(alphas), self.n_targets))
        for i, a in enumerate(alphas):
            left = self.n - self.dof(a)
            out[i] = self.n * self.rss(a) / left ** 2 if left > 0 else np.inf
        return out

    def solution(self, alpha, **chosen) -> RidgeSolution:
        a = self.alphas_per_target(alpha)
        W, b = self.coef(a)
        rss = self.rss(a)
        return RidgeSolution(coef=W.T.copy(), intercept=b, alpha=a.copy(),
                             loss=float(rss.sum() / (self.sum_weights * self.n_targets)), rss=rss,
                             n_samples=self.n_samples, feature_names=self.feature_names,
                             target_names=self.target_names, **chosen)

    def loo_errors(self, X: np.ndarray, Y: np.ndarray, w: np.ndarray | None, alpha) -> np.ndarray:
        """The leave-one-out errors ``√wᵢ rᵢ / (1 - hᵢᵢ)`` (n, m) at ``alpha`` (per target), rows in memory."""
        a = self.alphas_per_target(alpha)
        W, b = self.coef(a)
        sw = np.ones(len(X)) if w is None else np.sqrt(w)
        xbar = self.factor.xbar if self.fit_intercept else np.zeros(X.shape[1])
        P = (sw[:, None] * (X - xbar)) @ self.V  # (n, d): the rows in the right singular basis
        P[:, self.s == 0] = 0.0
        base = sw ** 2 / self.sum_weights if self.fit_intercept else np.zeros(len(X))
        out = np.empty(Y.shape)
        residual = sw[:, None] * (Y - X @ W - b)
        for value in np.unique(a):
            h = base + (P ** 2) @ np.where(self.s > 0, 1.0 / (self.s ** 2 + value), 0.0)
            cols = a == value
            out[:, cols] = residual[:, cols] / (1.0 - h)[:, None]
        return out


def _check_data(X, y, sample_weight):
    from .solve import check_xy

    X, y = check_xy(X, y)
    Y = y.reshape(len(y), -1)
    w = None if sample_weight is None else _weights(sample_weight, len(X))
    return X, Y, w


def ridge_path(X, y, *, fit_intercept: bool = True, sample_weight=None, feature_names=None,
               target_names=None) -> tuple[RidgePath, np.ndarray, np.ndarray, np.ndarray | None]:
    """A :class:`RidgePath` of rows in memory, and the rows as arrays (X, Y (n, m), w)."""
    from .solve import _column_names

    feature_names = _column_names(X) if feature_names is None else feature_names
    target_names = _column_names(y) if target_names is None else target_names
    X, Y, w = _check_data(X, y, sample_weight)
    acc = QRAccumulator(X.shape[1], Y.shape[1], fit_intercept=fit_intercept).update(X, Y, w)
    return RidgePath(acc, feature_names=feature_names, target_names=target_names), X, Y, w


def ridge(X, y, alpha=1.0, *, fit_intercept: bool = True, sample_weight=None, feature_names=None,
          target_names=None) -> RidgeSolution:
    """The exact ridge solution: minimises ``Σ w (y - X b - c)² + alpha ‖b‖²`` per target, in float64.

    ``alpha``: a number >= 0, or one per target (shape (n_targets,)); the intercept is not penalised.
    Equal to scikit-learn's ``Ridge(alpha)`` (see this module for the method). ``alpha=0`` gives the
    minimum-norm least-squares solution.
    """
    check_alpha(alpha)
    path, *_ = ridge_path(X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                          feature_names=feature_names, target_names=target_names)
    return path.solution(alpha)


def check_alphas(alphas) -> tuple[float, ...]:
    """A grid of penalties: a non-empty 1-D sequence of numbers > 0."""
    a = check_alpha(alphas, name="alphas")
    a = np.atleast_1d(a)
    if (a <= 0).any():
        raise ConfigError(f"every alpha of the grid must be above 0, got {alphas!r}; pass e.g. (0.1, 1.0, 10.0)")
    return tuple(float(v) for v in a)


def choose(path: RidgePath, alphas, scores: np.ndarray, alpha_per_target: bool, mode: str) -> RidgeSolution:
    """The solution at the alpha of the smallest score (the first on a tie); one alpha for all targets unless
    ``alpha_per_target`` (then the best of each target's column)."""
    if alpha_per_target:
        best = np.argmin(scores, axis=0)
        alpha = np.array([alphas[i] for i in best])
    else:
        alpha = alphas[int(np.argmin(scores.mean(axis=1)))]
    return path.solution(alpha, alphas=tuple(alphas), mode=mode, scores=scores)


def ridge_cv(X, y, alphas=DEFAULT_ALPHAS, *, mode: str = "loo", fit_intercept: bool = True, sample_weight=None,
             alpha_per_target: bool = False, feature_names=None, target_names=None) -> RidgeSolution:
    """Ridge with alpha chosen among ``alphas`` by the efficient leave-one-out (``mode="loo"``,
    scikit-learn ``RidgeCV``'s default: the mean of ``w r² / (1 - h)²``) or by generalised
    cross-validation (``mode="gcv"``, from R alone). ``scores`` holds each alpha's criterion."""
    alphas = check_alphas(alphas)
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r} of choosing alpha; choose one of {', '.join(MODES)}")
    path, X, Y, w = ridge_path(X, y, fit_intercept=fit_intercept, sample_weight=sample_weight,
                               feature_names=feature_names, target_names=target_names)
    if mode == "gcv":
        scores = path.gcv(alphas)
    else:
        scores = np.stack([np.mean(path.loo_errors(X, Y, w, a) ** 2, axis=0) for a in alphas])
    return choose(path, alphas, scores, alpha_per_target, mode)


def ridge_source(source, alpha=1.0, *, alphas=None, fit_intercept: bool = True, dist=None,
                 chunk_rows: int | None = None) -> RidgeSolution:
    """Ridge on a Source (a file streamed, or a Dataset), one pass for the R factor (each torchrun process its
    part, merged); with ``alphas``, alpha chosen among them by GCV."""
    from .data import as_source
    from .defaults import CHUNK_ROWS
    from .exact import accumulate, accumulate_shard

    check_alpha(alpha)
    source = as_source(source)
    chunk_rows = CHUNK_ROWS if chunk_rows is None else chunk_rows
    if dist is not None and dist.is_distributed:
        acc, _ = accumulate_shard(source, dist, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    else:
        acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    path = RidgePath(acc, feature_names=source.feature_names, target_names=source.target_names)
    if alphas is None:
        return path.solution(alpha)
    alphas = check_alphas(alphas)
    return choose(path, alphas, path.gcv(alphas), False, "gcv")



def check_ridge_settings(l2, grid=None, statistics: bool = False) -> None:
    """Refuse a penalty below 0 or not finite, both a fixed penalty and a grid, and statistics with ridge."""
    from .config import check_l2

    if l2 is not None and grid is not None:
        raise ConfigError("{l2} fixes the ridge penalty and {l2_grid} chooses it among several; give one of them")
    for given, is_grid in ((l2, False), (grid, True)):
        if given is not None:
            check_l2(given, grid=is_grid)
    if statistics:
        raise ConfigError("the statistics ({statistics}) are those of least squares; ridge's standard errors "
                          "are not computed: leave out {statistics}, or solve without {l2}")


def run_ridge(data, l2, *, grid=None, dist=None, chunk_rows: int | None = None, fit_intercept: bool = True,
              statistics: bool = False) -> RidgeSolution:
    """``torchlinreg solve --l2 ALPHA`` (``l2``: one, or one per target) or ``--l2-grid`` (``grid``: alpha chosen
    by GCV): the exact ridge solution of ``data`` (a Dataset or a Source; streamed and torchrun alike)."""
    from .config import check_chunk_rows

    check_ridge_settings(l2, grid, statistics)
    if chunk_rows is not None:
        check_chunk_rows(chunk_rows)
    return ridge_source(data, 0.0 if l2 is None else l2, alphas=grid, dist=dist, chunk_rows=chunk_rows,
                        fit_intercept=fit_intercept)


def ridge_output(solution: RidgeSolution, *, as_json: bool = False) -> str:
    """What ``torchlinreg solve --l2`` prints: each coefficient, the intercept and the loss, or one JSON object."""
    if as_json:
        import json

        return json.dumps(solution.to_dict(), indent=1)
    from .report import coefficient_lines

    alphas = ", ".join(f"{a:g}" for a in solution.alpha)
    how = f", chosen by GCV among {', '.join(f'{a:g}' for a in solution.alphas)}" if solution.alphas else ""
    lines = [f"Ridge solution ({solution.n_samples} rows, l2 {alphas}{how}):", *coefficient_lines(solution)]
    lines.append(f"  loss (MSE, without the penalty)  {solution.loss:.10g}")
    return "\n".join(lines)
