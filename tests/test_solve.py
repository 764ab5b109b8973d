"""solve.py: the exact least-squares optimum.

References are computed here: scikit-learn's LinearRegression, torch.linalg.lstsq, NumPy's
pinv, and exact rational arithmetic (fractions.Fraction) on the same float64 inputs.
"""

import json
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression

import torchlinreg as tl
from bounds import EPS64, U64, gamma
from fuzzing import least_squares_reference
from torchlinreg.errors import ConvergenceWarning, DataError, RankDeficiencyWarning
from torchlinreg.solve import LstsqSolution, QRAccumulator, lstsq, refine, solve_dataset


def exact_lstsq(X, y, fit_intercept=True):
    """Least squares in exact rationals: normal equations solved by Gaussian elimination."""
    rows = [[Fraction(float(v)) for v in row] + ([Fraction(1)] if fit_intercept else []) for row in X]
    b = [Fraction(float(v)) for v in y]
    p = len(rows[0])
    M = [[sum(r[i] * r[j] for r in rows) for j in range(p)] + [sum(r[i] * t for r, t in zip(rows, b))]
         for i in range(p)]
    for c in range(p):
        pivot = next(i for i in range(c, p) if M[i][c] != 0)
        M[c], M[pivot] = M[pivot], M[c]
        for i in range(c + 1, p):
            f = M[i][c] / M[c][c]
            if f:
                M[i] = [a - f * e for a, e in zip(M[i], M[c])]
    x = [Fraction(0)] * p
    for i in reversed(range(p)):
        x[i] = (M[i][p] - sum(M[i][j] * x[j] for j in range(i + 1, p))) / M[i][i]
    x = np.array([float(v) for v in x])  # each correctly rounded
    return (x[:-1], x[-1]) if fit_intercept else (x, 0.0)


def sklearn_fit(X, y, fit_intercept=True):
    model = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    coef = np.atleast_2d(model.coef_)
    return coef, np.zeros(len(coef)) + model.intercept_


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - b) / np.abs(b))


# --- error bounds the comparisons below take their tolerances from -----------------------------
# The accumulator factors each block shifted by column means, [√w (X - x̄), √w] (the shift is
# carried exactly), and well-conditioned blocks go through their Gram matrix (Cholesky QR). Two
# computations of the same rows in another order (blocks, memory layout, BLAS kernels) are each
# exact for a Gram matrix AᵀA + E, |E_ij| ≤ γ_{m+n}·‖A_i‖‖A_j‖ (BLAS sums of m terms, Cholesky's
# own γ_{n+1}; Householder steps of stacked blocks add less), so the first-order bounds below
# carry κ² of the shifted, column-scaled design (normal-equation-like), not u·‖R‖.
REFINED_RTOL = 8 * EPS64  # refined in double-double: each within a couple of ulps of the exact optimum (κ·u ≪ 1); ×2 margin


