"""``torchlinreg.ols``: statsmodels' results object, figure by figure, on every real data set and two synthetic ones.

Tolerance: the issue's relative 1e-8 against statsmodels (``RTOL``). Vectors whose entries may be near zero
by chance (residuals, fitted values, leverages, influence measures) are compared norm-wise: the error's norm
against the reference's norm times ``RTOL``. Where statsmodels is less accurate than that, the test says so.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats
from statsmodels.stats.outliers_influence import OLSInfluence, variance_inflation_factor
from statsmodels.stats.stattools import durbin_watson, jarque_bera, omni_normtest

import realdata
import torchlinreg
from torchlinreg import DataError, ConfigError

RTOL = 1e-8  # the tolerance against statsmodels

SCALARS = ("rsquared", "rsquared_adj", "fvalue", "f_pvalue", "llf", "aic", "bic", "ess", "ssr", "centered_tss",
           "uncentered_tss", "scale", "mse_model", "mse_resid", "mse_total", "df_model", "df_resid", "nobs",
           "condition_number")
ARRAYS = ("params", "bse", "tvalues", "pvalues", "eigenvals", "HC0_se", "HC1_se", "HC2_se",
          "HC3_se")
VECTORS = ("resid", "fittedvalues", "wresid")


def cases():
    """(id, X, y, w, fit_intercept): one target each of every real data set, ccard weighted too, two synthetic."""
    out = []
    for name in realdata.NAMES:
        X, Y = realdata.numeric_design(*realdata.load(name))
        for target in Y.columns:
            out.append(pytest.param(X, Y[target], None, True, id=f"{name}-{target}"))
    X, Y = realdata.numeric_design(*realdata.load("ccard"))
    out.append(pytest.param(X, Y["AVGEXP"], 1 / X["INCOME"].to_numpy(), True, id="ccard-WLS"))
    rng = np.random.default_rng(17)
    Xs = rng.normal(size=(120, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 50.0, -2.0, 1.0]
    ys = Xs @ [1.5, -0.2, 4.0, 0.0] + 3.0 + rng.standard_t(5, size=120)
    out.append(pytest.param(Xs, ys, None, True, id="synthetic"))
    ys0 = Xs @ [0.5, 0.1, -3.0, 0.7] + rng.normal(size=120) * (1 + np.abs(Xs[:, 0]))
    out.append(pytest.param(Xs, ys0, rng.uniform(0.5, 2.0, 120), False, id="synthetic-no-intercept-WLS"))
    return out


def statsmodels_fit(X, y, w, fit_intercept):
    A = sm.add_constant(np.asarray(X, dtype=float), prepend=True, has_constant="add") if fit_intercept \
        else np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    return (sm.OLS(y, A) if w is None else sm.WLS(y, A, weights=w)).fit(), A


def close(ours, ref, name, rtol=RTOL):
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(ref, dtype=float), rtol=rtol, atol=0,
                               err_msg=name)


def f_tail_rtol(F: float, df_model: float, df_resid: float) -> float:
    """The tolerance of an F test's p value whose statistic agrees to ``RTOL``: ``RTOL`` times the tail's elasticity
    ``|d ln p / d ln F|`` (large far in the tail: Longley's robust F has p = 1e-11, elasticity about 3), plus 1."""
    p = stats.f.sf(F, df_model, df_resid)
    elasticity = abs(np.log(stats.f.sf(F * (1 + 1e-6), df_model, df_resid) / p)) / 1e-6
    return RTOL * (1 + elasticity)


def close_interval(ours, ref, params, name):
    """Intervals ``β ± q se``: each end within ``RTOL`` of ``|β| + q se``, the terms it sums (an end near zero
    magnifies the terms' errors: Longley's HC3 interval of UNEMP ends at -0.16 from -2.02 + 1.86, and statsmodels'
    HC3 standard errors there are 1.6e-9 off, so its end is 1.7e-8 off)."""
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    params = np.asarray(params, dtype=float)[:, None]
    assert np.all(np.abs(ours - ref) <= RTOL * (np.abs(params) + np.abs(ref - params))), name


def close_cov(ours, ref, name, rtol=RTOL):
    """A covariance matrix: each entry within ``rtol`` of ``√(Cᵢᵢ Cⱼⱼ)`` (the correlations to ``rtol``): an entry
    that is zero in exact arithmetic (diabetes' centred columns against the constant) is rounding in both."""
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    close(np.diag(ours), np.diag(ref), name + " diagonal", rtol)
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    assert np.all(np.abs(ours - ref) <= rtol * scale), (name, np.max(np.abs(ours - ref) / scale))


def close_normwise(ours, ref, name, rtol=RTOL):
    ours, ref = np.asarray(ours, dtype=float), np.asarray(ref, dtype=float)
    assert ours.shape == ref.shape, name
    assert np.linalg.norm(ours - ref) <= rtol * np.linalg.norm(ref), (name, np.linalg.norm(ours - ref) /
                                                                       np.linalg.norm(ref))


@pytest.mark.parametrize("X, y, w, fit_intercept", cases())
def test_figures_match_statsmodels(X, y, w, fit_intercept):
    ours = torchlinreg.ols(X, y, sample_weight=w, fit_intercept=fit_intercept)
    ref, A = statsmodels_fit(X, y, w, fit_intercept)
    names = list(getattr(X, "columns", [f"x{j + 1}" for j in range(A.shape[1] - fit_intercept)]))
    assert ours.names == ["const"] * fit_intercept + names
    for name in SCALARS:
        close(getattr(ours, name), getattr(ref, name), name)
    for name in ARRAYS:
        close(getattr(ours, name), getattr(ref, name), name)
    for name in VECTORS:
        close_normwise(getattr(ours, name), getattr(ref, name), name)
    close_cov(ours.cov_params(), ref.cov_params(), "cov_params")
    close_cov(ours.normalized_cov_params, ref.normalized_cov_params, "normalized_cov_params")
    for alpha in (0.05, 0.1):
        close_interval(ours.conf_int(alpha), ref.conf_int(alpha), ref.params, f"conf_int({alpha})")
    close(ours.aicc, ref.info_criteria("aicc"), "aicc")
    close(ours.hqic, ref.info_criteria("hqic"), "hqic")


@pytest.mark.parametrize("X, y, w, fit_intercept", cases())
def test_robust_covariances_match_statsmodels(X, y, w, fit_intercept):
    ours = torchlinreg.ols(X, y, sample_weight=w, fit_intercept=fit_intercept)
    ref, _ = statsmodels_fit(X, y, w, fit_intercept)
    for cov_type in ("HC0", "HC1", "HC2", "HC3"):
        robust, sm_robust = ours.get_robustcov_results(cov_type), ref.get_robustcov_results(cov_type)
        # statsmodels' get_robustcov_results keeps the plain fit's Student's t; fit(cov_type=...) takes the normal
        z, sm_z = ours.get_robustcov_results(cov_type, use_t=False), ref.get_robustcov_results(cov_type, use_t=False)
        assert robust.cov_type == cov_type and robust.use_t and not z.use_t
        for name in ("params", "bse", "tvalues", "pvalues", "fvalue", "scale", "rsquared"):
            close(getattr(robust, name), getattr(sm_robust, name), f"{cov_type} {name}")
        close(robust.f_pvalue, sm_robust.f_pvalue, f"{cov_type} f_pvalue",
              f_tail_rtol(sm_robust.fvalue, ref.df_model, ref.df_resid))
        close(z.pvalues, sm_z.pvalues, f"{cov_type} normal pvalues")
        close_interval(z.conf_int(0.1), sm_z.conf_int(0.1), ref.params, f"{cov_type} normal conf_int")
        close_cov(robust.cov_params(), sm_robust.cov_params(), f"{cov_type} cov_params")
        close_interval(robust.conf_int(), sm_robust.conf_int(), ref.params, f"{cov_type} conf_int")
    # predictions with the robust covariance (statsmodels' intervals: Student's t either way)
    new = np.asarray(X, dtype=float)[:5]
    frame = ours.get_robustcov_results("HC3").get_prediction(new).summary_frame()
    Z = np.column_stack([np.ones(5)] * int(fit_intercept) + [new])
    sm_hc3 = ref.get_robustcov_results("HC3")
    sm_frame = sm_hc3.get_prediction(Z).summary_frame()
    # statsmodels forms z C zᵀ from the raw covariance: its error is RTOL times the terms' sum |z| |C| |z|
    # over the result (Longley: entries up to 8e11 summing to 4e4, a factor 6 over RTOL); ours comes from the basis
    C = sm_hc3.cov_params()
    cancellation = np.einsum("ij,jk,ik->i", np.abs(Z), np.abs(C), np.abs(Z)) / np.einsum("ij,jk,ik->i", Z, C, Z)
    for column in frame.columns:
        close(frame[column], sm_frame[column], f"HC3 prediction {column}", RTOL * max(1.0, cancellation.max()))


@pytest.mark.parametrize("X, y, w, fit_intercept", cases())
def test_diagnostics_influence_vif_and_prediction_match_statsmodels(X, y, w, fit_intercept):
    ours = torchlinreg.ols(X, y, sample_weight=w, fit_intercept=fit_intercept)
    ref, A = statsmodels_fit(X, y, w, fit_intercept)
    e = ref.wresid
    omnibus, jb = omni_normtest(e), jarque_bera(e)
    expected = {"Omnibus": omnibus[0], "Prob(Omnibus)": omnibus[1], "Jarque-Bera (JB)": jb[0], "Prob(JB)": jb[1],
                "Skew": jb[2], "Kurtosis": jb[3], "Durbin-Watson": durbin_watson(e),
                "Cond. No.": ref.condition_number}
    found = ours.diagnostics()
    assert sorted(found) == sorted(expected)
    for label, value in expected.items():
        close(found[label], value, label)
    # WLS is OLS on √w y and √w Z, and statsmodels' OLSInfluence is defined for OLS: its figures on those
    sw = np.ones(len(A)) if w is None else np.sqrt(w)
    influence = OLSInfluence(sm.OLS(sw * np.asarray(y, dtype=float), A * sw[:, None]).fit())
    got = ours.get_influence()
    for name in ("hat_matrix_diag", "resid_studentized_internal"):
        close_normwise(getattr(got, name), getattr(influence, name), name)
    close_normwise(got.cooks_distance[0], influence.cooks_distance[0], "cooks_distance")
    if len(A) <= 1000:
        external, dffits = influence.resid_studentized_external, influence.dffits[0]
        close(got.dffits[1], influence.dffits[1], "dffits threshold")
    else:  # statsmodels refits without each row (fair: 56 s); the same figures from its internal ones, exactly:
        r, h, df = influence.resid_studentized_internal, influence.hat_matrix_diag, ref.df_resid
        external = r * np.sqrt((df - 1) / (df - r ** 2))
        dffits = external * np.sqrt(h / (1 - h))
    close_normwise(got.resid_studentized_external, external, "resid_studentized_external")
    close_normwise(got.dffits[0], dffits, "dffits")
    close_normwise(got.cooks_distance[1], influence.cooks_distance[1], "cooks p")
    k = int(fit_intercept)
    with warnings.catch_warnings():  # its note on Longley's conditioning
        warnings.simplefilter("ignore")
        close(ours.vif(), [variance_inflation_factor(A, j) for j in range(k, A.shape[1])], "vif")
    new = np.asarray(X, dtype=float)[:7] * 1.1 + 0.5
    frame = ours.get_prediction(new).summary_frame(alpha=0.1)
    sm_frame = ref.get_prediction(np.column_stack([np.ones(7)] * k + [new])).summary_frame(alpha=0.1)
    assert list(frame.columns) == list(sm_frame.columns)
    for column in frame.columns:
        close(frame[column], sm_frame[column], column)


def test_summary_lays_out_statsmodels_blocks():
    X, Y = realdata.numeric_design(*realdata.load("longley"))
    text = torchlinreg.ols(X, Y["TOTEMP"]).summary()
    for piece in ("OLS Regression Results", "Dep. Variable:", "TOTEMP", "R-squared:", "0.995", "F-statistic:",
                  "330.2853", "Prob (F-statistic):", "4.98e-10", "Log-Likelihood:", "-109.62", "const",
                  "-3.482e+06", "YEAR", "1829.151", "P>|t|", "[0.025", "0.975]", "Omnibus:", "0.749",
                  "Durbin-Watson:", "2.559", "Jarque-Bera (JB):", "0.684", "Cond. No.", "4.86e+09",
                  "condition number is 4.86e+09"):
        assert piece in text, piece
    robust = torchlinreg.ols(X, Y["TOTEMP"]).get_robustcov_results("HC3", use_t=False).summary()
    assert "P>|z|" in robust and "HC3" in robust


# --- input: names, missing values, weights -------------------------------------------------------------

def small():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(30, 2))
    y = X @ [1.0, -2.0] + 0.5 + rng.normal(size=30)
    return X, y


