"""The statistics of a least-squares fit as tables: text in statsmodels' layout, and HTML for notebooks.

:class:`torchlinreg.statistics.RegressionStatistics` computes; this module only lays its figures out:
the fit's figures in two columns (observations, degrees of freedom, covariance, log-likelihood,
condition number beside R², adjusted R², F, AIC, BIC), then one row per term (coefficient,
standard error, t or z, its p-value, the confidence interval), then the notes. Text and HTML hold
the same figures, formatted alike. :class:`StatisticsList` holds one table per target.
"""

from __future__ import annotations

import html
import math
from typing import Iterable

from .shown import shown_name

NOT_IDENTIFIED = "not identified"
# What the text summary and the HTML report call each figure of a fit (keys of ``to_dict()``), written once.
LABELS = {
    "n_obs": "Observations", "df_resid": "Df residuals", "df_model": "Df model", "cov_type": "Covariance",
    "log_likelihood": "Log-likelihood", "condition_number": "Condition no.",
    "r2": "R²", "adj_r2": "Adj. R²", "f_statistic": "F statistic", "f_pvalue": "Prob (F)", "aic": "AIC", "bic": "BIC",
}
FIGURE_COLUMNS = (("n_obs", "df_resid", "df_model", "cov_type", "log_likelihood", "condition_number"),
                  ("r2", "adj_r2", "f_statistic", "f_pvalue", "aic", "bic"))  # the summary's two columns of figures
TERM_COLUMNS = ("term", "coef", "std err")  # the heads of the coefficient table's first columns
_DIGITS = {"condition_number": 4, "f_pvalue": 3}  # significant digits shown; 6 for the other figures


class StatisticsList(list):
    """The statistics of several targets, one :class:`~torchlinreg.statistics.RegressionStatistics` each
    (a list: index it, iterate it), shown together by :meth:`summary` and in a notebook."""

    def summary(self) -> str:
        """Every target's table (:meth:`RegressionStatistics.summary`), one after another."""
        return "\n\n".join(s.summary() for s in self)

    def _repr_html_(self) -> str:
        return "\n".join(s._repr_html_() for s in self)


def title(stats) -> str:
    """``OLS regression of 'y'`` (``WLS`` with sample weights)."""
    return f"{'WLS' if stats.weighted else 'OLS'} regression of {stats.target_name!r}"


def fit_figures(stats) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """The fit's figures as pairs of (name, value) for the left and the right column."""
    def shown(key: str) -> tuple[str, str]:
        value = getattr(stats, key)
        return LABELS[key], (f"{value}" if key in ("n_obs", "cov_type") else num(value, _DIGITS.get(key, 6)))

    left, right = FIGURE_COLUMNS
    return [(shown(a), shown(b)) for a, b in zip(left, right)]


DIAGNOSTIC_PAIRS = (("Omnibus", "Durbin-Watson"), ("Prob(Omnibus)", "Jarque-Bera (JB)"), ("Skew", "Prob(JB)"),
                    ("Kurtosis", "Cond. No."))  # statsmodels' bottom block, its two columns


def diagnostic_figures(stats) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """statsmodels' diagnostics block as pairs of (name, value); empty when they were not computed."""
    figures = getattr(stats, "diagnostics", None)
    if not figures:
        return []
    return [((a, num(figures[a], 4 if "Prob" in a else 6)), (b, num(figures[b], 4 if "Prob" in b else 6)))
            for a, b in DIAGNOSTIC_PAIRS]


def term_header(stats) -> list[str]:
    """``coef, std err, t, P>|t|, [0.025, 0.975]`` (z for the normal distribution)."""
    stat = "t" if stats.use_t else "z"
    alpha = 1 - stats.conf_level
    return [*TERM_COLUMNS[1:], stat, f"P>|{stat}|", f"[{alpha / 2:g}", f"{1 - alpha / 2:g}]"]


def term_rows(stats) -> list[tuple[str, list[str] | None]]:
    """One (term, cells) per term; cells None for a term the data do not identify."""
    missing = set(stats.unidentified)
    rows = []
    for i, name in enumerate(stats.term_names):
        if name in missing:
            rows.append((name, None))
            continue
        lo, hi = stats.conf_int[i]
        rows.append((name, [num(stats.params[i]), num(stats.std_err[i]), num(stats.t_values[i], 4),
                            num(stats.p_values[i], 3), num(lo), num(hi)]))
    return rows


