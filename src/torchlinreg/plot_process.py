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
  command ends without sending one, and exits when the pipe closes because the command died;
  a command killed while it draws (SIGKILL: no handler runs) takes it along: on Linux the
  kernel kills it with its parent (``PR_SET_PDEATHSIG``), and everywhere it checks before each
  file that its parent is still the command (:func:`_orphaned`) and exits without writing if not.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

MAX_VALUES = 1_000_000  # numbers in X and y sent through the pipe; beyond that the copy costs more than it saves
PARENT_ENV = "TORCHLINREG_PLOT_PARENT"  # the command's pid, as the plotting process must find it as its parent
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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
               **{PARENT_ENV: str(os.getpid())})
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


def _die_with_parent() -> int:
    """Have the kernel kill this process when its parent dies (Linux); return the parent's pid to check against."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())  # the command's pid, even if it died already
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    _orphaned(parent)  # a parent that died before the prctl sends no signal: look
    return parent


def _orphaned(parent: int) -> None:
    """Exit at once, writing nothing more, when the command that started this process is gone."""
    if os.getppid() != parent:  # reparented: the command died
        os._exit(1)


def _checked(write, parent: int):
    """``write`` that first checks that the command still runs: the portable guard of each file, just before it is written."""
    @functools.wraps(write)
    def checked_write(*args, **kwargs):
        _orphaned(parent)
        return write(*args, **kwargs)
    return checked_write


def _serve() -> int:
    """The plotting process: import what drawing needs, then do the one job that comes through stdin."""
    import pickle

    parent = _die_with_parent()
    jobs, answers = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed must not mix with the answer
    import matplotlib.backends.backend_agg  # noqa: F401  (what the time is spent on, before the job arrives)
    import matplotlib.figure  # noqa: F401
    import scipy.special  # noqa: F401  (the confidence band's t quantile, the Q-Q plot's normal quantiles)

    from torchlinreg import plots

    plots.atomic_write_bytes = _checked(plots.atomic_write_bytes, parent)  # save_figure writes each PNG file through it
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
