"""Numerical edge cases through the command line, the user's path: constant and duplicated
columns, columns of magnitude 1e13 next to 1e-3, fewer rows than columns, a single row and
all-zero targets.

``solve`` must give the minimum-norm solution (intercept outside the norm) with a warning naming
the columns, ``solve --summary`` must say which terms are not identified, and ``fit`` must never
report inf or NaN: it trains, or stops with the stability bound and the fix (exit 3). The
library-level checks of the same cases are in test_solve.py and test_statistics.py. References
are computed here: NumPy's pinv and PyTorch's gelsd on centred data, exact rationals.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import torchlinreg as tl
from bounds import U64
from fuzzing import assert_clean_stderr, least_squares_reference, run_cli
from torchlinreg import load_model, write_table

RNG_SEED = 13


def centred_min_norm(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """scikit-learn's convention by hand: minimum-norm weights of the centred data (pinv), b = ȳ - x̄·w."""
    w = np.linalg.pinv(X - X.mean(0)) @ (y - y.mean())
    return w, float(y.mean() - X.mean(0) @ w)


def solve_json(path) -> tuple[dict, list[str]]:
    code, out, err = run_cli("solve", path, "--json")
    assert code == 0, err
    assert_clean_stderr(err)
    return json.loads(out), [line.removeprefix("torchlinreg: warning: ") for line in err.splitlines()]


def coefficients(solution: dict, names) -> np.ndarray:
    [target] = solution["coef"]
    return np.array([solution["coef"][target][name] for name in names])


def fit(path, out, *flags) -> tuple[int, str, str, dict]:
    """``torchlinreg fit`` into ``out``: exit code, stdout, stderr and the summary, checked to be finite."""
    code, stdout, err = run_cli("fit", path, "--out", out, "--no-plots", "--quiet", *flags)
    assert code in (0, 3), err
    assert "Traceback" not in err and "encountered in" not in err, err
    summary = json.loads((out / "summary.json").read_text())
    history = json.loads((out / "history.json").read_text())
    assert history["records"] and all(math.isfinite(r["loss"]) for r in history["records"])
    assert np.isfinite(summary["trained"]["weight"]).all() and np.isfinite(summary["trained"]["bias"]).all()
    assert (code == 3) == (summary["status"] == "diverged")
    return code, stdout, err, summary


# ---- rank deficiency: minimum norm, named columns, unidentified terms --------------------------

def _constant():
    rng = np.random.default_rng(RNG_SEED)
    a, b = rng.standard_normal((2, 40))
    X = np.column_stack([a, np.full(40, 2.5), b])
    return ("a", "c", "b"), X, 2 * a - b + 1 + 0.1 * rng.standard_normal(40)


def _duplicated():
    rng = np.random.default_rng(RNG_SEED)
    a, b = rng.standard_normal((2, 40))
    return ("a", "b", "a_copy"), np.column_stack([a, b, a]), 3 * a - b + 0.1 * rng.standard_normal(40)


def _affine_copy():
    rng = np.random.default_rng(RNG_SEED)
    a = rng.integers(-400, 400, 40) / 8  # dyadic: 7 - 3a is exact in float64, so the dependency is too
    b = rng.standard_normal(40)
    return ("a", "a3", "b"), np.column_stack([a, 7 - 3 * a, b]), a + b + 0.1 * rng.standard_normal(40)


def _fewer_rows():
    rng = np.random.default_rng(RNG_SEED)
    return tuple(f"x{i}" for i in range(6)), rng.standard_normal((4, 6)), rng.standard_normal(4)


def _single_row():
    return ("x", "z"), np.array([[3.0, -1.0]]), np.array([5.0])


