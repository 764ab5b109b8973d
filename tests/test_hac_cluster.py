"""HAC (Newey-West) and cluster-robust covariances against statsmodels, exact rationals, streamed passes and the CLI."""

from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np
import pytest

import realdata
from torchlinreg.cli import main
from torchlinreg.errors import ConfigError, DataError
from torchlinreg.solve import lstsq
from torchlinreg.statistics import ResidualPass, regression_statistics, solution_statistics

sm = pytest.importorskip("statsmodels.api")

# The figures are statsmodels' own, computed by another algorithm (pseudo-inverse) from the same well-scaled
# problems; the issue sets 1e-8 relative against statsmodels (the designs here have scaled κ ≤ 1e3: both
# solutions agree to ~1e-13, and p values, which carry t² times that, to ~1e-11).
RTOL = 1e-8


def figures(ours, res):
    """Every figure the brief names, ours and statsmodels', by name."""
    return {"params": (ours.params, res.params), "bse": (ours.std_err, res.bse), "tvalues": (ours.t_values, res.tvalues),
            "pvalues": (ours.p_values, res.pvalues), "conf_int": (ours.conf_int, res.conf_int()),
            "fvalue": (ours.f_statistic, res.fvalue), "f_pvalue": (ours.f_pvalue, res.f_pvalue)}


def assert_matches(ours, res, rtol=RTOL, p_rtol=None, skip=()):
    """``p_rtol``: for the p values (in a far tail their relative error is about z² times z's; F's, F·df_model
    times F's)."""
    for name, (a, b) in figures(ours, res).items():
        if name in skip:
            continue
        tol = p_rtol if p_rtol is not None and name in ("pvalues", "f_pvalue") else rtol
        np.testing.assert_allclose(a, np.asarray(b, dtype=float), rtol=tol, atol=0, err_msg=name)
    assert ours.use_t == res.use_t


