"""statsmodels' summary diagnostics of the residuals, summed in one pass over rows that come in chunks.

The bottom block of statsmodels' ``OLSResults.summary()``: Omnibus (D'Agostino and Pearson's K²,
``omni_normtest``) and its p-value, skewness and kurtosis (the moment estimates), Durbin-Watson
(``durbin_watson``: the rows in file order), Jarque-Bera (``jarque_bera``) and its p-value; the
condition number is the design's, from the R factor. Of the weighted residuals ``√w e`` for WLS, as
statsmodels (rows of weight 0 are left out, as everywhere in torchlinreg).

Each chunk's residuals give its count, mean and centred sums of the 2nd to 4th powers, merged with
those before by the pairwise update formulas (Chan et al., Pébay 2008), so no raw power sum is ever
differenced; the Durbin-Watson sum carries the last residual of each chunk to the next one's first.
Each chunk's figures are kept too, so the processes of a torchrun job, each reading every W-th chunk,
merge theirs in file order (:meth:`ResidualMoments.gathered`).

The tests' statistics are the published ones: D'Agostino (1970) for the skewness, Anscombe and Glynn
(1983) for the kurtosis, both normal approximations whose squares add up to K² (chi-squared, 2 df);
fewer than 8 residuals give NaN (statsmodels' ``omni_normtest``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

LABELS = ("Omnibus", "Prob(Omnibus)", "Skew", "Kurtosis", "Durbin-Watson", "Jarque-Bera (JB)", "Prob(JB)",
          "Cond. No.")


class ResidualMoments:
    """Count, mean, centred power sums and the Durbin-Watson sums of ``m`` targets' residuals, in row order."""

    def __init__(self, n_targets: int):
        m = n_targets
        self.n = 0
        self.mean, self.m2, self.m3, self.m4 = (np.zeros(m) for _ in range(4))
        self.sum_sq = np.zeros(m)  # Σ e²: Durbin-Watson's denominator
        self.diff_sq = np.zeros(m)  # Σ (e_t - e_{t-1})²
        self.last = None  # (m,): the residuals of the last row so far
        self.chunks = []  # each update's figures (see _record), for gathering the chunks of several processes

    def update(self, e: np.ndarray) -> ResidualMoments:
        """Add the residuals ``e`` (k, m) of the next ``k`` rows (in file order): one chunk."""
        e = np.asarray(e, dtype=np.float64)
        k = len(e)
        if k == 0:
            self.chunks.append(np.zeros(1 + 8 * len(self.mean)))
            return self
        mean = e.mean(axis=0)
        c = e - mean
        c2 = c * c
        record = np.concatenate([[k], mean, c2.sum(axis=0), (c2 * c).sum(axis=0), (c2 * c2).sum(axis=0),
                                 np.sum(e * e, axis=0), np.sum(np.diff(e, axis=0) ** 2, axis=0), e[0], e[-1]])
        self.chunks.append(record)
        self._add(record)
        return self

    def _add(self, record: np.ndarray) -> None:
        """Merge one chunk's figures (``[k, mean, m2, m3, m4, Σe², Σ diff², first, last]``, each (m,)) after the rows so far."""
        k = int(record[0])
        if k == 0:
            return
        mean, m2, m3, m4, sum_sq, diff_sq, first, last = record[1:].reshape(8, -1)
        self._merge(k, mean, m2, m3, m4)
        self.sum_sq += sum_sq
        self.diff_sq += diff_sq
        if self.last is not None:
            self.diff_sq += (first - self.last) ** 2
        self.last = last.copy()

    @classmethod
    def gathered(cls, mine: ResidualMoments, gather) -> ResidualMoments:
        """The figures of every process's chunks, merged in file order: process ``r`` of ``W`` read chunks
        ``r, r + W, r + 2W, ...`` (``source.chunks(chunk_rows, r, W)``). ``gather(vector)`` gives every process's
        vector of the same length, in process order (``distributed.gather_vectors``); the same on every process."""
        width = 1 + 8 * len(mine.mean)
        counts = [int(v[0]) for v in gather(np.array([len(mine.chunks)], dtype=np.float64))]
        padded = np.zeros((max(counts), width))
        if mine.chunks:
            padded[:len(mine.chunks)] = np.stack(mine.chunks)
        parts = [v.reshape(max(counts), width) for v in gather(padded.ravel())]
        out = cls(len(mine.mean))
        for j in range(max(counts)):
            for rank, part in enumerate(parts):
                if j < counts[rank]:
                    out.chunks.append(part[j])
                    out._add(part[j])
        return out

    def _merge(self, nb: int, mean_b, m2b, m3b, m4b) -> None:
        na = self.n
        n = na + nb
        delta = mean_b - self.mean
        f = na * nb / n
        m2a, m3a = self.m2, self.m3
        self.m4 = (self.m4 + m4b + delta ** 4 * f * (na * na - na * nb + nb * nb) / (n * n)
                   + 6 * delta ** 2 * (na * na * m2b + nb * nb * m2a) / (n * n) + 4 * delta * (na * m3b - nb * m3a) / n)
        self.m3 = m3a + m3b + delta ** 3 * f * (na - nb) / n + 3 * delta * (na * m2b - nb * m2a) / n
        self.m2 = m2a + m2b + delta ** 2 * f
        self.mean = self.mean + delta * nb / n
        self.n = n

    def diagnostics(self, condition_number: float) -> list[dict[str, float]]:
        """statsmodels' labels and figures, one dict per target (``LABELS``)."""
        n = self.n
        out = []
        for t in range(len(self.mean)):
            with np.errstate(divide="ignore", invalid="ignore"):
                var = self.m2[t] / n if n else math.nan
                skew = float(self.m3[t] / n / var ** 1.5) if n else math.nan
                kurtosis = float(self.m4[t] / n / var ** 2) if n else math.nan
                dw = float(self.diff_sq[t] / self.sum_sq[t]) if n else math.nan
            jb = n / 6 * (skew ** 2 + (kurtosis - 3) ** 2 / 4)
            k2 = omnibus(skew, kurtosis, n)
            out.append({"Omnibus": k2, "Prob(Omnibus)": float(special.chdtrc(2, k2)), "Skew": skew,
                        "Kurtosis": kurtosis, "Durbin-Watson": dw, "Jarque-Bera (JB)": float(jb),
                        "Prob(JB)": float(special.chdtrc(2, jb)), "Cond. No.": float(condition_number)})
        return out


