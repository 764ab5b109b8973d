import math

import numpy as np
import pytest
import torch

from bounds import U32, gamma
from torchlinreg import ConfigError, TrainConfig, build_model, train, tutorial_data
from torchlinreg.callbacks import Callback


def mse_gradient(w, b, X, y):
    """d/dw and d/db of mean((X w + b - y)^2), in float64 NumPy."""
    X, y = X.double().numpy(), y.double().numpy()
    r = X @ w + b - y  # (n, 1)
    n = X.shape[0]
    return 2.0 / n * (X.T @ r), 2.0 / n * r.sum(axis=0)


def float32_residual_error(w, b, X, y):
    """Bound on the float32 residuals X w + b − y against exact ones, and the residuals (float64): each rounds
    ≤ d + 2 times, |Δr_i| ≤ γ_{d+2}·(|x_i||w| + |b| + |y_i|) (Higham 3.5; fused multiply-adds round less)."""
    X, y = X.double().numpy(), y.double().numpy()
    r = X @ w + b - y
    return r, gamma(X.shape[1] + 2, U32) * (np.abs(X) @ np.abs(w) + np.abs(b) + np.abs(y))


def float32_step_error(w, b, X, y, lr, steps, mu=0.0, wd=0.0):
    """First-order bounds on |float32 run − exact run| after ``steps`` SGD steps (heavy ball ``mu``, weight decay
    ``wd``), componentwise, for w (d, 1) and b (1,). Per step, in float32 (u = U32):
    gradient (2/n)·[X, 1]ᵀ r, a sum of n terms: |Δg| ≤ (2/n)·(γ_{n+3}·|A|ᵀ|r| + |A|ᵀ|Δr|), Δr including the
    carried parameter error; g + wd·p: + wd·|Δp| + γ_2·(|g| + wd|p|); v = mu·v + g: mu·|Δv| + |Δg| + γ_2·(mu|v| + |g|);
    p − lr·v: |Δp| + lr·|Δv| + γ_2·(|p'| + lr|v|)."""
    Xn = X.double().numpy()
    A = np.hstack([Xn, np.ones((len(Xn), 1))])
    n = len(A)
    p, ep = np.concatenate([w[:, 0], b]), np.zeros(len(w) + 1)
    v = ev = None
    for _ in range(steps):
        r, dr = float32_residual_error(p[:-1, None], p[-1:], X, y)
        r, dr = r[:, 0], dr[:, 0] + np.abs(A) @ ep
        g = 2 / n * A.T @ r
        eg = 2 / n * (gamma(n + 3, U32) * np.abs(A).T @ np.abs(r) + np.abs(A).T @ dr)
        if wd:
            eg = eg + wd * ep + gamma(2, U32) * (np.abs(g) + wd * np.abs(p))
            g = g + wd * p
        if v is None:
            v, ev = g, eg
        else:
            ev = mu * ev + eg + gamma(2, U32) * (mu * np.abs(v) + np.abs(g))
            v = mu * v + g
        p = p - lr * v
        ep = ep + lr * ev + gamma(2, U32) * (np.abs(p) + lr * np.abs(v))
    return ep[:-1, None], ep[-1:]


def params64(model):
    return model.linear.weight.detach().double().numpy().T.copy(), model.linear.bias.detach().double().numpy().copy()


def test_one_step_is_the_hand_computed_gradient_step():
    data = tutorial_data()
    model = build_model()
    w0, b0 = params64(model)
    gw, gb = mse_gradient(w0, b0, data.X, data.y)
    train(model, data.X, data.y, TrainConfig(epochs=1, lr=0.001))
    w1, b1 = params64(model)
    # the float32 step against the float64 one (whose own error, ~U64, is negligible): within the first-order
    # float32 bound (float32_step_error), ×2 for slack; the bound is 3.5e-6 relative in the weight (the rtol
    # of 1e-6 once used was below it)
    ew, eb = float32_step_error(w0, b0, data.X, data.y, 0.001, 1)
    np.testing.assert_allclose(w1, w0 - 0.001 * gw, rtol=0, atol=2 * ew.max())
    np.testing.assert_allclose(b1, b0 - 0.001 * gb, rtol=0, atol=2 * eb.max())


