"""A fit's output folder read back: :func:`load_result` gives the results object of a finished run.

The folder is what ``torchlinreg fit --out DIR`` (or ``run_fit(..., out_dir=DIR)``) wrote:
``summary.json`` (:meth:`torchlinreg.fitting.FitResult.to_dict`), ``history.json`` and the plots. The
object shows what :class:`~torchlinreg.fitting.FitResult` shows (``summary()``, and in a notebook
the same as HTML with the folder's plots), without the rows: ``data`` is None.

Both files are parsed defensively: a missing folder or file, bytes that are not JSON (a truncated
write), JSON nested deeper than Python's parser goes, or a value of the wrong type or shape is a
one-line :class:`~torchlinreg.errors.ResultFileError` naming the file, never a traceback.
"""

from __future__ import annotations

import copy
import json
import math
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ResultFileError
from .history import EpochRecord, History
from .results import Summary, View, fit_heading, folder_images, html, text

SUMMARY_JSON, HISTORY_JSON = "summary.json", "history.json"  # publish.py's names
FIX = "the file was not written by torchlinreg's fit or was changed since; run the fit again"
METRIC_KEYS = ("mse", "rmse", "mae", "r2")
GAP_KEYS = ("trained_loss", "optimum_loss", "relative_excess_loss", "distance", "relative_distance")
MISSING = object()  # a key the file lacks


@dataclass(eq=False)
class LoadedResult:
    """A fit read back from its output folder (:func:`load_result`): its figures, its history, the
    optimum's statistics when the fit computed them; ``data`` is None (the rows are not in the folder).

    ``summary()`` and, in a notebook, ``_repr_html_()`` show what they show for the
    :class:`~torchlinreg.fitting.FitResult` of the run, with the folder's PNG plots; ``to_dict()`` is
    ``summary.json``.
    """

    folder: Path
    record: dict = field(repr=False)  # summary.json, checked (an older layout brought to this one)
    history: History = field(repr=False)
    statistics: list | None = field(default=None, repr=False)  # StatisticsList of the optimum, or None
    data: None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.record["features"])

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(self.record["targets"])

    @property
    def weight(self) -> np.ndarray:
        """The trained model's weight, (n_targets, n_features), float64 (NaN where the file has null)."""
        return _array(self.record["trained"]["weight"])

    @property
    def bias(self) -> np.ndarray:
        return _array(self.record["trained"]["bias"])

    @property
    def optimum(self) -> dict:
        """The exact least-squares optimum as ``summary.json`` holds it (``coef``, ``intercept``, ``loss``, ...)."""
        return self.record["optimum"]

    @property
    def metrics(self) -> dict:
        """The trained model's metrics per split: ``{mse, rmse, mae, r2}``."""
        return self.record["trained"]["metrics"]

    @property
    def gap(self) -> dict:
        return self.record["gap"]

    def to_dict(self) -> dict:
        """``summary.json`` as read (a copy)."""
        return copy.deepcopy(self.record)

    def summary(self) -> Summary:
        """The results as text, as :meth:`torchlinreg.fitting.FitResult.summary` gives them."""
        return text(self._view())

    def _repr_html_(self) -> str:
        return html(self._view(), folder_images(self.folder))

    def _view(self) -> View:
        r, features, targets = self.record, self.feature_names, self.target_names
        optimum = r["optimum"]
        weight = np.array([[_float(optimum["coef"][t][f]) for f in features] for t in targets])
        bias = np.array([_float(optimum["intercept"][t]) for t in targets])
        metrics = {split: {k: _float(m[k]) for k in METRIC_KEYS} for split, m in self.metrics.items()}
        gap = {**r["gap"], **{k: _float(r["gap"][k]) for k in GAP_KEYS}}
        optimizer = r["settings"].get("optimizer", "?") if isinstance(r.get("settings"), dict) else "?"
        heading = fit_heading(int(r["n_samples"]), len(self.history), optimizer, self.history.status,
                              self.history.message)
        return View(features, targets,
                    {"weight": self.weight, "bias": self.bias, "loss": _float(r["trained"]["loss"])},
                    {"weight": weight, "bias": bias, "loss": _float(optimum["loss"])}, gap, metrics,
                    self.statistics, heading, fit_intercept=r.get("fit_intercept", True) is not False)

    def __repr__(self) -> str:
        return (f"LoadedResult({str(self.folder)!r}, features={list(self.feature_names)}, "
                f"targets={list(self.target_names)}, {self.history!r})")


