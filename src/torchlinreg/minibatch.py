"""Mini-batch training when the rows are not one tensor in this process: streamed from files, or
shared among the processes of a torchrun job (``DistributedDataParallel``).

:func:`train_minibatches` runs the one training loop (:func:`torchlinreg.loop.train`) on a
:class:`torchlinreg.objectives.Batches` objective, as mini-batches of rows in memory do: each
epoch records the loss on all rows at the parameters it starts from, then takes one
``zero_grad``, forward, ``backward``, ``step`` per batch. Two things differ, because no
process holds all rows: the loss on all rows comes from the R factor of ``[X, 1, y]``
(a :class:`torchlinreg.gram.GramObjective` of one pass, merged across processes; float64,
no pass over the data), and the batches come from a function of the epoch:

- :func:`shard_steps`: rows in memory, each process holding a shard; step ``k`` of the job
  is batch ``k`` of single-process training with the same seed (:func:`torchlinreg.distributed.epoch_batches`),
  so the job gives the single-process result to rounding.
- :func:`stream_steps`: rows streamed from a file through :class:`torchlinreg.minibatch.ShuffledBatches`
  and a ``DataLoader`` (seeded shuffle buffer, whole batches). Under torchrun each process
  streams its own chunks and step ``k`` joins every process's ``k``-th batch; the batches
  then differ from a single-process run's (whose buffer mixes all chunks), so only the
  optimum they lead to is the same.

With several processes the model is wrapped in ``DistributedDataParallel``; the batch loss
is scaled (:func:`torchlinreg.distributed.ddp_mse`) so that DDP's averaged gradient is that
of the whole step's MSE.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from . import loop
from .callbacks import Callback
from .config import TrainConfig
from .defaults import BUFFER_ROWS, CHUNK_ROWS
from .distributed import Dist, ddp_mse, epoch_batches, wrap_ddp
from .errors import ConfigError, DataError, check_positive, check_seed
from .gram import GramObjective
from .history import History
from .model import LinearModel
from .objectives import Batches, Step
Steps = Callable[[int], Iterable[Step]]  # epoch (from 0) -> this process's part of every step


def train_minibatches(
    model: LinearModel,
    objective: GramObjective,
    steps: Steps,
    config: TrainConfig = TrainConfig(),
    callbacks: Iterable[Callback] = (),
    *,
    scaler=None,
    dist: Dist | None = None,
    val_objective: GramObjective | None = None,
    checkpoint=None,
) -> History:
    """Train ``model`` in place on the batches ``steps`` gives; the history of every epoch.

    Parameters
    ----------
    model : the model (its initial parameters must be the same in every process)
    objective : the loss of all training rows (of every process), in the data's units
    steps : ``steps(epoch)`` for epoch 0, 1, ... gives this process's part of each step:
        ``(X, y, w, batch_rows)`` with ``X`` (k, d), ``y`` (k, m) in the model's units
        (standardised with ``scaler``), ``w`` (k,) or None, and ``batch_rows`` the rows of
        the step in all processes. Every process must give the same number of steps,
        some maybe with ``k = 0``.
    config : training settings; ``batch_size`` is the steps' business
    scaler : the :class:`~torchlinreg.scaling.Standardizer` the batches were standardised
        with; losses and parameters are recorded in the data's units
    dist : the job; None or one process trains the model itself
    val_objective : the loss of held-out rows, recorded as ``val_loss``
    checkpoint : a :class:`torchlinreg.checkpoint.Checkpointer`, one process only: as in
        :func:`torchlinreg.training.train`, it saves the loop's state after epochs and, when
        resuming, starts after its epoch with that state. The batches must then depend on
        the epoch alone (``stream_steps``' do: a seeded shuffle per epoch, see
        :class:`torchlinreg.minibatch.ShuffledBatches`), so that epoch ``t`` of a resumed run
        gets the batches of epoch ``t`` of a run never interrupted.

    Returns
    -------
    History, as :func:`torchlinreg.training.train` records it (status, message, final
    parameters; the stopping rule and the divergence guard work the same).
    """
    model.to(_device(config, dist), getattr(torch, config.dtype))
    several = dist is not None and dist.is_distributed
    if several and checkpoint is not None:
        raise ConfigError("checkpoints need an output folder ({out_dir}) and one process (not torchrun)")
    net = wrap_ddp(model, dist) if dist is not None else model  # DDP: rank 0's parameters on every rank
    batch_loss = None
    if several:
        def batch_loss(y_pred, y, w, step_rows):  # DDP averages gradients: scaled so the mean is the step's
            return ddp_mse(y_pred, y, step_rows, dist, w)
    objective = Batches(objective, steps, scaler=scaler, net=net, batch_loss=batch_loss, val_objective=val_objective)
    return loop.train(model, objective, config, callbacks, checkpoint=checkpoint)


def _device(config: TrainConfig, dist: Dist | None) -> torch.device:
    """NCCL's GPU under torchrun on CUDA; else ``config.device``; else the CPU."""
    if dist is not None and dist.backend == "nccl":
        return dist.device
    if config.device is None:
        return torch.device("cpu")
    from .devices import resolve_device

    device = resolve_device(config.device, config.dtype)
    if dist is not None and dist.is_distributed and device.type != "cpu":
        raise ConfigError(f"under torchrun the processes talk through gloo on the CPU unless {{device}} is cuda, "
                          f"but {{device={config.device!r}}} chose {device}; pass {{device='cuda'}} or {{device='cpu'}}")
    return device


