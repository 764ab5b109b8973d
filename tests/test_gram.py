"""The one-pass engine against the data loop (``training.train``) and NumPy, computed here.

Tolerances are error bounds (tests/bounds.py). The loss at given parameters is computed two
ways: the data loop sums n rows' squared residuals of d + 2 terms, the engine takes ``‖R θ̃‖²``
from the R factor of ``A = [X, 1, y]`` (``θ̃ = [θ; -I]``). Each differs from the exact loss by
at most about ``γ_{n+p}·amp²`` relative, ``amp = ‖|A||θ̃|‖ / ‖A θ̃‖`` (how much rounding of A's
entries the residual magnifies; squared for R built from Gram blocks). float64 runs then agree
to ``E·γ_{n+p}·amp²`` after E epochs (``f64_trajectory_tol``): a stable step does not magnify
the differences it carries, each epoch adds at most one evaluation's. float32 runs agree to the
data loop's float32 evaluation error (``loss_and_floor``) plus what a few float32 roundings of
the parameters move the loss by (on the tutorial's raw x, one unit in the last place of the
weight moves the loss by up to 1.5e-6 of itself, so two correct float32 runs can differ by that
much; the data loop's float32 run differs from its own float64 run by more).
"""

import numpy as np
import pytest
import torch

from torchlinreg import ConfigError, QRAccumulator, Standardizer, TrainConfig, build_model, train, tutorial_data
from torchlinreg.callbacks import Callback
from torchlinreg.data import make_regression
from torchlinreg.gram import GramObjective, select_engine, train_gram
from torchlinreg.training import mse

from bounds import U32, U64, gamma

TUTORIAL = tutorial_data()
MULTI = make_regression(600, 4, 3, noise=0.5, seed=3)
TRAIN, VAL = make_regression(400, 3, 2, noise=1.0, seed=4), make_regression(100, 3, 2, noise=1.0, seed=104)


