"""Choosing columns and checking values: the rules and their messages, for every reader.

Whole reads (:mod:`torchlinreg.formats`) and streamed reads (:mod:`torchlinreg.filesource`)
choose the features, targets and weights by these rules and check each value with them, so a
file gets the same columns and the same message whichever way it is read. A message names the
file, the column and the row (1-based, the header not counted) and says how to fix it.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from .defaults import MAX_MAGNITUDE
from .errors import DataError, SettingsWarning
from .shown import shown_name  # noqa: F401 - where readers of names look for it

MAX_LISTED = 20  # column names quoted in one message
ROLE_FIX = {"feature": "or leave the column out", "target": "or choose another target",
            "weight": "or choose another weight column"}  # how a message about a bad value in a column ends


@dataclass(frozen=True)
class Table:
    """A file's columns before any value is checked: names and types in file order."""

    schema: pa.Schema
    num_rows: int
    read: Callable[[list[str]], pa.Table]  # the named columns, every row (or the rows sampled)
    default_target: tuple[str, ...]
    feature_pool: tuple[str, ...] | None = None  # default features come from these; None: every column


@dataclass(frozen=True)
class Choice:
    """The columns chosen: features, targets, the weight column (a 0- or 1-tuple), and a note
    for messages about a default target ("" when the target was named)."""

    features: tuple[str, ...]
    targets: tuple[str, ...]
    weight: tuple[str, ...]
    note: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns read: features, targets, then the weight column."""
        return self.features + self.targets + self.weight

    def roles(self) -> list[tuple[str, str]]:
        """(role, name) of each column read, in reading order."""
        return ([("feature", n) for n in self.features] + [("target", n) for n in self.targets]
                + [("weight", n) for n in self.weight])


# ---- choosing columns ---------------------------------------------------------------------------

def choose(path: Path, table: Table, target, features, weights: str | None) -> Choice:
    """The features, targets and weight column of ``table``, by name or by default, checked against it.

    Default target: the last column (``table.default_target``); default features: every other
    numeric column (text columns left out with a warning), never the weight column.
    """
    names = table.schema.names
    weight = column_names(path, weights, "weight", names) if weights is not None else ()
    if weight and target is None and table.default_target == weight:
        raise DataError(f"{path}: the weight column {weights!r} is the last column, the default target; "
                        "name the target with {target}")
    if weight and features is None:  # default features: every other numeric column but the weights
        chosen_targets = column_names(path, target, "target", names) or table.default_target
        features = [n for n in (table.feature_pool or names) if n not in chosen_targets + weight
                    and _usable_by_default(path, table, n)]  # a text column is left out with a warning, as without
    targets, feats, note = _select(path, table, target, features)
    if weight and weight[0] in feats + targets:
        raise DataError(f"{path}: column {weights!r} is the weight column and also a feature or target; "
                        "list it in only one place")
    return Choice(feats, targets, weight, note)


def _select(path: Path, table: Table, target, features) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The target and feature names, checked against the file; and a note for messages about a default target."""
    names = table.schema.names
    check_unique(path, names, set(names))
    check_has_rows(path, table.num_rows)
    targets = column_names(path, target, "target", names)
    feats = column_names(path, features, "feature", names)
    note = ""
    if targets is None:
        targets = table.default_target
        note = " (by default the last column)" if table.feature_pool is None else " (by default the 'y' columns)"
    if feats is None:
        pool = table.feature_pool if table.feature_pool is not None else names
        feats = tuple(n for n in pool if n not in targets and _usable_by_default(path, table, n))
        if not feats:
            raise DataError(f"{path}: no numeric feature columns besides the target {', '.join(map(show, targets))}; "
                            "add numeric columns, or name them with {features}")
    both = next((n for n in feats if n in targets), None)
    if both is not None:
        raise DataError(f"{path}: column {show(both)} is both a feature and the target{note}; "
                        "list it in only one of {features} and {target}")
    return targets, feats, note


def check_has_rows(where, n_rows: int) -> None:
    """Refuse data without rows."""
    if n_rows == 0:
        raise DataError(f"{where}: has no data rows; add rows of values")


def check_unique(path: Path, names: list[str], wanted) -> None:
    """Refuse a file in which one of the ``wanted`` column names names two columns."""
    seen = {}
    for i, name in enumerate(names):
        if name in seen and name in wanted:
            raise DataError(f"{path}: column name {show(name)} appears twice (columns {seen[name] + 1} and {i + 1}); "
                            "rename one of them")
        seen.setdefault(name, i)