def sm_fit(X, y, cov_type, w=None, use_t=None, **kwds):
    model = sm.OLS(y, sm.add_constant(X)) if w is None else sm.WLS(y, sm.add_constant(X), weights=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = model.fit(cov_type=cov_type, cov_kwds=kwds, use_t=use_t)
        res.fvalue  # noqa: B018 (cached with its warnings silenced)
    return res


def grunfeld():
    frame, targets = realdata.load("grunfeld")
    return frame, frame[["value", "capital"]].astype(float), frame[targets[0]].astype(float)


@pytest.mark.parametrize("use_t", [None, True])
def test_grunfeld_clustered_by_firm_matches_statsmodels(use_t):
    frame, X, y = grunfeld()
    ours = regression_statistics(X, y, cov_type="cluster", groups=frame["firm"], use_t=use_t)
    codes = np.unique(frame["firm"], return_inverse=True)[1]
    ref = sm_fit(X, y, "cluster", use_t=use_t, groups=codes)
    assert_matches(ours, ref)
    assert ours.cov_type == "cluster" and ours.use_t == bool(use_t)  # z by default, as statsmodels


@pytest.mark.parametrize("maxlags", [0, 1, 2, 3])
def test_grunfeld_hac_on_one_firms_time_series_matches_statsmodels(maxlags):
    frame, X, y = grunfeld()
    gm = (frame["firm"] == "General Motors").to_numpy()  # 20 years in order
    ours = regression_statistics(X[gm], y[gm], cov_type="HAC", maxlags=maxlags)
    assert_matches(ours, sm_fit(X[gm], y[gm], "HAC", maxlags=maxlags))
    if maxlags == 0:  # no lag: White's HC0
        np.testing.assert_allclose(ours.std_err, regression_statistics(X[gm], y[gm], cov_type="HC0").std_err,
                                   rtol=1e-13)  # the same sums, in another order


def exact_hac_std_err(X: np.ndarray, y: np.ndarray, maxlags: int) -> np.ndarray:
    """The HAC standard errors in exact rational arithmetic from the float64 data (rounded to float at the end)."""
    A = [[Fraction(1)] + [Fraction(v) for v in row] for row in X.tolist()]
    b = [Fraction(v) for v in y.tolist()]
    n, p = len(A), len(A[0])
    inv = _inverse([[sum(A[i][r] * A[i][c] for i in range(n)) for c in range(p)] for r in range(p)])
    Aty = [sum(A[i][r] * b[i] for i in range(n)) for r in range(p)]
    beta = [sum(inv[r][c] * Aty[c] for c in range(p)) for r in range(p)]
    s = [[A[i][r] * (b[i] - sum(A[i][c] * beta[c] for c in range(p))) for r in range(p)] for i in range(n)]
    S = [[sum(s[i][r] * s[i][c] for i in range(n)) for c in range(p)] for r in range(p)]
    for lag in range(1, maxlags + 1):
        w = 1 - Fraction(lag, maxlags + 1)
        for r in range(p):
            for c in range(p):
                S[r][c] += w * sum(s[i][r] * s[i - lag][c] + s[i - lag][r] * s[i][c] for i in range(lag, n))
    cov_diag = [sum(inv[r][a] * S[a][bb] * inv[bb][r] for a in range(p) for bb in range(p)) for r in range(p)]
    return np.sqrt([float(v) for v in cov_diag])


def _inverse(M):
    n = len(M)
    aug = [row[:] + [Fraction(int(i == j)) for j in range(n)] for i, row in enumerate(M)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] != 0)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        lead = aug[col][col]
        aug[col] = [v / lead for v in aug[col]]
        for r in range(n):
            if r != col and aug[r][col] != 0:
                f = aug[r][col]
                aug[r] = [a - f * c for a, c in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


@pytest.mark.parametrize("maxlags", [1, 2, 3])
def test_longley_hac_against_exact_rationals_and_statsmodels(maxlags):
    """statsmodels' pseudo-inverse of the raw Longley design (κ 4.9e9) leaves it about 3e-8 off the exact
    standard errors; ours, from the column-scaled factor (κ 4.3e4), stays within 1e-9 of them (the LS bound of the
    scaled design, 9.5e-10, as tests/test_statistics.py's longley_rtol). So: exact rationals at 1e-9, and
    statsmodels at 1e-7 (its own error, 3e-8, with a margin of 3), its p values at z² (F·df_model) times that, the
    interval's ends (an end near 0 loses digits to cancellation) to 1e-7 of their half width."""
    frame, targets = realdata.load("longley")
    X, y = realdata.numeric_design(frame, targets)
    ours = regression_statistics(X, y.iloc[:, 0], cov_type="HAC", maxlags=maxlags)
    np.testing.assert_allclose(ours.std_err, exact_hac_std_err(X.to_numpy(), y.to_numpy()[:, 0], maxlags), rtol=1e-9)
    ref = sm_fit(X, y.iloc[:, 0], "HAC", maxlags=maxlags)
    assert_matches(ours, ref, rtol=1e-7, p_rtol=1e-7 * max(float(np.max(ours.t_values ** 2)), ours.f_statistic * ours.df_model), skip=("conf_int",))
    half = (ours.conf_int[:, 1] - ours.conf_int[:, 0]) / 2
    assert np.all(np.abs(ours.conf_int - ref.conf_int().to_numpy()) < 1e-7 * half[:, None])


def synthetic(n=300, seed=7):
    """AR(1) errors (so HAC matters), 12 clusters with a shared shock each, weights; a fixed seed."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3)) * [1, 4, 0.5] + [0, 10, -3]
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = 0.6 * e[i - 1] + rng.standard_normal()
    groups = rng.integers(0, 12, n)
    y = X @ [1.5, -0.3, 2.0] + 4 + e + rng.standard_normal(12)[groups]
    return X, y, groups, rng.uniform(0.3, 2.0, n)


@pytest.mark.parametrize("weighted", [False, True])
def test_synthetic_hac_and_cluster_match_statsmodels_ols_and_wls(weighted):
    X, y, groups, w = synthetic()
    w = w if weighted else None
    assert_matches(regression_statistics(X, y, sample_weight=w, cov_type="HAC", maxlags=4),
                   sm_fit(X, y, "HAC", w=w, maxlags=4))
    assert_matches(regression_statistics(X, y, sample_weight=w, cov_type="cluster", groups=groups),
                   sm_fit(X, y, "cluster", w=w, groups=groups))


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
def test_streamed_chunks_equal_the_rows_at_once(chunk):
    X, y, groups, w = synthetic(n=150)
    solution = lstsq(X, y, sample_weight=w)
    whole = {"HAC": ResidualPass(solution, "HAC", maxlags=5).update(X, y, w),
             "cluster": ResidualPass(solution, "cluster").update(X, y, w, groups=groups)}
    for cov_type, kwds in (("HAC", {"maxlags": 5}), ("cluster", {})):
        streamed = ResidualPass(solution, cov_type, **kwds)
        for start in range(0, len(X), chunk):
            rows = slice(start, start + chunk)
            streamed.update(X[rows], y[rows], w[rows], groups=groups[rows] if cov_type == "cluster" else None)
        a = solution_statistics(solution, streamed, cov_type=cov_type)[0]
        b = solution_statistics(solution, whole[cov_type], cov_type=cov_type)[0]
        np.testing.assert_allclose(a.std_err, b.std_err, rtol=1e-13)  # the same sums added in another order
        np.testing.assert_allclose(a.f_statistic, b.f_statistic, rtol=1e-12)


def test_cluster_passes_over_parts_merge_and_hac_refuses_to():
    X, y, groups, _ = synthetic(n=120)
    solution = lstsq(X, y)
    odd, even = ResidualPass(solution, "cluster"), ResidualPass(solution, "cluster")
    odd.update(X[1::2], y[1::2], groups=groups[1::2])
    even.update(X[::2], y[::2], groups=groups[::2])
    merged = solution_statistics(solution, odd.merge(even), cov_type="cluster")[0]
    whole = regression_statistics(X, y, cov_type="cluster", groups=groups)
    np.testing.assert_allclose(merged.std_err, whole.std_err, rtol=1e-13)
    hac = ResidualPass(solution, "HAC", maxlags=2)
    with pytest.raises(ConfigError, match="lags cross"):
        hac.merge(ResidualPass(solution, "HAC", maxlags=2))


def test_bad_library_settings():
    X, y, groups, _ = synthetic(n=40)
    with pytest.raises(ConfigError, match="needs maxlags"):
        regression_statistics(X, y, cov_type="HAC")
    with pytest.raises(ConfigError, match="maxlags must be an integer >= 0"):
        regression_statistics(X, y, cov_type="HAC", maxlags=-1)
    with pytest.raises(ConfigError, match="for the HAC covariance"):
        regression_statistics(X, y, cov_type="HC1", maxlags=2)
    with pytest.raises(ConfigError, match="needs groups"):
        regression_statistics(X, y, cov_type="cluster")
    with pytest.raises(DataError, match="at least 2 clusters"):
        regression_statistics(X, y, cov_type="cluster", groups=np.zeros(len(X)))


@pytest.fixture
def grunfeld_csv(tmp_path):
    frame, _, _ = grunfeld()
    path = tmp_path / "grunfeld.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_cli_cluster_and_streamed_hac_print_the_librarys_figures(grunfeld_csv, capsys):
    import json

    path, frame = grunfeld_csv
    base = ["solve", str(path), "--target", "invest", "--features", "value", "capital", "--summary", "--json"]
    X, y = frame[["value", "capital"]].astype(float), frame["invest"].astype(float)
    runs = [(["--cov-type", "cluster", "--cluster", "firm"],
             regression_statistics(X, y, cov_type="cluster", groups=frame["firm"])),
            (["--cov-type", "HAC", "--maxlags", "3", "--stream", "--chunk-rows", "7"],
             regression_statistics(X, y, cov_type="HAC", maxlags=3))]
    for flags, ours in runs:
        capsys.readouterr()
        assert main(base + flags) == 0
        record = json.loads(capsys.readouterr().out)["statistics"][0]
        got = [record["terms"][t]["std_err"] for t in ours.term_names]
        np.testing.assert_allclose(got, ours.std_err, rtol=1e-12)  # the same sums, read in chunks
        assert record["cov_type"] == flags[1]


@pytest.mark.parametrize("flags, code, words", [
    (["--cov-type", "cluster", "--cluster", "nope"], 1, "no column 'nope'"),
    (["--cov-type", "cluster", "--cluster", "single"], 1, "at least 2 clusters"),
    (["--maxlags", "2"], 2, "maxlags is for the HAC covariance"),
    (["--cov-type", "HAC", "--maxlags", "-1"], 2, "maxlags must be an integer >= 0"),
    (["--cov-type", "HAC"], 2, "needs --maxlags"),
    (["--cov-type", "cluster"], 2, "needs --cluster"),
])
def test_cli_bad_input_is_one_line(grunfeld_csv, capsys, flags, code, words):
    path, frame = grunfeld_csv
    frame.assign(single="one").to_csv(path, index=False)
    assert main(["solve", str(path), "--target", "invest", "--features", "value", "capital", "--summary",
                 *flags]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err


@pytest.mark.parametrize("flags", [["--cov-type", "cluster", "--cluster", "firm"],
                                   ["--cov-type", "HAC", "--maxlags", "2", "--stream", "--chunk-rows", "7"]])
def test_fit_summary_computes_hac_and_cluster_as_statsmodels(grunfeld_csv, capsys, tmp_path, flags):
    import json

    path, frame = grunfeld_csv
    out = tmp_path / "out"
    assert main(["fit", str(path), "--target", "invest", "--features", "value", "capital", "--summary", *flags,
                 "--out", str(out), "--no-plots", "--quiet"]) == 0
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("Covariance:")]
    assert printed and printed[0][1] == flags[1]  # the printed table is of the covariance asked for
    record = json.loads((out / "summary.json").read_text())["optimum"]["statistics"][0]
    X, y = frame[["value", "capital"]].astype(float), frame["invest"].astype(float)
    kwds = ({"groups": np.unique(frame["firm"], return_inverse=True)[1]} if flags[1] == "cluster"
            else {"maxlags": 2})
    ref = sm_fit(X, y, flags[1], **kwds)
    terms = record["term_names"]
    assert record["cov_type"] == flags[1] and terms[0] == "intercept"
    for key, theirs in (("std_err", ref.bse), ("p_value", ref.pvalues), ("param", ref.params)):
        np.testing.assert_allclose([record["terms"][t][key] for t in terms], np.asarray(theirs), rtol=RTOL,
                                   err_msg=key)
    np.testing.assert_allclose([record["terms"][t]["conf_int"] for t in terms], ref.conf_int(), rtol=RTOL)
    np.testing.assert_allclose([record["f_statistic"], record["f_pvalue"]], [ref.fvalue, ref.f_pvalue], rtol=RTOL)


@pytest.mark.parametrize("flags, words", [
    (["--cov-type", "HAC", "--maxlags", "2", "--validation-fraction", "0.2"], "needs every row in file order"),
    (["--cov-type", "HAC"], "needs --maxlags"),
    (["--cov-type", "cluster"], "needs --cluster"),
])
def test_fit_bad_dependent_settings_are_one_line(grunfeld_csv, capsys, tmp_path, flags, words):
    path, _ = grunfeld_csv
    assert main(["fit", str(path), "--target", "invest", "--features", "value", "capital", "--summary", *flags,
                 "--out", str(tmp_path / "out"), "--no-plots", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
