"""The command's plotting process: the PNG files drawn on a second core while PyTorch loads.

Importing matplotlib and drawing the PNG files of the tutorial run takes about as long
as importing PyTorch. So ``torchlinreg fit`` first starts a second Python process, which
imports matplotlib and NumPy (never PyTorch) while the command imports PyTorch and trains;
:func:`torchlinreg.pictures.save_plots` then sends it (through :func:`draw`, which it installs as
``pictures.draw_elsewhere``) the data as NumPy arrays and the history, and it writes the files with the same code (:func:`torchlinreg.plots.save_pngs`,
atomically) and answers with their paths. The command itself never imports matplotlib.

It can only save time:

- it is started only where it can overlap: in a process that has imported neither PyTorch
  nor matplotlib (a fresh command; a script or a test calling ``main`` in a warm process
  draws in place), with a second core to run on, and only on rank 0 of a torchrun job; it
  takes data up to ``MAX_VALUES`` numbers (larger data is drawn in place rather than
  copied through the pipe);
- if it cannot start, dies, or fails in any way, ``save_plots`` draws in the command's own
  process, so an error is raised there exactly as it would be without it;
- it never outlives the command: it reads one job from a pipe, is terminated when the
  command ends without sending one, and exits when the pipe closes because the command died.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_VALUES = 1_000_000  # numbers in X and y sent through the pipe; beyond that the copy costs more than it saves
_waiting = None  # the plotting process (a subprocess.Popen) while it waits for its job


def alongside(wanted: Callable[[object], bool]):
    """Decorator of a command ``f(args)``: run it with a plotting process when ``wanted(args)``."""
    def decorate(command):
        @functools.wraps(command)
        def run(args):
            with plotting_process(wanted(args)):
                return command(args)
        return run
    return decorate


@contextlib.contextmanager
def plotting_process(enabled: bool = True) -> Iterator[bool]:
    """Start the plotting process, if it can pay off, for the duration of a command; yields whether it did."""
    global _waiting
    fresh = "torch" not in sys.modules and "matplotlib" not in sys.modules  # its imports overlap PyTorch's
    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun only rank 0 writes files
    if not (enabled and fresh and main_rank and _cores() > 1) or _waiting is not None:
        yield False
        return
    import subprocess

    here = str(Path(__file__).resolve().parent.parent)  # so that it imports this torchlinreg, wherever it came from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    try:
        proc = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=env)
    except OSError:
        yield False
        return
    _waiting = proc
    from . import pictures

    pictures.draw_elsewhere = draw  # save_plots sends its job here
    try:
        yield True
    finally:
        _waiting, pictures.draw_elsewhere = None, None
        _stop(proc, answered=False)


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def draw(data, history, out_dir: Path, optimum_loss: float | None) -> dict[str, Path] | None:
    """Have the plotting process write the PNG files of ``save_plots``.

    Returns their paths by name, or None when there is no plotting process, the data is
    too large for it, or it failed (the caller then draws them itself).
    """
    global _waiting
    proc, _waiting = _waiting, None  # one job per process
    if proc is None:
        return None
    import pickle

    from .plots import PlotData

    files = None
    try:
        if data.n_samples * (data.n_features + data.n_targets) <= MAX_VALUES:
            pickle.dump((PlotData.of(data), history, Path(out_dir), optimum_loss), proc.stdin,
                        protocol=pickle.HIGHEST_PROTOCOL)
            proc.stdin.close()
            files = pickle.load(proc.stdout)
    except Exception:  # noqa: BLE001  it died, or the job could not be sent: the caller draws
        files = None
    finally:
        _stop(proc, answered=files is not None)
    return files if isinstance(files, dict) else None


def _stop(proc, answered: bool) -> None:
    """Close the pipes and reap the process; one still working (no answer read) is terminated first."""
    import subprocess

    for stream in (proc.stdin, proc.stdout):
        with contextlib.suppress(OSError):
            stream.close()
    if not answered and proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _serve() -> int:
    """The plotting process: import what drawing needs, then do the one job that comes through stdin."""
    import pickle

    jobs, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not mix with the answer
    import matplotlib.backends.backend_agg  # noqa: F401  (what the time is spent on, before the job arrives)
    import matplotlib.figure  # noqa: F401
    import scipy.special  # noqa: F401  (the confidence band's t quantile, the Q-Q plot's normal quantiles)

    from torchlinreg import plots

    try:
        job = pickle.load(jobs)
    except EOFError:  # the command ended without plots
        return 0
    try:
        files = plots.save_pngs(*job)
    except Exception:  # noqa: BLE001  the command draws again itself, and raises the error there
        files = None
    pickle.dump(files, answers, protocol=pickle.HIGHEST_PROTOCOL)
    answers.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
