"""The file source: CSV, TSV and Parquet files, or a folder of them, read chunk by chunk.

Memory stays bounded by the chunk size and the read size, not the file size: Parquet is
read page by page in record batches of at most ``read_bytes`` of values (as large as the
largest row group when it fits; see :func:`torchlinreg.formats.parquet_batches`), CSV block by
block (``pyarrow.csv.open_csv``), and only the selected columns are decoded; a background
thread reads one batch ahead (:func:`_read_ahead`). Columns are chosen, and every value is
checked, by the rules of :mod:`torchlinreg.columns`, as a whole read chooses and checks them;
an error found in a late chunk names the file and its data row (1-based, the header not counted).

- :func:`open_files` resolves a file or folder once: its files, format and columns.
- :meth:`FileSource.chunks` gives float64 ``(X, y, w)`` chunks in file order, or a part's share.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from . import formats
from .columns import ROLE_FIX, Table, check_has_rows, check_weights, choose, column_values, first_too_large
from .columns import float64_values, is_numeric, magnitude_error, suffix_text
from .defaults import CHUNK_ROWS
from .errors import DataError, SettingsWarning, check_part, check_positive
from .memory import STREAM_FORMATS, STREAM_READ_BYTES

FORMATS = STREAM_FORMATS  # suffix: format
READ_AHEAD = 1  # record batches read by a background thread while the caller works on one
_FLOAT64 = pa.float64()


@dataclass(frozen=True)
class FileSource:
    """A file, or a folder of files of one format with the same columns, ready to stream.

    Attributes
    ----------
    paths : the files, in reading order (a folder's sorted by name)
    format : ``"csv"``, ``"tsv"`` or ``"parquet"``
    feature_names, target_names : the columns making ``X`` and ``y``
    weight_name : the sample-weight column, or None
    n_rows : data rows in all files; known from the metadata for Parquet, None for CSV/TSV
        until a complete pass of :meth:`chunks` has counted them
    read_bytes : values per Parquet record batch read at once, at most (a whole row group when
        it fits, never less than a chunk); see :func:`torchlinreg.memory.stream_read_bytes`
    max_block : bytes of CSV/TSV text a block may grow to for a long row (a longer row is refused);
        see :func:`torchlinreg.formats.block_limit`
    origin : the file or folder :func:`open_files` opened (an output folder must not be it, or be in it)
    """

    paths: tuple[Path, ...]
    format: str
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    weight_name: str | None = None
    n_rows: int | None = field(default=None, compare=False)
    read_bytes: int = field(default=STREAM_READ_BYTES, compare=False, repr=False)
    max_block: int = field(default=formats.MAX_BLOCK, compare=False, repr=False)
    origin: Path | None = field(default=None, compare=False, repr=False)  # the file or folder opened
    _bool_columns: tuple[str, ...] = field(default=(), repr=False)  # CSV columns of true/false text

    in_memory = False  # a Source read in chunks (see torchlinreg.sources)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns read: features, targets, then the weight column."""
        return self.feature_names + self.target_names + ((self.weight_name,) if self.weight_name else ())

    @property
    def where(self) -> Path:
        """The file, or the folder of the files, for messages."""
        return self.paths[0] if len(self.paths) == 1 else self.paths[0].parent

    def chunks(self, rows: int = CHUNK_ROWS, part: int = 0,
               parts: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """The rows in file order, as chunks of ``rows`` rows (the last may be shorter); with
        ``parts`` > 1 only chunks number ``part``, ``part + parts``, ... (a rank's share).

        Yields
        ------
        X : ndarray of shape (k, n_features), float64
        y : ndarray of shape (k, n_targets), float64
        w : ndarray of shape (k,), float64, or None without a weight column

        Raises
        ------
        DataError
            A value is missing, NaN, infinite or not a number, a weight is negative, or a row
            cannot be parsed; the message names the file, the column and the row. Chunks
            before that one have already been yielded, so callers that write output should
            finish a pass (for example :func:`torchlinreg.exact.accumulate`) before writing anything.
        """
        check_positive("rows", rows)
        check_part(part, parts)
        return self._chunks(rows, part, parts)

    def fold(self, acc, rows: int, part: int = 0, parts: int = 1) -> None:
        """Chunks number ``part``, ``part + parts``, ... into ``acc`` (a QRAccumulator), column by column as read.

        NaN and inf are found from each block's Gram matrix, not by scanning the values; only then
        is the chunk converted again with the checks, whose message names the file, column and row.
        One process (``parts == 1``) takes each record batch as read, whatever ``rows`` says: the
        chunks only decide which rows are whose, and fewer, larger calls cost less (the solver cuts
        them into blocks of its own, and ``solve.kernels`` measures its kernels on them).
        """
        for pieces in self._groups(rows, part, parts, as_read=parts == 1):
            columns, w = self._columns(pieces)
            try:
                acc.update_columns(columns, w)  # blocked inside: one Gram pass per block
            except DataError:
                self._convert(pieces)  # raises naming the file, column and row of a NaN or inf
                self._check_magnitudes(pieces)  # ... or of a value whose square overflows
                raise
            del pieces, columns, w  # not held while the next chunk is read

    def _chunks(self, chunk_rows: int, part: int, n_parts: int):
        """Chunks number ``part``, ``part + n_parts``, ...; the others are read but not converted or checked."""
        for pieces in self._groups(chunk_rows, part, n_parts):
            yield self._convert(pieces)

    def _groups(self, chunk_rows: int, part: int, n_parts: int, as_read: bool = False):
        """The pieces of chunks number ``part``, ``part + n_parts``, ... (see :func:`_group`), unconverted;
        ``as_read``: each record batch as read is a chunk."""
        seen = 0
        batches = _read_ahead(self._pieces(chunk_rows), READ_AHEAD)
        for index, pieces in enumerate(([piece] for piece in batches) if as_read else _group(batches, chunk_rows)):
            seen += sum(len(batch) for _, _, batch in pieces)
            if index % n_parts == part:
                yield pieces
        check_has_rows(self.where, seen)
        if self.n_rows is None and n_parts == 1:
            object.__setattr__(self, "n_rows", seen)  # a cache, not part of equality: counted once, never changes

    def _pieces(self, chunk_rows: int) -> Iterator[tuple[Path, int, pa.RecordBatch]]:
        """Every file's record batches of the selected columns, with the file row of their first row."""
        for path in self.paths:
            row = 1
            if self.format == "parquet":
                batches = formats.parquet_batches(path, self.columns, chunk_rows, self.read_bytes)
            else:
                batches = formats.text_batches(path, self.format, self._fixes(), self._bool_columns,
                                             self.max_block)
            for batch in batches:
                if len(batch):
                    yield path, row, batch
                    row += len(batch)

    def _fixes(self) -> dict[str, str]:
        """Each column read, in order, and the end of the message about a bad value in it."""
        d, m = len(self.feature_names), len(self.target_names)
        return {name: ROLE_FIX["feature" if j < d else "target" if j < d + m else "weight"]
                for j, name in enumerate(self.columns)}

    def _values(self, path: Path, first_row: int, column: pa.Array, j: int, finite: bool = True) -> np.ndarray:
        """Column ``j`` of one piece as float64 values, checked (``finite=False``: NaN and inf are let through)."""
        values = float64_values(column) if column.type == _FLOAT64 and not column.null_count else None
        # a NaN or inf makes the sum non-finite (as can a sum that overflows: then each value is looked at)
        if values is None or finite and not np.isfinite(values.sum()) and not np.isfinite(values).all():
            name = self.columns[j]  # the checks and messages of a whole read
            values = column_values(path, name, pa.chunked_array([column]), first_row, self._fixes()[name])
        if self.weight_name and j == len(self.columns) - 1:
            check_weights(path, self.weight_name, values, first_row, all_rows=False)
        return values

    def _convert(self, pieces) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One chunk's pieces as checked float64 arrays ``X`` (k, d) and ``y`` (k, m), F-ordered, and ``w``."""
        columns, w = self._columns(pieces, finite=True)
        d = len(self.feature_names)
        X, y = (np.empty((len(columns[0]), n), order="F") for n in (d, len(self.target_names)))
        for j, values in enumerate(columns):
            (X[:, j] if j < d else y[:, j - d])[:] = values
        return X, y, w

    def _check_magnitudes(self, pieces) -> None:
        """Refuse, naming the file, column and row, a feature or target whose square overflows float64
        (as :func:`torchlinreg.columns.check_magnitudes`: the first row, features before targets)."""
        d = len(self.feature_names)
        for path, first_row, batch in pieces:
            for columns in (range(d), range(d, d + len(self.target_names))):
                values = np.column_stack([self._values(path, first_row, batch.column(j), j) for j in columns])
                found = first_too_large(values)
                if found is not None:
                    row, col, value = found
                    raise magnitude_error(path, self.columns[columns[col]], first_row + row, value)

    def _columns(self, pieces, finite: bool = False) -> tuple[list[np.ndarray], np.ndarray | None]:
        """One chunk's feature and target columns, and its weights: views of the read batches where
        a column is float64 without nulls in one piece (no copy). NaN and inf are looked for only
        with ``finite`` (the weights always: one column)."""
        columns = []
        for j in range(len(self.columns)):
            check = finite or self.weight_name is not None and j == len(self.columns) - 1
            parts = [self._values(path, first_row, batch.column(j), j, finite=check)
                     for path, first_row, batch in pieces]
            columns.append(parts[0] if len(parts) == 1 else np.concatenate(parts))
        return (columns[:-1], columns[-1]) if self.weight_name else (columns, None)

    def __repr__(self) -> str:
        where = str(self.paths[0]) if len(self.paths) == 1 else f"{self.paths[0].parent} ({len(self.paths)} files)"
        weights = f", weights={self.weight_name!r}" if self.weight_name else ""
        return (f"FileSource({where}, format={self.format!r}, features={list(self.feature_names)}, "
                f"targets={list(self.target_names)}{weights}, n_rows={self.n_rows})")


# ---- opening: files, format, columns ----------------------------------------------------------

def open_files(
    path: str | os.PathLike,
    *,
    target: Sequence[str] | str | None = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    read_bytes: int = STREAM_READ_BYTES,
    max_block: int | None = None,
) -> FileSource:
    """Resolve a CSV, TSV or Parquet file, or a folder of them, for streaming.

    Parameters
    ----------
    path : a file (``.csv``, ``.tsv``, ``.parquet``, ``.pq``) or a folder; a folder's files
        with those extensions (names starting with ``.`` or ``_`` aside) are read in name
        order and must share one format and the same columns.
    target, features, weights : as in :func:`torchlinreg.formats.read_dataset`: by default the
        target is the last column and the features every other numeric column (a text column
        is left out with a warning; a text column holding some numbers is an error naming the row).
    read_bytes : values per Parquet record batch read at once, at most (see
        :func:`torchlinreg.memory.stream_read_bytes` for one within a memory budget)
    max_block : bytes a CSV/TSV block may grow to for a long row, at most (default
        ``formats.MAX_BLOCK``; :func:`torchlinreg.formats.block_limit` gives one within a memory budget):
        a longer row is refused, naming it

    Returns
    -------
    FileSource; only the files' metadata (Parquet) or first block of text (CSV) is read.
    For CSV the column types are taken from the first block; a later value that is not a
    number is reported by :meth:`FileSource.chunks` with its row.

    Raises
    ------
    DataError
        The path is missing or unreadable, a folder holds no data files or files that differ
        in format or columns, or a named column is missing or unusable.
    """
    check_positive("read_bytes", read_bytes)
    max_block = formats.MAX_BLOCK if max_block is None else max_block
    check_positive("max_block", max_block)
    path = Path(path)
    paths = _data_files(path)
    fmt = FORMATS[paths[0].suffix.lower()]
    schema, sample, sample_path, n_rows = _open_all(path, paths, fmt, max_block)
    table = Table(schema, len(sample), lambda names: sample.select(names),
                  (schema.names[-1],) if schema.names else ())
    chosen = choose(path, table, target, features, weights)
    for role, name in chosen.roles():  # a text column named explicitly fails here, on its first bad row
        kind = schema.field(name).type
        if not (is_numeric(kind) or pa.types.is_null(kind)):
            column_values(sample_path, name, sample.column(name), fix=ROLE_FIX[role])
    bools = tuple(n for n in chosen.columns if fmt != "parquet" and pa.types.is_boolean(schema.field(n).type))
    return FileSource(tuple(paths), fmt, chosen.features, chosen.targets, chosen.weight[0] if chosen.weight else None,
                      n_rows if fmt == "parquet" else None, read_bytes=read_bytes, max_block=max_block,
                      origin=path, _bool_columns=bools)


def _data_files(path: Path) -> list[Path]:
    """The file itself, or a folder's data files in name order; each checked to be readable and non-empty."""
    if path.is_dir():
        paths = folder_files(path)
        if not paths:
            raise DataError(f"{path}: holds no {', '.join(FORMATS)} files; pass a folder of data files or one file")
    else:
        paths = [path]
    for p in paths:
        if p.suffix.lower() not in FORMATS and p.is_file():
            raise DataError(f"{p}: cannot stream {suffix_text(p)} files; use one of {', '.join(FORMATS)} "
                            "(save the data as Parquet, or read it whole with read_dataset)")
        suffix, head = formats.check_file(p)
        fmt = FORMATS[suffix]
        if fmt != FORMATS[paths[0].suffix.lower()]:
            raise DataError(f"{p}: is {fmt.upper()} but {paths[0].name} is {FORMATS[paths[0].suffix.lower()].upper()}; "
                            f"keep files of one format in {path}")
        if fmt != "parquet":
            formats.check_text(p, fmt.upper(), head)
    return paths


def folder_files(folder: Path) -> list[Path]:
    """A folder's data files in name order: its regular files named ``*.csv``, ``*.tsv``, ``*.parquet``,
    ``*.pq`` (names starting with ``.`` or ``_`` aside: hidden files, Spark's ``_SUCCESS``).

    Subfolders are not read, and other files neither: a warning names them. An entry with a data
    file's name that is not a regular file (a dangling symbolic link, a FIFO, a folder named
    ``b.parquet``) is an error naming it: a folder is read whole or not at all.
    """
    paths, left = [], []
    for p in sorted(folder.iterdir()):
        if p.name.startswith((".", "_")):
            continue
        data = p.suffix.lower() in FORMATS
        if data and p.is_file():
            paths.append(p)
        elif data:
            raise DataError(f"{p}: {_not_regular(p)}, not a data file; remove it from {folder} "
                            "or replace it with the file (a folder's data files are all read)")
        else:
            left.append(f"{p.name!r}{' (a folder)' if p.is_dir() else ''}")
    if left and paths:
        warnings.warn(SettingsWarning(f"{folder}: not read: {', '.join(left[:5])}"
                                      f"{f' and {len(left) - 5} more' if len(left) > 5 else ''} "
                                      f"(only its own {', '.join(FORMATS)} files are read, not subfolders); "
                                      "move the data files there to read them"), stacklevel=3)
    return paths


def _not_regular(p: Path) -> str:
    """What a path that is not a regular file is, for a message."""
    import stat

    if p.is_symlink() and not p.exists():
        return "is a symbolic link to nothing"
    try:
        mode = p.stat().st_mode
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror or exc})"
    return ("is a folder" if stat.S_ISDIR(mode) else "is a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "is a socket" if stat.S_ISSOCK(mode) else "is a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "is not a regular file")


