"""A formula over a file streamed in chunks: the levels from a first pass, the columns made chunk by chunk.

``FormulaSource(path, "y ~ x1 + C(region) + x1:x2")`` is a Source (:mod:`torchlinreg.sources`) whose
chunks are the formula's columns. Its first pass reads only the formula's text columns and collects
their levels (sorted, as formulaic sorts them); every chunk's text columns are then pandas
categoricals of all those levels, so each chunk encodes them the same way whatever levels it
happens to hold. Transforms fitted on the rows (``poly()``, ``center()``, ``scale()``) would need
every row before the first chunk: they are refused here, with the fix (read the file whole).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa

from .defaults import CHUNK_ROWS
from .errors import ConfigError, DataError
from .columns import check_finite_weights


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind)


class FormulaSource:
    """The formula's columns of a CSV, TSV or Parquet file, a chunk at a time (see the module's docstring)."""

    in_memory = False

    def __init__(self, path: str | os.PathLike, formula: str, *, weights: str | None = None,
                 read_bytes: int = 64 << 20):
        from formulaic import Formula, ModelSpec

        from .formula import columns_named, design

        self.path, self.formula_text, self.weight_name, self.read_bytes = Path(path), formula, weights, read_bytes
        self.where, self.paths = str(self.path), (self.path,)
        schema = file_schema(self.path)
        suffix = self.path.suffix.lower()
        self.format = "parquet" if suffix in (".parquet", ".pq") else suffix[1:]
        names = list(schema.names)
        try:
            needed = sorted(set(map(str, Formula(formula).required_variables)) | set(columns_named(formula, names)))
        except Exception as exc:  # formulaic's parse errors
            from .formula import _raised

            raise _raised(exc, formula, None) from None
        for name in needed + ([weights] if weights else []):
            if name not in names:
                raise DataError(f"the formula {formula!r} names {name!r}, which is not a column of {path} (its "
                                f"columns: {', '.join(names[:12])}); use a column name")
        self.columns = needed + ([weights] if weights and weights not in needed else [])
        self.text = [n for n in needed if _is_text(schema.field(n).type)]
        self.levels = self._levels()  # the first pass
        first = next(self._frames(CHUNK_ROWS), None)
        if first is None:
            raise DataError(f"{path}: has no rows; pass a file with data")
        made = design(first, formula)
        if made.spec["transform_state"]:
            raise ConfigError(f"the formula {formula!r} fits transforms on the rows "
                              f"({', '.join(made.spec['transform_state'])}), which need them whole; leave out "
                              "{stream} and give {max_memory} room for the file, or drop those transforms")
        self.formula = made.spec  # as Dataset.formula: a model fitted on these rows keeps it
        self._lhs = ModelSpec(formula=Formula(formula).lhs)  # the targets' columns, parsed once
        self.feature_names, self.target_names = made.feature_names, made.target_names
        self.fit_intercept = made.fit_intercept

    def __repr__(self) -> str:
        return f"FormulaSource({self.where!r}, {self.formula_text!r}, levels of {self.text})"

    def _batches(self, columns: list[str], chunk_rows: int):
        from . import formats

        if self.format == "parquet":
            yield from formats.parquet_batches(self.path, columns, chunk_rows, self.read_bytes)
            return
        fixes = {name: "give the formula's columns their values" for name in columns}
        yield from formats.text_batches(self.path, self.format, fixes, (), strings=set(self.text) & set(columns))

    def _levels(self) -> dict[str, list[str]]:
        import pyarrow.compute as pc

        seen: dict[str, set] = {name: set() for name in self.text}
        if not self.text:
            return {}
        for batch in self._batches(self.text, CHUNK_ROWS):
            for name in self.text:
                column = batch.column(batch.schema.get_field_index(name))
                if column.null_count:
                    raise DataError(f"{self.where}: the column {name!r} used by the formula has a missing value; "
                                    "drop those rows or fill them in")
                seen[name].update(pc.unique(column.cast(pa.string())).to_pylist())
        return {name: sorted(values) for name, values in seen.items()}

    def _frames(self, chunk_rows: int):
        """Each batch's columns as a DataFrame, text columns as categoricals of every level."""
        import pandas as pd

        for batch in self._batches(self.columns, chunk_rows):
            frame = batch.to_pandas()
            for name, levels in self.levels.items():
                frame[name] = pd.Categorical(frame[name].astype(str), categories=levels)
            yield frame

    def chunks(self, rows: int = CHUNK_ROWS, part: int = 0, parts: int = 1):
        """The formula's columns, chunks of ``rows`` rows (the last may be shorter); chunk ``i`` is part ``i % parts``'s."""
        from .formula import from_json

        model_spec = from_json(self.formula)
        index, pending, held = 0, [], 0
        for frame in self._frames(rows):
            pending.append(frame)
            held += len(frame)
            while held >= rows:
                joined = pd_concat(pending)
                chunk, rest = joined.iloc[:rows], joined.iloc[rows:]
                pending, held = ([rest] if len(rest) else []), len(rest)
                if index % parts == part:
                    yield self._matrices(model_spec, chunk, index * rows + 1)
                index += 1
        if pending and index % parts == part:
            yield self._matrices(model_spec, pd_concat(pending), index * rows + 1)

    def _matrices(self, model_spec, frame, first_row: int):
        from .formula import INTERCEPT, _raised

        try:
            rhs = model_spec.get_model_matrix(frame, na_action="raise")
            lhs = self._lhs.get_model_matrix(frame, na_action="raise").values
        except Exception as exc:
            raise _raised(exc, self.formula_text, frame) from None
        names = [str(c) for c in rhs.columns]
        X = np.asarray(rhs.values, dtype=np.float64)[:, [j for j, n in enumerate(names) if n != INTERCEPT]]
        w = None if self.weight_name is None else np.asarray(frame[self.weight_name], dtype=np.float64)
        if w is not None:
            check_finite_weights(self.where, self.weight_name, w, first_row=first_row)
        return np.ascontiguousarray(X), np.asarray(lhs, dtype=np.float64).reshape(len(X), -1), w

    n_rows = None  # counted by the passes, not before


def file_schema(path: str | os.PathLike) -> pa.Schema:
    """A CSV, TSV or Parquet file's columns and their types (a text file's inferred from its first block)."""
    from . import formats

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return formats.parquet_schema(path)[0]
    if suffix in (".csv", ".tsv"):
        return formats.text_head(path, suffix[1:])[0]
    raise DataError(f"{path}: a formula streams CSV, TSV and Parquet files; read it whole instead")


def pd_concat(frames):
    import pandas as pd

    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
