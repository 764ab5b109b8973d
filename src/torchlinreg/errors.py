"""The exceptions torchlinreg raises, and the argument checks many modules share (seeds, counts, parts).

Each message names the problem and how to fix it; only ``cli.py`` turns them into a
line on stderr and an exit code.

A message names a setting by a placeholder, never by a command-line flag: ``{chunk_rows}``
or ``{chunk_rows=65536}``, where ``chunk_rows`` is the library's keyword (a field of
``TrainConfig`` or ``FitOptions``, of ``publish.Publish``, or a function's keyword such as
``max_memory``, ``force``, ``out_dir``). ``str(exc)`` renders it for the library's users:
``chunk_rows`` and ``chunk_rows=65536``; ``exc.for_command(flags)`` renders it for the
command: ``--chunk-rows`` and ``--chunk-rows 65536`` (see :func:`render`). In an f-string the
braces are doubled: ``f"got {x!r}; pass e.g. {{chunk_rows=65536}}"``. A value is written as
Python would take it (``{engine='gram'}``, ``{force=True}``); the command drops the quotes,
and gives a switch (``True`` or ``False``) as its flag alone.
"""

import numbers
import re

# {name} or {name=value}: a setting named by the library's keyword, rendered by render()
PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*)(?:=([^{}]*))?\}")
# The settings a message may name. Only these are rendered, so that text from the user inside a message (a
# column called "{x}") stays as it is; tests/test_messages.py holds every placeholder in src to this list.
SETTINGS = frozenset({
    "batch_size", "checkpoint_every", "chunk_rows", "device", "dtype", "engine", "epochs", "features", "force",
    "gamma", "lr", "max_memory", "momentum", "nesterov", "optimizer", "out_dir", "output", "patience", "resume", "save",
    "standardize", "step_size", "stream", "target", "tensorboard", "threads", "tol", "validation_fraction",
    "weight_decay", "statistics", "animation", "plots", "report", "weights", "seed", "schedule", "summary",
    "targets", "coef", "intercept", "noise", "x_start", "x_stop", "true_weight", "true_bias", "noise_low",
    "noise_high", "cov_type", "maxlags", "groups", "fit_intercept", "row_figures", "l2", "l2_grid",
    "formula", "categorical", "positive",
})


def render(template: str, flags: dict[str, str] | None = None) -> str:
    """``template`` with its placeholders rendered: as keywords (``name``, ``name=value``) when
    ``flags`` is None, else as command-line flags, ``flags.get(name)`` or ``--name-with-dashes``
    (``--name value``; a switch's ``=True``/``=False`` gives the flag alone, so ``flags`` maps
    such a setting to the flag that sets it that way, e.g. ``plots`` to ``--no-plots``)."""
    if flags is None:
        return PLACEHOLDER.sub(lambda m: m[0] if m[1] not in SETTINGS else m[1] if m[2] is None
                               else f"{m[1]}={m[2]}", template)

    def flag(m: re.Match) -> str:
        name, value = m[1], m[2]
        if name not in SETTINGS:
            return m[0]
        text = flags.get(name) or "--" + name.replace("_", "-")
        if value is None or value in ("True", "False"):
            return text
        quoted = len(value) > 1 and value[0] == value[-1] and value[0] in "'\""
        return f"{text} {value[1:-1] if quoted else value}"

    return PLACEHOLDER.sub(flag, template)


class SettingsMessage:
    """An error's or warning's message whose placeholders name settings (see the module's docstring).

    ``str()`` gives the library's rendering, :meth:`for_command` the command's; :attr:`template`
    is the message as written, placeholders and all (what one process of a job passes to the others).
    """

    @property
    def template(self) -> str:
        return super().__str__()

    def __str__(self) -> str:
        return render(self.template)

    def for_command(self, flags: dict[str, str]) -> str:
        """The message with every setting named by its flag: ``flags`` maps the settings whose flag
        is not ``--`` + the name with ``_`` turned into ``-``."""
        return render(self.template, flags)


def for_command(message, flags: dict[str, str]) -> str:
    """An error's or a warning's message as the command prints it: the settings it names given as
    flags (``message.for_command(flags)``), or ``str(message)`` when it is no SettingsMessage."""
    return message.for_command(flags) if isinstance(message, SettingsMessage) else str(message)


class TorchlinregError(SettingsMessage, Exception):
    """Base class of every error torchlinreg raises on purpose."""


class ConfigError(TorchlinregError, ValueError):
    """A setting is out of range (for example a negative learning rate)."""


class OutputError(TorchlinregError, OSError):
    """An output file or folder cannot be written."""


class DataError(TorchlinregError):
    """A data file cannot be used: missing, unreadable, wrong columns, non-finite values."""


class ModelFileError(TorchlinregError):
    """A saved model cannot be loaded: missing, truncated, inconsistent, or not a torchlinreg model."""


class ResultFileError(TorchlinregError):
    """A fit's output folder cannot be read back: missing, damaged, or not written by a torchlinreg fit."""


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


class SettingsWarning(SettingsMessage, UserWarning):
    """A warning whose advice names a setting (rendered as a keyword, or by the command as a flag)."""


class RankDeficiencyWarning(UserWarning):
    """The design matrix does not have full column rank; the minimum-norm solution is returned."""


class ConvergenceWarning(SettingsWarning):
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