def test_arrays_take_statsmodels_default_names_and_a_series_its_name():
    X, y = small()
    assert torchlinreg.ols(X, y).names == ["const", "x1", "x2"]
    assert torchlinreg.ols(X, y, fit_intercept=False).names == ["x1", "x2"]
    res = torchlinreg.ols(pd.DataFrame(X, columns=["a", "b"]), pd.Series(y, name="out"))
    assert res.names == ["const", "a", "b"] and res.data.target_name == "out"
    assert isinstance(torchlinreg.ols(X, y), torchlinreg.OLSResults)


def test_missing_drop_fits_the_complete_rows_as_statsmodels():
    X, y = small()
    X[3, 1], y[7] = np.nan, np.nan
    w = np.linspace(1, 2, 30)
    w[11] = np.nan
    ours = torchlinreg.ols(X, y, sample_weight=w, missing="drop")
    ref = sm.WLS(y, sm.add_constant(X), weights=w, missing="drop").fit()
    assert ours.nobs == 27 == ref.nobs
    for name in ("params", "bse", "llf", "rsquared"):
        close(getattr(ours, name), getattr(ref, name), name)
    np.testing.assert_array_equal(ours.data.kept, np.delete(np.arange(30), [3, 7, 11]))


def test_missing_raise_names_the_row_and_none_refuses_nan():
    X, y = small()
    X[4, 0] = np.nan
    with pytest.raises(DataError) as info:
        torchlinreg.ols(X, y, missing="raise")
    message = str(info.value)
    assert "row 5" in message and "in X" in message and "missing='drop'" in message and "\n" not in message
    with pytest.raises(DataError, match="NaN"):
        torchlinreg.ols(X, y)
    with pytest.raises(ConfigError, match="missing must be one of"):
        torchlinreg.ols(X, y, missing="skip")


