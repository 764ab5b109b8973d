import errno
import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import safetensors.numpy
import torch

from bounds import gamma
import torchlinreg
from torchlinreg.errors import ModelFileError, OutputError
from torchlinreg.persistence import FORMAT, FORMAT_VERSION, SavedModel, load_model, model_paths, save_model

METADATA = {"settings": {"lr": 0.001, "epochs": 50}, "scaling": None, "metrics": {"r2": 0.97}, "note": "é"}


def make_model(seed=0, n_targets=2, n_features=3, metadata=METADATA):
    rng = np.random.default_rng(seed)
    return SavedModel(
        weight=rng.standard_normal((n_targets, n_features)) * 10.0 ** rng.integers(-8, 8, (n_targets, n_features)),
        bias=rng.standard_normal(n_targets),
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        target_names=tuple(f"y{i}" for i in range(n_targets)),
        metadata=metadata,
    )


@pytest.fixture
def saved(tmp_path):
    """A model saved at tmp_path/'model': (model, stem, tensors path, json path)."""
    model = make_model()
    stem = tmp_path / "model"
    tensors_path, json_path = save_model(stem, model)
    return model, stem, tensors_path, json_path


def refused(path, match):
    """load_model(path) raises ModelFileError matching ``match``, in one line."""
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def rewrite_json(json_path, edit):
    desc = json.loads(json_path.read_text())
    edit(desc)
    json_path.write_text(json.dumps(desc))


def write_tensors(tensors_path, json_path, tensors, metadata=None):
    """Write hand-made tensors and make the JSON's SHA-256 and specs agree with them."""
    data = safetensors.numpy.save(tensors, metadata=metadata)
    tensors_path.write_bytes(data)

    def edit(desc):
        desc["tensors_sha256"] = hashlib.sha256(data).hexdigest()
        for name in ("weight", "bias"):
            if name in tensors:
                desc["tensors"][name] = {"dtype": str(tensors[name].dtype), "shape": list(tensors[name].shape)}

    rewrite_json(json_path, edit)


# ---------------------------------------------------------------- round trip and format


def test_round_trip_is_bit_identical(saved):
    model, stem, tensors_path, json_path = saved
    for path in (stem, tensors_path, json_path, str(stem)):
        loaded = load_model(path)
        assert loaded.weight.dtype == loaded.bias.dtype == np.float64
        assert loaded.weight.tobytes() == model.weight.tobytes()
        assert loaded.bias.tobytes() == model.bias.tobytes()
        assert loaded.feature_names == ("x0", "x1", "x2") and loaded.target_names == ("y0", "y1")
        assert loaded.metadata == METADATA
        assert (loaded.n_features, loaded.n_targets) == (3, 2)


def test_files_written_and_nothing_else(saved, tmp_path):
    _, _, tensors_path, json_path = saved
    assert (tensors_path, json_path) == (tmp_path / "model.safetensors", tmp_path / "model.json")
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.safetensors"]


def test_json_describes_the_tensors(saved):
    model, _, tensors_path, json_path = saved
    text = json_path.read_text(encoding="utf-8")
    assert text.startswith('{\n  "format": ') and text.endswith("}\n")  # pretty-printed
    desc = json.loads(text)
    assert desc["format"] == FORMAT and desc["format_version"] == FORMAT_VERSION
    assert desc["feature_names"] == ["x0", "x1", "x2"] and desc["target_names"] == ["y0", "y1"]
    assert desc["tensors"] == {"weight": {"dtype": "float64", "shape": [2, 3]},
                               "bias": {"dtype": "float64", "shape": [2]}}
    assert desc["tensors_sha256"] == hashlib.sha256(tensors_path.read_bytes()).hexdigest()
    assert desc["versions"]["torchlinreg"] == torchlinreg.__version__
    assert desc["versions"]["torch"] == torch.__version__ and desc["versions"]["numpy"] == np.__version__
    assert desc["metadata"] == METADATA
    # the tensors file is plain safetensors that any reader can open
    tensors = safetensors.numpy.load(tensors_path.read_bytes())
    assert np.array_equal(tensors["weight"], model.weight) and np.array_equal(tensors["bias"], model.bias)


def test_numpy_values_in_metadata_become_json(tmp_path):
    model = make_model(metadata={"n_iter": np.int64(7), "losses": np.array([1.5, 0.25])})
    save_model(tmp_path / "m", model)
    assert load_model(tmp_path / "m").metadata == {"n_iter": 7, "losses": [1.5, 0.25]}