def scaled_cond(M):
    """2-norm condition number of ``M`` with its columns scaled to unit norm (zero columns left out)."""
    norms = np.linalg.norm(M, axis=0)
    s = np.linalg.svd(M[:, norms > 0] / norms[norms > 0], compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def shifted(M, w=None, fit_intercept=True):
    """The columns as the accumulator factors them: rows scaled by √w, shifted by the (weighted)
    means, with the column √w (the intercept) appended."""
    M = np.asarray(M, dtype=np.float64).reshape(len(M), -1)
    root = np.ones(len(M)) if w is None else np.sqrt(w)
    if not fit_intercept:
        return root[:, None] * M
    return np.column_stack([root[:, None] * (M - np.average(M, axis=0, weights=w)), root])


def r_atol(X, Y, w=None):
    """Bound on |ΔR_ij| / ‖A_j‖ between two R factors of A = √w [X, 1, Y] computed in different orders.

    First order ΔR = Φ(R⁻ᵀ E R⁻¹) R (Φ: the upper triangle), with E as above: ‖R⁻ᵀ E R⁻¹‖ ≤
    n·γ_{m+n}·κ² in the shifted, column-scaled units, and ‖Φ(M)‖ ≤ ‖M‖_F ≤ √n‖M‖₂; column j of
    ΔR is Φ(·) times column j of R, whose norm is ‖A_j‖.
    """
    A = shifted(np.column_stack([X, Y]), w)
    m, n = A.shape
    return n ** 1.5 * gamma(m + n) * scaled_cond(A) ** 2


def ls_rtol(X, Y, coef, w=None, fit_intercept=True):
    """Bounds on the relative difference of each coefficient and of each intercept between two
    least-squares solutions of the same rows computed in different orders (R alone, unrefined,
    or a backward-stable solver such as scikit-learn's or LAPACK's, whose κ·u is smaller).

    In the shifted, column-scaled units ``w' = D w`` the normal equations G'w' = h' carry errors
    |E'| ≤ γ_{m+n} entrywise and |e'_i| ≤ γ_{m+n}·‖y_c‖, so ‖Δw'‖ ≤ ‖G'⁻¹‖·(‖E'‖‖w'‖ + ‖e'‖) ≤
    n·γ_{m+n}·κ²·(‖w'‖ + ‖y_c‖), twice for two computations; coefficient j then moves by at most
    ‖Δw'‖/‖A_j‖ and the intercept ȳ - x̄·w by ‖x̄/D‖·‖Δw'‖.
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    X, Y = X.reshape(len(X), -1), Y.reshape(len(X), -1)
    A = shifted(X, w, fit_intercept)
    m, n = A.shape
    kappa = scaled_cond(A)
    Yc = shifted(Y, w, fit_intercept)[:, :Y.shape[1]]
    norms = np.linalg.norm(A[:, :X.shape[1]], axis=0)
    xbar = np.average(X, axis=0, weights=w) if fit_intercept else np.zeros(X.shape[1])
    coef_rtol = intercept_rtol = 0.0
    for t, row in enumerate(np.atleast_2d(coef)):
        scaled = row * norms
        moved = 2 * n * gamma(m + n) * kappa ** 2 * (np.linalg.norm(scaled) + np.linalg.norm(Yc[:, t]))
        coef_rtol = max(coef_rtol, moved / np.abs(scaled).min())
        if fit_intercept:
            b = np.average(Y[:, t], weights=w) - xbar @ row
            intercept_rtol = max(intercept_rtol, moved * np.linalg.norm(xbar / norms) / abs(b))
    return coef_rtol, intercept_rtol


def loss_rtol(X, Y, coef, intercept, w=None):
    """Bound on the relative error of a loss read from R (the Schur complement of AᵀA + E):
    Δ‖r‖² = vᵀ E v for v = [w; b; -1], |vᵀEv| ≤ γ_{m+n}·(Σ_j |v_j|‖A_j‖)², relative to ‖r‖²;
    twice, for two computations (a loss summed directly from the residuals is more accurate:
    its error is first order in ‖r‖). The loss is stationary at the optimum, so the slightly
    different coefficients two solvers return change it only to second order."""
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    X, Y = X.reshape(len(X), -1), Y.reshape(len(X), -1)
    root = np.ones(len(X)) if w is None else np.sqrt(w)
    m, n = len(X), X.shape[1] + 1 + Y.shape[1]
    out = 0.0
    for t, (row, b) in enumerate(zip(np.atleast_2d(coef), np.atleast_1d(intercept))):
        r = root * (X @ row + b - Y[:, t])
        size = (np.linalg.norm(root * Y[:, t]) + np.abs(row) @ np.linalg.norm(root[:, None] * X, axis=0)
                + abs(b) * np.linalg.norm(root))
        out = max(out, 2 * gamma(m + n) * size ** 2 / (r @ r))
    return out


def random_problem(n, d, m, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    Y = X @ rng.standard_normal((d, m)) + rng.standard_normal(m) + 0.3 * rng.standard_normal((n, m))
    return X, Y


# --- against trusted solvers ------------------------------------------------------------------

def test_tutorial_data_matches_sklearn_and_the_rounded_figures():
    data = tl.tutorial_data()
    X, y = data.X.double().numpy(), data.y.double().numpy()  # float32 values, exactly
    coef, intercept = sklearn_fit(X, y)
    solution = solve_dataset(data)
    coef_rtol, intercept_rtol = ls_rtol(X, y, coef)  # two solvers of one problem: the normal-equation bound (above)
    np.testing.assert_allclose(solution.coef, coef, rtol=coef_rtol)
    np.testing.assert_allclose(solution.intercept, intercept, rtol=intercept_rtol)
    assert solution.loss == pytest.approx(np.mean((X @ coef.T + intercept - y) ** 2), rel=loss_rtol(X, y, coef, intercept))
    assert (round(solution.coef[0, 0], 4), round(solution.intercept[0], 4), round(solution.loss, 3)) == \
        (1.9401, 2.5282, 20.532)
    assert (solution.feature_names, solution.target_names, solution.rank, solution.n_samples) == (("x",), ("y",), 2, 50)


@pytest.mark.parametrize("n, d, m, fit_intercept", [(200, 3, 1, True), (2000, 20, 1, True), (300, 5, 4, True),
                                                    (100, 4, 2, False)])
def test_random_data_matches_sklearn_and_torch(n, d, m, fit_intercept):
    X, Y = random_problem(n, d, m)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-posed problem warns about nothing
        solution = lstsq(X, Y, fit_intercept=fit_intercept)
    coef, intercept = sklearn_fit(X, Y, fit_intercept)
    A = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    theta = torch.linalg.lstsq(torch.from_numpy(A), torch.from_numpy(Y)).solution.numpy()  # (d [+1], m)
    # three solvers of one problem: the normal-equation bound (above); the intercept is 0 without one
    coef_rtol, intercept_rtol = ls_rtol(X, Y, coef, fit_intercept=fit_intercept)
    for ref_coef, ref_intercept in ((coef, intercept), (theta[:d].T, theta[d] if fit_intercept else np.zeros(m))):
        np.testing.assert_allclose(solution.coef, ref_coef, rtol=coef_rtol)
        np.testing.assert_allclose(solution.intercept, ref_intercept, rtol=intercept_rtol, atol=1e-300)
    mse = np.mean((X @ coef.T + intercept - Y) ** 2, axis=0)
    tol = loss_rtol(X, Y, coef, intercept)  # the loss read from R (above)
    np.testing.assert_allclose(solution.loss_per_target, mse, rtol=tol)
    assert solution.loss == pytest.approx(mse.mean(), rel=tol)
    assert solution.rank == d + fit_intercept
    # cond from R vs NumPy's SVD of A: Δκ/κ ≲ 2κ·‖ΔA‖/‖A‖ with ‖ΔA‖/‖A‖ ≤ m·n·u (κ < 100 here): ≪ 1e-8
    assert solution.condition_number == pytest.approx(np.linalg.cond(A), rel=1e-8)
    assert solution.coef.shape == (m, d) and solution.intercept.shape == (m,)


# --- accuracy on ill-conditioned designs: exact rationals ------------------------------------

@pytest.mark.parametrize("x", [np.arange(1.0, 31.0), np.linspace(0.0, 20.0, 40)], ids=["x=1..30", "x in [0,20]"])
@pytest.mark.parametrize("chunked", [False, True], ids=["lstsq", "3 chunks + refine"])
def test_degree_10_polynomial_keeps_7_digits_where_numpy_keeps_none(x, chunked):
    rng = np.random.default_rng(10)
    X = np.column_stack([x ** k for k in range(1, 11)])  # raw powers: condition number 1e14 to 1e16
    y = np.sin(x) + 10 * rng.standard_normal(len(x))
    w, b = exact_lstsq(X, y)
    if chunked:
        chunks = [(X[:7], y[:7]), (X[7:20], y[7:20]), (X[20:], y[20:])]
        acc = QRAccumulator(10)
        for chunk in chunks:
            acc.update(*chunk)
        solution = refine(acc.solve(), chunks)
    else:
        solution = lstsq(X, y)
    ours = rel_err(np.append(solution.coef[0], solution.intercept), np.append(w, b))
    A = np.hstack([X, np.ones((len(x), 1))])
    theirs = rel_err(np.linalg.lstsq(A, y)[0], np.append(w, b))
    assert solution.condition_number > 1e13
    # Refined in double-double: each pass shrinks the error by about u·κ_s, κ_s the condition number
    # of the centred, column-scaled design (~1e8 here: its smallest scaled singular value is ~6e-8),
    # so passes converge to a few ulps; 1e-7 is what refinement must reach even if it stopped one
    # pass early (u·κ_s ≈ 1e-8). (Observed: 0, correctly rounded.)
    assert ours <= 1e-7
    assert theirs > 1e-3  # plain float64 QR on the raw design: error ~u·κ ≈ 1, not one correct digit (observed 1.0, 19)


def test_columns_of_magnitude_1e13_next_to_1e_minus_3():
    rng = np.random.default_rng(13)
    X = np.column_stack([1e13 * rng.standard_normal(100), 1e-3 * rng.standard_normal(100)])
    y = X @ [2e-13, 3e3] + 1 + rng.standard_normal(100)
    w, b = exact_lstsq(X, y)
    solution = lstsq(X, y)  # raw condition number ~1e16: refined, to a few ulps in the scaled norm
    # 1e-12: a few ulps of the scaled norm, with room for a component small in that norm (the intercept)
    assert rel_err(np.append(solution.coef[0], solution.intercept), np.append(w, b)) <= 1e-12
    assert np.isfinite(solution.loss) and np.isfinite(solution.condition_number)


@pytest.mark.parametrize("chunked", [False, True], ids=["lstsq", "tiny chunk between ordinary ones"])
def test_values_far_below_1e_150_are_not_lost(chunked):
    # Their squares underflow (1e-200² = 0): a Gram matrix alone would read the column as constant.
    rng = np.random.default_rng(21)
    X = rng.standard_normal((90, 3)) * [1e-200, 1.0, 1e-250] + [3e-200, 0.0, -1e-250]
    y = X @ [2e200, -1.0, 5e249] + 1e-3 * rng.standard_normal(90)
    if chunked:
        X[30:60, 1] *= 2.0 ** -800  # the middle chunk: every column tiny
        y = X @ [2e200, -1.0, 5e249] + 1e-3 * rng.standard_normal(90)
        acc = QRAccumulator(3).update(X[:30], y[:30]).update(X[30:60], y[30:60]).update(X[60:], y[60:])
        solution = refine(acc.solve(), [(X, y)])
    else:
        solution = lstsq(X, y)
    w, b = exact_lstsq(X, y)
    # refined to a few ulps of the scaled norm (exact power-of-two scaling of the tiny columns): 1e-10 is loose
    assert rel_err(solution.coef[0], w) <= 1e-10 and solution.intercept[0] == pytest.approx(b, rel=1e-10)
    assert solution.rank == 4 and not solution.warnings


def test_tiny_targets_are_not_fitted_as_zero():
    rng = np.random.default_rng(22)
    X = rng.standard_normal((40, 2))
    y = 1e-250 * (X @ [3.0, -2.0] + 0.5 + 0.1 * rng.standard_normal(40))
    solution = lstsq(X, y)
    w, b = exact_lstsq(X, y)
    # exact scaling by powers of two: the bound of ordinary data, ls_rtol ≈ 2e-13 for 40 rows, κ ≈ 1 (vs exact: half)
    assert rel_err(solution.coef[0], w) <= 1e-12 and solution.intercept[0] == pytest.approx(b, rel=1e-12)


def test_a_solution_beyond_float64_is_refused():
    with pytest.raises(DataError, match="coefficient of 'x' overflows float64.*rescale that column"):
        lstsq([[0.0], [1e-306]], [0.0, 180.0])  # the slope is 1.8e308
    solution = lstsq([[0.0], [1e-301]], [0.0, 1.0])  # 1e301 fits, and its refinement stays finite
    # 1e301 is the exact slope (1/1e-301 correctly rounded); refined: within a couple of ulps (2 ulps = 4.4e-16);
    # the fit is exact up to the rounding of y = 1: loss ≤ (u·1)² / 2 rows ≈ 1e-32
    assert solution.coef[0, 0] == pytest.approx(1e301, rel=1e-15) and solution.loss == pytest.approx(0.0, abs=1e-30)


# --- rank deficiency: the minimum-norm solution, intercept outside the norm ------------------

def centred_min_norm(X, y):
    """scikit-learn's convention by hand: centre, minimum-norm weights (pinv), b = ȳ - x̄·w."""
    w = np.linalg.pinv(X - X.mean(0)) @ (y - y.mean())
    return w, y.mean() - X.mean(0) @ w


@pytest.mark.parametrize("copy, names, match", [
    (lambda a: a, ("a", "a_copy", "b"), "columns 'a' and 'a_copy' are linearly dependent"),
    (lambda a: -3 * a + 7, ("a", "a3", "b"), "columns 'a' and 'a3' are linearly dependent"),
])
def test_dependent_columns_give_the_minimum_norm_solution(copy, names, match):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(100), rng.standard_normal(100)
    X = np.column_stack([a, copy(a), b])
    y = 2 * a - b + 1 + 0.1 * rng.standard_normal(100)
    with pytest.warns(RankDeficiencyWarning, match=match):
        solution = lstsq(X, y, feature_names=names)
    coef, intercept = sklearn_fit(X, y)
    w, w0 = centred_min_norm(X, y)
    # minimum-norm solutions by SVD: error ≲ m·n·u·κ_kept² of the kept (well-conditioned, κ ≈ 1..3) part,
    # ~1e-12 for 100 rows; 1e-10 is that ×100 (atol: a coefficient that is 0 up to that rounding)
    for ref_coef, ref_intercept in ((coef[0], intercept[0]), (w, w0)):
        np.testing.assert_allclose(solution.coef[0], ref_coef, rtol=1e-10, atol=1e-12)
        assert solution.intercept[0] == pytest.approx(ref_intercept, rel=1e-10)
    assert solution.rank == 3 and solution.unidentified == names[:2]
    assert solution.condition_number == np.inf and solution.warnings[0].startswith(match)


@pytest.mark.parametrize("case", ["duplicated-1e13", "fewer-rows", "graded"])
def test_minimum_norm_is_exact_across_column_scales_1e16_apart(case):
    # A projection in data units loses the small coefficients and moves the fit; see solve._MinNormGroup.
    rng = np.random.default_rng(23)
    if case == "duplicated-1e13":
        a, b = rng.standard_normal((2, 30))
        X, y = np.column_stack([1e13 * a, 1e13 * a, 1e-3 * b]), a + b
    elif case == "fewer-rows":  # one centred row: the solution is that row times a number
        X, y = np.column_stack([1e13 * rng.standard_normal(2), 1e-3 * rng.standard_normal(2)]), rng.standard_normal(2)
    else:  # a 1e147 pair, a 1e-3 column and a small one tied to an ordinary one, on 4 rows
        a, b, c = rng.standard_normal((3, 4))
        X = np.column_stack([1e147 * a, 1e147 * a, 1e-3 * b, c, 2.0 ** -60 * c])
        y = rng.standard_normal(4)
    with pytest.warns(RankDeficiencyWarning):
        solution = lstsq(X, y)
    exact = least_squares_reference(X, y[:, None])
    # vs exact rationals; the minimum norm is exact group by group in scaled units (see solve._MinNormGroup),
    # so the error is rounding of well-conditioned small problems, ≲ 1e-13: 1e-9 is loose
    np.testing.assert_allclose(solution.coef[0], exact.coef[0], rtol=1e-9, atol=0)
    assert solution.intercept[0] == pytest.approx(exact.intercept[0], rel=1e-9, abs=1e-12)
    assert solution.rank == exact.rank


def test_refinement_ignores_the_rounding_of_a_huge_constant_column():
    # Σ x r - x̄ Σ r of a constant 2.5e147 column is double-double rounding, ~1e112 here; once it
    # leaked into the correction, refinement diverged to coefficients of 1e101.
    rng = np.random.default_rng(5)
    a, b, c = rng.standard_normal((3, 8))
    k = rng.integers(-5, 6, 8).astype(float)
    X = np.column_stack([1e-4 * a, np.full(8, 2.5e147), k, 1e-3 * b, 1e147 * c, 2.0 ** -180 * k])
    y = 1e-3 * rng.standard_normal(8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solution = lstsq(X, y)
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    exact = least_squares_reference(X, y[:, None])
    # vs exact rationals, refined: a few ulps of the scaled norm; 1e-9 is loose
    np.testing.assert_allclose(solution.coef[0], exact.coef[0], rtol=1e-9, atol=0)
    assert solution.intercept[0] == pytest.approx(exact.intercept[0], rel=1e-9)


def test_without_a_rank_tolerance_refinement_warns_instead_of_diverging_silently():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(100), rng.standard_normal(100)
    X, y = np.column_stack([a, 3 * a, b]), a - b + rng.standard_normal(100)
    with pytest.warns(ConvergenceWarning, match="did not converge in 6 passes"):
        solution = lstsq(X, y, rtol=0)  # the rounding noise in the copy's direction counts as information
    assert np.isfinite(solution.coef).all() and solution.warnings[-1].startswith("iterative refinement")


def test_constant_column_gets_weight_zero():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.standard_normal(60), np.full(60, 2.5), rng.standard_normal(60)])
    y = X[:, 0] - 2 * X[:, 2] + rng.standard_normal(60)
    with pytest.warns(RankDeficiencyWarning, match="column 'c' is constant"):
        solution = lstsq(X, y, feature_names=("a", "c", "b"))
    coef, intercept = sklearn_fit(X, y)
    assert solution.coef[0, 1] == 0.0
    # vs scikit-learn: ls_rtol-type bound of the kept, well-conditioned part (~1e-13 for 60 rows); ×1000 for the
    # minimum-norm route; atol: sklearn's coefficient of the constant column is rounding, |·| ≲ u·κ·‖w‖
    np.testing.assert_allclose(solution.coef, coef, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(solution.intercept, intercept, rtol=1e-10)
    assert solution.unidentified == ("c",) and solution.rank == 3


def test_two_separate_dependencies_are_named_separately():
    rng = np.random.default_rng(3)
    a, b, c = rng.standard_normal((3, 80))
    X = np.column_stack([a, b, 2 * a, c, b + c])
    y = a + b + c + rng.standard_normal(80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        solution = lstsq(X, y, feature_names=("a", "b", "a2", "c", "bc"))
    messages = [str(w.message) for w in caught if issubclass(w.category, RankDeficiencyWarning)]
    assert [m.split(";")[0] for m in messages] == ["columns 'a' and 'a2' are linearly dependent",
                                                   "columns 'b', 'c' and 'bc' are linearly dependent"]
    # minimum norm by SVD (pinv): ≲ m·n·u·κ_kept² ≈ 1e-12 here; 1e-10 leaves ×100; atol for coefficients near 0
    np.testing.assert_allclose(solution.coef[0], centred_min_norm(X, y)[0], rtol=1e-10, atol=1e-12)


def test_fewer_rows_than_parameters():
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((50, 100)), rng.standard_normal(50)
    with pytest.warns(RankDeficiencyWarning, match="50 rows for 101 parameters"):
        solution = lstsq(X, y)
    Xc, yc = X - X.mean(0), y - y.mean()
    w = torch.linalg.lstsq(torch.from_numpy(Xc), torch.from_numpy(yc[:, None]), driver="gelsd").solution[:, 0].numpy()
    coef, intercept = sklearn_fit(X, y)
    # minimum norm of an under-determined system, by SVD both ways: error ≲ n·u·κ(Xc restricted to its row
    # space)² ≈ 1e-12 (κ ≈ 10 for 50 × 100 Gaussian); 1e-9 is loose, atol for coefficients near 0
    for ref in (w, coef[0]):
        np.testing.assert_allclose(solution.coef[0], ref, rtol=1e-9, atol=1e-12)
    assert solution.intercept[0] == pytest.approx(y.mean() - X.mean(0) @ w, rel=1e-9)
    assert solution.rank == 50 and len(solution.unidentified) == 100
    # 50 points, 49 directions and a mean: interpolated; residuals are rounding, ≲ n·u·κ·‖y‖ ≈ 1e-12, squared ≈ 1e-24
    # summed over 50 and divided by 50: ~1e-26 < 1e-25 (observed ~1e-30)
    assert solution.loss == pytest.approx(0.0, abs=1e-25)


def test_all_zero_column_without_intercept():
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.standard_normal(30), np.zeros(30)])
    y = 3 * X[:, 0] + rng.standard_normal(30)
    with pytest.warns(RankDeficiencyWarning, match="column 'z' is all zeros"):
        solution = lstsq(X, y, fit_intercept=False, feature_names=("x", "z"))
    # one live column (κ = 1), no intercept: ls_rtol = 2·2·γ_32·(1 + ‖y‖/(‖x‖|w|)) ≈ 3e-14 here; 1e-12 is above it
    np.testing.assert_allclose(solution.coef, sklearn_fit(X, y, False)[0], rtol=1e-12)
    assert solution.intercept.tolist() == [0.0] and solution.rank == 1


