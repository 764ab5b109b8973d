"""Saving and loading a trained linear model: safetensors for the tensors, JSON for the rest.

A model saved at ``run/model`` is the pair of files

* ``run/model.safetensors``: the tensors ``weight`` (n_targets, n_features) and ``bias``
  (n_targets,), float64, in the data's original units;
* ``run/model.json``: the format name and version, the feature and target names, each
  tensor's shape and dtype, the SHA-256 of the ``.safetensors`` bytes, the versions of
  torchlinreg, PyTorch, NumPy and safetensors that wrote it, and the caller's ``metadata``.

Nothing is ever unpickled: safetensors and JSON are data formats, so loading a file cannot
run code from it. A file that turns out to be a pickle or a ``torch.save`` archive is refused.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import safetensors.numpy

from .data import default_names
from .errors import ModelFileError, OutputError
from .locks import hold
from .modelcheck import (FORMAT, FORMAT_VERSION, JSON_LIMIT, RESAVE, TENSOR_NAMES, TENSORS_LIMIT, check_header_length,  # noqa: F401
                         check_names, check_tensors, expected_tensors, mismatch, parse_description, parse_tensors, tensors_limit,
                         _looks_like_pickle, _one_line)  # the last two are checkpoint.py's too
from .modelfiles import committed_tensors, read_regular, write_pair
from .shapes import dimension

SUFFIXES = (".safetensors", ".json")


def _to_float64(x, name: str) -> np.ndarray:
    """A float64 NumPy copy (never a view) of an array-like or a (CPU or GPU, grad or not) torch tensor."""
    torch = sys.modules.get("torch")  # a torch tensor can only exist if torch is imported
    if torch is not None and isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    try:
        return np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__} ({exc})") from None


def _names(names, kind: str, count: int) -> tuple[str, ...]:
    names = tuple(names)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{kind} names must be strings, got {names!r}")
    if len(names) != count:
        raise ValueError(f"{count} {kind}s in the coefficients but {len(names)} {kind} names")
    if len(set(names)) != len(names):
        raise ValueError(f"{kind} names must be unique, got {names!r}")
    return names


@dataclass(eq=False)
class SavedModel:
    """A trained linear model as plain data: ``y = X @ weight.T + bias``.

    Parameters
    ----------
    weight : ndarray of shape (n_targets, n_features)
        The coefficients in the data's original units (stored as float64).
    bias : ndarray of shape (n_targets,)
        The intercepts.
    feature_names, target_names : sequence of str
        One unique name per column of X and per column of y.
    metadata : dict
        Anything JSON can hold: settings, scaling, metrics, provenance.
    fit_intercept : bool
        False for a model fitted without intercept (its bias is then zeros); the JSON says so, and a
        file without the entry (written before it existed) reads as True.
    inference : InferenceState or None
        The exact least-squares fit's state for intervals at new rows (:mod:`torchlinreg.inference`):
        saved by ``fit --save`` and ``FitResult.saved_model()``; None in older files and other models.
    """

    weight: np.ndarray
    bias: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    metadata: dict = field(default_factory=dict)
    fit_intercept: bool = True
    inference: object = None

    def __post_init__(self):
        self.weight = _to_float64(self.weight, "weight")
        self.bias = _to_float64(self.bias, "bias")
        if self.weight.ndim != 2 or 0 in self.weight.shape:
            raise ValueError(f"weight must have shape (n_targets, n_features), got {self.weight.shape}")
        if self.bias.shape != self.weight.shape[:1]:
            raise ValueError(f"bias must have shape ({self.weight.shape[0]},) to match weight "
                             f"{self.weight.shape}, got {self.bias.shape}")
        self.feature_names = _names(self.feature_names, "feature", self.n_features)
        self.target_names = _names(self.target_names, "target", self.n_targets)
        if not isinstance(self.metadata, dict):
            raise ValueError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise ValueError(f"fit_intercept must be True or False, got {self.fit_intercept!r}")
        self.fit_intercept = bool(self.fit_intercept)
        if not self.fit_intercept and np.any(self.bias != 0):
            raise ValueError("a model without intercept (fit_intercept=False) has a bias of zeros, got "
                             f"{self.bias.tolist()}")
        if self.inference is not None:
            from .inference import InferenceState

            state = self.inference
            if (not isinstance(state, InferenceState) or state.optimum_weight.shape != self.weight.shape
                    or state.fit_intercept != self.fit_intercept):
                raise ValueError("inference must be an InferenceState of a fit with this model's shape and "
                                 "fit_intercept (FitResult.saved_model() makes one), or None")

    n_features = dimension("weight", 1)
    n_targets = dimension("weight", 0)

    def predict(self, X) -> np.ndarray:
        """Predictions for ``X`` of shape (n_samples, n_features): an ndarray (n_samples, n_targets), float64.

        A DataFrame (anything with ``columns``) is matched by name, as ``torchlinreg predict`` matches a
        file's columns: its columns may come in any order, extra ones are ignored, and a missing one is
        an error naming it. An array is taken in the model's feature order. A model fitted through a
        formula (``metadata["formula"]``) takes a DataFrame of the formula's raw columns and rebuilds its
        columns (levels, ``poly()``...) from the saved spec.
        """
        if hasattr(X, "columns"):
            formula = self.metadata.get("formula")  # a formula's columns are rebuilt from its spec
            X = self._by_name(X) if formula is None else _formula_columns(formula, X)
        X = _to_float64(X, "X")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}) for this model's "
                             f"{self.n_features} features, got {X.shape}")
        return X @ self.weight.T + self.bias

    def get_prediction(self, X):
        """The exact least-squares fit's predictions at ``X`` with their standard errors, as statsmodels'
        ``results.get_prediction(exog)``: ``.summary_frame(alpha)`` gives mean, mean_se, mean_ci_* (the mean's
        interval) and obs_ci_* (a new observation's), ``.conf_int(alpha, obs)`` the bounds for every target.
        ``X`` as for :meth:`predict`. Centred on the optimum's predictions, which are this model's only if it
        was trained to the optimum. Raises ModelFileError for a model saved without the fit's inference state.
        """
        from .errors import ModelFileError
        from .inference import REFIT, SavedPrediction

        if self.inference is None:
            raise ModelFileError(f"this model holds no least-squares inference state (saved before it was "
                                 f"stored, or not by a fit), so it has no intervals; {REFIT}")
        if hasattr(X, "columns"):
            X = self._by_name(X)
        X = _to_float64(X, "X")
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X must have shape (n_samples, {self.n_features}) for this model's "
                             f"{self.n_features} features, got {X.shape}")
        return SavedPrediction(self.inference, X, self.target_names)

    def _by_name(self, frame):
        """The model's feature columns of ``frame``, in the model's order."""
        names = [str(c) for c in frame.columns]
        missing = [f for f in self.feature_names if f not in names]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise ValueError(f"the data has no column {shown}, which this model was fitted on; pass a DataFrame "
                             f"with the columns {list(self.feature_names)!r} (extra columns are ignored)")
        if len(set(names)) != len(names):
            twice = sorted({n for n in names if names.count(n) > 1} & set(self.feature_names))
            if twice:
                raise ValueError(f"the data has column {twice[0]!r} more than once; keep one of them")
        columns = [frame.columns[names.index(f)] for f in self.feature_names]
        return frame[columns]

    def __repr__(self) -> str:
        return (f"SavedModel(n_features={self.n_features}, n_targets={self.n_targets}, "
                f"feature_names={self.feature_names!r}, target_names={self.target_names!r}, "
                + ("" if self.fit_intercept else "fit_intercept=False, ")
                + f"metadata keys={sorted(self.metadata)!r})")


def _formula_columns(spec: dict, frame) -> np.ndarray:
    from .formula import rebuild

    return rebuild(spec, frame)


def model_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The ``(tensors, description)`` paths of the model at ``path``.

    ``run/model``, ``run/model.safetensors`` and ``run/model.json`` all give
    ``(run/model.safetensors, run/model.json)``; any other suffix is kept (``run/m.v2`` ->
    ``run/m.v2.safetensors``).
    """
    text = os.fspath(path)
    p = Path(text)
    if text.endswith(("/", os.sep)) or p.name in ("", ".", ".."):
        raise ValueError(f"model path {text!r} names a folder; give a file path such as 'run/model'")
    stem = p.with_suffix("") if p.suffix in SUFFIXES else p
    return tuple(stem.parent / (stem.name + suffix) for suffix in SUFFIXES)


def sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file with its ``__metadata__`` keys in sorted order, so equal models give equal bytes.

    safetensors writes the metadata from a hash map, whose order changes from one save to
    the next; the tensors' entries, offsets and data are left as they are.
    """
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(text) > size:  # written differently than expected: keep it as safetensors made it
        return blob
    return blob[:8] + text.ljust(size) + blob[8 + size:]


def _json_default(obj):
    """Let metadata hold NumPy scalars and arrays (turned into plain numbers and lists)."""
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _encoded(model: SavedModel) -> tuple[bytes, bytes]:
    """The bytes of ``model``'s safetensors file and of its JSON description (which holds the tensors' SHA-256)."""
    from . import __version__

    if not (np.isfinite(model.weight).all() and np.isfinite(model.bias).all()):
        raise ValueError("cannot save a model with non-finite coefficients (inf or NaN); "
                         "train it with a smaller learning rate")
    tensors = {"weight": np.ascontiguousarray(model.weight, dtype=np.float64),
               "bias": np.ascontiguousarray(model.bias, dtype=np.float64)}
    state = model.inference
    if state is not None:
        tensors.update(state.tensors())
        if not all(np.isfinite(t).all() for t in tensors.values()):
            state, tensors = None, {k: tensors[k] for k in TENSOR_NAMES}  # (a non-finite scale: no intervals)
    tensor_bytes = sorted_metadata(safetensors.numpy.save(tensors, metadata={
        "format": FORMAT, "format_version": str(FORMAT_VERSION),
        # the names decide which column meets which weight: kept beside the tensors too, so an
        # edited JSON is caught (the JSON's SHA-256 covers the tensors, not the JSON itself)
        "feature_names": json.dumps(list(model.feature_names)),
        "target_names": json.dumps(list(model.target_names)),
    }))
    description = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "feature_names": list(model.feature_names),
        "target_names": list(model.target_names),
        **({} if model.fit_intercept else {"fit_intercept": False}),  # absent: True (files before the entry)
        **({} if state is None else {"inference": state.description()}),
        "tensors": {name: {"dtype": str(t.dtype), "shape": list(t.shape)} for name, t in tensors.items()},
        "tensors_sha256": hashlib.sha256(tensor_bytes).hexdigest(),
        "versions": {"torchlinreg": __version__, "torch": _version("torch"),
                     "numpy": np.__version__, "safetensors": _version("safetensors")},
        "metadata": model.metadata,
    }
    try:  # strict JSON: NaN and Infinity are not JSON; store None (null) instead
        text = json.dumps(description, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model metadata must be JSON-serialisable with finite numbers ({exc})") from None
    json_bytes = (text + "\n").encode("utf-8")
    if len(json_bytes) > JSON_LIMIT:  # load_model would refuse it
        raise ValueError(f"the model's description would be {len(json_bytes):,} bytes, more than the "
                         f"{JSON_LIMIT:,} a model file may hold; keep less in its metadata")
    return tensor_bytes, json_bytes


def save_model(path: str | os.PathLike, model: SavedModel, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``model`` to ``<path>.safetensors`` and ``<path>.json``; return the two paths.

    ``model`` is a :class:`SavedModel`, a fit's result (``tl.fit``, ``tl.run_fit``: its trained model, by its
    ``saved_model()``), or a fitted estimator with ``coef_`` and ``intercept_``
    (:class:`torchlinreg.LinearRegression`, or scikit-learn's): its names are ``feature_names_in_``
    when it was fitted on a DataFrame (else ``x1, x2, ...``), and its parameters go into the metadata.

    The pair is replaced as one generation: killed at any moment, the save leaves the previous
    model or the new one, and :func:`load_model` loads it. Each file is written to a temporary
    file and renamed into place, tensors first; the JSON, which names the tensors by their
    SHA-256, is the commit, and the previous tensors are kept beside the new ones until it is in
    place. If a file cannot be written, the previous pair is put back as it was (or the new
    files removed). A killed save's temporary files are removed by the next save of the model.
    A lock (``.<name>.lock`` beside the files) keeps a second process from saving to the same
    path at the same time: it is refused, with the pid of the one saving.

    Raises
    ------
    OutputError
        A file exists and ``force`` is false, another process is saving to the same path, or a
        file cannot be written.
    ValueError
        The coefficients are not finite or the metadata is not JSON-serialisable.
    """
    tensors_path, json_path = model_paths(path)
    if not isinstance(model, SavedModel):
        model = model.saved_model() if hasattr(model, "saved_model") else _from_estimator(model)
    tensor_bytes, json_bytes = _encoded(model)
    try:
        tensors_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write the model to {str(tensors_path.parent)!r} "
                          f"({exc.strerror or exc}); choose another {{save}} path") from None
    stem = tensors_path.with_suffix("")
    with hold(stem, what=f"the model files {str(tensors_path)!r} and {str(json_path)!r}",
              fix="wait for it to finish, or choose another {save} path"):
        if not force:
            for p in (tensors_path, json_path):
                if p.exists():
                    raise OutputError(f"model file {str(p)!r} exists; pass {{force=True}} to replace it or "
                                      "choose another path")
        write_pair(tensors_path, json_path, tensor_bytes, json_bytes, json_limit=JSON_LIMIT,
                   tensors_limit=TENSORS_LIMIT)
    return tensors_path, json_path


