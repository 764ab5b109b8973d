"""``OLSResults.summary()``: statsmodels' layout in plain text (top block, coefficients, diagnostics, notes)."""

from __future__ import annotations

import math

WIDTH = 78


def _num(v: float, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.{digits}e}"
    return f"{v:.{digits}f}"


def _two_columns(pairs: list[tuple[tuple[str, str], tuple[str, str]]]) -> list[str]:
    half = WIDTH // 2
    lines = []
    for (l1, v1), (l2, v2) in pairs:
        left = f"{l1:<{half - len(v1) - 1}}{v1} "[:half]
        right = f"{l2:<{half - len(v2)}}{v2}"
        lines.append(left.ljust(half) + right)
    return lines


def _top(res) -> list[str]:
    d = res.data
    return _two_columns([
        (("Dep. Variable:", d.target_name), ("R-squared:", _num(res.rsquared))),
        (("Model:", res.model_name), ("Adj. R-squared:", _num(res.rsquared_adj))),
        (("Method:", "Least Squares"), ("F-statistic:", _num(res.fvalue, 4 if abs(res.fvalue) < 1e5 else 3))),
        (("No. Observations:", f"{res.nobs:.0f}"), ("Prob (F-statistic):", f"{res.f_pvalue:.3g}")),
        (("Df Residuals:", f"{res.df_resid:.0f}"), ("Log-Likelihood:", _num(res.llf, 2))),
        (("Df Model:", f"{res.df_model:.0f}"), ("AIC:", f"{res.aic:.4g}")),
        (("Covariance Type:", res.cov_type), ("BIC:", f"{res.bic:.4g}")),
    ])


def _coefficients(res, alpha: float) -> list[str]:
    stat = "t" if res.use_t else "z"
    lo, hi = f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"
    width = max(10, *(len(n) for n in res.names)) + 1
    head = f"{'':<{width}}{'coef':>11}{'std err':>11}{stat:>11}{'P>|' + stat + '|':>9}{lo:>11}{hi:>11}"
    lines = [head, "-" * max(WIDTH, len(head))]
    ci = res.conf_int(alpha)
    for i, name in enumerate(res.names):
        lines.append(f"{name:<{width}}{_num(res.params[i]):>11}{_num(res.bse[i]):>11}{res.tvalues[i]:>11.3f}"
                     f"{res.pvalues[i]:>9.3f}{_num(ci[i, 0]):>11}{_num(ci[i, 1]):>11}")
    return lines


def _diagnostics(res) -> list[str]:
    g = res.diagnostics()
    return _two_columns([
        (("Omnibus:", _num(g["Omnibus"])), ("Durbin-Watson:", _num(g["Durbin-Watson"]))),
        (("Prob(Omnibus):", _num(g["Prob(Omnibus)"])), ("Jarque-Bera (JB):", _num(g["Jarque-Bera (JB)"]))),
        (("Skew:", _num(g["Skew"])), ("Prob(JB):", f"{g['Prob(JB)']:.3g}")),
        (("Kurtosis:", _num(g["Kurtosis"])), ("Cond. No.", f"{g['Cond. No.']:.3g}")),
    ])


def _notes(res) -> list[str]:
    """The notes under the tables, in torchlinreg's words (the facts statsmodels' notes give)."""
    notes = ["The standard errors take the errors as independent with one variance (nonrobust covariance)."
             if res.cov_type == "nonrobust" else f"The standard errors allow errors of unequal variance ({res.cov_type})."]
    eig = res.eigenvals
    if len(eig) and eig[-1] < 1e-10:
        notes.append(f"The design's smallest eigenvalue is {eig[-1]:.3g}: its columns are (nearly) linearly "
                     "dependent, and some coefficients are barely determined by the data.")
    elif res.condition_number > 1000:
        notes.append(f"The design's condition number is {res.condition_number:.3g}: its columns are nearly "
                     "collinear or of very different scales, which inflates the standard errors (the figures "
                     "themselves are computed from an exact QR factor and keep their digits).")
    return ["Notes:"] + [f"[{i}] {text}" for i, text in enumerate(notes, 1)]


def summary_text(res, alpha: float = 0.05) -> str:
    title = f"{res.model_name} Regression Results"
    rule = "=" * WIDTH
    lines = [title.center(WIDTH), rule, *_top(res), rule, *_coefficients(res, alpha), rule, *_diagnostics(res),
             rule, "", *_notes(res)]
    return "\n".join(lines)
