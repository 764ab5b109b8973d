"""One self-contained HTML page for a fit: data, settings, diagnostics, plots, epochs,
the trained model beside the exact optimum, metrics and (optionally) statistics.

The page works offline and copied anywhere: the plots are embedded as base64 data URIs,
the CSS is inline, there is no script, and a Content-Security-Policy forbids loading
anything else. Every string that comes from the data (column names, messages) is escaped.
"""

from __future__ import annotations

import base64
import html
import math
import os
from pathlib import Path

import numpy as np

from . import __version__
from .outputs import atomic_write_text

REPORT_HTML = "report.html"
# Nothing may be fetched or run: images only from data: URIs, styles only from the page itself.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MAX_EPOCH_ROWS = 200  # longer histories show their first and last EPOCH_ENDS epochs
EPOCH_ENDS = 100
MAX_PARAM_COLUMNS = 6  # parameter columns in the epoch table; history.csv has them all
MAX_ROWS = 100  # rows of the per-column and per-coefficient tables
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"GIF87a": "image/gif", b"GIF89a": "image/gif"}
CAPTIONS = {  # plot name -> caption; other names are captioned from the name itself
    "data": "The data",
    "initial": "The initial model, before training",
    "loss": "The loss per epoch, with the least-squares optimum and the excess over it",
    "current": "The trained model",
    "residuals": "Residuals (actual − predicted) against the predicted values",
    "predicted": "Predicted against actual values",
    "qq": "Normal Q-Q plot of the standardized residuals",
    "residuals_features": "Residuals against each feature",
    "animation": "The fit, epoch by epoch (animated)",
}
COEF_KEYS = ("term_names", "params", "std_err", "t_values", "p_values", "conf_int")
STATUS_TEXT = {"completed": "Training completed", "converged": "Training converged", "diverged": "Training diverged"}

STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-alt: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 1.7rem; margin: 0 0 8px; }
h2 { font-size: 1.3rem; margin: 36px 0 12px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 20px 0 8px; }
p { margin: 8px 0; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
            font-size: 0.9em; }
pre { background: var(--bg-alt); border: 1px solid var(--line); border-radius: 6px; padding: 12px;
      overflow-x: auto; }
