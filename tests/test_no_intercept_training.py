"""Training without a bias: `torchlinreg fit --no-intercept`, `tl.fit(..., fit_intercept=False)` and
`LinearRegression(fit_intercept=False)` with the trained solvers.

The model is ``nn.Linear(bias=False)``: no bias parameter exists, and every engine (gram, the rows,
mini-batches, streamed) trains it towards the exact optimum without intercept. References are
computed here: statsmodels' ``OLS(y, X)`` (no ``add_constant``), scikit-learn's
``LinearRegression(fit_intercept=False)`` and LAPACK's least squares on X alone.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import torch
from sklearn.linear_model import LinearRegression as SkLinearRegression

import torchlinreg as tl
from torchlinreg import TrainConfig, make_regression, run_fit
from torchlinreg.errors import Interrupted, ModelFileError
from torchlinreg.gram import GramObjective
from torchlinreg.scaling import Standardizer
from torchlinreg.solve import QRAccumulator

import realdata
from fuzzing import run_cli
from test_checkpoint import SignalAt, assert_same_run

PROMISED_EXCESS = 1e-6  # the promise for the default settings (as tests/test_real_data.py)
DATA = make_regression(300, 3, 2, noise=0.5, seed=5)  # well conditioned; two targets
LBFGS = TrainConfig(optimizer="lbfgs", dtype="float64", epochs=100, tol=1e-12)


def _no_bias(model) -> bool:
    return model.linear.bias is None and [n for n, _ in model.named_parameters()] == ["linear.weight"]


def _optimum(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """LAPACK's least squares on X alone (no column of ones): the coefficients (m, d) and the MSE."""
    coef = np.linalg.lstsq(X, Y, rcond=None)[0]
    return coef.T, float(np.mean((Y - X @ coef) ** 2))


def test_default_settings_reach_the_optimum_without_intercept(real, tmp_path):
    name, path, frame, targets = real
    out = tmp_path / "out"
    code, stdout, err = run_cli("fit", path, "--target", *targets, "--no-intercept", "--out", out, "--no-plots")
    assert code == 0, err
    assert stdout.splitlines()[0].startswith(
        "settings chosen for this data: L-BFGS on scaled columns (not centred: no intercept) in float64")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["fit_intercept"] is False and summary["status"] == "converged"
    assert summary["standardize"]["x_mean"] == [0.0] * len(summary["features"])  # scaled, never centred
    Xf, Yf = realdata.numeric_design(frame, targets)
    X, Y = Xf.to_numpy(), Yf.to_numpy()
    W, b = np.array(summary["trained"]["weight"]), np.array(summary["trained"]["bias"])
    assert not b.any()  # no bias: the intercept is 0 exactly
    trained = float(np.mean((Y - X @ W.T) ** 2))
    reference, optimum = _optimum(X, Y)
    # As tests/test_real_data.py: both losses are float64 sums of the same n·m squares (rounding ≪ 1e-9
    # relative) and lstsq is backward stable, so a trained loss within 1e-6 shows only in the excess.
    assert (trained - optimum) / optimum <= PROMISED_EXCESS, name
    assert summary["gap"]["relative_excess_loss"] <= PROMISED_EXCESS
    for t, target in enumerate(targets):  # the same optimum as statsmodels and scikit-learn
        sm_params = sm.OLS(Y[:, t], X).fit().params
        sk_coef = SkLinearRegression(fit_intercept=False).fit(X, Y[:, t]).coef_
        assert np.allclose(sm_params, sk_coef, rtol=1e-6, atol=1e-9 * np.abs(sk_coef).max())
        sm_loss = float(np.mean((Y[:, t] - X @ sm_params) ** 2))
        mine = float(np.mean((Y[:, t] - X @ W[t]) ** 2))
        assert (mine - sm_loss) / sm_loss <= PROMISED_EXCESS * len(targets), (name, target)