def test_a_scalar_weight_is_every_rows_weight():
    X, y = small()
    ours, ref = torchlinreg.ols(X, y, sample_weight=2.5), sm.WLS(y, sm.add_constant(X), weights=2.5).fit()
    for name in ("params", "bse", "ssr", "llf", "aic", "rsquared", "fvalue"):
        close(getattr(ours, name), getattr(ref, name), name)
    close(ours.params, torchlinreg.ols(X, y).params, "params as OLS")


@pytest.mark.parametrize("weights, words", [(-1.0, "negative values"), ("nan", "NaN or infinite"),
                                            (0.0, "every sample_weight is 0"), ("short", "shape")])
def test_bad_weights_are_one_line_data_errors(weights, words):
    X, y = small()
    w = np.ones(30)
    if weights == "short":
        w = w[:5]
    elif weights == "nan":
        w[2] = np.nan
    elif weights == 0.0:
        w[:] = 0.0
    else:
        w[2] = weights
    with pytest.raises(DataError) as info:
        torchlinreg.ols(X, y, sample_weight=w)
    assert words in str(info.value) and "\n" not in str(info.value)
    if weights == -1.0:
        assert "row 3" in str(info.value)


def test_other_bad_input():
    X, y = small()
    with pytest.raises(DataError, match="one target"):
        torchlinreg.ols(X, np.column_stack([y, y]))
    with pytest.raises(DataError, match="30 rows but y has 29"):
        torchlinreg.ols(X, y[:-1])
    with pytest.raises(ConfigError, match="constant term"):
        torchlinreg.ols(pd.DataFrame(X, columns=["const", "b"]), y)
    with pytest.raises(ValueError, match="cov_type"):
        torchlinreg.ols(X, y).get_robustcov_results("HC9")
    with pytest.raises(DataError, match="2 columns"):
        torchlinreg.ols(X, y).get_prediction(np.ones((3, 3)))


def test_an_implicit_constant_counts_as_statsmodels_counts_it():
    """Without an intercept, a column of ones among the features is the constant (statsmodels' k_constant):
    the centred sums of squares, mean squares and information criteria follow from it."""
    rng = np.random.default_rng(1)
    X = np.hstack([np.ones((50, 1)), rng.normal(size=(50, 2))])
    y = X[:, 1:] @ [1.0, 2.0] + 3 + rng.normal(size=50)
    res, ref = torchlinreg.ols(X, y, fit_intercept=False), sm.OLS(y, X).fit()
    assert res.k_constant == ref.k_constant == 1
    for name in ("ess", "mse_model", "mse_total", "centered_tss", "rsquared", "fvalue"):
        assert getattr(res, name) == pytest.approx(getattr(ref, name), rel=1e-8), name  # the 1e-8
    for name in ("aicc", "hqic"):
        assert getattr(res, name) == pytest.approx(ref.info_criteria(name), rel=1e-8), name
    frame = res.get_prediction(X[:3]).summary_frame()
    assert np.allclose(frame["mean"], ref.get_prediction(X[:3]).summary_frame()["mean"], rtol=1e-8)
