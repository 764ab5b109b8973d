"""What the data alone says about gradient descent on the MSE loss.

For a linear model the MSE loss is quadratic; its Hessian is ``2/(n*m) * A.T @ A``, where
``A = [X, 1]`` (the bias is a column of ones) and ``m`` is the number of targets, since
``nn.MSELoss`` averages over all ``n*m`` entries. Gradient descent with learning rate
``lr`` converges only if ``lr * L < 2``, where ``L`` is the largest eigenvalue of the
Hessian (plus the weight decay, which adds ``weight_decay * I``). Momentum widens the
limit: heavy-ball momentum ``mu`` needs ``lr * L < 2 * (1 + mu)``, Nesterov momentum
``lr * L < 2 * (1 + mu) / (1 + 2 * mu)``.

Because the loss is quadratic, the whole run is known before it starts: in the
Hessian's eigenbasis every component of the error shrinks by its own factor per step
(``1 - lr * lambda`` for plain gradient descent, a 2x2 recurrence with momentum), so
:func:`diagnose` can say how many epochs a learning rate needs without training.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .errors import render
from .report import percent
from .scaling import Standardizer

_SCAN_BUDGET = 20_000_000  # eigencomponent-epochs walked one by one under momentum (about a second)
_CHUNK = 1024  # epochs evaluated per vectorised block of that walk
_ILL_CONDITIONED = 100.0  # condition numbers from here on get the "--standardize" advice


def hessian(X: torch.Tensor, n_targets: int = 1) -> torch.Tensor:
    """The Hessian of the MSE loss in (weights, bias) of one target row, float64, shape (d+1, d+1)."""
    n = X.shape[0]
    A = torch.cat([X.double(), torch.ones(n, 1, dtype=torch.float64)], dim=1)  # (n, d+1)
    return 2.0 / (n * n_targets) * (A.T @ A)


def max_stable_lr(
    X: torch.Tensor,
    n_targets: int = 1,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> float:
    """The largest learning rate for which full-batch gradient descent does not diverge."""
    largest = torch.linalg.eigvalsh(hessian(X, n_targets))[-1].item()
    return stable_rate(largest, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def stable_rate(largest: float, *, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> float:
    """The divergence limit of gradient descent on a quadratic whose Hessian's largest eigenvalue is ``largest``:
    2 / (λ + weight decay), times 1 + μ with momentum μ (Nesterov's: (1 + μ)/(1 + 2μ))."""
    factor = 2.0 * (1.0 + momentum)
    if nesterov:
        factor /= 1.0 + 2.0 * momentum
    return factor / (largest + weight_decay)


@dataclass
class GDDiagnostics:
    """What gradient descent will do on a data set, worked out before epoch 1.

    Epoch ``t`` means what the training loop records: the loss at the parameters
    after ``t - 1`` steps (epoch 1 is the initial loss). "Within ``tol``" means the
    relative excess ``(F - F*) / F*`` is at most ``tol``, where ``F`` is the objective
    the optimiser actually minimises (the MSE loss, plus ``weight_decay / 2`` times the
    squared norm of all parameters, bias included, when there is weight decay) and
    ``F*`` its minimum.
    """

    max_stable_lr: float  # divergence limit for the given momentum / nesterov / weight decay
    best_lr: float  # best constant rate for plain gradient descent: 2 / (lambda_max + lambda_min)
    condition_number: float  # lambda_max / lambda_min of the Hessian (inf if singular)
    lr: float  # the rate being diagnosed
    epochs_needed: int | None  # epochs for lr to come within tol (None: diverges, or not within max_epochs)
    epochs_needed_best_lr: int | None  # the same for plain gradient descent at best_lr
    epochs_needed_standardized: int | None  # plain GD on standardised X and y at their best rate
    tol: float  # relative excess of the objective counted as converged
    max_epochs: int = 10**9  # the most epochs counted
    best_lr_standardized: float = math.nan  # the rate epochs_needed_standardized uses
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    epochs: int | None = None  # the epochs asked for, if known; the messages compare against it
    slowest_parameter: str = ""  # the parameter that dominates the slowest direction (e.g. "bias")
    standardized: bool = False  # X and y are standardised already (the advice then names only the rate)
    fastest_parameter: str = ""  # the parameter that dominates the fastest direction (e.g. "weight")
    rank: int = 0  # of the Hessian (of the design [X, 1]): the solver's rank when it is given
    n_parameters: int = 0  # weights and bias of one target: the Hessian's size

    def messages(self, flags: dict[str, str] | None = None) -> list[str]:
        """Plain-English one-liners for a report, most important first. The settings they advise are named
        as the library's keywords (``standardize=True``), or with ``flags`` as the command's (``--standardize``):
        see :func:`torchlinreg.errors.render`."""
        return [render(line, flags) for line in self._lines()]

    def _lines(self) -> list[str]:
        limit = f"{self.max_stable_lr:.3g} ({self._limit_formula()})"
        if self.lr >= self.max_stable_lr:
            lines = [f"lr {self.lr:g} is above the divergence limit {limit}: "
                     f"gradient descent will diverge; use a rate below {self.max_stable_lr:.3g}"]
        else:
            lines = [f"lr {self.lr:g} is {percent(self.lr / self.max_stable_lr)} of the divergence limit {limit}"]
            lines.append(self._epochs_line())
        if self.momentum == 0 and self.weight_decay == 0 and self.lr != self.best_lr:
            if self.epochs_needed_best_lr is not None:
                lines.append(f"the best constant rate in the worst case, 2/(λmax+λmin) = {self.best_lr:.3g}, "
                             f"needs about {self.epochs_needed_best_lr:,} epochs from this start")
        lines.append(self._conditioning_line())
        return lines

    def to_dict(self) -> dict:
        """The fields as plain data, JSON-ready: an infinite condition number becomes None."""
        d = asdict(self)
        d["condition_number"] = d["condition_number"] if math.isfinite(self.condition_number) else None
        return d

    def _method(self) -> str:
        method = "gradient descent"
        if self.momentum:
            method += f" with {'Nesterov ' if self.nesterov else ''}momentum {self.momentum:g}"
        if self.weight_decay:
            method += f"{' and' if self.momentum else ' with'} weight decay {self.weight_decay:g}"
        return method

    def _limit_formula(self) -> str:
        formula = "2/λmax"
        if self.momentum:
            formula = "2(1+μ)/((1+2μ)λmax)" if self.nesterov else "2(1+μ)/λmax"
        hessian_of = "the loss's Hessian plus the weight decay" if self.weight_decay else "the loss's Hessian"
        return f"{formula} of {hessian_of}"

    def _epochs_line(self) -> str:
        target = "the optimum's penalised loss" if self.weight_decay else "the optimum's loss"
        if self.epochs_needed is None:
            return (f"at lr {self.lr:g} {self._method()} does not come within {self.tol:g} of {target} "
                    f"in {self.max_epochs:,} epochs")
        line = (f"at lr {self.lr:g} {self._method()} needs about {self.epochs_needed:,} epochs "
                f"to come within {self.tol:g} of {target}")
        if self.epochs is not None:
            verdict = "will stop short" if self.epochs < self.epochs_needed else "are enough"
            line += f" (the {self.epochs:,} asked for {verdict})"
        return line

    def _conditioning_line(self) -> str:
        if math.isfinite(self.condition_number):
            number = self.condition_number
            head = f"the Hessian's condition number is {number:,.0f}" if number < 1e7 else \
                f"the Hessian's condition number is {number:.3g}"
        else:
            head = (f"the Hessian is singular (rank {self.rank} of {self.n_parameters}: collinear or constant "
                    "features): the optimum is not unique")
        if self.condition_number < _ILL_CONDITIONED:
            return f"{head}: gradient descent learns every parameter at a similar speed"
        if math.isfinite(self.condition_number) and self.slowest_parameter != self.fastest_parameter:
            head += (f": the {self.slowest_parameter} is learnt far more slowly than the "
                     f"{self.fastest_parameter}")
        if self.epochs_needed_standardized is None:
            return f"{head}; use {{optimizer='lbfgs'}}"
        rate = f"{{lr={self.best_lr_standardized:.3g}}}"
        if not self.standardized:  # the data are not standardised yet: that comes first
            rate = "{standardize=True} " + rate
        return (f"{head}; {rate} would converge in about {self.epochs_needed_standardized:,} epochs "
                "(or use {optimizer='lbfgs'})")


def diagnose(X, y, *, lr: float, initial_weight, initial_bias, momentum: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, tol: float = 1e-6, max_epochs: int = 10**9, epochs: int | None = None,
             standardized: bool = False, sample_weight=None, feature_names=None, rank: int | None = None
             ) -> GDDiagnostics:
    """How full-batch gradient descent (``torch.optim.SGD``) will fare on ``(X, y)``.

    Parameters
    ----------
    X : Tensor or ndarray of shape (n_samples, n_features)
    y : Tensor or ndarray of shape (n_samples, n_targets)
    lr, momentum, nesterov, weight_decay : the optimiser's settings, as ``torch.optim.SGD``
        takes them (weight decay adds ``weight_decay * theta`` to the gradient of every
        parameter, bias included).
    initial_weight : array of shape (n_targets, n_features); initial_bias : shape (n_targets,)
    tol : relative excess ``(F - F*) / F*`` counted as converged. If ``F*`` is zero to
        float64 resolution (an exact fit), the excess is taken relative to the initial
        objective instead.
    max_epochs : the most epochs counted; beyond it ``epochs_needed`` is None.
    epochs : the number of epochs the run will do, only used in the messages.
    sample_weight : array of shape (n_samples,), optional: the loss is then ``Σ w r² / (Σ w · m)``
        (weighted least squares, as the training loop computes it).
    feature_names : the features' names, for the messages (default: ``feature 0``, ...).
    rank : the rank of ``[X, 1]`` as the exact solver found it: the Hessian's smallest ``d + 1 - rank``
        eigenvalues are then flat, as the solver says (default: the rank float64 singular values show).

    Returns
    -------
    GDDiagnostics
        Epoch ``t`` is the loss at the parameters after ``t - 1`` steps, as the training
        loop records it, so a run that starts within ``tol`` needs 1 epoch. The target
        is the minimiser of the objective SGD actually minimises, ``F = MSE + weight_decay/2
        * |theta|^2``; with a singular Hessian any minimiser gives the same ``F*``.

    Notes
    -----
    The counts are computed, not simulated: see ``_epochs_needed``.
    """
    X64, y64, theta0 = _checked_arrays(X, y, initial_weight, initial_bias)
    _check_settings(lr, momentum, weight_decay, tol, max_epochs)
    w = None if sample_weight is None else _as_float64(sample_weight, "sample_weight").reshape(-1)

    problem, standardized_problem = (_Quadratic(X64, y64, weight_decay, w, rank),
                                     _Quadratic(_standardize(X64, w), _standardize(y64, w), 0.0, w, rank))
    limit = stable_rate(problem.eigenvalues[-1] - weight_decay, momentum=momentum, nesterov=nesterov,
                        weight_decay=weight_decay)
    (c, thr), (c_s, thr_s) = problem.excess_terms(theta0, tol), standardized_problem.excess_terms(theta0, tol)
    eig = problem.eigenvalues

    slowest, fastest = problem.dominant_parameters(feature_names)
    return GDDiagnostics(
        max_stable_lr=limit, best_lr=problem.best_lr, condition_number=problem.condition_number, lr=float(lr),
        epochs_needed=_epochs_needed(eig, c, thr, lr, momentum, nesterov, max_epochs),
        epochs_needed_best_lr=_epochs_needed(eig, c, thr, problem.best_lr, 0.0, False, max_epochs),
        epochs_needed_standardized=_epochs_needed(standardized_problem.eigenvalues, c_s, thr_s,
                                                  standardized_problem.best_lr, 0.0, False, max_epochs),
        tol=float(tol), max_epochs=max_epochs, best_lr_standardized=standardized_problem.best_lr,
        standardized=standardized, momentum=float(momentum), nesterov=bool(nesterov),
        weight_decay=float(weight_decay), epochs=epochs, slowest_parameter=slowest, fastest_parameter=fastest,
        rank=int(np.count_nonzero(eig > weight_decay)), n_parameters=len(eig),
    )


def _checked_arrays(X, y, initial_weight, initial_bias) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (n, d) and ``y`` (n, m) in float64, and the initial ``[W, b]`` of shape (m, d+1); refuses bad shapes."""
    X64, y64 = _as_float64(X, "X"), _as_float64(y, "y")
    if X64.ndim != 2 or y64.ndim != 2 or X64.shape[0] != y64.shape[0] or X64.shape[0] == 0:
        raise ValueError(f"X and y must be 2-D with the same, non-zero number of rows; "
                         f"got shapes {X64.shape} and {y64.shape}")
    n_targets, n_features = y64.shape[1], X64.shape[1]
    W0, b0 = _as_float64(initial_weight, "initial_weight"), _as_float64(initial_bias, "initial_bias")
    if W0.size != n_targets * n_features or b0.size != n_targets:
        raise ValueError(f"initial_weight must have shape ({n_targets}, {n_features}) and initial_bias "
                         f"({n_targets},) for this X and y; got {W0.shape} and {b0.shape}")
    W0, b0 = W0.reshape(n_targets, n_features), b0.reshape(n_targets)
    return X64, y64, np.hstack([W0, b0[:, None]])  # (m, d+1)


class _Quadratic:
    """F(theta) = MSE + wd/2 |theta|^2 for theta of shape (m, d+1) = [W, b], in its eigenbasis.

    The eigenvalues come from the singular values of the design (``√w [X, 1]``), not from the
    Hessian ``A.T @ A``, whose small eigenvalues float64 loses below ``eps * λmax``: so an
    ill-conditioned but full-rank design is not mistaken for a singular one.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, weight_decay: float, w: np.ndarray | None = None,
                 rank: int | None = None):
        n, d = X.shape
        m = y.shape[1]
        self.A = np.hstack([X, np.ones((n, 1))])  # (n, d+1)
        self.y, self.weight_decay, self.w = y, weight_decay, w
        self.nm = (n if w is None else float(w.sum())) * m
        root = np.ones(n) if w is None else np.sqrt(w)
        A_w, y_w = root[:, None] * self.A, root[:, None] * y
        _, sv, Vt = np.linalg.svd(A_w, full_matrices=False)  # descending
        flat = sv <= max(n, d + 1) * np.finfo(float).eps * sv[0] if rank is None else np.arange(d + 1) >= rank
        sv = np.where(flat, 0.0, sv)  # a flat direction, not a tiny curvature
        self.eigenvalues = (2.0 / self.nm * sv**2 + weight_decay)[::-1]  # ascending, as eigh's
        self.V = Vt[::-1].T  # columns: the eigenvectors, in the same order
        # The minimiser by an SVD-based solve (not via H, which squares the conditioning):
        # weight decay is least squares on A stacked over sqrt(n*m*wd/2) * I.
        A_aug = np.vstack([A_w, math.sqrt(self.nm * weight_decay / 2) * np.eye(d + 1)])
        y_aug = np.vstack([y_w, np.zeros((d + 1, m))])
        self.theta_star = np.linalg.lstsq(A_aug, y_aug, rcond=None)[0].T  # (m, d+1)
        self.f_star = self.objective(self.theta_star)

    def objective(self, theta: np.ndarray) -> float:
        squared = (self.y - self.A @ theta.T) ** 2  # (n, m)
        if self.w is not None:
            squared = self.w[:, None] * squared
        return float(np.sum(squared) / self.nm + self.weight_decay / 2 * np.sum(theta**2))

    def excess_terms(self, theta0: np.ndarray, tol: float) -> tuple[np.ndarray, float]:
        """Per-eigencomponent excess c_k at theta0 (F - F* = sum c_k) and the threshold tol * F*."""
        err = (theta0 - self.theta_star) @ self.V  # (m, d+1), error coordinates in the eigenbasis
        c = 0.5 * self.eigenvalues * np.sum(err**2, axis=0)
        f0 = self.objective(theta0)
        scale = self.f_star if self.f_star > np.finfo(float).eps * f0 else f0  # exact fit: relative to F(theta0)
        return c, tol * scale

    @property
    def condition_number(self) -> float:
        lo, hi = self.eigenvalues[0], self.eigenvalues[-1]
        return float(hi / lo) if lo > 0 else math.inf

    @property
    def best_lr(self) -> float:
        """2 / (lambda_max + lambda_min), lambda_min the smallest non-zero eigenvalue (flat directions never move)."""
        positive = self.eigenvalues[self.eigenvalues > 0]
        return float(2.0 / (positive[-1] + positive[0]))

    def dominant_parameters(self, feature_names=None) -> tuple[str, str]:
        """Names of the parameters that dominate the slowest and the fastest eigenvector."""
        d = self.A.shape[1] - 1
        if feature_names is not None and len(feature_names) == d:
            names = [f"weight of {name!r}" for name in feature_names]
        else:
            names = ["weight"] if d == 1 else [f"weight of feature {i}" for i in range(d)]
        names.append("bias")
        positive = np.flatnonzero(self.eigenvalues > 0)
        slow, fast = self.V[:, positive[0]], self.V[:, positive[-1]]
        return names[int(np.argmax(np.abs(slow)))], names[int(np.argmax(np.abs(fast)))]


