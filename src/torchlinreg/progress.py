"""A progress bar for long runs (tqdm, on stderr), as a training callback.

It appears only when stderr is a terminal and the run lasts longer than a moment
(``delay`` seconds), and shows the epoch, the loss and the learning rate. While it is
shown, other output must go through :meth:`ProgressBar.write` so that the bar is redrawn
below it instead of being torn.
"""

from __future__ import annotations

import sys

from .callbacks import Callback


class ProgressBar(Callback):
    def __init__(self, *, delay: float = 0.5, stream=None, force: bool | None = None, mininterval: float = 0.1):
        self.delay = delay  # seconds before the bar appears: short runs never show one
        self.mininterval = mininterval  # seconds between redraws
        self.stream = stream  # default sys.stderr
        self.force = force  # True: always show (tests), False: never, None: only on a terminal
        self._bar = None

    def on_train_begin(self, model, config, history) -> None:
        stream = self.stream or sys.stderr
        if not (self.force if self.force is not None else _is_terminal(stream)):
            return  # no bar, and no tqdm import: in Jupyter tqdm.auto warns when ipywidgets is missing
        from tqdm.auto import tqdm

        self._bar = tqdm(total=config.epochs, initial=len(history), desc="training", unit="epoch", file=stream,
                         delay=self.delay,  # initial: the epochs a resumed run had done
                         dynamic_ncols=True, leave=False, mininterval=self.mininterval)

    def on_epoch_end(self, record) -> None:
        if self._bar is None:
            return
        postfix = {"loss": f"{record.loss:.6g}"}
        if record.val_loss is not None:
            postfix["val"] = f"{record.val_loss:.6g}"
        if record.lr is not None:
            postfix["lr"] = f"{record.lr:.3g}"
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.update(1)  # redraws at most every `mininterval` seconds

    def on_train_end(self, history) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def write(self, text: str, file=None) -> None:
        """Print a line above the bar (or plainly when there is no bar)."""
        if self._bar is not None:
            self._bar.write(text, file=file or sys.stdout)
        else:
            print(text, file=file or sys.stdout, flush=True)

    def __repr__(self) -> str:
        return f"ProgressBar(delay={self.delay}, force={self.force})"


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
