"""Several processes and machines: row shards, one merge of the R factors, DDP, and failures that end every rank.

Launched by ``torchrun --nproc-per-node N [--nnodes M ...] -m torchlinreg ...``, every process
reads its place in the job from the environment (:func:`from_env`), takes a contiguous share
of the rows (:func:`shard`) and accumulates their R factor; :func:`merge_accumulators` gathers
the ranks' R factors in one collective and every rank merges them in rank order, so that all
hold the same global R and the exact solve, the loss at any parameters and full-batch descent
need no further communication. Streamed files are split by chunks instead
(:func:`accumulate_shard`: chunk ``i`` is rank ``i % world_size``'s), and sums over every
rank's rows (metrics, the statistics' pass) are gathered by :func:`gather_vectors`. Mini-batch
training wraps the model in ``DistributedDataParallel`` (:func:`wrap_ddp`); :func:`epoch_batches`
and :func:`ddp_mse` make its steps those of single-process training with the same seed and
batch size (see :mod:`torchlinreg.minibatch` for the loop).

Failures. A collective waits for every rank, so one rank that raises would leave the others
waiting until the timeout with a message that names nobody. :func:`run_guarded` runs a phase
and then checks in with the other ranks through the job's key-value store (outside the process
group; torchrun's agent keeps it, so it outlives a crashed rank): a rank that fails writes
why and closes its connections (peers blocked in a collective get an error at once); a rank
that finishes waits for the others' word at most ``timeout_s``. Either way every rank ends
with a :class:`DistributedError` that names the rank that failed or did not arrive.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, DataError, DistributedError, TorchlinregError
from .solve import QRAccumulator, add_pass_sums
from .passes import fold

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 300.0  # a collective or check-in waits this long for the slowest rank
_GRACE_S = 0.5  # after a collective broke, how long to wait for the rank that broke it to say why (it says so first)
_POLL_MAX_S = 0.02  # longest sleep between two looks at the store
_HEADER = 8  # n_samples, sum_weights, n_positive, weighted, rows of R, n_features, n_targets, fit_intercept
_steps = itertools.count()  # checkpoints in this process; every rank passes the same ones in the same order


@dataclass(frozen=True)
class Dist:
    """This process's place in the job.

    ``world_size`` 1 and ``backend`` None when not launched by torchrun (or launched with one
    process): every function here then does the single-process thing without communicating.
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
    import torch.distributed as td

    if not td.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; install one that has it to run "
                          "several processes")
    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    if backend == "nccl":
        if not torch.cuda.is_available() or local_rank >= torch.cuda.device_count():
            raise ConfigError(f"rank {rank} needs GPU {local_rank} (LOCAL_RANK) but this machine has "
                              f"{torch.cuda.device_count() if torch.cuda.is_available() else 'no'} CUDA GPU(s); "
                              "start at most that many processes per node, or use --device cpu")
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
    check-in through the store (:func:`run_guarded`), which torchrun's agent keeps, not a
    rank, so no rank has to wait for another to leave. On a failure :func:`_abort` leaves
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


# --- the exact solve: one all_gather of the R factors ----------------------------------------------

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
    from .solve import needs_refinement, refine

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
    from .solve import needs_refinement, refine

    acc, counts = accumulate_shard(source, dist, chunk_rows=chunk_rows)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
    if needs_refinement(solution):
        solution = refine(solution, lambda: source._chunks(chunk_rows, dist.rank, dist.world_size),
                          combine=sum_pass(dist))
    return acc, counts, solution


# --- the same data on every rank ---------------------------------------------------------------------

def _exchange(dist: Dist, tag: str, text: str, what: str) -> list[str]:
    """Every rank's ``text``, in rank order, through the store; names the ranks that did not arrive in time."""
    step = f"step{next(_steps)}/{tag}"
    store = dist.store
    store.set(f"{step}/{dist.rank}", text)
    keys = [f"{step}/{r}" for r in range(dist.world_size)]
    deadline, pause = time.monotonic() + dist.timeout_s, 0.001
    while not store.check(keys):
        if time.monotonic() > deadline:
            missing = tuple(r for r, k in enumerate(keys) if not store.check([k]))
            raise DistributedError(f"rank {dist.rank} stopped: {_ranks(missing)} did not reach {what} within "
                                   f"{dist.timeout_s:g} s (hung, slow or dead; raise the timeout if slow)",
                                   rank=dist.rank, failed_ranks=missing)
        time.sleep(pause)
        pause = min(2 * pause, _POLL_MAX_S)
    return [store.get(k).decode() for k in keys]


