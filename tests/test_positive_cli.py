"""``--positive`` (issue 18, item 4): ``solve`` gives exact non-negative least squares, ``fit`` projects the weights
after each step; checked against scikit-learn's ``LinearRegression(positive=True)`` computed here."""

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sklearn")
from sklearn import linear_model  # noqa: E402

from torchlinreg.cli import main  # noqa: E402
from torchlinreg.exact import run_solve  # noqa: E402
from torchlinreg.filesource import open_files  # noqa: E402

NNLS_RTOL = 1e-8  # the figure against scikit-learn (scipy.optimize.nnls)


def _data(tmp_path, n=120):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(n, 4)) * [1, 3, 0.5, 2] + [0, 1, -2, 4]
    y = X @ [1.5, -2.0, 0.5, 0.0] + 1 + 0.2 * rng.normal(size=n)  # one coefficient negative, one 0
    path = tmp_path / "d.csv"
    pd.DataFrame(X, columns=["a", "b", "c", "d"]).assign(y=y).to_csv(path, index=False)
    return path, X, y


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=NNLS_RTOL, atol=NNLS_RTOL * np.max(np.abs(want)))


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_solve_positive_matches_sklearn(tmp_path, capsys, fit_intercept):
    path, X, y = _data(tmp_path)
    ref = linear_model.LinearRegression(positive=True, fit_intercept=fit_intercept).fit(X, y)
    args = ["solve", str(path), "--target", "y", "--positive", "--json"] + ([] if fit_intercept else ["--no-intercept"])
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["positive"] is True
    _close([record["coef"]["y"][k] for k in "abcd"], ref.coef_)
    assert record["intercept"]["y"] == pytest.approx(ref.intercept_, rel=NNLS_RTOL, abs=NNLS_RTOL)
    assert record["coef"]["y"]["b"] == 0.0
    assert record["loss"] == pytest.approx(np.mean((ref.predict(X) - y) ** 2), rel=1e-10)  # ‖r‖² from R: ~eps·κ


def test_streamed_solve_positive_equals_sklearn(tmp_path):
    path, X, y = _data(tmp_path)
    ref = linear_model.LinearRegression(positive=True).fit(X, y)
    solution, stats = run_solve(open_files(path, target=["y"]), chunk_rows=7, positive=True)  # 18 chunks
    assert stats is None
    _close(solution.coef[0], ref.coef_)
    assert solution.intercept[0] == pytest.approx(ref.intercept_, rel=NNLS_RTOL)


def test_solve_positive_with_summary_is_refused(tmp_path, capsys):
    path, _, _ = _data(tmp_path)
    assert main(["solve", str(path), "--target", "y", "--positive", "--summary"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--summary" in err[0] and "--positive" in err[0]


def test_fit_positive_projects_the_weights_and_lbfgs_is_refused(tmp_path, capsys):
    path, X, y = _data(tmp_path)
    ref = linear_model.LinearRegression(positive=True).fit(X, y)
    out = tmp_path / "out"
    assert main(["fit", str(path), "--target", "y", "--positive", "--optimizer", "adam", "--lr", "0.05",
                 "--epochs", "300", "--standardize", "--no-plots", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["optimum"]["positive"] is True  # the optimum beside the model is the non-negative one
    _close([summary["optimum"]["coef"]["y"][k] for k in "abcd"], ref.coef_)
    printed = capsys.readouterr().out
    trained = [float(line.split()[2]) for line in printed.splitlines() if line.strip().startswith("weight ")]
    assert len(trained) == 4 and min(trained) >= 0
    np.testing.assert_allclose(trained, ref.coef_, atol=1e-4)  # loose: Adam's convergence in 300 epochs (printed 8 digits)
    assert main(["fit", str(path), "--target", "y", "--positive", "--no-plots", "--quiet"]) == 2  # chosen: L-BFGS
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "L-BFGS" in err[0] and "--optimizer adam" in err[0]


def test_positive_with_a_ridge_penalty_is_the_no_effect_rule(tmp_path, capsys):
    path, _, _ = _data(tmp_path)
    assert main(["solve", str(path), "--target", "y", "--positive", "--l2", "1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--positive would have no effect on a ridge solve" in err[0] and "--l2" in err[0]
