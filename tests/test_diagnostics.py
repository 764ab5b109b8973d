import numpy as np
import pytest
import torch
from sklearn.preprocessing import StandardScaler

from torchlinreg import TrainConfig, build_model, diagnostics, max_stable_lr, train, tutorial_data
from torchlinreg.cli import FLAGS
from torchlinreg.diagnostics import diagnose

from bounds import gamma

# Eigenvalues of the Hessian 2/(nm)·AᵀA computed two ways: forming AᵀA costs γ_n·|A|ᵀ|A| per entry and a
# backward-stable symmetric eigensolver c·p·u·‖H‖, so each eigenvalue moves by at most γ_{n+p}·‖H‖ (Weyl):
# λmax and 2/(λmax + λmin) to γ_{n+p} relative, λmin to γ_{n+p}·κ(H), the ratio κ(H) to 2γ_{n+p}·κ(H). ×20.


def test_bound_is_two_over_the_largest_hessian_eigenvalue():
    data = tutorial_data()
    A = np.hstack([data.X.double().numpy(), np.ones((50, 1))])
    L = np.linalg.eigvalsh(2 / 50 * A.T @ A).max()
    assert max_stable_lr(data.X) == pytest.approx(2 / L, rel=20 * gamma(50 + 2), abs=0)  # λmax two ways (above)
    assert max_stable_lr(data.X) == pytest.approx(0.00116, abs=5e-6)  # the figure quoted for the tutorial, 3 digits


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


# --- diagnose(): epochs predicted before training, against gradient descent run here ---


def _optimum(A, Y, weight_decay=0.0):
    """Minimiser of MSE + wd/2 |theta|^2 over theta (m, d+1): lstsq, or the ridge normal equations."""
    nm = Y.size
    if weight_decay == 0:
        return np.linalg.lstsq(A, Y, rcond=None)[0].T
    return np.linalg.solve(2 / nm * A.T @ A + weight_decay * np.eye(A.shape[1]), 2 / nm * A.T @ Y).T


def _observed_epochs(X, Y, W0, b0, lr, *, momentum=0.0, nesterov=False, weight_decay=0.0, tol=1e-6,
                     max_epochs=50_000):
    """Full-batch SGD as torch.optim.SGD does it, in float64 NumPy: the first epoch whose loss
    (at the parameters after epoch - 1 steps) is within tol of the optimum's, relatively."""
    A = np.hstack([X, np.ones((len(X), 1))])  # (n, d+1)
    nm = Y.size

    def objective(theta):
        return np.sum((Y - A @ theta.T) ** 2) / nm + weight_decay / 2 * np.sum(theta**2)

    f_star = objective(_optimum(A, Y, weight_decay))
    theta = np.hstack([W0, b0[:, None]])  # (m, d+1)
    buf = np.zeros_like(theta)
    for epoch in range(1, max_epochs + 1):
        if (objective(theta) - f_star) / f_star <= tol:
            return epoch
        grad = 2 / nm * (A @ theta.T - Y).T @ A + weight_decay * theta
        buf = momentum * buf + grad
        theta = theta - lr * (grad + momentum * buf if nesterov else buf)
    return None


@pytest.fixture(scope="module")
def tutorial():
    data = tutorial_data()
    model = build_model()
    X, Y = data.X.double().numpy(), data.y.double().numpy()
    W0, b0 = model.linear.weight.detach().double().numpy(), model.linear.bias.detach().double().numpy()
    return X, Y, W0, b0