def test_a_single_row():
    with pytest.warns(RankDeficiencyWarning, match="1 row for 2 parameters"):
        solution = lstsq([[3.0]], [5.0])
    coef, intercept = sklearn_fit(np.array([[3.0]]), np.array([5.0]))
    assert (solution.coef.tolist(), solution.intercept.tolist(), solution.loss) == \
        (coef.tolist(), intercept.tolist(), 0.0) == ([[0.0]], [5.0], 0.0)


def test_all_zero_targets():
    X, _ = random_problem(40, 3, 1)
    solution = lstsq(X, np.zeros((40, 2)))
    assert not solution.coef.any() and not solution.intercept.any() and solution.loss == 0.0
    assert solution.warnings == ()


# --- streaming: chunks, merging, the loss from R ------------------------------------------------

def test_chunked_merged_and_one_shot_agree():
    X, Y = random_problem(1000, 6, 2, seed=7)
    one = QRAccumulator(6, 2).update(X, Y)
    cuts = [0, 3, 10, 200, 201, 555, 990, 1000]  # 7 uneven chunks, one of a single row
    chunks = [(X[i:j], Y[i:j]) for i, j in zip(cuts, cuts[1:])]
    seven = QRAccumulator(6, 2)
    for chunk in chunks:
        seven.update(*chunk)
    left = QRAccumulator(6, 2).update(X[:400], Y[:400])
    merged = left.merge(QRAccumulator(6, 2).update(torch.from_numpy(X[400:]), torch.from_numpy(Y[400:])))
    reference = one.solve()
    # Other blocks, other orders: R agrees to the first-order bound r_atol (κ² of the shifted design, in units of
    # each column's norm ‖A_j‖ = ‖R_j‖; the old atol 1e-13·max|R| was below it), the R-only solutions to
    # ls_rtol, and the refined ones to a couple of ulps (double-double residuals whatever the R).
    norms = np.linalg.norm(one.R, axis=0)
    coef_rtol, intercept_rtol = ls_rtol(X, Y, reference.coef)
    optimum = lstsq(X, Y, refine=True)
    for acc in (seven, merged):
        assert acc.n_samples == 1000
        np.testing.assert_allclose(acc.R / norms, one.R / norms, rtol=0, atol=r_atol(X, Y))
        solution = acc.solve()
        np.testing.assert_allclose(solution.coef, reference.coef, rtol=coef_rtol)
        np.testing.assert_allclose(solution.intercept, reference.intercept, rtol=intercept_rtol)
        refined = refine(solution, chunks)
        np.testing.assert_allclose(refined.coef, optimum.coef, rtol=REFINED_RTOL)



