"""The exact solve across ranks: one ``all_gather`` of the R factors, and sums gathered in rank order.

Every rank accumulates the R factor of its share of the rows; :func:`merge_accumulators`
gathers the ranks' R factors in one collective and every rank merges them in rank order, so that
all hold the same global R and the exact solve, the loss at any parameters and full-batch descent
need no further communication (:func:`torchlinreg.exact.solve_shard` does it for a Source), and
sums over every rank's rows (metrics, the statistics' pass, the refinement's passes) are gathered
by :func:`gather_vectors`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..solve import QRAccumulator, add_pass_sums
from .group import Dist, shard

_HEADER = 8  # n_samples, sum_weights, n_positive, weighted, rows of R, n_features, n_targets, fit_intercept


def _pack(acc: QRAccumulator) -> torch.Tensor:
    """The accumulator as one float64 vector of fixed length ``_HEADER + c * c + 2 q`` (R padded to c x c,
    then the reference and which columns vary, ``q`` = features + targets)."""
    c, q = acc.n_columns, acc.n_features + acc.n_targets
    Rs = acc.R_shifted  # with the reference it is shifted by (exact digits of data far from 0) and the columns that vary
    header = [acc.n_samples, acc.sum_weights, acc.n_positive, acc.weighted, Rs.shape[0],
              acc.n_features, acc.n_targets, acc.fit_intercept]  # counts below 2**53 are exact in float64
    R = np.zeros((c, c))
    R[:Rs.shape[0]] = Rs
    reference = np.full(q, np.nan) if acc.reference is None else acc.reference
    varies = np.full(q, -1.0) if acc.varies is None else acc.varies.astype(np.float64)
    return torch.from_numpy(np.concatenate([np.asarray(header, dtype=np.float64), R.ravel(), reference, varies]))


def _unpack(v: np.ndarray) -> QRAccumulator:
    n, sum_w, n_pos, weighted, rows, d, m, intercept = v[:_HEADER]
    acc = QRAccumulator(int(d), int(m), fit_intercept=bool(intercept))
    c, q = acc.n_columns, acc.n_features + acc.n_targets
    reference, varies = v[_HEADER + c * c:_HEADER + c * c + q], v[_HEADER + c * c + q:_HEADER + c * c + 2 * q]
    acc.set_state(v[_HEADER:_HEADER + c * c].reshape(c, c)[:int(rows)].copy(),
                  None if np.isnan(reference).any() else reference.copy(), None if (varies < 0).any() else varies > 0)
    acc.n_samples, acc.sum_weights, acc.n_positive, acc.weighted = int(n), float(sum_w), int(n_pos), bool(weighted)
    return acc


def merge_accumulators(acc: QRAccumulator, dist: Dist) -> QRAccumulator:
    """The accumulator of every rank's rows, the same on every rank.

    One collective: an ``all_gather`` of each rank's R factor and counts; then every rank
    merges them in rank order, so all hold the same global R (the same floating-point
    operations on the same numbers). With one process, ``acc`` itself. ``acc`` is not
    changed. Every rank must call this with accumulators of the same shape (see
    :func:`check_same_schema`); a rank with no rows is fine.
    """
    if not isinstance(acc, QRAccumulator):
        raise ValueError(f"acc must be a QRAccumulator, got {type(acc).__name__}")
    if not dist.is_distributed:
        return acc
    import torch.distributed as td

    mine = _pack(acc).to(dist.device)
    parts = [torch.empty_like(mine) for _ in range(dist.world_size)]
    td.all_gather(parts, mine)
    shape = (acc.n_features, acc.n_targets, acc.fit_intercept)
    merged = QRAccumulator(*shape[:2], fit_intercept=shape[2])
    for r, part in enumerate(parts):
        other = _unpack(part.cpu().numpy())
        if (other.n_features, other.n_targets, other.fit_intercept) != shape:
            raise DataError(f"rank {r} accumulated {other.n_features} feature(s), {other.n_targets} target(s), "
                            f"fit_intercept={other.fit_intercept}, but rank {dist.rank} {shape[0]}, {shape[1]}, "
                            f"{shape[2]}; every rank must fit the same columns")
        merged.merge(other)
    merged.kernels = dict(acc.kernels)  # this rank's (each rank measures its own)
    return merged


def gather_vectors(values, dist: Dist) -> list[np.ndarray]:
    """Every rank's float64 vector, in rank order (one ``all_gather``); ``[values]`` with one process.

    Every rank must give a vector of the same length. Summaries that add up (metrics, the
    statistics' pass) are merged from these in rank order, so every rank gets the same sums.
    """
    mine = np.ascontiguousarray(values, dtype=np.float64).ravel()
    if not dist.is_distributed:
        return [mine]
    import torch.distributed as td

    tensor = torch.from_numpy(mine).to(dist.device)
    parts = [torch.empty_like(tensor) for _ in range(dist.world_size)]
    td.all_gather(parts, tensor)
    return [part.cpu().numpy() for part in parts]


def sum_pass(dist: Dist) -> Callable[[tuple], tuple]:
    """``combine`` for :func:`torchlinreg.solve.refine` when the rows are split among the ranks.

    Each refinement pass runs on every rank over its own rows; this adds the ranks' sums
    (one ``all_gather`` per pass, added in rank order as double-doubles), so every rank takes
    the same correction and stops after the same pass.
    """
    def combine(sums: tuple) -> tuple:
        n, sum_w, sse, G, gb = sums
        flat = np.concatenate([[n, sum_w], sse, G[0].ravel(), G[1].ravel(), gb[0], gb[1]])
        total = None
        for part in gather_vectors(flat, dist):
            m, dm = len(sse), G[0].size
            ranks = (int(part[0]), float(part[1]), part[2:2 + m],
                     (part[2 + m:2 + m + dm].reshape(G[0].shape), part[2 + m + dm:2 + m + 2 * dm].reshape(G[0].shape)),
                     (part[2 + m + 2 * dm:2 + 2 * m + 2 * dm], part[2 + 2 * m + 2 * dm:]))
            total = ranks if total is None else add_pass_sums(total, ranks)
        return total

    return combine