def _from_estimator(estimator) -> SavedModel:
    """A fitted estimator's coefficients, intercepts and names as a :class:`SavedModel`."""
    if not (hasattr(estimator, "coef_") and hasattr(estimator, "intercept_")):
        raise ValueError(f"save_model needs a SavedModel or a fitted estimator (with coef_ and intercept_), got "
                         f"{type(estimator).__name__}; fit it first")
    weight = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))  # (m, d)
    bias = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))  # (m,)
    if bias.shape == (1,) and len(weight) > 1:
        bias = np.repeat(bias, len(weight))  # fit_intercept=False keeps one 0.0 for every target
    names = getattr(estimator, "feature_names_in_", None)
    features = tuple(map(str, names)) if names is not None else default_names("x", weight.shape[1])
    optimum = getattr(estimator, "optimum_", None)  # torchlinreg's estimator keeps the target names fitted on
    targets = tuple(optimum.target_names) if optimum is not None and len(optimum.target_names) == len(weight) \
        else default_names("y", len(weight))
    params = estimator.get_params() if hasattr(estimator, "get_params") else {}
    metadata = {"estimator": type(estimator).__name__,
                "params": {k: v for k, v in params.items() if isinstance(v, (str, int, float, bool, type(None)))},
                "feature_names_in": names is not None,  # whether the names are the data's (else x1, x2, ...)
                "coef_ndim": int(np.ndim(estimator.coef_))}  # 1: fitted on a 1-D y
    fit_intercept = getattr(estimator, "fit_intercept", True) is not False or np.any(bias != 0)
    return SavedModel(weight, bias, features, targets, metadata, fit_intercept=bool(fit_intercept))