ENGINES = {  # name -> (config, engine, run_fit options)
    "gram-lbfgs": (LBFGS, "gram", {}),
    "data-lbfgs": (LBFGS, "data", {}),
    # κ(XᵀX) ≈ 1.5: each full-batch SGD epoch at lr 0.25 shrinks the error to about half, 60 are plenty
    "gram-sgd": (TrainConfig(lr=0.25, dtype="float64", epochs=60), "gram", {}),
    "data-sgd": (TrainConfig(lr=0.25, dtype="float64", epochs=60), "data", {}),
    "minibatch-sgd": (TrainConfig(lr=0.1, batch_size=100, dtype="float64", epochs=60, schedule="cosine"), "data",
                      {"standardize": True}),
}


@pytest.mark.parametrize("case", list(ENGINES))
def test_each_engine_trains_a_model_without_bias_to_the_optimum(case):
    config, engine, extra = ENGINES[case]
    result = run_fit(DATA, config, None, engine=engine, stream=io.StringIO(), quiet=True, fit_intercept=False,
                     **extra)
    assert result.engine == engine and _no_bias(result.model) and not result.bias.any()
    assert not result.solution.intercept.any() and result.fit_intercept is False
    X, Y = DATA.X.numpy(), DATA.y.numpy()
    reference, optimum = _optimum(X, Y)
    np.testing.assert_allclose(result.solution.coef, reference, rtol=1e-10)  # κ(X) ≈ 1: lstsq agrees to ~1e-14
    excess = result.gap["relative_excess_loss"]
    if engine == "data" and config.batch_size:
        # Mini-batches end on the noise of their last steps; the same settings with an intercept end there too
        # (checked below), so the tolerance is the mini-batch one: 1e-4 relative excess loss.
        with_bias = run_fit(DATA, config, None, engine=engine, stream=io.StringIO(), quiet=True, **extra)
        assert with_bias.gap["relative_excess_loss"] <= 1e-4
        assert excess <= 1e-4
    else:  # full batches converge: the excess is rounding of the losses (float64), far below the promise
        assert excess <= PROMISED_EXCESS and result.gap["relative_distance"] <= 1e-6


def test_gram_and_data_loops_take_the_same_steps_without_bias():
    config = TrainConfig(lr=0.1, momentum=0.9, dtype="float64", epochs=40)
    runs = [run_fit(DATA, config, None, engine=e, stream=io.StringIO(), quiet=True, fit_intercept=False)
            for e in ("gram", "data")]
    # float64 steps from the same start: the two gradients (through R, and through the rows) differ by
    # rounding only, a few ulps of the loss per epoch; 1e-10 relative covers 40 epochs of it
    np.testing.assert_allclose(runs[0].history.losses, runs[1].history.losses, rtol=1e-10)


def test_the_gram_objective_without_intercept_is_the_rows():
    X, Y = DATA.X.double(), DATA.y.double()
    objective = GramObjective.from_accumulator(QRAccumulator(3, 2, fit_intercept=False).update(X, Y))
    W = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.25, -0.5]], dtype=torch.float64)
    loss, grad_w, grad_b = objective.loss_and_grad(W, torch.zeros(2))
    W_ = W.clone().requires_grad_()
    ref = ((X @ W_.T - Y) ** 2).mean()
    ref.backward()
    # float64: the loss through R and through the rows agree to rounding, ~n·eps relative
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad_w.numpy(), W_.grad.numpy(), rtol=1e-10, atol=1e-12)
    assert not grad_b.any()  # the ones column is zero: the (absent) bias has no gradient
    scaler = objective.standardizer()
    direct = Standardizer.fit(X, Y, center=False)
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):  # root mean squares from R's column norms
        np.testing.assert_allclose(getattr(scaler, name), getattr(direct, name), rtol=1e-12)
    assert not scaler.x_mean.any() and not scaler.y_mean.any()
    scaled = GramObjective.from_accumulator(QRAccumulator(3, 2, fit_intercept=False).update(
        direct.transform_X(X), direct.transform_y(Y)))
    W_s = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.5, 0.6]], dtype=torch.float64)
    assert objective.standardized(scaler).loss(W_s, torch.zeros(2)).item() == pytest.approx(
        scaled.loss(W_s, torch.zeros(2)).item(), rel=1e-12)


