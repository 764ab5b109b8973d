"""The diagnostics block of the commands' ``--summary`` against statsmodels, whole and streamed, solve and fit.

Tolerance: 1e-8 relative, the issue's bar against statsmodels. The moments are combined chunk by chunk with
the exact pairwise update, whose rounding is a few eps per chunk relative to the moments; the transforms of
the normality tests are smooth, so the figures keep about as many digits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from statsmodels.stats.stattools import durbin_watson, jarque_bera, omni_normtest

import realdata
import torchlinreg
from torchlinreg.cli import main
from torchlinreg.residual_moments import ResidualMoments

RTOL = 1e-8  # the bar against statsmodels


def reference(X, y, w=None):
    exog = sm.add_constant(X, prepend=True, has_constant="add")
    fit = (sm.OLS(y, exog) if w is None else sm.WLS(y, exog, weights=w)).fit()
    e = fit.wresid
    omnibus, omnibus_p = omni_normtest(e)
    jb, jb_p, skew, kurtosis = jarque_bera(e)
    return {"Omnibus": omnibus, "Prob(Omnibus)": omnibus_p, "Skew": skew, "Kurtosis": kurtosis,
            "Durbin-Watson": durbin_watson(e), "Jarque-Bera (JB)": jb, "Prob(JB)": jb_p}, fit.condition_number


def check(got: dict, want: dict):
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=RTOL, err_msg=key)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("name", ["longley", "statecrime"])
def test_solve_summary_diagnostics_match_statsmodels(tmp_path, capsys, name, stream):
    frame, targets = realdata.load(name)
    X, Y = realdata.numeric_design(frame, targets)
    path = tmp_path / "d.csv"
    pd.concat([X, Y], axis=1).to_csv(path, index=False)
    argv = ["solve", str(path), "--target", targets[0], "--summary", "--json"]
    assert main(argv + (["--stream", "--chunk-rows", "6"] if stream else [])) == 0
    got = json.loads(capsys.readouterr().out)["statistics"][0]["diagnostics"]
    want, _ = reference(X, Y.iloc[:, 0])
    check(got, want)


def test_fit_summary_prints_the_block_with_weights(tmp_path, capsys):
    frame, targets = realdata.load("ccard")
    X, Y = realdata.numeric_design(frame, targets)
    w = 1.0 / X["INCOME"] ** 2
    data = pd.concat([X, Y], axis=1).assign(w=w)
    path = tmp_path / "d.csv"
    data.to_csv(path, index=False)
    assert main(["fit", str(path), "--target", targets[0], "--features", *X.columns, "--weights", "w", "--summary",
                 "--no-plots", "--quiet", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "Omnibus:" in out and "Durbin-Watson:" in out and "Jarque-Bera (JB):" in out
    want, _ = reference(X, Y.iloc[:, 0], w)
    result = torchlinreg.fit(str(path), targets[0], features=list(X.columns), weights="w", quiet=True,
                             chunk_rows=11)
    check(result.statistics[0].diagnostics, want)


def test_chunks_of_any_size_give_the_whole_series_figures():
    # the pairwise update against one chunk of everything: a series with a large mean (cancellation in raw
    # power sums would lose ~8 digits of M4 here; the centred update keeps them)
    rng = np.random.default_rng(12)
    e = 1e4 + rng.standard_t(5, size=(997, 2))
    whole = ResidualMoments(2).update(e).diagnostics()
    pieces = ResidualMoments(2)
    for start in range(0, len(e), 37):
        pieces.update(e[start:start + 37])
    for a, b in zip(whole, pieces.diagnostics()):
        check(b, a)