# ---------------------------------------------------------------------------- loading


def _read(path: Path, other: Path, limit: int) -> bytes:
    fix = "pass the path of a model saved by torchlinreg"
    try:
        return read_regular(path, limit, fix=fix)
    except FileNotFoundError:
        if not other.exists():
            raise ModelFileError(f"no model at {str(path.with_suffix(''))!r} (neither {path.name!r} nor "
                                 f"{other.name!r} exists); {fix}") from None
        raise ModelFileError(f"model file {str(path)!r} is missing (its partner {other.name!r} is there); "
                             "a model is both files: copy them together or re-save the model") from None


def _check_formula(json_path: Path, desc: dict) -> None:
    """A formula's spec in the metadata must be what torchlinreg writes, and make the model's columns."""
    metadata = desc.get("metadata")
    spec = metadata.get("formula") if isinstance(metadata, dict) else None
    if spec is None:
        return
    from .formula import check_spec

    try:
        check_spec(spec)
    except ValueError as exc:
        raise ModelFileError(f"{str(json_path)!r}: its formula is damaged ({exc}); {RESAVE}") from None
    if spec["feature_names"] != list(desc["feature_names"]) or spec["fit_intercept"] != desc.get("fit_intercept", True):
        raise ModelFileError(f"{str(json_path)!r}: its formula makes other columns than the model's; {RESAVE}")