def _shown(names) -> str:
    names = [str(n) for n in names]
    return ", ".join(names) if len(names) <= 8 else f"{', '.join(names[:4])}, ..., {names[-1]}"


def _schema_difference(ref: tuple, other: tuple, r: int) -> str | None:
    """What rank ``r`` sees differently from rank 0, or None: ``(names, dtypes[, n_rows])`` each."""
    (names0, dtypes0, *rows0), (names, dtypes, *rows) = ref, other
    if len(names) != len(names0):
        return (f"rank {r} sees {len(names)} column(s) ({_shown(names)}) but rank 0 sees {len(names0)} "
                f"({_shown(names0)})")
    for i, (a, b) in enumerate(zip(names0, names)):
        if a != b:
            return f"column {i + 1} is {b!r} on rank {r} but {a!r} on rank 0"
    for name, a, b in zip(names0, dtypes0, dtypes):
        if a != b:
            return f"column {name!r} is {b} on rank {r} but {a} on rank 0"
    if rows0 != rows:
        return f"rank {r} sees {rows[0] if rows else 'an unknown number of'} rows but rank 0 sees " \
               f"{rows0[0] if rows0 else 'an unknown number of'}"
    return None


def check_same_schema(names: tuple[str, ...], dtypes: tuple[str, ...], dist: Dist, *,
                      n_rows: int | None = None) -> None:
    """Refuse to start when the ranks see different columns or dtypes (or, given ``n_rows``, row counts).

    Every rank raises the same :class:`~torchlinreg.errors.DataError`, naming the first rank
    whose columns differ from rank 0's and what differs. Call it on every rank, before the
    first collective (whose tensors' sizes depend on the columns). ``n_rows``: the rows of
    the whole data set as this rank sees it, when every rank reads the whole file and keeps
    its :func:`shard`: shards of files that differ in length would overlap or leave gaps.
    """
    names, dtypes = tuple(str(n) for n in names), tuple(str(t) for t in dtypes)
    if len(names) != len(dtypes):
        raise ValueError(f"got {len(names)} column names but {len(dtypes)} dtypes; give one dtype per column")
    if not dist.is_distributed:
        return
    mine = [names, dtypes] + ([] if n_rows is None else [int(n_rows)])
    seen = [tuple(tuple(v) if isinstance(v, list) else v for v in json.loads(s)) for s in
            _exchange(dist, "schema", json.dumps(mine), "the check of the columns")]
    for r in range(1, dist.world_size):
        difference = _schema_difference(seen[0], seen[r], r)
        if difference is not None:
            raise DataError(f"the ranks see different data: {difference}; every rank must read the same columns "
                            "with the same types (check the file each rank reads)")


# --- mini-batch training -----------------------------------------------------------------------------

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


# --- failures end every rank, with the name of the one at fault ----------------------------------

def _first_line(exc: BaseException) -> str:
    """The first line of an error's message, without gloo's "[path/file.cc:123] " prefix."""
    lines = str(exc).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", lines[0] if lines else "")
    return text[:300] or type(exc).__name__


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TorchlinregError) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _ranks(ranks) -> str:
    ranks = list(ranks)
    return f"rank {ranks[0]}" if len(ranks) == 1 else f"ranks {', '.join(map(str, ranks))}"