def tutorial_weights() -> torch.Tensor:
    w = torch.rand(50, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    w[::7] = 0  # rows that do not count
    return w


def objective(X, y, w=None) -> GramObjective:
    return GramObjective.from_accumulator(QRAccumulator(X.shape[1], y.shape[1]).update(X, y, w))


def run_both(data, config, *, weights=None, standardize=False, val=None):
    """The data loop and the one-pass engine from the same initial parameters."""
    d, m = data.n_features, data.n_targets
    scaler = Standardizer.fit(data.X, data.y) if standardize else None
    fit_X = (lambda X: scaler.transform_X(X.double())) if scaler else (lambda X: X)
    fit_y = (lambda y: scaler.transform_y(y.double())) if scaler else (lambda y: y)
    val_kw = {} if val is None else dict(X_val=fit_X(val.X), y_val=fit_y(val.y))
    history_data = train(build_model(d, m, seed=config.seed), fit_X(data.X), fit_y(data.y), config,
                         scaler=scaler, sample_weight=weights, **val_kw)
    history_gram = train_gram(build_model(d, m, seed=config.seed), objective(data.X, data.y, weights), config,
                              scaler=scaler, val_objective=None if val is None else objective(val.X, val.y))
    return history_data, history_gram


def loss_and_floor(params, X, y, w=None) -> tuple[float, float, float]:
    """NumPy: the MSE at ``params``, the first-order change one float32 ulp of every parameter makes,
    and the float32 data loop's error bound for that MSE: each residual ``x·W + b - y`` (d + 2 terms)
    is off by at most ``γ_{d+2}·(|A||θ̃|)_i``, which moves the mean of squares by ``2·γ_{d+2}·Σ w|r|(|A||θ̃|)``
    over ``Σw·m``; squaring, weighting and the sum of n terms add ``γ_{n+3}`` of the MSE (first order)."""
    X, y = X.double().numpy(), y.double().numpy()
    w = np.ones(len(X)) if w is None else np.asarray(w, dtype=np.float64)
    W, b = np.array(params["linear.weight"]), np.array(params["linear.bias"])
    r = X @ W.T + b - y  # (n, m)
    scale = 2 / (w.sum() * y.shape[1])
    g_W, g_b = scale * (w[:, None] * r).T @ X, scale * (w[:, None] * r).sum(0)
    ulp = lambda a: np.spacing(np.abs(a).astype(np.float32)).astype(np.float64)  # noqa: E731
    floor = np.sum(np.abs(g_W) * ulp(W)) + np.sum(np.abs(g_b) * ulp(b))
    loss = float((w[:, None] * r ** 2).sum() / (w.sum() * y.shape[1]))
    magnitude = np.abs(X) @ np.abs(W.T) + np.abs(b) + np.abs(y)  # |A||θ̃| per row and target
    n, d = X.shape
    evaluation = (2 * gamma(d + 2, U32) * float((w[:, None] * np.abs(r) * magnitude).sum()) / (w.sum() * y.shape[1])
                  + gamma(n + 3, U32) * loss)
    return loss, float(floor), evaluation


def amplification(params, X, y) -> float:
    """``‖|A||θ̃|‖ / ‖A θ̃‖`` for ``A = [X, 1, y]``, ``θ̃ = [Wᵀ; b; -I]``: how much a relative rounding of A's
    entries is magnified in the residual."""
    X, y = X.double().numpy(), y.double().numpy()
    W, b = np.array(params["linear.weight"]), np.array(params["linear.bias"])
    r = X @ W.T + b - y
    return float(np.linalg.norm(np.abs(X) @ np.abs(W.T) + np.abs(b) + np.abs(y)) / np.linalg.norm(r))


def f64_trajectory_tol(history, X, y) -> float:
    """Relative bound for two float64 runs of the same optimizer whose losses and gradients are computed two
    ways (the data loop's sum over n rows, the engine's R): one evaluation differs by at most ``γ_{n+p}·amp²``
    relative (p = d + 1 + m columns of A; amp² covers R from Gram blocks), and a stable step (‖I - lr·H‖ ≤ 1)
    does not magnify the differences carried from earlier epochs, so after E epochs: E·γ_{n+p}·amp²."""
    n, p = X.shape[0], X.shape[1] + 1 + y.shape[1]
    amp = max(amplification(r.params, X, y) for r in history.records)
    return len(history.records) * gamma(n + p) * amp ** 2


def flat(params) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in params.values()])


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.abs(a)))


