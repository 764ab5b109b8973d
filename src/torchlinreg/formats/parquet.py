"""Parquet: the footer (names, types, row count), the whole file, or record batches of the chosen columns.

What is read is checked against the footer, whole or streamed: the row groups' row counts must
add up to the file's, every column chunk read must hold one value per row of its row group, and
every row group must deliver the rows its footer entry claims (pyarrow trusts the footer, and a
row group claiming fewer rows than its pages hold would otherwise be cut short without a word).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ..columns import Table, clean, show
from ..errors import DataError

_BUFFER = 1 << 20  # bytes read at a time from a column chunk, instead of whole row groups
_DAMAGED = "the file is damaged: write it again"


def parquet_schema(path: Path) -> tuple[pa.Schema, int]:
    """A Parquet file's schema and row count from its footer, read whole or streamed.

    A damaged file can make pyarrow raise more than ArrowException and OSError (UnicodeDecodeError
    for a column name, ValueError, MemoryError for a size): any of them means the file is unusable.
    A footer whose row groups do not add up to its row count is refused too.
    """
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(str(path)) as pf:
            schema, meta = pf.schema_arrow, pf.metadata
            schema.names  # noqa: B018 (decodes the column names: not UTF-8 raises here)
            groups = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    except Exception as exc:
        raise DataError(f"{path}: is not a readable Parquet file ({clean(exc)}); "
                        "check that it is a Parquet file") from None
    if groups != meta.num_rows:
        raise DataError(f"{path}: its footer says {meta.num_rows} rows but its row groups say {groups}; {_DAMAGED}")
    return schema, meta.num_rows


def open_parquet(path: Path, suffix: str, head: bytes) -> Table:
    """A Parquet file to read whole, as a :class:`~torchlinreg.columns.Table`."""
    schema, num_rows = parquet_schema(path)

    def read(names: list[str]) -> pa.Table:
        try:
            batches = list(parquet_batches(path, names, 1 << 16, read_bytes=0))
            table = pa.Table.from_batches(batches).select(names)  # no batches: ValueError
        except DataError:
            raise
        except Exception as exc:  # a damaged page can raise more than ArrowException (see parquet_schema)
            raise DataError(f"{path}: cannot be read ({clean(exc)}); the file may be damaged") from None
        if table.num_rows != num_rows:  # parquet_batches checked every row group; kept as a last guard
            raise DataError(f"{path}: its footer says {num_rows} rows but its pages hold {table.num_rows}; "
                            f"{_DAMAGED}")
        return table

    return Table(schema, num_rows, read, (schema.names[-1],) if schema.names else ())


def parquet_batches(path: Path, columns: Sequence[str], chunk_rows: int, read_bytes: int) -> Iterator[pa.RecordBatch]:
    """The named columns in record batches, each row group's rows checked against its footer entry.

    Record batches as large as the largest row group when it holds at most ``read_bytes`` of
    values (fewer, larger batches decode with less overhead: 10% less CPU than chunk-sized ones),
    else of as many rows as fit, and never fewer than ``chunk_rows``. pre_buffer=False with a
    buffered stream reads pages as needed: a row group of any size never has to sit in
    memory whole, compressed or decoded (measured: a 264 MB row group read at +80 MB).
    (pyarrow's dataset scanner, tried too, holds two whole row groups and took as much CPU here.)

    Raises
    ------
    DataError
        A page cannot be read, or a row group's column chunks or pages hold another number of rows
        than its footer entry says; the message names the file and the row group.
    """
    import pyarrow.parquet as pq

    row = 1
    try:
        with pq.ParquetFile(str(path), pre_buffer=False, buffer_size=_BUFFER) as pf:
            meta = pf.metadata
            largest = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
            batch_rows = max(chunk_rows, min(largest, read_bytes // (8 * max(len(columns), 1))))
            leaves = _leaves(pf, columns)
            for group in range(meta.num_row_groups):
                expected = _check_chunks(path, meta, group, leaves)
                delivered = 0
                for batch in pf.iter_batches(batch_size=batch_rows, row_groups=[group], columns=list(columns)):
                    delivered += len(batch)
                    if delivered > expected:
                        break
                    yield batch
                    row += len(batch)
                if delivered != expected:
                    raise DataError(f"{path}: row group {group + 1} holds {delivered} rows but the footer says "
                                    f"{expected}; {_DAMAGED}")
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read from row {row} on ({clean(exc)}); "
                        "the file may be damaged") from None


def _leaves(pf, columns: Sequence[str]) -> dict[str, int]:
    """The leaf column index of each named column that is flat (one value per row, nulls included)."""
    wanted = set(columns)
    schema = pf.schema
    return {schema.column(j).path: j for j in range(len(schema))
            if schema.column(j).path in wanted and schema.column(j).max_repetition_level == 0}


def _check_chunks(path: Path, meta, group: int, leaves: dict[str, int]) -> int:
    """Row group ``group``'s row count, after checking that each column chunk read holds one value per row."""
    expected = meta.row_group(group).num_rows
    for name, j in leaves.items():
        values = meta.row_group(group).column(j).num_values
        if values != expected:
            raise DataError(f"{path}: row group {group + 1} has {expected} rows in the footer but its column "
                            f"{show(name)} holds {values} values; {_DAMAGED}")
    return expected


def parquet_sample(path: Path, schema: pa.Schema, rows: int) -> pa.Table:
    """The first ``rows`` rows (or more: a page) of a Parquet file, for deciding which columns are text
    (as a whole read does)."""
    batch = next(parquet_batches(path, schema.names, rows, read_bytes=0), None)
    return pa.Table.from_batches([batch]) if batch is not None else schema.empty_table()
