"""Hypothesis tests on :class:`~torchlinreg.ols.OLSResults`: linear restrictions ``R b = q`` and nested models.

``t_test``, ``f_test`` and ``wald_test`` take the restrictions as statsmodels does: a matrix ``R``
(k_restrictions × k_params, ``q`` zero), a tuple ``(R, q)``, or a string over the parameter names in a
small linear syntax (``"x1 = 0"``, ``"x1 = x2"``, ``"x1 + 2*x2 = 3"``, several separated by commas; a side
without ``=`` is set equal to 0). The covariance is the results' own ``cov_params()``, robust when the
results are robust. ``compare_f_test`` and ``compare_lr_test`` compare a fit with a restricted (nested) one.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


# --- the restriction syntax ------------------------------------------------------------------------
def _tokens(text: str, names: list[str]) -> list[tuple[str, object]]:
    """("num", float), ("name", index) and ("op", one of + - * = ,) tokens; a ValueError on anything else."""
    index = {name: j for j, name in enumerate(names)}
    by_length = sorted(names, key=len, reverse=True)
    out, pos = [], 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        if ch in "+-*=,":
            out.append(("op", ch))
            pos += 1
            continue
        m = _IDENT.match(text, pos)
        if m and m[0] in index:
            out.append(("name", index[m[0]]))
            pos = m.end()
            continue
        known = next((n for n in by_length if n and text.startswith(n, pos)), None)
        if known is not None and (m is None or len(known) > len(m[0])):  # a name that is not an identifier ("log(x)", "a b")
            out.append(("name", index[known]))
            pos += len(known)
            continue
        m_num = _NUMBER.match(text, pos)
        if m_num:
            out.append(("num", float(m_num[0])))
            pos = m_num.end()
            continue
        word = m[0] if m else ch
        raise ValueError(f"restriction {text!r}: unknown name {word!r} at position {pos}; use the parameter "
                         f"names {', '.join(names)}")
    return out


def _side(tokens, text: str, k: int) -> tuple[np.ndarray, float]:
    """One side of an equation: a sum of terms (number, name, number*name, name*number) as (coefficients,
    constant)."""
    coef, const = np.zeros(k), 0.0
    if not tokens:
        raise ValueError(f"restriction {text!r}: an empty side; write e.g. 'x1 = 0' or 'x1 + 2*x2 = 3'")
    i, sign = 0, 1.0
    expect_term = True
    while i < len(tokens):
        kind, value = tokens[i]
        if expect_term and kind == "op" and value in "+-":
            sign = sign if value == "+" else -sign
            i += 1
            continue
        if not expect_term:
            if kind == "op" and value in "+-":
                sign, expect_term = (1.0 if value == "+" else -1.0), True
                i += 1
                continue
            raise ValueError(f"restriction {text!r}: expected + or - between terms; write e.g. 'x1 + 2*x2 = 3'")
        factors = [tokens[i]]
        while i + 2 < len(tokens) and tokens[i + 1] == ("op", "*"):
            factors.append(tokens[i + 2])
            i += 2
        if i + 1 < len(tokens) and tokens[i + 1] == ("op", "*"):
            raise ValueError(f"restriction {text!r}: '*' without a factor after it; write e.g. '2*x1 = 0'")
        number, name = sign, None
        for f_kind, f_value in factors:
            if f_kind == "num":
                number *= f_value
            elif f_kind == "name" and name is None:
                name = f_value
            else:
                raise ValueError(f"restriction {text!r}: only a number may multiply a name (the restrictions are "
                                 f"linear); write e.g. '2*x1 = 0'")
        if name is None:
            const += number
        else:
            coef[name] += number
        i += 1
        sign, expect_term = 1.0, False
    if expect_term:
        raise ValueError(f"restriction {text!r}: it ends with an operator; write e.g. 'x1 + x2 = 0'")
    return coef, const


def parse_restrictions(text: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` of the restrictions in ``text`` over the parameters ``names``."""
    tokens = _tokens(text, names)
    groups, current = [], []
    for token in tokens:
        if token == ("op", ","):
            groups.append(current)
            current = []
        else:
            current.append(token)
    groups.append(current)
    rows, rhs = [], []
    for group in groups:
        sides = [[]]
        for token in group:
            if token == ("op", "="):
                sides.append([])
            else:
                sides[-1].append(token)
        if len(sides) > 2:
            raise ValueError(f"restriction {text!r}: more than one '=' in one restriction; separate restrictions "
                             f"by commas, e.g. 'x1 = 0, x2 = 0'")
        left_coef, left_const = _side(sides[0], text, len(names))
        right_coef, right_const = _side(sides[1], text, len(names)) if len(sides) == 2 else (0.0, 0.0)
        row = left_coef - right_coef
        if not np.any(row):
            raise ValueError(f"restriction {text!r}: a restriction without any parameter; name one, e.g. 'x1 = 0'")
        rows.append(row)
        rhs.append(right_const - left_const)
    return np.array(rows), np.array(rhs)