def _open_all(where: Path, paths: list[Path], fmt: str, max_block: int) -> tuple[pa.Schema, pa.Table, Path, int]:
    """The columns and their types, the first rows found and their file, and the row count (Parquet: all files).

    The names are every file's (checked equal); the types and the sample come from the first
    file holding rows, as a whole read would see them.
    """
    names, sample, sample_path, n_rows = None, None, paths[0], 0
    for path in paths:
        if fmt == "parquet":
            schema, file_rows = formats.parquet_schema(path)
            n_rows += file_rows
            file_sample = formats.parquet_sample(path, schema, CHUNK_ROWS) if sample is None and file_rows else None
        else:
            schema, file_sample = formats.text_head(path, fmt, max_block)
        if names is None:
            names = schema.names
            first_schema = schema
        elif schema.names != names:
            raise DataError(f"{path}: {_differs(schema.names, names, paths[0].name)}; "
                            f"give every file in {where} the same columns")
        if sample is None and file_sample is not None and len(file_sample):
            sample, sample_path = file_sample, path
    if sample is None:
        sample = first_schema.empty_table()
    return sample.schema, sample, sample_path, n_rows


def _differs(names: list[str], first: list[str], first_name: str) -> str:
    """How a file's column names differ from the first file's, as message text."""
    missing = [n for n in first if n not in names]
    extra = [n for n in names if n not in first]
    if missing:
        return f"lacks column {missing[0]!r}, which {first_name} has"
    if extra:
        return f"has column {extra[0]!r}, which {first_name} lacks"
    return f"has the columns of {first_name} in another order"


