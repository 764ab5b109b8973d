"""The same data on every rank: refuse to start when the ranks see different columns, dtypes or rows."""

from __future__ import annotations

import json

from ..errors import DataError
from .group import Dist
from .guarded import _exchange


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