@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e6])  # 1e6: means far from zero, so the shift decides the accuracy
def test_columns_given_one_by_one_give_the_same_r_as_the_matrix(weighted, offset):
    X, Y = random_problem(3000, 5, 2, seed=11)
    X, Y = np.asfortranarray(X + offset), np.asfortranarray(Y)
    w = np.random.default_rng(3).uniform(0, 2, 3000) if weighted else None
    matrix, columns = QRAccumulator(5, 2), QRAccumulator(5, 2)
    for rows in (slice(0, 1000), slice(1000, 1001), slice(1001, 3000)):  # the same blocks both ways
        matrix.update(X[rows], Y[rows], None if w is None else w[rows])
        columns.update_columns([*X[rows].T, *Y[rows].T], None if w is None else w[rows])
    # Not bit-identical: the same algorithm on the same blocks, but update() works in a C-order block
    # (X[rows] of a Fortran array is not contiguous) and update_columns() in a Fortran-order one, so the
    # Gram matrices are other BLAS calls; with weights the means are w @ X (gemv) vs w @ c (dot). So R
    # agrees to the bound of two computations, r_atol per column norm, and the refined solutions tightly.
    norms = np.linalg.norm(matrix.R, axis=0)
    np.testing.assert_allclose(columns.R / norms, matrix.R / norms, rtol=0, atol=r_atol(X, Y, w))
    assert (columns.n_samples, columns.sum_weights) == (matrix.n_samples, matrix.sum_weights)
    reference = lstsq(X, Y, sample_weight=w, refine=True)
    np.testing.assert_allclose(refine(columns.solve(), [(X, Y, w)]).coef, reference.coef, rtol=REFINED_RTOL)


