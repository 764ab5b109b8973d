"""Middle matrices for errors that depend on each other: HAC (Newey-West) and cluster-robust covariances.

Both sum the rows' scores ``sᵢ = ẽᵢ q_i`` (the weighted residual times the row of the orthonormal
basis, see :mod:`torchlinreg.statistics`) and give ``C`` per target; the covariance is then
``c K C Kᵀ`` as for HC0, with statsmodels' small-sample factor ``c``:

* HAC with ``maxlags`` L (a single time series, rows in file order, Bartlett kernel):
  ``C = Σᵢ sᵢ sᵢᵀ + Σ_{l=1..L} (1 - l/(L+1)) Σᵢ (sᵢ sᵢ₋ₗᵀ + sᵢ₋ₗ sᵢᵀ)``; ``c = 1``, as
  statsmodels' ``cov_type="HAC"`` (its ``use_correction`` is False by default there).
  :class:`LagSums` carries the last L scores from one chunk to the next, so chunks of any size
  give the same sums; passes over parts of the rows do not add up (a lag crosses the cut), so
  under torchrun each process makes the pass over every row.
* cluster with ``groups``: ``C = Σ_g (Σ_{i∈g} sᵢ)(Σ_{i∈g} sᵢ)ᵀ``; ``c = G/(G-1) (n-1)/(n-p)``
  with G clusters and p parameters, as statsmodels' ``cov_type="cluster"`` (``use_correction``
  True); its tests use ``G - 1`` degrees of freedom. :class:`ClusterSums` keeps one sum per
  cluster (memory bounded by the number of clusters), and sums over parts of the rows merge.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError, DataError

DEPENDENT_TYPES = ("HAC", "cluster")


def check_options(cov_type: str, maxlags, groups_given: bool) -> int | None:
    """``maxlags`` as an int for HAC (None otherwise); refuse options that do not go with ``cov_type``."""
    if cov_type == "HAC":
        if maxlags is None:
            raise ConfigError("the HAC covariance needs {maxlags}: the most lags of the Newey-West sum, e.g. 4")
        if isinstance(maxlags, bool) or not isinstance(maxlags, (int, np.integer)) or maxlags < 0:
            raise ConfigError(f"maxlags must be an integer >= 0, got {maxlags!r}; pass e.g. {{maxlags=4}}")
    elif maxlags is not None:
        raise ConfigError(f"maxlags is for the HAC covariance, not {cov_type}; pass {{cov_type=HAC}} or leave "
                          "out {maxlags}")
    if cov_type == "cluster" and not groups_given:
        raise ConfigError("the cluster covariance needs {groups}: each row's cluster")
    if cov_type != "cluster" and groups_given:
        raise ConfigError(f"clusters ({{groups}}) are for the cluster covariance, not {cov_type}; "
                          "pass {cov_type=cluster}")
    return None if maxlags is None else int(maxlags)


def scores(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``sᵢ = ẽᵢ q_i`` per target: (rows, m, k) from ``q`` (rows, k) and ``e`` (rows, m)."""
    return e[:, :, None] * q[:, None, :]


class LagSums:
    """The HAC middle matrices ``C`` (m, k, k), summed over chunks of rows given in order."""

    def __init__(self, m: int, k: int, maxlags: int):
        self.maxlags = maxlags
        self.weights = 1 - np.arange(maxlags + 1) / (maxlags + 1)  # Bartlett's, 1 at lag 0
        self.middle = np.zeros((m, k, k))
        self.tail = np.zeros((0, m, k))  # the last ``maxlags`` scores seen

    def update(self, s: np.ndarray) -> None:
        """Add the scores ``s`` (rows, m, k) of the rows that follow those seen so far."""
        if len(s) == 0:
            return
        both = np.concatenate([self.tail, s])
        start = len(self.tail)
        self.middle += np.einsum("itj,itl->tjl", s, s)
        for lag in range(1, self.maxlags + 1):
            first = max(start, lag)  # the rows i of this chunk that have a row i - lag
            if first >= len(both):
                break
            cross = np.einsum("itj,itl->tjl", both[first:], both[first - lag:len(both) - lag])
            self.middle += self.weights[lag] * (cross + np.swapaxes(cross, 1, 2))
        self.tail = both[len(both) - min(len(both), self.maxlags):].copy()


class ClusterSums:
    """Each cluster's sum of scores (m, k), over chunks of rows in any order; ``merge`` adds another's."""

    def __init__(self, m: int, k: int):
        self.shape = (m, k)
        self.sums: dict = {}

    def update(self, s: np.ndarray, groups) -> None:
        """Add the scores ``s`` (rows, m, k) of rows in clusters ``groups`` (rows,)."""
        groups = np.asarray(groups)
        if groups.shape != (len(s),):
            raise ValueError(f"groups must hold one cluster per row: {len(s)} rows, got shape {groups.shape}")
        if len(s) == 0:
            return
        if groups.dtype.kind == "f" and np.isnan(groups).any():
            raise DataError("a cluster value is missing (NaN); give every row its cluster")
        keys, index = np.unique(groups, return_inverse=True)
        totals = np.zeros((len(keys), *self.shape))
        np.add.at(totals, index.ravel(), s)
        for key, total in zip(keys.tolist(), totals):
            if key in self.sums:
                self.sums[key] += total
            else:
                self.sums[key] = total

    def merge(self, other: ClusterSums) -> None:
        for key, total in other.sums.items():
            self.sums[key] = self.sums[key] + total if key in self.sums else total.copy()

    @property
    def n_groups(self) -> int:
        return len(self.sums)

    def middle(self) -> np.ndarray:
        """``C = Σ_g S_g S_gᵀ`` per target (m, k, k); the clusters in a fixed order (sorted by their text)."""
        m, k = self.shape
        C = np.zeros((m, k, k))
        for key in sorted(self.sums, key=repr):
            total = self.sums[key]
            C += total[:, :, None] * total[:, None, :]
        return C

    def check(self) -> None:
        if self.n_groups < 2:
            raise DataError(f"the cluster covariance needs at least 2 clusters; the rows hold {self.n_groups}: "
                            "choose a column with several clusters, or another covariance with {cov_type}")


def cluster_factor(n_groups: int, n_obs: int, n_params: int) -> float:
    """statsmodels' small-sample factor of the cluster covariance: ``G/(G-1) (n-1)/(n-p)``."""
    return n_groups / (n_groups - 1) * (n_obs - 1) / (n_obs - n_params)