# ---- reading ahead, and regrouping batches into chunks --------------------------------------------
def _read_ahead(items: Iterator, depth: int) -> Iterator:
    """``items``, produced by a background thread up to ``depth`` ahead of the consumer.

    pyarrow decodes without holding Python's lock, so the next items are read while the
    caller works on this one. The thread starts item ``n + depth + 1`` only once the caller
    has asked for item ``n + 1``: at most ``depth + 1`` items are made and not yet passed.
    A caller that keeps part of an earlier item holds it too (``_group`` keeps the last rows
    of a record batch for the chunk they start, and so the whole batch until then). An
    exception from ``items`` is raised here, in order; closing this generator early stops
    the thread.
    """
    if depth <= 0:
        yield from items
        return
    slots = queue.Queue()
    free = threading.Semaphore(depth + 1)  # one per item alive: the caller's and those made ahead of it
    stop = threading.Event()
    done = object()

    def acquire() -> bool:  # False once the consumer has stopped
        while not stop.is_set():
            if free.acquire(timeout=0.1):
                return True
        return False

    def produce():
        try:
            while acquire():
                try:
                    item = next(items)
                except StopIteration:
                    slots.put((done, None))
                    return
                slots.put((item, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((done, exc))

    items = iter(items)
    thread = threading.Thread(target=produce, name="torchlinreg-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, exc = slots.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
            item = None  # the caller has asked for the next one: one more may be made
            free.release()
    finally:
        stop.set()
        thread.join()
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _group(pieces: Iterator[tuple[Path, int, pa.RecordBatch]], chunk_rows: int):
    """Regroup (path, first_row, batch) pieces into lists holding exactly ``chunk_rows`` rows (the last fewer)."""
    group, size = [], 0
    for path, row, batch in pieces:
        offset = 0
        while offset < len(batch):
            take = min(chunk_rows - size, len(batch) - offset)
            group.append((path, row + offset, batch.slice(offset, take)))  # a zero-copy view
            size, offset = size + take, offset + take
            if size == chunk_rows:
                yield group
                group, size = [], 0
    if group:
        yield group


def read_clusters(path: str | os.PathLike, name: str) -> np.ndarray:
    """The column ``name`` of a data file, or of a folder's files in reading order, as one array of clusters.

    For the cluster-robust covariance: any values (numbers or text), one per data row, none
    missing. The column is read whole (one value per row); the other columns are not read.
    """
    path = Path(path)
    paths = folder_files(path) if path.is_dir() else [path]
    parts = []
    for p in paths:
        table = formats.open_table(p)
        if name not in table.schema.names:
            raise DataError(f"{p}: has no column {name!r} for the clusters; choose one of its columns with "
                            "{groups}")
        column = table.read([name]).column(name)
        if column.null_count:
            row = next(i for i, v in enumerate(column.is_null().to_pylist()) if v) + 1
            raise DataError(f"{p}: the cluster column {name!r} is missing a value in row {row}; give every row "
                            "its cluster")
        parts.append(column.to_numpy(zero_copy_only=False))
    return np.concatenate(parts) if parts else np.zeros(0)
