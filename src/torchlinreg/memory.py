"""How much memory a command may use, and whether a data file fits in it or must be streamed.

``--max-memory SIZE`` (``2G``, ``500M``, ``1.5GiB``, plain bytes) is the budget; by default
half of the memory available to this process (``MemAvailable`` in ``/proc/meminfo``, lowered
by a cgroup limit when there is one), with fallbacks where that is unknown. Under torchrun
the processes of one machine share it (each gets ``1 / LOCAL_WORLD_SIZE``).

A file's size in memory is estimated from its metadata before anything is read: rows times
columns times 8 bytes (float64). Loading a file whole holds several copies of that at once
(the table read, ``X`` and ``y``, the training copy, the diagnostics' design, predictions),
measured at about :data:`FIT_COPIES` for ``fit`` and :data:`SOLVE_COPIES` for ``solve``;
:func:`plan_reading` streams the file when those copies would not fit in the budget, and
always for a command that needs only passes over the rows (``solve``) when the format can be
streamed (:data:`STREAM_FORMATS`).

Imports nothing heavy at module level: the command line parses ``--max-memory`` before
loading PyTorch.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, render

# Peak memory of an in-memory run over the float64 size of the data (rows x columns x 8 bytes),
# measured on 500,000 x 10 CSV and Parquet files: fit +500 MB and solve +250 MB for 40 MB of data.
FIT_COPIES = 12
SOLVE_COPIES = 6
FACTOR_COPIES = 6  # (columns + 2)² float64 matrices the accumulation holds: R, the Gram sum, a block's Gram, its scaled copy, Cholesky, inverse
# ... and the solve of R holds: R padded and permuted (2), its QR, the centred block and its scaled copy, the
# SVD's U and Vᵀ and LAPACK's gesdd workspace (about 4 d² for full U and Vᵀ) and input copy
DECOMPOSITION_COPIES = 12
WIDE_FEATURES_ABOVE = 512  # as solve.wide (not imported: choosing costs no import): fewer rows go through the rows' side
FALLBACK_BUDGET = 2 << 30  # bytes, when the machine's memory cannot be read at all
STREAM_READ_BYTES = 192 << 20  # values per record batch a streamed pass reads at most (a whole row group if it fits)
STREAM_READ_SHARE = 8  # ... and at most this fraction of the budget: a pass holds about 3 batches (measured)
STREAMABLE = (".csv", ".tsv", ".parquet", ".pq")
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)
_TEXT_SAMPLE = 1 << 20  # bytes of a CSV/TSV file read to estimate its rows and columns


def parse_size(text: str) -> int:
    """Bytes in a size such as ``2G``, ``500M``, ``1.5GiB``, ``64KB`` or ``1000000``.

    K, M, G and T are powers of 1024 (with or without a trailing ``B`` or ``iB``).

    Raises
    ------
    ConfigError
        Not a size, or not above 0.
    """
    match = _SIZE.match(str(text))
    if not match:
        raise ConfigError(f"expected a size such as 2G, 500M or 1.5GiB (K, M, G, T are powers of 1024), "
                          f"got {text!r}")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise ConfigError(f"expected a size above 0 bytes, got {text!r}; pass e.g. {{max_memory=2G}}")
    return size


def format_size(n_bytes: float) -> str:
    """``1.5 GiB``, ``512 MiB``, ``900 B``: bytes in the units :func:`parse_size` reads."""
    for unit in ("T", "G", "M", "K"):
        if n_bytes >= _UNITS[unit]:
            return f"{n_bytes / _UNITS[unit]:.3g} {unit}iB"
    return f"{int(n_bytes)} B"


def _meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes, by field name; empty where there is none."""
    fields = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                parts = rest.split()
                if parts and parts[0].isdigit():
                    fields[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    except OSError:
        pass
    return fields


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, then v1); None without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # v1 writes a huge number for "no limit"
            return max(int(limit) - usage, 0)
    return None


def available_memory() -> int | None:
    """Bytes this process could still allocate: MemAvailable (else MemTotal), lowered by a cgroup limit."""
    info = _meminfo()
    room = info.get("MemAvailable", info.get("MemTotal"))
    if room is None:
        try:
            room = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            room = None
    cgroup = _cgroup_room()
    if cgroup is not None:
        room = cgroup if room is None else min(room, cgroup)
    return room