def omnibus(skew: float, kurtosis: float, n: int) -> float:
    """D'Agostino and Pearson's K² from the moment skewness and (Pearson) kurtosis of ``n`` values."""
    if n < 8 or not (math.isfinite(skew) and math.isfinite(kurtosis)):
        return math.nan
    return _skew_z(skew, n) ** 2 + _kurtosis_z(kurtosis, n) ** 2


def _skew_z(g1: float, n: int) -> float:
    """D'Agostino (1970): the skewness turned into an approximately standard normal value."""
    y = g1 * math.sqrt((n + 1) * (n + 3) / (6.0 * (n - 2)))
    beta2 = 3.0 * (n * n + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    w2 = -1 + math.sqrt(2 * (beta2 - 1))
    delta = 1 / math.sqrt(0.5 * math.log(w2))
    alpha = math.sqrt(2 / (w2 - 1))
    return delta * math.asinh(y / alpha)


def _kurtosis_z(b2: float, n: int) -> float:
    """Anscombe and Glynn (1983): the kurtosis turned into an approximately standard normal value."""
    mean = 3.0 * (n - 1) / (n + 1)
    var = 24.0 * n * (n - 2) * (n - 3) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    x = (b2 - mean) / math.sqrt(var)
    root_beta1 = (6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9))
                  * math.sqrt(6.0 * (n + 3) * (n + 5) / (n * (n - 2) * (n - 3))))
    a = 6 + 8 / root_beta1 * (2 / root_beta1 + math.sqrt(1 + 4 / root_beta1 ** 2))
    term1 = 1 - 2 / (9 * a)
    denom = 1 + x * math.sqrt(2 / (a - 4))
    if denom == 0:
        return math.nan
    term2 = math.copysign(abs((1 - 2 / a) / denom) ** (1 / 3), denom)
    return (term1 - term2) / math.sqrt(2 / (9 * a))
