"""``make soak``: random SIGKILLs during model saves, checkpointed fits and output writes, and pairs of fits
into one folder; it prints what it found and exits 1 on anything lost, torn or mixed (issue 15, item 12).

Not part of ``make test`` (minutes, and timing-driven). Every random choice comes from SOAK_SEED:

- ``save`` kills: ``fit --save m --force`` over a model pair of an earlier run (or none), killed a random
  delay after the run starts writing. The pair must load (``torchlinreg.load_model``) as the previous
  generation or the new one, or (with none before) be absent as a whole.
- ``checkpoint`` kills: a fit with ``--checkpoint-every``, killed a random delay after a random epoch; every
  SOAK_RESUME_EVERY-th is resumed (``--resume``), and its folder must then be byte-identical to an
  uninterrupted run's.
- ``output`` kills: a fit with plots into the folder of an earlier run, killed while it writes; every file
  there must be whole and of one run: all the previous generation's, or all the new one's.
- ``pairs``: two fits (different seeds) started together into one ``--out``. Each must succeed, or be
  refused with one line naming the other's pid (the lock); the folder must hold one successful run's
  files, complete and byte-equal to that run's reference (so its summary.json and history.json agree).

The references are the same commands run uninterrupted; the runs are byte-deterministic.

Settings (environment): SOAK_SEED (default 15), KILLS (300, dealt round-robin to the three kinds),
PAIRS (50), SOAK_JOBS (cases run at once; default: the cores), SOAK_RESUME_EVERY (5), SOAK_ONLY (a
comma list of cases to rerun: ``17`` for kill 17, ``p3`` for pair 3), SOAK_DIR (where to work; default a
temporary folder, removed when nothing failed; a failed case's folder is always kept).
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))  # this checkout's torchlinreg, for load_model and the data

SEED = int(os.environ.get("SOAK_SEED") or 15)
KILLS = int(os.environ.get("KILLS") or 300)
PAIRS = int(os.environ.get("PAIRS") or 50)
JOBS = int(os.environ.get("SOAK_JOBS") or len(os.sched_getaffinity(0)))
RESUME_EVERY = int(os.environ.get("SOAK_RESUME_EVERY") or 5)
ONLY = [c.strip() for c in os.environ.get("SOAK_ONLY", "").split(",") if c.strip()]
KINDS = ("save", "checkpoint", "output")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
           PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one core per command: JOBS at once

# Small data and few epochs: a kill costs little more than PyTorch's import. Two generations that differ in
# every file (the seed shuffles the mini-batches); the checkpointed run writes a checkpoint every 3 epochs.
TRAINING = ["--optimizer", "sgd", "--lr", "0.05", "--batch-size", "50"]
GENERATIONS = {"previous": ["--epochs", "5", "--seed", "1"], "new": ["--epochs", "6", "--seed", "2"]}
EVERY, EPOCHS = 3, 60
CHECKPOINTED = ["--optimizer", "sgd", "--lr", "0.01", "--momentum", "0.9", "--batch-size", "20", "--epochs",
                str(EPOCHS), "--checkpoint-every", str(EVERY), "--log-every", "1", "--no-plots"]
WRITING = "Metrics of the trained model:"  # the last line printed before a fit writes its files


@dataclass
class Outcome:
    case: str  # "17" (kill 17) or "p3" (pair 3)
    kind: str
    result: str  # what was found, e.g. "previous", "new", "resumed identical"
    failure: str = ""  # why it is a failure ("" when none)
    leftovers: int = 0  # temporary files a kill left behind (the next run must clean them)
    detail: str = ""  # when and how it was killed


@dataclass
class References:
    root: Path
    data: Path
    write_s: dict = field(default_factory=dict)  # kind -> seconds from WRITING to the end of an uninterrupted run
    epoch_s: float = 0.0  # seconds per epoch of the checkpointed run


def fit(data: Path, *args) -> list[str]:
    return [sys.executable, "-m", "torchlinreg", "fit", str(data), *map(str, args)]


def run_killed(argv, *, trigger, delay: float, log: Path):
    """Run ``argv``; ``delay`` s after the first stdout line for which ``trigger(line)`` holds, SIGKILL it.
    Returns (killed, return code, seconds from the trigger to the end)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, text=True, env=ENV)
        seen = None
        for line in proc.stdout:
            if trigger(line):
                seen = time.monotonic()
                break
        killed = False
        if seen is not None:
            time.sleep(max(0.0, delay - (time.monotonic() - seen)))
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, nothing is cleaned up
                killed = True
        proc.stdout.read()
        proc.wait()
    return killed, proc.returncode, (time.monotonic() - seen) if seen else None