def _epochs_needed(eig, c, thr, lr, momentum, nesterov, max_epochs) -> int | None:
    """The first epoch t <= max_epochs whose excess (after t - 1 steps) is <= thr, else None.

    Computed, not simulated. Without momentum the excess after ``s`` steps is
    ``sum_k c_k (1 - lr lambda_k)^(2s)``, non-increasing when stable, so the first ``s`` below
    ``tol * F*`` is found by bisection. With momentum each eigencomponent follows a 2x2 linear
    recurrence and the excess can oscillate; its first crossing is found by walking the epochs
    in vectorised blocks up to a proven bound (a decreasing envelope from the Schur form of each
    2x2 matrix). Past ``_SCAN_BUDGET`` component-epochs the remaining stretch is bisected with
    matrix powers, which is exact once the oscillating components (they shrink at least as fast
    as ``sqrt(momentum)`` per step) have died out.
    """
    keep = c > 0  # components already at the optimum, or flat directions, never matter
    eig, c = eig[keep], c[keep]
    if c.sum() <= thr:
        return 1
    last = max_epochs - 1  # the most steps counted
    if momentum == 0:
        r = np.abs(1.0 - lr * eig)
        if np.any(r > 1):
            return None

        def excess(s: int) -> float:
            return float(np.sum(c * np.power(r, 2.0 * s)))

        if excess(last) > thr:
            return None
        return _first_below(excess, thr, 0, last) + 1

    M = _momentum_matrices(eig, lr, momentum, nesterov)  # (K, 2, 2): (error, buffer) -> next
    roots = np.linalg.eigvals(M)  # (K, 2)
    rho = np.abs(roots).max(axis=1)
    if np.any(rho >= 1):
        return None
    end = min(_envelope_crossing(M, roots, rho, c, thr, last), last)
    found, scanned = _scan(M, c, thr, end, max(_CHUNK, _SCAN_BUDGET // len(c)))
    if found is not None:
        return found + 1
    if scanned >= end:
        return None  # the walk reached max_epochs without getting within tol

    def excess_at(s: int) -> float:
        return float(np.sum(c * _matrix_power(M, s)[:, 0, 0] ** 2))

    if excess_at(end) > thr:
        return None
    return _first_below(excess_at, thr, scanned, end) + 1


def _first_below(f, thr: float, lo: int, hi: int) -> int:
    """Least s in (lo, hi] with f(s) <= thr, for f non-increasing, f(lo) > thr >= f(hi)."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if f(mid) <= thr:
            hi = mid
        else:
            lo = mid
    return hi


def _momentum_matrices(eig: np.ndarray, lr: float, mu: float, nesterov: bool) -> np.ndarray:
    """torch.optim.SGD on one eigencomponent: buf' = mu*buf + lam*e; e' = e - lr*buf' (heavy ball)
    or e' = e - lr*(lam*e + mu*buf') (Nesterov). State (e, buf), buf starting at 0."""
    M = np.empty((len(eig), 2, 2))
    if nesterov:
        M[:, 0, 0], M[:, 0, 1] = 1 - lr * eig * (1 + mu), -lr * mu * mu
    else:
        M[:, 0, 0], M[:, 0, 1] = 1 - lr * eig, -lr * mu
    M[:, 1, 0], M[:, 1, 1] = eig, mu
    return M


def _envelope_crossing(M, roots, rho, c, thr, last) -> int:
    """A number of steps after which the excess is certainly <= thr (or `last` if none is found).

    With the Schur form M = Q T Q^H, |(M^s)_00| <= |T^s|_F and
    |T^s|_F^2 <= 2 rho^(2s) + t^2 s^2 rho^(2s-2), t the off-diagonal of T; this bound
    decreases once s >= 1 / -ln(rho).
    """
    t2 = np.maximum(np.sum(M**2, axis=(1, 2)) - np.sum(np.abs(roots) ** 2, axis=1), 0.0)

    def envelope(s: int) -> float:
        return float(np.sum(c * (2 * rho ** (2 * s) + t2 * s * s * rho ** (2 * s - 2))))

    with np.errstate(divide="ignore"):
        peak = np.where(rho > 0, 1.0 / -np.log(np.where(rho > 0, rho, 0.5)), 1.0)
    lo = min(max(1, math.ceil(float(peak.max()))), last)
    if envelope(lo) <= thr:
        return lo
    if envelope(last) > thr:
        return last
    return _first_below(envelope, thr, lo, last)


def _scan(M, c, thr, end: int, budget: int) -> tuple[int | None, int]:
    """Walk steps 0..end in blocks; the first step with excess <= thr, and how far the walk got."""
    K = len(c)
    powers = np.empty((_CHUNK, K, 2, 2))  # M^j for j < _CHUNK
    powers[0] = np.eye(2)
    for j in range(1, _CHUNK):
        powers[j] = M @ powers[j - 1]
    jump = M @ powers[-1]  # M^_CHUNK
    state = np.zeros((K, 2))
    state[:, 0] = 1.0  # unit error, empty momentum buffer; c carries the sizes
    start = 0
    while start <= end and start < budget:
        errors = np.einsum("jkab,kb->jk", powers[:, :, :1, :], state)  # (_CHUNK, K): (M^(start+j))_00
        excess = (errors**2) @ c
        below = np.flatnonzero(excess[: end - start + 1] <= thr)
        if below.size:
            return start + int(below[0]), start
        state = np.einsum("kab,kb->ka", jump, state)
        start += _CHUNK
    return None, min(start - 1, end)


def _matrix_power(M: np.ndarray, s: int) -> np.ndarray:
    """M^s for a stack of matrices, by repeated squaring."""
    result = np.broadcast_to(np.eye(M.shape[-1]), M.shape).copy()
    base = M.copy()
    while s:
        if s & 1:
            result = result @ base
        base = base @ base
        s >>= 1
    return result


def _standardize(a: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    mean, scale = Standardizer.column_stats(a, w)
    return (a - mean) / scale


def _as_float64(a, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    out = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains inf or NaN; gradient descent needs finite values")
    return out


def _check_settings(lr, momentum, weight_decay, tol, max_epochs) -> None:
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number above 0, got {lr!r}")
    if not (0 <= momentum < 1):
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if not (math.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number above 0, got {tol!r}")
    if isinstance(max_epochs, bool) or not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}")
