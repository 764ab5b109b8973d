"""Mini-batch training across ranks: ``DistributedDataParallel``, each epoch's batches, the scaled MSE.

:func:`wrap_ddp` wraps the model; :func:`epoch_batches` and :func:`ddp_mse` make its steps
those of single-process training with the same seed and batch size (see
:mod:`torchlinreg.minibatch` for the loop).
"""

from __future__ import annotations

import torch
from torch import nn

from .group import Dist, shard


def wrap_ddp(model: nn.Module, dist: Dist) -> nn.Module:
    """``DistributedDataParallel(model)`` for mini-batch training; ``model`` itself with one process.

    DDP copies rank 0's parameters to every rank at construction and averages the gradients
    over the ranks in every ``backward`` (gloo on CPU, NCCL on GPU: put the model on
    ``dist.device`` first). Every rank must then take the same number of steps:
    :func:`epoch_batches` sees to that.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not dist.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[dist.local_rank] if dist.backend == "nccl" else None)


def epoch_batches(n_rows: int, batch_size: int | None, generator: torch.Generator,
                  dist: Dist) -> list[tuple[torch.Tensor, int]]:
    """One epoch of mini-batches: per step, this rank's rows (indices into its shard) and the step's rows in all.

    Every rank draws the same permutation of all ``n_rows`` rows that single-process
    training draws (``torch.randperm(n_rows, generator=generator).split(batch_size)``) and
    keeps the rows of each batch that lie in its shard. So every rank takes the same number
    of steps (DDP needs that: a rank with one step more would wait forever), some with few
    or no rows of their own, and step ``k`` of the job covers exactly batch ``k`` of
    single-process training. ``batch_size`` None is one full batch.
    """
    rows = shard(n_rows, dist)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if batch_size is None or batch_size >= n_rows:  # full batch: single-process training draws no permutation
        return [(torch.arange(rows.stop - rows.start), n_rows)]
    perm = torch.randperm(n_rows, generator=generator)  # (n_rows,), the same on every rank
    mine = (perm >= rows.start) & (perm < rows.stop)
    steps = -(-n_rows // batch_size)
    counts = torch.bincount(torch.arange(n_rows)[mine] // batch_size, minlength=steps)  # my rows per step
    sizes = [min(batch_size, n_rows - k * batch_size) for k in range(steps)]
    return list(zip((perm[mine] - rows.start).split(counts.tolist()), sizes))


def ddp_mse(y_pred: torch.Tensor, y: torch.Tensor, batch_rows: int, dist: Dist,
            sample_weight: torch.Tensor | None = None) -> torch.Tensor:
    """This rank's part of the MSE of a whole batch, scaled so that DDP's averaged gradient is the batch MSE's.

    ``Σ (y_pred - y)² · world_size / (batch_rows · n_targets)``: DDP divides the sum of the
    ranks' gradients by ``world_size``, which leaves the gradient of the MSE over the
    ``batch_rows`` rows of all ranks, however they are split. The value itself is this rank's
    share only. With ``sample_weight`` (this rank's rows' weights, shape (k,)) it is the
    weighted MSE ``Σ w r² / (Σ w · n_targets)`` of the whole batch, whose ``Σ w`` over all
    ranks one ``all_reduce`` finds (every rank must then pass weights, also for 0 rows).
    """
    if sample_weight is None:
        return ((y_pred - y) ** 2).sum() * (dist.world_size / (batch_rows * y.shape[1]))
    total = sample_weight.detach().sum()
    if dist.is_distributed:
        import torch.distributed as td

        total = total.to(dist.device).clone()
        td.all_reduce(total)
        total = total.to(y_pred.device)
    return ((y_pred - y) ** 2 * sample_weight[:, None]).sum() * (dist.world_size / (total * y.shape[1]))