@pytest.mark.parametrize("metadata", [{"r2": float("nan")}, {"fn": print}])
def test_metadata_must_be_strict_json(tmp_path, metadata):
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_model(tmp_path / "m", make_model(metadata=metadata))
    assert os.listdir(tmp_path) == []


def test_non_finite_coefficients_are_not_saved(tmp_path):
    model = make_model()
    model.weight[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        save_model(tmp_path / "m", model)
    assert os.listdir(tmp_path) == []


def test_missing_folders_are_created(tmp_path):
    tensors_path, _ = save_model(tmp_path / "a" / "b" / "model", make_model())
    assert tensors_path.is_file()


# ---------------------------------------------------------------- SavedModel


def test_predict_matches_the_closed_form():
    model = make_model(seed=1)
    X = np.random.default_rng(2).standard_normal((7, 3))
    # bit-identical: the same NumPy expression on the same arrays
    np.testing.assert_array_equal(model.predict(X), X @ model.weight.T + model.bias)
    # a float32 torch tensor that requires grad: converted to float64 first
    Xt = torch.tensor(X, dtype=torch.float32, requires_grad=True)
    expected = (Xt.detach().double() @ torch.from_numpy(model.weight).T + torch.from_numpy(model.bias)).numpy()
    out = model.predict(Xt)
    assert out.dtype == np.float64 and out.shape == (7, 2)
    # NumPy's float64 product (predict) against PyTorch's: each 3-term dot plus the bias is within
    # γ_4·(|X||W|ᵀ + |b|) of the exact value (Higham 3.5), so the two are ≤ twice that apart
    bound = 2 * gamma(4) * (np.abs(Xt.detach().double().numpy()) @ np.abs(model.weight).T + np.abs(model.bias))
    assert (np.abs(out - expected) <= bound).all()


@pytest.mark.parametrize("shape", [(7, 2), (7, 4), (3,)])
def test_predict_checks_the_number_of_features(shape):
    with pytest.raises(ValueError, match=r"\(n_samples, 3\) for this model's 3 features"):
        make_model().predict(np.zeros(shape))


@pytest.mark.parametrize("kwargs, match", [
    ({"weight": np.zeros(3)}, "weight must have shape"),
    ({"weight": np.zeros((2, 0))}, "weight must have shape"),
    ({"bias": np.zeros(3)}, r"bias must have shape \(2,\)"),
    ({"feature_names": ("a", "b")}, "3 features in the coefficients but 2 feature names"),
    ({"target_names": ("y", "y")}, "target names must be unique"),
    ({"feature_names": ("a", "b", 3)}, "feature names must be strings"),
    ({"metadata": []}, "metadata must be a dict"),
])
def test_saved_model_checks_its_fields(kwargs, match):
    fields = {"weight": np.ones((2, 3)), "bias": np.ones(2), "feature_names": ("a", "b", "c"),
              "target_names": ("y", "z"), "metadata": {}}
    with pytest.raises(ValueError, match=match):
        SavedModel(**{**fields, **kwargs})


def test_saved_model_copies_and_repr():
    weight = torch.ones(1, 2, requires_grad=True)
    model = SavedModel(weight, [0.5], ["a", "b"], ["y"], {"k": 1})
    assert model.weight.dtype == np.float64 and isinstance(model.feature_names, tuple)
    assert repr(model) == ("SavedModel(n_features=2, n_targets=1, feature_names=('a', 'b'), "
                           "target_names=('y',), metadata keys=['k'])")


# ---------------------------------------------------------------- paths and overwriting


@pytest.mark.parametrize("given", ["run/model", "run/model.safetensors", "run/model.json"])
def test_model_paths(given):
    tensors_path, json_path = model_paths(given)
    assert (str(tensors_path), str(json_path)) == ("run/model.safetensors", "run/model.json")


def test_model_paths_keeps_other_suffixes_and_refuses_folders():
    assert [p.name for p in model_paths("run/m.v2")] == ["m.v2.safetensors", "m.v2.json"]
    for folder in ("run/", ".", ""):
        with pytest.raises(ValueError, match="names a folder"):
            model_paths(folder)


@pytest.mark.parametrize("existing", ["model.safetensors", "model.json"])
def test_refuses_to_overwrite_without_force(saved, tmp_path, existing):
    old, stem, tensors_path, json_path = saved
    (tmp_path / ({"model.safetensors", "model.json"} - {existing}).pop()).unlink()
    before = (tmp_path / existing).read_bytes()
    with pytest.raises(OutputError, match=rf"'.*{existing}' exists; pass force=True to replace it or choose another path"):
        save_model(stem, make_model(seed=5))
    assert (tmp_path / existing).read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [existing]


def test_force_replaces_the_model(saved):
    _, stem, _, _ = saved
    new = make_model(seed=5, n_targets=1, n_features=4, metadata={"v": 2})
    save_model(stem, new, force=True)
    loaded = load_model(stem)
    assert np.array_equal(loaded.weight, new.weight) and loaded.metadata == {"v": 2}


def fail_replace(monkeypatch, suffix):
    """Make os.replace fail with ENOSPC when it would put a file ending in ``suffix`` in place."""
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_failed_write_leaves_the_previous_files(saved, tmp_path, monkeypatch, suffix):
    old, stem, tensors_path, json_path = saved
    before = tensors_path.read_bytes(), json_path.read_bytes()
    fail_replace(monkeypatch, suffix)
    with pytest.raises(OutputError, match="No space left on device"):
        save_model(stem, make_model(seed=9), force=True)
    monkeypatch.undo()
    assert (tensors_path.read_bytes(), json_path.read_bytes()) == before
    assert sorted(os.listdir(tmp_path)) == ["model.json", "model.safetensors"]  # no temporary files
    assert np.array_equal(load_model(stem).weight, old.weight)


@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch, suffix):
    fail_replace(monkeypatch, suffix)
    with pytest.raises(OutputError, match="No space left on device"):
        save_model(tmp_path / "model", make_model())
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- refusing bad files


