"""What every benchmark shares: contenders in their own processes, timing, peak memory, a table.

Each contender runs in a child process started with ``spawn`` (a fresh interpreter, so
imports, caches and allocator state of one contender cannot help or hurt another). The
child imports what the contender needs, builds the data (deterministically, from a seed),
then resets the kernel's peak-RSS counter (``/proc/self/clear_refs``), so that
``ru_maxrss`` after the runs minus the RSS before them is the contender's *extra* peak
memory: what it needed beyond the data it was given. The best of ``repeat`` runs is the
time (one run when the first is slow); the first run's is shown too (it pays one-off costs,
such as torchlinreg's measurement of its Gram kernels, reported under the table). All children
get the same thread settings, and none gets the test suite's emulation of other CPUs
(``EMULATION_VARS``).

A benchmark script defines ``Contender`` objects and calls :func:`main`.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import multiprocessing as mp
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

THREADS = len(os.sched_getaffinity(0))  # every contender gets all the cores this process may use
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")
SLOW_RUN_S = 10.0  # a first run this long is not repeated
MB = 1024 * 1024


def set_threads(n: int = THREADS) -> None:
    """Thread counts for the BLAS/OpenMP of every child (read when they load, so set before spawning)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)


set_threads()

# The test suite sets these to run OpenBLAS's kernels for other CPUs; a benchmark measures NumPy at its own best,
# so its children never inherit them (removed here, before any child is spawned; the header says so).
EMULATION_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "MKL_CBWR")
UNSET = {var: os.environ.pop(var) for var in EMULATION_VARS if var in os.environ}


# --- contenders -------------------------------------------------------------------------------

@dataclass
class Contender:
    """One way of answering the question.

    ``setup(params) -> data`` builds the input (not timed, not counted in extra memory);
    ``run(data, params) -> dict`` is timed. The dict it returns travels back to the parent
    (keep it small: coefficients, losses). Two keys are special: ``seconds`` replaces the
    measured time (for a result extrapolated from a shorter run, say why in ``note``), and
    ``note`` is printed beside the row.
    """

    name: str
    run: Callable[[Any, dict], dict]
    setup: Callable[[dict], Any]
    repeat: int = 3
    imports: tuple[str, ...] = ()  # modules to import before the baseline is taken
    timeout: float = 1800.0  # seconds for the whole child
    memory_limit: int | None = None  # bytes of address space over the baseline (RLIMIT_AS), or None
    note: str = ""
    params: dict = field(default_factory=dict)  # this contender's own parameters, over the shared ones
    in_quick: bool = True  # run under --quick too (False: full runs only, to keep the smoke run short)


@dataclass
class Result:
    name: str
    others_cpu: float | None = None  # other processes' CPU use during the run, in cores (noise indicator)
    seconds: float | None = None
    times: list[float] = field(default_factory=list)
    cpu_seconds: float | None = None  # CPU time (all threads) of the fastest run
    extra_mb: float | None = None
    baseline_mb: float | None = None
    out: dict = field(default_factory=dict)
    error: str | None = None
    note: str = ""
    out_overrides: set = field(default_factory=set)  # keys of ``out`` that replaced a measurement
    kernels: dict | None = None  # torchlinreg's Gram kernels chosen in the child (kernels.chosen()), None: not loaded

    @property
    def ok(self) -> bool:
        return self.error is None and self.seconds is not None


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0) so that ru_maxrss restarts from the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _self_cpu() -> float:
    """CPU-seconds of this process, all threads, plus its finished children (user + system)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _child(conn, contender: Contender, params: dict) -> None:
    try:
        import importlib

        params = {**params, **contender.params}
        for module in contender.imports:
            importlib.import_module(module)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(THREADS)
        data = contender.setup(params)
        gc.collect()
        reset_peak()
        baseline = _rss_mb()
        if contender.memory_limit is not None:
            limit = _vm_size() + contender.memory_limit
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        times, cpu, out = [], [], {}
        for i in range(contender.repeat):
            c0, t0 = _self_cpu(), time.perf_counter()
            out = contender.run(data, params) or {}
            times.append(time.perf_counter() - t0)
            cpu.append(_self_cpu() - c0)
            if times[-1] > SLOW_RUN_S:
                break
        peak = maxrss_mb()
        kernels = sys.modules.get("torchlinreg.solve.kernels")  # loaded only by contenders that use torchlinreg
        conn.send({"times": times, "cpu": cpu, "baseline_mb": baseline, "extra_mb": max(0.0, peak - baseline),
                   "out": out, "kernels": kernels.chosen() if kernels else None})
    except BaseException:
        conn.send({"error": traceback.format_exc(limit=6)})
    finally:
        conn.close()


def _busy_seconds() -> float:
    """CPU-seconds all processes on the machine have used (from /proc/stat), or nan."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


