"""The one-pass engine against the data loop (``training.train``) and NumPy, computed here.

float64 runs must agree with the data loop to 1e-10 relative at every epoch. float32 runs
agree to 1e-6 relative plus what a few float32 roundings of the parameters move the loss
by (on the tutorial's raw x, one unit in the last place of the weight moves the loss by up
to 1.5e-6 of itself, so two correct float32 runs can differ by that much; the data loop's
float32 run differs from its own float64 run by more).
"""

import numpy as np
import pytest
import torch

from torchlinreg import ConfigError, QRAccumulator, Standardizer, TrainConfig, build_model, train, tutorial_data
from torchlinreg.callbacks import Callback
from torchlinreg.data import make_regression
from torchlinreg.gram import GramObjective, select_engine, train_gram
from torchlinreg.training import mse

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


def loss_and_floor(params, X, y, w=None) -> tuple[float, float]:
    """NumPy: the MSE at ``params`` and the first-order change one float32 ulp of every parameter makes."""
    X, y = X.double().numpy(), y.double().numpy()
    w = np.ones(len(X)) if w is None else np.asarray(w, dtype=np.float64)
    W, b = np.array(params["linear.weight"]), np.array(params["linear.bias"])
    r = X @ W.T + b - y  # (n, m)
    scale = 2 / (w.sum() * y.shape[1])
    g_W, g_b = scale * (w[:, None] * r).T @ X, scale * (w[:, None] * r).sum(0)
    ulp = lambda a: np.spacing(np.abs(a).astype(np.float32)).astype(np.float64)  # noqa: E731
    floor = np.sum(np.abs(g_W) * ulp(W)) + np.sum(np.abs(g_b) * ulp(b))
    return float((w[:, None] * r ** 2).sum() / (w.sum() * y.shape[1])), float(floor)


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
        assert rel(history_data.losses, history_gram.losses) <= 1e-10
        for a, b in zip(history_data.records, history_gram.records):
            np.testing.assert_allclose(flat(b.params), flat(a.params), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(flat(history_gram.final_params), flat(history_data.final_params), rtol=1e-9)
        if "val" in options:
            assert rel(history_data.val_losses, history_gram.val_losses) <= 1e-10
        return
    if options.get("standardize"):  # well conditioned: the float32 rounding of the parameters hardly moves the loss
        assert rel(history_data.losses, history_gram.losses) <= 1e-6
        if "val" in options:
            assert rel(history_data.val_losses, history_gram.val_losses) <= 1e-6
        return
    for a, b in zip(history_data.records, history_gram.records):
        exact, floor = loss_and_floor(a.params, data.X, data.y, options.get("weights"))
        assert abs(b.loss - a.loss) <= 1e-6 * a.loss + 4 * floor, (a.epoch, a.loss, b.loss, floor)
        assert abs(b.loss - exact) <= 1e-6 * exact + 4 * floor  # the loss at the data loop's parameters
        if "val" in options:
            val_exact, val_floor = loss_and_floor(a.params, VAL.X, VAL.y)
            assert abs(b.val_loss - a.val_loss) <= 1e-6 * a.val_loss + 4 * val_floor
        np.testing.assert_allclose(flat(b.params), flat(a.params), rtol=1e-4, atol=1e-6)


def test_the_tutorial_run_stays_within_1e6_of_the_data_loop_where_the_float32_floor_allows():
    """Epoch by epoch on the tutorial's 50 epochs: the differences are the float32 floor's size."""
    history_data, history_gram = run_both(TUTORIAL, TrainConfig())
    differences = np.abs(np.array(history_gram.losses) - history_data.losses) / history_data.losses
    assert np.median(differences) <= 1e-7 and differences.max() <= 2e-6


def test_lbfgs_on_raw_tutorial_data_agrees_in_float64():
    """On raw x (condition number 3,545) L-BFGS's line search turns float32 rounding into percent-size
    differences at the epoch it turns to the intercept; float64 runs agree to rounding."""
    history_data, history_gram = run_both(TUTORIAL, TrainConfig(epochs=20, optimizer="lbfgs", dtype="float64"))
    assert rel(history_data.losses, history_gram.losses) <= 1e-10


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_R_factor_merged_from_chunks_gives_the_same_trajectory_as_one_chunk(dtype):
    X, y = TUTORIAL.X.double(), TUTORIAL.y.double()
    parts = [QRAccumulator(1, 1).update(X[a:b], y[a:b]) for a, b in ((0, 7), (7, 20), (20, 33), (33, 50))]
    merged = parts[3].merge(parts[1]).merge(parts[0].merge(parts[2]))  # any order
    config = TrainConfig(epochs=1000, dtype=dtype)
    one = train_gram(build_model(), objective(X, y), config)
    many = train_gram(build_model(), GramObjective.from_accumulator(merged), config)
    assert rel(one.losses, many.losses) <= (1e-12 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_stops_at_the_same_epoch_with_the_same_message(dtype):
    history_data, history_gram = run_both(TUTORIAL, TrainConfig(lr=0.01, dtype=dtype))
    assert history_gram.status == history_data.status == "diverged"
    assert history_gram.message == history_data.message
    assert "over 1e+06 times its first value" in history_gram.message
    assert history_gram.epochs == history_data.epochs
    np.testing.assert_allclose(flat(history_gram.final_params), flat(history_data.final_params), rtol=1e-5)
    assert history_gram.final_params == history_gram.records[-1].params


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
    assert rel(whole.losses, first.losses + second.losses) <= 1e-12


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
    assert obj.loss(W, b).item() == pytest.approx(reference.item(), rel=1e-13)
    loss, grad_W, grad_b = obj.loss_and_grad(W, b)
    assert loss == pytest.approx(reference.item(), rel=1e-13)
    np.testing.assert_allclose(grad_W.numpy(), W.grad.numpy(), rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(grad_b.numpy(), b.grad.numpy(), rtol=1e-11, atol=1e-13)
    assert (obj.n_samples, obj.n_features, obj.n_targets) == (600, 4, 3)
    assert obj.sum_weights == pytest.approx(w.sum().item() if weighted else 600)


def test_the_loss_stays_accurate_when_the_fit_is_good():
    """Through R, not θᵀAᵀAθ - 2θᵀAᵀy + yᵀy: no cancellation when the residuals are tiny."""
    X = torch.linspace(0, 1, 1000, dtype=torch.float64)[:, None] * 1e4
    y = 3 * X + 1e6 + 1e-6 * torch.sin(torch.arange(1000, dtype=torch.float64))[:, None]
    obj = objective(X, y)
    W, b = torch.tensor([[3.0]], dtype=torch.float64), torch.tensor([1e6], dtype=torch.float64)
    exact = np.mean((X.numpy() * 3 + 1e6 - y.numpy()) ** 2)
    assert obj.loss(W, b).item() == pytest.approx(exact, rel=1e-6)


def test_standardizer_from_R_is_standardizer_fit():
    g = torch.Generator().manual_seed(7)
    X = torch.randn(300, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1e-3, 50.0]) + torch.tensor([1e3, -2.0, 0.0])
    X[:, 1] = 4.25  # a constant column: scale 1
    y = torch.randn(300, 2, generator=g, dtype=torch.float64) * 7 + 100
    chunks = [QRAccumulator(3, 2).update(X[a:a + 100], y[a:a + 100]) for a in (0, 100, 200)]
    obj = GramObjective.from_accumulator(chunks[0].merge(chunks[1]).merge(chunks[2]))
    got, want = obj.standardizer(), Standardizer.fit(X, y)
    for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=1e-12, err_msg=name)
    assert got.x_scale[1] == 1.0
    unscaled_y = obj.standardizer(scale_y=False)
    np.testing.assert_array_equal(unscaled_y.y_mean, [0, 0])
    np.testing.assert_array_equal(unscaled_y.y_scale, [1, 1])


def test_weighted_standardizer_uses_the_weighted_mean_and_spread():
    X, y, w = TUTORIAL.X.double(), TUTORIAL.y.double(), tutorial_weights()
    got = objective(X, y, w).standardizer()
    for a, mean, scale in ((X.numpy(), got.x_mean, got.x_scale), (y.numpy(), got.y_mean, got.y_scale)):
        m = np.average(a, axis=0, weights=w.numpy())
        np.testing.assert_allclose(mean, m, rtol=1e-12)
        np.testing.assert_allclose(scale, np.sqrt(np.average((a - m) ** 2, axis=0, weights=w.numpy())), rtol=1e-12)


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
        assert loss_b == pytest.approx(loss_a, rel=1e-12)
        np.testing.assert_allclose(gW_b.numpy(), gW_a.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(gb_b.numpy(), gb_a.numpy(), rtol=1e-10, atol=1e-12)


def test_an_already_standardised_objective_is_used_as_it_is():
    obj = objective(TUTORIAL.X, TUTORIAL.y)
    scaler = obj.standardizer()
    config = TrainConfig(epochs=20, lr=0.1, dtype="float64")
    a = train_gram(build_model(), obj, config, scaler=scaler)
    b = train_gram(build_model(), obj.standardized(scaler), config, scaler=scaler)
    assert a.losses == b.losses
    with pytest.raises(ValueError, match="another scaler"):
        train_gram(build_model(), obj.standardized(scaler), config, scaler=Standardizer.fit(TRAIN.X[:, :1], TRAIN.y[:, :1]))
    with pytest.raises(ValueError, match="already standardised"):
        obj.standardized(scaler).standardized(scaler)


def test_bad_accumulators_and_models_are_refused():
    with pytest.raises(ValueError, match="fit_intercept=True"):
        GramObjective.from_accumulator(QRAccumulator(1, 1, fit_intercept=False).update(TUTORIAL.X, TUTORIAL.y))
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
    assert obj.loss(W, b).item() == pytest.approx(((X * 0.5 + 2 - y) ** 2).mean().item(), rel=1e-14)
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
    with pytest.raises(ConfigError, match="mini-batches of 32 rows need the rows at every step; drop --batch-size"):
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
    assert rel(history_data.losses, history_gram.losses) <= 1e-10