SCENARIOS = {
    "tutorial, 50 epochs": (TUTORIAL, dict(epochs=50), {}),
    "tutorial, 3000 epochs": (TUTORIAL, dict(epochs=3000), {}),
    "momentum and weight decay": (TUTORIAL, dict(epochs=120, lr=1e-4, momentum=0.9, weight_decay=0.1), {}),
    "Nesterov": (TUTORIAL, dict(epochs=120, lr=1e-4, momentum=0.9, nesterov=True), {}),
    "Adam": (TUTORIAL, dict(epochs=120, optimizer="adam", lr=0.1), {}),
    "AdamW": (TUTORIAL, dict(epochs=120, optimizer="adamw", lr=0.1, weight_decay=0.01), {}),
    "L-BFGS, multi-target": (MULTI, dict(epochs=15, optimizer="lbfgs"), {}),
    "L-BFGS, standardised": (TUTORIAL, dict(epochs=15, optimizer="lbfgs"), dict(standardize=True)),
    "step schedule": (TUTORIAL, dict(epochs=100, schedule="step", step_size=10, gamma=0.5), {}),
    "cosine schedule": (TUTORIAL, dict(epochs=100, schedule="cosine"), {}),
    "sample weights": (TUTORIAL, dict(epochs=120), dict(weights=tutorial_weights())),
    "multi-target": (MULTI, dict(epochs=120, lr=0.05), {}),
    "standardised": (TUTORIAL, dict(epochs=100, lr=0.1), dict(standardize=True)),
    "standardised, weighted": (TUTORIAL, dict(epochs=100, lr=0.1), dict(standardize=True, weights=tutorial_weights())),
    "validation": (TRAIN, dict(epochs=150, lr=0.05), dict(val=VAL)),
    "validation, standardised": (TRAIN, dict(epochs=150, lr=0.05), dict(val=VAL, standardize=True)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_loss_trajectory_is_the_data_loops(name, dtype):
    data, settings, options = SCENARIOS[name]
    history_data, history_gram = run_both(data, TrainConfig(dtype=dtype, **settings), **options)
    assert (history_gram.status, history_gram.message) == (history_data.status, history_data.message) == ("completed", "")
    assert history_gram.epochs == history_data.epochs == list(range(1, settings["epochs"] + 1))
    assert [r.lr for r in history_gram.records] == [r.lr for r in history_data.records]
    assert history_gram.initial_params == history_data.initial_params
    if dtype == "float64":
        # the module docstring's trajectory bound E·γ_{n+p}·amp², relative; the parameters to it relative to
        # their largest (a normwise difference), through the same accumulation
        tol = f64_trajectory_tol(history_data, data.X, data.y)
        assert rel(history_data.losses, history_gram.losses) <= tol
        for a, b in zip(history_data.records, history_gram.records):
            np.testing.assert_allclose(flat(b.params), flat(a.params), rtol=tol, atol=tol * np.abs(flat(a.params)).max())
        np.testing.assert_allclose(flat(history_gram.final_params), flat(history_data.final_params), rtol=tol,
                                   atol=tol * np.abs(flat(history_data.final_params)).max())
        if "val" in options:
            val = options["val"]
            val_tol = len(history_data.records) * gamma(len(val.X) + 1 + 1 + 2) * max(
                amplification(r.params, val.X, val.y) for r in history_data.records) ** 2 + tol
            assert rel(history_data.val_losses, history_gram.val_losses) <= val_tol
        return
    if options.get("standardize"):
        # well conditioned (standardised: |A||θ̃| is a few times |r| at most, amp ≲ 3): the data loop's float32 MSE
        # of n rows, residuals of d + 2 terms, is within about γ_{n+d+2}·amp² (float32) of exact; the
        # parameters' float32 rounding hardly moves the loss; ×10 for amp² and the parameters' share
        tol = 10 * gamma(data.n_samples + data.n_features + 2, U32)
        assert rel(history_data.losses, history_gram.losses) <= tol
        if "val" in options:
            assert rel(history_data.val_losses, history_gram.val_losses) <= tol
        return
    # The data loop's float32 evaluation bound (loss_and_floor's third figure) plus 4 float32 ulps of
    # every parameter (first order: k ulps move the loss by k·floor; the two runs' parameters differ
    # by the rounding of their float32 updates, which a stable step does not magnify).
    for a, b in zip(history_data.records, history_gram.records):
        exact, floor, evaluation = loss_and_floor(a.params, data.X, data.y, options.get("weights"))
        assert abs(b.loss - a.loss) <= evaluation + 4 * floor, (a.epoch, a.loss, b.loss, floor)
        assert abs(b.loss - exact) <= evaluation + 4 * floor  # the loss at the data loop's parameters
        if "val" in options:
            val_exact, val_floor, val_evaluation = loss_and_floor(a.params, VAL.X, VAL.y)
            assert abs(b.val_loss - a.val_loss) <= val_evaluation + 4 * val_floor
        # loose: a few float32 ulps (6e-8 relative each) of the parameters, far inside 1e-4 / 1e-6
        np.testing.assert_allclose(flat(b.params), flat(a.params), rtol=1e-4, atol=1e-6)


def test_the_tutorial_run_stays_within_1e6_of_the_data_loop_where_the_float32_floor_allows():
    """Epoch by epoch on the tutorial's 50 epochs: the differences are the float32 floor's size."""
    history_data, history_gram = run_both(TUTORIAL, TrainConfig())
    differences = np.abs(np.array(history_gram.losses) - history_data.losses) / history_data.losses
    figures = [loss_and_floor(r.params, TUTORIAL.X, TUTORIAL.y) for r in history_data.records]
    bounds = np.array([(evaluation + 4 * floor) / loss for loss, floor, evaluation in figures])
    # every epoch within its bound (float32 evaluation of the data loop + 4 ulps of the parameters, as above);
    # the typical epoch within the typical size of that error: roundings add like a random walk, √k·u rather
    # than the worst case k·u (Higham §2.8), so the bound over √n (measured: median 9e-8, 1/15 of it)
    assert np.median(differences) <= np.median(bounds) / np.sqrt(TUTORIAL.n_samples)
    assert (differences <= bounds).all()


def test_lbfgs_on_raw_tutorial_data_agrees_in_float64():
    """On raw x (condition number 3,545) L-BFGS's line search turns float32 rounding into percent-size
    differences at the epoch it turns to the intercept; float64 runs agree to rounding."""
    history_data, history_gram = run_both(TUTORIAL, TrainConfig(epochs=20, optimizer="lbfgs", dtype="float64"))
    assert rel(history_data.losses, history_gram.losses) <= f64_trajectory_tol(history_data, TUTORIAL.X, TUTORIAL.y)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_R_factor_merged_from_chunks_gives_the_same_trajectory_as_one_chunk(dtype):
    X, y = TUTORIAL.X.double(), TUTORIAL.y.double()
    parts = [QRAccumulator(1, 1).update(X[a:b], y[a:b]) for a, b in ((0, 7), (7, 20), (20, 33), (33, 50))]
    merged = parts[3].merge(parts[1]).merge(parts[0].merge(parts[2]))  # any order
    config = TrainConfig(epochs=1000, dtype=dtype)
    one = train_gram(build_model(), objective(X, y), config)
    many = train_gram(build_model(), GramObjective.from_accumulator(merged), config)
    # Two R factors of the same A (chunked and merged vs one block): the loss at the same θ differs by at most
    # γ_{n+p}·amp² relative, and E epochs carry at most E such differences (module docstring); in float32 the
    # parameters are rounded to float32 on top, a few ulps (4·floor, as above) of the loss
    tol = f64_trajectory_tol(one, X, y)
    if dtype == "float32":
        tol += max(4 * floor / loss + evaluation / loss for loss, floor, evaluation in
                   (loss_and_floor(r.params, X, y) for r in one.records[::50]))
    assert rel(one.losses, many.losses) <= tol


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_stops_at_the_same_epoch_with_the_same_message(dtype):
    history_data, history_gram = run_both(TUTORIAL, TrainConfig(lr=0.01, dtype=dtype))
    assert history_gram.status == history_data.status == "diverged"
    assert history_gram.message == history_data.message
    assert "over 1e+06 times its first value" in history_gram.message
    assert history_gram.epochs == history_data.epochs
    # loose: diverging parameters, in float32 a few ulps (6e-8 each) apart, in float64 far closer
    np.testing.assert_allclose(flat(history_gram.final_params), flat(history_data.final_params), rtol=1e-5)
    assert history_gram.final_params == history_gram.records[-1].params  # the same object's values


def test_a_loss_beyond_float32s_range_is_inf_as_in_the_data_loop():
    X = TUTORIAL.X.double() * 1e19  # the first loss is about 1e39: finite in float64, inf in float32
    history_data = train(build_model(), X, TUTORIAL.y, TrainConfig(epochs=3))
    history_gram = train_gram(build_model(), objective(X, TUTORIAL.y), TrainConfig(epochs=3))
    assert history_gram.status == history_data.status == "diverged"
    assert history_gram.message == history_data.message == (
        "the loss became inf at epoch 1; training stopped and kept the parameters of initialisation")
    assert history_gram.final_params == history_gram.initial_params


def test_the_stopping_rule_stops_at_the_same_epoch_and_restores_its_parameters():
    config = TrainConfig(epochs=3000, tol=1e-4, patience=3, dtype="float64")
    history_data, history_gram = run_both(TUTORIAL, config)
    assert history_gram.status == history_data.status == "converged"
    assert history_gram.message == history_data.message
    assert history_gram.epochs == history_data.epochs
    assert history_gram.final_params == history_gram.records[-1].params


def test_callbacks_see_the_same_sequence():
    class Log(Callback):
        def __init__(self):
            self.events = []

        def on_train_begin(self, model, config, history):
            self.events.append(("begin", history.initial_params))

        def on_epoch_end(self, record):
            self.events.append(("epoch", record.epoch))

        def on_train_end(self, history):
            self.events.append(("end", history.status))

    logs = Log(), Log()
    train(build_model(), TUTORIAL.X, TUTORIAL.y, TrainConfig(epochs=5), [logs[0]])
    train_gram(build_model(), objective(TUTORIAL.X, TUTORIAL.y), TrainConfig(epochs=5), [logs[1]])
    assert logs[0].events == logs[1].events


def test_an_optimizer_continues_with_its_state():
    obj = objective(TUTORIAL.X, TUTORIAL.y)
    whole = train_gram(build_model(), obj, TrainConfig(epochs=40, lr=1e-4, momentum=0.9, dtype="float64"))
    model = build_model().double()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)  # its momentum carries over
    half = TrainConfig(epochs=20, lr=1e-4, momentum=0.9, dtype="float64")
    first = train_gram(model, obj, half, optimizer=optimizer)
    second = train_gram(model, obj, half, optimizer=optimizer)
    assert whole.losses == first.losses + second.losses  # bit-identical: the same steps on the same R, same kernels


# --- the objective itself, against NumPy and autograd ---------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_gradient_are_the_mse_and_its_autograd_gradient(weighted):
    data = MULTI
    w = torch.rand(data.n_samples, generator=torch.Generator().manual_seed(1), dtype=torch.float64) if weighted else None
    obj = objective(data.X, data.y, w)
    g = torch.Generator().manual_seed(2)
    W = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    reference = mse(data.X @ W.T + b, data.y, w)  # nn.MSELoss without weights
    reference.backward()
    # Both from the same float64 data: the R route and the row sums each within γ_{n+p}·amp² of the exact MSE
    # (module docstring), ×10; each gradient entry 2/(Σw·m)·(Aᵀ r)_j within γ_{n+p}·2/(Σw·m)·(|A|ᵀ(|A||θ̃|))_j
    # (a dot product of n terms whose factors carry that error), ×10
    params = {"linear.weight": W.detach().numpy(), "linear.bias": b.detach().numpy()}
    n, p = data.n_samples, 4 + 1 + 3
    loss_tol = 10 * gamma(n + p) * amplification(params, data.X, data.y) ** 2
    assert obj.loss(W, b).item() == pytest.approx(reference.item(), rel=loss_tol, abs=0)
    loss, grad_W, grad_b = obj.loss_and_grad(W, b)
    assert loss == pytest.approx(reference.item(), rel=loss_tol, abs=0)
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    sw = np.ones(n) if w is None else w.numpy()
    magnitude = sw[:, None] * (np.abs(X) @ np.abs(params["linear.weight"].T) + np.abs(params["linear.bias"]) + np.abs(Y))
    grad_tol = 10 * gamma(n + p) * 2 / (sw.sum() * 3) * np.vstack([np.abs(X).T @ magnitude, magnitude.sum(0)])  # (d+1, m)
    assert (np.abs(grad_W.numpy() - W.grad.numpy()) <= grad_tol[:4].T).all()
    assert (np.abs(grad_b.numpy() - b.grad.numpy()) <= grad_tol[4]).all()
    assert (obj.n_samples, obj.n_features, obj.n_targets) == (600, 4, 3)
    assert obj.sum_weights == pytest.approx(w.sum().item() if weighted else 600)


def test_the_loss_stays_accurate_when_the_fit_is_good():
    """Through R, not θᵀAᵀAθ - 2θᵀAᵀy + yᵀy: no cancellation when the residuals are tiny."""
    X = torch.linspace(0, 1, 1000, dtype=torch.float64)[:, None] * 1e4
    y = 3 * X + 1e6 + 1e-6 * torch.sin(torch.arange(1000, dtype=torch.float64))[:, None]
    obj = objective(X, y)
    W, b = torch.tensor([[3.0]], dtype=torch.float64), torch.tensor([1e6], dtype=torch.float64)
    exact = np.mean((X.numpy() * 3 + 1e6 - y.numpy()) ** 2)  # exact: the same roundings as y's, then Sterbenz
    # R of the centred columns [x - x̄, y - ȳ] is backward stable (|ΔÃ| ≤ γ_{c·n·p}·‖Ã‖, Householder), so the
    # residual is off by at most γ_{n·p}·‖Ã‖‖θ̃‖ (c taken as 1), i.e. relative 2·γ_{n·p}·‖Ã‖‖θ̃‖/‖r‖ in the loss
    # (about 3e-2 here, against the expansion's u·‖y‖²/‖r‖² ≈ 1e8); abs=0: the loss is 5e-13
    Xc, yc = X.numpy() - X.numpy().mean(), y.numpy() - y.numpy().mean()
    r = X.numpy() * 3 + 1e6 - y.numpy()
    tol = 2 * gamma(1000 * 3) * np.linalg.norm(np.hstack([Xc, yc])) * np.hypot(3.0, 1.0) / np.linalg.norm(r)
    assert obj.loss(W, b).item() == pytest.approx(exact, rel=tol, abs=0)


def mean_tol(a, w=None):
    """Two computations of a column's (weighted) mean, each a sum of n terms: γ_{n+1}·Σ|w x|/|Σ w x| relative
    (the sum's condition number), ×2 for both sides, ×10."""
    a = np.asarray(a, dtype=np.float64)
    w = np.ones(len(a)) if w is None else np.asarray(w, dtype=np.float64)
    return 20 * gamma(len(a) + 1) * (w @ np.abs(a)) / np.maximum(np.abs(w @ a), np.finfo(float).tiny)


def scale_tol(a):
    """Two computations of a column's spread, each from its centred squares (no cancellation: centring by a
    rounded mean moves the sum of squares only to second order, and the R route shifts its blocks exactly):
    a sum of n positive terms, γ_{n+3}, then a square root; ×2 for both sides, ×10."""
    return 20 * gamma(len(a) + 3)


def test_standardizer_from_R_is_standardizer_fit():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(300, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1e-3, 50.0]) + torch.tensor([1e3, -2.0, 0.0])
    X[:, 1] = 4.25  # a constant column: scale 1
    y = torch.randn(300, 2, generator=g, dtype=torch.float64) * 7 + 100
    chunks = [QRAccumulator(3, 2).update(X[a:a + 100], y[a:a + 100]) for a in (0, 100, 200)]
    obj = GramObjective.from_accumulator(chunks[0].merge(chunks[1]).merge(chunks[2]))
    got, want = obj.standardizer(), Standardizer.fit(X, y)
    for name, tol in (("x_mean", mean_tol(X)), ("x_scale", scale_tol(X)), ("y_mean", mean_tol(y)),
                      ("y_scale", scale_tol(y))):
        assert (np.abs(getattr(got, name) - getattr(want, name)) <= tol * np.abs(getattr(want, name))).all(), name
    assert got.x_scale[1] == 1.0
    unscaled_y = obj.standardizer(scale_y=False)
    np.testing.assert_array_equal(unscaled_y.y_mean, [0, 0])
    np.testing.assert_array_equal(unscaled_y.y_scale, [1, 1])


