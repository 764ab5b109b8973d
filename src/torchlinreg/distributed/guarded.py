"""Failures that end every rank, with the name of the one at fault; small texts exchanged through the store.

A collective waits for every rank, so one rank that raises would leave the others
waiting until the timeout with a message that names nobody. :func:`run_guarded` runs a phase
and then checks in with the other ranks through the job's key-value store (outside the process
group; torchrun's agent keeps it, so it outlives a crashed rank): a rank that fails writes
why and closes its connections (peers blocked in a collective get an error at once); a rank
that finishes waits for the others' word at most ``timeout_s``. Either way every rank ends
with a :class:`DistributedError` that names the rank that failed or did not arrive.
:func:`_exchange` gives every rank the others' texts through the same store (the check that
the ranks see the same columns, :mod:`torchlinreg.distributed.schema`).

A failure keeps its kind on every rank: when the failing rank's error is a :class:`DataError`,
:class:`ModelFileError` or :class:`CheckpointError` (a damaged or unusable file), every rank
raises a :class:`DistributedError` that is also one of those (:class:`RankDataError`, ...),
so the command exits as it does in one process (1 for a damaged file, not 2).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from typing import Callable, TypeVar

from ..errors import CheckpointError, DataError, DistributedError, ModelFileError, TorchlinregError
from .group import Dist, _first_line, shutdown

T = TypeVar("T")

_GRACE_S = 0.5  # after a collective broke, how long to wait for the rank that broke it to say why (it says so first)
_POLL_MAX_S = 0.02  # longest sleep between two looks at the store
_steps = itertools.count()  # checkpoints in this process; every rank passes the same ones in the same order


class RankDataError(DistributedError, DataError):
    """A rank's data could not be used (a :class:`DataError` there): every rank of the job stops with this."""


class RankModelFileError(DistributedError, ModelFileError):
    """A rank's model file could not be loaded (a :class:`ModelFileError` there): every rank stops with this."""


class RankCheckpointError(DistributedError, CheckpointError):
    """A rank's checkpoint could not be resumed from (a :class:`CheckpointError` there): every rank stops with this."""


# a rank's error -> what every rank raises; most specific first (a CheckpointError is a ModelFileError)
_KINDS = ((CheckpointError, RankCheckpointError), (ModelFileError, RankModelFileError), (DataError, RankDataError))


def _kind(exc: BaseException) -> str:
    """The name of the kind of error a failure is raised as on every rank ("" for a plain DistributedError)."""
    return next((cls.__name__ for cls, _ in _KINDS if isinstance(exc, cls)), "")


def _error(kind: str, message: str, *, rank: int, failed_ranks: tuple[int, ...]) -> DistributedError:
    """The error every rank raises for a failure of ``kind`` (sent between ranks by its name)."""
    cls = next((rank_cls for cls, rank_cls in _KINDS if cls.__name__ == kind), DistributedError)
    return cls(message, rank=rank, failed_ranks=failed_ranks)


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


def _describe(exc: BaseException) -> str:
    text = (exc.template if isinstance(exc, TorchlinregError) else str(exc)).strip()  # its settings, unrendered
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


def _failures(dist: Dist, step: str) -> list[tuple[int, str, str]]:
    """The ranks that failed at ``step``, the kind of their error (:func:`_kind`) and why, in rank order."""
    found = []
    for r in range(dist.world_size):
        key = f"{step}/status/{r}"
        if dist.store.check([key]):
            value = dist.store.get(key).decode()
            if value.startswith("failed:"):  # failed:<kind>:<message>
                kind, _, message = value[len("failed:"):].partition(":")
                found.append((r, kind, message))
    return found


def _missing(dist: Dist, step: str) -> tuple[int, ...]:
    return tuple(r for r in range(dist.world_size) if not dist.store.check([f"{step}/status/{r}"]))


def _failed_error(dist: Dist, failures, what: str) -> DistributedError:
    """Every failure named; raised as the kind of the first (in rank order), as one process raises its first."""
    reasons = "; ".join(f"rank {r} failed: {message}" for r, _, message in failures)
    return _error(failures[0][1], f"{reasons} (rank {dist.rank} stopped too, during {what})", rank=dist.rank,
                  failed_ranks=tuple(r for r, _, _ in failures))


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
    message, kind = _describe(exc), _kind(exc)
    store.set(f"{step}/status/{me}", f"failed:{kind}:{message}")
    store.add(f"{step}/failed", 1)
    store.add(f"{step}/done", 1)
    _abort(dist)
    return _error(kind, f"rank {me} failed: {message} (during {what})", rank=me, failed_ranks=(me,))


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
            error = _error(_kind(exc), f"rank {dist.rank} failed: {_describe(exc)} (and lost contact with the "
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