@pytest.mark.parametrize("make, warning, unidentified", [
    (_constant, "column 'c' is constant, so collinear with the intercept", ("intercept", "c")),
    (_duplicated, "columns 'a' and 'a_copy' are linearly dependent", ("a", "a_copy")),
    (_affine_copy, "columns 'a' and 'a3' are linearly dependent", ("intercept", "a", "a3")),
    (_fewer_rows, "4 rows for 7 parameters", ("intercept",) + tuple(f"x{i}" for i in range(6))),
    (_single_row, "1 row for 3 parameters", ("intercept", "x", "z")),
], ids=["constant", "duplicated", "affine-copy", "fewer-rows", "single-row"])
def test_rank_deficient_files_give_the_minimum_norm_solution(tmp_path, make, warning, unidentified):
    names, X, y = make()
    path = write_table(tmp_path / "data.csv", {**dict(zip(names, X.T)), "y": y})
    solution, warnings = solve_json(path)

    w, b = centred_min_norm(X, y)
    exact = least_squares_reference(X, y[:, None])
    ours = coefficients(solution, names)
    # Minimum-norm solutions of tiny, well-conditioned kept parts (κ ≲ 10, ≤ 40 rows): SVD/pinv error
    # ≲ m·n·u·κ² ≈ 1e-12; 1e-9 is loose (the values pass through CSV at 17 digits, exactly). atol: coefficients
    # that are 0 up to that rounding.
    for ref_w, ref_b in ((w, b), (exact.coef[0], exact.intercept[0])):
        np.testing.assert_allclose(ours, ref_w, rtol=1e-9, atol=1e-12)
        assert solution["intercept"]["y"] == pytest.approx(ref_b, rel=1e-9, abs=1e-12)
    if len(X) < X.shape[1]:  # PyTorch's SVD driver agrees on the under-determined case
        Xc = torch.from_numpy(X - X.mean(0))
        gelsd = torch.linalg.lstsq(Xc, torch.from_numpy(y - y.mean())[:, None], driver="gelsd").solution[:, 0]
        np.testing.assert_allclose(ours, gelsd.numpy(), rtol=1e-9, atol=1e-12)  # gelsd: SVD, the same bound
    assert solution["rank"] == exact.rank
    assert any(line.startswith(warning) for line in warnings), warnings
    assert sorted(solution["unidentified"]) == sorted(n for n in unidentified if n != "intercept")

    code, out, err = run_cli("solve", path, "--summary")
    assert code == 0, err
    listed = [line.split()[0] for line in out.splitlines() if line.endswith("not identified")]
    assert sorted(listed) == sorted(unidentified), out


@pytest.mark.parametrize("make", [_constant, _duplicated, _fewer_rows, _single_row],
                         ids=["constant", "duplicated", "fewer-rows", "single-row"])
def test_gradient_descent_on_rank_deficient_files_stays_finite(tmp_path, make):
    names, X, y = make()
    path = write_table(tmp_path / "data.csv", {**dict(zip(names, X.T)), "y": y})
    code, out, err, summary = fit(path, tmp_path / "out", "--epochs", "300", "--save", tmp_path / "model")
    assert code == 0
    assert "minimum-norm optimum" in out  # the gap is measured from the minimum-norm solution, and says so
    exact = least_squares_reference(X, y[:, None])
    # the optimum's loss vs exact rationals: ≲ γ_m·‖y‖²/‖r‖² (loss_rtol of test_solve, ≤ 1e-11 for these
    # ≤ 40-row sets); abs for the interpolated ones, whose residuals are rounding (≲ (m·u·‖y‖)² ≈ 1e-28)
    assert summary["optimum"]["loss"] == pytest.approx(exact.loss, rel=1e-9, abs=1e-12)
    model = load_model(tmp_path / "model")
    assert np.array_equal(model.weight, summary["trained"]["weight"])


# ---- magnitudes 1e13 next to 1e-3 ----------------------------------------------------------------

@pytest.fixture()
def mixed_scales(tmp_path):
    """Columns of magnitude 1e13 and 1e-3 (condition number ~1e16 unscaled), a target of magnitude 1."""
    rng = np.random.default_rng(RNG_SEED)
    X = np.column_stack([1e13 * rng.standard_normal(100), 1e-3 * rng.standard_normal(100)])
    y = X @ [2e-13, 3e3] + 1 + rng.standard_normal(100)
    return write_table(tmp_path / "mixed.csv", {"big": X[:, 0], "small": X[:, 1], "y": y}), X, y


def test_solve_on_1e13_next_to_1e_minus_3_is_exact(mixed_scales):
    path, X, y = mixed_scales
    solution, warnings = solve_json(path)
    exact = least_squares_reference(X, y[:, None])
    ours = np.append(coefficients(solution, ("big", "small")), solution["intercept"]["y"])
    # refined (raw κ ~1e16): a couple of ulps in the scaled norm; 1e-12 leaves room for the intercept, small in it
    np.testing.assert_allclose(ours, np.append(exact.coef[0], exact.intercept[0]), rtol=1e-12)
    assert not warnings and solution["rank"] == 3