def _csv(tmp_path, X, Y, names=("a", "b", "c"), targets=("y",)) -> str:
    path = tmp_path / "d.csv"
    frame = pd.DataFrame(X, columns=list(names))
    for j, t in enumerate(targets):
        frame[t] = Y[:, j]
    frame.to_csv(path, index=False)
    return str(path)


def test_streamed_fits_without_intercept(tmp_path):
    X, Y = DATA.X.numpy(), DATA.y.numpy()[:, :1]
    path = _csv(tmp_path, X, Y)
    reference, optimum = _optimum(X, Y)
    for args, limit in ((("--stream",), PROMISED_EXCESS),
                        (("--stream", "--batch-size", "100", "--optimizer", "sgd", "--lr", "0.1", "--epochs",
                          "60", "--schedule", "cosine", "--dtype", "float64", "--standardize"), 1e-4)):
        out = tmp_path / f"out{len(args)}"
        code, _, err = run_cli("fit", path, "--target", "y", "--no-intercept", "--out", out, "--no-plots", *args)
        assert code == 0, err
        summary = json.loads((out / "summary.json").read_text())
        assert summary["fit_intercept"] is False and summary["reading"]["mode"] == "stream"
        W = np.array(summary["trained"]["weight"])
        assert summary["trained"]["bias"] == [0.0]
        assert (float(np.mean((Y - X @ W.T) ** 2)) - optimum) / optimum <= limit  # as the in-memory engines


def test_save_load_predict_round_trip(tmp_path, capsys):
    X, Y = DATA.X.numpy(), DATA.y.numpy()[:, :1]
    path = _csv(tmp_path, X, Y)
    code, _, err = run_cli("fit", path, "--target", "y", "--no-intercept", "--out", tmp_path / "o", "--no-plots",
                           "--save", tmp_path / "m")
    assert code == 0, err
    desc = json.loads((tmp_path / "m.json").read_text())
    assert desc["fit_intercept"] is False
    saved = tl.load_model(tmp_path / "m")
    assert saved.fit_intercept is False and not saved.bias.any()
    code, _, err = run_cli("predict", tmp_path / "m", path, "-o", tmp_path / "p.csv")
    assert code == 0, err
    predicted = pd.read_csv(tmp_path / "p.csv")["predicted_y"].to_numpy()
    np.testing.assert_allclose(predicted, X @ saved.weight[0], rtol=1e-12)  # CSV holds 17 digits: round trip
    est = tl.load_estimator(tmp_path / "m")  # and again from Python: fitted again, still without bias
    assert est.fit_intercept is False and est.intercept_ == 0.0
    result = tl.fit(pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=Y[:, 0]), "y", fit_intercept=False,
                    quiet=True)
    tl.save_model(tmp_path / "py", result)
    back = tl.load_model(tmp_path / "py")
    assert back.fit_intercept is False
    np.testing.assert_array_equal(back.predict(X), result.saved_model().predict(X))


def test_old_model_files_still_load_with_a_bias(tmp_path):
    X, Y = DATA.X.numpy(), DATA.y.numpy()[:, :1]
    path = _csv(tmp_path, X, Y)
    code, _, err = run_cli("fit", path, "--target", "y", "--out", tmp_path / "o", "--no-plots", "--save",
                           tmp_path / "m")
    assert code == 0, err
    desc = json.loads((tmp_path / "m.json").read_text())
    assert "fit_intercept" not in desc  # as every file written before the entry existed
    saved = tl.load_model(tmp_path / "m")
    assert saved.fit_intercept is True and saved.bias.any()
    desc["fit_intercept"] = False  # an edited description that contradicts its tensors is refused
    (tmp_path / "m.json").write_text(json.dumps(desc))
    with pytest.raises(ModelFileError, match="no intercept but .* non-zero bias"):
        tl.load_model(tmp_path / "m")


