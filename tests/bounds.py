"""Floating-point error bounds the tests take their tolerances from.

A tolerance in these tests is an error bound of the computation compared, never a figure one CPU
happened to produce: MKL, OpenBLAS and PyTorch pick other kernels (block sizes, FMA, summation
order) on other CPUs, and each is free to round differently within the bound. The notation
follows Higham, *Accuracy and Stability of Numerical Algorithms* (2nd ed.): ``u`` is the unit
roundoff and ``gamma(k) = k u / (1 - k u)`` bounds the relative error of k roundings in a row.
"""

from __future__ import annotations

import numpy as np

U64 = 2.0 ** -53  # float64 unit roundoff (half of np.finfo(np.float64).eps)
U32 = 2.0 ** -24  # float32 unit roundoff
EPS64 = 2.0 ** -52  # float64 machine epsilon (the gap above 1.0)


def gamma(k: float, u: float = U64) -> float:
    """Higham's γ_k = k·u / (1 − k·u): the relative error bound of k successive roundings
    (a sum or dot product of k terms has |error| ≤ γ_{k−1}·Σ|terms|)."""
    assert k * u < 1, "the bound holds only while k·u < 1"
    return k * u / (1 - k * u)


def cond(X) -> float:
    """The 2-norm condition number of X with its column means removed, the intercept's share taken
    out (what the solver's shifted QR sees); inf when the centred columns are rank-deficient."""
    X = np.asarray(X, dtype=np.float64)
    X = X.reshape(len(X), -1)
    s = np.linalg.svd(X - X.mean(axis=0), compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")
