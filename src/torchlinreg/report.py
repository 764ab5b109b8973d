"""The tutorial's text report: initial parameters, one line per epoch, the final line.

For one feature and one target every line is exactly the tutorial's. With more weights
the same line lists them (``weight: [w1, w2]``), and long lists are shortened.
"""

from __future__ import annotations

import math
import sys
from typing import TextIO

from .callbacks import Callback
from .history import EpochRecord, History, Params
from .shown import shown_name

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


# ``bias=False`` (a model fitted without intercept): the lines leave the bias out, which is no parameter then.

def format_parameters(params: Params, bias: bool = True) -> str:
    """The tutorial's ``Weight:`` and ``Bias:`` lines, full precision."""
    return f"Weight: {_values(params[WEIGHT], 'r')}" + (f"\nBias:   {_values(params[BIAS], 'r')}" if bias else "")


def format_initial(params: Params, bias: bool = True) -> str:
    """``Initial weight: 0.10597813, Initial bias: 0.96379614``."""
    return (f"Initial weight: {_values(params[WEIGHT], '.8f')}"
            + (f", Initial bias: {_values(params[BIAS], '.8f')}" if bias else ""))


def format_epoch(record: EpochRecord, width: int = 2, bias: bool = True) -> str:
    """``epoch:  1  loss: 3057.21679688  weight: 0.10597813  bias: 0.96379614``."""
    return (f"epoch: {record.epoch:{width}}  loss: {record.loss:10.8f}  "
            f"weight: {_values(record.params[WEIGHT], '10.8f')}"
            + (f"  bias: {_values(record.params[BIAS], '10.8f')}" if bias else ""))


def format_final(params: Params, bias: bool = True) -> str:
    """``Current weight: 1.98381913, Current bias: 1.05575156``."""
    return (f"Current weight: {_values(params[WEIGHT], '.8f')}"
            + (f", Current bias: {_values(params[BIAS], '.8f')}" if bias else ""))


class PrintReport(Callback):
    """Prints the tutorial's report while training runs.

    ``every``: print epoch 1, every ``every``-th epoch and the last one (1: all, as the
    tutorial); 0 prints no epoch lines. ``write``: how a line is printed (for example a
    progress bar's ``write``, so the bar is not torn); default ``print``. ``first``: lines printed
    before everything; ``notes``: lines printed after the initial parameters.
    """

    def __init__(self, stream: TextIO | None = None, notes: list[str] = (), *, every: int = 1, write=None,
                 first: list[str] = ()):
        self.stream = stream
        self.first = list(first)  # printed before everything (the settings chosen for the data)
        self.notes = list(notes)  # printed after the initial parameters, before epoch 1
        self.every = every
        self.write = write
        self._width = 2
        self._bias = True  # the model's (False: fitted without intercept, no bias to show)
        self._last_printed = None

    def _print(self, text: str) -> None:
        if self.write is not None:
            self.write(text, file=self.stream or sys.stdout)
        else:
            print(text, file=self.stream or sys.stdout, flush=True)

    def on_train_begin(self, model, config, history) -> None:
        self._width = max(2, len(str(config.epochs)))
        self._bias = bool(getattr(model, "fit_intercept", True))
        for line in self.first:
            self._print(line)
        self._print(format_parameters(history.initial_params, self._bias))
        self._print(format_initial(history.initial_params, self._bias))
        for note in self.notes:
            self._print(note)

    def on_epoch_end(self, record: EpochRecord) -> None:
        if self.every and (record.epoch == 1 or record.epoch % self.every == 0):
            self._print(format_epoch(record, self._width, self._bias))
            self._last_printed = record.epoch

    def on_train_end(self, history: History) -> None:
        if self.every and history.records and history.records[-1].epoch != self._last_printed:
            self._print(format_epoch(history.records[-1], self._width, self._bias))  # the last epoch: always shown
        self._print(format_final(history.final_params, self._bias))

    def __repr__(self) -> str:
        return f"PrintReport(stream={self.stream!r})"


