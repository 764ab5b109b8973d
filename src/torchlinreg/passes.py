"""Passes over a Source: the exact least-squares solution, and shuffled mini-batches for training.

- :func:`accumulate` and :func:`solve_source` give the exact least-squares optimum in one
  pass plus refinement passes (``torchlinreg.solve``), over any Source
  (:mod:`torchlinreg.sources`); a file source's columns go to the solver without copies.
- :class:`ShuffledBatches` streams shuffled mini-batches to a ``DataLoader`` for training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from . import filesource
from .columns import zero_weights_error
from .config import check_seed
from .errors import DataError
from .filesource import CHUNK_ROWS, FileSource, check_positive, open_files
from .solve import MAX_PASSES, RANK_RTOL, LstsqSolution, QRAccumulator
from .solve import needs_refinement
from .solve import refine as refine_solution

if TYPE_CHECKING:
    from .sources import Source

BUFFER_ROWS = 262_144  # rows in the shuffle buffer: rows mix with the ~4 chunks around them


def accumulate(source: Source | str | os.PathLike, *, chunk_rows: int = CHUNK_ROWS,
               fit_intercept: bool = True) -> QRAccumulator:
    """One pass over a source into a :class:`~torchlinreg.solve.QRAccumulator`.

    ``source`` is a Source (:mod:`torchlinreg.sources`) or a path streamed with the default columns.
    Memory for a file source: about three record batches of ``source.read_bytes`` at most (see
    :func:`torchlinreg.filesource._read_ahead`), one chunk's QR workspace, and the small R factor.
    """
    source = _as_source(source)
    acc = QRAccumulator(len(source.feature_names), len(source.target_names), fit_intercept=fit_intercept)
    check_positive("chunk_rows", chunk_rows)
    fold(source, acc, chunk_rows)
    if acc.weighted and acc.sum_weights == 0:
        raise zero_weights_error(getattr(source, "where", "the data"), source.weight_name)
    return acc


def fold(source: Source, acc: QRAccumulator, chunk_rows: int, part: int = 0, n_parts: int = 1) -> None:
    """Chunks number ``part``, ``part + n_parts``, ... of ``source`` into ``acc``.

    A file source's chunks go column by column, as read: NaN and inf are found from each block's
    Gram matrix, not by scanning the values; only then is the chunk converted again with the
    checks, whose message names the file, column and row.
    """
    if not isinstance(source, FileSource):
        for X, y, w in source.chunks(chunk_rows, part, n_parts):
            acc.update(X, y, w)
        return
    with _sharing_cores():
        for pieces in source._groups(chunk_rows, part, n_parts):
            columns, w = source._columns(pieces)
            try:
                acc.update_columns(columns, w)  # blocked inside: one Gram pass per block
            except DataError:
                source._convert(pieces)  # raises naming the file, column and row of a NaN or inf
                source._check_magnitudes(pieces)  # ... or of a value whose square overflows
                raise
            del pieces, columns, w  # not held while the next chunk is read


@contextmanager
def _sharing_cores():
    """PyTorch on one thread fewer while the read-ahead thread decodes the next record batch.

    pyarrow's decoding and PyTorch's threads otherwise contend for the same cores (PyTorch's
    spin while they wait), and the pass runs slower than on fewer threads. Restored after.
    """
    threads = torch.get_num_threads()
    if filesource.READ_AHEAD <= 0 or threads <= 1:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def solve_source(
    source: Source | str | os.PathLike,
    *,
    chunk_rows: int = CHUNK_ROWS,
    refine: bool | None = None,
    fit_intercept: bool = True,
    rtol: float = RANK_RTOL,
    max_passes: int = MAX_PASSES,
) -> LstsqSolution:
    """The exact least-squares solution of a Source (or a path, streamed): one pass, then refinement passes.

    Equal to :func:`torchlinreg.solve.lstsq` on the whole data read at once (same QR, the rows
    grouped differently; refinement brings both to float64 accuracy). Each refinement pass
    re-reads the source; ``refine=None`` (default) refines only an ill-conditioned design
    (``solve.needs_refinement``), ``refine=False`` makes one pass only.

    Raises
    ------
    DataError
        From the source's chunks, before any solution exists.
    """
    source = _as_source(source)
    acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names, rtol=rtol)
    if refine is None:
        refine = needs_refinement(solution)
    if not refine:
        return solution
    return refine_solution(solution, lambda: source.chunks(chunk_rows), max_passes=max_passes)


def _as_source(source) -> Source:
    return source if hasattr(source, "chunks") and hasattr(source, "feature_names") else open_files(source)


# ---- mini-batches for training ------------------------------------------------------------------

class ShuffledBatches(torch.utils.data.IterableDataset):
    """Shuffled mini-batches streamed from a source; use with ``DataLoader(dataset, batch_size=None)``.

    Chunks are read in file order into a buffer of about ``buffer_rows`` rows; when full, the
    buffer is permuted, the whole batches it can spare are emitted as slices, and half of it
    stays to mix with the next chunks. Each epoch yields every row (of this part) exactly
    once, in batches of ``batch_size`` rows, the last one possibly smaller. The order depends
    only on ``seed + epoch`` (call :meth:`set_epoch` before each epoch, as with
    ``DistributedSampler``) and on the part.

    Parts: with ``DataLoader`` workers and/or ranks (``rank``, ``world_size``; by default
    those of an initialised ``torch.distributed``), chunk ``i`` of the source belongs to part
    ``i % n_parts``, so the parts hold disjoint rows and together all of them. Every part
    reads the whole source but converts and checks only its own chunks; parts may differ by
    a chunk of rows (use ``torch.distributed.algorithms.Join`` for uneven inputs under DDP).

    Yields
    ------
    ``(X, y)`` or, with a weight column, ``(X, y, w)``: tensors of shape (b, n_features),
    (b, n_targets), (b,) in ``dtype``.
    """

    def __init__(self, source: Source, batch_size: int, *, buffer_rows: int = BUFFER_ROWS, seed: int = 0,
                 chunk_rows: int = CHUNK_ROWS, dtype: torch.dtype = torch.float32,
                 rank: int | None = None, world_size: int | None = None):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("buffer_rows", buffer_rows), ("chunk_rows", chunk_rows)):
            check_positive(name, value)
        check_seed("seed", seed)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point torch dtype such as torch.float32, got {dtype!r}")
        if (rank is None) != (world_size is None):
            raise ValueError("give both rank and world_size, or neither")
        if world_size is not None:
            check_positive("world_size", world_size)
            if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
                raise ValueError(f"rank must be an integer from 0 to world_size - 1 = {world_size - 1}, got {rank!r}")
        self.source = source
        self.batch_size = batch_size
        self.buffer_rows = buffer_rows
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.dtype = dtype
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch, which with ``seed`` decides the order (call it before iterating each epoch)."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = epoch

    def __repr__(self) -> str:
        return (f"ShuffledBatches({self.source!r}, batch_size={self.batch_size}, buffer_rows={self.buffer_rows}, "
                f"seed={self.seed}, epoch={self.epoch})")

    def _part(self) -> tuple[int, int]:
        """This iterator's part and the number of parts: ranks times DataLoader workers."""
        rank, world = self.rank, self.world_size
        if rank is None:
            dist = torch.distributed
            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return rank * workers + worker, world * workers

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        part, n_parts = self._part()
        rng = np.random.default_rng([self.seed + self.epoch, part])
        pending, size = [], 0  # chunks (and the buffer's kept rows) not yet shuffled
        keep = self.buffer_rows // 2
        full = max(self.buffer_rows, keep + self.batch_size)  # so that every shuffle has a whole batch to give
        for chunk in self.source.chunks(self.chunk_rows, part, n_parts):
            pending.append(chunk)
            size += len(chunk[0])
            if size >= full:
                pool = _shuffled(pending, rng)
                n_out = (size - keep) // self.batch_size * self.batch_size
                yield from self._batches(pool, n_out)
                pending, size = [tuple(a[n_out:] if a is not None else None for a in pool)], size - n_out
        if size:
            yield from self._batches(_shuffled(pending, rng), size)

    def _batches(self, pool, n_rows: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """The first ``n_rows`` rows of the shuffled pool as tensors, split into batches (views, no per-row work)."""
        parts = [torch.from_numpy(a[:n_rows]).to(self.dtype).split(self.batch_size) for a in pool if a is not None]
        yield from zip(*parts)


def _shuffled(pending: list[tuple], rng: np.random.Generator) -> tuple:
    """The pending chunks concatenated, their rows in one random order."""
    order = rng.permutation(sum(len(chunk[0]) for chunk in pending))
    return tuple(None if chunk_parts[0] is None else np.concatenate(chunk_parts)[order]
                 for chunk_parts in zip(*pending))
