"""How good the trained model is: one pass over the rows at its parameters, set beside the optimum.

:func:`last_pass` reads a source once at the trained parameters for the metrics, the loss, the
sums the statistics need beyond the R factor (HC covariances, weights) and, for data too large
to draw, a seeded random sample of rows for the plots; under torchrun each process reads its
part and the sums are gathered. :func:`gap` says how far the model is from the optimum,
:func:`warn_if_unfinished` when a stopping rule met did not mean convergence, and
:func:`divergence_advice` why gradient descent diverged and which learning rate avoids it.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

from .config import TrainConfig
from .errors import ConvergenceWarning, DataError
from .history import History

PLOT_SAMPLE_ROWS = 10_000  # rows of streamed data the plots draw: enough to show the fit, few enough to draw fast


@dataclass
class LastPass:
    """What the pass at the trained parameters found (summed over every process's rows)."""

    metrics: object  # metrics.MetricSums
    sse: np.ndarray  # (m,): Σ w r² at the trained parameters
    sum_y2: float  # Σ y² over all entries, for telling an exact fit from rounding
    residuals: object | None  # statistics.ResidualPass at the optimum, or None
    sample: list  # (X, y, w) pieces of this process's sample for the plots


def last_pass(source, chunk_rows: int, dist, weight: np.ndarray, bias: np.ndarray, solution,
              cov_type: str | None, sample_from: int = 0, seed: int = 0, *, maxlags: int | None = None,
              groups=None) -> LastPass:
    """One pass over this process's chunks of ``source`` (all of them without ``dist``).

    Metrics and loss at the trained ``weight`` (m, d) and ``bias`` (m,), the statistics' sums at
    the optimum (``cov_type`` None: none) and a Bernoulli sample of the ``sample_from`` rows
    (0: none); gathered across the processes of ``dist``. HAC takes ``maxlags``, cluster ``groups``
    (each row's cluster, in file order), in one process (``checks.check_fit`` refuses them under torchrun).
    """
    from .metrics import MetricSums

    m = len(source.target_names)
    sums, sse, sum_y2 = MetricSums(m), np.zeros(m), 0.0
    residuals = None
    several = dist is not None and dist.is_distributed
    if cov_type is not None:  # (the statistics, and SciPy, only when they are asked for)
        from .statistics import ResidualPass

        residuals = ResidualPass(solution, cov_type, maxlags=maxlags, clustered=groups is not None, diagnostics=True)
    pick = _sampler(sample_from, PLOT_SAMPLE_ROWS, seed) if sample_from else None
    sample, start = [], 0
    for X, y, w in source.chunks(chunk_rows, *((dist.rank, dist.world_size) if several else ())):
        y_pred = X @ weight.T + bias  # (k, m)
        sums.update(y, y_pred)
        squared = (y - y_pred) ** 2
        sse += (squared if w is None else w[:, None] * squared).sum(axis=0)
        sum_y2 += float(np.sum(y**2))
        if residuals is not None and residuals.needed:
            residuals.update(X, y, w, groups=None if groups is None else _groups(groups, start, len(X)))
        start += len(X)
        if pick is not None:
            keep = pick(len(X))
            if keep.any():
                sample.append((X[keep], y[keep], None if w is None else w[keep]))
    if groups is not None and residuals is not None and start != len(groups):
        _groups(groups, start, 0)  # the error: as many clusters as rows
    if several:
        sums, sse, sum_y2, residuals = _gathered(sums, sse, sum_y2, residuals, solution, cov_type, dist)
    return LastPass(sums, sse, sum_y2, residuals, sample)


def _groups(groups, start: int, n: int):
    """The clusters of rows ``start .. start + n``; refused unless the column holds one per row."""
    part = groups[start:start + n]
    if len(part) != n or (n == 0 and start != len(groups)):
        raise DataError(f"the cluster column holds {len(groups)} values but the data "
                        f"{'more' if len(part) != n else start} rows; give one cluster per row")
    return part


def _gathered(sums, sse, sum_y2, residuals, solution, cov_type, dist):
    """Every process's sums, merged in process order: the same in every process."""
    from .distributed import gather_vectors
    from .metrics import MetricSums
    from .statistics import ResidualPass

    m = len(sse)
    parts = gather_vectors(sums.to_vector(), dist)
    sums = MetricSums.from_vector(parts[0])
    for part in parts[1:]:
        sums.merge(MetricSums.from_vector(part))
    totals = np.sum(gather_vectors(np.concatenate([sse, [sum_y2]]), dist), axis=0)
    if residuals is not None and residuals.needed:
        vectors = gather_vectors(residuals.to_vector(), dist)
        moments = residuals.moments.gathered(residuals.moments, lambda v: gather_vectors(v, dist))  # in file order
        residuals = ResidualPass(solution, cov_type)
        for v in vectors:
            residuals.add_vector(v)
        residuals.moments = moments
    return sums, totals[:m], float(totals[m]), residuals


def _sampler(n_rows: int, n_wanted: int, seed: int):
    """``pick(k)``: a mask of the next ``k`` rows, each kept with probability ``n_wanted / n_rows``, seeded,
    at most ``n_wanted`` in all; so the sample spreads over the whole file."""
    rng = np.random.default_rng(seed)
    p = min(1.0, n_wanted / n_rows)
    left = [n_wanted]

    def pick(k: int) -> np.ndarray:
        keep = rng.random(k) < p if p < 1 else np.ones(k, dtype=bool)
        keep[np.flatnonzero(keep)[left[0]:]] = False
        left[0] -= int(keep.sum())
        return keep

    return pick


def gap(weight, bias, trained_loss: float, solution, mean_square_y: float) -> dict:
    """How far the trained model is from the optimum; ``exact_fit`` when the optimum's loss is rounding noise."""
    from .solve import _norms

    theta = np.concatenate([weight.ravel(), bias.ravel()])
    best = np.concatenate([np.asarray(solution.coef).ravel(), np.asarray(solution.intercept).ravel()])
    distance = float(_norms((theta - best)[:, None])[0])  # no overflow: coefficients may be near float64's range
    norm = float(_norms(best[:, None])[0])
    excess = trained_loss - solution.loss
    return {
        "trained_loss": trained_loss,
        "optimum_loss": solution.loss,
        "relative_excess_loss": excess / solution.loss if solution.loss > 0 else (0.0 if excess <= 0 else math.inf),
        "distance": distance,
        "relative_distance": distance / norm if norm > 0 else (0.0 if distance == 0 else math.inf),
        "exact_fit": solution.loss <= 1e-20 * mean_square_y,
        # features (plus the intercept, when fitted) all identified
        "unique": solution.rank == weight.shape[1] + int(getattr(solution._factor, "fit_intercept", True)),
    }


def warn_if_unfinished(history: History, config: TrainConfig, gap: dict) -> None:
    """A ConvergenceWarning when the stopping rule was asked for and did not mean what it says."""
    if config.tol is None:
        return
    if history.status == "completed":
        warnings.warn(f"the stopping rule (tol {config.tol:g}, patience {config.patience}) was not met in "
                      f"{config.epochs} epochs; the loss was still improving: raise {{epochs}}", ConvergenceWarning,
                      stacklevel=4)
    elif history.status == "converged" and not gap["exact_fit"] and gap["relative_excess_loss"] > 100 * config.tol:
        warnings.warn(f"training stopped by the stopping rule at epoch {len(history)}, but the loss is still "
                      f"{gap['relative_excess_loss']:.2e} (relative) above the optimum's: it fell too slowly to "
                      "pass {tol}, it had not finished; see the notes before epoch 1 ({standardize=True} or "
                      "{optimizer='lbfgs'} converge faster)", ConvergenceWarning, stacklevel=4)


def divergence_advice(objective, config: TrainConfig, largest_value: float | None = None) -> str:
    """Why gradient descent diverged on the data of ``objective`` (a GramObjective in the model's units)
    and which learning rate avoids it; ``largest_value``: the largest magnitude in the data, when known."""
    big = largest_value or 0.0
    if big > math.sqrt(np.finfo(np.dtype(config.dtype)).max):  # no learning rate helps then
        also = ", or {dtype='float64'}" if config.dtype != "float64" and big <= 1e150 else ""
        return (f"The data reach {big:.3g}, so the squared errors overflow {config.dtype} from the start, whatever "
                f"the learning rate; use {{standardize=True}}{also}, or rescale those columns")
    if config.optimizer != "sgd":
        return (f"{config.optimizer} diverged at lr {config.learning_rate:g}; lower {{lr}} (e.g. by 10x) or use "
                "{standardize=True}")
    from .diagnostics import stable_rate

    R = objective.R[:, :objective.n_features + 1]  # the Hessian of the MSE is 2/(Σw·m) · R[:, :d+1]ᵀ R[:, :d+1]
    largest = np.linalg.eigvalsh(2.0 / (objective.sum_weights * objective.n_targets) * (R.T @ R))[-1]
    bound = stable_rate(largest, momentum=config.momentum, nesterov=config.nesterov, weight_decay=config.weight_decay)
    exponent = math.floor(math.log10(0.9 * bound))
    suggestion = math.floor(0.9 * bound / 10**exponent) * 10**exponent
    return (f"On this data gradient descent diverges for learning rates above {bound:.3g} "
            f"(2 / largest eigenvalue of the loss's Hessian); use a smaller one, e.g. {{lr={suggestion:.1g}}}, "
            "or {standardize=True}")
