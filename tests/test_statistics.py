"""statistics.py: inference for the exact solution, against statsmodels' OLS and WLS computed here.

Every figure is compared to 1e-8 relative with ``sm.OLS``/``sm.WLS`` on ``sm.add_constant(X)``
(``.fit()`` or ``.fit(cov_type=...)``), above the error bound of two least-squares solvers (see
``RTOL``). On an ill-conditioned polynomial design statsmodels itself loses digits; there both
are measured against 50-digit decimal arithmetic, with tolerances from the same bounds.
"""

import json
import math
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import torchlinreg as tl
from torchlinreg.errors import ConfigError, RankDeficiencyWarning
from torchlinreg.statistics import COV_TYPES, RegressionStatistics, regression_statistics
from torchlinreg.statistics_tables import StatisticsList

sm = pytest.importorskip("statsmodels.api")

# Ours (QR, refined) and statsmodels (pseudo-inverse by SVD) solve the same least-squares problem by
# different algorithms; each is within the LS forward-error bound m·n·u·(κ + κ²·‖r‖/(‖A‖‖x‖)) (Higham
# §20.1) of the exact figures, κ that of the raw design [1, X]: for the problems here (ls_bound) κ ≤ 60 and
# the bound ≤ 5e-12. Figures derived from the solution carry it with amplification ≤ 1, except p values,
# whose relative error is about t² times that of t (t ≤ 43 here, ×1800): ≤ 1e-8, RTOL.
RTOL = 1e-8
HETERO_TYPES = tuple(c for c in COV_TYPES if c not in ("HAC", "cluster"))  # HAC, cluster: tests/test_hac_cluster.py


def ls_bound(A, y) -> float:
    """The LS forward-error bound m·n·u·(κ + κ²·‖r‖/(‖A‖‖x‖)) of a solution of min ‖A x - y‖ (A complete)."""
    from bounds import U64
    s = np.linalg.svd(A, compute_uv=False)
    x = np.linalg.lstsq(A, y, rcond=None)[0]
    kappa, eta = s[0] / s[-1], np.linalg.norm(y - A @ x) / (s[0] * np.linalg.norm(x))
    return A.shape[0] * A.shape[1] * U64 * (kappa + kappa ** 2 * eta)


def statsmodels_fit(X, y, *, w=None, cov_type="nonrobust", fit_intercept=True):
    A = sm.add_constant(X, has_constant="add") if fit_intercept else X
    model = sm.OLS(y, A) if w is None else sm.WLS(y, A, weights=w)
    with warnings.catch_warnings():  # its warnings on singular designs are expected where the tests make them
        warnings.simplefilter("ignore")
        res = model.fit() if cov_type == "nonrobust" else model.fit(cov_type=cov_type)
        res.fvalue  # noqa: B018 (cached now: the robust F warns when its covariance is near-singular)
    return res


def assert_matches(ours: RegressionStatistics, res, *, rtol=RTOL, skip=()):
    """Every figure of ``ours`` against statsmodels' results ``res`` (same conf_level)."""
    figures = {
        "params": (ours.params, res.params), "std_err": (ours.std_err, res.bse),
        "t_values": (ours.t_values, res.tvalues), "p_values": (ours.p_values, res.pvalues),
        "conf_int": (ours.conf_int, res.conf_int(1 - ours.conf_level)), "r2": (ours.r2, res.rsquared),
        "adj_r2": (ours.adj_r2, res.rsquared_adj), "f_statistic": (ours.f_statistic, res.fvalue),
        "f_pvalue": (ours.f_pvalue, res.f_pvalue), "log_likelihood": (ours.log_likelihood, res.llf),
        "aic": (ours.aic, res.aic), "bic": (ours.bic, res.bic),
        "condition_number": (ours.condition_number, res.condition_number),
        "df_model": (ours.df_model, res.df_model), "df_resid": (ours.df_resid, res.df_resid),
        "n_obs": (ours.n_obs, res.nobs),
    }
    for name, (a, b) in figures.items():
        if name not in skip:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=0, err_msg=name)
    assert ours.use_t == res.use_t and ours.cov_type == res.cov_type