def test_columns_are_checked_like_a_matrix():
    acc = QRAccumulator(2, 1)
    with pytest.raises(ValueError, match="expected 3 columns"):
        acc.update_columns([np.ones(4), np.ones(4)])
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        acc.update_columns([np.ones(4), np.ones(3), np.ones(4)])
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 row \(the first is row 3\)"):
        acc.update_columns([np.arange(4.0), np.array([0.0, 1.0, np.nan, 3.0]), np.arange(4.0) ** 2])
    assert acc.n_samples == 0


@pytest.mark.parametrize("weighted", [False, True])  # with weights every block is scanned, column by column
@pytest.mark.parametrize("bad", ["nan_in_y", "inf_in_x", "huge_in_x"])
def test_bad_values_given_as_columns_get_the_matrix_message(weighted, bad):
    X, Y = random_problem(50, 3, 1, seed=5)
    if bad == "nan_in_y":
        Y[[7, 30], 0] = np.nan
    elif bad == "inf_in_x":
        X[12, 2] = -np.inf
    else:
        X[40, 1] = 3e200
    w = np.linspace(0.0, 2.0, 50) if weighted else None
    messages = []
    for give in (lambda acc: acc.update(X, Y, w), lambda acc: acc.update_columns([*X.T, *Y.T], w)):
        with pytest.raises(DataError) as error:
            give(QRAccumulator(3, 1))
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert {"nan_in_y": "y has NaN or infinite values in 2 rows (the first is row 8)",  # 1-based data rows
            "inf_in_x": "X has NaN or infinite values in 1 row (the first is row 13)",
            "huge_in_x": "X column 2 holds values up to 3e+200"}[bad] in messages[1]

