"""Parquet: the footer (names, types, row count), the whole file, or record batches of the chosen columns."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa

from ..columns import Table, clean
from ..errors import DataError

_BUFFER = 1 << 20  # bytes read at a time from a column chunk, instead of whole row groups


def parquet_schema(path: Path) -> tuple[pa.Schema, int]:
    """A Parquet file's schema and row count from its footer, read whole or streamed.

    A damaged file can make pyarrow raise more than ArrowException and OSError (UnicodeDecodeError
    for a column name, ValueError, MemoryError for a size): any of them means the file is unusable.
    """
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(str(path)) as pf:
            schema, num_rows = pf.schema_arrow, pf.metadata.num_rows
            schema.names  # noqa: B018 (decodes the column names: not UTF-8 raises here)
    except Exception as exc:
        raise DataError(f"{path}: is not a readable Parquet file ({clean(exc)}); "
                        "check that it is a Parquet file") from None
    return schema, num_rows


def open_parquet(path: Path, suffix: str, head: bytes) -> Table:
    """A Parquet file to read whole, as a :class:`~torchlinreg.columns.Table`."""
    import pyarrow.parquet as pq

    schema, num_rows = parquet_schema(path)

    def read(names: list[str]) -> pa.Table:
        try:
            with pq.ParquetFile(str(path)) as pf:
                batches = list(pf.iter_batches(columns=names))
            table = pa.Table.from_batches(batches).select(names)  # no batches: ValueError
        except Exception as exc:
            raise DataError(f"{path}: cannot be read ({clean(exc)}); the file may be damaged") from None
        if table.num_rows != num_rows:
            raise DataError(f"{path}: its footer says {num_rows} rows but its pages hold {table.num_rows}; "
                            "the file is damaged: write it again")
        return table

    return Table(schema, num_rows, read, (schema.names[-1],) if schema.names else ())


def parquet_batches(path: Path, columns: Sequence[str], chunk_rows: int, read_bytes: int) -> Iterator[pa.RecordBatch]:
    """The named columns in record batches.

    Record batches as large as the largest row group when it holds at most ``read_bytes`` of
    values (fewer, larger batches decode with less overhead: 10% less CPU than chunk-sized ones),
    else of as many rows as fit, and never fewer than ``chunk_rows``. pre_buffer=False with a
    buffered stream reads pages as needed: a row group of any size never has to sit in
    memory whole, compressed or decoded (measured: a 264 MB row group read at +80 MB).
    (pyarrow's dataset scanner, tried too, holds two whole row groups and took as much CPU here.)
    """
    import pyarrow.parquet as pq

    row = 1
    try:
        with pq.ParquetFile(str(path), pre_buffer=False, buffer_size=_BUFFER) as pf:
            meta = pf.metadata
            largest = max((meta.row_group(i).num_rows for i in range(meta.num_row_groups)), default=0)
            batch_rows = max(chunk_rows, min(largest, read_bytes // (8 * len(columns))))
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
                yield batch
                row += len(batch)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be read from row {row} on ({clean(exc)}); "
                        "the file may be damaged") from None


def parquet_sample(path: Path, schema: pa.Schema, rows: int) -> pa.Table:
    """The first ``rows`` rows (or more: a page) of a Parquet file, for deciding which columns are text
    (as a whole read does)."""
    batch = next(parquet_batches(path, schema.names, rows, read_bytes=0), None)
    return pa.Table.from_batches([batch]) if batch is not None else schema.empty_table()
