"""The default run reproduces the tutorial's printed table, line by line."""

import functools
import re

import numpy as np
import pytest

from bounds import U32, gamma
from conftest import EPOCH_LINE
from torchlinreg.cli import main

PRINTED = 0.5e-8  # half a unit in the 8th decimal: the tutorial's table and our lines both print 8 decimals


@functools.lru_cache(maxsize=None)
def tutorial_float32_error(epochs: int = 50, lr: float = 1e-3):
    """First-order bounds on how far the tutorial's float32 run (full-batch SGD on MSE) may be from the same
    run in exact arithmetic, computed along a float64 shadow of the run (its own error, ~κ·U64, is negligible).

    Returns ``(params, loss)``: ``params[k]`` bounds ‖θ̂_k − θ_k‖₂ after k steps (k = 0..epochs), ``loss[k]``
    bounds |L̂(θ̂_k) − L(θ_k)|. Per step, in float32 (Higham's γ_k with u = U32):
      residual r_i = w·x_i + b − y_i: |Δr_i| ≤ γ_3·(|w x_i| + |b| + |y_i|);
      gradient (2/n)·Σ r_i·[x_i, 1] (mse_loss backward, then a sum of n terms):
          |Δg| ≤ (2/n)·(γ_{n+3}·Σ|r_i|·[|x_i|, 1] + Σ|Δr_i|·[|x_i|, 1]);
      update θ − lr·g: |Δθ'| ≤ lr·|Δg| + γ_2·(|θ'| + lr·|g|);
    and the earlier error is carried by I − lr·H (H the loss's Hessian), whose 2-norm is ≤ 1 while
    lr·λmax(H) ≤ 2, so the step errors add up without growing. The loss is evaluated with
    |ΔL| ≤ (γ_{n+2}·Σr_i² + Σ 2|r_i||Δr_i|)/n, plus ‖∇L‖·e + λmax·e²/2 for the parameter error e.
    Different CPUs (PyTorch's vector widths, FMA) round each of these sums differently, so two float32 runs
    may differ by twice these bounds: about 1e-4 in the parameters by epoch 50 (worst case; the tutorial's
    own table and ours agreed to 1e-6 when measured on one CPU, which is no bound).
    """
    from torchlinreg import build_model, tutorial_data

    data = tutorial_data()
    x, y = data.X[:, 0].double().numpy(), data.y[:, 0].double().numpy()
    n = len(x)
    model = build_model()
    theta = np.array([model.linear.weight.item(), model.linear.bias.item()])  # exact float32 values
    H = 2 / n * np.array([[x @ x, x.sum()], [x.sum(), n]])
    lam = np.linalg.eigvalsh(H)[-1]
    assert lr * lam <= 2, "the bound needs a stable rate"
    feature = np.stack([x, np.ones(n)])  # (2, n): d r_i / d(w, b)
    e, params, losses = 0.0, [], []
    for _ in range(epochs + 1):
        r = theta @ feature - y
        dr = gamma(3, U32) * (np.abs(theta[0] * x) + abs(theta[1]) + np.abs(y))
        g = 2 / n * feature @ r
        params.append(e)
        losses.append((gamma(n + 2, U32) * r @ r + 2 * np.abs(r) @ dr) / n + np.linalg.norm(g) * e + lam * e**2 / 2)
        dg = 2 / n * (gamma(n + 3, U32) * np.abs(feature) @ np.abs(r) + np.abs(feature) @ dr)
        theta = theta - lr * g
        e += np.linalg.norm(lr * dg + gamma(2, U32) * (np.abs(theta) + lr * np.abs(g)))
    return tuple(params), tuple(losses)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fit", "--out", str(tmp_path_factory.mktemp("run"))])
    return code, out.getvalue().splitlines()


def test_exit_code_zero(default_run):
    assert default_run[0] == 0


def test_initial_parameter_lines_are_exact(default_run, tutorial_table):
    _, lines = default_run
    # exact: nn.Linear's seeded initial values, printed before any arithmetic that could round differently
    assert lines[0] == tutorial_table["weight_line"]
    assert lines[1] == tutorial_table["bias_line"]


def test_every_epoch_line_agrees_with_the_tutorial(default_run, tutorial_table):
    _, lines = default_run
    got = [EPOCH_LINE.fullmatch(ln).groups() for ln in lines if ln.startswith("epoch:")]
    assert len(got) == len(tutorial_table["epochs"]) == 50
    param_err, loss_err = tutorial_float32_error()
    for (epoch, loss, w, b), (t_epoch, t_loss, t_w, t_b) in zip(got, tutorial_table["epochs"]):
        assert int(epoch) == t_epoch
        # epoch k prints θ_{k-1} and its loss. Both tables are float32 runs, each within the bound of the exact
        # run (tutorial_float32_error), and both are printed to 8 decimals: 2·bound + 2·half a unit.
        k = t_epoch - 1
        assert float(loss) == pytest.approx(t_loss, rel=0, abs=2 * loss_err[k] + 2 * PRINTED), f"loss at epoch {epoch}"
        assert float(w) == pytest.approx(t_w, rel=0, abs=2 * param_err[k] + 2 * PRINTED), f"weight at epoch {epoch}"
        assert float(b) == pytest.approx(t_b, rel=0, abs=2 * param_err[k] + 2 * PRINTED), f"bias at epoch {epoch}"


CURRENT_LINE = re.compile(r"Current weight: (\S+), Current bias: (\S+)")


def current_line_agrees(lines, tutorial_line) -> bool:
    """One ``Current weight: …, Current bias: …`` line whose values are the tutorial's to the float32 bound after
    50 steps (2·bound + 2·half a unit in the 8th decimal, as the epoch lines): not to the last printed digit,
    which another CPU's rounding of the float32 sums may change."""
    t_w, t_b = (float(v) for v in CURRENT_LINE.fullmatch(tutorial_line).groups())
    tol = 2 * tutorial_float32_error()[0][50] + 2 * PRINTED
    found = [m for m in map(CURRENT_LINE.fullmatch, lines) if m]
    return len(found) == 1 and all(abs(float(v) - t) <= tol for v, t in zip(found[0].groups(), (t_w, t_b)))


def test_current_line_agrees(default_run, tutorial_table):
    _, lines = default_run
    assert current_line_agrees(lines, tutorial_table["current_line"])