def test_missing_files(saved, tmp_path):
    _, stem, tensors_path, json_path = saved
    tensors_path.unlink()
    refused(stem, r"'.*model\.safetensors' is missing \(its partner 'model.json' is there\)")
    json_path.unlink()
    refused(stem, r"no model at '.*model' \(neither 'model.json' nor 'model.safetensors' exists\)")
    save_model(stem, make_model())
    json_path.unlink()
    refused(stem, r"'.*model\.json' is missing")


def test_unreadable_file(saved):
    _, stem, tensors_path, _ = saved
    tensors_path.unlink()
    tensors_path.mkdir()
    refused(stem, r"model file .*model\.safetensors. is a folder, not a regular file")


def test_truncated_tensors(saved):
    _, stem, tensors_path, _ = saved
    data = tensors_path.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    for cut in (0, 3, 8, 9, header_end - 1, header_end, header_end + 5, len(data) - 1):
        tensors_path.write_bytes(data[:cut])
        refused(stem, r"model\.safetensors' is truncated or corrupt \(.*\); copy the file again or re-save")


def test_changed_data_byte(saved):
    _, stem, tensors_path, _ = saved
    data = bytearray(tensors_path.read_bytes())
    data[-3] ^= 0x01  # a bit of the last bias value: still a valid file, but not the one saved
    tensors_path.write_bytes(bytes(data))
    refused(stem, "was changed after saving or does not belong to this JSON")


@pytest.mark.parametrize("where, match", [
    (lambda header: 0, "changed after saving"),  # the '{' that opens the header: refused before it is parsed
    (lambda header: header.index(b"torchlinreg-model") + 3, "changed after saving"),  # still valid JSON
    (lambda header: header.index(b'"F64"') + 3, "changed after saving"),  # dtype F64 -> F74
])
def test_changed_header_byte(saved, where, match):
    _, stem, tensors_path, _ = saved
    data = bytearray(tensors_path.read_bytes())
    header = bytes(data[8:8 + int.from_bytes(data[:8], "little")])
    data[8 + where(header)] ^= 0x01
    tensors_path.write_bytes(bytes(data))
    refused(stem, match)


def test_tensors_of_another_model(tmp_path, saved):
    _, stem, tensors_path, _ = saved
    other, _ = save_model(tmp_path / "other", make_model(seed=3))
    tensors_path.write_bytes(other.read_bytes())
    refused(stem, r"does not match the SHA-256 in '.*model\.json'.*does not belong to this JSON")