def percent(fraction: float, tiny: str = " (relative)") -> str:
    """A share as people write it: 0.217 -> ``21.7%``, 1 -> ``100%``, 12.5 -> ``1,250%``; a share below
    0.01% as a plain fraction followed by ``tiny`` (``2.4e-08 (relative)``), which a percentage would hide."""
    if not math.isfinite(fraction) or abs(fraction) >= 1e-4 or fraction == 0:
        value = 100 * fraction
        return f"{value:,.0f}%" if abs(value) >= 100 else f"{value:.3g}%"
    return f"{fraction:.2g}{tiny}"


MAX_TABLE_ROWS = 20  # parameter rows shown in the comparison table; the rest go to files


def format_comparison(feature_names, target_names, trained: dict, optimum: dict, gap: dict,
                      fit_intercept: bool = True) -> str:
    """The trained model next to the least-squares optimum, and how far apart they are.

    ``trained``/``optimum`` hold ``weight`` (m, d), ``bias`` (m,) and ``loss``; ``gap`` holds
    ``relative_excess_loss``, ``distance`` and ``relative_distance``. ``fit_intercept=False``: no bias rows.
    """
    rows = comparison_rows(feature_names, target_names, trained, optimum, fit_intercept=fit_intercept)
    hidden = max(0, len(rows) - MAX_TABLE_ROWS)
    rows = rows[:MAX_TABLE_ROWS]
    rows.append(("loss (MSE)", trained["loss"], optimum["loss"]))
    rows = [(shown_name(name), a, b) for name, a, b in rows]  # an escape sequence in a name is shown, not sent
    width = max(len(name) for name, *_ in rows)
    cells = [(name, _fixed(a).strip(), _fixed(b).strip(), a - b) for name, a, b in rows]
    number = max(15, *(len(c) for _, a, b, _ in cells for c in (a, b)))  # 15: the tutorial's; wider for millions
    lines = ["Trained model and the exact least-squares optimum (training data):",
             f"  {'':{width}}  {'trained':>{number}}  {'optimum':>{number}}  {'difference':>12}"]
    for name, a, b, difference in cells:
        lines.append(f"  {name:{width}}  {a:>{number}}  {b:>{number}}  {difference:12.4g}")
    if hidden:
        lines.append(f"  ... {hidden} more parameters (all of them: torchlinreg solve --json, or --save)")
    gap_line, *caveat = gap_sentences(gap)
    lines.append(f"  gap: {gap_line}")
    lines.extend(f"  ({line})" for line in caveat)
    return "\n".join(lines)


def comparison_rows(feature_names, target_names, trained: dict, optimum: dict, arrow: str = "->",
                    fit_intercept: bool = True) -> list[tuple]:
    """``(name, trained, optimum)`` per parameter: each target's weights by feature name, then its bias
    (none for a model fitted without intercept: ``fit_intercept=False``)."""
    rows = []
    for j, target in enumerate(target_names):
        suffix = f" {arrow} {target}" if len(target_names) > 1 else ""
        for i, feature in enumerate(feature_names):
            rows.append((f"weight {feature}{suffix}", trained["weight"][j][i], optimum["weight"][j][i]))
        if fit_intercept:
            rows.append((f"bias{suffix}", trained["bias"][j], optimum["bias"][j]))
    return rows


