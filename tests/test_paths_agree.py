"""The same command on the same file gives the same answer whether the file is read whole or streamed."""

import json

import numpy as np
import pytest

from torchlinreg import make_regression, write_table
from torchlinreg.cli import main
from torchlinreg.data import dataset_columns
from torchlinreg.scaling import Standardizer

from bounds import gamma


def scaled_weighted(n: int, d: int, m: int, noise: float, seed: int, weights: tuple[float, float]) -> dict:
    """make_regression's columns with x2 on another scale (standardising matters) and a weight column w."""
    columns = dataset_columns(make_regression(n, d, m, noise=noise, seed=seed))
    columns["x2"] = columns["x2"] * 10 - 30
    columns["w"] = np.random.default_rng(seed + 1).uniform(*weights, n)
    return columns


@pytest.fixture(scope="module")
def weighted_csv(tmp_path_factory):
    columns = scaled_weighted(400, 2, 1, 1.0, 8, (0.0, 3.0))
    return write_table(tmp_path_factory.mktemp("paths") / "w.csv", columns), columns


def fit(capsys, tmp_path, path, name, *extra):
    out = tmp_path / name
    code = main([str(a) for a in ["fit", path, "--target", "y", "--weights", "w", "--standardize", "--epochs", "5",
                                  "--dtype", "float64", "--no-plots", "--quiet", "--out", out, *extra]])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    return (json.loads((out / "summary.json").read_text()),
            [r["loss"] for r in json.loads((out / "history.json").read_text())["records"]])


def test_weights_and_standardize_train_the_same_model_read_whole_or_streamed(capsys, tmp_path, weighted_csv):
    """One standardisation rule: weighted when weights are given, on both paths (issue 13)."""
    path, columns = weighted_csv
    whole, whole_losses = fit(capsys, tmp_path, path, "whole")
    streamed, streamed_losses = fit(capsys, tmp_path, path, "streamed", "--stream")
    # The statistics: weighted means and deviations of n = 400 rows, from the rows (whole) or from R
    # (streamed); either is within γ_n·κ of the exact value for these well-conditioned columns
    # (κ of [1, x1, x2] under 10), and so are the standardised losses that follow. Five SGD steps
    # below the stability limit do not grow a difference in the start (each step's map has norm ≤ 1).
    bound = 10 * gamma(400) * 10
    np.testing.assert_allclose(streamed_losses, whole_losses, rtol=bound)
    np.testing.assert_allclose(streamed["trained"]["weight"], whole["trained"]["weight"], rtol=bound, atol=bound)
    np.testing.assert_allclose(streamed["trained"]["bias"], whole["trained"]["bias"], rtol=bound)
    X = np.column_stack([columns["x1"], columns["x2"]])
    weighted = Standardizer.fit(X, columns["y"][:, None], sample_weight=columns["w"])
    assert weighted.x_mean[1] != pytest.approx(X[:, 1].mean(), rel=1e-3)  # the weights do move the statistics


def test_solve_streams_a_file_it_could_read_whole_and_answers_as_the_whole_read(capsys, tmp_path, weighted_csv):
    """solve needs only passes over the rows: a CSV is streamed even within --max-memory; a .npy file,
    which cannot be streamed, is read whole. Both give the same solution and statistics."""
    from torchlinreg.memory import plan_reading

    path, columns = weighted_csv
    assert plan_reading(path, 1 << 40, copies=6, command="solve", one_pass=True).stream
    assert not plan_reading(path, 1 << 40, copies=6, command="fit").stream
    npy = tmp_path / "w.npy"  # columns c1, c2, c3, c4
    np.save(npy, np.column_stack([columns["x1"], columns["x2"], columns["w"], columns["y"]]))
    answers = []
    for data, extra in ((path, ["--target", "y", "--weights", "w"]),
                        (npy, ["--target", "c4", "--weights", "c3", "--features", "c1", "c2"])):
        code = main([str(a) for a in ["solve", data, *extra, "--summary", "--cov-type", "HC3", "--json"]])
        out, err = capsys.readouterr()
        assert code == 0, err
        answers.append(json.loads(out))
    streamed, whole = answers
    coef = lambda a: np.array([list(a["coef"][t].values()) for t in a["coef"]])  # noqa: E731 (names differ)
    # Two computations of one well-conditioned weighted problem (κ of [1, x1, x2] under 10, n = 400):
    # the normal-equation bound n·γ_{m+n}·κ² (n = 3 columns, m = 400 rows) on the scaled solution, within 1e-10.
    np.testing.assert_allclose(coef(streamed), coef(whole), rtol=1e-10)
    np.testing.assert_allclose(list(streamed["intercept"].values()), list(whole["intercept"].values()), rtol=1e-10)
    for s, w in zip(streamed["statistics"], whole["statistics"]):  # HC3 needs a second pass when streamed
        # HC3 standard errors: sums of n squared residuals times leverages, each from the solution
        # above (γ_n·κ² more than it); 1e-9 relative is ten times that bound's 1e-10.
        np.testing.assert_allclose(s["cov_params"], w["cov_params"], rtol=1e-9)
        assert s["cov_type"] == w["cov_type"] == "HC3" and s["n_obs"] == w["n_obs"] == 400


