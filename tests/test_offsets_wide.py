"""Issue 15, findings 3 and 8: exact answers at any offset, and wide data through the rows' side.

References are computed here: exact rational least squares (``test_solve.exact_lstsq``, fractions
on the same float64 values) and NumPy's pseudo-inverse (minimum norm) on the centred data.
"""

import json
import os
import resource
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bounds import EPS64
from test_solve import centred_min_norm, exact_lstsq
from torchlinreg.data import ArraySource
from torchlinreg.errors import ConfigError, RankDeficiencyWarning
from torchlinreg.exact import solve_source
from torchlinreg.memory import plan_reading
from torchlinreg.scaling import Standardizer
from torchlinreg.solve import QRAccumulator, lstsq

SRC = str(Path(__file__).resolve().parents[1] / "src")
# x = offset + step·i, i = 0..99, as float64 (ns timestamps 1.7e18 + 37i round to multiples of 256);
# 2^62 + 1024 i is the largest offset promised
OFFSETS = [(1e12, 1.0), (1e14, 1.0), (2.0 ** 53, 2.0), (1.7e18, 37.0), (2.0 ** 62, 1024.0)]


def offset_data(offset, step, seed=0):
    i = np.arange(100.0)
    x = offset + step * i
    assert len(np.unique(x)) > 10  # 1.7e18 + 37i rounds to multiples of 256 (ulp): 15 values, the same rows
    return x[:, None], 3 * i + 1 + np.random.default_rng(seed).normal(0, 0.1, 100)


def check_exact(coef, intercept, X, y):
    """Against the exact rational optimum: the coefficient to 8 eps (refined in double-double, the shifted
    design's κ = 1, so within a couple of ulps; ×4 margin); the intercept ȳ - x̄·w to 8 eps of its terms
    (|b| + |x̄ w|: the coefficient's ulps times x̄, and b's own rounding)."""
    w, b = exact_lstsq(X, y)
    assert abs(coef - w[0]) <= 8 * EPS64 * abs(w[0])
    assert abs(intercept - b) <= 8 * EPS64 * (abs(b) + abs(X.mean() * w[0]))


@pytest.mark.parametrize("offset, step", OFFSETS)
def test_large_offsets_give_the_exact_rational_answer(offset, step):
    X, y = offset_data(offset, step)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: "column 'x' is constant", weight 0
        one = lstsq(X, y)
        # streamed in chunks of 7 rows: each chunk's shift differs, the reference is the first row's
        streamed = solve_source(ArraySource.from_arrays(X, y), chunk_rows=7)
    for solution in (one, streamed):
        check_exact(solution.coef[0, 0], solution.intercept[0], X, y)
    # chunks merged in another order: the second accumulator's reference is moved onto the first's
    acc = QRAccumulator(1, 1).update(X[60:], y[60:]).merge(QRAccumulator(1, 1).update(X[:60], y[:60]))
    w, _ = exact_lstsq(X, y)
    # R alone, unrefined: the shifted design's κ = 1, error a few eps (bound n·γ_{2n}·κ² ≈ 100·200·u ≈ 2e-12)
    assert acc.solve().coef[0, 0] == pytest.approx(w[0], rel=2e-12)


def test_a_column_constant_at_a_huge_offset_is_still_constant():
    X, y = offset_data(1.7e18, 37.0)
    X = np.column_stack([X, np.full(100, 1.7e18 + 256)])  # one value, exactly: constant
    with pytest.warns(RankDeficiencyWarning, match="column 'x1' is constant"):
        solution = lstsq(X, y)
    assert solution.coef[0, 1] == 0.0
    check_exact(solution.coef[0, 0], solution.intercept[0], X[:, :1], y)


