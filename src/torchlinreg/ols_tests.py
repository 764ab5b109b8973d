"""Hypothesis tests on :class:`~torchlinreg.ols.OLSResults`: linear restrictions ``R b = q`` and nested models.

``t_test``, ``f_test`` and ``wald_test`` take the restrictions as statsmodels does: a matrix ``R``
(k_restrictions × k_params, ``q`` zero), a tuple ``(R, q)``, or a string over the parameter names in a
small linear syntax (``"x1 = 0"``, ``"x1 = x2"``, ``"x1 + 2*x2 = 3"``, ``"2*(x1 - x2)/3 = 1"``: sums,
products and quotients by numbers, brackets; several separated by commas; a side without ``=`` is set equal
to 0). The covariance is the results' own ``cov_params()``, robust when the
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
_OPS = "+-*/=,()"


def _tokens(text: str, names: list[str]) -> list[tuple[str, object, int]]:
    """("num", float, pos), ("name", index, pos) and ("op", one of + - * / = , ( ), pos) tokens; a ValueError
    on anything else. A parameter name is matched whole, the longest first, so names that are not identifiers
    ("log(x)", "C(firm)[T.b]", "x1:x2") work."""
    index = {name: j for j, name in enumerate(names)}
    by_length = sorted((n for n in names if n), key=len, reverse=True)
    out, pos = [], 0
    while pos < len(text):
        ch = text[pos]
        if ch.isspace():
            pos += 1
            continue
        m = _IDENT.match(text, pos)
        known = next((n for n in by_length if text.startswith(n, pos)), None)
        if known is not None and (m is None or len(known) >= len(m[0])):
            out.append(("name", index[known], pos))
            pos += len(known)
            continue
        if ch in _OPS:
            out.append(("op", ch, pos))
            pos += 1
            continue
        m_num = None if m else _NUMBER.match(text, pos)
        if m_num:
            out.append(("num", float(m_num[0]), pos))
            pos = m_num.end()
            continue
        word = m[0] if m else ch
        raise ValueError(f"restriction {text!r}: unknown name {word!r} at position {pos}; use the parameter "
                         f"names {', '.join(names)}")
    return out


class _Linear:
    """A recursive-descent reader of one side of a restriction: sums, differences, products and quotients by
    numbers, and brackets, over the parameters; each value is a linear form ``(coefficients, constant)``."""

    def __init__(self, tokens, text: str, k: int):
        self.tokens, self.text, self.k, self.i = tokens, text, k, 0

    def fail(self, why: str, example: str):
        raise ValueError(f"restriction {self.text!r}: {why}; write e.g. {example!r}")

    def peek(self):
        return self.tokens[self.i][:2] if self.i < len(self.tokens) else None

    def side(self) -> tuple[np.ndarray, float]:
        if not self.tokens:
            self.fail("an empty side", "x1 = 0")
        value = self.sum()
        if self.peek() is not None:
            what = "')' without '('" if self.peek() == ("op", ")") else "expected an operator between terms"
            self.fail(what, "x1 + 2*x2 = 3")
        return value

    def sum(self):
        coef, const = self.product()
        while self.peek() in (("op", "+"), ("op", "-")):
            sign = 1.0 if self.tokens[self.i][1] == "+" else -1.0
            self.i += 1
            c, q = self.product()
            coef, const = coef + sign * c, const + sign * q
        return coef, const

    def product(self):
        coef, const = self.factor()
        while self.peek() in (("op", "*"), ("op", "/")):
            op = self.tokens[self.i][1]
            self.i += 1
            c, q = self.factor()
            if op == "/":
                if np.any(c) or q == 0:
                    self.fail("only a nonzero number may divide (the restrictions are linear)", "x1/2 = x2")
                coef, const = coef / q, const / q
            elif np.any(coef) and np.any(c):
                self.fail("only a number may multiply a name (the restrictions are linear)", "2*x1 = 0")
            else:  # one of the two is a number
                number, (lin, lc) = (const, (c, q)) if not np.any(coef) else (q, (coef, const))
                coef, const = number * lin, number * lc
        return coef, const

    def factor(self):
        token = self.peek()
        if token is None:
            self.fail("it ends with an operator" if self.i else "an empty side", "x1 + x2 = 0")
        kind, value = token
        self.i += 1
        if token in (("op", "+"), ("op", "-")):
            c, q = self.factor()
            return (c, q) if value == "+" else (-c, -q)
        if token == ("op", "("):
            inner = self.sum()
            if self.peek() != ("op", ")"):
                self.fail("'(' without ')'", "2*(x1 + x2) = 1")
            self.i += 1
            return inner
        if kind == "num":
            return np.zeros(self.k), value
        if kind == "name":
            coef = np.zeros(self.k)
            coef[value] = 1.0
            return coef, 0.0
        self.fail(f"'{value}' where a number, a name or '(' belongs", "x1 + 2*x2 = 3")


def parse_restrictions(text: str, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(R, q)`` of the restrictions in ``text`` over the parameters ``names``."""
    tokens = _tokens(text, names)
    groups, current = [], []
    for token in tokens:
        if token[:2] == ("op", ","):
            groups.append(current)
            current = []
        else:
            current.append(token)
    groups.append(current)
    rows, rhs = [], []
    for group in groups:
        sides = [[]]
        for token in group:
            if token[:2] == ("op", "="):
                sides.append([])
            else:
                sides[-1].append(token)
        if len(sides) > 2:
            raise ValueError(f"restriction {text!r}: more than one '=' in one restriction; separate restrictions "
                             f"by commas, e.g. 'x1 = 0, x2 = 0'")
        left_coef, left_const = _Linear(sides[0], text, len(names)).side()
        right_coef, right_const = _Linear(sides[1], text, len(names)).side() if len(sides) == 2 else (0.0, 0.0)
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
    statistic: float | np.ndarray
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
    ``use_t``, as statsmodels), else chi² with J. ``scalar=False`` gives the statistic as a 1×1 array, as
    statsmodels' older default did."""
    R, q, effect, cov = _restricted(results, r_matrix)
    J = R.shape[0]
    if np.linalg.matrix_rank(cov) < J:
        raise ValueError(f"the {J} restrictions are not independent (R cov Rᵀ is singular); drop the redundant ones")
    wald = float(effect @ np.linalg.solve(cov, effect))
    shaped = float if scalar else (lambda value: np.array([[value]]))
    if results.use_t if use_f is None else use_f:
        F = wald / J
        return FTestResults(shaped(F), float(stats.f.sf(F, J, results.df_resid)), "F", float(J),
                            float(results.df_resid))
    return FTestResults(shaped(wald), float(stats.chi2.sf(wald, J)), "chi2", float(J), float(J))


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