def load_model(path: str | os.PathLike) -> SavedModel:
    """Load the model saved at ``path`` (``run/model``, ``run/model.safetensors`` or ``run/model.json``).

    Both files are read and checked before anything is returned: the JSON's every field, then
    the size of the tensors file and of its header against the shapes the JSON gives, the SHA-256
    of the tensors file, and only then its tensor names, dtypes, shapes and values. Only regular
    files are read, never more than the model can need. Nothing in either file is ever executed.
    If a save was stopped after it replaced the tensors file but before its JSON, the previous
    tensors, kept beside them, are the ones the JSON names: the previous model loads.

    Raises
    ------
    ModelFileError
        A file is missing, unreadable, not a regular file, too large, truncated, corrupt,
        inconsistent with the other, of another format or a newer version, or a pickle; the
        message says how to fix it.
    """
    tensors_path, json_path = model_paths(path)
    desc = parse_description(json_path, _read(json_path, tensors_path, JSON_LIMIT))
    try:
        tensor_bytes, matched = committed_tensors(tensors_path, desc["tensors_sha256"].lower(), tensors_limit(desc),
                                                  fix=f"pass the path of a model saved by torchlinreg, or {RESAVE}")
    except FileNotFoundError:
        tensor_bytes, matched = _read(tensors_path, json_path, 0), False  # the message for a missing file
    check_header_length(tensors_path, tensor_bytes, desc)
    if not matched:
        raise mismatch(tensors_path, json_path, tensor_bytes, desc)
    tensors = parse_tensors(tensors_path, tensor_bytes, expected_tensors(desc))
    check_tensors(tensors_path, json_path, tensors, desc)
    check_names(tensors_path, json_path, tensor_bytes, desc)
    _check_formula(json_path, desc)
    if desc.get("fit_intercept") is False and np.any(tensors["bias"] != 0):
        raise ModelFileError(f"{str(json_path)!r} says the model has no intercept but {str(tensors_path)!r} holds "
                             f"a non-zero bias; {RESAVE}")
    from .inference import state_from_file

    fit_intercept = desc.get("fit_intercept", True)  # files written before the entry had a bias
    inference = state_from_file(json_path, desc, tensors, len(desc["target_names"]), len(desc["feature_names"]),
                                fit_intercept)
    return SavedModel(
        weight=tensors["weight"],  # copied to float64 arrays of their own by SavedModel
        bias=tensors["bias"],
        feature_names=tuple(desc["feature_names"]),
        target_names=tuple(desc["target_names"]),
        metadata=desc.get("metadata", {}),
        fit_intercept=fit_intercept,
        inference=inference,
    )