def load_result(folder: str | os.PathLike) -> LoadedResult:
    """The results object of the fit whose output folder is ``folder`` (``torchlinreg fit --out``).

    Raises
    ------
    ResultFileError
        The folder or one of its files is missing, unreadable, not JSON, or not what torchlinreg
        writes; the message names the file and says what to do.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultFileError(f"no folder at {str(folder)!r}; pass the output folder of a torchlinreg fit "
                              "(its --out, or run_fit's out_dir)")
    path = folder / SUMMARY_JSON
    record = _checked_summary(path, _upgraded(_read_json(path)))
    path = folder / HISTORY_JSON
    history = _checked_history(path, _read_json(path))
    statistics = _statistics(folder / SUMMARY_JSON, record["optimum"].get("statistics"))
    return LoadedResult(folder, record, history, statistics)


# --- reading and checking ------------------------------------------------------------------------

def _read_json(path: Path) -> dict:
    """The JSON object in ``path``, or a ResultFileError saying why not."""
    if not path.is_file():
        raise ResultFileError(f"{str(path)!r} is missing: its folder is not the output folder of a finished "
                              "torchlinreg fit; pass the folder given to --out (or run_fit's out_dir)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultFileError(f"cannot read {str(path)!r} ({exc.strerror or exc}); check that it is a readable "
                              "file") from None
    try:
        value = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ResultFileError(f"{str(path)!r} is not valid JSON, perhaps truncated ({_one_line(exc)}); "
                              "run the fit again") from None
    except RecursionError:  # nested deeper than Python's parser goes: no file torchlinreg wrote
        raise ResultFileError(f"{str(path)!r} is nested thousands of levels deep; {FIX}") from None
    if not isinstance(value, dict):
        raise ResultFileError(f"{str(path)!r} holds a JSON {type(value).__name__}, not an object; {FIX}")
    return value


def _upgraded(record: dict) -> dict:
    """A summary written before the trained model and the optimum were labelled apart (``weight``, ``bias``,
    ``metrics`` and ``statistics`` at the top), in today's layout; any other as it is."""
    if "trained" in record or not {"weight", "bias", "metrics", "optimum", "gap"} <= set(record):
        return record
    old = dict(record)
    gap = old["gap"] if isinstance(old["gap"], dict) else {}
    optimum = old["optimum"] if isinstance(old["optimum"], dict) else {}
    old["trained"] = {"weight": old.pop("weight"), "bias": old.pop("bias"), "loss": gap.get("trained_loss"),
                      "metrics": old.pop("metrics")}
    old["optimum"] = {**optimum, "statistics": old.pop("statistics", None)}
    return old


def _checked_summary(path: Path, r: dict) -> dict:
    """``r`` when it holds what the results object reads, with the types and shapes it needs."""
    def bad(what: str) -> ResultFileError:
        return ResultFileError(f"{str(path)!r} {what}; {FIX}")

    if "torchlinreg_version" not in r:
        raise bad("is not a torchlinreg fit's summary (no 'torchlinreg_version')")
    features, targets = (_names(r.get(key), key, bad) for key in ("features", "targets"))
    d, m = len(features), len(targets)
    trained, optimum, gap = (_object(r.get(key), key, bad) for key in ("trained", "optimum", "gap"))
    _matrix(trained.get("weight"), (m, d), "'trained' 'weight'", bad)
    _matrix(trained.get("bias"), (m,), "'trained' 'bias'", bad)
    _number(trained.get("loss"), "'trained' 'loss'", bad)
    for split, values in _object(trained.get("metrics"), "'trained' 'metrics'", bad).items():
        values = _object(values, f"'trained' 'metrics' {split!r}", bad)
        for key in METRIC_KEYS:
            _number(values.get(key, MISSING), f"'trained' 'metrics' {split!r} {key!r}", bad)
    coef, intercept = (_object(optimum.get(key), f"'optimum' {key!r}", bad) for key in ("coef", "intercept"))
    for t in targets:
        row = _object(coef.get(t), f"'optimum' 'coef' {t!r}", bad)
        for f in features:
            _number(row.get(f, MISSING), f"'optimum' 'coef' {t!r} {f!r}", bad)
        _number(intercept.get(t, MISSING), f"'optimum' 'intercept' {t!r}", bad)
    _number(optimum.get("loss", MISSING), "'optimum' 'loss'", bad)
    for key in GAP_KEYS:
        _number(gap.get(key, MISSING), f"'gap' {key!r}", bad)
    n = r.get("n_samples")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise bad(f"has no valid 'n_samples' (got {_short(n)})")
    return r


