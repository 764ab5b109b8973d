import numpy as np
import pytest

from torchlinreg import TrainConfig, build_model, max_stable_lr, train, tutorial_data


def test_bound_is_two_over_the_largest_hessian_eigenvalue():
    data = tutorial_data()
    A = np.hstack([data.X.double().numpy(), np.ones((50, 1))])
    L = np.linalg.eigvalsh(2 / 50 * A.T @ A).max()
    assert max_stable_lr(data.X) == pytest.approx(2 / L, rel=1e-12)
    assert max_stable_lr(data.X) == pytest.approx(0.00116, abs=5e-6)  # the figure quoted for the tutorial


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.5, False), (0.5, True)])
def test_training_diverges_just_above_the_bound_and_not_just_below(momentum, nesterov):
    data = tutorial_data()
    bound = max_stable_lr(data.X, momentum=momentum, nesterov=nesterov)

    def run(lr):
        cfg = TrainConfig(epochs=3000, lr=lr, momentum=momentum, nesterov=nesterov)
        return train(build_model(), data.X, data.y, cfg)

    assert run(1.05 * bound).diverged
    below = run(0.95 * bound)
    assert not below.diverged and below.losses[-1] < below.losses[0]