def _usable_by_default(path: Path, table: Table, name: str) -> bool:
    """Whether a column joins the default features: numeric ones do, text ones are left out with a warning.

    A text column that holds numbers in some rows is a numeric column with a typo: that is
    an error naming the row, never a silently dropped feature.
    """
    if is_numeric(table.schema.field(name).type):
        return True
    column = table.read([name]).column(name)
    textual = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if textual and _holds_some_number(column):
        raise DataError(f"{path}: column {show(name)} {first_non_number(column, 1)}; correct it, "
                        "or choose the features with {features}")
    warnings.warn(f"{path}: left out column {show(name)}, which is not numeric ({column.type}); "
                  "one-hot encode it with {categorical=auto}, or choose the features with {features} to silence this",
                  SettingsWarning, stacklevel=5)
    return False


def _holds_some_number(column: pa.ChunkedArray, sample: int = 1000) -> bool:
    """True when one of the first ``sample`` non-empty values of a text column reads as a number."""
    seen = 0
    for chunk in column.chunks:
        for value in chunk.drop_null().to_pylist():
            try:
                float(value)
                return True
            except ValueError:
                seen += 1
                if seen >= sample:
                    return False
    return False


def column_names(path: Path, given, role: str, names: list[str]) -> tuple[str, ...] | None:
    """The column names a caller asked for, as a tuple; None if not given."""
    if given is None:
        return None
    if isinstance(given, str):
        chosen = (given,)
    elif isinstance(given, Sequence) and all(isinstance(name, str) for name in given):
        chosen = tuple(given)
    else:
        raise ValueError(f"{role} columns must be a name or a sequence of names, got {given!r}")
    if not chosen:
        raise DataError(f"{path}: no {role} column given; name at least one")
    for i, name in enumerate(chosen):
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {show(close[0])}? " if close else ""
            listed = ", ".join(map(show, names[:MAX_LISTED]))
            if len(names) > MAX_LISTED:
                listed += f", ... ({len(names) - MAX_LISTED} more)"
            raise DataError(f"{path}: no column {show(name)}; {hint}the columns are {listed}")
        if name in chosen[:i]:
            raise DataError(f"{path}: {role} column {show(name)} is listed twice; list each column once")
    return chosen


def is_numeric(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_decimal(kind))


def target_fix(note: str) -> str:
    """How a message about a bad target value ends: naming ``target`` when the target was the default."""
    return f"or pass {{target}} to choose the target{note}" if note else ROLE_FIX["target"]


# ---- checking values ----------------------------------------------------------------------------