@pytest.mark.parametrize("offset, step", [(1e12, 1.0), (1.7e18, 37.0)])
def test_solve_command_at_an_offset(tmp_path, offset, step):
    from fuzzing import run_cli

    X, y = offset_data(offset, step)
    path = tmp_path / "offset.csv"
    path.write_text("x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(X[:, 0], y)))
    for extra in ([], ["--stream", "--chunk-rows", "7"]):
        code, out, err = run_cli("solve", str(path), "--target", "y", "--json", *extra)
        assert code == 0 and "constant" not in err, err
        record = json.loads(out)
        check_exact(record["coef"]["y"]["x"], record["intercept"]["y"], X, y)


def test_fit_reports_a_sane_gap_at_an_offset(tmp_path):
    from fuzzing import run_cli

    X, y = offset_data(1e12, 1.0)
    path = tmp_path / "offset.csv"
    path.write_text("x,y\n" + "".join(f"{float(a)!r},{float(b)!r}\n" for a, b in zip(X[:, 0], y)))
    code, out, err = run_cli("fit", str(path), "--target", "y", "--optimizer", "lbfgs", "--standardize",
                              "--dtype", "float64", "--out", str(tmp_path / "out"))
    assert code == 0, err
    gap = next(line for line in out.splitlines() if "gap:" in line)
    # the standardisation comes from the shifted R (all the spread's digits), so training reaches the optimum
    # to the rounding of a loss evaluated in raw units at 1e12; before that fix it stopped above it, and before
    # issue 15 the gap read -1.00e+00
    assert "equals the optimum's to rounding" in gap or \
        "above the optimum's" in gap and "-" not in gap.split("loss is")[1].split("%")[0]


@pytest.mark.parametrize("offset, step", OFFSETS)
def test_standardizer_keeps_the_digits_of_the_spread(offset, step):
    X, _ = offset_data(offset, step)
    mean, scale = Standardizer.column_stats(X)
    exact_mean = sum(Fraction(float(v)) for v in X[:, 0]) / 100
    exact_var = sum((Fraction(float(v)) - exact_mean) ** 2 for v in X[:, 0]) / 100
    # the mean rounded once (ref + offset: two roundings, ≤ eps·|mean| + eps·spread); the deviation from
    # differences exact by Sterbenz and a float64 std (≤ 4 eps relative for 100 terms: γ_100 ≈ 1e-14 bound)
    assert abs(Fraction(float(mean[0])) - exact_mean) <= 2 * EPS64 * abs(exact_mean)
    assert float(scale[0]) == pytest.approx(float(exact_var) ** 0.5, rel=2e-14)


@pytest.mark.parametrize("offset, step", OFFSETS)
def test_the_gram_engines_standardizer_keeps_the_digits_of_the_spread(offset, step):
    """The default fit standardises from R: taken from the shifted R (QRAccumulator.R_shifted), the scale keeps
    every digit of the spread at offsets up to 2^62, where the raw R has none left."""
    from torchlinreg.gram import GramObjective

    X, y = offset_data(offset, step)
    scaler = GramObjective.from_accumulator(QRAccumulator(1).update(X, y)).standardizer()
    exact_mean = sum(Fraction(float(v)) for v in X[:, 0]) / 100
    exact_var = sum((Fraction(float(v)) - exact_mean) ** 2 for v in X[:, 0]) / 100
    # the mean: the reference plus a shifted mean (two roundings: ≤ 2 eps |mean| + eps·spread); the scale: a
    # column norm of a Cholesky factor of the shifted Gram matrix (relative error a few eps; 1e-13 holds it)
    assert abs(Fraction(float(scaler.x_mean[0])) - exact_mean) <= 2 * EPS64 * abs(exact_mean) + \
        EPS64 * Fraction(float(exact_var) ** 0.5)
    assert float(scaler.x_scale[0]) == pytest.approx(float(exact_var) ** 0.5, rel=1e-13)


# --- wide data: fewer rows than features --------------------------------------------------------

def test_wide_data_give_the_minimum_norm_solution_through_the_rows():
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((20, 3000)), rng.standard_normal(20)
    with pytest.warns(RankDeficiencyWarning, match="20 rows for 3001 parameters"):
        solution = lstsq(X, y)
    w, b = centred_min_norm(X, y)  # minimum norm by NumPy's SVD (pinv) on the centred data
    # two SVD solutions of an under-determined system: error ≲ n·u·κ(Xc on its row space)² (κ ≈ 1.6 for
    # 20 × 3000 Gaussian) ≈ 1e-14 relative to ‖w‖; 1e-9 leaves room for other CPUs' kernels
    np.testing.assert_allclose(solution.coef[0], w, rtol=0, atol=1e-9 * np.abs(w).max())
    assert solution.intercept[0] == pytest.approx(y.mean() - X.mean(0) @ w, abs=1e-9 * np.abs(y).max())
    assert solution.rank == 20 and len(solution.unidentified) == 3000
    # interpolated: residuals are rounding (≲ n·u·κ·‖y‖ ≈ 1e-14), their mean square far below 1e-20
    assert solution.loss < 1e-20


def _limited(gib):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (gib << 30, gib << 30))
    return limit


def test_wide_csv_is_solved_within_a_memory_limit(tmp_path):
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((20, 10_000)), rng.standard_normal(20)
    path = tmp_path / "wide.csv"
    names = [f"g{j}" for j in range(10_000)]
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=",".join(names + ["y"]), comments="")
    env = dict(os.environ, PYTHONPATH=SRC, OMP_NUM_THREADS="2")
    run = [sys.executable, "-m", "torchlinreg", "solve", str(path), "--target", "y", "--json"]
    # 3 GiB of address space (PyTorch's and BLAS's threads reserve some) and 120 s: before, the d × d
    # route needed over 6 GiB and 900 s
    done = subprocess.run(run + ["--max-memory", "6G"], env=env, preexec_fn=_limited(3), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    fitted = json.loads(done.stdout)["coef"]["y"]
    coef = np.array([fitted[name] for name in names])
    w = np.linalg.lstsq(X - X.mean(0), y - y.mean(), rcond=None)[0]  # minimum norm (gelsd)
    # as above (the CSV round trip is exact: numpy writes 18 significant digits), 1e-9 of ‖w‖_∞
    np.testing.assert_allclose(coef, w, rtol=0, atol=1e-9 * np.abs(w).max())
    # streamed, the R factor is needed: refused before reading, with the sizes and the fixes
    refused = subprocess.run(run + ["--max-memory", "2G", "--stream"], env=env, preexec_fn=_limited(3),
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "the R factor" in refused.stderr and "decomposition" in refused.stderr and "without --stream" in refused.stderr


def test_the_pre_check_counts_the_decomposition(tmp_path):
    path = tmp_path / "tall.csv"
    np.savetxt(path, np.random.default_rng(2).standard_normal((3000, 2000)), delimiter=",", comments="",
               header=",".join(f"c{j}" for j in range(2000)))
    # (2001)² × 8 = 32 MB per copy: 6 for the accumulation and 12 for the decomposition ≈ 576 MB
    with pytest.raises(ConfigError, match="decomposition"):
        plan_reading(path, 400 << 20, command="solve", one_pass=True)
    assert plan_reading(path, 4 << 30, command="solve", one_pass=True).stream