def gap_sentences(gap: dict) -> list[str]:
    """How far the trained model is from the optimum (the relative excess loss, the distance), and, when the
    optimum is not unique, why the distance says little."""
    excess = gap["relative_excess_loss"]
    if gap.get("exact_fit"):
        excess_text = "the optimum fits the data exactly (loss 0 to rounding), the trained model does not"
    elif not math.isfinite(excess):  # an optimum's loss so small that the ratio overflows
        excess_text = f"the trained loss, {gap['trained_loss']:.3g}, is far above the optimum's, {gap['optimum_loss']:.3g}"
    elif excess < 0:  # below the optimum's by rounding: both losses are sums of n·m rounded squares
        excess_text = f"the trained loss equals the optimum's to rounding (relative difference {excess:.2g})"
    elif excess >= 1e-4:
        excess_text = f"the trained loss is {percent(excess)} above the optimum's"
    else:
        excess_text = f"the trained loss is {excess:.2e} above the optimum's (relative)"
    unique = gap.get("unique") is not False
    relative = gap["relative_distance"]  # inf when the optimum is all zeros: no size to compare with
    size = (f" ({percent(relative, '')} of its size)" if math.isfinite(relative)
            else " (the optimum is all zeros)" if relative == math.inf else "")
    lines = [f"{excess_text}; the parameters are {gap['distance']:.4g} away from the "
             f"{'' if unique else 'minimum-norm '}optimum{size}"]
    if not unique:
        lines.append("the data do not identify every parameter, so the optimum is not unique: a distance "
                     "from the minimum-norm one says little; compare the losses")
    return lines


def _fixed(value: float) -> str:
    """15 characters: 8 decimals like the tutorial, or exponent notation for huge values."""
    return f"{value:15.8f}" if abs(value) < 1e7 else f"{value:15.8e}"


METRICS_TITLE = "Metrics of the trained model"
STATISTICS_TITLE = ("Statistics of the exact least-squares optimum (not of the trained model: the R² below is "
                    "the optimum's)")


def format_metrics(metrics: dict) -> str:
    """``metrics`` maps a split name (``train``, ``validation``) to ``{mse, rmse, mae, r2}``: the trained model's."""
    lines = [f"{METRICS_TITLE}:", f"  {'':11}{'MSE':>14}{'RMSE':>14}{'MAE':>14}{'R²':>14}"]
    for split, m in metrics.items():
        lines.append(f"  {split:<11}{m['mse']:14.6g}{m['rmse']:14.6g}{m['mae']:14.6g}{m['r2']:14.6g}")
    return "\n".join(lines)


def format_statistics(statistics) -> str:
    """The statistics tables (one per target, statsmodels' layout) under a title that says whose they are."""
    return f"{STATISTICS_TITLE}:\n" + "\n\n".join(table.summary() for table in statistics)


def coefficient_lines(solution) -> list[str]:
    """Each target's weights and intercept, one per line, 10 significant digits (solve's and ridge's tables)."""
    lines = []
    for j, target in enumerate(solution.target_names):
        names = [f"weight {shown_name(f)}" for f in solution.feature_names] + ["intercept"]
        values = list(solution.coef[j]) + [solution.intercept[j]]
        width = max(len(n) for n in names)
        if len(solution.target_names) > 1:
            lines.append(f" target {shown_name(target)}:")
        lines.extend(f"  {n:{width}}  {v: .10g}" for n, v in zip(names, values))
    return lines


def format_solution(solution) -> str:
    """``torchlinreg solve``'s table: each coefficient, the intercept and the loss."""
    kind = "Non-negative least-squares solution" if getattr(solution, "positive", False) else "Least-squares solution"
    lines = [f"{kind} ({solution.n_samples} rows, rank {solution.rank}, "
             f"condition number {solution.condition_number:.3g}):", *coefficient_lines(solution)]
    lines.append(f"  loss (MSE)  {solution.loss:.10g}")
    if solution.min_digits is not None:  # the error estimate of solve.digits
        lines.append(f"  correct digits (estimated): at least {solution.min_digits:.1f} in every weight, "
                     f"{solution.se_digits:.1f} in the standard errors")
    return "\n".join(lines)


def solution_output(solution, statistics=None, *, as_json: bool = False) -> str:
    """What ``torchlinreg solve`` prints: the solution and its statistics tables, or with ``as_json`` one JSON
    object (the solution, ``statistics`` when computed, and ``machine``: where it ran, see ``solve.machine``)."""
    if as_json:
        import json

        from .solve.machine import machine_record

        out = solution.to_dict()
        if statistics is not None:
            out["statistics"] = [s.to_dict() for s in statistics]
        return json.dumps({**out, "machine": machine_record(solution.kernels)}, indent=1)
    return "\n\n".join([format_solution(solution)] + [table.summary() for table in statistics or ()])
