"""Non-negative least squares from the R factor: ``positive=True`` and ``--positive``.

``min ‖X w + b − y‖²`` (weighted: ``Σ wᵢ rᵢ²``) subject to ``w ≥ 0``, the intercept ``b`` free, for each
target separately (as scikit-learn's ``LinearRegression(positive=True)``, which calls
``scipy.optimize.nnls`` once per target).

Method
------
1. The rows go into a :class:`~torchlinreg.solve.QRAccumulator`: only the R factor of ``[X, 1, y]``
   is kept, so the data may be streamed or held in memory alike.
2. The intercept is eliminated: R's columns are reordered to ``[1, X, y]`` and triangularised
   again; the first row then expresses ``b`` through ``w`` and the rows below are the R factor
   of the centred ``[X, y]``, ``R_c``. With ``z`` the target's column of ``R_c``,
   ``‖X_c w − y_c‖² = ‖R_c[:, :d] w − z‖²``, a problem of ``d`` rows however many the data has.
3. Lawson and Hanson's active-set method (Solving Least Squares Problems, 1974, ch. 23) solves
   ``min ‖A w − z‖, w ≥ 0`` on that small triangular system, with ``A``'s columns scaled to unit
   norm (a positive scaling keeps the constraint). Each inner least-squares problem is solved by
   SVD of ``A``'s passive columns, never the normal equations, so the error is about ``eps`` times
   their condition number.
4. :func:`nonnegative_lstsq` (rows in memory) then solves the least-squares problem of each
   target's passive columns exactly again with :func:`torchlinreg.solve.lstsq` (refined passes
   over the data), so the coefficients keep float64 accuracy on ill-conditioned data too.

Non-negative least squares always has a solution: every target gets an answer (all zeros when no
feature correlates positively with it). When the passive columns are dependent (duplicated
columns) the coefficients are not unique; the predictions are.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

import numpy as np

from .errors import ConfigError, RankDeficiencyWarning
from .solve import LstsqSolution, QRAccumulator, is_sparse, lstsq, row_blocks

MAX_ITER_PER_FEATURE = 10  # Lawson–Hanson's outer loop ends in about n_features steps; a bound, 10× that (+10)


def nnls(A: np.ndarray, z: np.ndarray, *, max_iter: int | None = None) -> np.ndarray:
    """``argmin ‖A x − z‖`` subject to ``x ≥ 0`` (Lawson–Hanson active set); ``A`` (k, d), ``z`` (k,).

    Columns of ``A`` that are all zero get 0. The stopping tolerance on the gradient is
    ``10 · eps · max(k, d)`` times ``‖A‖₁ ‖z‖`` (unit-norm columns), the rounding of ``Aᵀ(z − A x)``.
    """
    A, z = np.asarray(A, dtype=np.float64), np.asarray(z, dtype=np.float64)
    k, d = A.shape
    norms = np.linalg.norm(A, axis=0)
    live = norms > 0
    x = np.zeros(d)
    if not live.any() or not np.any(z):
        return x
    As = A[:, live] / norms[live]
    xs = _active_set(As, z, MAX_ITER_PER_FEATURE * As.shape[1] + 10 if max_iter is None else max_iter)
    x[live] = xs / norms[live]
    return x


def _active_set(A: np.ndarray, z: np.ndarray, max_iter: int) -> np.ndarray:
    k, d = A.shape
    eps = np.finfo(np.float64).eps
    tol = 10 * eps * max(k, d) * np.abs(A).sum(axis=0).max() * max(np.linalg.norm(z), 1e-300)
    x, passive = np.zeros(d), np.zeros(d, dtype=bool)
    gradient = A.T @ z
    for _ in range(max(max_iter, 1)):
        candidates = np.where(~passive & (gradient > tol), gradient, -np.inf)
        j = int(np.argmax(candidates))
        if not np.isfinite(candidates[j]):
            break  # Kuhn–Tucker conditions hold: done
        passive[j] = True
        s = _passive_solution(A, z, passive)
        while np.any(s[passive] <= 0):  # step back to the boundary and drop the variables it reaches
            hit = passive & (s <= 0)
            alpha = float(np.min(x[hit] / (x[hit] - s[hit])))
            x = x + alpha * (s - x)
            passive &= x > eps * np.max(np.abs(x), initial=0.0)  # those that reached 0 (to rounding) leave
            if not passive.any():
                s = np.zeros(d)
                break
            s = _passive_solution(A, z, passive)
        x = np.where(passive, s, 0.0)
        gradient = A.T @ (z - A @ x)
    return x


def _passive_solution(A: np.ndarray, z: np.ndarray, passive: np.ndarray) -> np.ndarray:
    s = np.zeros(A.shape[1])
    s[passive] = np.linalg.lstsq(A[:, passive], z, rcond=None)[0]
    return s


def positive_from_accumulator(acc: QRAccumulator) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative coefficients ``W`` (n_targets, n_features) and the free intercepts ``b`` (n_targets,)
    from the accumulator's R factor alone (streamed rows); ``b`` is 0 without ``fit_intercept``."""
    return _positive(acc)[:2]