def test_weighted_standardizer_uses_the_weighted_mean_and_spread():
    X, y, w = TUTORIAL.X.double(), TUTORIAL.y.double(), tutorial_weights()
    got = objective(X, y, w).standardizer()
    for a, mean, scale in ((X.numpy(), got.x_mean, got.x_scale), (y.numpy(), got.y_mean, got.y_scale)):
        m = np.average(a, axis=0, weights=w.numpy())
        assert (np.abs(mean - m) <= mean_tol(a, w.numpy()) * np.abs(m)).all()  # sums of n terms, as above
        np.testing.assert_allclose(scale, np.sqrt(np.average((a - m) ** 2, axis=0, weights=w.numpy())),
                                   rtol=scale_tol(a), atol=0)


@pytest.mark.parametrize("weighted", [False, True])
def test_standardized_objective_is_the_objective_of_the_standardised_data(weighted):
    data = MULTI
    X = data.X * torch.tensor([1.0, 10.0, 0.1, 3.0], dtype=torch.float64) + 20
    w = tutorial_weights().repeat(12) if weighted else None
    own = Standardizer.fit(X, data.y)
    foreign = Standardizer(own.x_mean + 0.5, own.x_scale * 2, own.y_mean - 1, own.y_scale * 3)  # e.g. another split's
    g = torch.Generator().manual_seed(3)
    W, b = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
    for scaler in (own, foreign):
        direct = objective(scaler.transform_X(X), scaler.transform_y(data.y), w)
        derived = objective(X, data.y, w).standardized(scaler)
        assert derived.scaler is scaler
        loss_a, gW_a, gb_a = direct.loss_and_grad(W, b)
        loss_b, gW_b, gb_b = derived.loss_and_grad(W, b)
        # two R factors of the same standardised A (one from the transformed rows, one re-triangularised from the
        # raw R): the loss within γ_{n+p}·amp² each (module docstring), ×10; the gradient 2/(Σw·m)·R_θᵀU to the
        # same relative error of its scale ‖R‖·‖U‖ (atol), since R's error is relative to ‖A‖
        Xs, ys = scaler.transform_X(X), scaler.transform_y(data.y)
        params = {"linear.weight": W.numpy(), "linear.bias": b.numpy()}
        tol = 10 * gamma(data.n_samples + 4 + 1 + 3) * amplification(params, Xs, ys) ** 2
        assert loss_b == pytest.approx(loss_a, rel=tol, abs=0)
        scale = 2 / (direct.sum_weights * 3) * np.linalg.norm(direct.R) * np.sqrt(direct.sum_weights * 3 * loss_a)
        np.testing.assert_allclose(gW_b.numpy(), gW_a.numpy(), rtol=0, atol=tol * scale)
        np.testing.assert_allclose(gb_b.numpy(), gb_a.numpy(), rtol=0, atol=tol * scale)


