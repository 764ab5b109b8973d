"""A command's place in a torchrun job: ``Job``, one process when not launched by torchrun.

With one process nothing else of ``torchlinreg.distributed`` (and no PyTorch) is imported.
"""

from __future__ import annotations

import os
from typing import Callable, TypeVar

from .group import DEFAULT_TIMEOUT_S, Dist

T = TypeVar("T")


class Job:
    """A command's place in a torchrun job (one process when not launched by torchrun).

    Used as ``with Job(timeout_s=..., device=...) as job:``. Under torchrun (``WORLD_SIZE``
    above 1) entering joins the process group (:func:`~torchlinreg.distributed.group.from_env`)
    and keeps ranks other than 0 quiet; leaving leaves the group. Every rank reads the data and
    checks that all ranks see the same columns (:meth:`load`, :meth:`load_source`); each phase
    runs guarded (:meth:`run`), so a rank that fails or hangs stops every rank with a message
    naming it; only rank 0 prints.

    Parameters
    ----------
    timeout_s : seconds a rank waits for the others before every rank stops
    device : where the model trains ("cpu", "cuda", "cuda:N" or "auto"): NCCL on a GPU, else gloo
    dtype : the training precision, for what "auto" resolves to

    Attributes
    ----------
    dist : Dist, this process's place (a single-process ``Dist`` when not launched by torchrun)
    """

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S, device: str = "cpu", dtype: str = "float32"):
        self.timeout_s, self.device, self.dtype = timeout_s, device, dtype

    def __repr__(self) -> str:
        return f"Job(timeout_s={self.timeout_s!r}, device={self.device!r}, dtype={self.dtype!r})"

    def __enter__(self) -> Job:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            self.dist, self._quiet = Dist(timeout_s=self.timeout_s), None
            return self
        from .group import from_env, quiet_unless_main

        device = self.device
        if device == "auto":  # NCCL when auto means a GPU
            from ..devices import resolve_device

            device = resolve_device("auto", self.dtype).type
        self.dist = from_env(timeout_s=self.timeout_s, device=device)
        self._quiet = quiet_unless_main(self.dist)
        self._quiet.__enter__()
        return self

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def load(self, read: Callable[[], T]) -> T:
        """``read()``'s Dataset (or ArraySource), read on every rank; the ranks must see the same columns and rows."""
        data = self.run(read, "reading the data")
        if self.dist.is_distributed:
            from .schema import check_same_schema

            rows = getattr(data, "dataset", data)
            names = rows.feature_names + rows.target_names
            check_same_schema(names, (str(rows.X.dtype),) * len(names), self.dist, n_rows=rows.n_samples)
        return data

    def agree_any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (the ranks' memory may differ): one all_gather."""
        if not self.dist.is_distributed:
            return flag
        from .merge import gather_vectors

        return any(v[0] for v in gather_vectors([float(flag)], self.dist))

    def load_source(self, open_: Callable[[], T]) -> T:
        """A StreamSource opened on every rank; the ranks must see the same columns (and Parquet rows)."""
        source = self.run(open_, "opening the data")
        if self.dist.is_distributed:
            from .schema import check_same_schema

            check_same_schema(source.columns, ("float64",) * len(source.columns), self.dist, n_rows=source.n_rows)
        return source

    def run(self, fn: Callable[[], T], what: str) -> T:
        """``fn()``; under torchrun guarded (:func:`~torchlinreg.distributed.guarded.run_guarded`), ``what`` naming it."""
        if not self.dist.is_distributed:
            return fn()
        from .guarded import run_guarded

        return run_guarded(fn, self.dist, what=what)

    def __exit__(self, *exc) -> bool:
        if self._quiet is not None:
            self._quiet.__exit__(*exc)
            from .group import shutdown

            shutdown(self.dist)
        return False