def default_budget() -> int:
    """Half of :func:`available_memory` (``FALLBACK_BUDGET`` when unknown), shared by this machine's ranks."""
    room = available_memory()
    budget = room // 2 if room else FALLBACK_BUDGET
    try:
        local_ranks = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        local_ranks = 1
    return max(budget // local_ranks, 1)


def _data_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in STREAMABLE
                      and not p.name.startswith((".", "_")))
    return [path]


def _text_shape(path: Path) -> tuple[int, int]:
    """Rows (extrapolated from the first MiB) and columns (from the header) of a CSV/TSV file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_TEXT_SAMPLE)
    lines = head.count(b"\n") + (not head.endswith(b"\n") and len(head) == size)  # a last line without \n
    header = head.split(b"\n", 1)[0]
    columns = header.count(b"\t" if path.suffix.lower() == ".tsv" else b",") + 1
    rows = max(lines - 1, 0)
    if len(head) < size and lines:
        rows = math.ceil(size * lines / len(head)) - 1  # the same bytes per line for the rest of the file
    return rows, columns


def _array_shape(path: Path) -> tuple[int, int]:
    """Rows and columns of a ``.npy`` file (from its header) or an ``.npz`` file (from its members' sizes)."""
    import numpy as np

    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return (array.shape[0], math.prod(array.shape[1:])) if array.ndim else (1, 1)
    import zipfile

    with zipfile.ZipFile(path) as z:
        values = sum(info.file_size for info in z.infolist()) // 8  # uncompressed bytes, as float64 values
    return values, 1


def estimate_shape(path: str | os.PathLike) -> tuple[int, int]:
    """Rows and columns of a data file or folder, from metadata and the first bytes only.

    Parquet: exact (its metadata). CSV/TSV: the header's columns and the first MiB's bytes
    per line applied to the whole file. ``.npy``: exact (its header). ``.npz``: the
    members' uncompressed size counted as one column of float64 values. Files that cannot
    be read count as empty here; reading them later says what is wrong.
    """
    rows = columns = 0
    for file in _data_files(Path(path)):
        suffix = file.suffix.lower()
        try:
            if suffix in (".parquet", ".pq"):
                import pyarrow.parquet as pq

                meta = pq.read_metadata(str(file))
                file_rows, file_columns = meta.num_rows, meta.num_columns
            elif suffix in (".csv", ".tsv"):
                file_rows, file_columns = _text_shape(file)
            elif suffix in (".npy", ".npz"):
                file_rows, file_columns = _array_shape(file)
            else:
                continue
        except Exception:  # noqa: BLE001 - a broken file is reported by the reader, with its details
            continue
        rows += file_rows
        columns = max(columns, file_columns)
    return rows, columns


def stream_read_bytes(budget: int | None = None) -> int:
    """Bytes of values per record batch a streamed pass may read at once within ``budget``
    (default :func:`default_budget`): ``STREAM_READ_BYTES``, less under a small budget, at least 1 MiB.

    Larger batches decode with less overhead (a whole row group costs 10% less CPU than
    chunks of 65,536 rows); a pass holds about 3 of them at its peak, with its read-ahead.
    """
    budget = default_budget() if budget is None else int(budget)
    return max(1 << 20, min(STREAM_READ_BYTES, budget // STREAM_READ_SHARE))


@dataclass(frozen=True)
class Reading:
    """How a command reads its data: ``stream`` or whole, why, and the figures behind the choice."""

    stream: bool
    reason: str
    data_bytes: int  # rows x columns x 8, estimated
    budget: int  # bytes allowed

    def __repr__(self) -> str:
        return f"Reading(stream={self.stream}, reason={self.reason!r})"


# The formats filesource.open_files reads in chunks (suffix: format); here, so that choosing costs no import.
STREAM_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}


def plan_reading(path: str | os.PathLike, budget: int | None = None, *, copies: int = FIT_COPIES,
                 stream: bool = False, command: str = "fit", one_pass: bool = False,
                 n_selected: int | None = None) -> Reading:
    """Whether ``command`` should stream ``path`` within ``budget`` bytes (default :func:`default_budget`).

    A folder, or ``stream=True``, always streams, and so does a CSV/TSV/Parquet file when the
    command needs only passes over the rows (``one_pass``: the exact solve, its statistics):
    streaming is then faster and smaller than reading whole. Otherwise a file streams when
    ``copies`` times its estimated float64 size exceeds the budget. A ``.npy``/``.npz`` file
    cannot be streamed: over the budget it is refused.

    ``n_selected``: the columns the command will use (features, targets and weights), when they
    were chosen by name; the solver's factor grows with those, not with the file's width.

    Raises
    ------
    ConfigError
        A ``.npy``/``.npz`` file too large for the budget, or ``stream`` asked for one.
    """
    path = Path(path)
    budget = default_budget() if budget is None else int(budget)
    rows, columns = estimate_shape(path)
    data_bytes = rows * columns * 8
    need = data_bytes * copies
    over = (f"{path.name} holds about {rows:,} rows x {columns} columns; read whole, {command} would need "
            f"about {format_size(need)}, over the {format_size(budget)} of {{max_memory}}")
    array = path.suffix.lower() in (".npy", ".npz") and not path.is_dir()
    if array and (stream or need > budget):
        why = "{stream=True} was asked for" if stream else over
        raise ConfigError(f"{path}: {path.suffix} files are read whole, but {why}; save the data as Parquet "
                          "(or CSV) to stream it, or raise {max_memory}")
    used = columns if n_selected is None else min(columns, n_selected)
    wide = one_pass and not stream and not path.is_dir() and not array and rows < used - 1 and need <= budget
    if wide and used - 1 > WIDE_FEATURES_ABOVE:  # solve.wide: through the n × n side, no d × d factor
        return Reading(False, f"fewer rows ({rows:,}) than columns ({used:,}): read whole and solved through the "
                              "rows' side", data_bytes, budget)
    _check_factor(path, rows, used, budget, wide_possible=one_pass and rows < used - 1 and need <= budget and not array)
    if path.is_dir():
        return Reading(True, f"{path.name or path} is a folder of files", data_bytes, budget)
    if stream:
        return Reading(True, "--stream was asked for", data_bytes, budget)
    if one_pass and path.suffix.lower() in STREAM_FORMATS:
        return Reading(True, f"{command} needs only passes over the rows", data_bytes, budget)
    if need > budget:
        return Reading(True, render(over, {}), data_bytes, budget)  # a note of the report: the flag, as yet
    return Reading(False, f"read whole: about {format_size(need)} within the {format_size(budget)} of --max-memory",
                   data_bytes, budget)


def _check_factor(path: Path, rows: int, used: int, budget: int, *, wide_possible: bool) -> None:
    """Refuse, before any reading, data whose R factor of ``[X, 1, y]`` ((used + 2)² float64, whatever the
    rows) and its decomposition do not fit in ``budget``: with the sizes, and the fixes that apply."""
    square = (used + 2) ** 2 * 8
    factor, decomposition = square * FACTOR_COPIES, square * DECOMPOSITION_COPIES
    if factor + decomposition <= budget:
        return
    fixes = "choose fewer columns with {features}, or raise {max_memory} to " + format_size(factor + decomposition)
    if wide_possible:  # a streamed (or folder) read of data that would be solved through the rows' side read whole
        fixes = "read it whole (without {stream}) as one file, which solves fewer rows than columns through the " \
                "rows' side; or " + fixes
    raise ConfigError(f"{path}: {rows:,} rows x {used:,} columns: the R factor ({format_size(square)}) needs "
                      f"about {format_size(factor)} with its accumulation and its decomposition about "
                      f"{format_size(decomposition)}, over the {format_size(budget)} of {{max_memory}}; {fixes}")


def check_fits(n_rows: int, n_columns: int, budget: int | None = None, *, copies: int = FIT_COPIES,
               what: str = "the data") -> None:
    """Refuse data made in memory (no file to stream) whose ``copies`` would not fit in the budget."""
    budget = default_budget() if budget is None else int(budget)
    need = n_rows * n_columns * 8 * copies
    if need > budget:
        raise ConfigError(f"{what} ({n_rows:,} rows x {n_columns} columns) would need about {format_size(need)} "
                          f"in memory, over the {format_size(budget)} of {{max_memory}}; use fewer rows, or "
                          "write the data to a Parquet file (make-data) and fit that, which streams")