def shard_steps(X: torch.Tensor, y: torch.Tensor, sample_weight: torch.Tensor | None, n_rows: int,
                batch_size: int | None, seed: int, dist: Dist) -> Steps:
    """Steps over rows in memory, this process holding rows ``shard(n_rows, dist)``: ``X``, ``y``, ``sample_weight``.

    Every epoch draws the permutation single-process training draws (a generator seeded
    with ``seed``, one ``randperm`` per epoch), so step ``k`` covers batch ``k`` of
    :func:`torchlinreg.training.train` with the same seed and ``batch_size``. Call the
    returned function once per epoch, in order.
    """
    order = torch.Generator().manual_seed(seed)  # as training.train: mini-batch shuffling

    def steps(epoch: int) -> Iterator[Step]:
        for idx, batch_rows in epoch_batches(n_rows, batch_size, order, dist):
            yield X[idx], y[idx], None if sample_weight is None else sample_weight[idx], batch_rows

    return steps


def local_batch_sizes(batch_size: int, world_size: int) -> list[int]:
    """Each process's rows of a step of ``batch_size`` rows: equal shares, the first ones one row more."""
    if batch_size < world_size:
        raise ConfigError(f"{{batch_size={batch_size}}} is below the {world_size} processes, which each need at "
                          f"least one row per step; pass {{batch_size={world_size}}} or more")
    base, extra = divmod(batch_size, world_size)
    return [base + (r < extra) for r in range(world_size)]


def stream_steps(source, batch_size: int, counts: list[int], dist: Dist, *, seed: int, chunk_rows: int,
                 scaler=None, buffer_rows: int | None = None) -> Steps:
    """Steps streamed from ``source``: this process's chunks, shuffled in a seeded buffer, in whole batches.

    ``counts``: the rows of every process's part of the source (chunk ``i`` of ``chunk_rows``
    rows belongs to process ``i % world_size``, as :func:`torchlinreg.exact.accumulate_shard`
    reads them). A step of ``batch_size`` rows takes ``local_batch_sizes(batch_size, world_size)[r]``
    of them from process ``r``; every process runs ``max_r ceil(counts[r] / local[r])`` steps
    an epoch, giving no rows once its part is done. With one process this is
    ``DataLoader(ShuffledBatches(source, batch_size, seed=seed))``. The batches are float64
    (standardised with ``scaler``); the training loop casts them to the model's dtype.
    """
    from torch.utils.data import DataLoader


    world, rank = dist.world_size, dist.rank
    local = local_batch_sizes(batch_size, world)
    n_steps = max(math.ceil(n / b) for n, b in zip(counts, local))
    mine = [min(local[rank], max(0, counts[rank] - k * local[rank])) for k in range(n_steps)]
    rows = [sum(min(b, max(0, n - k * b)) for n, b in zip(counts, local)) for k in range(n_steps)]
    dataset = ShuffledBatches(source, local[rank], seed=seed, chunk_rows=chunk_rows, dtype=torch.float64,
                              buffer_rows=BUFFER_ROWS if buffer_rows is None else buffer_rows,
                              rank=rank, world_size=world)
    loader = DataLoader(dataset, batch_size=None)  # the dataset gives whole batches
    d, m = len(source.feature_names), len(source.target_names)
    weighted = source.weight_name is not None

    def steps(epoch: int) -> Iterator[Step]:
        dataset.set_epoch(epoch)
        batches = iter(loader)
        for k in range(n_steps):
            batch = next(batches, None) if mine[k] else None
            if batch is None:
                X, y = torch.zeros(0, d, dtype=torch.float64), torch.zeros(0, m, dtype=torch.float64)
                w = torch.zeros(0, dtype=torch.float64) if weighted else None
            else:
                X, y, w = batch if weighted else (*batch, None)
            if len(X) != mine[k]:
                raise DataError(f"{source.paths[0].parent if len(source.paths) > 1 else source.paths[0]}: "
                                f"gave {len(X)} rows for step {k + 1} of epoch {epoch + 1} where the first pass "
                                f"counted {mine[k]}; the data changed while training: fit it again")
            if scaler is not None:
                X, y = scaler.transform_X(X), scaler.transform_y(y)
            yield X, y, w, rows[k]
        if next(batches, None) is not None:
            raise DataError(f"{source.paths[0]}: holds more rows than the first pass counted; the data changed "
                            "while training: fit it again")

    return steps


# ---- shuffled mini-batches streamed from a source -----------------------------------------------



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
