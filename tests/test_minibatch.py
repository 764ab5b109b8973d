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
    np.testing.assert_allclose(history.losses, expected.losses, rtol=1e-12)
    np.testing.assert_allclose(model.linear.weight.detach(), reference.linear.weight.detach(), rtol=1e-12)
    assert [r.lr for r in history.records] == [r.lr for r in expected.records]
    np.testing.assert_allclose(history.final_params["linear.bias"], expected.final_params["linear.bias"], rtol=1e-12)


def test_a_diverging_run_stops_with_the_last_finite_parameters():
    data = make_regression(200, 2, 1, seed=1)
    X, y = data.X.double() * 100, data.y.double()
    objective = GramObjective.from_accumulator(QRAccumulator(2, 1).update(X, y))
    config = TrainConfig(epochs=50, lr=1.0, batch_size=20, dtype="float64")
    history = train_minibatches(build_model(2, 1), objective, shard_steps(X, y, None, 200, 20, 0, Dist()), config)
    assert history.diverged and np.isfinite(history.final_params["linear.weight"]).all()


def test_each_process_gets_a_share_of_every_step():
    assert local_batch_sizes(10, 3) == [4, 3, 3] and sum(local_batch_sizes(1001, 4)) == 1001
    with pytest.raises(ConfigError, match="--batch-size 1 is below the 2 processes"):
        local_batch_sizes(1, 2)
