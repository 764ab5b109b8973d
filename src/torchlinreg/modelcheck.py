"""What a model's two files must hold, checked before anything in them is used.

The JSON description is checked field by field (type and range) before the tensors file is
read; its shapes bound the tensors file's size and its header's length, so a file that
declares a million tensors is refused by its size, and its SHA-256 is compared before the
safetensors header is parsed (see :func:`torchlinreg.persistence.load_model`).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import safetensors.numpy

from .errors import ModelFileError

FORMAT = "torchlinreg-model"
FORMAT_VERSION = 1
TENSOR_NAMES = ("weight", "bias")
# the exact fit's inference state (torchlinreg.inference), beside weight and bias in files that hold one
INFERENCE_TENSORS = ("optimum_weight", "optimum_bias", "scale", "xbar", "basis")
KEYS = frozenset({"format", "format_version", "feature_names", "target_names", "tensors", "tensors_sha256",
                  "versions", "metadata", "fit_intercept",  # fit_intercept: written only when false
                  "inference"})  # inference: written with the inference tensors
DTYPES = frozenset({"bool", "int8", "uint8", "int16", "uint16", "float16", "int32", "uint32", "float32", "int64",
                    "uint64", "float64"})  # what safetensors.numpy gives back; a float one is required later
JSON_LIMIT = 64 * 2**20  # bytes of a model's JSON: a million features with their names and scaling fit
TENSORS_LIMIT = 2**34  # bytes of tensors: a model of 2**31 coefficients
HEADER_SLACK = 64 * 2**10  # bytes of a safetensors header beyond its entries and the names it must hold

RESAVE = "re-save the model with torchlinreg"
SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _looks_like_pickle(data: bytes) -> bool:
    """A pickle of protocol 2+ starts with PROTO (0x80, version); ``torch.save`` writes a zip."""
    return (len(data) >= 2 and data[0] == 0x80 and data[1] < 16) or data[:4] == b"PK\x03\x04"


def _pickle_error(path: Path) -> ModelFileError:
    return ModelFileError(f"{str(path)!r} is a pickle/torch.save file; torchlinreg never loads pickles "
                          f"(they can run code); {RESAVE}")


def _one_line(text, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short(value, limit: int = 60) -> str:
    """A value from a file, for a message: its repr on one line, shortened."""
    return _one_line(repr(value), limit)


def _bad(path: Path, what: str) -> ModelFileError:
    return ModelFileError(f"{str(path)!r} {what}; {RESAVE}")


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def parse_description(path: Path, data: bytes) -> dict:
    """The JSON description, every field checked for type and range and the shapes against the names."""
    try:  # utf-8-sig: a byte-order mark (left by some editors) is not an error
        desc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if _looks_like_pickle(data):
            raise _pickle_error(path) from None
        raise _bad(path, f"is not valid JSON, perhaps truncated ({_one_line(exc)})") from None
    except RecursionError:  # nested deeper than Python's parser goes: no file torchlinreg wrote
        raise _bad(path, "is not a model description (its JSON is nested thousands of levels deep)") from None
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        found = desc.get("format") if isinstance(desc, dict) else type(desc).__name__
        raise ModelFileError(f"{str(path)!r} is not a torchlinreg model description (format {_short(found)}, "
                             f"expected {FORMAT!r}); pass the .json written by torchlinreg")
    version = desc.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _bad(path, f"has an invalid format_version {_short(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(f"{str(path)!r} has format version {version}, newer than this torchlinreg "
                             f"reads ({FORMAT_VERSION}); upgrade torchlinreg to load it")
    unknown = sorted(set(desc) - KEYS)
    if unknown:
        raise _bad(path, f"has an unknown entry {_short(unknown[0])} (format version {version} has none)")
    for key in ("feature_names", "target_names"):
        names = desc.get(key)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _bad(path, f"has no valid {key!r} (a list of strings)")
        if len(set(names)) != len(names):
            raise _bad(path, f"has repeated names in {key!r}")
    _check_specs(path, desc)
    sha = desc.get("tensors_sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise _bad(path, "has no valid 'tensors_sha256' (64 hexadecimal digits)")
    versions = desc.get("versions", {})
    if not isinstance(versions, dict) or not all(v is None or isinstance(v, str) for v in versions.values()):
        raise _bad(path, "has a 'versions' entry that is not an object of version strings")
    if not isinstance(desc.get("metadata", {}), dict):
        raise _bad(path, "has a 'metadata' entry that is not an object")
    if not isinstance(desc.get("fit_intercept", True), bool):
        raise _bad(path, "has a 'fit_intercept' entry that is not true or false")
    return desc


def _check_specs(path: Path, desc: dict) -> None:
    """The tensors' entries: 'weight' (n_targets, n_features) and 'bias' (n_targets,), as many as the names."""
    specs = desc.get("tensors")
    if not isinstance(specs, dict) or sorted(specs) not in _ALLOWED:
        raise _bad(path, "has no valid 'tensors' entry (expected 'weight' and 'bias', and perhaps the inference "
                         f"state's {', '.join(map(repr, INFERENCE_TENSORS))})")
    for name, spec in specs.items():
        shape = spec.get("shape") if isinstance(spec, dict) else None
        if (not isinstance(shape, list) or not all(_is_count(s) for s in shape) or len(shape) > 8
                or not isinstance(spec.get("dtype"), str) or spec["dtype"] not in DTYPES
                or sorted(spec) != ["dtype", "shape"]):
            raise _bad(path, f"has an invalid entry for tensor {name!r} (expected a dtype and a shape)")
    weight, bias = tuple(specs["weight"]["shape"]), tuple(specs["bias"]["shape"])
    if len(weight) != 2 or 0 in weight or bias != weight[:1]:
        raise _bad(path, f"says weight of shape {weight} and bias of shape {bias}; "
                         "expected (n_targets, n_features) and (n_targets,)")
    n_targets, n_features = weight
    for key, count, kind in (("feature_names", n_features, "features"), ("target_names", n_targets, "targets")):
        if len(desc[key]) != count:
            raise _bad(path, f"lists {len(desc[key])} {key} but the model has {count} {kind}")
    if tensors_limit(desc) > TENSORS_LIMIT:
        raise _bad(path, f"describes tensors of {n_targets} x {n_features} values, more than torchlinreg "
                         f"saves ({TENSORS_LIMIT:,} bytes)")