# --- every option combination, read whole and streamed ----------------------------------------------------------

@pytest.fixture(scope="module")
def two_target_csv(tmp_path_factory):
    columns = scaled_weighted(600, 3, 2, 0.5, 12, (0.5, 2.0))
    path = write_table(tmp_path_factory.mktemp("combos") / "d.csv", columns)
    # κ of the shifted, scaled design [X, 1, Y]·√w, as the accumulator sees it (it centres and scales columns)
    M = np.column_stack([columns[name] for name in ("x1", "x2", "x3", "y1", "y2")])
    M = (M - M.mean(axis=0)) / M.std(axis=0)
    A = np.column_stack([M[:, :3], np.ones(len(M)), M[:, 3:]]) * np.sqrt(columns["w"])[:, None]
    return path, np.linalg.cond(A)


COMBOS = {
    "plain": [],
    "weights": ["--weights", "w"],
    "standardize": ["--standardize"],
    "weights-standardize": ["--weights", "w", "--standardize"],
    "summary-hc3-weights": ["--weights", "w", "--summary", "--cov-type", "HC3"],
    "summary-nonrobust": ["--summary"],
    "momentum-step-schedule": ["--momentum", "0.5", "--schedule", "step", "--step-size", "2", "--standardize"],
    "lbfgs": ["--optimizer", "lbfgs", "--standardize"],
    "checkpoints": ["--checkpoint-every", "2", "--standardize"],
    "mini-batches": ["--batch-size", "64", "--standardize"],
}


def summary_of(capsys, out, path, *extra):
    code = main([str(a) for a in ["fit", path, "--target", "y1", "y2", "--epochs", "6", "--dtype", "float64",
                                  "--no-plots", "--quiet", "--report", "--out", out, *extra]])
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    summary["losses"] = [r["loss"] for r in json.loads((out / "history.json").read_text())["records"]]
    return summary


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_option_gives_the_same_answer_read_whole_or_streamed(capsys, tmp_path, two_target_csv, combo):
    """fit on one file, read whole and streamed (issue 13): the same optimum, statistics, training and metrics.

    The two reads fold the same rows into R in other layouts (rows or columns), so R differs by
    rounding: n^1.5·γ_n·κ² relative to R's column norms at most (tests/test_solve.py's analysis),
    κ = cond of the shifted, scaled [X, 1, Y]·√w (38.6 here). Everything after is a function of R
    (the gram engine, standardisation from R or the rows, the statistics) or a sum over the rows
    (metrics), each within that bound; ×10 for the two sides and the steps after.
    Mini-batches come in other orders (a seeded permutation of the rows in memory, a seeded
    shuffle buffer of the streamed chunks), so only the optimum and the statistics are the same.
    """
    path, kappa = two_target_csv
    bound = 10 * 600 ** 1.5 * gamma(600) * kappa ** 2  # 1.5e-5
    whole = summary_of(capsys, tmp_path / "whole", path, *COMBOS[combo])
    streamed = summary_of(capsys, tmp_path / "streamed", path, "--stream", *COMBOS[combo])
    assert whole["reading"]["mode"] == "memory" and streamed["reading"]["mode"] == "stream"
    assert streamed["optimum"]["rank"] == whole["optimum"]["rank"]
    for key in ("coef", "intercept", "loss"):
        np.testing.assert_allclose(numbers(streamed["optimum"][key]), numbers(whole["optimum"][key]), rtol=bound,
                                   atol=bound, err_msg=key)
    assert (whole["optimum"]["statistics"] is None) == (streamed["optimum"]["statistics"] is None)
    for ours, theirs in zip(streamed["optimum"]["statistics"] or [], whole["optimum"]["statistics"] or []):
        assert ours["term_names"] == theirs["term_names"] and ours["cov_type"] == theirs["cov_type"]
        for key in ("terms", "r2", "adj_r2", "f_statistic", "log_likelihood", "aic", "bic"):
            ours_, theirs_ = numbers(ours[key]), numbers(theirs[key])
            # p-values: absolute (a tiny p-value moves by t²·(δt/t) relative)
            np.testing.assert_allclose(ours_, theirs_, rtol=bound, atol=bound * max(1.0, *map(abs, theirs_)),
                                       err_msg=key)
    assert streamed["engine"] == whole["engine"] and streamed["status"] == whole["status"]
    assert (streamed["standardize"] is None) == (whole["standardize"] is None)
    if combo == "mini-batches":
        assert len(streamed["losses"]) == len(whole["losses"]) == 6
        return
    np.testing.assert_allclose(streamed["losses"], whole["losses"], rtol=bound)
    np.testing.assert_allclose(streamed["trained"]["weight"], whole["trained"]["weight"], rtol=bound, atol=bound)
    np.testing.assert_allclose(streamed["trained"]["bias"], whole["trained"]["bias"], rtol=bound, atol=bound)
    np.testing.assert_allclose(numbers(streamed["trained"]["metrics"]), numbers(whole["trained"]["metrics"]), rtol=bound)