def restriction_matrix(r_matrix, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` from a string, a matrix (``q`` = 0) or a tuple ``(R, q)``; R is 2-D (k_restrictions, k)."""
    if isinstance(r_matrix, str):
        return parse_restrictions(r_matrix, names)
    if isinstance(r_matrix, tuple):
        if len(r_matrix) != 2:
            raise ValueError(f"r_matrix as a tuple must be (R, q); got {len(r_matrix)} items")
        R, q = r_matrix
    else:
        R, q = r_matrix, None
    R = np.atleast_2d(np.asarray(R, dtype=float))
    if R.ndim != 2 or R.shape[1] != len(names):
        raise ValueError(f"r_matrix must have one column per parameter ({len(names)}: {', '.join(names)}); "
                         f"got shape {np.shape(R)}")
    q = np.zeros(R.shape[0]) if q is None else np.asarray(q, dtype=float).reshape(-1)
    if q.shape != (R.shape[0],):
        raise ValueError(f"q must have one value per restriction ({R.shape[0]}); got {q.size}")
    return R, q


# --- the results -----------------------------------------------------------------------------------
@dataclass
class TTestResults:
    """Each restriction's estimate ``R b`` (``effect``, as statsmodels), its standard error ``sd``, the t (or z)
    value ``(R b - q) / sd`` and p value; ``df_denom`` is None for the normal distribution (``use_t=False``)."""
    effect: np.ndarray
    sd: np.ndarray
    tvalue: np.ndarray
    pvalue: np.ndarray
    df_denom: float | None
    distribution: str

    @property
    def statistic(self) -> np.ndarray:
        return self.tvalue

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """(k_restrictions, 2): the ``1 - alpha`` interval of each ``R b``."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, e.g. 0.05; got {alpha!r}")
        crit = special.stdtrit(self.df_denom, 1 - alpha / 2) if self.df_denom is not None \
            else special.ndtri(1 - alpha / 2)
        return np.column_stack([self.effect - crit * self.sd, self.effect + crit * self.sd])


@dataclass
class FTestResults:
    """A joint test of the restrictions: ``statistic`` the Wald statistic over ``df_num`` (F, with ``df_denom``)
    or the Wald statistic itself (chi², ``df`` its degrees of freedom; statsmodels also names them ``df_denom``)."""
    statistic: float
    pvalue: float
    distribution: str
    df_num: float
    df_denom: float

    @property
    def fvalue(self) -> float:
        if self.distribution != "F":
            raise AttributeError("fvalue exists for the F distribution only; this test is chi²: use statistic")
        return self.statistic

    @property
    def df(self) -> float:
        return self.df_num


def _restricted(results, r_matrix):
    R, q = restriction_matrix(r_matrix, results.names)
    b, cov = results.params, results.cov_params()
    return R, q, R @ b - q, R @ cov @ R.T


def t_test(results, r_matrix) -> TTestResults:
    R, q, diff, cov = _restricted(results, r_matrix)
    sd = np.sqrt(np.diag(cov))
    tvalue = diff / sd
    if results.use_t:
        pvalue = 2 * stats.t.sf(np.abs(tvalue), results.df_resid)
        return TTestResults(diff + q, sd, tvalue, pvalue, results.df_resid, "t")
    return TTestResults(diff + q, sd, tvalue, 2 * stats.norm.sf(np.abs(tvalue)), None, "norm")


def wald_test(results, r_matrix, use_f: bool | None = None, scalar: bool = True) -> FTestResults:
    """The Wald test of ``R b = q``: F with (J, df_resid) degrees of freedom when ``use_f`` (None: the results'
    ``use_t``, as statsmodels), else chi² with J. ``scalar`` is accepted for statsmodels' signature; the
    statistic is always a number."""
    R, q, effect, cov = _restricted(results, r_matrix)
    J = R.shape[0]
    if np.linalg.matrix_rank(cov) < J:
        raise ValueError(f"the {J} restrictions are not independent (R cov Rᵀ is singular); drop the redundant ones")
    wald = float(effect @ np.linalg.solve(cov, effect))
    if results.use_t if use_f is None else use_f:
        F = wald / J
        return FTestResults(F, float(stats.f.sf(F, J, results.df_resid)), "F", float(J), float(results.df_resid))
    return FTestResults(wald, float(stats.chi2.sf(wald, J)), "chi2", float(J), float(J))


def f_test(results, r_matrix) -> FTestResults:
    return wald_test(results, r_matrix, use_f=True)


# --- nested models ---------------------------------------------------------------------------------
def _check_nested(full, restricted, what: str) -> float:
    if full.nobs != restricted.nobs:
        raise ValueError(f"{what}: the models have different numbers of observations ({full.nobs:g} and "
                         f"{restricted.nobs:g}); fit both on the same rows")
    df_diff = restricted.df_resid - full.df_resid
    if df_diff <= 0:
        raise ValueError(f"{what}: the restricted model has as many parameters as this one or more; call it on the "
                         f"larger model with the smaller one as restricted")
    if full.cov_type != "nonrobust" or restricted.cov_type != "nonrobust":
        warnings.warn(f"{what} assumes the nonrobust covariance; with a robust one it is likely invalid "
                      f"(statsmodels warns the same and proceeds)", stacklevel=3)
    return float(df_diff)


def compare_f_test(full, restricted) -> tuple[float, float, float]:
    """(F, p value, df_diff): does the restricted (nested) model fit worse than ``full``?"""
    df_diff = _check_nested(full, restricted, "compare_f_test")
    F = (restricted.ssr - full.ssr) / df_diff / (full.ssr / full.df_resid)
    return float(F), float(stats.f.sf(F, df_diff, full.df_resid)), df_diff


def compare_lr_test(full, restricted) -> tuple[float, float, float]:
    """(likelihood ratio ``-2 (llf_restricted - llf_full)``, chi² p value, df_diff)."""
    df_diff = _check_nested(full, restricted, "compare_lr_test")
    lr = -2.0 * (restricted.llf - full.llf)
    return float(lr), float(stats.chi2.sf(lr, df_diff)), df_diff