def _is_communication_error(exc: BaseException) -> bool:
    """A collective that broke: a peer closed its connection, or the timeout passed."""
    import torch.distributed as td

    if isinstance(exc, getattr(td, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(s in text for s in (
        "gloo", "NCCL", "nccl", "Connection closed", "Connection reset", "Timed out", "timed out"))


def _failures(dist: Dist, step: str) -> list[tuple[int, str]]:
    """The ranks that failed at ``step`` and why, in rank order."""
    found = []
    for r in range(dist.world_size):
        key = f"{step}/status/{r}"
        if dist.store.check([key]):
            value = dist.store.get(key).decode()
            if value.startswith("failed:"):
                found.append((r, value[len("failed:"):]))
    return found


def _missing(dist: Dist, step: str) -> tuple[int, ...]:
    return tuple(r for r in range(dist.world_size) if not dist.store.check([f"{step}/status/{r}"]))


def _failed_error(dist: Dist, failures, what: str) -> DistributedError:
    reasons = "; ".join(f"rank {r} failed: {message}" for r, message in failures)
    return DistributedError(f"{reasons} (rank {dist.rank} stopped too, during {what})", rank=dist.rank,
                            failed_ranks=tuple(r for r, _ in failures))


def _missing_error(dist: Dist, missing, what: str, detail: str = "") -> DistributedError:
    return DistributedError(f"{_ranks(missing)} did not reach the end of {what} within {dist.timeout_s:g} s "
                            f"(hung, slow or dead; raise the timeout if slow); rank {dist.rank} stopped{detail}",
                            rank=dist.rank, failed_ranks=tuple(missing))


def _abort(dist: Dist) -> None:
    """Leave the process group now: peers blocked in a collective with this rank get an error at once."""
    with contextlib.suppress(Exception):
        shutdown(dist)


def _on_failure(dist: Dist, step: str, what: str, exc: Exception) -> DistributedError:
    store, me = dist.store, dist.rank
    if _is_communication_error(exc):  # most likely another rank's failure broke the collective: find it
        store.set(f"{step}/status/{me}", "stopped")  # at once, so that ranks stopped the same way do not name me
        deadline, pause = time.monotonic() + min(_GRACE_S, dist.timeout_s), 0.001
        while not store.add(f"{step}/failed", 0) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(2 * pause, _POLL_MAX_S)
        failures, missing = _failures(dist, step), _missing(dist, step)
        if failures or missing:
            store.add(f"{step}/done", 1)
            _abort(dist)
            if failures:
                return _failed_error(dist, failures, what)
            return _missing_error(dist, missing, what, f" ({_first_line(exc)})")
    # This rank's own failure: say why before leaving, so that the others can name it. The
    # failure is counted before the arrival: a rank checking in must never see all arrived and none failed.
    message = _describe(exc)
    store.set(f"{step}/status/{me}", "failed:" + message)
    store.add(f"{step}/failed", 1)
    store.add(f"{step}/done", 1)
    _abort(dist)
    return DistributedError(f"rank {me} failed: {message} (during {what})", rank=me, failed_ranks=(me,))


def _check_in(dist: Dist, step: str, what: str) -> None:
    """Say this rank finished ``step``; wait for every rank's word; raise if one failed or is missing."""
    store = dist.store
    store.set(f"{step}/status/{dist.rank}", "ok")
    store.add(f"{step}/done", 1)
    deadline, pause = time.monotonic() + dist.timeout_s, 0.001
    while True:
        if store.add(f"{step}/failed", 0):
            raise _failed_error(dist, _failures(dist, step), what)
        if store.add(f"{step}/done", 0) >= dist.world_size:
            return
        if time.monotonic() > deadline:
            raise _missing_error(dist, _missing(dist, step), what)
        time.sleep(pause)
        pause = min(2 * pause, _POLL_MAX_S)


def run_guarded(fn: Callable[[], T], dist: Dist, *, what: str = "this step") -> T:
    """Run ``fn()`` on this rank; if any rank fails or does not arrive, every rank raises :class:`DistributedError`.

    A rank whose ``fn`` raises records ``"rank R failed: <message>"`` in the job's store,
    leaves the process group (so peers blocked in a collective with it get an error at once
    rather than at the timeout) and raises that message, chained to the original error.
    A rank whose collective broke, or whose ``fn`` finished, learns from the store which
    rank failed, or, after ``dist.timeout_s``, which ranks never arrived, and raises a
    message naming them. ``what`` names the phase in those messages. Every rank must call
    ``run_guarded`` the same number of times, in the same order. With one process this is
    just ``fn()``, whose exceptions pass unchanged.
    """
    if not dist.is_distributed:
        return fn()
    step = f"step{next(_steps)}"
    try:
        result = fn()
    except Exception as exc:
        try:
            error = _on_failure(dist, step, what, exc)
        except Exception as lost:  # the store itself is gone (its host died): say what is known
            error = DistributedError(f"rank {dist.rank} failed: {_describe(exc)} (and lost contact with the "
                                     f"other ranks: {_first_line(lost)})", rank=dist.rank, failed_ranks=())
        raise error from exc
    try:
        _check_in(dist, step, what)
    except DistributedError:
        raise
    except Exception as lost:
        raise DistributedError(f"rank {dist.rank} stopped after {what}: lost contact with the other ranks "
                               f"({_first_line(lost)}); the rank that hosts the store may have died",
                               rank=dist.rank, failed_ranks=()) from lost
    return result


# --- output from rank 0 only -------------------------------------------------------------------------

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
