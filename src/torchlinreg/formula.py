"""Formulas and categorical data: Wilkinson formulas through the ``formulaic`` library.

``design(frame, "y ~ x1 + C(region) + x1:x2 + poly(x3, 3)")`` gives the targets, the design's columns
(named as formulaic names them: ``C(region)[T.b]``, ``x1:x2``, ``poly(x3, 3)[1]``) and the formula's
**spec as plain JSON data**: the formula, each categorical factor's levels, and the fitted state of
stateful transforms (``poly()``'s recurrence, ``center()``'s mean, ``scale()``'s...). ``rebuild(spec,
frame)`` makes the same columns for new rows from that JSON alone, as a model file needs (never pickle).

The constant term is torchlinreg's own: formulaic's ``Intercept`` column is taken out and sets
``fit_intercept`` (``- 1`` or ``+ 0`` in the formula: no intercept). Missing values are refused (as
everywhere in torchlinreg), a level never seen when fitting is an error naming the column and the
level, and a categorical column of one level is refused (it has no contrast to estimate).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError, DataError

INTERCEPT = "Intercept"  # formulaic's (and patsy's) name of the constant term
SPEC_VERSION = 1


@dataclass(frozen=True)
class Design:
    """What a formula makes of a table: ``X`` (n, d) and ``Y`` (n, m) float64, their names, whether the formula
    keeps the intercept, and the spec (JSON data) that rebuilds ``X``'s columns for new rows."""

    X: np.ndarray
    Y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    fit_intercept: bool
    spec: dict


def _formulaic():
    try:
        import formulaic
    except ImportError as exc:  # a run-time dependency; a broken install says so
        raise ConfigError("formulas need the formulaic package; install torchlinreg's requirements "
                          "(pip install formulaic==1.2.2)") from exc
    return formulaic


def _raised(exc: Exception, formula: str, frame) -> Exception:
    """formulaic's exception as torchlinreg's: a bad formula is a ConfigError, a bad column a DataError."""
    from formulaic.errors import FactorEvaluationError, FormulaParsingError, FormulaSyntaxError

    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, (FormulaSyntaxError, FormulaParsingError)):
        return ConfigError(f"the formula {formula!r} is malformed ({first}); write e.g. 'y ~ x1 + C(group) + x1:x2'")
    if isinstance(exc, FactorEvaluationError):
        missing = re.search(r"`([^`]+)` is not present", first)
        if missing:
            return DataError(f"the formula {formula!r} names {missing[1]!r}, which is not a column of the data "
                             f"(its columns: {_shown(frame.columns)}); use a column name")
        return DataError(f"the formula {formula!r}: {first}")
    if "contains null values" in first:
        column = re.search(r"`([^`]+)` contains null", first)
        return DataError(f"the column {column[1] if column else '?'!r} used by the formula has a missing value; "
                         "drop those rows or fill them in")
    return DataError(f"the formula {formula!r} cannot be applied to the data: {first}")


def _shown(names) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


def design(frame, formula: str) -> Design:
    """The design of ``formula`` on ``frame`` (a pandas DataFrame), its targets from the left-hand side."""
    formulaic = _formulaic()
    if not isinstance(formula, str) or "~" not in formula:
        raise ConfigError(f"a formula names the target(s) left of '~' and the terms right of it, e.g. "
                          f"'y ~ x1 + C(group)'; got {formula!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            matrices = formulaic.model_matrix(formula, frame, na_action="raise")
    except Exception as exc:  # formulaic's own exceptions, and pandas' under them
        raise _raised(exc, formula, frame) from None
    lhs, rhs = matrices.lhs, matrices.rhs
    for factor, (kind, _) in lhs.model_spec.encoder_state.items():
        if kind.value == "categorical":
            raise DataError(f"the formula's target {str(factor)!r} holds text (or is a category); a target must "
                            "hold numbers")
    spec = to_json(rhs.model_spec)
    _check_levels(spec)
    names = [str(c) for c in rhs.columns]
    fit_intercept = INTERCEPT in names
    keep = [j for j, name in enumerate(names) if name != INTERCEPT]
    X = np.asarray(rhs.values, dtype=np.float64)[:, keep]
    Y = np.asarray(lhs.values, dtype=np.float64).reshape(len(X), -1)
    spec["fit_intercept"] = fit_intercept
    spec["feature_names"] = [names[j] for j in keep]
    return Design(np.ascontiguousarray(X), np.ascontiguousarray(Y), tuple(spec["feature_names"]),
                  tuple(str(c) for c in lhs.columns), fit_intercept, spec)


def columns_named(formula: str, columns) -> list:
    """The ``columns`` whose names appear in ``formula`` as a whole name (formulaic's own list of required
    variables leaves out those inside stateful transforms such as ``poly(x, 2)``)."""
    return [c for c in columns
            if re.search(rf"(?<![A-Za-z0-9_.]){re.escape(str(c))}(?![A-Za-z0-9_.])", formula)]


def _check_levels(spec: dict) -> None:
    for factor, (kind, state) in spec["encoder_state"].items():
        if kind == "categorical" and len(state.get("categories", ())) < 2:
            raise DataError(f"the categorical column {factor!r} has a single level "
                            f"({', '.join(map(repr, state.get('categories', [])))}): it has nothing to contrast; "
                            "leave it out of the formula")


def rebuild(spec: dict, frame) -> np.ndarray:
    """The design's columns (n, d), without the intercept, for the rows of ``frame`` from ``spec`` (JSON data)."""
    from formulaic.errors import DataMismatchWarning

    model_spec = from_json(spec)
    _check_unseen(spec, frame)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataMismatchWarning)  # an unseen level would become the base level
            warnings.simplefilter("ignore", FutureWarning)
            matrix = model_spec.get_model_matrix(frame, na_action="raise")
    except DataMismatchWarning as exc:
        raise DataError(f"a categorical column holds a level not seen when the model was fitted ({exc}); "
                        "predict only rows of the levels fitted") from None
    except Exception as exc:
        raise _raised(exc, spec["formula"], frame) from None
    names = [str(c) for c in matrix.columns]
    keep = [j for j, name in enumerate(names) if name != INTERCEPT]
    if [names[j] for j in keep] != list(spec["feature_names"]):
        raise DataError(f"the formula makes the columns {_shown([names[j] for j in keep])} of these rows, but the "
                        f"model was fitted on {_shown(spec['feature_names'])}; give rows of the same columns")
    return np.ascontiguousarray(np.asarray(matrix.values, dtype=np.float64)[:, keep])