def test_an_already_standardised_objective_is_used_as_it_is():
    obj = objective(TUTORIAL.X, TUTORIAL.y)
    scaler = obj.standardizer()
    config = TrainConfig(epochs=20, lr=0.1, dtype="float64")
    a = train_gram(build_model(), obj, config, scaler=scaler)
    b = train_gram(build_model(), obj.standardized(scaler), config, scaler=scaler)
    assert a.losses == b.losses  # bit-identical: train_gram standardises obj with the same scaler itself, same code
    with pytest.raises(ValueError, match="another scaler"):
        train_gram(build_model(), obj.standardized(scaler), config, scaler=Standardizer.fit(TRAIN.X[:, :1], TRAIN.y[:, :1]))
    with pytest.raises(ValueError, match="already standardised"):
        obj.standardized(scaler).standardized(scaler)


def test_bad_accumulators_and_models_are_refused():
    no_ones = GramObjective.from_accumulator(QRAccumulator(1, 1, fit_intercept=False).update(TUTORIAL.X, TUTORIAL.y))
    with pytest.raises(ValueError, match="the same fit_intercept"):  # a model with a bias, R without the ones
        train_gram(build_model(1, 1), no_ones, TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="no rows"):
        GramObjective.from_accumulator(QRAccumulator(1, 1))
    with pytest.raises(ValueError, match="weights are 0"):
        GramObjective.from_accumulator(QRAccumulator(1, 1).update(TUTORIAL.X, TUTORIAL.y, np.zeros(50)))
    with pytest.raises(ValueError, match="maps 2 features"):
        train_gram(build_model(2, 1), objective(TUTORIAL.X, TUTORIAL.y), TrainConfig(epochs=1))
    with pytest.raises(ValueError, match=r"weight must have shape \(1, 1\)"):
        objective(TUTORIAL.X, TUTORIAL.y).loss(torch.zeros(2, 1), torch.zeros(1))


