"""The training history: plain data, one record per epoch, saveable as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

Params = dict[str, list]  # parameter name -> nested list of floats, e.g. {"linear.weight": [[0.1]]}


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """The loss of one epoch and the parameters it was computed at (before that epoch's step)."""

    epoch: int  # counted from 1, as the tutorial prints it
    loss: float  # MSE on the training data, in the data's units
    params: Params  # in the data's units, also when training ran on standardised data
    lr: float | None = None  # learning rate of this epoch's step(s)
    val_loss: float | None = None  # MSE on the held-out rows, if any


@dataclass
class History:
    """What training did.

    ``records[i]`` is epoch ``i + 1``. ``final_params`` are the parameters training ended
    with: after the last step, or, when the loss diverged, those of the last epoch whose
    loss was finite. ``status`` is ``"completed"`` or ``"diverged"``; ``message`` says why
    training stopped early, if it did.
    """

    initial_params: Params
    records: list[EpochRecord] = field(default_factory=list)
    final_params: Params | None = None
    status: str = "completed"
    message: str = ""

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.records]

    @property
    def epochs(self) -> list[int]:
        return [r.epoch for r in self.records]

    @property
    def val_losses(self) -> list[float | None]:
        return [r.val_loss for r in self.records]

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    def to_csv(self) -> str:
        """One row per epoch: epoch, loss, val_loss, lr, then one column per parameter value."""
        import csv
        import io

        names = flat_param_names(self.records[0].params) if self.records else []
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["epoch", "loss", "val_loss", "lr", *names])
        for r in self.records:
            values = [repr(v) for v in flat_param_values(r.params)]
            writer.writerow([r.epoch, repr(r.loss), "" if r.val_loss is None else repr(r.val_loss),
                             "" if r.lr is None else repr(r.lr), *values])
        return buffer.getvalue()

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        """The history as JSON, one epoch per line (long runs: no deep copy of every record)."""
        head = {k: getattr(self, k) for k in ("initial_params", "final_params", "status", "message")}
        lines = (json.dumps({"epoch": r.epoch, "loss": r.loss, "params": r.params, "lr": r.lr,
                             "val_loss": r.val_loss}) for r in self.records)
        return json.dumps(head)[:-1] + ', "records": [\n' + ",\n".join(lines) + "\n]}"

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        records = [EpochRecord(**r) for r in data["records"]]
        return cls(data["initial_params"], records, data["final_params"], data["status"], data["message"])

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        last = f", last loss {self.records[-1].loss:.8g}" if self.records else ""
        return f"History({len(self.records)} epochs, {self.status}{last})"


def flat_param_values(params: Params) -> list[float]:
    out: list[float] = []

    def walk(v):
        if isinstance(v, list):
            for item in v:
                walk(item)
        else:
            out.append(v)

    for value in params.values():
        walk(value)
    return out


def flat_param_names(params: Params) -> list[str]:
    """``linear.weight[0][1]``-style names in the order of :func:`flat_param_values`."""
    out: list[str] = []

    def walk(prefix, v):
        if isinstance(v, list):
            for i, item in enumerate(v):
                walk(f"{prefix}[{i}]", item)
        else:
            out.append(prefix)

    for name, value in params.items():
        walk(name, value)
    return out
