"""Fuzzed model files through ``torchlinreg predict``: a model is either loaded as it was saved
(the predictions are those of its weights, computed here) or refused with one line naming the
file, leaving no predictions file; nothing in a file is ever run.

Hypothesis saves a random model with torchlinreg, then damages it: truncation, flipped or
overwritten bytes, a JSON edited field by field (also deeply nested, with a byte-order mark),
tensors that disagree with the JSON (re-hashed so the deeper checks are reached), the partner
file of another model, a missing file, and pickles (every protocol, torch.save) that would
leave a marker file if unpickled. See fuzzing.py for the profiles, the seed and the checks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import pickle
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import safetensors.numpy
from hypothesis import strategies as st

from fuzzing import assert_clean_stderr, assert_refused, files_under, profiles, run_cli, run_property
from torchlinreg.formats import write_table
from torchlinreg.persistence import SavedModel, save_model

NAMES = st.one_of(st.sampled_from(["x", "y", "a b", "é", "predicted", "nan", "1", "q,\"r\""]),
                  st.text(st.characters(codec="utf-8", exclude_characters="\x00\ufeff"), min_size=1, max_size=6))
COEFFICIENTS = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from([0.0, -0.0, 1e-100, 1e100]))
JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=8), st.just("x" * 5000)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)


class Payload:
    """Unpickling this creates ``marker``: proof that loading ran code from the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


class Case:
    """A model, what is done to its files, and the model a successful load must give."""

    def __init__(self, model: SavedModel, mutation: str, target: str, detail, expected: SavedModel | None):
        self.model, self.mutation, self.target, self.detail, self.expected = model, mutation, target, detail, expected

    def __repr__(self) -> str:
        m = self.model
        return (f"Case({self.mutation} of {self.target}: {repr(self.detail)[:400]}; model weight={m.weight.tolist()} "
                f"bias={m.bias.tolist()} features={m.feature_names} targets={m.target_names})")


@st.composite
def models(draw) -> SavedModel:
    d, m = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    names = draw(st.lists(NAMES, min_size=d + m, max_size=d + m, unique=True))
    weight = np.array(draw(st.lists(COEFFICIENTS, min_size=d * m, max_size=d * m))).reshape(m, d)
    bias = np.array(draw(st.lists(COEFFICIENTS, min_size=m, max_size=m)))
    return SavedModel(weight, bias, names[:d], names[d:], {"note": draw(st.text(max_size=4))})


