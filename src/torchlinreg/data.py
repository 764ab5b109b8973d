"""Data sets: the tutorial's noisy line, held as tensors with column names."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from . import defaults
from .defaults import CHUNK_ROWS
from .errors import ConfigError, check_part, check_positive, check_seed
from .shapes import dimension

if TYPE_CHECKING:
    import torch  # the rows are tensors; PyTorch itself is imported where tensors are made


def default_names(prefix: str, n: int) -> tuple[str, ...]:
    """Column names where a source has none: ``x`` for one column, ``x1, x2, ...`` for several."""
    return (prefix,) if n == 1 else tuple(f"{prefix}{i + 1}" for i in range(n))


@dataclass(frozen=True)
class Dataset:
    """Inputs and targets of a regression problem.

    Attributes
    ----------
    X : Tensor of shape (n_samples, n_features)
    y : Tensor of shape (n_samples, n_targets)
    feature_names, target_names : column names, one per column of ``X`` and ``y``.
    sample_weight : Tensor of shape (n_samples,) or None; non-negative weights of the rows.
    formula : None, or the spec (JSON data, :mod:`torchlinreg.formula`) of the formula that made ``X``'s columns;
        a model fitted on them keeps it, to rebuild the same columns for new rows.
    """

    X: torch.Tensor
    y: torch.Tensor
    feature_names: tuple[str, ...] = field(default=())
    target_names: tuple[str, ...] = field(default=())
    sample_weight: torch.Tensor | None = None
    formula: dict | None = field(default=None, repr=False, compare=False)  # the spec of a formula's columns

    def __post_init__(self):
        self._as_tensors()
        if self.X.ndim != 2 or self.y.ndim != 2:
            raise ValueError(f"X and y must be 2-D, got shapes {tuple(self.X.shape)} and {tuple(self.y.shape)}")
        if self.X.shape[0] != self.y.shape[0]:
            raise ValueError(f"X has {self.X.shape[0]} rows but y has {self.y.shape[0]}")
        if self.sample_weight is not None and tuple(self.sample_weight.shape) != (self.X.shape[0],):
            raise ValueError(f"sample_weight must have shape ({self.X.shape[0]},), got {tuple(self.sample_weight.shape)}")
        if not self.feature_names:
            object.__setattr__(self, "feature_names", default_names("x", self.n_features))
        if not self.target_names:
            object.__setattr__(self, "target_names", default_names("y", self.n_targets))

    def _as_tensors(self) -> None:
        """NumPy arrays, pandas DataFrames and Series (a 1-D ``y`` as one target) become float64 tensors, their
        column names kept where none are given; tensors stay as they are."""
        if all(hasattr(a, "detach") or a is None for a in (self.X, self.y, self.sample_weight)):
            return
        import torch

        for field_name, names in (("X", "feature_names"), ("y", "target_names")):
            value = getattr(self, field_name)
            if not hasattr(value, "detach"):
                values, found = _float64_matrix(value, field_name)
                object.__setattr__(self, field_name, torch.from_numpy(values))
                if not getattr(self, names) and found is not None:
                    object.__setattr__(self, names, found)
        if self.sample_weight is not None and not hasattr(self.sample_weight, "detach"):
            weights = np.array(self.sample_weight, dtype=np.float64).ravel()
            object.__setattr__(self, "sample_weight", torch.from_numpy(weights))

    n_samples = dimension("X", 0)
    n_features = dimension("X", 1)
    n_targets = dimension("y", 1)

    def __repr__(self) -> str:
        weighted = ", weighted" if self.sample_weight is not None else ""
        return (f"Dataset(n_samples={self.n_samples}, features={list(self.feature_names)}, "
                f"targets={list(self.target_names)}{weighted})")


def tutorial_data(
    n_samples: int = defaults.N_SAMPLES,
    *,
    x_start: float = defaults.X_START,
    x_stop: float = defaults.X_STOP,
    weight: float = defaults.TRUE_WEIGHT,
    bias: float = defaults.TRUE_BIAS,
    noise_low: int = defaults.NOISE_LOW,
    noise_high: int = defaults.NOISE_HIGH,
    seed: int = defaults.DATA_SEED,
) -> Dataset:
    """Points scattered around the line ``y = weight * x + bias``, as in the tutorial.

    ``X`` holds ``n_samples`` evenly spaced values from ``x_start`` to ``x_stop``
    (a column, float32); the noise is integer, drawn uniformly from
    ``noise_low..noise_high`` (both inclusive) by a generator seeded with ``seed``,
    then converted to float. With the defaults this is exactly the tutorial's
    ``X = torch.linspace(1, 50, 50).reshape(-1, 1)``,
    ``torch.manual_seed(71); e = torch.randint(-8, 9, (50, 1), dtype=torch.float)``,
    ``y = 2*X + 1 + e``. The global random state is left untouched.
    """
    import torch

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"the number of samples must be a positive integer, got {n_samples!r}")
    if noise_low > noise_high:
        raise ConfigError(f"noise_low ({noise_low}) is above noise_high ({noise_high}); swap them")
    for name, value in (("x_start", x_start), ("x_stop", x_stop), ("weight", weight), ("bias", bias)):
        if not torch.isfinite(torch.tensor(float(value))):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
    X = torch.linspace(x_start, x_stop, n_samples).reshape(-1, 1)  # (n, 1)
    check_seed("data seed", seed)
    generator = torch.Generator().manual_seed(seed)
    e = torch.randint(noise_low, noise_high + 1, (n_samples, 1), generator=generator).float()  # (n, 1)
    y = weight * X + bias + e
    return Dataset(X, y, ("x",), ("y",))


def make_regression(
    n_samples: int = 1000,
    n_features: int = 3,
    n_targets: int = 1,
    *,
    coef=None,
    intercept=None,
    noise: float = 1.0,
    seed: int = defaults.DATA_SEED,
) -> Dataset:
    """A multivariate linear data set: ``y = X @ coef.T + intercept + noise``.

    ``X`` is standard normal, shape (n_samples, n_features). ``coef`` has shape
    (n_targets, n_features) (a flat sequence of that many values is accepted) and defaults
    to integers drawn from -5..5; ``intercept`` has shape (n_targets,) and defaults to
    ones. The noise is normal with standard deviation ``noise``. Everything random comes
    from one generator seeded with ``seed``; data are float64. Columns are named
    ``x1..xd`` and ``y`` (or ``y1..ym``).
    """
    import torch

    for name, value in (("n_samples", n_samples), ("n_features", n_features), ("n_targets", n_targets)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if not (isinstance(noise, (int, float)) and noise >= 0 and torch.isfinite(torch.tensor(float(noise)))):
        raise ConfigError(f"noise must be a finite number >= 0, got {noise!r}")
    check_seed("data seed", seed)
    g = torch.Generator().manual_seed(seed)
    if coef is None:
        W = torch.randint(-5, 6, (n_targets, n_features), generator=g).double()
    else:
        W = torch.as_tensor(coef, dtype=torch.float64).flatten()
        if W.numel() != n_targets * n_features:
            raise ConfigError(f"got {W.numel()} coefficients for {n_targets} target(s) x {n_features} feature(s); "
                              f"give {n_targets * n_features} values")
        W = W.reshape(n_targets, n_features)
    b = torch.ones(n_targets, dtype=torch.float64) if intercept is None else torch.as_tensor(intercept, dtype=torch.float64).flatten()
    if b.numel() != n_targets:
        raise ConfigError(f"got {b.numel()} intercepts for {n_targets} target(s); give one per target")
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise ConfigError("coefficients and intercepts must be finite numbers")
    X = torch.randn(n_samples, n_features, generator=g, dtype=torch.float64)
    y = X @ W.T + b + noise * torch.randn(n_samples, n_targets, generator=g, dtype=torch.float64)
    return Dataset(X, y, default_names("x", n_features), default_names("y", n_targets))


def dataset_columns(data: Dataset) -> dict:
    """The data set as named float64 NumPy columns (features, then targets), ready to write to a file."""
    columns = {name: data.X[:, i].double().numpy() for i, name in enumerate(data.feature_names)}
    columns.update({name: data.y[:, j].double().numpy() for j, name in enumerate(data.target_names)})
    return columns


# ---- the Source interface, and rows in memory as a Source ------------------------------------------

@runtime_checkable
class Source(Protocol):
    """Rows of a regression problem, given chunk by chunk (see the module's docstring)."""

    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    weight_name: str | None
    n_rows: int | None
    in_memory: bool

    def chunks(self, rows: int, part: int = 0,
               parts: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]: ...


class ArraySource:
    """A Source over rows in memory: a :class:`~torchlinreg.data.Dataset` (NumPy arrays and
    DataFrames through ``Dataset``, the tutorial's data, a file read whole).

    ``weight_name`` names the weight column when the data set has sample weights (default
    ``"weight"``). The chunks are float64 copies of the data set's rows (views when it holds
    float64 rows on the CPU).
    """

    in_memory = True

    def __init__(self, dataset: Dataset, weight_name: str | None = None):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"ArraySource wraps a torchlinreg Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.feature_names = tuple(dataset.feature_names)
        self.target_names = tuple(dataset.target_names)
        weighted = dataset.sample_weight is not None
        self.weight_name = (weight_name or "weight") if weighted else None
        self.n_rows = dataset.n_samples

    @classmethod
    def from_arrays(cls, X, y, sample_weight=None, *, feature_names=None, target_names=None) -> ArraySource:
        """Rows from NumPy arrays, tensors, or pandas DataFrames and Series, as a :class:`Dataset` takes them;
        ``weight_name`` from a named weight Series."""
        X, y = (a.detach().cpu().double().numpy() if hasattr(a, "detach") else a for a in (X, y))  # 1-D y too
        data = Dataset(X, y, _names(feature_names), _names(target_names), sample_weight=sample_weight)
        return cls(data, weight_name=getattr(sample_weight, "name", None))

    def chunks(self, rows: int = CHUNK_ROWS, part: int = 0,
               parts: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Chunks of ``rows`` rows in order (the last may be shorter); chunk ``i`` belongs to part ``i % parts``."""
        check_positive("rows", rows)
        check_part(part, parts)
        return self._chunks(rows, part, parts)

    def _chunks(self, rows: int, part: int, parts: int):
        data = self.dataset
        X, y = (_float64(t) for t in (data.X, data.y))  # (n, d), (n, m)
        w = _float64(data.sample_weight) if data.sample_weight is not None else None  # (n,)
        for start in range(part * rows, self.n_rows, parts * rows):
            stop = start + rows
            yield X[start:stop], y[start:stop], (w[start:stop] if w is not None else None)

    def __repr__(self) -> str:
        return f"ArraySource({self.dataset!r})"


def _float64_matrix(a, what: str) -> tuple[np.ndarray, tuple | None]:
    """``a`` as a (n, k) float64 array, and the column names a DataFrame or a named Series carries."""
    names = tuple(map(str, a.columns)) if hasattr(a, "columns") else (
        (str(a.name),) if getattr(a, "name", None) is not None and getattr(a, "ndim", 0) == 1 else None)
    if hasattr(a, "detach"):  # a tensor
        a = a.detach().cpu().double().numpy()
    values = np.array(a, dtype=np.float64)  # a copy: the rows are the source's own
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise ValueError(f"{what} must be 1-D or 2-D, got shape {values.shape}")
    return values, names


def _names(given) -> tuple[str, ...]:
    """Names as given (one string or several), or none: the data set's own then."""
    if given is None:
        return ()
    return tuple(map(str, [given] if isinstance(given, str) else given))


def _float64(tensor) -> np.ndarray:
    return tensor.detach().cpu().double().numpy()


def as_source(data) -> Source:
    """``data`` as a Source: a :class:`~torchlinreg.data.Dataset` in an :class:`ArraySource`; a Source as it is."""
    if isinstance(data, Dataset):
        return ArraySource(data)
    if isinstance(data, Source):
        return data
    raise TypeError(f"expected a torchlinreg Dataset or a Source (torchlinreg.open_source), got {type(data).__name__}")