@pytest.mark.parametrize("settings", [{}, {"optimizer": "adam", "lr": 0.05, "epochs": 2000, "tol": None,
                                           "schedule": "cosine"},
                                      {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 500, "tol": None}])
def test_tl_fit_and_the_estimator_match_sklearn(settings):
    X, y = DATA.X.numpy(), DATA.y.numpy()[:, 0]
    ref = SkLinearRegression(fit_intercept=False).fit(X, y)
    est = tl.LinearRegression(fit_intercept=False, **settings).fit(X, y)
    assert est.intercept_ == 0.0 and _no_bias(est.module_)
    # 1e-7 relative: gd's convergence, as tests/test_estimator.py for the intercept case (κ(X) ≈ 1 here)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-7)
    frame = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=y)
    result = tl.fit(frame, "y", fit_intercept=False, quiet=True,
                    **({"dtype": "float64"} if settings.get("optimizer") else {}), **settings)
    assert _no_bias(result.model) and not result.bias.any()
    np.testing.assert_allclose(result.weight[0], ref.coef_, rtol=1e-7)
    est.partial_fit(X, y)  # continues without a bias
    assert est.intercept_ == 0.0


@pytest.mark.parametrize("case", ["gram-sgd", "minibatch-sgd"])
def test_a_resumed_run_is_bit_identical(tmp_path, case):
    config, engine, extra = ENGINES[case]
    config = TrainConfig(**{**config.to_dict(), "epochs": 12})

    def fit(out, **kwargs):
        return run_fit(DATA, config, out, engine=engine, stream=io.StringIO(), quiet=True, fit_intercept=False,
                       **extra, **kwargs)

    reference = fit(tmp_path / "ref")
    with pytest.raises(Interrupted):
        fit(tmp_path / "run", callbacks=[SignalAt(5)])
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["settings"]["fit_intercept"] is False
    resumed = fit(tmp_path / "run", resume=True)
    assert _no_bias(resumed.model)
    assert_same_run(resumed, reference, tmp_path / "run", tmp_path / "ref")


def test_a_checkpoint_with_an_intercept_is_not_resumed_without(tmp_path):
    config = TrainConfig(lr=0.1, dtype="float64", epochs=12)
    with pytest.raises(Interrupted):
        run_fit(DATA, config, tmp_path, engine="gram", stream=io.StringIO(), quiet=True, callbacks=[SignalAt(5)])
    with pytest.raises(tl.errors.ConfigError, match="fit_intercept"):
        run_fit(DATA, config, tmp_path, engine="gram", stream=io.StringIO(), quiet=True, fit_intercept=False,
                resume=True)


def test_no_bias_is_shown_for_a_model_without_intercept(tmp_path, capsys):
    """No ``bias: 0`` lines: the epoch lines, the comparison table, ``summary()`` and a loaded run's summary
    leave the bias out of a model fitted without intercept (it is no parameter); with one, they keep it."""
    frame, targets = realdata.load("stackloss")
    path = tmp_path / "stackloss.csv"
    frame.to_csv(path, index=False)
    for flags, shown in (([], True), (["--no-intercept"], False)):
        out = tmp_path / f"out{shown}"
        assert tl.cli.main(["fit", str(path), "--target", *targets, *flags, "--out", str(out), "--no-plots",
                            "--log-every", "100"]) == 0
        printed = capsys.readouterr().out
        assert ("bias" in printed) == shown and ("Bias:" in printed) == shown
        assert ("bias" in str(tl.load_result(out).summary())) == shown
    result = tl.fit(frame[["AIRFLOW", "WATERTEMP", "ACIDCONC"]], frame[targets[0]], fit_intercept=False)
    capsys.readouterr()
    assert "bias" not in str(result.summary()) and "bias" not in result._repr_html_().split("Plots")[0]