def test_fewer_rows_than_columns():
    X, y = TUTORIAL.X[:1].double(), TUTORIAL.y[:1].double()
    obj = objective(X, y)
    W, b = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64)
    # one row: R is the row itself (up to sign), the loss one residual of 3 terms squared each way: γ_3 per side
    # relative to (|x|·0.5 + 2 + |y|)²/r², ×10
    r, magnitude = (X * 0.5 + 2 - y).item(), (X.abs() * 0.5 + 2 + y.abs()).item()
    assert obj.loss(W, b).item() == pytest.approx(r ** 2, rel=20 * gamma(3) * (magnitude / r) ** 2, abs=0)
    assert obj.standardizer().x_scale.tolist() == [1.0]


# --- choosing the engine -----------------------------------------------------------------------

@pytest.mark.parametrize("config, kwargs, engine, reason", [
    (TrainConfig(), dict(tutorial=True), "data", "tutorial"),
    (TrainConfig(), {}, "gram", "full-batch MSE"),
    (TrainConfig(optimizer="lbfgs"), {}, "gram", "full-batch MSE"),
    (TrainConfig(batch_size=32), {}, "data", "mini-batches of 32 rows"),
    (TrainConfig(batch_size=32), dict(n_samples=1000), "data", "mini-batches"),
    (TrainConfig(batch_size=1000), dict(n_samples=1000), "gram", "full-batch"),
    (TrainConfig(batch_size=32), dict(requested="data"), "data", "--engine data"),
    (TrainConfig(), dict(requested="data"), "data", "--engine data"),
    (TrainConfig(), dict(requested="gram", tutorial=True), "gram", "--engine gram"),
])
def test_select_engine(config, kwargs, engine, reason):
    chosen, why = select_engine(config, **kwargs)
    assert chosen == engine and reason in why