def _tensor(draw, shape_like: np.ndarray) -> np.ndarray:
    """A tensor like ``shape_like`` or not: another shape, dtype or values (NaN and inf too)."""
    shape = draw(st.one_of(st.just(shape_like.shape), st.lists(st.integers(0, 3), max_size=3).map(tuple)))
    dtype = draw(st.sampled_from(["float64", "float64", "float32", "float16", "int64", "uint8", "bool"]))
    size = int(np.prod(shape))
    values = draw(st.lists(st.one_of(COEFFICIENTS, st.sampled_from([np.nan, np.inf])), min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        return np.array(values, dtype=np.float64).reshape(shape).astype(dtype)


@st.composite
def damaged_models(draw) -> Case:
    model = draw(models())
    mutation = draw(st.sampled_from(["truncate", "flip", "overwrite", "json-edit", "json-edit", "tensors", "tensors",
                                     "pickle", "torch.save", "partner", "missing", "deep", "bom"]))
    target = draw(st.sampled_from(["json", "safetensors"]))
    detail, expected = None, model
    if mutation == "truncate":
        detail = draw(st.floats(0, 1, exclude_max=True))
    elif mutation == "flip":
        where = st.floats(0, 1, exclude_max=True)  # a fraction of the file's length
        detail = draw(st.lists(st.tuples(where, st.integers(1, 255)), min_size=1, max_size=4))
    elif mutation == "overwrite":
        detail = (draw(st.floats(0, 1, exclude_max=True)), draw(st.binary(min_size=1, max_size=32)))
    elif mutation == "json-edit":
        key = draw(st.sampled_from(["format", "format_version", "feature_names", "target_names", "tensors",
                                    "tensors.weight", "tensors.bias.shape", "tensors.weight.dtype", "tensors_sha256",
                                    "metadata", "versions", "extra"]))
        detail = (key, draw(st.one_of(st.just("<delete>"), JSON_VALUES,
                                      st.just(list(reversed(model.feature_names))), st.just(model.weight.shape))))
        target = "json"
    elif mutation == "tensors":  # re-hashed: the JSON's checksum matches, so every later check runs
        tensors = {"weight": _tensor(draw, model.weight), "bias": _tensor(draw, model.bias)}
        if draw(st.booleans()):
            tensors[draw(st.sampled_from(["weight", "bias", "extra"]))] = _tensor(draw, model.bias)
        header_names = draw(st.sampled_from(["kept", "none", "garbage", "deep", "reversed"]))
        respec = draw(st.booleans())  # make the JSON's shapes and dtypes agree with the new tensors
        detail = (tensors, header_names, respec)
        target = "safetensors"
        # Loadable: names as saved, the JSON's specs agreeing, a float weight and bias of the model's shapes.
        kept = header_names in ("kept", "none") or (header_names == "reversed" and model.n_features == 1)
        w, b = tensors.get("weight"), tensors.get("bias")
        expected = None
        if kept and "extra" not in tensors and w.dtype.kind == "f" and b.dtype.kind == "f" \
                and w.shape == model.weight.shape and b.shape == model.bias.shape \
                and (respec or w.dtype == b.dtype == np.float64):
            expected = SavedModel(w.astype(np.float64), b.astype(np.float64), model.feature_names, model.target_names)
    elif mutation == "pickle":
        detail = draw(st.integers(0, pickle.HIGHEST_PROTOCOL))
    elif mutation == "deep":
        detail = draw(st.integers(500, 200_000))
        target = "json"
    elif mutation == "bom":
        target = "json"
    if mutation == "partner":
        detail = draw(models())
        expected = None  # unless it is the same model (then _damage says so)
    elif mutation in ("pickle", "torch.save", "missing", "deep"):
        expected = None
    return Case(model, mutation, target, detail, expected)


def _damage(case: Case, tensors_path: Path, json_path: Path, marker: Path) -> SavedModel | None:
    """Damage the saved files as ``case`` says; return the model a successful load must give (None: none)."""
    path = json_path if case.target == "json" else tensors_path
    data = bytearray(path.read_bytes())
    kind, detail = case.mutation, case.detail
    if kind == "truncate":
        del data[int(detail * len(data)):]
    elif kind == "flip":
        for where, mask in detail:
            data[int(where * len(data))] ^= mask
    elif kind == "overwrite":
        at, piece = int(detail[0] * len(data)), detail[1]
        data[at:at + len(piece)] = piece
    elif kind == "json-edit":
        desc = json.loads(data)
        *parents, last = detail[0].split(".")
        node = desc
        for key in parents:
            node = node.setdefault(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            if detail[1] == "<delete>":
                node.pop(last, None)
            else:
                node[last] = detail[1]
        data = bytearray(json.dumps(desc).encode())
    elif kind == "tensors":
        tensors, header_names, respec = detail
        names = {"kept": case.model.feature_names, "reversed": case.model.feature_names[::-1]}.get(header_names)
        metadata = {} if header_names == "none" else {
            "feature_names": json.dumps(list(names)) if names is not None else
            ("[" * 5000 if header_names == "deep" else "not json"),
            "target_names": json.dumps(list(case.model.target_names))}
        data = bytearray(safetensors.numpy.save(tensors, metadata=metadata))
        desc = json.loads(json_path.read_text())
        desc["tensors_sha256"] = hashlib.sha256(data).hexdigest()
        if respec:
            for name in ("weight", "bias"):
                if name in tensors:
                    desc["tensors"][name] = {"dtype": str(tensors[name].dtype), "shape": list(tensors[name].shape)}
        json_path.write_text(json.dumps(desc))
    elif kind == "pickle":
        data = bytearray(pickle.dumps({"weight": Payload(str(marker)), "bias": [0.0]}, protocol=detail))
    elif kind == "torch.save":
        import torch

        sink = io.BytesIO()
        torch.save({"weight": torch.ones(1, 1), "bias": torch.zeros(1)}, sink)
        data = bytearray(sink.getvalue())
    elif kind == "partner":
        other = tensors_path.parent / "other"
        save_model(other, detail)
        data = bytearray((other.parent / f"other.{case.target}").read_bytes())
        if (other.parent / "other.safetensors").read_bytes() == tensors_path.read_bytes():
            expected = case.model  # the same weights and names (hypothesis drew them twice): a valid pair
        else:
            expected = None
    elif kind == "missing":
        path.unlink()
        return None
    elif kind == "deep":
        data = bytearray(b'{"format": "torchlinreg-model", "metadata": ' + b"[" * detail + b"]" * detail + b"}")
    elif kind == "bom":
        data = bytearray("\ufeff".encode() + data)
    path.write_bytes(bytes(data))
    return expected if kind == "partner" else case.expected


def _assert_predictions(output: Path, X: np.ndarray, model: SavedModel) -> None:
    """The file holds ``X @ weight.T + bias`` for every row, each to float64 rounding (checked in rationals)."""
    rows = list(csv.reader(io.StringIO(output.read_bytes().decode(), newline="")))
    assert rows[0] == [f"predicted_{t}" for t in model.target_names], rows[0]
    got = np.array([[float(v) for v in r] for r in rows[1:]]).reshape(len(X), model.n_targets)
    for i, x in enumerate(X):
        for t in range(model.n_targets):
            terms = [Fraction(x[j]) * Fraction(model.weight[t, j]) for j in range(model.n_features)]
            terms.append(Fraction(model.bias[t]))
            slack = 4 * model.n_features * np.finfo(float).eps * sum(abs(v) for v in terms) + Fraction(5e-324)
            assert abs(Fraction(got[i, t]) - sum(terms)) <= slack, (i, t, got[i, t], float(sum(terms)))


@profiles(slow_examples=800)
def test_damaged_model_files(tmp_path, profile):
    def check(case: Case):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        try:
            stem, marker, output = work / "model", work / "code-ran", work / "predictions.csv"
            tensors_path, json_path = save_model(stem, case.model)
            rng = np.random.default_rng(0)
            X = np.round(rng.uniform(-100, 100, (3, case.model.n_features)), 3)
            data = write_table(work / "data.csv", dict(zip(case.model.feature_names, X.T)))
            expected = _damage(case, tensors_path, json_path, marker)
            before = set(files_under(work))
            code, out, err = run_cli("predict", stem, data, "-o", output)
            assert not marker.exists(), "loading the model ran code from it"
            if code == 0:
                assert expected is not None, f"a damaged model was loaded: {err}"
                assert_clean_stderr(err)
                _assert_predictions(output, X, expected)
            else:
                message = assert_refused(code, out, err, codes=(1,))
                named = ("model.json", "model.safetensors") + (("data.csv",) if expected is not None else ())
                assert any(name in message for name in named), message  # the damaged file (or the data)
                assert set(files_under(work)) == before, "a refused predict left files"
        finally:
            shutil.rmtree(work, ignore_errors=True)

    run_property(check, damaged_models(), profile)


def test_a_byte_order_mark_before_the_json_is_read(tmp_path):
    """Some editors save JSON with a byte-order mark; the model still loads, and predicts the same."""
    model = SavedModel(np.array([[1.5, -2.0]]), np.array([0.25]), ("a", "b"), ("y",))
    stem = tmp_path / "model"
    _, json_path = save_model(stem, model)
    json_path.write_bytes("\ufeff".encode() + json_path.read_bytes())
    X = np.array([[1.0, 2.0], [3.0, -4.0]])
    data = write_table(tmp_path / "data.csv", {"a": X[:, 0], "b": X[:, 1]})
    code, out, err = run_cli("predict", stem, data, "-o", tmp_path / "p.csv")
    assert code == 0, err
    _assert_predictions(tmp_path / "p.csv", X, model)
