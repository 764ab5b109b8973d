"""The same command on the same file gives the same answer whether the file is read whole or streamed."""

import json

import numpy as np
import pytest

from torchlinreg import make_regression, write_table
from torchlinreg.cli import main
from torchlinreg.data import dataset_columns
from torchlinreg.scaling import Standardizer

from bounds import U64, gamma


@pytest.fixture(scope="module")
def weighted_csv(tmp_path_factory):
    data = make_regression(400, 2, 1, noise=1.0, seed=8)
    columns = dataset_columns(data)
    columns["x2"] = columns["x2"] * 10 - 30  # columns on different scales: standardising matters
    columns["w"] = np.random.default_rng(9).uniform(0.0, 3.0, data.n_samples)
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
    np.testing.assert_allclose(streamed["weight"], whole["weight"], rtol=bound, atol=bound)
    np.testing.assert_allclose(streamed["bias"], whole["bias"], rtol=bound)
    assert bound < 1e-11 and U64 < bound
    X = np.column_stack([columns["x1"], columns["x2"]])
    weighted = Standardizer.fit(X, columns["y"][:, None], sample_weight=columns["w"])
    assert weighted.x_mean[1] != pytest.approx(X[:, 1].mean(), rel=1e-3)  # the weights do move the statistics
