"""minibatch.py: the mini-batch loop of rows that are not one tensor, against training.train computed here."""

import numpy as np
import pytest
import torch

from torchlinreg import TrainConfig, make_regression, train
from torchlinreg.distributed import Dist
from torchlinreg.errors import ConfigError
from torchlinreg.gram import GramObjective
from torchlinreg.minibatch import local_batch_sizes, shard_steps, train_minibatches
from torchlinreg.model import build_model
from torchlinreg.scaling import Standardizer
from torchlinreg.solve import QRAccumulator

from bounds import gamma


@pytest.mark.parametrize("optimizer, schedule", [("sgd", "step"), ("adam", "cosine")])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_one_shard_takes_the_steps_of_the_tutorials_loop(optimizer, schedule, weighted):
    data = make_regression(503, 3, 2, noise=0.3, seed=6)
    X, y = data.X.double(), data.y.double()
    w = torch.from_numpy(np.random.default_rng(2).uniform(0.5, 2.0, len(X))) if weighted else None
    config = TrainConfig(epochs=6, lr=0.02, optimizer=optimizer, batch_size=64, schedule=schedule, step_size=2,
                         dtype="float64", seed=13)
    scaler = Standardizer.fit(X, y)
    Xt, yt = scaler.transform_X(X), scaler.transform_y(y)
    reference = build_model(3, 2, seed=config.seed)
    expected = train(reference, Xt, yt, config, scaler=scaler, sample_weight=w)  # the tutorial's loop, one tensor
    model = build_model(3, 2, seed=config.seed)
    objective = GramObjective.from_accumulator(QRAccumulator(3, 2).update(X, y, w))
    history = train_minibatches(model, objective, shard_steps(Xt, yt, w, len(X), 64, config.seed, Dist()), config,
                                scaler=scaler)
    # The same steps on the same batches, the loss computed two ways (R of all rows vs the rows' sum): one
    # evaluation within γ_{n+p}·amp² relative (amp = ‖|A||θ̃|‖/‖Aθ̃‖, on the raw rows: at least the standardised
    # one's), and a stable step does not magnify carried differences, so after S steps S·γ_{n+p}·amp²; the
    # parameters to it normwise (atol relative to the largest)
    A = np.hstack([X.numpy(), np.ones((len(X), 1)), y.numpy()])
    amp = 0.0
    for r in expected.records:
        W, b = np.array(r.params["linear.weight"]), np.array(r.params["linear.bias"])
        theta = np.vstack([W.T, b[None], -np.eye(2)])
        amp = max(amp, np.linalg.norm(np.abs(A) @ np.abs(theta)) / np.linalg.norm(A @ theta))
    steps = config.epochs * -(-len(X) // 64)
    tol = steps * gamma(len(X) + 3 + 1 + 2) * amp ** 2
    np.testing.assert_allclose(history.losses, expected.losses, rtol=tol, atol=0)
    weight = reference.linear.weight.detach().numpy()
    np.testing.assert_allclose(model.linear.weight.detach(), weight, rtol=tol, atol=tol * np.abs(weight).max())
    assert [r.lr for r in history.records] == [r.lr for r in expected.records]
    bias = np.asarray(expected.final_params["linear.bias"])
    np.testing.assert_allclose(history.final_params["linear.bias"], bias, rtol=tol, atol=tol * np.abs(weight).max())


def test_a_diverging_run_stops_with_the_last_finite_parameters():
    data = make_regression(200, 2, 1, seed=1)
    X, y = data.X.double() * 100, data.y.double()
    objective = GramObjective.from_accumulator(QRAccumulator(2, 1).update(X, y))
    config = TrainConfig(epochs=50, lr=1.0, batch_size=20, dtype="float64")
    history = train_minibatches(build_model(2, 1), objective, shard_steps(X, y, None, 200, 20, 0, Dist()), config)
    assert history.diverged and np.isfinite(history.final_params["linear.weight"]).all()


def test_each_process_gets_a_share_of_every_step():
    assert local_batch_sizes(10, 3) == [4, 3, 3] and sum(local_batch_sizes(1001, 4)) == 1001
    with pytest.raises(ConfigError, match="batch_size=1 is below the 2 processes"):
        local_batch_sizes(1, 2)
