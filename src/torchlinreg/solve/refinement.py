"""Refinement: passes over the data in double-double arithmetic (``refine``, ``needs_refinement``).

``refine`` makes passes over the data. Each pass computes the residual
``r = y - X w - b`` and the gradient ``Aᵀ r`` in double-double arithmetic (about 32
significant digits, vectorised NumPy, the same on every platform) and corrects the
parameters by the corrected semi-normal equations ``Rᵀ R δ = Aᵀ r``. A pass shrinks
the error by a factor of about ``eps * cond(scaled design)``, so two or three passes
give float64 accuracy even for a raw design of condition number 1e16, where
``numpy.linalg.lstsq`` keeps no correct digit (``tests/test_solve.py`` measures both
against exact rational arithmetic). A pass costs one to two times the float64 QR of
the same rows; ``lstsq`` makes them only when ``needs_refinement`` (an estimate short of 10 digits).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable
from warnings import warn

import numpy as np

from ..errors import ConvergenceWarning
from .digits import TARGET_DIGITS, a_posteriori, condition
from .doubledouble import _dd_add, _dd_sum, _split, _split_wide, _two_prod
from .numerics import _EPS, _chunk, _unpack, _weights
from .rank import _check_range
from .solution import LstsqSolution

MAX_PASSES = 6  # refinement passes at most; two or three reach float64 accuracy
REFINE_ABOVE_CONDITION = 1e7  # without an error estimate (solve.digits), refine above this condition number


# --- refinement: one pass over the data per step, in double-double -------------------------

_BLOCK_ENTRIES = 1 << 16  # entries of X (times targets) handled at once in a pass


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


def _correction(factor, G, gb) -> tuple[np.ndarray, np.ndarray]:
    """The correction ``δ`` (d, m), (m,) from a pass's ``Xᵀ W r`` (``G``) and ``Σ w r`` (``gb``), double-doubles."""
    if factor.fit_intercept:  # (X - x̄)ᵀ r = Xᵀ r - x̄ Σ r, still in double-double
        xbar, xbar_lo = ((factor.xbar, factor.xbar_lo) if factor.exponents is None else
                         (np.ldexp(factor.xbar, -factor.exponents), np.ldexp(factor.xbar_lo, -factor.exponents)))
        xbar, xbar_lo = xbar[:, None], xbar_lo[:, None]  # x̄ = xbar + xbar_lo (data far from 0: 1e18 + i)
        p, e = _two_prod(xbar, _split(xbar), gb[0][None, :], _split(gb[0][None, :]))
        gc = np.add(*_dd_add(*G, -p, -(e + xbar * gb[1][None, :] + xbar_lo * gb[0][None, :])))
    else:
        gc = G[0] + G[1]
    return factor.correction(gc, gb[0] + gb[1])


def _refine(solution: LstsqSolution, source: Callable[[], Iterable], max_passes: int,
            combine: Callable[[PassSums], PassSums] | None = None) -> LstsqSolution:
    factor = solution._factor
    W, b = solution.coef.T.copy(), solution.intercept.copy()
    d, m = W.shape
    previous, done, moved, at_floor = np.inf, False, False, False
    dW = db = None  # the last correction, and where it was computed
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
        dW, db = _correction(factor, G, gb)
        step = factor.scaled_norm(dW, db)
        if not np.isfinite(step):
            break
        # Done when no coefficient moves by more than its last bits, or when the steps stop
        # shrinking (the error is then at the rounding floor: each pass shrinks it by ~eps*cond).
        # A coefficient that is zero has no last bits: a step below the rounding of the whole
        # solution (or of the targets, when the solution is near zero) is done too.
        scale = max(factor.scaled_norm(W, b), float(np.sqrt(sse.sum() / factor.sum_weights)))
        # (An intercept far from zero, -3e17 for x = 1.7e18 + 37i, is a float64 to 32 units: a step
        # below its last bit cannot be taken, and the loss is that of the float64 parameters.)
        at_floor = bool(np.all(np.abs(dW) <= 2 * _EPS * np.abs(W)) and np.all(np.abs(db) <= 2 * _EPS * np.abs(b)))
        done = at_floor or step > 0.5 * previous or step <= 2 * _EPS * scale
        if step <= previous and (done or k + 1 < max_passes):  # else the loss of the last pass would not match
            W, b = W + dW, b + db  # a last, tiny correction moves the loss by less than its rounding
            _check_range(W, b, solution.feature_names, factor.raw_norms)
            moved = step > 2 * _EPS * scale  # not tiny: the loss of this pass is not that of the new W, b
        if done:
            break
        previous = step
    if moved:  # one more pass, for the loss of the coefficients returned (every rank takes it alike)
        sums = _residual_pass(W, b, source(), d, m, factor.exponents)
        n, sum_w, sse, G, gb = sums if combine is None else combine(sums)
        dW, db = _correction(factor, G, gb)  # at the returned W, b: their error estimate
    errors = (solution.coef_error, solution.intercept_error)
    if dW is not None and np.isfinite(dW).all() and np.isfinite(db).all():
        err_W, err_b = a_posteriori(factor, W, b, dW, db)
        errors = (err_W.T.copy(), err_b)
    messages = solution.warnings
    refined = replace(solution, coef=W.T.copy(), intercept=b, loss=float(sse.sum() / (factor.sum_weights * m)),
                      loss_per_target=sse / factor.sum_weights, coef_error=errors[0], intercept_error=errors[1])
    if not done or step > 1e-8 * scale and not at_floor:
        message = (f"iterative refinement did not converge in {max_passes} passes; the coefficients may "
                   f"have fewer than 8 correct digits (the design is close to rank-deficient: raise rtol)")
        warn(message, ConvergenceWarning, stacklevel=3)
        messages = messages + (message,)
    elif refined.digits_short:
        message = _digits_message(refined)
        warn(message, ConvergenceWarning, stacklevel=3)
        messages = messages + (message,)
    return replace(refined, warnings=messages)


def _digits_message(solution: LstsqSolution) -> str:
    """The warning for a refined solution short of ``TARGET_DIGITS`` digits: which coefficient, how many."""
    table = solution.digits.copy()
    table[:, [i for i, f in enumerate(solution.feature_names) if f in solution.unidentified]] = np.inf
    t, j = np.unravel_index(int(np.argmin(table)), table.shape)
    where = f"{solution.feature_names[j]!r}"
    where += f" of target {solution.target_names[t]!r}" if len(solution.target_names) > 1 else ""
    return (f"the coefficients hold only {solution.min_digits:.1f} correct digits as a whole (in standardised "
            f"units; the fewest of one coefficient: {table[t, j]:.1f} in {where}) where {TARGET_DIGITS} were sought; the design is too ill-conditioned (scaled condition number "
            f"{condition(solution._factor):.3g}) for more in float64: centre and scale the features "
            f"before forming products or powers of them")


def needs_refinement(solution: LstsqSolution) -> bool:
    """Whether refinement passes pay: some coefficient of the R-only solution holds fewer than
    ``TARGET_DIGITS`` correct digits by its error estimate (``solve.digits.a_priori``), or the design
    is rank-deficient. Without an estimate: the condition number is above ``REFINE_ABOVE_CONDITION``."""
    if not np.isfinite(solution.condition_number):  # rank-deficient: the minimum norm needs the passes
        return True
    if solution.min_digits is None:
        return not solution.condition_number < REFINE_ABOVE_CONDITION
    return solution.min_digits < TARGET_DIGITS