nav { margin: 12px 0 0; color: var(--muted); }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.status { border-radius: 6px; padding: 10px 14px; margin: 12px 0; border: 1px solid; }
.status-completed { background: #ddf4ff; border-color: #54aeff; }
.status-converged { background: #dafbe1; border-color: #4ac26b; }
.status-diverged { background: #ffebe9; border-color: #ff8182; }
.muted { color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 10px; vertical-align: baseline; }
th { background: var(--bg-alt); text-align: left; font-weight: 600; }
td.num, th.num { text-align: right; }
td.num { white-space: nowrap; }
tbody tr:nth-child(even) { background: #fbfcfd; }
tr.note td { text-align: center; color: var(--muted); font-style: italic; background: var(--bg-alt); }
.row { display: flex; flex-wrap: wrap; gap: 0 28px; align-items: flex-start; }
.scroll { max-height: 34em; overflow: auto; border: 1px solid var(--line); display: inline-block; max-width: 100%; }
.scroll table { margin: 0; }
.scroll thead th { position: sticky; top: 0; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 20px; }
figure { margin: 0; padding: 12px; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figure img { display: block; max-width: 100%; height: auto; margin: 0 auto; }
figcaption { margin-top: 8px; color: var(--muted); font-size: 0.92em; text-align: center; }
ul.messages { padding-left: 1.2em; }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; }
@media print { .scroll { max-height: none; overflow: visible; border: 0; } }
"""


def write_report(out_dir: str | os.PathLike, result, *, statistics=None, files=None, flags=None) -> Path:
    """Write ``report.html`` for a fit into ``out_dir`` (atomically) and return its path.

    Parameters
    ----------
    out_dir : folder to write into; it must exist.
    result : FitResult, as :func:`torchlinreg.fitting.run_fit` returns it.
    statistics : list of objects with ``summary()`` (a text table) and ``to_dict()``, optional.
        A ``to_dict()`` with ``term_names, params, std_err, t_values, p_values, conf_int``
        becomes an HTML table; anything else is shown as the ``summary()`` text.
    files : dict mapping plot names to PNG or GIF paths; default ``result.files``. Every
        one that exists is embedded; other files (JSON, CSV, model files) are ignored.
    flags : the command's flags for the settings the advice names (None: the library's keywords).
    """
    text = render_report(result, statistics=statistics, files=files, flags=flags)
    return atomic_write_text(Path(out_dir) / REPORT_HTML, text)


def render_report(result, *, statistics=None, files=None, flags=None) -> str:
    """The page :func:`write_report` writes, as a string."""
    history = result.history
    status = history.status
    title = f"torchlinreg report: {status}"
    sections = [
        ("data", "Data", _data_section(result)),
        ("settings", "Settings", _settings_section(result)),
        ("diagnostics", "Diagnostics before training", _diagnostics_section(result.diagnostics, flags)),
        ("plots", "Plots", _plots_section(result.files if files is None else files)),
        ("epochs", "Epochs", _epochs_section(result)),
        ("model", "Trained model and the exact least-squares optimum", _model_section(result)),
        ("metrics", "Metrics of the trained model", _metrics_section(result.metrics)),
    ]
    if statistics:
        sections.append(("statistics", "Statistics of the exact least-squares optimum (not of the trained model)",
                         _statistics_section(statistics)))
    nav = " ".join(f'<a href="#{key}">{_esc(heading)}</a>' for key, heading, _ in sections)
    body = "\n".join(f'<section id="{key}">\n<h2>{_esc(heading)}</h2>\n{content}\n</section>'
                     for key, heading, content in sections)
    banner = f"{STATUS_TEXT.get(status, _esc(status))} after {len(history):,} epochs"
    if history.message:
        banner += f": {_esc(history.message)}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<h1>{_esc(title)}</h1>
<p class="status status-{_esc(status)}" id="status">{banner}</p>
<nav>{nav}</nav>
</header>
{body}
<footer>Written by torchlinreg {_esc(__version__)}. Self-contained: the plots are embedded in this file,
which needs no network and can be copied anywhere.</footer>
</main>
</body>
</html>
"""


# -- sections -------------------------------------------------------------------------

def _data_section(result) -> str:
    data = result.data
    n_rows = getattr(result, "n_samples", data.n_samples)  # a streamed fit's data holds a sample of its rows
    n_train = result.solution.n_samples
    rows_text = f"{n_rows:,}"
    if n_train != n_rows:
        rows_text += f" ({n_train:,} used for training, {n_rows - n_train:,} held out)"
    facts = [("rows", rows_text),
             ("features", f"{data.n_features:,}: {_names(data.feature_names)}"),
             ("targets", f"{data.n_targets:,}: {_names(data.target_names)}")]
    columns = [(name, "feature", data.X[:, i]) for i, name in enumerate(data.feature_names)]
    columns += [(name, "target", data.y[:, j]) for j, name in enumerate(data.target_names)]
    rows = []
    for name, role, values in columns[:MAX_ROWS]:
        v = values.double().numpy()
        std = float(np.std(v, ddof=1)) if len(v) > 1 else math.nan
        rows.append([name, role, *(_g(x) for x in (float(np.mean(v)), std, float(np.min(v)), float(np.max(v))))])
    if len(columns) > MAX_ROWS:
        rows.append(_Note(f"{len(columns) - MAX_ROWS:,} more columns not shown"))
    shown = "all rows" if data.n_samples == n_rows else f"a random sample of {data.n_samples:,} rows"
    return (_kv_table(facts) + f'\n<h3>Columns ({shown})</h3>\n'
            + _table(["column", "role", "mean", "std", "min", "max"], rows, numeric_from=2)
            + '\n<p class="muted">std: the sample standard deviation (divisor n − 1).</p>')


def _settings_section(result) -> str:
    pairs = [(key, _setting(value)) for key, value in result.config.to_dict().items()]
    pairs.append(("standardize", "yes" if result.scaler is not None else "no"))
    half = (len(pairs) + 1) // 2
    return f'<div class="row">\n{_kv_table(pairs[:half])}\n{_kv_table(pairs[half:])}\n</div>'


def _diagnostics_section(diagnostics, flags=None) -> str:
    if diagnostics is None:
        return ('<p class="muted">Not computed: the learning-rate diagnostics apply to full-batch '
                'gradient descent (optimizer sgd without mini-batches).</p>')
    d = diagnostics.to_dict()

    def epochs(n, lr=None):
        if n is not None:
            return f"{n:,}"
        return "never: the rate is above the divergence limit" if lr is not None and lr >= d["max_stable_lr"] else (
            f"more than {d['max_epochs']:,}")

    pairs = [("learning rate", _g(d["lr"])),
             ("stable learning rates (divergence limit)", f"below {_g(d['max_stable_lr'])}"),
             ("best constant rate, 2/(λmax+λmin)", _g(d["best_lr"])),
             ("condition number of the loss's Hessian", "infinite" if d["condition_number"] is None
              else f"{d['condition_number']:,.0f}"),
             (f"predicted epochs at this rate (to within {d['tol']:g} of the optimum's loss)",
              epochs(d["epochs_needed"], d["lr"])),
             ("predicted epochs at the best rate", epochs(d["epochs_needed_best_lr"])),
             ("predicted epochs on standardised data", epochs(d["epochs_needed_standardized"]))]
    if d.get("epochs") is not None:
        pairs.append(("epochs asked for", f"{d['epochs']:,}"))
    items = "\n".join(f"<li>{_esc(m)}</li>" for m in diagnostics.messages(flags))
    return _kv_table(pairs) + f'\n<ul class="messages">\n{items}\n</ul>'


def _plots_section(files: dict) -> str:
    figures, missing = [], []
    for name, path in files.items():
        path = Path(path)
        if not path.is_file():
            if path.suffix.lower() in (".png", ".gif"):
                missing.append(f"{name} ({path})")
            continue
        raw = path.read_bytes()
        mime = next((m for sig, m in SIGNATURES.items() if raw.startswith(sig)), None)
        if mime is None:
            continue  # history.json, model files and the like
        size = _image_size(raw, mime)
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        caption = CAPTIONS.get(name, str(name).replace("_", " ").capitalize())
        uri = f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"
        figures.append(f'<figure id="plot-{_esc(name)}">\n<img src="{uri}" alt="{_esc(caption)}"{dims}>\n'
                       f"<figcaption>{_esc(caption)} <code>{_esc(path.name)}</code></figcaption>\n</figure>")
    parts = [f'<div class="figures">\n{chr(10).join(figures)}\n</div>'] if figures else [
        '<p class="muted">No plots: run the fit with an output folder and plots switched on.</p>']
    if missing:
        parts.append(f'<p class="muted">Not found: {_esc(", ".join(missing))}</p>')
    return "\n".join(parts)


def _epochs_section(result) -> str:
    records = result.history.records
    if not records:
        return '<p class="muted">No epochs were run.</p>'
    names = _param_names(records[0].params, result.data.feature_names, result.data.target_names)
    shown = min(len(names), MAX_PARAM_COLUMNS)
    header = ["epoch", "loss", "validation loss", "lr", *names[:shown]]

    def row(r):
        params = _flatten(r.params)[:shown]
        return [str(r.epoch), _fixed(r.loss), "—" if r.val_loss is None else _fixed(r.val_loss),
                "—" if r.lr is None else _g(r.lr), *(_fixed(v) for v in params)]

    if len(records) > MAX_EPOCH_ROWS:
        skipped = len(records) - 2 * EPOCH_ENDS
        rows = [*map(row, records[:EPOCH_ENDS]),
                _Note(f"… {skipped:,} epochs skipped (epochs {records[EPOCH_ENDS].epoch:,} to "
                      f"{records[-EPOCH_ENDS - 1].epoch:,}; history.csv has every epoch) …"),
                *map(row, records[-EPOCH_ENDS:])]
    else:
        rows = [row(r) for r in records]
    parts = ['<p class="muted">Each row holds the loss at the parameters the epoch started from '
             '(in the data\'s units).</p>', f'<div class="scroll">{_table(header, rows)}</div>']
    if len(names) > shown:
        parts.append(f'<p class="muted">{shown} of {len(names):,} parameters shown; '
                     "history.csv has all of them.</p>")
    return "\n".join(parts)


def _model_section(result) -> str:
    data, solution, gap = result.data, result.solution, result.gap
    rows = []
    for j, target in enumerate(data.target_names):
        suffix = f" → {target}" if data.n_targets > 1 else ""
        for i, feature in enumerate(data.feature_names):
            rows.append((f"weight {feature}{suffix}", result.weight[j][i], solution.coef[j][i]))
        if result.fit_intercept:  # a model fitted without intercept has no bias to show
            rows.append((f"bias{suffix}", result.bias[j], solution.intercept[j]))
    hidden = max(0, len(rows) - MAX_ROWS)
    cells = [[name, _fixed(a), _fixed(b), _g(a - b, 4)] for name, a, b in rows[:MAX_ROWS]]
    if hidden:
        cells.append(_Note(f"{hidden:,} more parameters (all of them: torchlinreg solve --json, or --save)"))
    cells.append(["loss (MSE)", _fixed(gap["trained_loss"]), _fixed(gap["optimum_loss"]),
                  _g(gap["trained_loss"] - gap["optimum_loss"], 4)])
    excess = gap["relative_excess_loss"]
    if gap.get("exact_fit"):
        excess_text = "the optimum fits the data exactly (loss 0 to rounding), the trained model does not"
    elif excess >= 10:
        excess_text = f"the trained loss is {excess + 1:.3g} times the optimum's"
    elif excess >= 1e-4:
        excess_text = f"the trained loss is {100 * excess:.3g}% above the optimum's"
    else:
        excess_text = f"the trained loss is {excess:.2e} above the optimum's (relative)"
    relative = gap["relative_distance"]
    size = f"{relative:.3g} times its size" if relative >= 10 else f"{100 * relative:.3g}% of its size"
    gap_text = f"Gap: {excess_text}; the parameters are {gap['distance']:.4g} away from the optimum ({size})."
    cond = "infinite" if not math.isfinite(solution.condition_number) else f"{solution.condition_number:.3g}"
    facts = (f"The optimum is exact least squares on the {solution.n_samples:,} training rows: rank "
             f"{solution.rank}, condition number {cond}.")
    warnings = "".join(f'\n<p class="status status-diverged">{_esc(w)}</p>' for w in solution.warnings)
    return (_table(["parameter", "trained", "optimum", "difference"], cells)
            + f"\n<p>{_esc(gap_text)}</p>\n<p class=\"muted\">{_esc(facts)}</p>{warnings}")


def _metrics_section(metrics: dict) -> str:
    rows = [[split, *(_g(m[k]) for k in ("mse", "rmse", "mae", "r2"))] for split, m in metrics.items()]
    return _table(["rows", "MSE", "RMSE", "MAE", "R²"], rows)


def _statistics_section(statistics) -> str:
    """Per target: the coefficient table and the fit's figures, labelled as the text summary labels them
    (``statistics.LABELS``, and a :class:`~torchlinreg.statistics.RegressionStatistics`' own ``title``,
    ``figures()`` and ``notes()``); without the coefficient keys, the summary's text."""
    from .statistics_tables import LABELS

    parts = []
    for k, stats in enumerate(statistics):
        d = _flatten_terms(stats.to_dict())
        name = d.get("target") or d.get("target_name")
        heading = getattr(stats, "title", None) or (f"Target {name}" if name else f"Table {k + 1}")
        if len(statistics) > 1 or name or hasattr(stats, "title"):
            parts.append(f"<h3>{_esc(heading)}</h3>")
        table = _coef_table(d) if all(key in d for key in COEF_KEYS) else None
        if table is None:
            parts.append(f"<pre>{_esc(stats.summary())}</pre>")
            continue
        figures = stats.figures() if hasattr(stats, "figures") else [
            (label, _scalar(d[key].item() if isinstance(d[key], np.generic) else d[key]))
            for key, label in LABELS.items() if key in d]
        notes = stats.notes() if hasattr(stats, "notes") else []
        parts.append(table + ("\n" + _kv_table(figures) if figures else "")
                     + "".join(f'\n<p class="muted">{_esc(note)}</p>' for note in notes))
    return "\n".join(parts)


def _flatten_terms(d: dict) -> dict:
    """``RegressionStatistics.to_dict()`` keeps one dict per term; the table wants one list per column."""
    terms = d.get("terms")
    if not isinstance(terms, dict):
        return d
    nan = float("nan")
    out = {k: v for k, v in d.items() if k not in ("terms", "cov_params", "term_names")}
    out["term_names"] = list(terms)
    for key, field_name in (("params", "param"), ("std_err", "std_err"), ("t_values", "t_value"),
                            ("p_values", "p_value")):
        out[key] = [nan if t.get(field_name) is None else t[field_name] for t in terms.values()]
    out["conf_int"] = [[nan if v is None else v for v in (t.get("conf_int") or (None, None))] for t in terms.values()]
    if isinstance(d.get("conf_level"), float):
        out["alpha"] = 1 - d["conf_level"]
    return out


def _coef_table(d: dict) -> str | None:
    """The coefficient table of a statistics dict, or None when its shapes are not the expected ones."""
    try:
        names = [str(n) for n in d["term_names"]]
        columns = [np.asarray(d[key], dtype=float).reshape(-1) for key in COEF_KEYS[1:5]]
        conf = np.asarray(d["conf_int"], dtype=float)
    except (TypeError, ValueError):
        return None
    n = len(names)
    if conf.shape == (2, n) and n != 2:
        conf = conf.T
    if any(len(c) != n for c in columns) or conf.shape != (n, 2):
        return None
    alpha = d.get("alpha")
    level = f"[{alpha / 2:g}, {1 - alpha / 2:g}]" if isinstance(alpha, float) else "confidence interval"
    rows = [[name, _g(p), _g(se), _g(t, 4), _g(pv, 3), f"[{_g(lo)}, {_g(hi)}]"] if np.isfinite(p)
            else [name, "not identified", "", "", "", ""]
            for name, p, se, t, pv, (lo, hi) in zip(names, *columns, conf)]
    from .statistics_tables import TERM_COLUMNS  # the text summary's heads

    stat = "t" if d.get("use_t", True) else "z"  # z: normal tests (robust covariances), as the summary says
    return _table([*TERM_COLUMNS, stat, f"P>|{stat}|", level], rows)


# -- helpers --------------------------------------------------------------------------

class _Note(str):
    """A table row spanning every column: a remark such as how many rows were skipped."""


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list, *, numeric_from: int = 1) -> str:
    """An HTML table; every cell is escaped text, columns from ``numeric_from`` on are right-aligned."""
    def cell(tag, i, text):
        return f'<{tag} class="num">{_esc(text)}</{tag}>' if i >= numeric_from else f"<{tag}>{_esc(text)}</{tag}>"

    head = "<tr>" + "".join(cell("th", i, h) for i, h in enumerate(header)) + "</tr>"
    body = []
    for row in rows:
        if isinstance(row, _Note):
            body.append(f'<tr class="note"><td colspan="{len(header)}">{_esc(row)}</td></tr>')
        else:
            body.append("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n" + "\n".join(body) + "\n</tbody>\n</table>"


def _kv_table(pairs: list[tuple[str, str]]) -> str:
    rows = "\n".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in pairs)
    return f'<table class="facts">\n<tbody>\n{rows}\n</tbody>\n</table>'


def _names(names, limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names) - limit:,} more)" if len(names) > limit else "")


