"""`torchlinreg fit FILE --target T`, no other flag, on eight real data sets: the defaults converge.

The tutorial's settings (plain SGD at lr 0.001, 50 epochs) diverge on real data whose columns
are far from the tutorial's scale; with a data file and neither ``--optimizer`` nor ``--lr``,
fit chooses settings that reach the least-squares optimum, says so in its first line, and
obeys every setting given explicitly. The reference optimum is computed here, by LAPACK's SVD
least squares (``numpy.linalg.lstsq``) on the same float64 values.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import realdata
from fuzzing import run_cli

# The trained model ends within this relative excess loss of the optimum (the promise).
PROMISED_EXCESS = 1e-6


def _reference_mse(X: np.ndarray, Y: np.ndarray) -> float:
    """The least-squares optimum's MSE over all n·m entries, by LAPACK's SVD solver on [X, 1]."""
    A = np.hstack([X, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(A, Y, rcond=None)[0]
    return float(np.mean((Y - A @ coef) ** 2))


def test_default_settings_reach_the_optimum(real, tmp_path):
    name, path, frame, targets = real
    out = tmp_path / "out"
    code, stdout, err = run_cli("fit", path, "--target", *targets, "--out", out)
    assert code == 0, err
    first = stdout.splitlines()[0]
    assert first.startswith("settings chosen for this data: L-BFGS on standardised columns in float64"), first
    assert "--optimizer and --lr not given" in first
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "converged" and summary["settings"]["optimizer"] == "lbfgs"

    X, Y = (d.to_numpy() for d in realdata.numeric_design(frame, targets))
    assert summary["features"] == list(realdata.numeric_design(frame, targets)[0].columns)
    W, b = np.array(summary["trained"]["weight"]), np.array(summary["trained"]["bias"])
    trained = float(np.mean((Y - X @ W.T - b) ** 2))
    optimum = _reference_mse(X, Y)
    # Both losses are float64 sums of n·m squares of the same data: their rounding is about
    # n·eps·‖y‖²/SSR relative (below 1e-9 on these sets, longley's R² = 0.995 included), and
    # lstsq's optimum is backward stable, so a trained loss within 1e-6 shows only in the excess.
    excess = (trained - optimum) / optimum
    assert excess <= PROMISED_EXCESS, f"{name}: relative excess loss {excess:.3g}"
    assert summary["gap"]["relative_excess_loss"] <= PROMISED_EXCESS


def test_explicit_settings_are_obeyed(tmp_path):
    frame, targets = realdata.load("longley")
    path = tmp_path / "longley.csv"
    frame.to_csv(path, index=False)

    # --optimizer sgd: the tutorial's settings, which diverge on longley's scales (exit 3), with the advice.
    code, stdout, err = run_cli("fit", path, "--target", *targets, "--optimizer", "sgd", "--out", tmp_path / "sgd",
                                "--no-plots")
    assert code == 3 and "settings chosen" not in stdout
    summary = json.loads((tmp_path / "sgd" / "summary.json").read_text())
    assert summary["settings"]["lr"] == 0.001 and summary["settings"]["epochs"] == 50
    assert summary["standardize"] is None and summary["settings"]["dtype"] == "float32"

    # --epochs 3 and --no-standardize: kept, the rest chosen; the first line says what was used.
    code, stdout, err = run_cli("fit", path, "--target", *targets, "--epochs", "3", "--no-standardize",
                                "--out", tmp_path / "three", "--no-plots")
    first = stdout.splitlines()[0]
    assert "L-BFGS on the data's columns (standardising turned off)" in first and "3 epochs" in first
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["epochs_run"] <= 3 and summary["standardize"] is None

    # --batch-size: L-BFGS needs the full batch, so mini-batches get Adam on standardised columns.
    code, stdout, err = run_cli("fit", path, "--target", *targets, "--batch-size", "4", "--epochs", "2",
                                "--out", tmp_path / "mini", "--no-plots")
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("settings chosen for this data: Adam at lr 0.01 on standardised columns")


def test_the_tutorial_run_keeps_the_tutorials_settings(tmp_path):
    code, stdout, err = run_cli("fit", "--out", tmp_path / "out", "--no-plots")
    assert code == 0, err
    assert stdout.startswith("Weight: ")  # the tutorial's first line, no settings line before it
    settings = json.loads((tmp_path / "out" / "summary.json").read_text())["settings"]
    assert (settings["optimizer"], settings["lr"], settings["epochs"], settings["dtype"]) == ("sgd", 0.001, 50, "float32")


def _notes(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("note: ")]


def test_the_notes_agree_with_the_solver_and_name_the_columns(tmp_path):
    """Longley is ill-conditioned (κ([X, 1]) ≈ 1e11, κ of the Hessian ≈ 1e22) but of full rank: the notes
    must not call its Hessian singular, and they name features by their columns."""
    frame, targets = realdata.load("longley")
    path = tmp_path / "longley.csv"
    frame.to_csv(path, index=False)
    code, stdout, _ = run_cli("fit", path, "--target", *targets, "--optimizer", "sgd", "--epochs", "2",
                              "--out", tmp_path / "sgd", "--no-plots")
    code, solved, _ = run_cli("solve", path, "--target", *targets, "--json")
    assert json.loads(solved)["rank"] == 7  # the solver's rank: 6 features and the intercept
    notes = _notes(stdout)
    assert notes and not any("singular" in n for n in notes), notes
    conditioning = next(n for n in notes if "condition number" in n)
    features = realdata.numeric_design(frame, targets)[0].columns
    assert any(f"weight of {name!r}" in conditioning for name in features), conditioning
    assert "feature 2" not in stdout and "--standardize --lr" in conditioning


def test_a_singular_design_is_called_so_with_the_solvers_rank(tmp_path):
    frame, targets = realdata.load("stackloss")
    frame["AIRFLOW2"] = 2 * frame["AIRFLOW"]  # collinear: rank 4 of 5
    path = tmp_path / "collinear.csv"
    frame.to_csv(path, index=False)
    code, stdout, _ = run_cli("fit", path, "--target", *targets, "--optimizer", "sgd", "--lr", "1e-5",
                              "--epochs", "2", "--out", tmp_path / "o", "--no-plots")
    assert any("the Hessian is singular (rank 4 of 5" in n for n in _notes(stdout)), _notes(stdout)


def test_notes_come_with_weights_and_percentages_read_as_percentages(tmp_path):
    frame, targets = realdata.load("ccard")
    path = tmp_path / "ccard.csv"
    frame.to_csv(path, index=False)
    features = ["AGE", "OWNRENT"]
    code, stdout, _ = run_cli("fit", path, "--target", *targets, "--features", *features, "--weights", "INCOME",
                              "--optimizer", "sgd", "--standardize", "--lr", "0.1", "--epochs", "2",
                              "--out", tmp_path / "o", "--no-plots")
    notes = _notes(stdout)
    assert notes, stdout
    share = next(n for n in notes if "of the divergence limit" in n)
    # The limit of weighted least squares: 2/λmax of 2/(Σw·m)·AᵀWA on the standardised columns, here.
    X = frame[features].to_numpy()
    w = frame["INCOME"].to_numpy()
    mean = np.average(X, axis=0, weights=w)
    scale = np.sqrt(np.average((X - mean) ** 2, axis=0, weights=w))
    A = np.hstack([(X - mean) / scale, np.ones((len(X), 1))])
    limit = 2 / np.linalg.eigvalsh(2 / w.sum() * (A.T * w) @ A)[-1]
    found = re.search(r"lr 0\.1 is ([0-9.,]+)% of the divergence limit ([0-9.]+) ", share)
    assert found, share  # a percentage written as one: digits and a % sign, no exponent
    # Printed to 3 significant digits: each agrees with the reference to half a unit of the third.
    assert float(found[1].replace(",", "")) == pytest.approx(100 * 0.1 / limit, rel=5e-3)
    assert float(found[2]) == pytest.approx(limit, rel=5e-3)
