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
- :func:`stream_steps`: rows streamed from a file through :class:`torchlinreg.stream.ShuffledBatches`
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

import torch

from . import loop
from .callbacks import Callback
from .config import TrainConfig
from .distributed import Dist, ddp_mse, epoch_batches, wrap_ddp
from .errors import ConfigError, DataError
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
        :class:`torchlinreg.stream.ShuffledBatches`), so that epoch ``t`` of a resumed run
        gets the batches of epoch ``t`` of a run never interrupted.

    Returns
    -------
    History, as :func:`torchlinreg.training.train` records it (status, message, final
    parameters; the stopping rule and the divergence guard work the same).
    """
    model.to(_device(config, dist), getattr(torch, config.dtype))
    several = dist is not None and dist.is_distributed
    if several and checkpoint is not None:
        raise ConfigError("checkpoints need an output folder (--out) and one process (not torchrun)")
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
        raise ConfigError(f"under torchrun the processes talk through gloo on the CPU unless --device is cuda, "
                          f"but --device {config.device} chose {device}; pass --device cuda or --device cpu")
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
        raise ConfigError(f"--batch-size {batch_size} is below the {world_size} processes, which each need at "
                          f"least one row per step; pass --batch-size {world_size} or more")
    base, extra = divmod(batch_size, world_size)
    return [base + (r < extra) for r in range(world_size)]


def stream_steps(source, batch_size: int, counts: list[int], dist: Dist, *, seed: int, chunk_rows: int,
                 scaler=None, buffer_rows: int | None = None) -> Steps:
    """Steps streamed from ``source``: this process's chunks, shuffled in a seeded buffer, in whole batches.

    ``counts``: the rows of every process's part of the source (chunk ``i`` of ``chunk_rows``
    rows belongs to process ``i % world_size``, as :func:`torchlinreg.distributed.accumulate_shard`
    reads them). A step of ``batch_size`` rows takes ``local_batch_sizes(batch_size, world_size)[r]``
    of them from process ``r``; every process runs ``max_r ceil(counts[r] / local[r])`` steps
    an epoch, giving no rows once its part is done. With one process this is
    ``DataLoader(ShuffledBatches(source, batch_size, seed=seed))``. The batches are float64
    (standardised with ``scaler``); the training loop casts them to the model's dtype.
    """
    from torch.utils.data import DataLoader

    from .passes import BUFFER_ROWS, ShuffledBatches

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