def _g(value, digits: int = 6) -> str:
    return "—" if value is None else f"{float(value):.{digits}g}"


def _fixed(value) -> str:
    """8 decimals, as the printed report; exponent notation for huge values."""
    value = float(value)
    return f"{value:.8f}" if abs(value) < 1e7 else f"{value:.8e}"


def _setting(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return repr(float(value)) if isinstance(value, float) else str(value)


def _scalar(value) -> str:
    """A statistic: floats to 6 significant digits, anything else as a setting."""
    return _g(value) if isinstance(value, float) else _setting(value)


def _flatten(value) -> list[float]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in _flatten(item)]
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flatten(item)]
    return [value]


def _param_names(params: dict, feature_names, target_names) -> list[str]:
    """Column names in the order of :func:`_flatten`: ``weight x``, ``bias`` (``→ target`` for several)."""
    names = []
    for key, value in params.items():
        flat = _flatten(value)
        several = len(target_names) > 1
        if key == "linear.weight" and len(flat) == len(feature_names) * len(target_names):
            names += [f"weight {f}" + (f" → {t}" if several else "") for t in target_names for f in feature_names]
        elif key == "linear.bias" and len(flat) == len(target_names):
            names += ["bias" + (f" → {t}" if several else "") for t in target_names]
        else:
            names += [key] if len(flat) == 1 else [f"{key}[{i}]" for i in range(len(flat))]
    return names


def _image_size(raw: bytes, mime: str) -> tuple[int, int] | None:
    """Width and height from the PNG IHDR chunk or the GIF logical screen descriptor."""
    if mime == "image/png" and len(raw) >= 24:
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if mime == "image/gif" and len(raw) >= 10:
        return int.from_bytes(raw[6:8], "little"), int.from_bytes(raw[8:10], "little")
    return None