def test_refine_reads_chunks_from_a_function_and_rejects_a_one_shot_iterator():
    X, y = random_problem(300, 4, 1, seed=8)
    chunks = [(X[:100], y[:100]), (X[100:], y[100:])]
    acc = QRAccumulator(4).update(*chunks[0]).update(*chunks[1])
    solution = refine(acc.solve(), lambda: iter(chunks))
    # both refined in double-double: a couple of ulps each (lstsq alone would not refine this κ ≈ 1 design)
    np.testing.assert_allclose(solution.coef, lstsq(X, y, refine=True).coef, rtol=REFINED_RTOL)
    with pytest.raises(ValueError, match="one-shot iterator"):
        refine(acc.solve(), iter(chunks))
    with pytest.raises(ValueError, match="the chunks hold 100 rows"):
        refine(acc.solve(), chunks[:1])


def test_loss_from_r_equals_the_direct_mse():
    X, Y = random_problem(500, 5, 3, seed=9)
    acc = QRAccumulator(5, 3).update(X, Y)
    rng = np.random.default_rng(9)
    coef, intercept = rng.standard_normal((3, 5)), rng.standard_normal(3)
    # a loss from R: loss_rtol (large residuals at random parameters: ~γ_m, at the optimum ~γ_m·‖y‖²/‖r‖²)
    rel = loss_rtol(X, Y, coef, intercept)
    assert acc.loss(coef, intercept) == pytest.approx(np.mean((X @ coef.T + intercept - Y) ** 2), rel=rel)
    solution = lstsq(X, Y)
    direct = np.mean((solution.predict(X) - Y) ** 2)
    rel = loss_rtol(X, Y, solution.coef, solution.intercept)
    assert acc.loss(solution.coef, solution.intercept) == pytest.approx(direct, rel=rel)
    assert acc.solve().loss == pytest.approx(direct, rel=rel) and solution.loss == pytest.approx(direct, rel=rel)
    with pytest.raises(ValueError, match="fit_intercept=False"):
        QRAccumulator(5, 3, fit_intercept=False).update(X, Y).loss(coef, intercept)


