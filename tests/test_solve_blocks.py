"""The block step of ``QRAccumulator.update``: each way a block's R factor is made, checked
against exact rational least squares on the same float64 inputs.

Blocks are made small (``UPDATE_BLOCK_ENTRIES``) so that a few hundred rows cross several of
them; which way each block took is observed through the two sinks (the running Gram matrix
and the Householder/Cholesky-twice factor ``_block_r``).
"""

import warnings

import numpy as np
import pytest
import torch

import torchlinreg.solve as solve
import torchlinreg.solve.accumulator as accumulator  # where update() looks up what the tests patch
from torchlinreg.errors import DataError, RankDeficiencyWarning
from torchlinreg.solve import QRAccumulator, lstsq

from bounds import U64, gamma
from test_solve import exact_lstsq, scaled_cond, shifted


@pytest.fixture(params=["torch", "numpy"])
def small_blocks(monkeypatch, request):
    """About 64 rows per block for 3 features and one target, and a log of the blocks' routes.

    Every test runs twice: with the block products in PyTorch (a process that has loaded it) and in
    NumPy (``torchlinreg solve``, which does not load PyTorch); both against the same exact reference.
    """
    if request.param == "numpy":
        import torchlinreg.solve.blocks as blocks

        monkeypatch.setattr(blocks, "_torch", lambda: None)
    monkeypatch.setattr(accumulator, "UPDATE_BLOCK_ENTRIES", 64 * 6)  # 3 features, 1, y and the shift column
    routes = []
    real = solve._block_r

    def spy(B, cols, scale, R1, rcond):
        routes.append("twice" if R1 is not None and rcond * solve.CHOLESKY_TWICE_BELOW >= 1 else "householder")
        return real(B, cols, scale, R1, rcond)

    monkeypatch.setattr(accumulator, "_block_r", spy)
    return routes


def solved(X, y, **kw):
    acc = QRAccumulator(X.shape[1]).update(X, y, **kw)
    return acc, acc.solve()


def params(solution):
    return np.r_[solution.coef.ravel(), solution.intercept]


def exact_params(X, y):
    coef, intercept = exact_lstsq(X, y)
    return np.r_[coef, intercept]


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def bound(X, y, stable, w=None):
    """First-order bound on ``rel(params(solution), exact)`` of the unrefined solution from R.

    In the shifted, column-scaled units (w' = D w, κ the condition number, ‖A'‖ ≥ 1):
    a backward-stable R (Householder, Cholesky QR twice; ``stable``) gives ‖Δw'‖/‖w'‖ ≲
    m·n·u·(κ + κ²·‖r‖/‖w'‖) (Higham, Thm 20.1, with its size factor); the Gram route (Cholesky QR
    of well-conditioned blocks, normal-equation-like) gives n·γ_{m+n}·κ²·(1 + ‖y_c‖/‖w'‖).
    ``rel`` is in data units, relative to the largest parameter: a coefficient moves by
    ‖Δw'‖/‖A_j‖, the intercept ȳ - x̄·w by ‖x̄/D‖·‖Δw'‖.
    """
    A = shifted(X, w)  # rows scaled by √w (weighted least squares)
    m, n = A.shape
    kappa = scaled_cond(A)
    root = np.ones(m) if w is None else np.sqrt(w)
    coef, intercept = exact_lstsq(X, y) if w is None else np.split(np.linalg.lstsq(A, root * y, rcond=None)[0], [-1])
    xbar = np.average(X, axis=0, weights=w)
    intercept = intercept if w is None else float(np.average(y, weights=w) - xbar @ coef)
    norms = np.linalg.norm(A[:, :-1], axis=0)
    scaled = np.linalg.norm(coef * norms)
    if stable:
        r = root * (y - X @ coef - intercept)
        moved = m * n * gamma(1) * (kappa * scaled + kappa ** 2 * np.linalg.norm(r))
    else:
        moved = n * gamma(m + n) * kappa ** 2 * (scaled + np.linalg.norm(root * (y - np.average(y, weights=w))))
    return moved * max(1 / norms.min(), np.linalg.norm(xbar / norms)) / np.abs(np.r_[coef, intercept]).max()


def test_well_conditioned_blocks_go_through_the_gram_matrix_and_stay_accurate(small_blocks):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((640, 3)) * [0.1, 1, 10] + [5, -3, 40]
    y = X @ [2.0, -1.0, 0.5] + 7 + rng.standard_normal(640)
    acc, s = solved(X, y)
    assert small_blocks == []  # every block was well conditioned
    # Gram route, κ ≈ 1.1: bound(...) ≈ 3e-11 with x̄ = 40 (observed ~1e-15; the old 1e-12 was below it)
    assert rel(params(s), exact_params(X, y)) < bound(X, y, stable=False)