def _checked_history(path: Path, h: dict) -> History:
    """The History in ``h`` (``history.json``), every record checked."""
    def bad(what: str) -> ResultFileError:
        return ResultFileError(f"{str(path)!r} {what}; {FIX}")

    records = h.get("records")
    if not isinstance(records, list) or not isinstance(h.get("status"), str) or not isinstance(h.get("message"), str):
        raise bad("has no valid 'records', 'status' or 'message'")
    for key in ("initial_params", "final_params"):
        if not isinstance(h.get(key), dict) and not (key == "final_params" and h.get(key) is None):
            raise bad(f"has no valid {key!r} (an object of parameters)")
    kept = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not set(rec) <= {"epoch", "loss", "params", "lr", "val_loss"}:
            raise bad(f"has a damaged record {i + 1} (an object of epoch, loss, params, lr, val_loss)")
        epoch = rec.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not isinstance(rec.get("params"), dict):
            raise bad(f"has a damaged record {i + 1} (its epoch or params)")
        loss, lr, val_loss = (_number(rec.get(k), f"record {i + 1}'s {k!r}", bad) for k in ("loss", "lr", "val_loss"))
        kept.append(EpochRecord(epoch, loss, rec["params"], None if rec.get("lr") is None else lr,
                                None if rec.get("val_loss") is None else val_loss))
    return History(h["initial_params"], kept, h["final_params"], h["status"], h["message"])


def _statistics(path: Path, records):
    """The optimum's statistics as RegressionStatistics (one per target), or None when the fit made none."""
    if records is None:
        return None
    from .statistics import RegressionStatistics
    from .statistics_tables import StatisticsList

    if not isinstance(records, list):
        raise ResultFileError(f"{str(path)!r} has 'optimum' 'statistics' that are not a list; {FIX}")
    out = StatisticsList()
    for k, record in enumerate(records):
        try:
            names = record["term_names"]
            if not (isinstance(names, list) and all(isinstance(n, str) for n in names)
                    and isinstance(record["target_name"], str)):
                raise TypeError("names that are not strings")
            out.append(RegressionStatistics.from_dict(record))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as exc:
            raise ResultFileError(f"{str(path)!r} has damaged statistics for target {k + 1} "
                                  f"({_one_line(type(exc).__name__ + ': ' + str(exc), 80)}); {FIX}") from None
    return out


def _names(value, key: str, bad) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise bad(f"has no valid {key!r} (a list of names)")
    return value


def _object(value, what: str, bad) -> dict:
    if not isinstance(value, dict):
        raise bad(f"has no valid {what} (an object)")
    return value


def _number(value, what: str, bad) -> float:
    """A number of the file (None: a value that was not finite, NaN here)."""
    if value is MISSING:
        raise bad(f"has no {what}")
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad(f"has no valid {what} (a number; got {_short(value)})")
    return float(value)


def _matrix(value, shape: tuple[int, ...], what: str, bad) -> None:
    """``value``: nested lists of numbers (or null) of ``shape``, checked level by level (nothing deeper)."""
    rows = [value]
    for level, size in enumerate(shape):
        if not all(isinstance(row, list) and len(row) == size for row in rows):
            raise bad(f"has no valid {what} (numbers of shape {shape})")
        rows = [item for row in rows for item in row]
    for item in rows:
        _number(item, what, bad)


def _array(value) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in np.ravel(np.array(value, dtype=object))],
                    dtype=np.float64).reshape(np.shape(value))


def _float(value) -> float:
    return math.nan if value is None else float(value)


def _one_line(text, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(value) -> str:
    """A value of the file, for a message: shortened, nested lists cut at a few levels (never a RecursionError)."""
    shorter = reprlib.Repr()
    shorter.maxlevel, shorter.maxstring, shorter.maxother = 3, 30, 30
    return _one_line(shorter.repr(value), 60)