def positive_solution(acc: QRAccumulator, solution: LstsqSolution) -> LstsqSolution:
    """``solution`` (``acc.solve()``'s) with the non-negative coefficients, their intercepts and losses in
    place of the unconstrained ones (``torchlinreg solve --positive``, ``fit --positive``'s optimum). The
    error estimates are those of the unconstrained solve, so they are left out."""
    W, b, sse = _positive(acc)
    return replace(solution, coef=W, intercept=b, loss=float(sse.sum() / (acc.sum_weights * acc.n_targets)),
                   loss_per_target=sse / acc.sum_weights, coef_error=None, intercept_error=None, positive=True)


def _positive(acc: QRAccumulator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if acc.n_samples == 0 or acc.sum_weights == 0:
        raise ValueError("no rows with a positive weight yet: call update(X, y) first")
    d, m = acc.n_features, acc.n_targets
    R = acc.R_shifted
    reference = np.zeros(d + m) if acc.reference is None else acc.reference
    if acc.fit_intercept:  # [X, 1, y] → [1, X, y]: the first row gives b, the rows below are the centred R
        R = np.linalg.qr(R[:, np.r_[d, 0:d, d + 1:d + 1 + m]], mode="r")
        top, R = R[0], R[1:, 1:]
    W, sse = np.zeros((m, d)), np.zeros(m)
    for t in range(m):  # rows below the features' hold the part of ‖r‖² no coefficient reaches
        W[t] = nnls(R[:, :d], R[:, d + t])
        sse[t] = float(np.sum((R[:, :d] @ W[t] - R[:, d + t]) ** 2))
    b = np.zeros(m)
    if acc.fit_intercept:  # shifted units: (x − ref_x)·w + b' ≈ y − ref_y
        b_shifted = (top[1 + d:] - W @ top[1:1 + d]) / top[0]
        b = b_shifted + reference[d:] - W @ reference[:d]
    return W, b, sse


def nonnegative_lstsq(X, y, *, sample_weight=None, fit_intercept: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative least squares of rows in memory (dense or scipy.sparse ``X``): ``W`` (n_targets, n_features)
    ≥ 0 and ``b`` (n_targets,).

    The active set comes from R (:func:`positive_from_accumulator`); each target's passive columns
    are then solved again by :func:`torchlinreg.solve.lstsq`, refined on the rows themselves.
    """
    X = X.tocsr() if is_sparse(X) else np.asarray(X, dtype=np.float64)  # scipy.sparse: block by block
    Y = np.asarray(y, dtype=np.float64).reshape(X.shape[0], -1)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    acc = QRAccumulator(X.shape[1], Y.shape[1], fit_intercept=fit_intercept)
    for block in row_blocks(X, Y, w):
        acc.update(*block)
    W, b = positive_from_accumulator(acc)
    for t in range(Y.shape[1]):
        passive = W[t] > 0
        if not passive.any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficiencyWarning)  # dependent passive columns: any optimum will do
            sol = lstsq(X[:, passive], Y[:, t], sample_weight=sample_weight, fit_intercept=fit_intercept)
        if sol.rank == passive.sum() and np.all(sol.coef[0] > 0):  # else keep R's answer (it is feasible)
            W[t, passive], b[t] = sol.coef[0], sol.intercept[0]
    return W, b


# --- gradient descent: projected after each step ----------------------------------------------

class NonNegative:
    """An optimizer step post-hook: ``weight`` becomes max(w, 0) after each step (projected gradient descent)."""

    def __init__(self, weight):
        self.weight = weight

    def __call__(self, *args) -> None:
        import torch

        with torch.no_grad():
            self.weight.clamp_(min=0)


@contextlib.contextmanager
def nonnegative_steps(weight):
    """Within the block, every optimizer's step is followed by ``weight`` ← max(weight, 0) (``fit --positive``,
    the estimator's ``positive=True``: whichever engine trains, and an optimizer unpickled without its hooks,
    the global hook is there only while training). The start is projected too."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    hook = NonNegative(weight)
    hook()
    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def refuse_positive_with(optimizer: str | None, statistics: bool, l2=None) -> None:
    """``positive`` (weights kept >= 0) needs an optimizer that a projection after each step leaves sound, no
    ridge penalty, and no statistics, which describe the unconstrained optimum: else the one rule for a setting
    that would have no effect (``config.no_effect``)."""
    from .config import no_effect

    if optimizer == "lbfgs":
        raise no_effect("{positive}", "with L-BFGS (its line search and curvature pairs break when the weights are "
                        "projected onto >= 0 after each step)", "choose {optimizer=sgd} or {optimizer=adam}, or "
                        "solve exactly (the solve command; solver='exact' in Python)")
    if l2 is not None:
        raise no_effect("{positive}", "on a ridge solve (it is not a non-negative ridge)", "leave out one of "
                        "{positive} and {l2}")
    if statistics:
        raise ConfigError("the statistics ({statistics}) are those of the unconstrained least-squares optimum, not "
                          "of {positive}; leave one of them out")