_ALLOWED = (sorted(TENSOR_NAMES), sorted(TENSOR_NAMES + INFERENCE_TENSORS))


def expected_tensors(desc: dict) -> list[str]:
    """The tensor names a checked description declares: 'weight' and 'bias', and perhaps the inference state's."""
    return sorted(desc["tensors"])


def header_limit(desc: dict) -> int:
    """The longest safetensors header the model can have: its entries, and the names it holds again."""
    names = sum(len(json.dumps(json.dumps(desc[key]))) for key in ("feature_names", "target_names"))
    return names + HEADER_SLACK  # the entries and the other metadata take a few hundred bytes


def tensors_limit(desc: dict) -> int:
    """The largest tensors file the description allows: the length field, the header, 8 bytes a value."""
    values = sum(math.prod(spec["shape"]) for spec in desc["tensors"].values())
    return 8 + header_limit(desc) + 8 * values


def check_header_length(path: Path, data: bytes, desc: dict) -> None:
    """Refuse a header longer than the description allows, before it is hashed or parsed."""
    size = int.from_bytes(data[:8], "little") if len(data) >= 8 else None
    if size is None or size > header_limit(desc):
        if _looks_like_pickle(data):
            raise _pickle_error(path)
        shown = "no header" if size is None else f"a header of {size:,} bytes"
        raise ModelFileError(f"{str(path)!r} is truncated or corrupt ({shown}, more than its "
                             f"{len(desc['feature_names']):,} feature names need); copy the file again or {RESAVE}")


def mismatch(tensors_path: Path, json_path: Path, data: bytes, desc: dict) -> ModelFileError:
    """The error for a tensors file whose SHA-256 is not the JSON's: truncated, if it is shorter than
    its header and the JSON's tensors need, else changed or another model's."""
    need = 8 + int.from_bytes(data[:8], "little") + sum(math.prod(spec["shape"]) * np.dtype(spec["dtype"]).itemsize
                                                         for spec in desc["tensors"].values())
    if len(data) < need:
        return ModelFileError(f"{str(tensors_path)!r} is truncated or corrupt ({len(data):,} bytes, but its header "
                              f"and tensors need {need:,}); copy the file again or {RESAVE}")
    return ModelFileError(f"{str(tensors_path)!r} does not match the SHA-256 in {str(json_path)!r}: it was "
                          "changed after saving or does not belong to this JSON; copy the matching pair "
                          f"or {RESAVE}")


def _listed(names) -> str:
    """'weight' and 'bias'; 'a', 'b' and 'c'."""
    names = [repr(n) for n in sorted(names, key=lambda n: (TENSOR_NAMES.index(n) if n in TENSOR_NAMES else 2, n))]
    return " and ".join(names) if len(names) <= 2 else ", ".join(names[:-1]) + " and " + names[-1]