@pytest.mark.parametrize("content, match", [
    (lambda text: text[: len(text) // 2], r"is not valid JSON, perhaps truncated \(.*line"),
    (lambda text: "", "is not valid JSON"),
    (lambda text: b"\xff\xfe{}", r"is not valid JSON.*utf-8"),
    (lambda text: "[1, 2]", r"not a torchlinreg model description \(format 'list'"),
    (lambda text: '{"format": "other-tool"}', r"format 'other-tool', expected 'torchlinreg-model'"),
    (lambda text: text.replace('"format_version": 1', '"format_version": 2'),
     r"format version 2, newer than this torchlinreg reads \(1\); upgrade torchlinreg"),
    (lambda text: text.replace('"format_version": 1', '"format_version": "1"'), "invalid format_version '1'"),
])
def test_bad_json(saved, content, match):
    _, stem, _, json_path = saved
    new = content(json_path.read_text(encoding="utf-8"))
    json_path.write_bytes(new if isinstance(new, bytes) else new.encode("utf-8"))
    refused(stem, match)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["tensors"]["weight"].update(shape=[2, 4]) or d["feature_names"].append("x3"),
     r"tensor 'weight' in .* is float64 of shape \(2, 3\) but '.*model\.json' says float64 of shape \(2, 4\)"),
    (lambda d: d["tensors"]["bias"].update(dtype="float32"), r"'.*model\.json' says float32 of shape \(2,\)"),
    (lambda d: d["feature_names"].pop(), r"lists 2 feature_names but the model has 3 features"),
    (lambda d: d["target_names"].append("y9"), r"lists 3 target_names but the model has 2 targets"),
    (lambda d: d.update(feature_names=["x0", "x0", "x1"]), "repeated names in 'feature_names'"),
    (lambda d: d.pop("target_names"), "no valid 'target_names'"),
    (lambda d: d["tensors"].pop("bias"), "no valid 'tensors' entry"),
    (lambda d: d["tensors"].update(bias="float64"), "invalid entry for tensor 'bias'"),
    (lambda d: d["tensors"]["weight"].update(dtype=["x"]), "invalid entry for tensor 'weight'"),  # found by fuzzing
    (lambda d: d["tensors"]["weight"].update(dtype="complex128"), "invalid entry for tensor 'weight'"),
    (lambda d: d["tensors"]["weight"].update(shape=[2, -3]), "invalid entry for tensor 'weight'"),
    (lambda d: d.update(extra=1), "unknown entry 'extra'"),
    (lambda d: d.update(versions=[]), "'versions' entry that is not an object"),
    (lambda d: d.update(tensors_sha256="z" * 64), "no valid 'tensors_sha256'"),
    (lambda d: d.pop("tensors_sha256"), "no valid 'tensors_sha256'"),
    (lambda d: d.update(metadata=[1]), "'metadata' entry that is not an object"),
])
def test_json_that_disagrees(saved, edit, match):
    _, stem, _, json_path = saved
    rewrite_json(json_path, edit)
    message = refused(stem, match)
    assert message.endswith("re-save the model with torchlinreg")


@pytest.mark.parametrize("tensors, match", [
    ({"weight": np.ones((2, 3)), "bias": np.ones(2), "extra": np.ones(1)},
     r"holds tensors \['bias', 'extra', 'weight'\], expected exactly 'weight' and 'bias'"),
    ({"weight": np.ones((2, 3))}, r"holds tensors \['weight'\], expected exactly"),
    ({"weight": np.ones((2, 3), dtype=np.int64), "bias": np.ones(2)}, "has dtype int64, expected a float dtype"),
    ({"weight": np.ones((2, 3)), "bias": np.ones(3)},
     r"weight of shape \(2, 3\) and bias of shape \(3,\); expected \(n_targets, n_features\) and \(n_targets,\)"),
    ({"weight": np.ones(3), "bias": np.ones(3)}, r"weight of shape \(3,\)"),
    ({"weight": np.array([[1.0, np.nan, 2.0], [0, 0, 0]]), "bias": np.ones(2)},
     "tensor 'weight' in .* holds non-finite values"),
    ({"weight": np.ones((2, 3)), "bias": np.array([np.inf, 0.0])}, "tensor 'bias' in .* holds non-finite"),
])
def test_bad_tensors_with_a_matching_checksum(saved, tensors, match):
    _, stem, tensors_path, json_path = saved
    write_tensors(tensors_path, json_path, tensors)
    refused(stem, match)


