"""The sizes a class reads from the arrays it holds (``n_samples``, ``n_features``, ``n_targets``), written once."""

from __future__ import annotations


def dimension(attribute: str, axis: int) -> property:
    """A read-only property: the size of axis ``axis`` of ``self.<attribute>`` (a tensor or an ndarray)."""
    def size(self) -> int:
        return getattr(self, attribute).shape[axis]

    return property(size, doc=f"``{attribute}.shape[{axis}]``")