def test_select_engine_refuses_what_the_gram_engine_cannot_do():
    with pytest.raises(ConfigError, match="mini-batches of 32 rows need the rows at every step; drop batch_size"):
        select_engine(TrainConfig(batch_size=32), requested="gram", n_samples=1000)
    with pytest.raises(ConfigError, match="unknown engine 'fast'; choose one of auto, gram, data"):
        select_engine(TrainConfig(), requested="fast")

    class Huber(TrainConfig):
        loss = "huber"

    assert select_engine(Huber())[0] == "data"
    with pytest.raises(ConfigError, match="mean squared error only, not the huber loss"):
        select_engine(Huber(), requested="gram")


def test_the_objective_has_a_repr():
    assert repr(objective(TUTORIAL.X, TUTORIAL.y, tutorial_weights())) == (
        "GramObjective(n_samples=50, n_features=1, n_targets=1, weighted)")


def test_train_gram_refuses_mini_batches():
    with pytest.raises(ConfigError, match="mini-batches of 10 rows"):
        train_gram(build_model(), objective(TUTORIAL.X, TUTORIAL.y), TrainConfig(batch_size=10))
    history = train_gram(build_model(), objective(TUTORIAL.X, TUTORIAL.y), TrainConfig(epochs=2, batch_size=50))
    assert len(history) == 2  # a batch of every row is the full batch


def test_standardised_targets_of_tiny_spread_do_not_look_diverging():
    """The growth rule compares losses in one unit: standardised targets with std 3e-5 converge."""
    X, y = TUTORIAL.X.double(), TUTORIAL.y.double() * 1e-6
    scaler = Standardizer.fit(X, y)
    config = TrainConfig(epochs=50, lr=0.1, dtype="float64")
    history_data = train(build_model(), scaler.transform_X(X), scaler.transform_y(y), config, scaler=scaler)
    history_gram = train_gram(build_model(), objective(X, y), config, scaler=scaler)
    assert history_gram.status == history_data.status == "completed"
    Xs, ys = scaler.transform_X(X), scaler.transform_y(y)  # the data loop's data; the engine's objective is raw
    assert rel(history_data.losses, history_gram.losses) <= f64_trajectory_tol(history_data, Xs, ys)
