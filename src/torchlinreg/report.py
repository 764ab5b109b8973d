"""The tutorial's text report: initial parameters, one line per epoch, the final line.

For one feature and one target every line is exactly the tutorial's. With more weights
the same line lists them (``weight: [w1, w2]``), and long lists are shortened.
"""

from __future__ import annotations

import sys
from typing import TextIO

from .callbacks import Callback
from .history import EpochRecord, History, Params

WEIGHT, BIAS = "linear.weight", "linear.bias"
MAX_LISTED = 6  # values shown in full before a list is shortened to its ends


def _flat(value) -> list[float]:
    if isinstance(value, list):
        return [v for item in value for v in _flat(item)]
    return [value]


def _one(value: float, spec: str) -> str:
    return repr(value) if spec == "r" else format(value, spec)


def _values(value, spec: str) -> str:
    """One value as the tutorial prints it (spec ``"r"``: Python's repr), or a list for several."""
    flat = _flat(value)
    if len(flat) == 1:
        return _one(flat[0], spec)
    spec = spec.lstrip("0123456789")  # no padding inside a list
    if len(flat) > MAX_LISTED:
        head = ", ".join(_one(v, spec) for v in flat[:3])
        tail = ", ".join(_one(v, spec) for v in flat[-2:])
        return f"[{head}, ..., {tail}] ({len(flat)} values)"
    return "[" + ", ".join(_one(v, spec) for v in flat) + "]"


def format_parameters(params: Params) -> str:
    """The tutorial's ``Weight:`` and ``Bias:`` lines, full precision."""
    return f"Weight: {_values(params[WEIGHT], 'r')}\nBias:   {_values(params[BIAS], 'r')}"


def format_initial(params: Params) -> str:
    """``Initial weight: 0.10597813, Initial bias: 0.96379614``."""
    return f"Initial weight: {_values(params[WEIGHT], '.8f')}, Initial bias: {_values(params[BIAS], '.8f')}"


def format_epoch(record: EpochRecord, width: int = 2) -> str:
    """``epoch:  1  loss: 3057.21679688  weight: 0.10597813  bias: 0.96379614``."""
    return (f"epoch: {record.epoch:{width}}  loss: {record.loss:10.8f}  "
            f"weight: {_values(record.params[WEIGHT], '10.8f')}  bias: {_values(record.params[BIAS], '10.8f')}")


def format_final(params: Params) -> str:
    """``Current weight: 1.98381913, Current bias: 1.05575156``."""
    return f"Current weight: {_values(params[WEIGHT], '.8f')}, Current bias: {_values(params[BIAS], '.8f')}"


class PrintReport(Callback):
    """Prints the tutorial's report while training runs."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream
        self._width = 2

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_begin(self, model, config) -> None:
        self._width = max(2, len(str(config.epochs)))
        params = {name: p.detach().tolist() for name, p in model.named_parameters()}
        self._print(format_parameters(params))
        self._print(format_initial(params))

    def on_epoch_end(self, record: EpochRecord) -> None:
        self._print(format_epoch(record, self._width))

    def on_train_end(self, history: History) -> None:
        self._print(format_final(history.final_params))

    def __repr__(self) -> str:
        return f"PrintReport(stream={self.stream!r})"