# --- inputs and outputs --------------------------------------------------------------------------

def test_inputs_torch_float32_and_1d_targets():
    data = tl.tutorial_data()
    solution = lstsq(data.X, data.y[:, 0])  # float32 tensors, y 1-D
    assert solution.coef.dtype == np.float64 and solution.coef.shape == (1, 1)
    # The same rows through the same code, y 1-D instead of (n, 1): in practice bit-identical, but MKL
    # may pick kernels by the alignment of the work arrays (unless MKL_CBWR is set), so the bound of
    # two computations, ls_rtol (≈ 5e-14 here; the old 1e-15 was below it)
    X, y = data.X.double().numpy(), data.y.double().numpy()
    np.testing.assert_allclose(solution.coef, solve_dataset(data).coef, rtol=ls_rtol(X, y, solution.coef)[0])


def test_bad_inputs_raise_with_the_fix():
    X, y = random_problem(20, 2, 1)
    X[3, 1] = np.nan  # the 4th row: messages name data rows from 1
    with pytest.raises(DataError, match=r"X has NaN or infinite values.*row 4\)"):
        lstsq(X, y)
    with pytest.raises(ValueError, match="X has 20 rows but y has 19"):
        lstsq(np.ones((20, 2)), np.ones(19))
    with pytest.raises(ValueError, match="reshape a single feature"):
        lstsq(np.ones(20), np.ones(20))
    with pytest.raises(ValueError, match="feature_names has 1 names for 2 columns"):
        lstsq(np.eye(3)[:, :2], np.ones(3), feature_names=["a"])
    with pytest.raises(ValueError, match="no rows yet"):
        QRAccumulator(2).solve()


def test_predict_and_to_dict():
    X, Y = random_problem(50, 2, 2, seed=11)
    solution = lstsq(X, Y, feature_names=("size", "age"), target_names=("price", "rent"))
    # the same expression both ways: equal but for BLAS alignment effects, ≤ γ_3·|X||w| ≪ 1e-7 (the default)
    np.testing.assert_allclose(solution.predict(X), X @ solution.coef.T + solution.intercept)
    record = json.loads(json.dumps(solution.to_dict(), allow_nan=False))
    assert record["coef"]["rent"]["age"] == solution.coef[1, 1]
    assert record["intercept"]["price"] == solution.intercept[0]
    assert (record["rank"], record["n_samples"], record["warnings"]) == (3, 50, [])
    assert "LstsqSolution(" in repr(solution) and isinstance(solution, LstsqSolution)
    with pytest.warns(RankDeficiencyWarning):
        deficient = lstsq(np.ones((5, 1)), np.arange(5.0))
    assert json.loads(json.dumps(deficient.to_dict(), allow_nan=False))["condition_number"] is None


# --- sample weights: weighted least squares --------------------------------------------------------