def _stable_bound(X: np.ndarray) -> float:
    """2 / the largest eigenvalue of the MSE's Hessian, 2/n [X 1]ᵀ[X 1]: gradient descent's stability limit."""
    A = np.column_stack([X, np.ones(len(X))])
    return 2 / np.linalg.eigvalsh(2 / len(X) * A.T @ A).max()


def test_gradient_descent_on_1e13_stops_with_the_bound_and_the_fix(mixed_scales, tmp_path):
    path, X, y = mixed_scales
    code, out, err, summary = fit(path, tmp_path / "out", "--epochs", "50", "--optimizer", "sgd")
    assert code == 3 and summary["status"] == "diverged"
    bound = _stable_bound(X)
    message = next(line for line in err.splitlines() if "training diverged" in line)
    assert f"above {bound:.3g}" in message and "--standardize" in message, message
    suggested = float(message.split("--lr ")[1].split(",")[0])
    assert suggested < bound
    for line in out.splitlines():  # the report of the finite epochs: no inf, no NaN
        assert "nan" not in line.lower().split() and "inf" not in line.lower().split(), line

    # Both fixes it names work: the suggested rate does not diverge, and neither does --standardize.
    for flags in (["--lr", str(suggested)], ["--standardize", "--lr", "0.1"]):
        code, _, err, summary = fit(path, tmp_path / "-".join(flags), "--epochs", "50", "--optimizer", "sgd", *flags)
        assert code == 0 and summary["status"] != "diverged", err


@pytest.mark.parametrize("flags", [
    ["--momentum", "0.9"],
    ["--momentum", "0.9", "--nesterov"],
    ["--optimizer", "adam", "--lr", "1e3"],
    ["--batch-size", "10"],
    ["--engine", "data"],
], ids=["momentum", "nesterov", "adam", "mini-batch", "data-engine"])
def test_no_optimizer_reports_inf_or_nan_on_1e13_columns(mixed_scales, tmp_path, flags):
    path, _, _ = mixed_scales
    code, out, err, summary = fit(path, tmp_path / "out", "--epochs", "30", *flags)  # finite, checked in fit()
    if code == 3:
        message = next(line for line in err.splitlines() if "training diverged" in line)
        assert "--lr" in message, message  # what to change
    for line in out.splitlines():
        assert "nan" not in line.lower().split() and "inf" not in line.lower().split(), line


# ---- all-zero targets ------------------------------------------------------------------------------

def test_all_zero_targets(tmp_path):
    rng = np.random.default_rng(RNG_SEED)
    X = rng.standard_normal((30, 3))
    path = write_table(tmp_path / "zeros.csv", {"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": np.zeros(30)})
    solution, warnings = solve_json(path)
    exact = least_squares_reference(X, np.zeros((30, 1)))
    assert coefficients(solution, "abc").tolist() == exact.coef[0].tolist() == [0.0, 0.0, 0.0]
    assert solution["intercept"]["y"] == 0.0 and solution["loss"] == 0.0 and solution["rank"] == 4
    assert not warnings and not solution["unidentified"]

    code, out, err = run_cli("solve", path, "--summary")
    assert code == 0 and "not identified" not in out, out  # zero targets leave every term identified

    code, out, err, summary = fit(path, tmp_path / "out", "--epochs", "500", "--lr", "0.1")
    assert code == 0
    assert np.abs(summary["trained"]["weight"]).max() < 1e-3 and abs(summary["trained"]["bias"][0]) < 1e-3  # trained towards 0


# ---- values below 1e-150, columns 1e16 apart in a rank-deficient design (fuzzing found these) ----

def _exact_fit_matches(X: np.ndarray, y: np.ndarray, solution: dict, names) -> None:
    """Every coefficient to 1e-9 of the exact one; the fitted values to 1e-9 of the largest (the intercept
    of an exact fit carries the rounding of the targets, as on data of ordinary size)."""
    # exact power-of-two scaling and the minimum norm group by group (solve._MinNormGroup): rounding of tiny,
    # well-conditioned problems, ≲ 1e-13, so 1e-9 is loose; atol only for coefficients that are exactly 0
    exact = least_squares_reference(X, y[:, None])
    ours = coefficients(solution, names)
    np.testing.assert_allclose(ours, exact.coef[0], rtol=1e-9, atol=1e-300)
    fitted, exact_fit = X @ ours + solution["intercept"]["y"], X @ exact.coef[0] + exact.intercept[0]
    np.testing.assert_allclose(fitted, exact_fit, rtol=1e-9, atol=1e-9 * np.abs(exact_fit).max() + 1e-300)


