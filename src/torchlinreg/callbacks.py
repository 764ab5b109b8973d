"""The extension point of the training loop: a callback sees every epoch's record.

Training code never prints; anything that reports progress is a callback.
"""

from __future__ import annotations


class Callback:
    """Base class; override the hooks you need."""

    def on_train_begin(self, model, config, history) -> None:
        """Before epoch 1; ``history.initial_params`` holds the starting parameters."""

    def on_epoch_end(self, record) -> None:
        pass

    def on_train_end(self, history) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
