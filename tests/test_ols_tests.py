"""``OLSResults.t_test``, ``f_test``, ``wald_test``, ``compare_f_test``, ``compare_lr_test`` against statsmodels.

Tolerance: the issue's relative 1e-8 against statsmodels (``RTOL``), on longley, grunfeld and a seeded
synthetic set, plain and with HC1 covariances (t and normal), string and matrix restrictions.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

import realdata
import torchlinreg

RTOL = 1e-8  # the tolerance against statsmodels


def _synthetic():
    rng = np.random.default_rng(1717)
    X = rng.normal(size=(150, 4)) * [1.0, 5.0, 0.2, 2.0] + [0.0, 10.0, 1.0, -3.0]
    y = X @ [1.0, 0.2, 3.0, -0.5] + 2.0 + rng.normal(size=150) * (1 + np.abs(X[:, 0]))
    return pd.DataFrame(X, columns=["a", "b", "c", "d"]), pd.Series(y, name="y")


# (data set, restrictions as strings): each string's restrictions are independent
CASES = {
    "longley": ["GNP = 0", "GNP = 0, POP = UNEMP", "GNPDEFL + 2*ARMED = 0.5, YEAR - 3 = const * 0.001, UNEMP=0",
                "-GNP + ARMED*2 - 1 = -POP", "2*(GNP - POP)/3 = 0.5*(ARMED + 1e-3), -(UNEMP - (ARMED)) = 0"],
    "grunfeld": ["value = 0", "value = capital", "value + capital = 0.2, year = 0, const = 10"],
    "synthetic": ["a = 1", "a = 1, b = 0.2, c = 3, d = -0.5", "a - b = c - 2*d + 1.5", "a/4 + (b - c)*2 = 1/8"],
}


def data(name):
    if name == "synthetic":
        return _synthetic()
    X, Y = realdata.numeric_design(*realdata.load(name))
    return X, Y.iloc[:, 0]


def fits(name, cov="nonrobust", use_t=True):
    X, y = data(name)
    ours = torchlinreg.ols(X, y)
    ref = sm.OLS(y, sm.add_constant(X, prepend=True, has_constant="add")).fit()
    if cov != "nonrobust":
        ours = ours.get_robustcov_results(cov, use_t=use_t)
        ref = ref.get_robustcov_results(cov, use_t=use_t)
    return ours, ref


def close(ours, ref, what):
    np.testing.assert_allclose(np.asarray(ours, dtype=float), np.asarray(ref, dtype=float), rtol=RTOL, atol=0,
                               err_msg=what)


def close_p(ours, ref, statistic, sf, what):
    """p values ``sf(statistic)`` whose statistics agree to ``RTOL``: each within ``RTOL`` times (1 + the tail's
    elasticity ``|d ln sf / d ln statistic|``), large far in the tail (Grunfeld's t of 7 has p = 8e-11)."""
    for p, r, s in zip(np.ravel(ours), np.ravel(ref), np.abs(np.ravel(statistic))):
        elasticity = abs(np.log(sf(s * (1 + 1e-6)) / sf(s))) / 1e-6
        np.testing.assert_allclose(p, r, rtol=RTOL * (1 + elasticity), atol=0, err_msg=what)


def check_t(ours, ref):
    close(ours.effect, np.ravel(ref.effect), "effect")
    close(ours.sd, np.ravel(ref.sd), "sd")
    close(ours.tvalue, np.ravel(ref.tvalue), "tvalue")
    sf = (lambda t: stats.t.sf(t, ref.df_denom)) if ref.distribution == "t" else stats.norm.sf
    close_p(ours.pvalue, ref.pvalue, ref.tvalue, sf, "pvalue")
    # each end of effect ± crit sd within RTOL of |effect| + crit sd, the terms it sums (an end may be near 0)
    lo, hi = np.asarray(ref.conf_int(0.1)).T
    np.testing.assert_array_less(np.abs(ours.conf_int(0.1) - ref.conf_int(0.1)).max(axis=1),
                                 RTOL * (np.abs(np.ravel(ref.effect)) + (hi - lo) / 2), err_msg="conf_int")
    assert ours.distribution == ref.distribution
    if ref.distribution == "t":
        assert ours.df_denom == ref.df_denom


def check_joint(ours, ref):
    assert ours.distribution == ref.distribution
    close(ours.statistic, float(np.squeeze(ref.statistic)), "statistic")
    stat = float(np.squeeze(ref.statistic))
    sf = (lambda f: stats.f.sf(f, ref.df_num, ref.df_denom)) if ref.distribution == "F" \
        else (lambda w: stats.chi2.sf(w, ref.df_denom))
    close_p(ours.pvalue, float(np.squeeze(ref.pvalue)), stat, sf, "pvalue")
    if ref.distribution == "F":
        close(ours.fvalue, float(np.squeeze(ref.fvalue)), "fvalue")
        assert (ours.df_num, ours.df_denom) == (ref.df_num, ref.df_denom)
    else:
        assert ours.df == ref.df_denom  # statsmodels keeps chi²'s degrees of freedom in df_denom


COVS = [("nonrobust", True), ("HC1", True), ("HC1", False)]


@pytest.mark.parametrize("cov,use_t", COVS, ids=["nonrobust", "HC1-t", "HC1-z"])
@pytest.mark.parametrize("name", list(CASES))
def test_string_restrictions_match_statsmodels(name, cov, use_t):
    ours, ref = fits(name, cov, use_t)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' FutureWarning on wald_test's scalar
        for text in CASES[name]:
            check_t(ours.t_test(text), ref.t_test(text))
            check_joint(ours.f_test(text), ref.f_test(text))
            check_joint(ours.wald_test(text), ref.wald_test(text, scalar=True))
            check_joint(ours.wald_test(text, use_f=not ours.use_t), ref.wald_test(text, use_f=not ours.use_t,
                                                                                    scalar=True))


@pytest.mark.parametrize("cov,use_t", COVS, ids=["nonrobust", "HC1-t", "HC1-z"])
def test_matrix_restrictions_match_statsmodels(cov, use_t):
    ours, ref = fits("grunfeld", cov, use_t)
    R = np.array([[0.0, 1.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    q = np.array([0.05, -0.1])
    for r in (R, (R, q), R[0], (R[:1], q[:1])):
        check_t(ours.t_test(r), ref.t_test(r))
        check_joint(ours.f_test(r), ref.f_test(r))
    # the string and the matrix forms agree
    close(ours.f_test("value - capital = 0.05, year = -0.1").fvalue, ours.f_test((R, q)).fvalue, "string = matrix")
    # scalar=False: the statistic as statsmodels' 1×1 array
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' FutureWarning on wald_test's scalar
        ref_array = ref.wald_test((R, q), scalar=False).statistic
    ours_array = ours.wald_test((R, q), scalar=False).statistic
    assert np.shape(ours_array) == np.shape(ref_array) == (1, 1)
    close(ours_array, ref_array, "wald_test(scalar=False)")


@pytest.mark.parametrize("name,drop", [("longley", ["GNP", "POP", "UNEMP"]), ("grunfeld", ["year"]),
                                       ("synthetic", ["c", "d"])])
def test_nested_models_match_statsmodels(name, drop):
    X, y = data(name)
    full, ref_full = fits(name)
    small = torchlinreg.ols(X.drop(columns=drop), y)
    ref_small = sm.OLS(y, sm.add_constant(X.drop(columns=drop), prepend=True)).fit()
    F, p, df = full.compare_f_test(small)
    rF, rp, rdf = ref_full.compare_f_test(ref_small)
    close(F, rF, "compare_f_test")
    close_p(p, rp, rF, lambda f: stats.f.sf(f, rdf, ref_full.df_resid), "compare_f_test p")
    assert df == rdf == len(drop)
    lr, p, df = full.compare_lr_test(small)
    rlr, rp, rdf = ref_full.compare_lr_test(ref_small)
    close(lr, rlr, "compare_lr_test")
    close_p(p, rp, rlr, lambda x: stats.chi2.sf(x, rdf), "compare_lr_test p")
    assert df == rdf
    # the nested F test is the F test of the dropped terms being 0
    close(F, full.f_test(", ".join(f"{c} = 0" for c in drop)).fvalue, "compare_f_test = f_test")
    with pytest.raises(ValueError, match="restricted model has as many parameters"):
        small.compare_f_test(full)
    with pytest.warns(UserWarning, match="nonrobust"):
        full.get_robustcov_results("HC1").compare_f_test(small)


@pytest.mark.parametrize("text,match", [
    ("GNP = ", "empty side"), ("= 0", "empty side"), ("GNP = 0 = 1", "more than one '='"),
    ("GNPX = 0", "unknown name 'GNPX'"), ("GNP * POP = 0", "only a number may multiply"),
    ("GNP POP = 0", "expected an operator"), ("GNP + = 0", "ends with an operator"), ("2*", "ends with an operator"), ("GNP / POP = 0", "only a nonzero number may divide"),
    ("GNP / 0 = 1", "only a nonzero number may divide"), ("(GNP = 0", "'\\(' without '\\)'"),
    ("GNP) = 0", "'\\)' without '\\('"), ("2 * (GNP * POP) = 0", "only a number may multiply"),
    ("1 = 0", "without any parameter"), ("GNP - GNP = 0", "without any parameter"), ("GNP = *2", "'\\*' where a number"),
    ("GNP = 0, GNP = 1", "not independent"), ("GNP = 0,", "empty side"),
])
def test_bad_restrictions_raise_one_line(text, match):
    ours, _ = fits("longley")
    with pytest.raises(ValueError, match=match) as info:
        ours.f_test(text)
    assert "\n" not in str(info.value)


def test_bad_matrices_raise():
    ours, _ = fits("grunfeld")
    with pytest.raises(ValueError, match="one column per parameter"):
        ours.t_test(np.eye(3))
    with pytest.raises(ValueError, match="one value per restriction"):
        ours.f_test((np.eye(4), [0.0]))


def test_names_that_are_not_identifiers():
    # formula names ("C(g)[T.b]", "a:b", "poly(x, 2)[1]") are matched whole, the longest first: the string
    # restrictions equal the matrix ones exactly (the same R and q, so the same arithmetic)
    X, y = _synthetic()
    X.columns = ["a", "a:b", "C(g)[T.b]", "poly(x, 2)[1]"]
    ours = torchlinreg.ols(X, y)
    R = np.array([[0.0, 1.0, 0.0, -0.5, 0.0], [0.0, 0.0, 2.0, 0.0, 1.0]])
    q = np.array([0.0, 3.0])
    text = "a - (C(g)[T.b])/2 = 0, 2*a:b + poly(x, 2)[1] = 3"
    got = ours.f_test(text)
    want = ours.f_test((R, q))
    assert got.statistic == want.statistic and got.pvalue == want.pvalue