def test_float32_tensors_are_read_as_float64(saved):
    _, stem, tensors_path, json_path = saved
    weight, bias = np.full((2, 3), 0.1, dtype=np.float32), np.ones(2, dtype=np.float32)
    write_tensors(tensors_path, json_path, {"weight": weight, "bias": bias})
    loaded = load_model(stem)
    assert loaded.weight.dtype == np.float64 and np.array_equal(loaded.weight, weight.astype(np.float64))


def test_header_that_starts_like_a_pickle_still_loads(saved):
    # a valid file whose header is 0x280 bytes long begins with 0x80 0x02, a pickle's first bytes
    _, stem, tensors_path, json_path = saved
    tensors = {"weight": np.ones((2, 3)), "bias": np.ones(2)}
    size = len(safetensors.numpy.save(tensors, metadata={"pad": ""})) - 8 - 64  # header length
    write_tensors(tensors_path, json_path, tensors, metadata={"pad": "x" * (0x280 - size)})
    assert tensors_path.read_bytes()[:2] == b"\x80\x02"
    assert np.array_equal(load_model(stem).weight, np.ones((2, 3)))


class _Payload:
    """Unpickling this would create ``marker``: the proof that loading ran code from the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


PICKLE_MESSAGE = ("is a pickle/torch.save file; torchlinreg never loads pickles "
                  r"\(they can run code\); re-save the model with torchlinreg")


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_pickles_are_refused_and_never_run(saved, tmp_path, protocol, suffix):
    _, stem, _, _ = saved
    marker = tmp_path / "code-ran"
    stem.with_suffix(suffix).write_bytes(pickle.dumps({"weight": _Payload(marker)}, protocol=protocol))
    refused(stem, rf"model\{suffix}' {PICKLE_MESSAGE}")
    assert not marker.exists()


def test_torch_save_files_are_refused(saved):
    _, stem, tensors_path, _ = saved
    torch.save({"weight": torch.ones(2, 3), "bias": torch.ones(2)}, tensors_path)
    assert tensors_path.read_bytes()[:4] == b"PK\x03\x04"
    refused(stem, PICKLE_MESSAGE)


def test_edited_names_in_the_json_are_refused(tmp_path):
    import json as _json

    model = SavedModel(np.array([[1.0, 2.0, 3.0]]), np.array([0.5]), ("a", "b", "c"), ("y",), {})
    save_model(tmp_path / "m", model)
    desc = _json.loads((tmp_path / "m.json").read_text())
    desc["feature_names"] = ["b", "a", "c"]  # same count, different meaning: predictions would be wrong
    (tmp_path / "m.json").write_text(_json.dumps(desc))
    with pytest.raises(ModelFileError, match="feature names .* differ .* the JSON was edited"):
        load_model(tmp_path / "m")


def test_a_model_predicts_from_a_dataframe_by_column_name(tmp_path):
    """Issue 14: a DataFrame's columns in another order (and extra ones) give the same predictions as the model's
    own order; a missing column is an error naming it. An array is taken in the model's order."""
    import pandas as pd

    from torchlinreg.persistence import SavedModel, load_model, save_model

    model = SavedModel(np.array([[1.0, 10.0]]), np.array([0.5]), ("a", "b"), ("y",), {})
    save_model(tmp_path / "m", model)
    loaded = load_model(tmp_path / "m")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    expected = np.array([[1.0 + 30.0 + 0.5], [2.0 + 40.0 + 0.5]])  # exact in float64
    np.testing.assert_array_equal(loaded.predict(frame), expected)
    np.testing.assert_array_equal(loaded.predict(frame[["b", "a"]].assign(extra=7.0)), expected)
    np.testing.assert_array_equal(loaded.predict(frame.to_numpy()), expected)
    with pytest.raises(ValueError, match="no column 'b'"):
        loaded.predict(frame[["a"]])


