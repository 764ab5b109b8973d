"""``solve --row-figures FILE`` and ``write_row_figures``: each row's figures against statsmodels' OLSInfluence.

The file is written a chunk at a time, so the same figures must come out whole and streamed (small
chunks). Tolerance: 1e-8 relative, the issue's bar against statsmodels; both compute the leverages from an
orthonormal basis of the same design (statsmodels from the pseudo-inverse, we from the solution's factor),
each within a few hundred eps·κ of the exact figure on these well-scaled data sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import realdata
from torchlinreg.cli import main
from torchlinreg.data import ArraySource
from torchlinreg.rowfigures import write_row_figures
from torchlinreg.solve import lstsq

RTOL = 1e-8  # the bar against statsmodels


def reference(X, y, w=None):
    exog = sm.add_constant(X, prepend=True, has_constant="add")
    if w is None:
        fit = sm.OLS(y, exog).fit()
        return fit, fit.get_influence().summary_frame()
    # WLS has no get_influence: its influence is that of OLS on √w y and √w [1, X], as ours
    root = np.sqrt(w)
    frame = sm.OLS(y * root, exog.mul(root, axis=0)).fit().get_influence().summary_frame()
    return sm.WLS(y, exog, weights=w).fit(), frame


def check(got: pd.DataFrame, fit, frame, target: str):
    np.testing.assert_allclose(got[f"fitted_{target}"], fit.fittedvalues, rtol=RTOL, err_msg="fitted")
    np.testing.assert_allclose(got[f"resid_{target}"], fit.resid, rtol=RTOL, atol=RTOL * np.abs(fit.resid).max(),
                               err_msg="resid")
    for ours, theirs in [("hat_diag", "hat_diag"), (f"standard_resid_{target}", "standard_resid"),
                         (f"student_resid_{target}", "student_resid"), (f"cooks_d_{target}", "cooks_d"),
                         (f"dffits_{target}", "dffits")]:
        scale = np.abs(frame[theirs]).max()
        np.testing.assert_allclose(got[ours], frame[theirs], rtol=RTOL, atol=RTOL * scale, err_msg=ours)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("name", ["longley", "stackloss"])
def test_cli_row_figures_match_statsmodels(tmp_path, capsys, name, stream):
    frame, targets = realdata.load(name)
    X, Y = realdata.numeric_design(frame, targets)
    path = tmp_path / "data.csv"
    pd.concat([X, Y], axis=1).to_csv(path, index=False)
    out = tmp_path / "rows.parquet"
    argv = ["solve", str(path), "--target", targets[0], "--row-figures", str(out)]
    assert main(argv + (["--stream", "--chunk-rows", "5"] if stream else [])) == 0
    assert f"the figures of {len(X)} rows" in capsys.readouterr().err
    fit, ref = reference(X, Y.iloc[:, 0])
    check(pd.read_parquet(out), fit, ref, targets[0])


def test_weighted_rows_match_wls(tmp_path):
    frame, targets = realdata.load("ccard")
    X, Y = realdata.numeric_design(frame, targets)
    w = 1.0 / X["INCOME"].to_numpy() ** 2  # statsmodels' WLS example on ccard
    data = ArraySource.from_arrays(X.to_numpy(), Y.to_numpy(), feature_names=list(X.columns),
                               target_names=targets, sample_weight=w)
    solution = lstsq(X.to_numpy(), Y.to_numpy(), sample_weight=w, feature_names=list(X.columns),
                     target_names=targets)
    path, n_rows = write_row_figures(data, solution, tmp_path / "rows.csv", chunk_rows=7)
    assert n_rows == len(X)
    fit, ref = reference(X, Y.iloc[:, 0], w)
    check(pd.read_csv(path), fit, ref, targets[0])


def test_existing_file_is_refused_before_the_solve_and_kept(tmp_path, capsys):
    frame, targets = realdata.load("longley")
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "rows.csv"
    out.write_text("mine\n")
    assert main(["solve", str(path), "--target", targets[0], "--row-figures", str(out)]) == 2
    err = capsys.readouterr()
    assert "already exists" in err.err and "--force" in err.err and err.out == ""  # nothing solved or printed
    assert out.read_text() == "mine\n"
    assert main(["solve", str(path), "--target", targets[0], "--row-figures", str(out), "--force"]) == 0
    assert len(pd.read_csv(out)) == len(frame)


def test_other_rows_leave_the_file_as_it_was(tmp_path):
    # the rows do not match the solution: an error, and the file keeps what it held (no half-written table)
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 2)), rng.normal(size=40)
    solution = lstsq(X, y)
    out = tmp_path / "rows.csv"
    out.write_text("mine\n")
    other = ArraySource.from_arrays(X[:30], y[:30])
    with pytest.raises(ValueError, match="hold 30 rows but the solution was fitted on 40"):
        write_row_figures(other, solution, out, chunk_rows=8, force=True)
    assert out.read_text() == "mine\n"
    assert [p.name for p in tmp_path.iterdir()] == ["rows.csv"]  # no temporary file left


def test_fewer_rows_than_parameters_is_one_line(tmp_path, capsys):
    path = tmp_path / "wide.csv"
    pd.DataFrame(np.arange(12.0).reshape(3, 4) ** 1.5, columns=["a", "b", "c", "y"]).to_csv(path, index=False)
    assert main(["solve", str(path), "--row-figures", str(tmp_path / "rows.csv")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "the row figures need more rows than parameters" in errors[0]
    assert not (tmp_path / "rows.csv").exists()
