"""(e) The tutorial run end to end against the bare imports, and where its time goes.

    python bench/startup.py [--quick] [--only NAME ...]

Each command runs as its own process, best of 5 (``--quick``: 1): the time is the wall
clock from starting the process to its exit, and "process peak RSS" its ``ru_maxrss``.
The tutorial run is ``torchlinreg fit --out DIR`` (the console script of this venv; DIR
under /tmp, the same folder each time, so later runs replace the first one's files). The
peer is ``python -c "import torch, matplotlib.pyplot"``: the least any program that trains
with PyTorch and draws with matplotlib pays. The command imports PyTorch without garbage
collection and spares itself the import of ``torch._dynamo`` (``torchlinreg/startup.py``;
the row ``import torch, torch._dynamo`` shows what that import costs), and has its PNG
files drawn by a second process that imports matplotlib while the command imports PyTorch
(``torchlinreg/plot_process.py``); the row "drawing in its own process" is the same run
with matplotlib imported first, which draws in place.

The breakdown runs the same command in one process with timers: the imports one by one,
then ``cli.main`` with the library's phases wrapped (data, exact solve, diagnostics,
training, plots); "the rest" is printing and writing the history and summary files. With
PyTorch imported first, this run draws its plots in place, one phase after the other: the
shares say what each costs, not what the command waits for. It also says whether the run
imported ``torch._dynamo``.

Target (issue 5, item 7): the tutorial run within 1.3× of the bare imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

OUT = "/tmp/torchlinreg-bench/startup-out"
REFERENCE = "python -c 'import torch, matplotlib.pyplot'"


def _torchlinreg() -> list[str]:
    script = Path(sys.executable).with_name("torchlinreg")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torchlinreg"]


def commands() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "torchlinreg fit --out DIR (the tutorial)": [*_torchlinreg(), "fit", "--out", OUT],
        REFERENCE: [py, "-c", "import torch, matplotlib.pyplot"],
        "torchlinreg fit --out DIR --no-plots": [*_torchlinreg(), "fit", "--out", OUT + "-noplots", "--no-plots"],
        "torchlinreg fit --out DIR, drawing in its own process": [
            py, "-c", "import sys, matplotlib; from torchlinreg.cli import main; sys.exit(main(sys.argv[1:]))",
            "fit", "--out", OUT + "-inplace"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "python -c 'import torch, torch._dynamo'": [py, "-c", "import torch, torch._dynamo"],
        "torchlinreg --help": [*_torchlinreg(), "--help"],
        "python -c pass": [py, "-c", "pass"],
    }


def setup(p):
    return None


def run_command(_, p):
    """Run ``p["commands"][p["which"]]`` as a process; its peak RSS comes back."""
    import resource
    import subprocess

    subprocess.run(p["commands"][p["which"]], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def run_breakdown(_, p):
    """The tutorial run in this process, phase by phase (seconds since the interpreter started, then deltas)."""
    import contextlib
    import io
    import sys
    import time

    phases: dict[str, float] = {}

    def stamp(name, t0):
        phases[name] = phases.get(name, 0.0) + time.perf_counter() - t0

    t = time.perf_counter()
    import torch  # noqa: F401
    stamp("import torch", t)
    t = time.perf_counter()
    import torchlinreg.cli as cli
    import torchlinreg.fitting as fit
    stamp("import torchlinreg (cli, fit and what they import)", t)
    t = time.perf_counter()
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import torchlinreg.pictures as pictures
    stamp("import matplotlib (what the plots draw with)", t)

    import torchlinreg.data as data
    import torchlinreg.diagnostics as diagnostics
    import torchlinreg.gram as gram
    import torchlinreg.solve as solve
    import torchlinreg.training as training

    depth = [0]  # only the outermost wrapped call is timed: lstsq calling QRAccumulator.update counts once

    def timed(name, f):
        def wrapper(*a, **kw):
            depth[0] += 1
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    stamp(name, t0)
        return wrapper

    # Whatever of these the library has today; a name that is gone is skipped, not an error.
    wrap = [(data, "tutorial_data", "data (tutorial_data)"),
            *((owner, attr, "exact solve (QR, solve, refinement)") for owner in (fit, solve)
              for attr in ("lstsq", "refine")),
            (solve.QRAccumulator, "update", "exact solve (QR, solve, refinement)"),
            (solve.QRAccumulator, "solve", "exact solve (QR, solve, refinement)"),
            (diagnostics, "diagnose", "diagnostics (diagnose)"),
            (training, "train", "training, 50 epochs (train / train_gram)"),
            (gram, "train_gram", "training, 50 epochs (train / train_gram)"),
            (pictures, "save_plots", "plots (save_plots)")]
    for owner, attr, label in wrap:
        if hasattr(owner, attr):
            setattr(owner, attr, timed(label, getattr(owner, attr)))
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["fit", "--out", OUT + "-breakdown"])
    total_main = time.perf_counter() - t
    inside = sum(v for k, v in phases.items() if not k.startswith("import"))
    phases["the rest of cli.main (printing, history and summary files)"] = total_main - inside
    return {"phases": phases, "exit": code, "dynamo": "torch._dynamo" in sys.modules}


def main(argv=None) -> int:
    args = h.parse_args(__doc__.splitlines()[0], argv)
    h.print_header("start-up: the tutorial run against the bare imports" + (" (--quick)" if args.quick else ""))
    Path(OUT).parent.mkdir(parents=True, exist_ok=True)
    cmds = commands()
    if args.quick:  # the two the target compares, and the start-up of Python itself
        cmds = {k: v for k, v in cmds.items() if k in ("torchlinreg fit --out DIR (the tutorial)", REFERENCE,
                                                      "python -c pass")}
    chosen = [h.Contender(name, run_command, setup, repeat=1 if args.quick else 5, params={"which": name})
              for name in cmds]
    chosen = h.selected(chosen, args.only)
    by = {}
    if chosen:
        print("\n## each command as its own process\n", flush=True)
        results = h.run_all(chosen, {"commands": cmds}, quick=args.quick)
        h.print_table(results, REFERENCE, {"process peak RSS MB": lambda r: f"{r.out.get('rss_mb', 0):,.0f}"})
        by = {r.name: r for r in results if r.ok}
        tut, ref = by.get("torchlinreg fit --out DIR (the tutorial)"), by.get(REFERENCE)
        h.target("tutorial run / bare imports", tut.seconds / ref.seconds if tut and ref else None, 1.3,
                 at_least=False)

    if not args.only or any("breakdown" in o for o in args.only):
        print("\n## where the tutorial run's time goes (one process, timers around each phase)\n", flush=True)
        (b,) = h.run_all([h.Contender("breakdown", run_breakdown, setup, repeat=1)], {}, quick=args.quick)
        start = by.get("python -c pass")
        if b.ok:
            rows = ([("python start-up (python -c pass)", start.seconds)] if start else []) + \
                list(b.out["phases"].items())
            total = sum(s for _, s in rows)
            width = max(len(name) for name, _ in rows)
            print(f"| {'phase'.ljust(width)} | seconds | share |")
            print(f"| {'-' * width} | ------: | ----: |")
            for name, s in rows:
                print(f"| {name.ljust(width)} | {s:7.3f} | {100 * s / total:4.0f}% |")
            print(f"| {'total'.ljust(width)} | {total:7.3f} |  100% |")
            print(f"\ntorch._dynamo imported by the run: {'yes' if b.out['dynamo'] else 'no'}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
