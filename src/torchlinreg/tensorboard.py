"""Experiment logs for TensorBoard, as a training callback (tensorboard is an optional extra)."""

from __future__ import annotations

import os

from .callbacks import Callback
from .errors import ConfigError

MAX_SCALAR_PARAMS = 20  # parameters logged one by one as scalars; larger models get histograms only


class TensorBoardLogger(Callback):
    """Writes the loss, validation loss, learning rate and parameters of every epoch.

    Scalars: ``loss/train``, ``loss/validation``, ``lr``, and for small models one
    ``params/linear.weight[j][i]`` per parameter; histograms of ``linear.weight`` and
    ``linear.bias`` always.
    """

    def __init__(self, log_dir: str | os.PathLike):
        self.log_dir = os.fspath(log_dir)
        self._writer = None

    def on_train_begin(self, model, config, history) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("{tensorboard} needs the tensorboard package; "
                              "install it with: pip install 'torchlinreg[tensorboard]'") from None
        self._writer = SummaryWriter(log_dir=self.log_dir)
        self._writer.add_text("settings", str(config.to_dict()))

    def on_epoch_end(self, record) -> None:
        import numpy as np

        from .history import flat_param_names, flat_param_values

        w, step = self._writer, record.epoch
        w.add_scalar("loss/train", record.loss, step)
        if record.val_loss is not None:
            w.add_scalar("loss/validation", record.val_loss, step)
        if record.lr is not None:
            w.add_scalar("lr", record.lr, step)
        values = flat_param_values(record.params)
        if len(values) <= MAX_SCALAR_PARAMS:
            for name, value in zip(flat_param_names(record.params), values):
                w.add_scalar(f"params/{name}", value, step)
        for name, value in record.params.items():
            w.add_histogram(name, np.asarray(value, dtype=np.float64), step)

    def on_train_end(self, history) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __repr__(self) -> str:
        return f"TensorBoardLogger({self.log_dir!r})"
