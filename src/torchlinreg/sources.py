"""TEMPORARY minimal sources (replaced by the sources branch at merge)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .data import Dataset


class ArraySource:
    """Rows held in memory (a :class:`torchlinreg.data.Dataset`), given in chunks like any source."""

    in_memory = True

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.feature_names, self.target_names = tuple(dataset.feature_names), tuple(dataset.target_names)
        self.weight_name = None if dataset.sample_weight is None else "sample_weight"
        self.n_rows = dataset.n_samples

    def __repr__(self) -> str:
        return f"ArraySource({self.dataset!r})"

    def chunks(self, rows: int, part: int = 0, parts: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        data = self.dataset
        for i, start in enumerate(range(0, self.n_rows, rows)):
            if i % parts == part:
                stop = start + rows
                w = None if data.sample_weight is None else data.sample_weight[start:stop].double().numpy()
                yield data.X[start:stop].double().numpy(), data.y[start:stop].double().numpy(), w


def as_source(data):
    """``data`` as a source: a Dataset is wrapped in an :class:`ArraySource`; a source is returned as it is."""
    return ArraySource(data) if isinstance(data, Dataset) else data


def part_chunks(source, rows: int, dist=None):
    """The chunks of ``source`` that are this process's part under ``dist`` (all of them without one)."""
    if dist is None or not dist.is_distributed:
        return source.chunks(rows)
    if hasattr(source, "_chunks"):  # a streamed source: its part as accumulate_shard reads it
        return source._chunks(rows, dist.rank, dist.world_size)  # noqa: SLF001
    return source.chunks(rows, dist.rank, dist.world_size)
