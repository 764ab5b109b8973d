"""What the data alone says about gradient descent on the MSE loss.

For a linear model the MSE loss is quadratic; its Hessian is ``2/(n*m) * A.T @ A``, where
``A = [X, 1]`` (the bias is a column of ones) and ``m`` is the number of targets, since
``nn.MSELoss`` averages over all ``n*m`` entries. Gradient descent with learning rate
``lr`` converges only if ``lr * L < 2``, where ``L`` is the largest eigenvalue of the
Hessian (plus the weight decay, which adds ``weight_decay * I``). Momentum widens the
limit: heavy-ball momentum ``mu`` needs ``lr * L < 2 * (1 + mu)``, Nesterov momentum
``lr * L < 2 * (1 + mu) / (1 + 2 * mu)``.
"""

from __future__ import annotations

import torch


def hessian(X: torch.Tensor, n_targets: int = 1) -> torch.Tensor:
    """The Hessian of the MSE loss in (weights, bias) of one target row, float64, shape (d+1, d+1)."""
    n = X.shape[0]
    A = torch.cat([X.double(), torch.ones(n, 1, dtype=torch.float64)], dim=1)  # (n, d+1)
    return 2.0 / (n * n_targets) * (A.T @ A)


def max_stable_lr(
    X: torch.Tensor,
    n_targets: int = 1,
    *,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
) -> float:
    """The largest learning rate for which full-batch gradient descent does not diverge."""
    L = torch.linalg.eigvalsh(hessian(X, n_targets))[-1].item() + weight_decay
    factor = 2.0 * (1.0 + momentum)
    if nesterov:
        factor /= 1.0 + 2.0 * momentum
    return factor / L
