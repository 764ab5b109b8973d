"""Fits without intercept (issue 17, item 1): statistics, estimator, ``solve --no-intercept``, streamed files.

References are computed here: statsmodels' ``OLS(y, X).fit()`` without ``add_constant`` (its
``k_constant`` rules: no constant, an explicit column of ones, dummies adding up to one), and
scikit-learn's ``LinearRegression(fit_intercept=False)``. Tolerance: 1e-8 relative, the figure the
issue sets against statsmodels (both sides are float64 least squares on well-conditioned designs).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import LinearRegression as SkLinearRegression

from torchlinreg.cli import main
from torchlinreg.estimator import LinearRegression
from torchlinreg.statistics import regression_statistics

from realdata import load, numeric_design

RTOL = 1e-8  # relative, against statsmodels and scikit-learn (the figure)


def _designs():
    rng = np.random.default_rng(17)
    n = 60
    X = rng.normal(size=(n, 3))
    y = X @ [1.0, -2.0, 0.5] + 4.0 + rng.normal(size=n)
    dummies = np.eye(3)[rng.integers(0, 3, n)]
    return {"plain": (X, y), "ones": (np.column_stack([X, np.ones(n)]), y),
            "dummies": (np.column_stack([X[:, :2], dummies]), y)}


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC1", "HC3"])
@pytest.mark.parametrize("design", ["plain", "ones", "dummies"])
def test_statistics_follow_statsmodels_k_constant(design, cov_type):
    X, y = _designs()[design]
    ref = sm.OLS(y, X).fit(cov_type=cov_type)
    stats = regression_statistics(X, y, fit_intercept=False, cov_type=cov_type)
    assert not stats.fit_intercept and stats.k_constant == ref.k_constant == (design != "plain")
    assert stats.term_names == ("x0", "x1", "x2", *(("x3",) if design != "plain" else ()), *(("x4",) if design == "dummies" else ()))
    np.testing.assert_allclose(stats.params, ref.params, rtol=RTOL)
    np.testing.assert_allclose(stats.std_err, ref.bse, rtol=RTOL)
    for ours, theirs in [(stats.r2, ref.rsquared), (stats.adj_r2, ref.rsquared_adj), (stats.df_model, ref.df_model),
                         (stats.f_statistic, ref.fvalue), (stats.log_likelihood, ref.llf), (stats.aic, ref.aic)]:
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, equal_nan=True)  # NaN F: implicit constant, robust


@pytest.mark.parametrize("name", ["longley", "stackloss"])
def test_real_data_without_intercept_matches_statsmodels_and_sklearn(name):
    features, targets = numeric_design(*load(name))
    X, y = features.to_numpy(), targets.to_numpy()[:, 0]
    ref = sm.OLS(y, X).fit()
    stats = regression_statistics(X, y, fit_intercept=False)
    assert stats.k_constant == ref.k_constant == 0
    np.testing.assert_allclose(stats.params, ref.params, rtol=RTOL)
    np.testing.assert_allclose([stats.r2, stats.f_statistic], [ref.rsquared, ref.fvalue], rtol=RTOL)
    est = LinearRegression(solver="exact", fit_intercept=False).fit(X, y)
    sk = SkLinearRegression(fit_intercept=False).fit(X, y)
    assert est.intercept_ == sk.intercept_ == 0.0
    np.testing.assert_allclose(est.coef_, sk.coef_, rtol=RTOL)
    assert "R² is uncentred" in est.summary()


def test_estimator_trains_without_intercept_too():
    X, y = _designs()["plain"]
    est = LinearRegression(fit_intercept=False).fit(X, y)  # gd: a model without bias (tests/test_no_intercept_training)
    assert est.intercept_ == 0.0 and "linear.bias" not in dict(est.module_.named_parameters())
    # 1e-7 relative: gd's convergence (L-BFGS to the stopping rule), as tests/test_estimator.py
    np.testing.assert_allclose(est.coef_, SkLinearRegression(fit_intercept=False).fit(X, y).coef_, rtol=1e-7)


def _csv(tmp_path, X, y):
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])]).assign(y=y)
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("design", ["plain", "dummies"])
def test_cli_solve_no_intercept_json_and_summary(tmp_path, capsys, design):
    X, y = _designs()[design]
    path = _csv(tmp_path, X, y)
    assert main(["solve", str(path), "--target", "y", "--no-intercept", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    ref = sm.OLS(y, X).fit()
    text = json.dumps(record)
    assert "intercept" in text
    assert main(["solve", str(path), "--target", "y", "--no-intercept", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "No intercept fitted" in out and ("centred" in out)
    assert f"{ref.rsquared:.6g}" in out


def test_streamed_file_equals_in_memory(tmp_path):
    from torchlinreg.exact import run_solve
    from torchlinreg.filesource import open_files as open_source  # a file read in chunks, as test_stream.py

    X, y = _designs()["dummies"]
    path = _csv(tmp_path, X, y)
    ref = regression_statistics(X, y, fit_intercept=False, cov_type="HC1", feature_names=[f"x{j}" for j in range(5)])
    source = open_source(path, target=["y"])
    solution, stats = run_solve(source, statistics=True, cov_type="HC1", chunk_rows=7, fit_intercept=False)
    assert stats[0].k_constant == 1
    np.testing.assert_allclose(solution.coef[0], ref.params, rtol=RTOL)
    np.testing.assert_allclose([stats[0].r2, stats[0].f_statistic], [ref.r2, ref.f_statistic], rtol=RTOL)
    np.testing.assert_allclose(stats[0].std_err, ref.std_err, rtol=RTOL)
