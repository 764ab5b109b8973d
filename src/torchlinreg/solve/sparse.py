"""scipy.sparse ``X``: the R factor fed block by block, never the whole matrix densified.

CSR, CSC and COO matrices (and the ``sparray`` ones) are converted to CSR once (the same
non-zeros, no dense copy); then blocks of rows, ``BLOCK_ENTRIES`` dense entries each at most,
are densified one at a time and added to a ``QRAccumulator`` (``sparse_lstsq`` in this package), and
the refinement's passes over the data take the same blocks. The memory is thus that of the sparse matrix plus one block.
A NaN or inf among the stored values is refused with the message dense rows get (``numerics``).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

BLOCK_ENTRIES = 2 ** 20  # dense entries per densified block of rows: 8 MB of float64


def is_sparse(X) -> bool:
    """Whether ``X`` is a scipy.sparse matrix or array (without importing scipy when it is not)."""
    return type(X).__module__.startswith("scipy.sparse")


def row_blocks(X, Y, w=None, *, entries: int | None = None) -> Iterator[tuple]:
    """``(X_block, Y_block, w_block)`` with dense float ``X_block``; a dense ``X`` is one block."""
    if not is_sparse(X):
        yield X, Y, w
        return
    X = X.tocsr()
    rows = max(1, (entries or BLOCK_ENTRIES) // max(X.shape[1], 1))
    for start in range(0, X.shape[0], rows):
        block = slice(start, start + rows)
        yield X[block].toarray(), Y[block], None if w is None else w[block]