def test_save_model_takes_a_fitted_estimator(tmp_path):
    """Issue 14: `tl.save_model(path, estimator)` writes the estimator's coefficients with the names it was fitted on;
    the loaded model predicts what the estimator predicts (the same float64 products, in another order: within
    γ_d of Σ|x_j·w_j| + |b|), also from the columns in another order."""
    import pandas as pd

    import torchlinreg as tl

    rng = np.random.default_rng(41)
    frame = pd.DataFrame(rng.standard_normal((60, 3)), columns=["a", "b", "c"])
    y = frame.to_numpy() @ np.array([1.0, -2.0, 0.5]) + 3.0 + 0.01 * rng.standard_normal(60)
    estimator = tl.LinearRegression(solver="exact").fit(frame, y)
    tl.save_model(tmp_path / "est", estimator)
    loaded = tl.load_model(tmp_path / "est")
    assert loaded.feature_names == ("a", "b", "c") and loaded.metadata["estimator"] == "LinearRegression"
    expected = estimator.predict(frame)
    u = 2.0 ** -53
    bound = 4 * u / (1 - 4 * u) * (np.abs(frame.to_numpy()) @ np.abs(loaded.weight[0]) + abs(loaded.bias[0]))
    np.testing.assert_allclose(loaded.predict(frame[["c", "a", "b"]])[:, 0], expected, rtol=0, atol=bound.max())
    with pytest.raises(ValueError, match="fitted estimator"):
        tl.save_model(tmp_path / "unfitted", tl.LinearRegression())


def test_a_saved_estimator_comes_back_as_a_fitted_estimator(tmp_path):
    """Issue 14: save_model, then load_estimator (LinearRegression.from_saved_model of load_model): the estimator
    predicts what the original predicts, bit for bit (the same float64 coefficients in the same product), with the
    names it was fitted on and its parameters."""
    import warnings

    import pandas as pd

    import torchlinreg as tl

    rng = np.random.default_rng(43)
    frame = pd.DataFrame(rng.standard_normal((80, 3)), columns=["size", "age", "rooms"])
    y = pd.Series(frame.to_numpy() @ np.array([1.0, -2.0, 0.5]) + 3.0 + 0.1 * rng.standard_normal(80), name="price")
    original = tl.LinearRegression(optimizer="adam", lr=0.05, epochs=40, tol=None, random_state=7).fit(frame, y)
    tl.save_model(tmp_path / "est", original)
    saved = tl.load_model(tmp_path / "est")
    assert saved.target_names == ("price",)  # the Series' name, kept by fit
    back = tl.LinearRegression.from_saved_model(saved)
    assert isinstance(back, tl.LinearRegression) and back.get_params() == original.get_params()
    assert list(back.feature_names_in_) == ["size", "age", "rooms"] and back.n_features_in_ == 3
    assert back.coef_.shape == original.coef_.shape == (3,) and isinstance(back.intercept_, float)
    np.testing.assert_array_equal(back.coef_, original.coef_)
    assert back.intercept_ == original.intercept_
    np.testing.assert_array_equal(back.predict(frame), original.predict(frame))
    with pytest.raises(ValueError, match="feature names"):  # scikit-learn's check of the names, as the original's
        back.predict(frame[["age", "size", "rooms"]])
    # fitted without names, on a 2-D y: no feature_names_in_, 2-D coefficients
    Y = np.column_stack([y, 2 * y])
    plain = tl.LinearRegression(solver="exact").fit(frame.to_numpy(), Y)
    tl.save_model(tmp_path / "plain", plain)
    back = tl.load_estimator(tmp_path / "plain")
    assert not hasattr(back, "feature_names_in_") and back.coef_.shape == (2, 3) and back.intercept_.shape == (2,)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning about feature names either
        np.testing.assert_array_equal(back.predict(frame.to_numpy()), plain.predict(frame.to_numpy()))
    # and it trains on: partial_fit continues from the loaded coefficients
    assert back.partial_fit(frame.to_numpy(), Y).n_iter_ == 1


def test_a_model_saved_by_fit_comes_back_as_an_estimator_with_its_settings(tmp_path):
    from torchlinreg.cli import main

    assert main(["fit", "--quiet", "--no-plots", "--epochs", "7", "--lr", "0.002", "--out", str(tmp_path / "run"),
                 "--save", str(tmp_path / "model")]) == 0
    import torchlinreg as tl

    saved = load_model(tmp_path / "model")
    back = tl.load_estimator(tmp_path / "model")
    assert (back.epochs, back.lr, back.optimizer, back.standardize, back.n_iter_) == (7, 0.002, "sgd", False, 7)
    import pandas as pd

    assert list(back.feature_names_in_) == ["x"]  # the tutorial's column
    data = pd.DataFrame({"x": np.linspace(1, 50, 50)})
    np.testing.assert_array_equal(back.predict(data), saved.predict(data)[:, 0])  # one product per row: the same