def _temporary(path: Path, folder: Path) -> bool:
    """A file a run keeps out of sight until it commits: a dot file, ``*.tmp``, or anything in a hidden folder
    (a run's ``.run-<id>`` staging folder)."""
    parts = path.relative_to(folder).parts
    return any(part.startswith(".") for part in parts) or path.name.endswith(".tmp")


def files(folder: Path, *, hidden: bool = True) -> dict[str, bytes]:
    """Every regular file under ``folder`` by relative path (without temporary ones unless ``hidden``)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and (hidden or not _temporary(p, folder)):
            found[str(p.relative_to(folder))] = p.read_bytes()
    return found


def temporaries(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and _temporary(p, folder))


def make_references(root: Path) -> References:
    """The data, and each command run uninterrupted: the generations a kill may leave, and the timings."""
    from torchlinreg import make_regression, write_table
    from torchlinreg.data import dataset_columns

    root.mkdir(parents=True, exist_ok=True)
    refs = References(root, write_table(root / "d.csv", dataset_columns(make_regression(200, 2, 1, seed=SEED))))
    jobs = {f"{gen}": fit(refs.data, *TRAINING, *args, "--quiet", "--out", root / gen, "--save", root / f"{gen}.model")
            for gen, args in GENERATIONS.items()}
    jobs["save"] = fit(refs.data, *TRAINING, *GENERATIONS["new"], "--no-plots", "--quiet", "--out", root / "save",
                       "--save", root / "save.model")
    jobs["checkpoint"] = fit(refs.data, *CHECKPOINTED, "--out", root / "checkpoint")
    writes = {"previous": [root / "previous"], "new": [root / "new"], "save": [root / "save", root / "save.model"],
              "checkpoint": [root / "checkpoint"]}
    with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
        timings = dict(zip(jobs, pool.map(_timed, jobs.values(), writes.values())))
    refs.write_s = {"save": timings["save"][0], "output": timings["new"][0]}
    refs.epoch_s = timings["checkpoint"][1] / (EPOCHS - 1)
    return refs


def _timed(argv, written: list[Path]) -> tuple[float, float]:
    """Run to the end: (seconds from WRITING to the last change of a file under ``written``, seconds from the
    first epoch line to WRITING)."""
    started = written_at = None
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    for line in proc.stdout:
        if line.startswith("epoch:") and started is None:
            started = time.monotonic()
        if line.startswith(WRITING):
            written_at, wall = time.monotonic(), time.time()
    _, err = proc.communicate()
    if proc.returncode != 0 or written_at is None:
        sys.exit(f"soak: the reference run failed ({proc.returncode}): {' '.join(map(str, argv))}\n{err}")
    paths = [p for w in written for p in ([*w.rglob("*")] if w.is_dir() else w.parent.glob(w.name + ".*"))]
    last = max((p.stat().st_mtime for p in paths if p.is_file()), default=wall)
    return max(0.005, last - wall), written_at - (started or written_at)


def kill_case(i: int, refs: References, root: Path) -> Outcome:
    kind, rng = KINDS[i % len(KINDS)], random.Random(f"{SEED}:kill:{i}")
    case = root / f"kill-{i}"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    try:
        outcome = {"save": _save_case, "checkpoint": _checkpoint_case, "output": _output_case}[kind](
            i, rng, refs, case)
    except Exception as exc:  # noqa: BLE001  a failure of the soak itself is reported as one
        outcome = Outcome(str(i), kind, "error", f"the soak failed: {type(exc).__name__}: {exc}")
    if not outcome.failure:
        shutil.rmtree(case, ignore_errors=True)
    return outcome


def _save_case(i: int, rng: random.Random, refs: References, case: Path) -> Outcome:
    has_previous = rng.random() < 0.8  # else the first save of that name is killed
    if has_previous:
        for suffix in (".safetensors", ".json"):
            shutil.copy(refs.root / f"previous.model{suffix}", case / f"m{suffix}")
    delay = rng.uniform(0, 1.2 * refs.write_s["save"])
    argv = fit(refs.data, *TRAINING, *GENERATIONS["new"], "--no-plots", "--quiet", "--out", case / "o",
               "--save", case / "m", "--force")
    killed, code, _ = run_killed(argv, trigger=lambda line: line.startswith(WRITING), delay=delay,
                                 log=case / "stderr")
    detail = f"killed {delay:.3f} s after the writes began" if killed else f"ended ({code}) before the kill"
    leftovers = sum(1 for p in case.iterdir() if p.name.startswith(".m."))
    return Outcome(str(i), "save", *_which_model(case / "m", refs.root, has_previous), leftovers, detail)


def _which_model(stem: Path, refs_root: Path, has_previous: bool) -> tuple[str, str]:
    """(what the pair at ``stem`` is, the failure or "")."""
    import numpy as np

    from torchlinreg import load_model

    present = [p.name for p in (stem.with_suffix(".safetensors"), stem.with_suffix(".json")) if p.exists()]
    try:
        model = load_model(stem)
    except Exception as exc:  # noqa: BLE001
        if not present and not has_previous:
            return "nothing (a first save killed)", ""
        return "lost", f"the model pair does not load ({', '.join(present) or 'no file'} there): {exc}"
    for gen in GENERATIONS:
        ref = load_model(refs_root / f"{gen}.model")
        if np.array_equal(model.weight, ref.weight) and np.array_equal(model.bias, ref.bias):
            return gen, ""
    return "unknown", "the model pair loads but is neither the previous generation nor the new one"


def _checkpoint_case(i: int, rng: random.Random, refs: References, case: Path) -> Outcome:
    epoch = rng.randint(2 * EVERY + 1, EPOCHS)  # a checkpoint was written before: a resume has one to start from
    delay = rng.uniform(0, 1.5 * refs.epoch_s)
    argv = fit(refs.data, *CHECKPOINTED, "--out", case / "o")
    killed, code, _ = run_killed(argv, trigger=lambda line: line.split()[:2] == ["epoch:", str(epoch)],
                                 delay=delay,
                                 log=case / "stderr")
    detail = f"killed {delay:.3f} s after epoch {epoch} began" if killed else f"ended ({code}) before the kill"
    leftovers = temporaries(case / "o")
    if int(i // len(KINDS)) % RESUME_EVERY:
        return Outcome(str(i), "checkpoint", "not resumed (spot checks only)", "", leftovers, detail)
    resumed = subprocess.run(argv + ["--resume", "--quiet"], capture_output=True, text=True, env=ENV)
    if resumed.returncode != 0 and "no checkpoint to resume" not in resumed.stderr:
        return Outcome(str(i), "checkpoint", "not resumable",
                       f"--resume exits {resumed.returncode}: {resumed.stderr.strip()[-300:]}", leftovers, detail)
    got, want = files(case / "o"), files(refs.root / "checkpoint")
    wrong = sorted(name for name in set(got) | set(want) if got.get(name) != want.get(name))
    if wrong:
        return Outcome(str(i), "checkpoint", "resumed differently",
                       f"after --resume these files differ from an uninterrupted run's: {', '.join(wrong)}",
                       leftovers, detail)
    return Outcome(str(i), "checkpoint", "resumed identical" if resumed.returncode == 0 else "finished before",
                   "", leftovers, detail)


def _output_case(i: int, rng: random.Random, refs: References, case: Path) -> Outcome:
    shutil.copytree(refs.root / "previous", case / "o")
    delay = rng.uniform(0, 1.2 * refs.write_s["output"])
    argv = fit(refs.data, *TRAINING, *GENERATIONS["new"], "--quiet", "--out", case / "o")
    killed, code, _ = run_killed(argv, trigger=lambda line: line.startswith(WRITING), delay=delay,
                                 log=case / "stderr")
    detail = f"killed {delay:.3f} s after the writes began" if killed else f"ended ({code}) before the kill"
    left = temporaries(case / "o")
    finished = ""
    if not (case / "o" / "summary.json").exists():  # killed while moving its files in: no run is claimed complete,
        from torchlinreg.outputs import recover     # and the next run into the folder settles it first
        from torchlinreg.publish import OUTPUT_FILES

        recover(case / "o", OUTPUT_FILES)
        finished = " (settled by the next run)"
    result, failure = _which_folder(case / "o", refs.root, list(GENERATIONS))
    return Outcome(str(i), "output", result + finished, failure, left, detail)


def _which_folder(folder: Path, refs_root: Path, allowed: list[str]) -> tuple[str, str]:
    """(the generation the folder's files are of, the failure or ""): whole files of one allowed run, all there."""
    got = files(folder, hidden=False)
    refs = {gen: files(refs_root / gen, hidden=False) for gen in GENERATIONS}
    of = {name: next((gen for gen, ref in refs.items() if ref.get(name) == data), "torn") for name, data in got.items()}
    gens = sorted(set(of.values()))
    if "torn" in gens:
        return "torn", f"files that are no run's: {', '.join(n for n, g in of.items() if g == 'torn')}"
    if len(gens) != 1:
        mix = "; ".join(f"{g}: {', '.join(n for n, x in of.items() if x == g)}" for g in gens)
        return "mixed", f"files of two runs side by side ({mix})"
    gen = gens[0] if gens else "nothing"
    if gen not in allowed:
        return gen, f"the files are the {gen} run's, which did not succeed"
    missing = sorted(set(refs[gen]) - set(got))
    if missing:
        return "incomplete", f"the {gen} run's files lack {', '.join(missing)}"
    return gen, ""


def pair_case(j: int, refs: References, root: Path) -> Outcome:
    rng = random.Random(f"{SEED}:pair:{j}")
    case = root / f"pair-{j}"
    shutil.rmtree(case, ignore_errors=True)
    case.mkdir()
    gens, stagger = list(GENERATIONS), rng.uniform(0, 0.3)
    if rng.random() < 0.5:
        gens.reverse()
    procs = {}
    for k, gen in enumerate(gens):
        if k:
            time.sleep(stagger)
        procs[gen] = subprocess.Popen(fit(refs.data, *TRAINING, *GENERATIONS[gen], "--quiet", "--out", case / "o"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    errs = {gen: p.communicate()[1] for gen, p in procs.items()}
    detail = f"{gens[1]} started {stagger:.3f} s after {gens[0]}"
    ok = [gen for gen, p in procs.items() if p.returncode == 0]
    for gen, p in procs.items():
        other = procs[gens[1 - gens.index(gen)]]
        refused = p.returncode == 2 and errs[gen].count("\n") == 1 and str(other.pid) in errs[gen]
        if p.returncode != 0 and not refused:
            return Outcome(f"p{j}", "pairs", "failed", f"the {gen} run exits {p.returncode} without naming the "
                           f"other's pid: {errs[gen].strip()[-300:]}", detail=detail)
    result, failure = _which_folder(case / "o", refs.root, ok)
    if not failure and temporaries(case / "o"):
        failure = f"{temporaries(case / 'o')} temporary files left after both runs ended"
    if not failure:
        shutil.rmtree(case, ignore_errors=True)
    return Outcome(f"p{j}", "pairs", f"{result} ({'both ran' if len(ok) == 2 else 'one refused'})", failure,
                   detail=detail)


def report(outcomes: list[Outcome], seconds: float, root: Path) -> int:
    failures = [o for o in outcomes if o.failure]
    for kind in (*KINDS, "pairs"):
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            counts = Counter("FAILED" if o.failure else o.result for o in mine)
            shown = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
            print(f"  {kind:<10} {len(mine):>4} {'pairs' if kind == 'pairs' else 'kills'}: {shown}")
    left = sum(o.leftovers for o in outcomes)
    print(f"  temporary files left by the kills: {left} (the next run in that place must clean them)")
    for o in failures:
        print(f"FAILED {o.kind} #{o.case}: {o.failure} [{o.detail}]; folder {root / ('pair-' + o.case[1:] if o.case.startswith('p') else 'kill-' + o.case)}\n"
              f"  reproduce: SOAK_SEED={SEED} SOAK_ONLY={o.case} {sys.executable} scripts/soak.py")
    print(f"soak: {len(failures)} failure(s) in {len(outcomes)} cases, {seconds:.0f} s (seed {SEED})")
    return 1 if failures else 0


def main() -> int:
    kills = [int(c) for c in ONLY if not c.startswith("p")] if ONLY else list(range(KILLS))
    pairs = [int(c[1:]) for c in ONLY if c.startswith("p")] if ONLY else list(range(PAIRS))
    root = Path(os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="torchlinreg-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {SEED} (SOAK_SEED), {len(kills)} kills (KILLS), {len(pairs)} pairs (PAIRS), {JOBS} at once, "
          f"resuming every {RESUME_EVERY}th checkpoint kill; working in {root}", flush=True)
    started = time.monotonic()
    refs = make_references(root / "references")
    with concurrent.futures.ThreadPoolExecutor(JOBS) as pool:
        outcomes = list(pool.map(lambda i: kill_case(i, refs, root), kills))
    outcomes += [pair_case(j, refs, root) for j in pairs]  # one pair at a time: each is two processes
    code = report(outcomes, time.monotonic() - started, root)
    if code == 0 and not os.environ.get("SOAK_DIR"):
        shutil.rmtree(root, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
