"""The block step's kernel: the Gram matrix of a block of rows shifted by column means, and how to
form it fastest on this CPU, chosen by measurement.

The work is fixed: ``B = √w ([X, y] - μ)`` with a column ``√w`` beside it, and ``BᵀB``. How to
do it is not. Each library's BLAS is fast on some shapes and CPUs and slow on others (MKL takes
slow code paths on AMD processors; OpenBLAS is weak on narrow blocks), and both thread a
tall, narrow product badly: on a 2-core AMD EPYC (Zen 4), splitting the rows between two
threads that each run a one-thread product is 1.5-3× faster than either library's own
threading, whichever the library. So a kernel is three choices:

* ``library``: whose product, PyTorch's (``"torch"``, only when PyTorch is already imported:
  importing it costs a second) or NumPy's (``"numpy"``);
* ``threads``: the rows split among this many threads, each with a one-thread BLAS (1: one
  thread, which leaves the other cores to a reader decoding the next batch), or none: one
  product at a time, threaded by the library as it likes;
* ``tile_bytes``: the size of the shifted tile each product takes (the shift writes into a
  small buffer that the product then reads, so ``X`` is read from memory once).

The first large blocks of each *shape class* (the tile's width in powers of two, rows or
columns, float32 or float64, weighted or not) are measured: their rows are cut into slices, and
each slice is formed by the next candidate kernel and timed. Every slice's Gram matrix is part
of the answer, so measuring wastes only the slower candidates' extra time. Each library is tried
with the split and on one thread (a second time for those within ``KEEP`` of the best), then the
winner's other tile sizes (see ``_Choice``); the libraries' own threading only when forced. The choice is kept for the process and
reported by :func:`chosen` (``summary.json`` and the benchmarks record it).

``TORCHLINREG_KERNEL=library[,threads[,tile KiB]]`` (or :func:`set_kernel`) forces one, e.g.
``numpy,own``, ``numpy,1`` or ``torch,2,512``, so that tests run every kernel on any machine. Every kernel sums
the same products in another order: their Gram matrices agree to the bound of a float64 sum
of ``k`` products, ``k·eps·|B|ᵀ|B|``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

KiB, MiB = 1024, 1024 * 1024
DEFAULT_TILE_BYTES = 2 * MiB  # stage one's tile: 1-4 MiB were within 10% of the best on every shape measured
TILE_BYTES = (512 * KiB, 2 * MiB, 8 * MiB)  # stage two's choices
SLICE_BYTES = 32 * MiB  # rows (as shifted float64) formed by one candidate and timed: a whole block of
# ``accumulator.UPDATE_BLOCK_ENTRIES``. Handing work to threads costs 0.1-0.3 ms a call; on 8 MiB slices that
# made a split over 2 threads look no faster than one thread, where on whole blocks it is twice as fast
KEEP = 1.5  # after round one, candidates slower than this times the best are not timed again
LEAST_SLICE_BYTES = 4 * MiB  # a smaller call (a streamed chunk) is measured whole when it holds at least this
ENVIRONMENT = "TORCHLINREG_KERNEL"


@dataclass(frozen=True)
class Kernel:
    """One way to form the shifted block's Gram matrix (see the module's docstring)."""

    library: str  # "torch" or "numpy"
    threads: int | None = None  # rows split among this many threads, each with a one-thread BLAS; None: the
    # library's own threads, one product at a time
    tile_bytes: int = DEFAULT_TILE_BYTES
    product: str = "syrk"  # NumPy's: "syrk" (BᵀB, half the products) or "gemm" (see _gram_by_gemm)

    def tile_rows(self, width: int) -> int:
        return max(self.tile_bytes // (8 * width), 16)

    @property
    def spec(self) -> str:
        """The text ``TORCHLINREG_KERNEL`` takes for this kernel (``Kernel.parse(k.spec) == k``)."""
        threads = "own" if self.threads is None else str(self.threads)
        return f"{self.library},{threads},{self.tile_bytes // KiB}" + (",gemm" if self.product == "gemm" else "")

    def __str__(self) -> str:
        split = ("the library's own threads" if self.threads is None else "one thread" if self.threads == 1
                 else f"rows split over {self.threads} threads")
        size = f"{self.tile_bytes // MiB} MiB" if self.tile_bytes % MiB == 0 else f"{self.tile_bytes // KiB} KiB"
        product = ", GEMM on 256 KiB pieces" if self.product == "gemm" else ""
        return f"{self.library} ({split}, tiles of {size}{product})"

    @classmethod
    def parse(cls, text: str, *, origin: str = ENVIRONMENT) -> Kernel:
        """``library[,threads[,tile KiB[,gemm]]]``, e.g. ``numpy``, ``torch,1``, ``numpy,2,512``,
        ``torch,own`` (``own`` or no threads: the library's own threads), ``numpy,1,2048,gemm``."""
        parts = [p.strip() for p in str(text).split(",")]
        fix = (f"set {origin} to library[,threads[,tile KiB[,gemm]]], e.g. numpy,2,2048 (library: numpy or "
               "torch; threads: a number, or own for the library's own)")
        if parts[0] not in ("numpy", "torch") or len(parts) > 4 or len(parts) == 4 and parts[3] != "gemm":
            raise ConfigError(f"{origin}={text!r} is not a kernel; {fix}")
        try:
            threads = None if len(parts) < 2 or parts[1] == "own" else int(parts[1])
            tile = int(parts[2]) * KiB if len(parts) > 2 else DEFAULT_TILE_BYTES
        except ValueError:
            raise ConfigError(f"{origin}={text!r}: threads and tile KiB must be whole numbers; {fix}") from None
        if threads is not None and threads < 1 or tile < 8 * KiB:
            raise ConfigError(f"{origin}={text!r}: threads must be at least 1 and tiles at least 8 KiB; {fix}")
        return cls(parts[0], threads, tile, "gemm" if len(parts) == 4 else "syrk")


# --- which kernel ---------------------------------------------------------------------------------

_FORCED: list[Kernel | None] = [None]


def set_kernel(kernel: Kernel | str | None) -> Kernel | None:
    """Force one kernel for every block (a :class:`Kernel` or its text, see ``Kernel.parse``), or with
    None go back to measuring. Returns the previous forced kernel, to put back."""
    if isinstance(kernel, str):
        kernel = Kernel.parse(kernel, origin="set_kernel")
    previous, _FORCED[0] = _FORCED[0], kernel
    return previous


def _torch_loaded():
    """PyTorch when it is imported already (a kernel never imports it: that costs a second), else None."""
    return sys.modules.get("torch")


_IN_USE = ["numpy"]


def torch_in_use():
    """PyTorch when the last block's Gram matrix was formed by it, else None: the small products between
    blocks (a triangular inverse, a block's R) then run in the same library, since the other's threads,
    woken between the kernel's products, spin against them (OpenMP's and OpenBLAS's both wait busily)."""
    return _torch_loaded() if _IN_USE[0] == "torch" else None


def _forced() -> Kernel | None:
    if _FORCED[0] is not None:
        return _FORCED[0]
    text = os.environ.get(ENVIRONMENT)
    if not text:
        return None
    kernel = Kernel.parse(text)
    if kernel.library == "torch" and "torch" not in sys.modules:
        __import__("torch")  # asked for by name
    return kernel


def _threads(library: str) -> int:
    """How many threads the library may use here: its setting before the pass, at most the CPUs this process
    may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, _SETTING[library] if library in _SETTING else _library_threads(library)))


def _library_threads(library: str) -> int:
    if library == "torch":
        return sys.modules["torch"].get_num_threads()
    return min([info["num_threads"] for info in _controller().info() if info.get("user_api") == "blas"] or [1])


def _set_library_threads(library: str, n: int) -> None:
    """Set this thread's count for PyTorch's BLAS and OpenMP, or the process's for NumPy's BLAS."""
    if library == "torch":
        sys.modules["torch"].set_num_threads(n)
    else:
        _controller().limit(limits=n, user_api="blas")


_SETTING: dict[str, int] = {}  # during a pass: each loaded library's thread count from before it


class one_pass:
    """A pass over many blocks: this thread's BLAS runs one thread between the kernel's products.

    Between blocks only small matrices are factored, and threads woken for them go on waiting busily
    for more work (OpenBLAS's and OpenMP's both do) while the next block's split threads run: on 2
    cores that halved the pass. A kernel that asks for the library's own threads gets its count from
    before the pass back for its products (``_own_threads``). The settings are the process's: a pass
    inside another (or in another thread meanwhile) leaves them to the outer one.
    """

    def __enter__(self) -> one_pass:
        self.outer = bool(_SETTING)
        if not self.outer:
            libraries = ["numpy"] + (["torch"] if _torch_loaded() is not None else [])
            _SETTING.update({library: _library_threads(library) for library in libraries})
            for library in _SETTING:
                _set_library_threads(library, 1)
        return self

    def __exit__(self, *exc) -> None:
        if not self.outer:
            for library, n in _SETTING.items():
                _set_library_threads(library, n)
            _SETTING.clear()


class _Choice:
    """The measurements of one shape class, and the kernel they point to.

    Round one times every candidate on a slice; round two times again those within ``KEEP`` of the
    best (the others are far behind, and each of their slices costs time); then the winner's other
    tile sizes are tried. The fastest time per row of each kernel counts.

    A kernel that runs threads of its own forms an untimed slice just before each timed one: its
    first call after another kernel's is slow (the idle cores' wake-up, the threads' buffers), and
    timed cold, a split over 2 threads looked slower than one thread on an AMD EPYC where it is
    1.7× faster block after block.
    """

    def __init__(self, candidates: list[Kernel]):
        self.candidates = candidates
        self.times: dict[Kernel, float] = {}  # seconds per row, the best of the rounds
        self.pending: list[tuple[Kernel, bool]] = []  # (kernel, timed)
        self.step = "round one"
        self._queue(candidates)

    def _queue(self, kernels: list[Kernel]) -> None:
        for k in kernels:
            self.pending += ([(k, False)] if k.threads != 1 else []) + [(k, True)]

    @property
    def measuring(self) -> bool:
        return bool(self.pending)

    def best(self) -> Kernel:
        return min(self.times, key=self.times.get)

    def record(self, kernel: Kernel, timed: bool, seconds_per_row: float) -> None:
        if timed:
            self.times[kernel] = min(self.times.get(kernel, np.inf), seconds_per_row)
        if self.pending:
            return
        best = self.best()
        if self.step == "round one":
            self.step = "round two"
            again = [k for k in self.candidates if self.times[k] <= KEEP * self.times[best]]
            if len(again) > 1:
                self._queue(again)
                return
        if self.step == "round two":
            self.step = "tiles"
            self._queue([Kernel(best.library, best.threads, t) for t in TILE_BYTES if t != best.tile_bytes])
            return
        if self.step == "tiles" and best.library == "numpy":
            self.step = "product"
            self._queue([Kernel(best.library, best.threads, best.tile_bytes, "gemm")])
            return
        self.step = "done"


_CHOICES: dict[tuple, _Choice] = {}
_LOCK = threading.Lock()  # one split pass at a time in a process (it sets the libraries' thread counts)


def _candidates() -> list[Kernel]:
    libraries = ["numpy"] + (["torch"] if _torch_loaded() is not None else [])
    splits, single = [], []
    for library in libraries:
        n = _threads(library)
        single.append(Kernel(library, 1))
        if n > 1:
            splits.append(Kernel(library, n))
    # Not the libraries' own threads (forced only): slower than the split on every shape measured, and
    # their threads wait busily after each product (OpenBLAS's for up to a tenth of a second), which
    # slowed whatever ran next: the next candidate, or a streamed pass's decoding (its first pass took
    # 3.7 s instead of 1.7 s with them among the candidates)
    return splits + single


def _shape_class(rows, width: int, weighted: bool) -> tuple:
    bucket = 1 << max(int(width - 1).bit_length(), 3)  # 8, 16, 32, ...: widths that behave alike
    floats = {a.dtype.itemsize for a in rows.arrays()}
    return (min(bucket, 1024), "columns" if rows.columns is not None else "rows", max(floats), weighted)


def _describe(key: tuple) -> str:
    bucket, layout, itemsize, weighted = key
    return (f"up to {bucket} columns, {layout}, float{8 * itemsize}" + (", weighted" if weighted else "")
            + ("" if bucket < 1024 else " or more"))


def chosen() -> dict[str, str]:
    """The kernel each shape class of this process uses (measured, forced, or not yet decided)."""
    forced = _forced()
    if forced is not None:
        return {"every shape": f"{forced} (forced by {ENVIRONMENT} or set_kernel)"}
    out = {}
    for key, choice in sorted(_CHOICES.items(), key=lambda kv: kv[0]):
        if not choice.times:
            out[_describe(key)] = (f"{_guess(choice)} (not measured: every call held less than "
                                   f"{LEAST_SLICE_BYTES // MiB} MiB of rows)")
            continue
        best, times = choice.best(), choice.times
        state = "measured" if not choice.measuring else "measuring, best so far"
        rivals = ", ".join(f"{k}: {times[k] / times[best]:.2f}×" for k in sorted(times, key=times.get) if k != best)
        out[_describe(key)] = f"{best} ({state}; the others' time per row: {rivals or 'none measured'})"
    return out


# --- forming the Gram matrix ------------------------------------------------------------------------

def shifted_gram(rows, w: np.ndarray | None, mu: np.ndarray, used: dict | None = None) -> np.ndarray:
    """``BᵀB`` (float64, ``(q + 1) × (q + 1)``) for ``B = [√w ([X, y] - μ), √w]`` of the rows ``rows`` (a
    ``blocks._Rows``), by the kernel chosen for their shape class (see the module's docstring).

    ``used``, when given, gets the shape class's description mapped to the kernel that formed the
    rows past the measurement, and how it was chosen (what ``summary.json`` records of a fit).
    """
    n, width = len(rows), len(mu) + 1
    forced = _forced()
    key = _shape_class(rows, width, w is not None)
    if forced is not None:
        _IN_USE[0] = forced.library
        if used is not None:
            used[_describe(key)] = f"{forced} (forced by {ENVIRONMENT} or set_kernel)"
        return _run(forced, rows, w, mu)
    choice = _CHOICES.get(key)
    if choice is None:
        choice = _CHOICES[key] = _Choice(_candidates())
    G, start = np.zeros((width, width)), 0
    while choice.measuring and n - start >= LEAST_SLICE_BYTES // (8 * width):
        slice_rows = max(SLICE_BYTES // (8 * width), 1)
        kernel, timed = choice.pending.pop(0)
        part = slice(start, min(start + slice_rows, n))
        began = time.perf_counter()
        G += _run(kernel, rows.rows(part), None if w is None else w[part], mu)
        choice.record(kernel, timed, (time.perf_counter() - began) / (part.stop - part.start))
        start = part.stop
    if start < n:
        kernel = choice.best() if choice.times else _guess(choice)
        rest = slice(start, n)
        G += _run(kernel, rows.rows(rest) if start else rows, None if w is None else w[rest], mu)
    kernel = choice.best() if choice.times else _guess(choice)
    _IN_USE[0] = kernel.library
    if used is not None:
        how = ("measured" if not choice.measuring else "measuring, best so far") if choice.times else \
            f"not measured: calls under {LEAST_SLICE_BYTES // MiB} MiB of rows"
        used[_describe(key)] = f"{kernel} ({how}; {ENVIRONMENT}={kernel.spec} repeats it)"
    return G


def _guess(choice: _Choice) -> Kernel:
    """Before any measurement (small blocks): the first candidate, a split where there is one."""
    return choice.candidates[0] if choice.candidates else Kernel("numpy", 1)


def _run(kernel: Kernel, rows, w, mu) -> np.ndarray:
    """The Gram matrix by ``kernel``: in this thread, or the rows split among its threads."""
    width = len(mu) + 1
    tile = kernel.tile_rows(width)
    with one_pass():
        if kernel.threads is None:
            with _own_threads(kernel.library):
                return _tiles(kernel.library, rows, w, mu, tile, product=kernel.product)
        threads = min(kernel.threads, -(-len(rows) // tile))  # no thread without a whole tile of its own
        if threads <= 1:
            return _tiles(kernel.library, rows, w, mu, tile, product=kernel.product)
        edges = np.linspace(0, len(rows), threads + 1).astype(int)
        parts = [(rows.rows(slice(a, b)), None if w is None else w[a:b]) for a, b in zip(edges[:-1], edges[1:])]
        with _LOCK:  # this thread takes the first part (one hand-over fewer), the pool's threads the others
            futures = [_pool(threads - 1).submit(_tiles, kernel.library, part, wp, mu, tile, True, kernel.product)
                       for part, wp in parts[1:]]
            G = _tiles(kernel.library, *parts[0], mu, tile, product=kernel.product)  # (this thread: one BLAS thread)
            G = G + sum(f.result() for f in futures)
        if kernel.library == "torch":
            _set_library_threads("torch", 1)  # a worker's first setting also set what new threads start with
        return G


class _own_threads:
    """For a kernel of the library's own threads: its thread count from before the pass, for its products."""

    def __init__(self, library: str):
        self.library = library if _SETTING.get(library, 1) > 1 else None

    def __enter__(self) -> None:
        if self.library is not None:
            _set_library_threads(self.library, _SETTING[self.library])

    def __exit__(self, *exc) -> None:
        if self.library is not None:
            _set_library_threads(self.library, 1)


@np.errstate(over="ignore", invalid="ignore")  # overflow and NaN are diagnosed from the Gram matrix
def _tiles(library: str, rows, w, mu, tile: int, worker: bool = False, product: str = "syrk") -> np.ndarray:
    """``BᵀB`` formed tile by tile: each tile shifted into a buffer of this thread's, then one product
    (``worker``: in a thread of the split, whose PyTorch runs one thread)."""
    q, n = len(mu), len(rows)
    width = q + 1
    buffer = _buffer(min(tile, n), width, "F" if rows.columns is not None else "C")
    torch = sys.modules["torch"] if library == "torch" else None
    if worker and torch is not None and not getattr(_LOCAL, "one_thread", False):
        torch.set_num_threads(1)  # this thread's own (OpenMP's and MKL's settings are per thread) ...
        _LOCAL.one_thread = True  # ... but it is also what new threads start with: _run puts that back
    if torch is None:
        G = np.zeros((width, width))
    else:
        G = torch.zeros((width, width), dtype=torch.float64)
        whole = torch.from_numpy(buffer)
    for start in range(0, n, tile):
        k = min(tile, n - start)
        part = rows if k == n else rows.rows(slice(start, start + k))
        B = buffer[:k]
        Bt = B if torch is None else whole[:k]
        part.shift_into(Bt, mu, torch)
        if w is None:
            B[:, q] = 1.0
        else:
            root = np.sqrt(w[start:start + k])
            B[:, :q] *= root[:, None]
            B[:, q] = root
        if torch is not None:
            G.addmm_(Bt.T, Bt)
        elif product == "gemm":
            _gram_by_gemm(B, G)
        else:
            G += B.T @ B
    return G if torch is None else G.numpy()


GEMM_BYTES = 256 * KiB  # the pieces of a tile _gram_by_gemm multiplies (they stay in the core's L2)


def _gram_by_gemm(B: np.ndarray, G: np.ndarray) -> None:
    """``G += BᵀB`` by general products on pieces of ``GEMM_BYTES``, not by NumPy's symmetric one.

    NumPy takes ``B.T @ B`` to BLAS's symmetric rank-k update, which computes half the products
    but, on narrow blocks, at a third of the speed of a general product (OpenBLAS on an AMD EPYC,
    22 columns: 0.8 CPU-s per 2.1·10⁷ rows against 0.45). A general product is had by taking one
    column fewer on the right (``B.T @ B[:, :-1]``, which NumPy does not recognise as symmetric)
    and the last column by a matrix-vector product.
    """
    rows = max(GEMM_BYTES // (8 * B.shape[1]), 16)
    for start in range(0, len(B), rows):
        piece = B[start:start + rows]
        G[:, :-1] += piece.T @ piece[:, :-1]
        G[:, -1] += piece.T @ piece[:, -1]


_LOCAL = threading.local()


def _buffer(rows: int, width: int, order: str) -> np.ndarray:
    """This thread's tile buffer (kept between calls: a fresh one would be paged in again each time)."""
    held = getattr(_LOCAL, "buffer", None)
    if held is None or held.shape[0] < rows or held.shape[1] != width or not held.flags[order + "_CONTIGUOUS"]:
        held = _LOCAL.buffer = np.empty((rows, width), order=order)
    return held[:rows]


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="torchlinreg-gram")
    return _POOLS[threads]


_CONTROLLER = []


def _controller():
    """threadpoolctl's view of the BLAS libraries loaded (made once: it scans the process's libraries)."""
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]
