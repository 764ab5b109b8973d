"""solve.digits: the estimated correct digits of the coefficients, against exact rational arithmetic.

Polynomial designs of degree 2 to 10 on the integer grid x = 1..30 (condition numbers of the raw
design 1e3 to 1e15), y = a polynomial plus noise times 1e-8 (tiny residuals) or 1e4 (huge ones),
with and without an intercept. The reference is the exact least-squares solution of the same
float64 inputs in fractions.Fraction, rounded once to float64 (``exact_lstsq``). No tolerance is
involved: the claims are about digits, "actual correct digits ≥ min(10, estimate)" and "the estimate
is not optimistic by more than one digit", and after refinement "at least 10 digits".
"""

import warnings

import numpy as np
import pytest

from test_solve import exact_lstsq
from torchlinreg.errors import ConvergenceWarning
from torchlinreg.report import format_solution
from torchlinreg.solve import digits as digits_module
from torchlinreg.solve import lstsq, needs_refinement, refinement
from torchlinreg.solve import solution as solution_module

DEGREES = [2, 3, 5, 7, 10]
SCALES = [1e-8, 1e4]


def poly_data(degree, scale, seed=17):
    rng = np.random.default_rng(seed)
    x = np.arange(1.0, 31.0)
    X = np.column_stack([x ** k for k in range(1, degree + 1)])
    y = 1.5 + X @ (rng.standard_normal(degree) / 10.0 ** np.arange(degree)) + scale * rng.standard_normal(len(x))
    return X, y


def actual_digits(value, exact):
    """Correct significant digits of float64 ``value`` against the correctly rounded ``exact``; 16 when equal."""
    with np.errstate(divide="ignore"):
        return np.minimum(16.0, -np.log10(np.abs(value - exact) / np.abs(exact)))


@pytest.fixture(scope="module")
def exact():
    return {(deg, scale, fi): (poly_data(deg, scale), exact_lstsq(*poly_data(deg, scale), fit_intercept=fi))
            for deg in DEGREES for scale in SCALES for fi in (True, False)}


def check_estimate(solution, coef, intercept, fit_intercept):
    est, act = solution.digits[0], actual_digits(solution.coef[0], coef)
    assert np.all(act >= np.minimum(10.0, est)), (act, est)
    assert np.all(act >= est - 1.0), (act, est)
    if fit_intercept:
        est_b, act_b = solution.intercept_digits[0], actual_digits(solution.intercept[0], intercept)
        assert act_b >= min(10.0, est_b) and act_b >= est_b - 1.0, (act_b, est_b)
    return act


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("degree", DEGREES)
def test_the_r_only_estimate_is_never_optimistic(exact, degree, scale, fit_intercept):
    (X, y), (coef, intercept) = exact[degree, scale, fit_intercept]
    solution = lstsq(X, y, fit_intercept=fit_intercept, refine=False)
    check_estimate(solution, coef, intercept, fit_intercept)


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("degree", DEGREES)
def test_the_default_holds_ten_digits_and_says_so(exact, degree, scale, fit_intercept):
    (X, y), (coef, intercept) = exact[degree, scale, fit_intercept]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reaching 10 digits, nothing warns
        solution = lstsq(X, y, fit_intercept=fit_intercept)
    act = check_estimate(solution, coef, intercept, fit_intercept)
    assert solution.min_digits >= 10 and act.min() >= 10


def test_the_grid_spans_condition_numbers_1e3_to_1e15(exact):
    conds = [lstsq(*exact[deg, 1e4, True][0], refine=False).condition_number for deg in DEGREES]
    assert min(conds) < 1e4 and max(conds) > 1e15


def test_well_conditioned_data_take_one_pass(monkeypatch):
    def no_pass(*args, **kwargs):
        raise AssertionError("a refinement pass over the data")

    monkeypatch.setattr(refinement, "_residual_pass", no_pass)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5000, 20)) + 5.0
    y = X @ rng.standard_normal(20) + rng.standard_normal(5000)
    solution = lstsq(X, y)
    assert not needs_refinement(solution) and solution.min_digits >= 10
    coef, intercept = exact_lstsq(X[:300], y[:300])  # the estimate holds there too (exact on fewer rows)
    small = lstsq(X[:300], y[:300])
    check_estimate(small, coef, intercept, True)


def test_short_of_the_target_warns_with_the_digits(monkeypatch):
    X, y = poly_data(5, 1e4)
    monkeypatch.setattr(solution_module, "TARGET_DIGITS", 16)  # more than float64 holds: never reached
    monkeypatch.setattr(refinement, "TARGET_DIGITS", 16)
    with pytest.warns(ConvergenceWarning, match=r"hold only 1\d\.\d correct digits .* where 16 were sought"):
        solution = lstsq(X, y)
    assert any("correct digits" in w for w in solution.warnings)


def test_json_and_report_show_the_digits():
    X, y = poly_data(3, 1e4)
    solution = lstsq(X, y)
    record = solution.to_dict()
    assert record["min_digits"] == solution.min_digits >= 10
    assert set(record["digits"]["y"]) == {"x0", "x1", "x2"} and record["se_digits"] > 0
    assert f"at least {solution.min_digits:.1f} in every weight" in format_solution(solution)


def test_digits_of_exact_values_and_unbounded_errors():
    got = digits_module.digits(np.array([0.0, 1.0, 1.0, 2.0]), np.array([0.0, 1e-12, np.inf, 2e-5]))
    assert got.tolist() == [15.0, 12.0, 0.0, 5.0]


def test_coefficients_of_zero_need_no_refinement_and_raise_no_warning():
    """A target that no feature explains has coefficients of 0, computed as ±1e-17: they have no significant
    digits of their own, but they are as accurate as the fit can tell (scikit-learn's estimator checks hold
    such data). min_digits measures them against the coefficients that would move the fit by the centred y."""
    import warnings

    from torchlinreg.solve import lstsq

    X = np.array([[1, 3], [1, 3], [1, 5], [1, 5], [2, 3], [2, 3], [2, 5], [2, 5], [3, 3], [3, 3], [3, 5], [3, 5]],
                 dtype=float)
    y = np.array([1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1, 1], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = lstsq(X, y)
    assert np.abs(s.coef).max() < 1e-15 and s.min_digits >= 10
