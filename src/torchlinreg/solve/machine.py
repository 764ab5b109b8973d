"""Where a run happened: the CPU, the libraries' BLAS and their thread counts, and the block step's kernels.

What ``summary.json``, ``solve --json``, the benchmarks and the tests' first line record, so that
a figure or a failure can be put beside the machine that gave it.
"""

from __future__ import annotations

import os
import re
import sys

from .kernels import _SETTING, _controller


def machine() -> dict[str, str]:
    """The CPU and the libraries' BLAS, as ``summary.json``, the benchmarks and the tests' first line record
    them: ``cpu``, ``cores``, ``numpy_blas``, and ``torch_blas`` when PyTorch is imported."""
    import numpy

    info = {"cpu": cpu_name(), "cores": str(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                            else os.cpu_count())}
    blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    text = f"numpy {numpy.__version__}: {blas['name']} {blas.get('version', '')}".strip()
    pools = [p for p in _controller().info() if p.get("internal_api") == "openblas"]
    if pools:
        text += f" ({pools[0].get('architecture')} kernels, {_SETTING.get('numpy', pools[0]['num_threads'])} threads)"
    info["numpy_blas"] = text
    torch = sys.modules.get("torch")
    if torch is not None:
        mkl = re.search(r"Math Kernel Library Version ([0-9.]+)", torch.__config__.show())
        info["torch_blas"] = (f"torch {torch.__version__}: {'MKL ' + mkl.group(1) if mkl else 'not MKL'} "
                              f"(CPU capability {torch.backends.cpu.get_cpu_capability()}, "
                              f"{_SETTING.get('torch', torch.get_num_threads())} threads)")
    return info


def machine_record(kernels: dict | None = None) -> dict:
    """:func:`machine` and the kernels a solution's blocks took (``LstsqSolution.kernels``): what
    ``summary.json`` and ``solve --json`` record. Not the measured times, which differ from run to run."""
    return {**machine(), "kernels": dict(kernels or {})}


def cpu_name() -> str:
    """e.g. ``AMD EPYC (family 25, model 17, AVX-512)``: the model name, the family and model numbers (which
    tell CPU generations apart) and the widest vectors, from ``/proc/cpuinfo`` (Linux), else the platform's."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            first = f.read().split("\n\n")[0]
    except OSError:
        return platform.processor() or platform.machine()
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    flags = set(fields.get("flags", "").split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "SSE"
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')}, {vector})")
