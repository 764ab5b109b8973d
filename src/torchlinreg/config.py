"""Training settings: one dataclass, validated on creation.

Imports nothing heavy, so the command line can check its flags before loading PyTorch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from . import defaults
from .defaults import CHUNK_ROWS
from .errors import ConfigError, check_seed  # noqa: F401 - check_seed: where callers found it

OPTIMIZERS = ("sgd", "adam", "adamw", "lbfgs")
SCHEDULES = ("constant", "step", "cosine")
DTYPES = ("float32", "float64")
DEFAULT_LR = {"sgd": defaults.LR, "adam": 0.001, "adamw": 0.001, "lbfgs": 1.0}
ENGINES = ("auto", "gram", "data")  # the training loop's objective: see gram.select_engine
COV_TYPES = ("nonrobust", "HC0", "HC1", "HC2", "HC3", "HAC", "cluster")  # covariances of the coefficients: see statistics.py
DEFAULT_TIMEOUT_S = 300.0  # under torchrun, a collective or check-in waits this long for the slowest rank


def no_effect(setting: str, why: str, fix: str) -> ConfigError:
    """The one rule for a setting that would change nothing (weight decay with L-BFGS; ``positive`` with a solver
    that cannot honour it): it is refused, never accepted silently, with this one message, which the command,
    the library and the estimator all raise. ``setting`` names it (a placeholder, e.g. ``{weight_decay}``),
    ``why`` says why it has no effect, ``fix`` what to do instead."""
    return ConfigError(f"{setting} would have no effect {why}; {fix}")


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. The defaults are the tutorial's."""

    epochs: int = defaults.EPOCHS  # upper bound on full passes over the data; the tutorial's 50
    lr: float | None = None  # step size; None: 0.001 (the tutorial's) for SGD/Adam/AdamW, 1.0 for L-BFGS
    optimizer: str = "sgd"  # sgd | adam | adamw | lbfgs
    momentum: float = defaults.MOMENTUM  # SGD heavy-ball momentum in [0, 1); 0 is plain gradient descent
    nesterov: bool = False  # SGD Nesterov momentum (needs momentum > 0)
    weight_decay: float = defaults.WEIGHT_DECAY  # L2 penalty on every parameter (decoupled for AdamW)
    batch_size: int | None = None  # rows per step; None is full batch, as the tutorial
    tol: float | None = None  # stop when the loss improves by less than tol (relative) ...
    patience: int = 5  # ... for this many epochs in a row; off while tol is None
    schedule: str = "constant"  # learning-rate schedule: constant | step | cosine
    step_size: int = 30  # step schedule: epochs between decays
    gamma: float = 0.1  # step schedule: factor applied every step_size epochs
    dtype: str = "float32"  # parameters and data in training; the tutorial's float32
    device: str | None = None  # auto | cpu | cuda[:i] | mps; None keeps the model where it is (the CPU by default)
    seed: int = defaults.MODEL_SEED  # seeds the initial parameters and the mini-batch order

    def __post_init__(self):
        _check_int("epochs", self.epochs, "{epochs=50}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.lr is not None:
            _check_number("learning rate", self.lr, "{lr=0.001}", positive=True)
        _check_number("momentum", self.momentum, "{momentum=0.9}")
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be below 1, got {self.momentum!r}; pass e.g. {{momentum=0.9}}")
        if self.optimizer != "sgd" and (self.momentum or self.nesterov):
            raise ConfigError(f"momentum and Nesterov apply to SGD only, not {self.optimizer}; drop {{momentum}}/{{nesterov}}")
        if self.nesterov and self.momentum == 0:
            raise ConfigError("Nesterov momentum needs a momentum above 0; pass e.g. {momentum=0.9}")
        _check_number("weight decay", self.weight_decay, "{weight_decay=0.0001}")
        if self.optimizer == "lbfgs" and self.weight_decay:
            raise no_effect(f"weight decay {self.weight_decay!r} ({{weight_decay}})", "with L-BFGS, which has none",
                            "drop it, or choose another {optimizer}; ridge (a penalty on the weights alone) is solved "
                            "exactly by tl.ridge and by the solve command")
        if self.batch_size is not None:
            _check_int("batch size", self.batch_size, "{batch_size=32}")
            if self.optimizer == "lbfgs":
                raise ConfigError("L-BFGS needs the full batch; drop {batch_size} or choose another optimizer")
        if self.tol is not None:
            _check_number("tol", self.tol, "{tol=1e-6}")
        _check_int("patience", self.patience, "{patience=5}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        _check_int("step size", self.step_size, "{step_size=30}")
        _check_number("gamma", self.gamma, "{gamma=0.1}", positive=True)
        if self.gamma > 1:
            raise ConfigError(f"gamma must be at most 1 (it shrinks the rate), got {self.gamma!r}; pass e.g. {{gamma=0.1}}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.device is not None and str(self.device).split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"unknown device {self.device!r}; choose one of auto, cpu, cuda, mps")
        check_seed("seed", self.seed)

    @property
    def learning_rate(self) -> float:
        """The rate in use: ``lr``, or the optimizer's default when ``lr`` is None."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    def to_dict(self) -> dict:
        return asdict(self) | {"lr": self.learning_rate}


@dataclass
class FitOptions:
    """What a fit computes besides training (``config``); every field has the command's default.

    ``standardize``: train on standardised columns, report in the data's units.
    ``validation_fraction`` of the rows (a split seeded with ``split_seed``) is held out and
    scored; rows in memory only. ``engine``: "auto", "data" (every epoch passes over the rows:
    the tutorial's loop) or "gram" (each epoch O(d²) from the R factor), see
    :func:`torchlinreg.gram.select_engine`. ``statistics``: the inference tables of the optimum
    (``conf_level``, ``cov_type``), printed. ``chunk_rows``: rows per chunk of every pass.
    ``checkpoint_every``/``resume``: checkpoints (one process, with an output folder; see
    :mod:`torchlinreg.checkpoint`). ``tutorial`` marks the tutorial's own run, which keeps the
    tutorial's loop. ``reading`` says why the data is streamed, for the notes before epoch 1;
    ``chosen``, which settings were chosen for the data (:func:`choose_settings`), for the first line.
    ``positive``: the weights are kept ``≥ 0`` (``nnls``). ``fit_intercept``: False fits a line through the origin (the model has no bias; the optimum and
    statistics are those without intercept, and ``standardize`` scales the columns without centring).
    ``maxlags`` (HAC) and ``groups`` (cluster: each row's cluster, in file order) go with those
    ``cov_type`` values, as for ``torchlinreg.statistics_of``; one process, no validation split.
    """

    standardize: bool = False
    validation_fraction: float = 0.0
    split_seed: int = defaults.DATA_SEED
    engine: str = "auto"
    statistics: bool = False
    conf_level: float = 0.95
    cov_type: str = "nonrobust"
    chunk_rows: int = CHUNK_ROWS
    checkpoint_every: int | None = None
    resume: bool = False
    tutorial: bool = False
    reading: str = ""
    chosen: str = ""
    fit_intercept: bool = True
    positive: bool = False  # weights kept >= 0 (projected after each step); the optimum: non-negative least squares
    maxlags: int | None = None
    groups: object = None

    def __post_init__(self):
        if not isinstance(self.fit_intercept, bool):
            raise ConfigError(f"{{fit_intercept}} must be True or False, got {self.fit_intercept!r}")
        if not isinstance(self.positive, bool):
            raise ConfigError(f"{{positive}} must be True or False, got {self.positive!r}")


# What ``fit`` chooses for a user's data when neither an optimizer nor a rate is given (see choose_settings).
AUTO_EPOCHS = 1000  # the most L-BFGS iterations (one an epoch): ill-conditioned data need a few hundred at most
AUTO_TOL = 1e-12  # stop when the loss improves by less than this (relative) for ``patience`` epochs
AUTO_MINIBATCH = {"optimizer": "adam", "lr": 0.01}  # with ``batch_size``: L-BFGS needs the full batch


@dataclass(frozen=True)
class Settings:
    """A fit's settings once the defaults for the data are chosen: ``why`` says what was chosen ("" if nothing)."""

    config: TrainConfig
    standardize: bool
    why: str = ""


def choose_settings(*, standardize: bool | None = None, for_data: bool = True, fit_intercept: bool = True,
                    **given) -> Settings:
    """The settings for a user's data: every setting given is kept, the rest chosen so the fit converges.

    ``given``: fields of :class:`TrainConfig`, None for "not given". The tutorial's settings (plain
    SGD at lr 0.001, 50 epochs, float32) diverge on most real data, whose features are far from
    the tutorial's scale. So unless ``optimizer`` or ``lr`` is given, a full-batch fit gets L-BFGS on
    standardised columns in float64, stopped when the loss stops improving (``AUTO_TOL``) or after
    ``AUTO_EPOCHS``; a mini-batch fit (``batch_size``) gets Adam at lr 0.01 on standardised columns.
    With ``optimizer`` or ``lr`` given (or ``momentum``/``nesterov``, which only SGD has), the other
    settings are the tutorial's, as ``TrainConfig``'s; so are they all without ``for_data`` (the
    tutorial's own run). ``fit_intercept=False`` (no bias): the columns are scaled, not centred.
    """
    given = {k: v for k, v in given.items() if v is not None}
    if not for_data or "optimizer" in given or "lr" in given or given.get("momentum") or given.get("nesterov"):
        return Settings(TrainConfig(**given), bool(standardize))
    scaled = standardize is not False
    on = ("standardised columns" if fit_intercept else "scaled columns (not centred: no intercept)") if scaled \
        else "the data's columns (standardising turned off)"
    if given.get("batch_size") is not None:
        config = TrainConfig(**(AUTO_MINIBATCH | given))
        return Settings(config, scaled, f"Adam at lr {config.learning_rate:g} on {on}, mini-batches of "
                                        f"{config.batch_size:,} rows, {config.epochs:,} epochs")
    chosen = {"optimizer": "lbfgs", "dtype": "float64", "epochs": AUTO_EPOCHS, "tol": AUTO_TOL} | given
    config = TrainConfig(**chosen)
    stop = (f"until the loss improves by less than {config.tol:g} (relative) for {config.patience} epochs in a row, "
            f"at most {config.epochs:,} epochs") if config.tol is not None else f"{config.epochs:,} epochs"
    return Settings(config, scaled, f"L-BFGS on {on} in {config.dtype}, {stop}")


def check_l2(l2, *, grid: bool = False) -> None:
    """Refuse a ridge penalty that is not a finite number >= 0 (or a list of them: one per target, or a ``grid``)."""
    values = l2 if isinstance(l2, (list, tuple)) else [l2]
    if values and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v >= 0
                      for v in values):
        return
    if grid:
        raise ConfigError(f"{{l2_grid}} must hold finite numbers >= 0 (ridge penalties), got {l2!r}; pass e.g. "
                          f"{{l2_grid=0.1 1 10}}")
    raise ConfigError(f"{{l2}} must be a finite number >= 0 (the ridge penalty), got {l2!r}; pass e.g. {{l2=1.0}}")


def check_chunk_rows(chunk_rows) -> None:
    """Refuse rows per chunk that are not a positive integer."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"{{chunk_rows}} must be a positive integer, got {chunk_rows!r}; pass e.g. {{chunk_rows=65536}}")


def _check_int(name: str, value, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}; pass e.g. {example}")


def _check_number(name: str, value, example: str, *, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}; pass e.g. {example}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be above 0, got {value!r}; pass e.g. {example}")
    if not positive and value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}; pass e.g. {example} or 0")