def float64_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric or boolean column without nulls as float64 values: a read-only view of its
    buffer when it is one float64 array, else one copy (exact for floats, bools and integers
    up to 2**53).

    (``to_numpy`` gives the same values, but its first call imports pandas when pandas is
    installed: 0.35 s of every run that reads a file.)
    """
    import pyarrow.compute as pc

    if column.type != pa.float64():
        column = pc.cast(column, pa.float64(), safe=False)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    views = [np.frombuffer(c.buffers()[1], dtype=np.float64, count=len(c), offset=8 * c.offset) for c in chunks]
    return views[0] if len(views) == 1 else np.concatenate(views) if views else np.empty(0)


def column_values(path: Path, name: str, column: pa.ChunkedArray, first_row: int = 1,
                  fix: str = ROLE_FIX["feature"]) -> np.ndarray:
    """One column as float64 values, every value checked; ``first_row`` is the file row of its first value."""
    import pyarrow.compute as pc

    if pa.types.is_null(column.type):  # a CSV column with every cell empty
        raise DataError(f"{path}: column {show(name)} has a missing value in row {first_row}; fill or remove that row")
    if not is_numeric(column.type):
        raise DataError(f"{path}: column {show(name)} {first_non_number(column, first_row)}; correct it, {fix}")
    if column.null_count:
        row = first_row + pc.index(pc.is_null(column), True).as_py()
        raise DataError(f"{path}: column {show(name)} has a missing value in row {row}; fill or remove that row")
    values = float64_values(column)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        value = values[bad[0]]
        shown = "NaN" if np.isnan(value) else ("inf" if value > 0 else "-inf")
        raise DataError(f"{path}: column {show(name)} holds {shown} in row {first_row + int(bad[0])}; "
                        "replace it with a number or remove that row")
    return values


def matrix(path: Path, table: pa.Table, names: tuple[str, ...], dtype, fix: str):
    """The named columns as a (n_samples, len(names)) tensor of ``dtype``, every value checked."""
    import torch

    values = np.column_stack([column_values(path, name, table.column(name), fix=fix) for name in names])
    tensor = torch.from_numpy(values).to(dtype)  # (n, len(names)); float64 -> float64 is the identity
    if dtype != torch.float64 and not bool(torch.isfinite(tensor).all()):
        row, col = (int(i) for i in torch.nonzero(~torch.isfinite(tensor))[0])
        raise DataError(f"{path}: column {show(names[col])} row {row + 1} holds {float(values[row, col])!r}, "
                        f"too large for {dtype}; read the file as torch.float64")
    return tensor


def check_weights(path, name: str, w: np.ndarray, first_row: int = 1, *, all_rows: bool = True) -> None:
    """Refuse a negative weight (naming its row) and, with ``all_rows``, weights that are all zero."""
    negative = np.flatnonzero(w < 0)
    if negative.size:
        raise DataError(f"{path}: weight column {name!r} row {first_row + int(negative[0])} is negative; "
                        "weights must be >= 0")
    if all_rows and not (w > 0).any():
        raise zero_weights_error(path, name)


def check_finite_weights(where, name: str, w: np.ndarray, *, first_row: int = 1, all_rows: bool = False) -> None:
    """A formula's weight column: finite values (as every reader checks them), then the shared rule of
    :func:`check_weights` (none negative; with ``all_rows``, not all zero)."""
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise DataError(f"{where}: weight column {name!r} row {first_row + int(bad[0])} is missing, NaN or "
                        "infinite; give every row a finite weight >= 0")
    check_weights(where, name, w, first_row, all_rows=all_rows)


def zero_weights_error(where, name: str) -> DataError:
    return DataError(f"{where}: weight column {name!r} is all zero; give some rows a positive weight")


def first_too_large(values: np.ndarray) -> tuple[int, int, float] | None:
    """(row, column, value) of the first value, row by row, whose square overflows float64; or None."""
    big = np.abs(values) > MAX_MAGNITUDE  # (n, k)
    if not big.any():
        return None
    row, col = (int(i) for i in np.argwhere(big)[0])
    return row, col, float(values[row, col])


def check_magnitudes(path: str | os.PathLike, data) -> None:
    """Refuse, naming the file, column and row, a value of ``data`` (a ``Dataset``) whose square overflows float64.

    Least squares sums such squares (see ``solve.MAX_MAGNITUDE``); reading keeps every value,
    so the commands that fit call this before they start.
    """
    for values, names in ((data.X, data.feature_names), (data.y, data.target_names)):
        found = first_too_large(values.detach().cpu().numpy())
        if found is not None:
            row, col, value = found
            raise magnitude_error(path, names[col], row + 1, value)


def magnitude_error(path, name: str, row: int, value: float) -> DataError:
    """The message for a value whose square overflows float64, read whole or streamed."""
    return DataError(f"{path}: column {show(name)} row {row} holds {value:.3g}, whose square overflows float64 "
                     f"(the limit is {MAX_MAGNITUDE:.0e}); rescale that column, e.g. divide it by a power of ten")


def first_non_number(column: pa.ChunkedArray, first_row: int) -> str:
    """Where a non-numeric column first holds a value that is not a number, as message text."""
    import pyarrow.compute as pc

    textual = (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
               or pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type))
    row = first_row
    for chunk in column.chunks:
        if textual:
            try:
                pc.cast(chunk, pa.float64())  # a whole chunk of number text (and nulls): nothing to report
                row += len(chunk)
                continue
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        for scalar in chunk:
            if scalar.is_valid:
                try:
                    value = scalar.as_py()
                except (OverflowError, ValueError, pa.ArrowException):  # e.g. a timestamp past the year 9999
                    return f"row {row} holds a {column.type} value, not a number"
                if not textual:
                    return f"row {row} holds {show(str(value))} (a {column.type} value), not a number"
                try:
                    scalar.cast(pa.float64())
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return f"row {row} holds {show(value)}, not a number"
            row += 1
    return f"holds {column.type} values, not numbers"


# ---- message helpers ----------------------------------------------------------------------------

def show(value, limit: int = 60) -> str:
    """A value for a message: quoted, escaped onto one line, shortened."""
    if len(value) > limit:
        value = value[: limit - 3] + ("..." if isinstance(value, str) else b"...")
    return repr(value)


def clean(exc: Exception, limit: int = 200) -> str:
    """An exception's text on one line: whitespace collapsed, control characters escaped, shortened."""
    text = " ".join(str(exc).split())
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suffix_text(path: Path) -> str:
    """A file's extension for a message."""
    return repr(path.suffix) if path.suffix else "extension-less"