QUIET_BELOW = 0.3  # cores used by other processes: below this the machine counts as quiet
QUIET_WAIT_S = 30.0  # wait at most this long for quiet before starting a contender anyway


def wait_for_quiet() -> float:
    """Wait (up to ``QUIET_WAIT_S``) until other processes use under ``QUIET_BELOW`` cores; return their use."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        b0, t0 = _busy_seconds(), time.monotonic()
        time.sleep(1.0)
        used = (_busy_seconds() - b0) / (time.monotonic() - t0)
        if not used >= QUIET_BELOW or time.monotonic() > deadline:  # nan counts as quiet
            return used


def measure(contender: Contender, params: dict, *, quiet: bool = True) -> Result:
    """Run one contender in a fresh spawned process and collect its result (after waiting for quiet)."""
    if quiet:
        wait_for_quiet()
    busy0, cpu0, wall0 = _busy_seconds(), _children_cpu(), time.monotonic()
    ctx = mp.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, contender, params))
    proc.start()
    sender.close()
    result = Result(contender.name, note=contender.note)
    if receiver.poll(contender.timeout):
        try:
            msg = receiver.recv()
        except EOFError:
            msg = {"error": "the child died without an answer"}
    else:
        proc.kill()
        msg = {"error": f"timed out after {contender.timeout:.0f} s"}
    proc.join()
    wall = time.monotonic() - wall0
    result.others_cpu = max(0.0, (_busy_seconds() - busy0) - (_children_cpu() - cpu0)) / wall if wall > 0 else None
    if proc.exitcode not in (0, None) and "error" not in msg and not msg.get("times"):
        msg = {"error": f"the child exited with code {proc.exitcode}"}
    if "error" in msg:
        result.error = msg["error"].strip().splitlines()[-1]
        print(f"  {contender.name}: FAILED\n{msg['error']}", file=sys.stderr, flush=True)
        return result
    result.times, result.out, result.kernels = msg["times"], msg["out"], msg["kernels"]
    result.cpu_seconds = msg["cpu"][min(range(len(msg["times"])), key=msg["times"].__getitem__)]
    result.baseline_mb, result.extra_mb = msg["baseline_mb"], msg["extra_mb"]
    result.out_overrides = {k for k in ("seconds",) if k in result.out}
    result.seconds = float(result.out.pop("seconds", min(result.times)))
    result.note = result.out.pop("note", "") or result.note
    return result


# --- machine facts and the table --------------------------------------------------------------

def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    return float("nan")


def _commit() -> str:
    """The commit of the torchlinreg being measured (read-only git commands), and whether it has changes."""
    try:
        import torchlinreg

        repo = Path(torchlinreg.__file__).resolve().parents[2]
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.split()[1::2]
        return head + (f" + uncommitted changes to {', '.join(Path(f).name for f in dirty)}" if dirty else "") \
            if head else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("torch", "numpy", "scikit-learn", "statsmodels", "pyarrow", "torchlinreg"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def print_header(title: str) -> None:
    import torch  # noqa: F401  (imported first, so that machine() describes PyTorch's BLAS too)

    from torchlinreg.solve.machine import machine

    m = machine()
    print(f"# {title}")
    print(f"command: {shlex.join(['python', 'bench/' + Path(sys.argv[0]).name, *sys.argv[1:]])}")
    print(f"date:    {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"cpu:     {m['cpu']}")
    print(f"blas:    {m['numpy_blas']}, {m.get('torch_blas', 'torch: not imported')}")
    print(f"machine: {os.cpu_count()} logical CPUs ({THREADS} usable), {_memory_gib():.0f} GiB RAM, "
          f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    if UNSET:
        print(f"unset:   {', '.join(f'{k}={v}' for k, v in UNSET.items())} (the test suite's emulation of other "
              f"CPUs) removed from this benchmark's children's environment")
    print(f"threads: {', '.join(f'{v}={os.environ[v]}' for v in THREAD_VARS[:3])}, torch.set_num_threads({THREADS})")
    print(f"versions: {_versions()}; torchlinreg at {_commit()}")
    print("memory:  extra peak = ru_maxrss after the runs - RSS after imports and data (peak reset in between)")
    print(f"noise:   each contender waits (up to {QUIET_WAIT_S:.0f} s) until other processes use under "
          f"{QUIET_BELOW} cores; \"others' CPU\" is what they used (cores) while it ran (above {NOISY}: run "
          f"again, fastest kept); \"CPU s\" is the contender's own CPU time (all threads), which others slow less",
          flush=True)


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 100:
        return f"{s:.0f}"
    if s >= 1:
        return f"{s:.2f}"
    if s >= 0.01:
        return f"{s:.3f}"
    return f"{s * 1e3:.2f} ms"


def print_table(results: list[Result], reference: str, extra_columns: dict[str, Callable[[Result], str]] = {}) -> None:
    """contender | seconds | first s | × reference | extra peak MB | runs | [extra columns] | CPU s | others' CPU |
    note; then the Gram kernels each torchlinreg contender chose (one line per shape class)."""
    if not results:
        return
    ref = next((r for r in results if r.name == reference and r.ok), None)
    header = ["contender", "seconds", "first s", f"× {reference}", "extra peak MB", "runs", *extra_columns, "CPU s",
              "others' CPU", "note"]
    rows = []
    for r in results:
        if not r.ok:
            rows.append([r.name, "failed", "-", "-", "-", "-", *("-" for _ in extra_columns), "-", "-", r.error or ""])
            continue
        ratio = f"{r.seconds / ref.seconds:.2f}" if ref is not None and ref.seconds > 0 else "-"
        first = "-" if "seconds" in r.out_overrides else fmt_seconds(r.times[0])  # "-": the run reported its seconds
        rows.append([r.name, fmt_seconds(r.seconds), first, ratio, f"{r.extra_mb:,.0f}", str(len(r.times)),
                     *(f(r) for f in extra_columns.values()),
                     "-" if r.cpu_seconds is None or "seconds" in r.out_overrides else fmt_seconds(r.cpu_seconds),
                     "-" if r.others_cpu is None else f"{r.others_cpu:.2f}", r.note])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    looks_numeric = lambda c: c[:1].isdigit() or c in ("-", "failed") or c.endswith(" ms")
    numeric = {i for i in range(1, len(header) - 1) if all(looks_numeric(row[i]) for row in rows)}
    line = lambda cells: "| " + " | ".join(c.rjust(w) if i in numeric else c.ljust(w)
                                           for i, (c, w) in enumerate(zip(cells, widths))) + " |"
    print(line(header))
    print("| " + " | ".join("-" * (w - 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + " |")
    for row in rows:
        print(line(row))
    print()
    chosen = [f"kernels chosen by {r.name}: {shape}: {kernel}" for r in results if r.kernels is not None
              for shape, kernel in (r.kernels or {"none measured": "no block was large enough to time"}).items()]
    print("\n".join(chosen) + "\n" if chosen else "", end="", flush=True)


def target(label: str, value: float | None, goal: float, *, at_least: bool, unit: str = "×") -> bool | None:
    """Print one target line: ``met`` or ``NOT met`` and by how much."""
    if value is None:
        print(f"target: {label}: not measured")
        return None
    met = value >= goal if at_least else value <= goal
    factor = value / goal if at_least else goal / value if value > 0 else float("inf")
    how = f"by {factor:.2f}×" if met else f"short by {1 / factor:.2f}×"
    sign = "≥" if at_least else "≤"
    print(f"target: {label}: {value:.3g}{unit} (goal {sign} {goal:g}{unit}) -> {'met' if met else 'NOT met'}, {how}")
    return met


def parse_args(description: str, argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each: a smoke test in seconds")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only contenders whose name contains one of these")
    return p.parse_args(argv)


def selected(contenders: list[Contender], only) -> list[Contender]:
    if not only:
        return contenders
    return [c for c in contenders if any(o.lower() in c.name.lower() for o in only)]


NOISY = 0.5  # cores used by others during a run: above this the run is repeated ...
RETRIES = 1  # ... at most this many more times, keeping the fastest


def run_all(contenders: list[Contender], params: dict, *, quick: bool = False) -> list[Result]:
    """Measure each contender in turn. ``quick``: one run each, no waiting for quiet, no retries."""
    results = []
    for c in contenders:
        if quick and not c.in_quick:
            continue
        if quick:
            c.repeat = 1
        t0 = time.perf_counter()
        print(f"  running {c.name} ...", file=sys.stderr, flush=True)
        best = measure(c, params, quiet=not quick)
        for _ in range(0 if quick else RETRIES):
            if not best.ok or best.others_cpu is None or best.others_cpu <= NOISY:
                break
            print(f"  ... others used {best.others_cpu:.2f} cores meanwhile: again", file=sys.stderr, flush=True)
            again = measure(c, params)
            if again.ok and again.seconds < best.seconds:
                best = again
        results.append(best)
        print(f"  ... {time.perf_counter() - t0:.1f} s wall", file=sys.stderr, flush=True)
    return results


def torch_warm_up() -> None:
    """One real step of a throwaway model, so PyTorch's one-off costs are paid outside the clock.

    The first ``torch.optim`` optimizer of a process imports ``torch._dynamo`` (its constructor
    calls ``add_param_group``, decorated with ``torch._disable_dynamo``, as is ``step``): about
    1.1-1.7 s on the 2-core machine, measured by ``bench/startup.py``. Autograd starts its engine.
    """
    import torch

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(4, 2)).square().mean().backward()
    optimizer.step()


# --- data -----------------------------------------------------------------------------------

GEN_CHUNK = 1 << 16  # rows generated at once: fixed, so the data do not depend on anything else


def make_data(n: int, d: int, *, dtype="float64", seed: int = 0, noise: float = 1.0, rho: float = 0.0):
    """``X`` (n, d) and ``y`` (n,): columns with spreads from 0.1 to 10 and non-zero means, normal noise.

    ``rho``: every pair of columns correlated by ``rho`` (one common factor), so that even
    standardised columns are ill-conditioned: condition number ``(1 + (d - 1) rho) / (1 - rho)``.

    Written chunk by chunk into preallocated arrays, so building them needs no temporary
    copy of the whole data (the peak after setup is the data itself).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    scale = np.logspace(-1, 1, d)  # spreads 0.1 .. 10: standardising matters
    mean = rng.uniform(-5, 5, d)
    coef = rng.uniform(-2, 2, d)
    intercept = 3.0
    X = np.empty((n, d), dtype=dtype)
    y = np.empty(n, dtype=dtype)
    buf = np.empty((GEN_CHUNK, d))
    if rho:
        rng = np.random.default_rng([seed, 1])  # another stream, so rho=0 keeps the data above
    for start in range(0, n, GEN_CHUNK):
        k = min(GEN_CHUNK, n - start)
        z = buf[:k]
        rng.standard_normal(out=z)
        if rho:
            z *= np.sqrt(1 - rho)
            z += np.sqrt(rho) * rng.standard_normal((k, 1))
        z += mean
        X[start:start + k] = z
        y[start:start + k] = z @ coef + intercept + noise * rng.standard_normal(k)
    return X, y


def exact_optimum(X, y):
    """Reference optimum by float64 normal equations with centring (only for judging, never timed)."""
    import numpy as np

    xm, ym = X.mean(0, dtype=np.float64), y.mean(dtype=np.float64)
    G = np.zeros((X.shape[1], X.shape[1]))
    g = np.zeros(X.shape[1])
    for start in range(0, len(X), GEN_CHUNK):
        Xc = X[start:start + GEN_CHUNK].astype(np.float64) - xm
        G += Xc.T @ Xc
        g += Xc.T @ (y[start:start + GEN_CHUNK] - ym)
    w = np.linalg.solve(G, g)
    return w, ym - xm @ w
