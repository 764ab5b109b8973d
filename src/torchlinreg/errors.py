"""The exceptions torchlinreg raises, and the argument checks many modules share (seeds, counts, parts).

Each message names the problem and how to fix it; only ``cli.py`` turns them into a
line on stderr and an exit code.
"""

import numbers


class TorchlinregError(Exception):
    """Base class of every error torchlinreg raises on purpose."""


class ConfigError(TorchlinregError, ValueError):
    """A setting is out of range (for example a negative learning rate)."""


class OutputError(TorchlinregError, OSError):
    """An output file or folder cannot be written."""


class DataError(TorchlinregError):
    """A data file cannot be used: missing, unreadable, wrong columns, non-finite values."""


class ModelFileError(TorchlinregError):
    """A saved model cannot be loaded: missing, truncated, inconsistent, or not a torchlinreg model."""


class CheckpointError(ModelFileError):
    """A checkpoint cannot be resumed from: missing part, truncated, altered, or not a torchlinreg checkpoint."""


class Interrupted(TorchlinregError):
    """Training stopped on SIGINT or SIGTERM; the checkpoint written says where it stopped.

    Attributes
    ----------
    signum : int
        The signal that stopped it (the command exits with 128 + signum: 130, 143).
    resumable : bool
        Whether a checkpoint holds the run, so that ``--resume`` continues it.
    """

    def __init__(self, message: str, *, signum: int, resumable: bool):
        super().__init__(message)
        self.signum = signum
        self.resumable = resumable


class DistributedError(TorchlinregError):
    """A rank failed, or did not arrive in time, so every rank of the job stops.

    Attributes
    ----------
    rank : int
        The rank that raised this error.
    failed_ranks : tuple of int
        The ranks at fault: the ones that failed, else the ones that did not arrive.
    """

    def __init__(self, message: str, *, rank: int, failed_ranks: tuple[int, ...]):
        super().__init__(message)
        self.rank = rank
        self.failed_ranks = failed_ranks


class RankDeficiencyWarning(UserWarning):
    """The design matrix does not have full column rank; the minimum-norm solution is returned."""


class ConvergenceWarning(UserWarning):
    """An iterative method did not reach what it was asked for: training's stopping rule, or
    the solver's refinement."""


MAX_SEED = 2**63 - 1  # PyTorch's generators take a signed 64-bit seed


def check_seed(name: str, value) -> None:
    """Refuse a seed PyTorch's and NumPy's generators cannot take, with a ConfigError saying what can."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{name} must be an integer from 0 to 2**63-1, got {value!r}; pass e.g. 71")


def check_positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, numbers.Integral)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_part(part: int, parts: int) -> None:
    """Refuse a part that is not one of ``parts``."""
    check_positive("parts", parts)
    if isinstance(part, bool) or not isinstance(part, (int, numbers.Integral)) or not 0 <= part < parts:
        raise ValueError(f"part must be an integer from 0 to parts - 1 = {parts - 1}, got {part!r}")