def numbers(value) -> list[float]:
    """Every number in a JSON value, in key order (None, the JSON of NaN, as NaN)."""
    if isinstance(value, dict):
        return [v for key in sorted(value) for v in numbers(value[key])]
    if isinstance(value, list):
        return [v for item in value for v in numbers(item)]
    if isinstance(value, bool) or isinstance(value, str):
        return []
    return [float("nan") if value is None else float(value)]


def test_solve_runs_without_pytorch_and_answers_as_the_library(tmp_path, weighted_csv):
    """`torchlinreg solve` on a CSV imports neither PyTorch nor SciPy (the block products run in NumPy, start-up
    included in the time a user waits) and gives the library's answer (PyTorch's products) to rounding."""
    import subprocess
    import sys

    from torchlinreg import lstsq

    path, columns = weighted_csv
    script = ("import io, contextlib, json, sys\nfrom torchlinreg.cli import main\nout = io.StringIO()\n"
              "with contextlib.redirect_stdout(out):\n    code = main(sys.argv[1:])\n"
              "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules, 'scipy': 'scipy' in sys.modules, "
              "'solution': json.loads(out.getvalue())}))")
    run = subprocess.run([sys.executable, "-c", script, "solve", str(path), "--target", "y", "--weights", "w",
                          "--json"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout)
    assert got["code"] == 0 and not got["torch"] and not got["scipy"]
    X = np.column_stack([columns["x1"], columns["x2"]])
    ref = lstsq(X, columns["y"], sample_weight=columns["w"], feature_names=["x1", "x2"], target_names=["y"])
    # Both within γ_n·κ² of the exact answer (κ of the shifted, scaled design; the Gram route), relative to the
    # coefficients' scale; the intercept carries the means' share, Σ|x̄_j·coef_j|. ×10 for the two sides.
    M = (X - X.mean(axis=0)) / X.std(axis=0)
    kappa = np.linalg.cond(np.column_stack([M, np.ones(len(M))]) * np.sqrt(columns["w"])[:, None])
    scale = float(np.abs(ref.coef).max())
    bound = 10 * gamma(400) * kappa ** 2
    np.testing.assert_allclose([got["solution"]["coef"]["y"][f] for f in ("x1", "x2")], ref.coef[0], rtol=0,
                               atol=bound * scale)
    share = abs(float(ref.intercept[0])) + float(np.abs(X.mean(axis=0) * ref.coef[0]).sum())
    assert got["solution"]["intercept"]["y"] == pytest.approx(float(ref.intercept[0]), abs=bound * share)
