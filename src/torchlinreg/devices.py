"""Choosing the device a model trains on: cpu, cuda, mps, or the best one available."""

from __future__ import annotations

import torch

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def available_devices() -> list[str]:
    """The device types this PyTorch build can use here, best first."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str, dtype: str = "float32") -> torch.device:
    """The ``torch.device`` for ``name`` ("auto": CUDA, then MPS, then CPU; "cuda:1" works too).

    Raises ConfigError when the device is unknown or not available (listing those that
    are), and for float64 on MPS, which has no float64.
    """
    kind = str(name).split(":")[0]
    if kind not in DEVICES:
        raise ConfigError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    here = available_devices()
    if kind == "auto":
        kind, name = here[0], here[0]
    if kind not in here:
        raise ConfigError(f"device {name!r} is not available here; available: {', '.join(here)} (or auto)")
    if kind == "mps" and dtype == "float64":
        raise ConfigError("MPS has no float64; pass {dtype='float32'} with {device='mps'}")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid device {name!r}; write e.g. cuda or cuda:0") from None
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA "
                          "device(s), numbered from 0")
    return device


def set_threads(n: int) -> None:
    """Use ``n`` CPU threads for PyTorch's operations (``torch.set_num_threads``).

    NumPy's BLAS (the exact solver) keeps its own threads; its results do not depend on them.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{{threads}} must be a positive integer, got {n!r}; pass e.g. {{threads=4}}")
    torch.set_num_threads(n)