def notes(stats) -> list[str]:
    """What a reader must know beside the figures: terms not identified, a normal-distribution test."""
    out = []
    if stats.unidentified:
        out.append(f"Not identified: {join(stats.unidentified)}. The design is rank-deficient: these terms are "
                   f"collinear (with each other or the intercept), so the data cannot tell their effects apart; "
                   f"drop redundant columns or add rows that separate them.")
    if not stats.use_t:
        out.append(f"{stats.cov_type} covariance: z and P>|z| from the normal distribution.")
    if not getattr(stats, "fit_intercept", True):
        out.append("No intercept fitted; " + (
            "the columns hold a constant, so R² is centred and F tests every term but the constant."
            if getattr(stats, "k_constant", 0) else "R² is uncentred (1 - SSR / Σ w y²) and F tests every term."))
    return out


def summary_text(stats) -> str:
    """The table as text: the title, the fit's figures in two columns, one row per term, the notes."""
    widths = [14, 12, 10, 11, 14, 14]  # of the term columns
    name_width = max(len("term"), *(len(shown_name(name)) for name in stats.term_names))
    header = f"{TERM_COLUMNS[0]:<{name_width}}" + "".join(f"{h:>{w}}" for h, w in zip(term_header(stats), widths))
    width = len(header)
    lines = [title(stats), "=" * width]
    half = width // 2
    for (ln, lv), (rn, rv) in fit_figures(stats):
        lines.append(f"{ln + ':':<16}{lv:>{half - 18}}  " + f"  {rn + ':':<16}{rv:>{width - half - 20}}")
    lines += ["=" * width, header, "-" * width]
    for name, cells in term_rows(stats):
        name = shown_name(name)  # an escape sequence in a column name is shown, not sent
        if cells is None:
            lines.append(f"{name:<{name_width}}{NOT_IDENTIFIED:>26}")
        else:
            lines.append(f"{name:<{name_width}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    lines.append("=" * width)
    diagnostics = diagnostic_figures(stats)
    for (ln, lv), (rn, rv) in diagnostics:
        lines.append(f"{ln + ':':<16}{lv:>{half - 18}}  " + f"  {rn + ':':<16}{rv:>{width - half - 20}}")
    if diagnostics:
        lines.append("=" * width)
    lines += notes(stats)
    return "\n".join(lines)


def summary_html(stats) -> str:
    """The same table as HTML: a table of the fit's figures captioned with the title, a table of the
    terms, the notes; every text escaped, no script, no style sheet."""
    e = _esc
    figures = "\n".join(f"<tr><th>{e(ln)}:</th><td>{e(lv)}</td><th>{e(rn)}:</th><td>{e(rv)}</td></tr>"
                        for (ln, lv), (rn, rv) in fit_figures(stats))
    head = "<tr><th></th>" + "".join(f"<th>{e(h)}</th>" for h in term_header(stats)) + "</tr>"
    body = []
    for name, cells in term_rows(stats):
        if cells is None:
            body.append(f'<tr><th>{e(name)}</th><td colspan="6">{NOT_IDENTIFIED}</td></tr>')
        else:
            body.append(f"<tr><th>{e(name)}</th>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>")
    notes_html = "".join(f"\n<p>{e(note)}</p>" for note in notes(stats))
    rows = "\n".join(f"<tr><th>{e(ln)}:</th><td>{e(lv)}</td><th>{e(rn)}:</th><td>{e(rv)}</td></tr>"
                      for (ln, lv), (rn, rv) in diagnostic_figures(stats))
    diagnostics = f"\n<table>\n{rows}\n</table>" if rows else ""
    return (f'<div class="torchlinreg-statistics">\n<table>\n<caption>{e(title(stats))}</caption>\n{figures}\n'
            f"</table>\n<table>\n{head}\n" + "\n".join(body) + f"\n</table>{diagnostics}{notes_html}\n</div>")


def num(v: float, digits: int = 6) -> str:
    v = float(v)
    return f"{v:.{digits}g}" if math.isfinite(v) else str(v)


def join(names: Iterable[str]) -> str:
    quoted = [repr(name) for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _esc(text) -> str:
    return html.escape(str(text), quote=True)