def test_ill_conditioned_blocks_take_cholesky_twice_or_householder_and_stay_accurate(small_blocks):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(640)
    for tilt, route in ((1e-4, "twice"), (1e-9, "householder")):
        small_blocks.clear()
        X = np.c_[x, x + tilt * rng.standard_normal(640), rng.standard_normal(640)]  # cond ~ 1 / tilt
        y = X @ [1.0, 2.0, 3.0] + 0.5 + 0.1 * rng.standard_normal(640)
        _, s = solved(X, y)
        assert set(small_blocks) == {route}, small_blocks
        # backward-stable QR on a design of κ ≈ 1 / tilt: m·n·u·(κ + κ²·‖r‖/‖w'‖), computed by bound() (1.3e-7
        # and 0.04; observed 6e-12 and 5e-7); the old 1e-9 and 1e-5 (u·κ without the size factor m·n) were below it
        assert rel(params(s), exact_params(X, y)) < bound(X, y, stable=True)
        # That bound is weak at κ ≈ 1e9 (0.04). Refined (corrected semi-normal equations, residuals in
        # double-double: what lstsq does by default above κ = 1e7) the error falls by about κ·u per pass
        # to a floor of c·u with c a modest function of the sizes (Björck, Numerical Methods for Least
        # Squares Problems, §6.6): 1e3·u here, 1e11 times tighter.
        assert rel(params(solve.refine(s, [(X, y)])), exact_params(X, y)) < 1e3 * U64


def test_drifting_means_shift_the_blocks_again(small_blocks, monkeypatch):
    rng = np.random.default_rng(3)
    x = np.sort(rng.uniform(0, 1e4, 640))  # sorted: each block's mean is far from the first's
    X = np.c_[x, rng.standard_normal(640)]
    y = 0.25 * x - X[:, 1] + 3 + rng.standard_normal(640)
    shifts = []
    real = solve._exact_shift
    monkeypatch.setattr(accumulator, "_exact_shift", lambda *a: shifts.append(1) or real(*a))
    _, s = solved(X, y)
    assert len(shifts) > 2  # the first block's means, then re-shifts as the data drift
    # the re-shifted blocks are well conditioned (κ ≈ 1): the Gram-route bound, ≈ 2e-10 with x̄ = 5e3 (observed 2e-13)
    assert rel(params(s), exact_params(X, y)) < bound(X, y, stable=False)


def test_a_column_constant_in_each_block_but_not_overall(small_blocks):
    rng = np.random.default_rng(4)
    group = np.repeat(np.arange(10.0), 64)  # 0,0,...,1,1,...: constant inside every block
    X = np.c_[group * 0.1, rng.standard_normal(640)]
    y = 3 * X[:, 0] + X[:, 1] - 2 + 0.1 * rng.standard_normal(640)
    _, s = solved(X, y)
    # blocks with a constant column take the R route, the others the Gram route: the larger, Gram bound (≈ 7e-13)
    assert rel(params(s), exact_params(X, y)) < bound(X, y, stable=False)


def test_a_constant_column_is_named_and_gets_weight_zero(small_blocks):
    rng = np.random.default_rng(5)
    X = np.c_[np.full(640, 0.1), rng.standard_normal(640)]
    y = 2 * X[:, 1] + 1 + 0.1 * rng.standard_normal(640)
    with pytest.warns(RankDeficiencyWarning, match="'x0' is constant"):
        _, s = solved(X, y)
    assert s.coef[0, 0] == 0.0
    coef, intercept = exact_lstsq(X[:, 1:], y)
    # the live column alone (κ = 1), Gram route: bound ≈ 3e-13, below 1e-12 (the constant column is dropped exactly)
    assert rel(np.r_[s.coef[0, 1], s.intercept], np.r_[coef, intercept]) < max(bound(X[:, 1:], y, stable=False), 1e-12)


def test_a_perfect_fit_is_found(small_blocks):
    rng = np.random.default_rng(6)
    X = rng.standard_normal((640, 3))
    y = X @ [1.5, -2.0, 0.25] + 4.0  # no noise: y is in the span of [X, 1]
    _, s = solved(X, y)
    # vs the generating parameters, not the exact LS solution of the rounded y (they differ by the rounding of
    # y, u·|y| per row, i.e. ≲ u·κ·max|p|); the solve from R: the Gram bound with ‖y_c‖/‖w'‖ ≈ 1, r = 0
    assert rel(params(s), np.array([1.5, -2.0, 0.25, 4.0])) < max(bound(X, y, stable=False), 1e-13)
    assert s.loss < 1e-25  # rounding of y only: (u·|y| ≈ 1e-15)² per row ≈ 1e-30 (observed 2e-30)


