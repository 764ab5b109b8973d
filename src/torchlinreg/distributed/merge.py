"""The exact solve across ranks: one ``all_gather`` of the R factors, and sums gathered in rank order.

Every rank accumulates the R factor of its share of the rows; :func:`merge_accumulators`
gathers the ranks' R factors in one collective and every rank merges them in rank order, so that
all hold the same global R and the exact solve, the loss at any parameters and full-batch descent
need no further communication. Streamed files are split by chunks instead
(:func:`accumulate_shard`: chunk ``i`` is rank ``i % world_size``'s), and sums over every
rank's rows (metrics, the statistics' pass, the refinement's passes) are gathered by
:func:`gather_vectors`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import DataError
from ..solve import QRAccumulator, add_pass_sums, needs_refinement, refine
from ..passes import fold
from .group import Dist, shard

_HEADER = 8  # n_samples, sum_weights, n_positive, weighted, rows of R, n_features, n_targets, fit_intercept


def _pack(acc: QRAccumulator) -> torch.Tensor:
    """The accumulator as one float64 vector of fixed length ``_HEADER + c * c`` (R padded to c x c)."""
    c = acc.n_columns
    header = [acc.n_samples, acc.sum_weights, acc.n_positive, acc.weighted, acc.R.shape[0],
              acc.n_features, acc.n_targets, acc.fit_intercept]  # counts below 2**53 are exact in float64
    R = np.zeros((c, c))
    R[:acc.R.shape[0]] = acc.R
    return torch.from_numpy(np.concatenate([np.asarray(header, dtype=np.float64), R.ravel()]))


def _unpack(v: np.ndarray) -> QRAccumulator:
    n, sum_w, n_pos, weighted, rows, d, m, intercept = v[:_HEADER]
    acc = QRAccumulator(int(d), int(m), fit_intercept=bool(intercept))
    c = acc.n_columns
    acc.R = v[_HEADER:_HEADER + c * c].reshape(c, c)[:int(rows)].copy()
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


def accumulate_shard(source, dist: Dist, *, chunk_rows: int) -> tuple[QRAccumulator, list[int]]:
    """The R factor of a streamed source, each rank reading its own chunks, merged; and each rank's rows.

    Chunk ``i`` of ``source`` (a :class:`torchlinreg.stream.StreamSource`, chunks of
    ``chunk_rows`` rows) belongs to rank ``i % world_size``: the parts
    :class:`torchlinreg.stream.ShuffledBatches` gives the ranks with the same ``chunk_rows``.
    Every rank reads the file but converts and checks only its chunks. Returns the merged
    accumulator (the same on every rank) and the rows of every rank's part, in rank order.
    """
    acc = QRAccumulator(len(source.feature_names), len(source.target_names))
    fold(source, acc, chunk_rows, dist.rank, dist.world_size)  # the parts of ShuffledBatches
    counts = [int(v[0]) for v in gather_vectors([acc.n_samples], dist)]
    merged = merge_accumulators(acc, dist)
    if merged.weighted and merged.sum_weights == 0:
        raise DataError(f"weight column {source.weight_name!r} is all zero; give some rows a positive weight")
    return merged, counts


def solve_rows(X, y, sample_weight, dist: Dist, *, feature_names=None, target_names=None):
    """The exact solution of rows every rank holds whole: each rank folds its :func:`shard` into
    an R factor, one collective merges them, and an ill-conditioned design is refined by passes
    over each rank's rows with the sums added across the ranks. Returns the merged accumulator
    and the solution, the same on every rank."""
    mine = shard(len(X), dist)
    w = None if sample_weight is None else sample_weight[mine]
    acc = merge_accumulators(QRAccumulator(X.shape[1], y.shape[1]).update(X[mine], y[mine], sample_weight=w), dist)
    solution = acc.solve(feature_names=feature_names, target_names=target_names)
    if needs_refinement(solution):  # every rank its rows, the sums of each pass added across the ranks
        rows = (X[mine], y[mine]) if w is None else (X[mine], y[mine], w)
        solution = refine(solution, [rows], combine=sum_pass(dist))
    return acc, solution


def solve_shard(source, dist: Dist, *, chunk_rows: int):
    """The exact least-squares solution of a streamed source whose chunks the ranks share (see
    :func:`accumulate_shard`), refined as ``stream.solve_source`` refines it: when the design is
    ill-conditioned, passes in double-double over each rank's chunks, the sums added across the
    ranks, so that every rank takes the same steps. Returns the merged accumulator, the rows of
    every rank's part (see :func:`accumulate_shard`) and the solution, the same on every rank."""
    acc, counts = accumulate_shard(source, dist, chunk_rows=chunk_rows)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
    if needs_refinement(solution):
        solution = refine(solution, lambda: source.chunks(chunk_rows, dist.rank, dist.world_size),
                          combine=sum_pass(dist))
    return acc, counts, solution
