"""Double-double arithmetic, vectorised in NumPy, for the refinement passes (about 32 significant digits).

A double-double value is a pair (hi, lo) of float64 arrays standing for hi + lo.
Sums and products are error-free transformations (Knuth, Dekker), the same on every platform.
"""

from __future__ import annotations

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1: splits a float64 into halves whose products are exact (Dekker)


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _split_wide(a):
    """``_split`` for values up to float64's largest (coefficients of tiny columns): those above 2^995,
    where ``_SPLITTER * a`` overflows, are split 2^54 lower and scaled back (exact)."""
    big = np.abs(a) > 2.0 ** 995
    if not big.any():
        return _split(a)
    unit = np.where(big, 2.0 ** 54, 1.0)
    hi, lo = _split(a / unit)
    return hi * unit, lo * unit


def _two_sum(a, b):
    """``s + e == a + b`` exactly (Knuth)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


def _two_prod(a, a_split, b, b_split):
    """``p + e == a * b`` exactly (Dekker), given ``_split`` of both."""
    (ah, al), (bh, bl) = a_split, b_split
    p = a * b
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _dd_add(xh, xl, yh, yl):
    s, e = _two_sum(xh, yh)
    e = e + (xl + yl)
    h = s + e
    return h, e - (h - s)


def _dd_sum(h, l):
    """Double-double sum over axis 0, pairwise."""
    while len(h) > 1:
        if len(h) % 2:
            h, l = h.copy(), l.copy()
            h[0], l[0] = _dd_add(h[0], l[0], h[-1], l[-1])
            h, l = h[:-1], l[:-1]
        h, l = _dd_add(h[0::2], l[0::2], h[1::2], l[1::2])
    return h[0], l[0]