@pytest.mark.parametrize("X, y", [
    ([[0.0], [0.0], [1.0]], [0.0, 0.0, 3e-192]),  # tiny targets: were fitted as zero
    ([[0.0], [3.08e-192], [1e-192]], [0.0, 1.0, 2.0]),  # a tiny column: was read as constant
    ([[2.4744016778793434e-172, 1.6802340202740407e-159, 0.0],
      [5.673357645161621e-211, 6.04869521285822e-175, -4.6817116664291395e-204]], [-19.0, 10.0]),  # LinAlgError
    ([[1e-200, 1e-200, 1.0], [-3e-200, -3e-200, 2.0], [2e-200, 2e-200, -1.0], [5e-200, 5e-200, 0.5]],
     [1.0, -2.0, 0.25, 3.0]),  # a duplicated tiny column: the minimum-norm split of its coefficient
], ids=["tiny-targets", "tiny-column", "cholesky-fails", "tiny-duplicated"])
def test_values_below_1e_150_fit_exactly(tmp_path, X, y):
    X, y = np.array(X), np.array(y)
    names = tuple(f"x{i}" for i in range(X.shape[1]))
    path = write_table(tmp_path / "tiny.csv", {**dict(zip(names, X.T)), "y": y})
    code, out, err = run_cli("solve", path, "--json")
    assert code == 0, err
    _exact_fit_matches(X, y, json.loads(out), names)


@pytest.mark.parametrize("case", ["duplicated-1e13", "fewer-rows", "three-rows"])
def test_minimum_norm_is_exact_with_columns_of_very_different_scales(tmp_path, case):
    rng = np.random.default_rng(RNG_SEED)
    if case == "duplicated-1e13":
        a, b = rng.standard_normal((2, 30))
        X, y = np.column_stack([1e13 * a, 1e13 * a, 1e-3 * b]), a + b
    elif case == "fewer-rows":
        X = np.column_stack([1e13 * rng.standard_normal(2), 1e-3 * rng.standard_normal(2), rng.standard_normal(2)])
        y = rng.standard_normal(2)
    else:  # rank 2 once centred; the 1e13 column alone cannot carry the direction the 1e-3 ones share
        X = np.column_stack([1e13 * rng.standard_normal(3), 1e-3 * rng.standard_normal(3),
                             1e-3 * rng.standard_normal(3)])
        y = rng.standard_normal(3)
    names = ("big", "big_copy" if case == "duplicated-1e13" else "small", "other")
    path = write_table(tmp_path / "scales.csv", {**dict(zip(names, X.T)), "y": y})
    code, out, err = run_cli("solve", path, "--json")
    assert code == 0, err
    _exact_fit_matches(X, y, json.loads(out), names)


# ---- subnormal values (fuzzing of damaged files found them) ----------------------------------------

@pytest.mark.parametrize("X, y, refused", [
    ([[0.0], [0.0], [0.0], [8.087e-320]], [0.0, 0.0, 0.0, 2.42764e-319], "feature 'x0'"),  # a damaged .npy
    ([[1.0, 3e-320], [2.0, -1e-319], [-1.0, 5e-320], [0.5, 0.0]], [1.0, -2.0, 3.0, 0.0], "feature 'x1'"),
    ([[1.0], [2.0], [-1.0], [0.5]], [1e-319, -2e-320, 3e-320, 0.0], "target 'y'"),
], ids=["one-column", "next-to-an-ordinary-column", "target"])
def test_columns_of_subnormal_values_are_refused_with_one_line(tmp_path, X, y, refused):
    # Below 2.2e-308 a float64 keeps a few significant bits (1e-319 has 14): a fit would lose
    # digits from the 4th on, so such a column is refused like one above 1e150, naming it.
    X, y = np.array(X), np.array(y)
    names = tuple(f"x{i}" for i in range(X.shape[1]))
    path = write_table(tmp_path / "subnormal.csv", {**dict(zip(names, X.T)), "y": y})
    code, out, err = run_cli("solve", path, "--json")
    assert code != 0 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and refused in lines[0] and "2.2e-308" in lines[0] and "rescale" in lines[0], err