def _check_unseen(spec: dict, frame) -> None:
    """Name the column and the level of a value a categorical factor never saw when fitted."""
    columns = {str(c) for c in frame.columns}
    for factor, (kind, state) in spec["encoder_state"].items():
        if kind != "categorical":
            continue
        match = re.fullmatch(r"C\(\s*`?([^,`)]+?)`?\s*(?:,.*)?\)", factor)
        column = factor.strip("`") if factor.strip("`") in columns else match[1] if match else None
        if column is None or column not in columns:
            continue  # an expression: formulaic's warning, turned into an error, catches it
        known = {str(level) for level in state.get("categories", ())}
        values = frame[column]
        seen = {str(v) for v in values.dropna().unique()} if hasattr(values, "dropna") else set(map(str, values))
        unseen = sorted(seen - known)
        if unseen:
            raise DataError(f"the column {column!r} holds the level {unseen[0]!r}, not seen when the model was "
                            f"fitted (its levels: {_shown(sorted(known))}); predict only rows of the levels fitted")


# --- the spec as JSON data --------------------------------------------------------------------------
def _plain(value):
    """A transform's state as JSON data; dicts with keys that are not text keep their keys' types."""
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: _plain(v) for k, v in value.items()}
        return {"__items__": [[_plain(k), _plain(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"a transform's state holds {value!r}")
        return value
    if isinstance(value, np.ndarray):
        return {"__array__": _plain(value.tolist())}
    raise ConfigError(f"a transform in the formula keeps a state of type {type(value).__name__}, which a model file "
                      "cannot hold as JSON; use poly(), center(), scale() or plain columns")


def _restored(value):
    if isinstance(value, dict):
        if set(value) == {"__items__"}:
            return {_restored(k): _restored(v) for k, v in value["__items__"]}
        if set(value) == {"__array__"}:
            return np.asarray(value["__array__"], dtype=np.float64)
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def to_json(model_spec) -> dict:
    """A formulaic ModelSpec as JSON data: the formula, each factor's kind and levels, the transforms' states."""
    encoders = {}
    for factor, (kind, state) in model_spec.encoder_state.items():
        entry = {"categories": [_plain(c) for c in state["categories"]]} if "categories" in state else {}
        encoders[str(factor)] = [kind.value, entry]
    formula = str(model_spec.formula)
    if not any(str(term) == "1" for term in model_spec.formula):  # the text leaves out a removed intercept
        formula = f"{formula} - 1"
    return {"version": SPEC_VERSION, "formula": formula,
            "transform_state": _plain(dict(model_spec.transform_state)), "encoder_state": encoders}


def from_json(spec: dict):
    """The formulaic ModelSpec that ``spec`` (from :func:`to_json`) describes."""
    formulaic = _formulaic()
    from formulaic.parser.types import Factor

    try:
        encoders = {factor: (Factor.Kind(kind), _restored(state)) for factor, (kind, state)
                    in spec["encoder_state"].items()}
        return formulaic.ModelSpec(formula=spec["formula"], ensure_full_rank=True,
                                   transform_state=_restored(spec["transform_state"]), encoder_state=encoders)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"the model's formula spec is damaged ({exc}); refit and save the model again") from None


def check_spec(spec) -> None:
    """Refuse a spec that is not what :func:`design` writes (a model file's JSON is checked on load)."""
    if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION:
        raise ValueError(f"formula spec version {spec.get('version') if isinstance(spec, dict) else spec!r}, "
                         f"expected {SPEC_VERSION}")
    if not isinstance(spec.get("formula"), str) or not isinstance(spec.get("encoder_state"), dict):
        raise ValueError("formula spec without its formula or encoder state")
    names = spec.get("feature_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("formula spec without its column names")
    if not isinstance(spec.get("fit_intercept"), bool):
        raise ValueError("formula spec without fit_intercept")
    for factor, entry in spec["encoder_state"].items():
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] in ("numerical", "categorical", "constant")
                and isinstance(entry[1], dict)):
            raise ValueError(f"formula spec: a bad encoder entry for {factor!r}")


def auto_formula(targets, numeric, text) -> str:
    """``--categorical auto`` without a formula: the targets on every numeric feature and, one-hot encoded
    (treatment contrasts, the first level the base), every text column."""
    def quoted(name):
        return f"`{name}`" if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) else name

    rhs = [quoted(n) for n in numeric] + [f"C({quoted(n)})" for n in text]
    return f"{' + '.join(quoted(t) for t in targets)} ~ {' + '.join(rhs) if rhs else '1'}"
