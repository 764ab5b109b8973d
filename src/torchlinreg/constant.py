"""Whether a fit without intercept still holds a constant: statsmodels' ``k_constant``, from one pass over the rows.

A design fitted without the ones column may still span it: one of its columns is constant (statsmodels'
``add_constant`` put it there), or several add up to a constant (dummies of every level). statsmodels
then reports the centred R² and the F test of every term but the constant, and without one the uncentred
R² and the F test of every term. Its rules, as :meth:`ConstantSums.k_constant` applies them:

* a column whose values are all equal and not 0 is the constant (the first column of ones, else the
  first such column); ``const_idx`` is its index, and a robust F test leaves it out;
* else the constant is implicit when the ones vector lies in the design's column space (statsmodels
  compares the ranks of ``X`` and ``[1, X]``; here the part of ``√w`` outside the column space of
  ``√w X`` is measured from ``lstsq``'s basis, ``1 - ‖Lᵀ Xᵀ w‖² / Σw``, against :data:`IMPLICIT_TOL`);
  ``const_idx`` is None, and statsmodels' robust F statistic is then NaN.

Only rows of positive weight count (the statistics' convention). The sums also give each target's
weighted mean and centred sum of squares (merged as Chan et al.'s pairwise update), so the centred R²
keeps its digits when the mean of ``y`` is far from 0. The sums add over chunks and processes.
"""

from __future__ import annotations

import numpy as np

IMPLICIT_TOL = 1e-10  # 1 - ‖Lᵀ s‖²/Σw at most this: the ones vector is in the column space (rounding gives ~1e-15)


class ConstantSums:
    """Per feature: ``Σ w x``, the first value and whether every value equals it; per target: ``Σ w``, mean, ``M2``."""

    def __init__(self, n_features: int, n_targets: int):
        self.seen = False
        self.sums = np.zeros(n_features)
        self.first = np.zeros(n_features)
        self.constant = np.ones(n_features, dtype=bool)
        self.weight = 0.0
        self.mean = np.zeros(n_targets)
        self.m2 = np.zeros(n_targets)  # Σ w (y - mean)²

    def update(self, X: np.ndarray, Y: np.ndarray, w: np.ndarray) -> None:
        keep = w > 0
        X, Y, w = X[keep], Y[keep], w[keep]
        if len(X) == 0:
            return
        part = ConstantSums(X.shape[1], Y.shape[1])
        part.seen, part.first = True, X[0].astype(np.float64)
        part.constant = np.all(X == X[0], axis=0)
        part.sums = w @ X
        part.weight = float(np.sum(w))
        part.mean = w @ Y / part.weight
        part.m2 = w @ (Y - part.mean) ** 2
        self.merge(part)

    def merge(self, other: ConstantSums) -> None:
        if not other.seen:
            return
        if not self.seen:
            self.__dict__.update({key: np.copy(value) if isinstance(value, np.ndarray) else value
                                  for key, value in other.__dict__.items()})
            return
        self.constant &= other.constant & (other.first == self.first)
        self.sums = self.sums + other.sums
        total = self.weight + other.weight
        delta = other.mean - self.mean
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.weight * other.weight / total)
        self.mean = self.mean + delta * (other.weight / total)
        self.weight = total

    def to_vector(self) -> np.ndarray:
        return np.concatenate([[float(self.seen), self.weight], self.sums, self.first, self.constant.astype(np.float64),
                               self.mean, self.m2])

    def add_vector(self, v: np.ndarray) -> None:
        d, m = len(self.sums), len(self.mean)
        other = ConstantSums(d, m)
        other.seen, other.weight = bool(v[0]), float(v[1])
        parts = np.split(np.asarray(v[2:], dtype=np.float64), np.cumsum([d, d, d, m]))
        other.sums, other.first, constant, other.mean, other.m2 = parts
        other.constant = constant > 0
        self.merge(other)

    def k_constant(self, L: np.ndarray) -> tuple[int, int | None]:
        """``(k_constant, const_idx)`` as statsmodels finds them; ``L`` (d, r) maps the basis to the coefficients."""
        if not self.seen:
            return 0, None
        columns = np.flatnonzero(self.constant)
        values = self.first[columns]
        for chosen in (columns[values == 1], columns[values != 0]):
            if len(chosen):
                return 1, int(chosen[0])
        reach = float(np.sum((L.T @ self.sums) ** 2)) / self.weight  # √w's share in the column space
        return int(1 - reach <= IMPLICIT_TOL), None