def _entries(path: Path, data: bytes) -> list[str]:
    """The tensor names in a safetensors header, read by Python's parser (its length is bounded already)
    so that a header of a million entries is refused before safetensors builds them."""
    size = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + size])
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{str(path)!r} is truncated or corrupt (its header: {_one_line(exc)}); "
                             f"copy the file again or {RESAVE}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{str(path)!r} is truncated or corrupt (its header is no object); "
                             f"copy the file again or {RESAVE}")
    return sorted(name for name in header if name != "__metadata__")


def parse_tensors(path: Path, data: bytes, expected=TENSOR_NAMES) -> dict[str, np.ndarray]:
    """The tensors of a file whose SHA-256 matched: its header's entries first, then safetensors.
    ``expected``: the names the description declares (:func:`expected_tensors`)."""
    names = _entries(path, data)
    if names != sorted(expected):
        shown = str(names) if len(names) <= 4 else f"{names[:4]} and {len(names) - 4:,} more"
        raise ModelFileError(f"{str(path)!r} holds tensors {shown}, expected exactly {_listed(expected)}; {RESAVE}")
    try:
        return safetensors.numpy.load(data)
    except Exception as exc:  # safetensors raises SafetensorError, numpy may raise on odd dtypes
        if _looks_like_pickle(data):
            raise _pickle_error(path) from None
        raise ModelFileError(f"{str(path)!r} is truncated or corrupt ({_one_line(exc)}); "
                             f"copy the file again or {RESAVE}") from None


def check_tensors(tensors_path: Path, json_path: Path, tensors: dict, desc: dict) -> None:
    """The tensors agree with each other and with the description, and are finite floats."""
    def bad(what: str) -> ModelFileError:
        return ModelFileError(f"{what}; {RESAVE}")

    where = repr(str(tensors_path))
    if sorted(tensors) != expected_tensors(desc):
        raise bad(f"{where} holds tensors {sorted(tensors)}, expected exactly {_listed(expected_tensors(desc))}")
    weight, bias = tensors["weight"], tensors["bias"]
    for name, t in tensors.items():
        if not np.issubdtype(t.dtype, np.floating):
            raise bad(f"tensor {name!r} in {where} has dtype {t.dtype}, expected a float dtype")
        spec = desc["tensors"][name]
        if list(t.shape) != spec["shape"] or str(t.dtype) != spec["dtype"]:
            raise bad(f"tensor {name!r} in {where} is {t.dtype} of shape {tuple(t.shape)} but "
                      f"{str(json_path)!r} says {_short(spec['dtype'])[1:-1]} of shape {_short(tuple(spec['shape']))}")
    if weight.ndim != 2 or 0 in weight.shape or bias.shape != weight.shape[:1]:
        raise bad(f"{where} has weight of shape {tuple(weight.shape)} and bias of shape {tuple(bias.shape)}; "
                  "expected (n_targets, n_features) and (n_targets,)")
    n_targets, n_features = weight.shape
    for key, count, kind in (("feature_names", n_features, "features"), ("target_names", n_targets, "targets")):
        if len(desc[key]) != count:
            raise bad(f"{str(json_path)!r} lists {len(desc[key])} {key} but the model has {count} {kind}")
    for name, t in tensors.items():
        if not np.isfinite(t).all():
            raise bad(f"tensor {name!r} in {where} holds non-finite values (inf or NaN)")


def check_names(tensors_path: Path, json_path: Path, tensor_bytes: bytes, desc: dict) -> None:
    """The feature and target names in the JSON must be those stored in the tensors file's header."""
    size = int.from_bytes(tensor_bytes[:8], "little")  # safetensors: u64 header length, then JSON
    stored = json.loads(tensor_bytes[8:8 + size]).get("__metadata__") or {}  # parsed by safetensors already
    for key in ("feature_names", "target_names"):
        if key not in stored:
            continue
        try:
            names = json.loads(stored[key])
        except (ValueError, RecursionError):
            names = None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ModelFileError(f"the {key.replace('_', ' ')} saved in {str(tensors_path)!r} are not a list of "
                                 f"names: the file was not written by torchlinreg; {RESAVE}")
        if names != list(desc[key]):
            raise ModelFileError(f"the {key.replace('_', ' ')} in {str(json_path)!r} differ from those saved in "
                                 f"{str(tensors_path)!r}: the JSON was edited; restore it or {RESAVE}")