def test_weighted_blocks_and_blocks_of_zero_weight(small_blocks):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((640, 3)) + [1, 2, 3]
    y = X @ [1.0, -1.0, 2.0] + 0.5 + rng.standard_normal(640)
    w = rng.uniform(0, 3, 640)
    w[64:192] = 0.0  # two whole blocks count for nothing
    _, s = solved(X, y, sample_weight=w)
    keep = w > 0
    r = np.sqrt(w[keep])
    ref = np.linalg.lstsq(np.c_[X[keep], np.ones(keep.sum())] * r[:, None], y[keep] * r, rcond=None)[0]
    # two float64 solutions (Gram route vs LAPACK's solver): twice the Gram bound of the weighted rows (≈ 4e-12)
    assert rel(params(s), ref) < 2 * bound(X[keep], y[keep], stable=False, w=w[keep])


def test_a_bad_value_in_a_later_block_is_named_by_its_row(small_blocks):
    X = np.random.default_rng(8).standard_normal((640, 3))
    y = X.sum(axis=1)
    X[517, 1] = np.nan  # data row 518: messages count from 1
    with pytest.raises(DataError, match=r"row 518\)"):
        QRAccumulator(3).update(X, y)
    X[517, 1] = 3e200
    with pytest.raises(DataError, match="column 2 holds values up to 3e"):
        QRAccumulator(3).update(X, y)


def test_float32_and_read_only_inputs_give_the_float64_result_without_warnings(small_blocks):
    rng = np.random.default_rng(9)
    X = (rng.standard_normal((640, 3)) + 2).astype(np.float32)
    y = (X @ np.float32([1, 2, 3]) + rng.standard_normal(640).astype(np.float32))
    reference = params(solved(X.astype(np.float64), y.astype(np.float64))[1])
    X.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. PyTorch's warning about non-writable arrays
        assert np.array_equal(params(solved(X, y)[1]), reference)
        assert np.array_equal(params(lstsq(torch.from_numpy(X.copy()), torch.from_numpy(y))), reference)
        assert np.array_equal(params(solved(X[::-1], y[::-1])[1]),
                              params(solved(X[::-1].astype(np.float64), y[::-1].astype(np.float64))[1]))


def test_blocks_fed_one_by_one_and_merged_agree_with_one_update(small_blocks):
    rng = np.random.default_rng(10)
    X = rng.standard_normal((640, 3)) * [1, 10, 100]
    y = X @ [1.0, 0.1, 0.01] + rng.standard_normal(640)
    whole = params(solved(X, y)[1])
    left, right = QRAccumulator(3), QRAccumulator(3)
    for start in range(0, 640, 50):
        (left if start < 300 else right).update(X[start:start + 50], y[start:start + 50])
    merged = params(left.merge(right).solve())
    tol = bound(X, y, stable=False)  # κ ≈ 1.06: ≈ 1.2e-12 (observed 6e-16); two computations: twice
    assert rel(merged, whole) < 2 * tol  # the old 1e-13 was below the bound
    assert rel(whole, exact_params(X, y)) < tol


@pytest.mark.parametrize("tiny_from", [0, 320], ids=["every block", "blocks after an ordinary half"])
def test_a_column_of_tiny_values_is_scaled_by_a_power_of_two_and_kept_out_of_the_gram_matrix(small_blocks, tiny_from):
    # Squares of 1e-200 underflow to 0 in a Gram matrix: such a column is scaled up exactly
    # (by a power of two) and its blocks factored on their own, whatever their conditioning.
    rng = np.random.default_rng(8)
    X = rng.standard_normal((640, 3)) + [2, 5, -1]
    X[tiny_from:, 1] *= 1e-200
    y = X @ [1.0, 3.0, -2.0] + rng.standard_normal(640)
    acc, s = solved(X, y)
    assert len(small_blocks) == (640 - tiny_from) // 64  # every block with the tiny column, and only those
    # Scaling by powers of two is exact, so the blocks are computed as ordinary data of κ ≈ 1: the Gram bound of
    # the design with the tiny values scaled back up by 2^664 (≈ 4e-12 and 1.3e-12; norms of 1e-200 would underflow).
    # The old 1e-12 was below it.
    ordinary = X.copy()
    ordinary[tiny_from:, 1] *= 2.0 ** 664
    assert rel(params(s), exact_params(X, y)) <= bound(ordinary, y, stable=False)
    assert not s.warnings
