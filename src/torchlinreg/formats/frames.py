"""Data frames held in memory (pandas, polars, or anything that gives an Arrow table) read as a data file is.

A frame becomes an Arrow table, and from there the columns are chosen and checked by the rules
of the files (:mod:`torchlinreg.columns`): the default features are every other numeric column,
a text column is left out with a warning, and a missing value, NaN or infinity is refused with
the column and the 1-based row named.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..columns import Table
from ..data import Dataset

FRAME = "the data frame"  # how messages name a frame, where they name a file by its path


def is_frame(data) -> bool:
    """A pandas or polars DataFrame (or another frame that converts itself to Arrow)."""
    return hasattr(data, "columns") and (hasattr(data, "to_arrow") or type(data).__module__.startswith("pandas"))


def arrow_table(frame):
    """``frame`` as a ``pyarrow.Table`` with string column names, its index left out."""
    import pyarrow as pa

    if hasattr(frame, "to_arrow"):  # polars
        table = frame.to_arrow()
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    return table.rename_columns([str(name) for name in table.column_names])


def read_frame(frame, *, target: str | Sequence[str] | None = None, features: Sequence[str] | None = None,
               weights: str | None = None) -> Dataset:
    """A regression data set from the columns of a DataFrame, chosen and checked as a file's.

    ``target``: the target column name(s) (default: the last column); ``features``: the input
    columns (default: every other numeric column); ``weights``: a column of sample weights.
    """
    import torch

    from . import table_dataset

    table = arrow_table(frame)
    names = table.column_names
    whole = Table(table.schema, table.num_rows, lambda chosen: table.select(chosen), (names[-1],) if names else ())
    target = [target] if isinstance(target, str) else target
    return table_dataset(FRAME, whole, target, features, weights, torch.float64)