def test_a_column_with_some_subnormal_values_and_a_normal_norm_fits_exactly(tmp_path):
    X = np.array([[1.0, 3e-300], [2.0, -1e-319], [-1.0, 5e-301], [0.5, 0.0], [3.0, 1e-300]])
    y = np.array([1.0, -2.0, 3.0, 0.0, 0.5])
    path = write_table(tmp_path / "partly.csv", {"x0": X[:, 0], "x1": X[:, 1], "y": y})
    code, out, err = run_cli("solve", path, "--json")
    assert code == 0, err
    _exact_fit_matches(X, y, json.loads(out), ("x0", "x1"))


def test_a_constant_column_does_not_spoil_the_minimum_norm_of_a_dependency():
    """Fuzzing found it (seed 185091702871953): c = 8.951653070e-4 a + 2 d exactly, columns 1e13 apart
    in scale, beside a constant column b. Rounding mixed b into the null space, the minimum-norm
    groups tied it in, and the answer fell back to the scaled minimum norm: ‖w‖ = 1 for 0.447."""
    X = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [1e13, 0.0, 8951653070.0, 0.0], [0.0, 0.0, 2.0, 1.0]])
    y = np.array([[0.0], [0.0], [0.0], [1.0]])
    ref = least_squares_reference(X, y)  # exact rationals: rank 3, loss 0, ‖w‖ = 0.4472
    with pytest.warns(UserWarning, match="minimum-norm"):
        solution = tl.lstsq(X, y, feature_names=("a", "b", "c", "d"))
    assert solution.rank == ref.rank and solution.coef[0, 1] == 0.0  # the constant column: exactly 0
    # The null vector's entry for d is 1.7e-10 of it (the scales' ratio) and carries an error of about
    # u·κ ≈ 2e-16, so the minimum-norm move is accurate to ~1e-6 relative; the norm is stationary at its
    # minimum, so it is off by the square of that (1e-12); 1e-10 leaves a margin of 100.
    assert np.linalg.norm(solution.coef) == pytest.approx(np.linalg.norm(ref.coef), rel=1e-10)
    # The fit is exact (loss 0), and refinement restores it to rounding after the minimum-norm move: each
    # residual within a few roundings of its row's terms and of the intercept's, b = ȳ - x̄·w:
    # 10·u·(|X||w| + |x̄||w| + |y| + |ȳ|) (3.58e9 - 3.58e9 in row 2).
    w, b = solution.coef[0], solution.intercept[0]
    terms = np.abs(X) @ np.abs(w) + np.abs(X.mean(axis=0)) @ np.abs(w) + np.abs(y[:, 0]) + abs(y.mean())
    assert np.all(np.abs(X @ w + b - y[:, 0]) <= 10 * U64 * terms)
    # The loss reported is that of these coefficients, its residuals evaluated to the same rounding.
    assert solution.loss <= np.mean((10 * U64 * terms) ** 2)


def test_a_loss_that_overflows_only_in_the_datas_units_ends_as_diverged(tmp_path, monkeypatch, capsys):
    """Found by the fuzz profile (issue 15's session): a standardised model whose loss is finite while the same
    parameters in the data's units overflow (a constant feature at 1e150 whose mean, from the raw R, was an
    ulp off). The standardisation now comes from the shifted R and that data no longer overflows, so the raw
    objective's loss is made to overflow here: the epoch is not recorded with an infinite loss, the run ends
    as diverged, every recorded loss finite."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from torchlinreg import objectives

    monkeypatch.setattr(objectives._Evaluator, "data_loss", lambda self, sse, obj: float("inf"))  # data's units
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": [0.0, 0.0], "y": [1e150, 1e150], "a": pa.array([0, 1], pa.int64()),
                             "b": [0.0, 1.665665193722567e20]}), path, row_group_size=1)
    from torchlinreg.cli import main

    code = main(["fit", str(path), "--out", str(tmp_path / "out"), "--no-plots", "--quiet", "--epochs", "5"])
    err = capsys.readouterr().err
    assert code == 3 and "the loss in the data's units became inf at epoch 1" in err and "Traceback" not in err
    history = json.loads((tmp_path / "out" / "history.json").read_text())
    assert history["status"] == "diverged" and all(math.isfinite(r["loss"]) for r in history["records"])