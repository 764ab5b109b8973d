"""A checkpoint's ``state.json`` read back as untrusted data: sealed by a SHA-256, every field's type checked.

:func:`seal` adds the SHA-256 of the state's canonical JSON (sorted keys, no spaces, the
``sha256`` field left out) as the field ``sha256``; :func:`unseal` reads it back: bounded
(:func:`torchlinreg.outputs.read_bounded`: a regular file of at most ``MAX_STATE_BYTES``),
depth-safe (:func:`torchlinreg.outputs.parse_json`), the seal checked before any field is
used, then every field's type and range (:func:`check_fields`). Each refusal is a
:class:`ValueError` whose message names what is wrong; the checkpoint turns it into a
:class:`~torchlinreg.errors.CheckpointError`. The optimizer's and the schedule's state are
stored as JSON with their tensors named (:func:`encode`, :func:`decode`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import torch

from .errors import ConfigError
from .outputs import CHECKPOINT_FORMAT, CHECKPOINT_STATE, parse_json, read_bounded

FORMAT_VERSION = 2  # 2: state.json sealed by its SHA-256, the tensors file's size recorded
MAX_STATE_BYTES = 16 << 20  # state.json holds names and scalars (the tensors are in the tensors file): a few kB
_HEX64 = re.compile(r"[0-9a-f]{64}")
_TENSORS_FILE = re.compile(r"state-[0-9]{6,}\.safetensors")


def seal(state: dict) -> dict:
    """``state`` with its SHA-256 added (field ``sha256``)."""
    return {**state, "sha256": _digest(state)}


def unseal(path: Path) -> dict:
    """The sealed state in ``path``, refused (ValueError) unless it is whole, unchanged and well-formed."""
    state = parse_json(read_bounded(path, MAX_STATE_BYTES))
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{CHECKPOINT_STATE} is not a torchlinreg checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"it has format version {_short(state.get('format_version'))}, this torchlinreg reads "
                         f"{FORMAT_VERSION}")
    if state.get("sha256") != _digest(state):
        raise ValueError(f"{CHECKPOINT_STATE} does not match the SHA-256 it holds (edited or damaged)")
    check_fields(state)
    return state


def _digest(state: dict) -> str:
    body = {k: v for k, v in state.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


# --- the fields -------------------------------------------------------------------------------------------

def _short(value, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bad(field: str, wanted: str, value) -> ValueError:
    return ValueError(f"{CHECKPOINT_STATE}: field {field} must be {wanted}, got {_short(value)}")


def _integer(state: dict, field: str, low: int = 0):
    value = _get(state, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(field, f"an integer >= {low}", value)
    return value


def _number(value, field: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(field, "a number" + (" or null" if optional else ""), value)


def _hex(state: dict, field: str) -> None:
    value = _get(state, field)
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise _bad(field, "a SHA-256 (64 hex digits)", value)


def _object(state: dict, field: str) -> dict:
    value = _get(state, field)
    if not isinstance(value, dict):
        raise _bad(field, "an object", value)
    return value


def _get(state: dict, field: str):
    """``state``'s value at a dotted ``field`` ("history.bytes")."""
    value = state
    for key in field.split("."):
        if not isinstance(value, dict) or key not in value:
            raise ValueError(f"{CHECKPOINT_STATE} has no field {field}")
        value = value[key]
    return value


def check_fields(state: dict) -> None:
    """Every field of a checkpoint's state: its type and range (ValueError naming the first that is wrong)."""
    _integer(state, "epoch", 1)
    every = _get(state, "every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise _bad("every", "a positive integer or null", every)
    _object(state, "settings")
    _hex(state, "data_sha256")
    _object(state, "tensors")
    file = _get(state, "tensors.file")
    if not isinstance(file, str) or not _TENSORS_FILE.fullmatch(file):
        raise _bad("tensors.file", "a file name state-NNNNNN.safetensors", file)
    _hex(state, "tensors.sha256")
    _integer(state, "tensors.bytes", 8)
    _object(state, "history")
    _integer(state, "history.records")
    _integer(state, "history.bytes")
    _hex(state, "history.sha256")
    check_encoded(_get(state, "optimizer"), "optimizer", top=True)
    if _get(state, "scheduler") is not None:
        check_encoded(state["scheduler"], "scheduler", top=True)
    _object(state, "plateau")
    _number(_get(state, "plateau.best"), "plateau.best")
    _integer(state, "plateau.stale")
    _number(_get(state, "first_loss"), "first_loss")
    rng = _get(state, "numpy_rng")
    if not (isinstance(rng, list) and len(rng) == 4 and rng[0] == "MT19937"
            and all(isinstance(v, int) and not isinstance(v, bool) for v in rng[1:3])
            and isinstance(rng[3], (int, float)) and not isinstance(rng[3], bool)):
        raise _bad("numpy_rng", "['MT19937', position, has_gauss, cached_gaussian]", rng)


def check_encoded(value, field: str, *, top: bool = False) -> None:
    """A value as :func:`encode` writes it: scalars, lists, ``{"tensor": name}``, ``{"tuple": [...]}``,
    ``{"dict": [[key, value], ...]}`` (a state_dict at the top)."""
    if top and not (isinstance(value, dict) and set(value) == {"dict"}):
        raise _bad(field, "a state_dict ({'dict': [[key, value], ...]})", value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_encoded(item, f"{field}[{i}]")
        return
    if isinstance(value, dict) and len(value) == 1:
        (kind, inner), = value.items()
        if kind == "tensor" and isinstance(inner, str):
            return
        if kind == "tuple" and isinstance(inner, list):
            return check_encoded(inner, field)
        if kind == "dict" and isinstance(inner, list):
            for i, pair in enumerate(inner):
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], (str, int))):
                    raise _bad(f"{field}[{i}]", "a [key, value] pair", pair)
                check_encoded(pair[1], f"{field}.{pair[0]}")
            return
    raise _bad(field, "a value of a state_dict", value)


# --- optimizer and scheduler state as JSON plus tensors ------------------------------------------------

def encode(value, tensors: dict[str, torch.Tensor], key: str):
    """``value`` (a state_dict) as JSON, its tensors moved into ``tensors`` under names starting with ``key``.

    Dicts become ``{"dict": [[key, value], ...]}`` (their keys may be ints), tuples
    ``{"tuple": [...]}``, tensors ``{"tensor": name}``; lists and scalars stay as they are.
    """
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous().clone()
        return {"tensor": key}
    if isinstance(value, dict):
        return {"dict": [[k, encode(v, tensors, f"{key}.{k}")] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        items = [encode(v, tensors, f"{key}.{i}") for i, v in enumerate(value)]
        return {"tuple": items} if isinstance(value, tuple) else items
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"cannot checkpoint the {key.split('.')[0]}: it holds a {type(value).__name__}")


def decode(value, tensors: dict[str, torch.Tensor]):
    """The state_dict :func:`encode` wrote (checked by :func:`check_encoded`); KeyError for a missing tensor."""
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        return tensors[value["tensor"]]
    if "tuple" in value:
        return tuple(decode(v, tensors) for v in value["tuple"])
    return {k: decode(v, tensors) for k, v in value["dict"]}