@pytest.fixture(scope="module")
def random_problem():
    """Three features on different scales, two targets."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(60, 3)) * [1.0, 4.0, 0.3] + [2.0, -1.0, 0.5]
    Y = X @ rng.normal(size=(3, 2)) + rng.normal(size=2) + 0.3 * rng.normal(size=(60, 2))
    return X, Y, rng.normal(size=(2, 3)), rng.normal(size=2)


def test_the_tutorial_optimum_is_the_one_quoted(tutorial):
    X, Y, _, _ = tutorial
    A = np.hstack([X, np.ones((50, 1))])
    (w, b), = _optimum(A, Y)
    # the figures quoted to 4 and 5 digits (abs = their last digit), far above rounding
    assert (w, b) == (pytest.approx(1.9401, abs=1e-4), pytest.approx(2.5282, abs=1e-4))
    assert np.mean((Y - A @ [[w], [b]]) ** 2) == pytest.approx(20.532, abs=1e-3)


def test_spectrum_figures_match_numpy_eigenvalues(random_problem):
    X, Y, W0, b0 = random_problem
    A = np.hstack([X, np.ones((60, 1))])
    lam = np.linalg.eigvalsh(2 / Y.size * A.T @ A)
    diag = diagnose(X, Y, lr=0.01, initial_weight=W0, initial_bias=b0)
    tol = 20 * gamma(60 + 4)  # the eigenvalue bound above
    assert diag.best_lr == pytest.approx(2 / (lam.max() + lam.min()), rel=tol, abs=0)
    assert diag.condition_number == pytest.approx(lam.max() / lam.min(), rel=2 * tol * lam.max() / lam.min(), abs=0)
    assert diag.max_stable_lr == pytest.approx(2 / lam.max(), rel=tol, abs=0)


@pytest.mark.parametrize("which", ["given", "best"])
def test_plain_gd_on_the_tutorial_takes_the_predicted_number_of_epochs(tutorial, which):
    X, Y, W0, b0 = tutorial
    diag = diagnose(X, Y, lr=0.001, initial_weight=W0, initial_bias=b0, tol=1e-6)
    lr, predicted = (0.001, diag.epochs_needed) if which == "given" else (diag.best_lr, diag.epochs_needed_best_lr)
    observed = _observed_epochs(X, Y, W0, b0, lr, tol=1e-6)
    # counts, not floats: rounding can move the epoch whose loss first crosses tol by one
    assert observed is not None and abs(predicted - observed) <= 1
    if which == "given":
        assert 10_000 < predicted < 11_000


@pytest.mark.parametrize("settings", [
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.02, momentum=0.5, weight_decay=0.1),
    dict(lr=0.03, weight_decay=0.01),
])
def test_momentum_and_weight_decay_take_the_predicted_number_of_epochs(random_problem, settings):
    X, Y, W0, b0 = random_problem
    diag = diagnose(X, Y, initial_weight=W0, initial_bias=b0, tol=1e-6, **settings)
    observed = _observed_epochs(X, Y, W0, b0, tol=1e-6, **settings)
    assert observed is not None and 20 < observed and abs(diag.epochs_needed - observed) <= 1


def test_the_reference_loop_is_what_torch_sgd_does(random_problem):
    """Nesterov momentum with weight decay on the bias too, as torch.optim.SGD in float64."""
    X, Y, W0, b0 = random_problem
    settings = dict(lr=0.06, momentum=0.8, nesterov=True, weight_decay=0.05)
    layer = torch.nn.Linear(3, 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(W0))
        layer.bias.copy_(torch.from_numpy(b0))
    optimizer = torch.optim.SGD(layer.parameters(), **settings)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    A = np.hstack([X, np.ones((60, 1))])
    theta_star = _optimum(A, Y, settings["weight_decay"])
    f_star = np.mean((Y - A @ theta_star.T) ** 2) + settings["weight_decay"] / 2 * np.sum(theta_star**2)
    for epoch in range(1, 1000):
        loss = torch.nn.functional.mse_loss(layer(Xt), Yt)
        penalty = settings["weight_decay"] / 2 * sum(p.pow(2).sum() for p in layer.parameters())
        if ((loss + penalty).item() - f_star) / f_star <= 1e-6:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert epoch == _observed_epochs(X, Y, W0, b0, **settings)
    assert abs(diagnose(X, Y, initial_weight=W0, initial_bias=b0, **settings).epochs_needed - epoch) <= 1


def test_standardized_figure_is_gradient_descent_on_standardized_data(random_problem, tutorial):
    for X, Y, W0, b0 in (random_problem, tutorial):
        diag = diagnose(X, Y, lr=0.01, initial_weight=W0, initial_bias=b0)
        Xs, Ys = StandardScaler().fit_transform(X), StandardScaler().fit_transform(Y)
        A = np.hstack([Xs, np.ones((len(Xs), 1))])
        lam = np.linalg.eigvalsh(2 / Ys.size * A.T @ A)
        # the eigenvalue bound above (×10: StandardScaler and the library standardise with their own roundings,
        # γ_n relative each); 1e-10 is loose
        assert diag.best_lr_standardized == pytest.approx(2 / (lam.max() + lam.min()), rel=1e-10)
        observed = _observed_epochs(Xs, Ys, W0, b0, diag.best_lr_standardized)
        assert abs(diag.epochs_needed_standardized - observed) <= 1
    assert diag.epochs_needed_standardized == 2  # tutorial: one feature, standardised, one step lands on the optimum


def test_a_long_momentum_run_past_the_scan_budget_gives_the_same_count(tutorial, monkeypatch):
    X, Y, W0, b0 = tutorial
    settings = dict(lr=0.0005, momentum=0.5, initial_weight=W0, initial_bias=b0)
    walked = diagnose(X, Y, **settings).epochs_needed
    monkeypatch.setattr(diagnostics, "_SCAN_BUDGET", 4096)  # walk 2,048 epochs, bisect the rest
    assert walked > 5000 and diagnose(X, Y, **settings).epochs_needed == walked
    assert abs(_observed_epochs(X, Y, W0, b0, 0.0005, momentum=0.5) - walked) <= 1


def test_singular_hessian_counts_only_the_directions_that_move(random_problem):
    X, Y, W0, b0 = random_problem
    X2 = np.hstack([X, X[:, :1]])  # a repeated column: a flat direction of the loss
    W2 = np.hstack([W0, W0[:, :1]])
    diag = diagnose(X2, Y, lr=0.03, initial_weight=W2, initial_bias=b0)
    assert diag.condition_number == np.inf and diag.to_dict()["condition_number"] is None
    assert abs(diag.epochs_needed - _observed_epochs(X2, Y, W2, b0, 0.03)) <= 1
    assert "singular" in diag.messages()[-1]


@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_diverging_rate_needs_no_epochs_and_says_so(tutorial, momentum, nesterov):
    X, Y, W0, b0 = tutorial
    limit = max_stable_lr(torch.from_numpy(X), momentum=momentum, nesterov=nesterov)
    diag = diagnose(X, Y, lr=1.01 * limit, momentum=momentum, nesterov=nesterov, initial_weight=W0, initial_bias=b0)
    assert diag.max_stable_lr == pytest.approx(limit, rel=20 * gamma(50 + 2), abs=0)  # λmax two ways (above)
    assert diag.epochs_needed is None and "diverge" in diag.messages()[0]


def test_max_epochs_and_a_start_at_the_optimum(tutorial):
    X, Y, W0, b0 = tutorial
    assert diagnose(X, Y, lr=0.001, initial_weight=W0, initial_bias=b0, max_epochs=10_000).epochs_needed is None
    theta = _optimum(np.hstack([X, np.ones((50, 1))]), Y)
    assert diagnose(X, Y, lr=0.001, initial_weight=theta[:, :1], initial_bias=theta[:, 1]).epochs_needed == 1


def test_messages_for_the_tutorial_defaults():
    data, model = tutorial_data(), build_model()
    diag = diagnose(data.X, data.y, lr=0.001, initial_weight=model.linear.weight, initial_bias=model.linear.bias,
                    epochs=50)
    stability, epochs, *_, conditioning = diag.messages()
    share = 100 * 0.001 / diag.max_stable_lr  # 85.9...: a percentage, written as one (3 digits)
    assert stability == f"lr 0.001 is {share:.3g}% of the divergence limit 0.00116 (2/λmax of the loss's Hessian)"
    assert f"needs about {diag.epochs_needed:,} epochs" in epochs and "10,5" in epochs
    assert "1e-06" in epochs and "the 50 asked for will stop short" in epochs
    assert "the bias is learnt far more slowly than the weight" in conditioning
    assert diag.epochs_needed_standardized < 100
    assert f"would converge in about {diag.epochs_needed_standardized} epochs" in conditioning
    # The advice names settings: as flags for the command, as keywords for the library.
    assert f"standardize=True lr={diag.best_lr_standardized:.3g}" in conditioning
    assert f"--standardize --lr {diag.best_lr_standardized:.3g}" in diag.messages(FLAGS)[-1]
    assert diag.to_dict()["epochs_needed"] == diag.epochs_needed


def test_initial_parameters_of_the_wrong_shape_are_refused(random_problem):
    X, Y, W0, b0 = random_problem
    with pytest.raises(ValueError, match=r"initial_weight must have shape \(2, 3\)"):
        diagnose(X, Y, lr=0.01, initial_weight=W0[:, :2], initial_bias=b0)
