"""The exceptions torchlinreg raises.

Each message names the problem and how to fix it; only ``cli.py`` turns them into a
line on stderr and an exit code.
"""


class TorchlinregError(Exception):
    """Base class of every error torchlinreg raises on purpose."""


class ConfigError(TorchlinregError, ValueError):
    """A setting is out of range (for example a negative learning rate)."""


class OutputError(TorchlinregError, OSError):
    """An output file or folder cannot be written."""
