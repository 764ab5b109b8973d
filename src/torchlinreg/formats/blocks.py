"""CSV blocks that grow for a long row.

pyarrow parses text a block at a time and cannot parse a row (a long quoted field, a long header)
that does not fit in one block: "straddling object straddles two block boundaries". The readers
of :mod:`.text` start with a 1 MiB block and double it when a row does not fit, up to a limit
(:func:`block_limit`: an eighth of the memory budget, as pyarrow holds about seven times a block
while it parses it); a row longer than the limit is refused by number (:func:`too_long`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import DataError

MAX_BLOCK = 1 << 30  # pyarrow's block size is a 32-bit integer: no row longer than this can be parsed
BLOCK_SHARE = 8  # pyarrow holds about 7 times a block while parsing it (measured: a 60 MB header, 415 MB peak)
_SCAN = 1 << 22  # bytes looked at a time when looking for the long row


def block_limit(budget: int | None = None) -> int:
    """The largest CSV block a read may grow to within ``budget`` bytes (default: the default budget)."""
    from ..memory import default_budget

    budget = default_budget() if budget is None else int(budget)
    return max(1 << 20, min(MAX_BLOCK, budget // BLOCK_SHARE))


def straddles(exc: BaseException) -> bool:
    """Whether pyarrow stopped on a row longer than its block."""
    return isinstance(exc, pa.ArrowInvalid) and "straddl" in str(exc)


def grown(block: int, limit: int, path: Path) -> int:
    """The next block size after ``block`` did not hold a row; past ``limit``, the row is refused."""
    if block >= limit:
        raise too_long(path, limit)
    return min(2 * block, limit)


def too_long(path: Path, limit: int) -> DataError:
    """The message for a row longer than ``limit`` bytes, naming it (found by :func:`long_row`)."""
    from ..memory import format_size

    row = long_row(path, limit)
    where = "a row" if row is None else "the header line" if row == 0 else f"row {row}"
    return DataError(f"{path}: {where} is longer than {format_size(limit)}, the longest a CSV row may be "
                     f"within {{max_memory}} (an {BLOCK_SHARE}th of it, as parsing a row takes several times its "
                     f"size); raise {{max_memory}}, or shorten the row's longest field")


def row_ends(text: bytes) -> np.ndarray:
    """The offsets of the newlines of ``text`` that end a row: outside double quotes (vectorised: a
    piece of megabytes may hold a quoted field of many lines)."""
    a = np.frombuffer(text, np.uint8)
    outside = np.cumsum(a == ord('"')) % 2 == 0
    return np.flatnonzero((a == ord("\n")) & outside)


def long_row(path: Path, limit: int) -> int | None:
    """The number of the first row longer than ``limit`` bytes (0: the header line), or None.

    Rows end at a newline outside double quotes (a quoted field may hold newlines; a doubled quote
    inside one leaves the count of quotes even, as a closed field does).
    """
    rows, start, offset, parity = 0, 0, 0, 0  # rows ended so far; where the current row starts
    with open(path, "rb") as f:
        while chunk := f.read(_SCAN):
            a = np.frombuffer(chunk, np.uint8)
            quotes = np.cumsum(a == ord('"')) + parity
            ends = np.flatnonzero((a == ord("\n")) & (quotes % 2 == 0)) + offset
            lengths = np.diff(ends, prepend=start - 1) - 1  # bytes of each row ended here, its newline aside
            longer = np.flatnonzero(lengths > limit)
            if longer.size:
                return rows + int(longer[0])
            if ends.size:
                rows, start = rows + ends.size, int(ends[-1]) + 1
            parity, offset = int(quotes[-1]) % 2, offset + len(chunk)
            if offset - start > limit:
                return rows
    return None