def random_problem(n=200, d=4, m=1, seed=0):
    """Features of different scales and offsets; noise that grows with |x0| (so HC* differ from nonrobust)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    noise = rng.standard_normal((n, m)) * (0.5 + np.abs(X[:, :1] - X[:, :1].mean()))
    Y = X @ rng.uniform(-1, 1, (d, m)) + rng.standard_normal(m) + noise
    return X, (Y[:, 0] if m == 1 else Y), rng.uniform(0.2, 3.0, n)


# --- agreement with statsmodels -----------------------------------------------------------------

@pytest.mark.parametrize("cov_type", HETERO_TYPES)
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
@pytest.mark.parametrize("weighted", [False, True], ids=["OLS", "WLS"])
def test_random_data_matches_statsmodels(cov_type, fit_intercept, weighted):
    X, y, w = random_problem()
    w = w if weighted else None
    ours = regression_statistics(X, y, sample_weight=w, cov_type=cov_type, fit_intercept=fit_intercept)
    assert_matches(ours, statsmodels_fit(X, y, w=w, cov_type=cov_type, fit_intercept=fit_intercept))
    assert ours.term_names == (("intercept",) if fit_intercept else ()) + ("x0", "x1", "x2", "x3")
    assert ours.unidentified == () and ours.weighted == weighted


@pytest.mark.parametrize("conf_level", [0.9, 0.99])
@pytest.mark.parametrize("cov_type", ["nonrobust", "HC1"])
def test_confidence_levels(conf_level, cov_type):
    X, y, _ = random_problem(seed=1)
    ours = regression_statistics(X, y, conf_level=conf_level, cov_type=cov_type)
    assert ours.conf_level == conf_level
    assert_matches(ours, statsmodels_fit(X, y, cov_type=cov_type))


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_tutorial_data(cov_type):
    data = tl.tutorial_data()
    X, y = data.X.double().numpy(), data.y.double().numpy()[:, 0]  # the float32 values, exactly
    [ours] = regression_statistics(data.X, data.y, cov_type=cov_type, feature_names=data.feature_names,
                                   target_names=data.target_names)  # tensors are accepted
    assert_matches(ours, statsmodels_fit(X, y, cov_type=cov_type))
    assert (ours.target_name, ours.term_names, ours.n_obs) == ("y", ("intercept", "x"), 50)
    assert (round(ours.params[1], 4), round(ours.params[0], 4)) == (1.9401, 2.5282)  # lstsq's optimum


@pytest.mark.parametrize("cov_type, weighted", [("nonrobust", False), ("HC2", False), ("HC0", True)])
def test_each_target_is_its_own_regression(cov_type, weighted):
    X, Y, w = random_problem(n=150, d=3, m=3, seed=2)
    w = w if weighted else None
    results = regression_statistics(X, Y, sample_weight=w, cov_type=cov_type, target_names=("a", "b", "c"),
                                    feature_names=("u", "v", "z"))
    assert [r.target_name for r in results] == ["a", "b", "c"]
    for j, ours in enumerate(results):
        assert_matches(ours, statsmodels_fit(X, Y[:, j], w=w, cov_type=cov_type))


def test_zero_weights_leave_their_rows_out():
    # statsmodels counts rows of weight 0 as observations (and its WLS log-likelihood adds
    # log 0 = -inf); here they are left out, so the reference is WLS on the other rows.
    X, y, w = random_problem(seed=3)
    w[::7] = 0.0
    keep = w > 0
    for cov_type in ("nonrobust", "HC1", "HC3"):
        ours = regression_statistics(X, y, sample_weight=w, cov_type=cov_type)
        assert_matches(ours, statsmodels_fit(X[keep], y[keep], w=w[keep], cov_type=cov_type))
        assert ours.n_obs == keep.sum() == 171


# --- an ill-conditioned design: 50-digit decimal arithmetic as the reference -----------------------

def decimal_ols(X, y, cov_type):
    """OLS with intercept from the normal equations in 50-digit decimals: params, std errors, F, R², ...

    Forming XᵀX squares the condition number (here ~1e16), so of the 50 digits about 34 remain:
    far more than float64 holds. ``cov_type`` is "nonrobust" or "HC3".
    """
    with localcontext() as ctx:
        ctx.prec = 50
        A = [[Decimal(1)] + [Decimal(float(v)) for v in row] for row in X]
        t = [Decimal(float(v)) for v in y]
        n, p = len(A), len(A[0])
        G = _decimal_inverse([[sum(a[i] * a[j] for a in A) for j in range(p)] for i in range(p)])
        Aty = [sum(a[i] * ti for a, ti in zip(A, t)) for i in range(p)]
        beta = [sum(G[i][j] * Aty[j] for j in range(p)) for i in range(p)]
        e = [ti - sum(ai * bi for ai, bi in zip(a, beta)) for a, ti in zip(A, t)]
        ssr = sum(ei * ei for ei in e)
        if cov_type == "nonrobust":
            cov = [[g * ssr / (n - p) for g in row] for row in G]
        else:
            GA = [[sum(G[i][j] * a[j] for j in range(p)) for i in range(p)] for a in A]  # G aᵢ
            h = [sum(ai * gi for ai, gi in zip(a, ga)) for a, ga in zip(A, GA)]
            cov = [[sum(ga[i] * ga[j] * (ei / (1 - hi)) ** 2 for ga, ei, hi in zip(GA, e, h)) for j in range(p)]
                   for i in range(p)]
        slopes = _decimal_inverse([row[1:] for row in cov[1:]])
        F = sum(beta[1 + i] * slopes[i][j] * beta[1 + j] for i in range(p - 1) for j in range(p - 1)) / (p - 1)
        mean = sum(t) / n
        r2 = 1 - ssr / sum((ti - mean) ** 2 for ti in t)
        XtX = np.array([[float(sum(a[i] * a[j] for a in A)) for j in range(p)] for i in range(p)])
    cond = math.sqrt(np.linalg.eigvalsh(XtX)[-1] * np.linalg.eigvalsh(np.array(G, dtype=float))[-1])
    llf = -n / 2 * (1 + math.log(2 * math.pi / n)) - n / 2 * math.log(float(ssr))
    return {"params": [float(b) for b in beta], "std_err": [float(cov[i][i].sqrt()) for i in range(p)],
            "f_statistic": float(F), "r2": float(r2), "log_likelihood": llf, "condition_number": cond}


def _decimal_inverse(M):
    """Gauss-Jordan with partial pivoting, in the current decimal context."""
    p = len(M)
    M = [list(row) + [Decimal(int(i == j)) for j in range(p)] for i, row in enumerate(M)]
    for c in range(p):
        pivot = max(range(c, p), key=lambda i: abs(M[i][c]))
        M[c], M[pivot] = M[pivot], M[c]
        M[c] = [v / M[c][c] for v in M[c]]
        for i in range(p):
            if i != c and M[i][c]:
                M[i] = [a - M[i][c] * b for a, b in zip(M[i], M[c])]
    return [row[p:] for row in M]


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_degree_5_polynomial_on_raw_x(cov_type):
    rng = np.random.default_rng(0)
    x = np.linspace(1.0, 30.0, 200)
    X = np.column_stack([x ** k for k in range(1, 6)])  # condition number 8.9e7 with the intercept
    y = np.sin(x) + 0.3 * rng.standard_normal(200)
    ours = regression_statistics(X, y, cov_type=cov_type)
    exact = decimal_ols(X, y, cov_type)
    # Our error alone (the reference keeps ~34 digits): our figures come from R of the centred, column-scaled
    # design (condition κ_s ≈ 2.3e3, not the raw 8.9e7), backward stable, so they are within
    # m·n·u·κ_s ≈ 3e-10 of exact (first-order perturbation of R⁻¹; the refined params are closer still), ×10.
    # (measured: at most 3e-13)
    from bounds import U64, cond
    Xs = (X - X.mean(axis=0)) / np.linalg.norm(X - X.mean(axis=0), axis=0)
    tol = 10 * 200 * 6 * U64 * cond(Xs)
    for name, value in exact.items():
        np.testing.assert_allclose(getattr(ours, name), value, rtol=tol, atol=0, err_msg=name)
    # the F tail's relative error is its elasticity |d ln p / d ln F| times F's, plus scipy's few ulps
    F = exact["f_statistic"]
    elasticity = abs(np.log(stats.f.sf(F * (1 + 1e-6), 5, 194) / stats.f.sf(F, 5, 194))) / 1e-6
    assert ours.f_pvalue == pytest.approx(stats.f.sf(F, 5, 194), rel=tol * (1 + elasticity) + 1e-13, abs=0)
    # statsmodels works on the raw design (pseudo-inverse by SVD, leverages from it), so its own
    # figures are within the LS forward-error bound of the raw design (κ ≈ 8.9e7: ls_bound ≈ 5e-5) of the
    # 50-digit values, p values times 1 + t² (measured: 3e-10 for the params, 4e-10 for the std errors,
    # 2e-10 for the condition number; 1e-8 between its p values and ours).
    # Its robust F inverts its 5 x 5 robust covariance of the raw slopes, whose condition number is
    # about cond² ≈ 1e16, and keeps no digit: 11.62 against the decimal 13.93 here (17% off, with
    # statsmodels 0.15; ours: 3e-13), so for HC3 the F test is checked against the decimal value alone.
    res = statsmodels_fit(X, y, cov_type=cov_type)
    sm_tol = ls_bound(np.column_stack([np.ones(len(X)), X]), y) * (1 + np.max(np.abs(ours.t_values)) ** 2)
    assert_matches(ours, res, rtol=sm_tol, skip=("f_statistic", "f_pvalue") if cov_type != "nonrobust" else ())


# --- rank deficiency ------------------------------------------------------------------------------

@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_duplicated_column_is_not_identified(cov_type):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 100))
    X = np.column_stack([a, b, a])
    y = 2 * a - b + 1 + rng.standard_normal(100)
    with pytest.warns(RankDeficiencyWarning, match="'a' and 'a_copy' are linearly dependent"):
        ours = regression_statistics(X, y, cov_type=cov_type, feature_names=("a", "b", "a_copy"))
    assert ours.unidentified == ("a", "a_copy") and ours.condition_number == np.inf
    for i in (1, 3):
        assert np.isnan([ours.params[i], ours.std_err[i], ours.p_values[i], *ours.conf_int[i]]).all()
        assert np.isnan(ours.cov_params[i]).all() and np.isnan(ours.cov_params[:, i]).all()
    # Identified terms are estimable: statsmodels' pseudo-inverse gives them the same figures, and
    # the fit's figures use the rank (3) as statsmodels does.
    res = statsmodels_fit(X, y, cov_type=cov_type)
    identified = [0, 2]
    for name in ("params", "std_err", "t_values", "p_values"):
        np.testing.assert_allclose(getattr(ours, name)[identified], getattr(res, {"params": "params",
                                   "std_err": "bse", "t_values": "tvalues", "p_values": "pvalues"}[name])[identified],
                                   rtol=RTOL, err_msg=name)
    assert_matches(ours, res, skip=("params", "std_err", "t_values", "p_values", "conf_int", "condition_number"))
    text = ours.summary()
    assert text.count("not identified") == 2 and "Not identified: 'a' and 'a_copy'" in text


def test_columns_summing_to_a_constant_leave_the_intercept_unidentified():
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal((2, 80))
    X = np.column_stack([a, 7 - 3 * a, b])  # 3 a + a3 = 7: a, a3 and the intercept are collinear
    y = a + b + rng.standard_normal(80)
    with pytest.warns(RankDeficiencyWarning):
        ours = regression_statistics(X, y, feature_names=("a", "a3", "b"))
    assert ours.unidentified == ("intercept", "a", "a3")
    reduced = statsmodels_fit(np.column_stack([a, b]), y)  # the same column space; RTOL as above (κ ≈ 1)
    assert ours.params[3] == pytest.approx(reduced.params[2], rel=RTOL)
    assert ours.std_err[3] == pytest.approx(reduced.bse[2], rel=RTOL)
    assert (ours.r2, ours.f_statistic, ours.df_model) == pytest.approx((reduced.rsquared, reduced.fvalue, 2), rel=RTOL)


# --- inputs, outputs ------------------------------------------------------------------------------

@pytest.mark.parametrize("conf_level", [0, 1, 1.5, -0.1, True, "0.95"])
def test_bad_confidence_level(conf_level):
    X, y, _ = random_problem(n=20)
    with pytest.raises(ConfigError, match=r"confidence level must be between 0 and 1, e\.g\. 0\.95"):
        regression_statistics(X, y, conf_level=conf_level)


def test_bad_cov_type_lists_the_choices():
    X, y, _ = random_problem(n=20)
    with pytest.raises(ConfigError, match="unknown covariance type 'HC4'; choose one of nonrobust, HC0, HC1, HC2, HC3"):
        regression_statistics(X, y, cov_type="HC4")
    assert regression_statistics(X, y, cov_type="hc1").cov_type == "HC1"  # case does not matter


def test_a_feature_named_intercept_is_refused():
    X, y, _ = random_problem(n=20, d=2)
    with pytest.raises(ValueError, match="a feature is named 'intercept'"):
        regression_statistics(X, y, feature_names=("intercept", "x"))


def test_summary_and_to_dict():
    X, y, w = random_problem(n=60, d=2, seed=8)
    ours = regression_statistics(X, y, sample_weight=w, cov_type="HC3", feature_names=("size", "age"),
                                 target_names=("price",))
    text = ours.summary()
    for piece in ("WLS regression of 'price'", "R²", "Adj. R²", "F statistic", "Log-likelihood", "AIC", "BIC",
                  "HC3", "P>|z|", "[0.025", "0.975]", "intercept", "size", "age", f"{ours.params[1]:.6g}"):
        assert piece in text, piece
    assert "not identified" not in text
    record = json.loads(json.dumps(ours.to_dict(), allow_nan=False))
    assert record["terms"]["age"]["param"] == ours.params[2] and record["n_obs"] == 60
    assert record["cov_type"] == "HC3" and record["use_t"] is False and record["term_names"][0] == "intercept"
    assert "RegressionStatistics(target='price'" in repr(ours)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        deficient = regression_statistics(np.column_stack([X[:, 0], X[:, 0]]), y)
    record = json.loads(json.dumps(deficient.to_dict(), allow_nan=False))
    assert record["terms"]["x1"]["std_err"] is None and record["condition_number"] is None
    assert record["unidentified"] == ["x0", "x1"]


def longley():
    """The Longley data (statsmodels' copy): 16 rows, 6 named, nearly collinear columns; the target TOTEMP."""
    data = sm.datasets.longley.load_pandas()
    return data.exog, data.endog


def longley_rtol(X, y) -> float:
    """Both solvers are backward stable and their figures do not depend on the columns' scales, so the bound is
    ls_bound of the column-scaled design [1, X] (κ 4.3e4, bound 9.5e-10; of the raw design, κ 4.9e9, it would be
    1e-4); p values carry t² times it (t ≤ 4.9: ×24); ×30."""
    A = sm.add_constant(X).to_numpy()
    return 30 * ls_bound(A / np.linalg.norm(A, axis=0), y.to_numpy())


def test_a_dataframe_and_a_series_keep_their_names_and_the_tables_show_statsmodels_figures():
    X, y = longley()
    ours = regression_statistics(X, y)  # a 1-D y: one RegressionStatistics
    assert isinstance(ours, RegressionStatistics)
    assert ours.target_name == "TOTEMP" and ours.term_names == ("intercept", *X.columns)
    ref = sm.OLS(y, sm.add_constant(X)).fit()
    assert_matches(ours, ref, rtol=longley_rtol(X, y))
    text, page = ours.summary(), ours._repr_html_()
    assert text.startswith("OLS regression of 'TOTEMP'\n") and "<caption>OLS regression of &#x27;TOTEMP&#x27;" in page
    # every figure is printed to 6 digits (4 for t, 3 for p): statsmodels' figures agree far below that
    for term, name in zip(ours.term_names, ref.params.index):
        row = next(line for line in text.splitlines() if line.startswith(term + " "))
        figures = [f"{ref.params[name]:.6g}", f"{ref.bse[name]:.6g}", f"{ref.tvalues[name]:.4g}",
                   f"{ref.pvalues[name]:.3g}"]
        assert row.split()[1:5] == figures, term
        assert f"<tr><th>{term}</th>" + "".join(f"<td>{f}</td>" for f in figures) in page
    for label, value in (("R²", ref.rsquared), ("Adj. R²", ref.rsquared_adj), ("AIC", ref.aic), ("BIC", ref.bic)):
        assert f"{label}:" in text and f"<th>{label}:</th><td>{value:.6g}</td>" in page
    assert "<script" not in page and "style=" not in page


def test_names_are_escaped_in_the_html():
    X, y = longley()
    ours = regression_statistics(X.rename(columns={"GNP": "<b>GNP</b>"}), y.rename("jobs & more"))
    page = ours._repr_html_()
    assert "<b>GNP" not in page and "<th>&lt;b&gt;GNP&lt;/b&gt;</th>" in page
    assert "jobs &amp; more" in page and "<b>GNP</b>" in ours.summary()


def test_several_targets_give_a_list_shown_together():
    X, y = longley()
    Y = pd.DataFrame({"TOTEMP": y, "half": y / 2})
    results = regression_statistics(X, Y)
    assert isinstance(results, StatisticsList) and isinstance(results, list) and len(results) == 2
    assert [r.target_name for r in results] == ["TOTEMP", "half"]
    one = regression_statistics(X, y)
    assert results.summary() == one.summary() + "\n\n" + results[1].summary()
    assert results._repr_html_().count("<caption>") == 2 and "half" in results._repr_html_()
    # Halving y halves the coefficients and the standard errors; t, p and R² stay
    np.testing.assert_allclose(results[1].params, one.params / 2, rtol=longley_rtol(X, y))
    np.testing.assert_allclose(results[1].t_values, one.t_values, rtol=longley_rtol(X, y))


def test_indexing_one_target_as_before_still_works_with_a_warning():
    X, y = longley()
    ours = regression_statistics(X, y)
    with pytest.warns(FutureWarning, match=r"drop the \[0\]"):
        assert ours[0] is ours
    with pytest.warns(FutureWarning):
        [unpacked] = ours  # the code that unpacked the one-element list
    assert unpacked is ours
    with pytest.raises(IndexError):
        ours[1]


@pytest.mark.parametrize("deficient", [False, True])
def test_statistics_read_back_from_their_dict(deficient):
    X, y, w = random_problem(n=60, d=2, seed=8)
    if deficient:
        X = np.column_stack([X[:, 0], X[:, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        ours = regression_statistics(X, y, sample_weight=w, cov_type="HC1", conf_level=0.9)
    back = RegressionStatistics.from_dict(json.loads(json.dumps(ours.to_dict(), allow_nan=False)))
    assert back.summary() == ours.summary() and back._repr_html_() == ours._repr_html_()
    for name in ("params", "std_err", "t_values", "p_values", "conf_int", "cov_params"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ours, name), err_msg=name)  # JSON keeps floats
    assert (back.condition_number, back.unidentified, back.use_t) == (ours.condition_number, ours.unidentified, False)


def test_use_t_with_a_robust_covariance():
    X, y, _ = random_problem(seed=9)
    ours = regression_statistics(X, y, cov_type="HC1", use_t=True)
    res = statsmodels_fit(X, y).get_robustcov_results(cov_type="HC1", use_t=True)
    assert_matches(ours, res)
    assert "P>|t|" in ours.summary()


# --- from a solution and a pass in chunks (streamed or split among processes) --------------------

@pytest.mark.parametrize("cov_type", HETERO_TYPES)
@pytest.mark.parametrize("weighted", [False, True], ids=["OLS", "WLS"])
def test_statistics_from_merged_r_and_chunked_passes_match_statsmodels(cov_type, weighted):
    from torchlinreg.solve import QRAccumulator
    from torchlinreg.data import Dataset
    from torchlinreg.exact import statistics_of
    from torchlinreg.statistics import ResidualPass, solution_statistics

    X, y, w = random_problem()
    w = w if weighted else None
    chunks = [(X[i:i + 37], y[i:i + 37], None if w is None else w[i:i + 37]) for i in range(0, len(X), 37)]
    halves = [QRAccumulator(X.shape[1]), QRAccumulator(X.shape[1])]  # as two processes would hold them
    for k, (Xc, yc, wc) in enumerate(chunks):
        halves[k % 2].update(Xc, yc, wc)
    solution = halves[0].merge(halves[1]).solve()
    passes = [ResidualPass(solution, cov_type), ResidualPass(solution, cov_type)]
    for k, (Xc, yc, wc) in enumerate(chunks):
        passes[k % 2].update(Xc, yc, wc)
    merged = ResidualPass(solution, cov_type).add_vector(passes[0].to_vector()).merge(passes[1])
    reference = statsmodels_fit(X, y, w=w, cov_type=cov_type)
    [ours] = solution_statistics(solution, merged if merged.needed else None, cov_type=cov_type)
    assert_matches(ours, reference)
    rows = Dataset(torch.as_tensor(X), torch.as_tensor(y).reshape(len(X), -1),
                   sample_weight=None if w is None else torch.as_tensor(w))
    [streamed] = statistics_of(rows, solution, cov_type=cov_type, chunk_rows=37)  # the pass a streamed fit makes
    assert_matches(streamed, reference)
    assert merged.needed == (cov_type != "nonrobust" or weighted)
    if merged.needed:
        with pytest.raises(ValueError, match="needs a pass"):
            solution_statistics(solution, None, cov_type=cov_type)