def test_momentum_and_weight_decay_steps_follow_the_heavy_ball_rule():
    data = tutorial_data()
    model = build_model()
    lr, mu, wd = 1e-4, 0.5, 0.1
    w, b = params64(model)
    vw = vb = None
    for _ in range(2):  # v = mu*v + (g + wd*p); p -= lr*v
        gw, gb = mse_gradient(w, b, data.X, data.y)
        gw, gb = gw + wd * w, gb + wd * b
        vw, vb = (gw, gb) if vw is None else (mu * vw + gw, mu * vb + gb)
        w, b = w - lr * vw, b - lr * vb
    train(model, data.X, data.y, TrainConfig(epochs=2, lr=lr, momentum=mu, weight_decay=wd))
    got_w, got_b = params64(model)
    # two float32 heavy-ball steps against float64: the first-order float32 bound (float32_step_error), ×2 slack
    ew, eb = float32_step_error(*params64(build_model()), data.X, data.y, lr, 2, mu=mu, wd=wd)
    np.testing.assert_allclose(got_w, w, rtol=0, atol=2 * ew.max())
    np.testing.assert_allclose(got_b, b, rtol=0, atol=2 * eb.max())


def test_history_records_loss_at_the_recorded_parameters():
    data = tutorial_data()
    model = build_model()
    history = train(model, data.X, data.y, TrainConfig(epochs=7))
    assert history.epochs == list(range(1, 8))
    assert history.status == "completed" and history.message == ""
    for rec in history.records:
        w = np.array(rec.params["linear.weight"]).T
        b = np.array(rec.params["linear.bias"])
        loss = np.mean((data.X.double().numpy() @ w + b - data.y.double().numpy()) ** 2)
        # the float32 loss at the same (float32) parameters: n squares summed and divided,
        # |ΔL| ≤ (γ_{n+2}·Σr² + Σ 2|r||Δr|)/n, ×2 slack (float64's own error is negligible)
        r, dr = float32_residual_error(w, b, data.X, data.y)
        n = r.size
        bound = (gamma(n + 2, U32) * np.sum(r**2) + np.sum(2 * np.abs(r) * dr)) / n
        assert rec.loss == pytest.approx(loss, rel=0, abs=2 * bound)
    assert history.final_params == {n: p.detach().tolist() for n, p in model.named_parameters()}
    assert history.initial_params == history.records[0].params
    assert history.final_params != history.records[-1].params  # final = after the last step


def test_history_round_trips_through_json():
    import json

    from torchlinreg import History

    data = tutorial_data()
    history = train(build_model(), data.X, data.y, TrainConfig(epochs=3))
    again = History.from_dict(json.loads(history.to_json()))
    assert again == history


def test_callbacks_see_every_epoch():
    seen = []

    class Spy(Callback):
        def on_train_begin(self, model, config, history):
            seen.append("begin")

        def on_epoch_end(self, record):
            seen.append(record.epoch)

        def on_train_end(self, history):
            seen.append("end")

    data = tutorial_data()
    train(build_model(), data.X, data.y, TrainConfig(epochs=3), callbacks=[Spy()])
    assert seen == ["begin", 1, 2, 3, "end"]


def test_divergence_stops_and_keeps_last_finite_parameters():
    data = tutorial_data()
    model = build_model()
    history = train(model, data.X, data.y, TrainConfig(epochs=500, lr=0.01))
    assert history.diverged
    assert 1 < len(history) < 500
    assert all(math.isfinite(v) for v in history.losses)
    assert f"epoch {len(history) + 1}" in history.message
    last = history.records[-1].params
    assert history.final_params == last
    assert model.linear.weight.tolist() == last["linear.weight"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_many_features_and_targets_reduce_the_loss():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 3, generator=g)
    y = X @ torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]]) + torch.tensor([0.5, -1.0])
    model = build_model(3, 2, seed=0)
    history = train(model, X, y, TrainConfig(epochs=300, lr=0.1))
    assert history.losses[-1] < 1e-3 * history.losses[0]  # convergence, not rounding: float32 error ≪ 1e-3
    assert np.array(history.final_params["linear.weight"]).shape == (2, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"epochs": -3}, "epochs must be a positive integer"),
    ({"epochs": 2.5}, "epochs must be a positive integer"),
    ({"lr": 0.0}, "learning rate must be above 0"),
    ({"lr": -0.1}, "learning rate must be above 0"),
    ({"lr": float("nan")}, "learning rate must be a finite number"),
    ({"lr": float("inf")}, "learning rate must be a finite number"),
    ({"momentum": -0.1}, "momentum must not be negative"),
    ({"momentum": 1.0}, "momentum must be below 1"),
    ({"nesterov": True}, "Nesterov momentum needs"),
    ({"weight_decay": -1.0}, "weight decay must not be negative"),
    ({"seed": -1}, r"seed must be an integer from 0 to 2\*\*63-1"),
    ({"seed": 2**64}, r"seed must be an integer from 0 to 2\*\*63-1"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)