@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
def test_weighted_matches_sklearn_and_statsmodels_wls_with_zero_weights(fit_intercept):
    sm = pytest.importorskip("statsmodels.api")
    X, Y = random_problem(300, 4, 2, seed=20)
    w = np.random.default_rng(20).uniform(0, 4, 300)
    w[::5] = 0.0  # these rows must not count at all
    solution = lstsq(X, Y, sample_weight=w, fit_intercept=fit_intercept)
    model = LinearRegression(fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    # three solvers of one weighted problem: the normal-equation bound ls_rtol (above; the old 1e-12 is near it)
    coef_rtol, intercept_rtol = ls_rtol(X, Y, model.coef_, w, fit_intercept)
    np.testing.assert_allclose(solution.coef, model.coef_, rtol=coef_rtol)
    np.testing.assert_allclose(solution.intercept, np.zeros(2) + model.intercept_, rtol=intercept_rtol, atol=1e-300)
    for j in range(2):
        A = sm.add_constant(X) if fit_intercept else X
        params = sm.WLS(Y[:, j], A, weights=w).fit().params
        ours = np.append(solution.intercept[j], solution.coef[j]) if fit_intercept else solution.coef[j]
        np.testing.assert_allclose(ours, params, rtol=max(coef_rtol, intercept_rtol))
    mse = np.sum(w[:, None] * (model.predict(X) - Y) ** 2, axis=0) / w.sum()  # what a weighted MSE loss reports
    rel = loss_rtol(X, Y, model.coef_, np.zeros(2) + model.intercept_, w)  # the loss read from R
    np.testing.assert_allclose(solution.loss_per_target, mse, rtol=rel)
    # Σw: one sum of 300 terms, ≤ γ_300 relative: far inside approx's default 1e-6
    assert solution.loss == pytest.approx(mse.mean(), rel=rel) and solution.sum_weights == pytest.approx(w.sum())
    A = np.sqrt(w)[:, None] * (np.hstack([X, np.ones((300, 1))]) if fit_intercept else X)
    # cond from R vs NumPy's SVD: Δκ/κ ≲ 2κ·m·n·u (κ < 100 here) ≪ 1e-8
    assert solution.condition_number == pytest.approx(np.linalg.cond(A), rel=1e-8)
    assert json.loads(json.dumps(solution.to_dict()))["sum_weights"] == pytest.approx(w.sum())
    without = lstsq(X[w > 0], Y[w > 0], sample_weight=w[w > 0], fit_intercept=fit_intercept)
    # rows of weight 0 are exact zeros in every sum, but the blocks (hence BLAS sums) differ: ls_rtol
    np.testing.assert_allclose(solution.coef, without.coef, rtol=coef_rtol)


def test_integer_weights_equal_repeated_rows():
    X, Y = random_problem(120, 3, 2, seed=21)
    w = np.random.default_rng(21).integers(0, 4, 120)
    repeated = lstsq(np.repeat(X, w, axis=0), np.repeat(Y, w, axis=0))
    weighted = lstsq(X, Y, sample_weight=w)
    # one problem computed two ways (weights vs repeated rows): ls_rtol and loss_rtol (above; the old 1e-13
    # and 1e-12 were below them). Singular values of the scaled centred R: Weyl, |Δσ_i| ≤ ‖ΔR'‖₂ ≤ n·r_atol,
    # relative to σ_i ≥ σ_min ≥ 1/κ; the condition number moves by both ends: twice that.
    coef_rtol, intercept_rtol = ls_rtol(X, Y, repeated.coef, w)
    sv_rtol = (X.shape[1] + 1 + Y.shape[1]) * r_atol(X, Y, w) * scaled_cond(shifted(X, w))
    np.testing.assert_allclose(weighted.coef, repeated.coef, rtol=coef_rtol)
    np.testing.assert_allclose(weighted.intercept, repeated.intercept, rtol=intercept_rtol)
    np.testing.assert_allclose(weighted.loss_per_target, repeated.loss_per_target,
                               rtol=loss_rtol(X, Y, repeated.coef, repeated.intercept, w))
    np.testing.assert_allclose(weighted.singular_values, repeated.singular_values, rtol=sv_rtol)
    assert weighted.condition_number == pytest.approx(repeated.condition_number, rel=2 * sv_rtol)
    assert weighted.sum_weights == w.sum() and repeated.sum_weights is None
    # chunked and merged, weights per chunk, refined with (X, y, w) chunks: the same answer
    chunks = [(X[:50], Y[:50], w[:50]), (X[50:], Y[50:], w[50:])]
    acc = QRAccumulator(3, 2).update(*chunks[0]).merge(QRAccumulator(3, 2).update(*chunks[1]))
    assert (acc.n_samples, acc.sum_weights, acc.n_positive) == (120, w.sum(), np.count_nonzero(w))
    refined = refine(acc.solve(), chunks)
    np.testing.assert_allclose(refined.coef, repeated.coef, rtol=coef_rtol)  # repeated is R-only: ls_rtol
    assert acc.loss(refined.coef, refined.intercept) == pytest.approx(
        repeated.loss, rel=loss_rtol(X, Y, repeated.coef, repeated.intercept, w))  # two losses read from R


def test_weighted_degree_10_polynomial_against_exact_rationals():
    x = np.arange(1.0, 31.0)
    X = np.column_stack([x ** k for k in range(1, 11)])  # condition number 1e14 and more with weights
    rng = np.random.default_rng(22)
    y = np.sin(x) + 10 * rng.standard_normal(30)
    w = rng.integers(1, 4, 30)
    w_exact, b_exact = exact_lstsq(np.repeat(X, w, axis=0), np.repeat(y, w))  # integer weights: repeated rows
    solution = lstsq(X, y, sample_weight=w.astype(float))
    # refined: as the unweighted degree-10 test above, ~u·κ_s per pass (κ_s ~1e8), converged far below 1e-7
    assert rel_err(np.append(solution.coef[0], solution.intercept), np.append(w_exact, b_exact)) <= 1e-7
    assert solution.condition_number > 1e13


def test_bad_sample_weights_raise_with_the_fix():
    X, y = random_problem(10, 2, 1)
    cases = [(np.ones(9), r"sample_weight must have shape \(10,\), one weight per row, got \(9,\)"),
             (np.ones((10, 1)), r"must have shape \(10,\)"),
             (np.r_[np.ones(3), np.nan, np.ones(6)], r"NaN or infinite values.*row 4\).*finite weight >= 0"),
             (np.r_[np.ones(5), -2.0, np.ones(4)], r"negative values.*-2.0 in row 6\).*>= 0"),
             (np.zeros(10), "all 10 sample weights are 0.*give at least one row a positive weight")]
    for w, match in cases:
        with pytest.raises(ValueError, match=match):
            lstsq(X, y, sample_weight=w)
    with pytest.raises(ValueError, match="all 10 sample weights are 0"):
        QRAccumulator(2).update(X, y, np.zeros(10)).solve()
    solution = lstsq(X, y, sample_weight=np.full(10, 2.0))
    with pytest.raises(ValueError, match="weights sum to 10 but the solution was fitted with weights summing to 20"):
        refine(solution, [(X, y)])
    with pytest.raises(ValueError, match=r"a pair \(X, y\) or a triple \(X, y, sample_weight\)"):
        refine(solution, [(X,)])
