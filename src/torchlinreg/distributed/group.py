"""This process's place in a torchrun job: ``Dist``, joining and leaving the process group, row shards.

Launched by ``torchrun --nproc-per-node N [--nnodes M ...] -m torchlinreg ...``, every process
reads its place in the job from the environment (:func:`from_env`) and takes a contiguous share
of the rows (:func:`shard`); only rank 0 prints (:func:`quiet_unless_main`). PyTorch is imported
only when a process group is joined, so a single process pays nothing for this module.
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import ConfigError, DistributedError
from ..config import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    import torch



@dataclass(frozen=True)
class Dist:
    """This process's place in the job.

    ``world_size`` 1 and ``backend`` None when not launched by torchrun (or launched with one
    process): every function of ``torchlinreg.distributed`` then does the single-process thing
    without communicating.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # rank among the processes of this machine; picks the GPU
    backend: str | None = None  # "gloo" (CPU) or "nccl" (CUDA) once the process group is up
    timeout_s: float = DEFAULT_TIMEOUT_S  # for collectives and check-ins
    store: object = field(default=None, repr=False, compare=False)  # the job's key-value store (c10d Store)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def device(self) -> torch.device:
        """Where this rank's collectives put their tensors: its GPU with NCCL, else the CPU."""
        import torch

        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")


def _env_int(name: str, default: int | None = None) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name} must be an integer, got {value!r}; "
                          f"launch with torchrun, which sets it") from None


def from_env(*, timeout_s: float = DEFAULT_TIMEOUT_S, device: str = "cpu") -> Dist:
    """This process's :class:`Dist`, from the variables torchrun sets; joins the process group when there are several.

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. With
    ``WORLD_SIZE`` above 1 it initialises the default process group, gloo, or NCCL when
    ``device`` is CUDA (each rank then uses GPU ``LOCAL_RANK``), waiting at most ``timeout_s``
    for the other ranks; otherwise (no torchrun, or one process) it returns a single-process
    ``Dist`` and starts nothing.
    """
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < float("inf")):
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size < 1:
        raise ConfigError(f"WORLD_SIZE must be at least 1, got {world_size}")
    if world_size == 1:
        return Dist(timeout_s=float(timeout_s))
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if rank is None or not 0 <= rank < world_size:
        raise ConfigError(f"WORLD_SIZE is {world_size} but RANK is {os.environ.get('RANK')!r}; it must be "
                          f"0..{world_size - 1}: launch with torchrun, which sets both")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise ConfigError(f"{' and '.join(missing)} not set: launch with torchrun, which sets them")
    import torch
    import torch.distributed as td

    if not td.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; install one that has it to run "
                          "several processes")
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank} needs GPU {local_rank} (LOCAL_RANK) but this machine has "
                              f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} CUDA GPU(s); "
                              "start at most that many processes per node, or use {device='cpu'}")
        torch.cuda.set_device(local_rank)
    timeout = timedelta(seconds=timeout_s)
    where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
    _import_before_the_group()
    try:
        # The store torchrun's agent keeps (TORCHELASTIC_USE_AGENT_STORE): it outlives any worker,
        # so the ranks can still tell each other why after one of them died.
        store, _, _ = next(td.rendezvous("env://", rank, world_size, timeout=timeout))
        td.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout,
                              device_id=torch.device("cuda", local_rank) if backend == "nccl" else None)
    except Exception as exc:
        raise DistributedError(f"rank {rank} could not join the other {world_size - 1} rank(s) at {where} within "
                               f"{timeout_s:g} s: {_first_line(exc)}", rank=rank, failed_ranks=()) from exc
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")  # torchrun restarts reuse the store: fresh keys
    return Dist(rank, world_size, local_rank, backend, float(timeout_s),
                td.PrefixStore(f"torchlinreg/{attempt}", store))


def _import_before_the_group() -> None:
    """Import now the modules that would otherwise keep the process group alive after :func:`shutdown`.

    ``torch.distributed.nn.functional`` gives its functions the default argument
    ``group=group.WORLD``, evaluated at import. ``DistributedDataParallel`` imports it on first
    use (through ``torch.distributed._shard``), after the group exists, so those defaults held
    the group for the life of the process: ``destroy_process_group`` then only unregistered
    it, and gloo's worker and TCP threads and connections lived on until the interpreter's
    last garbage collection at exit, which tore them down while the interpreter itself was
    half gone and the other rank was closing its end: the likely source of a rare abort of a
    rank at exit, "terminate called without an active exception". Imported before the group,
    the defaults are None (the default group at call time).
    """
    with contextlib.suppress(ImportError):
        import torch.distributed.nn.functional  # noqa: F401


def shutdown(dist: Dist) -> None:
    """Leave the process group (nothing to do for a single process, or when already left).

    The group is destroyed here, with the interpreter whole, once nothing else holds it: not
    torch's own modules (see :func:`_import_before_the_group`), nor a DDP wrapper, whose
    reducer holds it until the wrapper is gone (the training loops drop theirs on return).
    Gloo's threads are then joined and its connections closed before this returns. At the
    end of a job no rank has a collective in flight with a peer: each phase ends with a
    check-in through the store (``guarded.run_guarded``), which torchrun's agent keeps, not a
    rank, so no rank has to wait for another to leave. On a failure ``guarded._abort`` leaves
    while peers may be in a collective on purpose: the closed connections end their wait.
    """
    import torch.distributed as td

    if dist.is_distributed and td.is_available() and td.is_initialized():
        td.destroy_process_group()


def shard(n_rows: int, dist: Dist) -> slice:
    """This rank's rows: a contiguous range; the ranks' ranges cover ``0..n_rows`` once, sizes differ by at most 1."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise ValueError(f"n_rows must be a non-negative integer, got {n_rows!r}")
    base, extra = divmod(int(n_rows), dist.world_size)
    start = dist.rank * base + min(dist.rank, extra)  # the first `extra` ranks take one row more
    return slice(start, start + base + (dist.rank < extra))


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, without gloo's "[path/file.cc:123] " prefix."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", lines[0] if lines else "")
    return text[:300] or type(exc).__name__


@contextlib.contextmanager
def quiet_unless_main(dist: Dist) -> Iterator[None]:
    """On ranks other than 0, drop what is printed to stdout and ignore warnings (rank 0 reports them once).

    Errors still reach stderr on every rank, so a failing rank can say why.
    """
    if dist.is_main:
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
