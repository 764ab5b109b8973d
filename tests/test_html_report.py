"""The HTML report: its structure read back with html.parser, its rendering in headless Chromium.

The numbers in the page are checked against the FitResult and against references computed
here (NumPy least squares, NumPy column statistics, statsmodels); the browser checks need
Chromium (``scripts/install-chromium``) and skip without it.
"""

import base64
import html
import io
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from bounds import U64, gamma
from browser import counted_dom, screenshot_gray
from torchlinreg.config import TrainConfig
from torchlinreg.data import Dataset, tutorial_data
from torchlinreg.errors import OutputError
from torchlinreg.html_report import CSP, REPORT_HTML, write_report
from torchlinreg.fitting import run_fit

SECTIONS = ["data", "settings", "diagnostics", "plots", "epochs", "model", "metrics"]
HOSTILE = "x<script>alert('column')</script>"


class Page(HTMLParser):
    """What a reader sees: sections with headings, tables as rows of cell texts, images, links."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, str] = {}  # id -> heading text
        self.tables: dict[str, list[list[list[str]]]] = {}  # section id -> tables -> rows -> cells
        self.images: list[dict] = []  # attributes of every <img>, with "section" and "caption"
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self.html_attrs: dict = {}
        self.text: list[str] = []
        self._section = None
        self._cell = self._heading = self._caption = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.attrs += [(k, v or "") for k, v in attrs.items()]
        if tag == "html":
            self.html_attrs = attrs
        elif tag == "section":
            self._section = attrs["id"]
            self.tables[self._section] = []
        elif tag == "h2" and self._section:
            self._heading = []
        elif tag == "table" and self._section:
            self.tables[self._section].append([])
        elif tag == "tr" and self._section:
            self.tables[self._section][-1].append([])
        elif tag in ("td", "th") and self._section:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs | {"section": self._section})
        elif tag == "figcaption":
            self._caption = []

    def handle_endtag(self, tag):
        if tag == "h2" and self._heading is not None:
            self.sections[self._section] = "".join(self._heading).strip()
            self._heading = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[self._section][-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "figcaption":
            self.images[-1]["caption"] = "".join(self._caption).strip()
            self._caption = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        self.text.append(data)
        for part in (self._cell, self._heading, self._caption):
            if part is not None:
                part.append(data)

    def table(self, section: str, index: int = 0) -> dict[str, list[str]]:
        """A table as {first cell: the other cells}, the header row included."""
        return {row[0]: row[1:] for row in self.tables[section][index]}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("fit")
    result = run_fit(tutorial_data(), TrainConfig(epochs=20), out, stream=io.StringIO())
    path = write_report(out, result)
    return result, path, Page(path.read_text(encoding="utf-8"))


def images_on_disk(result) -> dict:
    return {name: p for name, p in result.files.items() if p.suffix in (".png", ".gif") and p.is_file()}


def test_every_section_has_a_heading_and_the_title_the_status(fitted):
    result, path, page = fitted
    assert path.name == REPORT_HTML and path.parent == result.files["history"].parent
    assert list(page.sections) == SECTIONS and all(page.sections.values())
    assert page.sections["model"] == "Trained model and the exact least-squares optimum"
    text = "".join(page.text)
    assert "torchlinreg report: completed" in text and "Training completed after 20 epochs" in text
    assert "statistics" not in page.sections  # only when statistics are given
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_every_plot_is_embedded_as_a_valid_image(fitted):
    result, _, page = fitted
    on_disk = images_on_disk(result)
    assert {"data", "initial", "loss", "current"} <= set(on_disk)
    assert len(page.images) == len(on_disk)
    for img, path in zip(page.images, on_disk.values()):
        head, _, payload = img["src"].partition(",")
        assert head == "data:image/png;base64"
        raw = base64.b64decode(payload, validate=True)
        assert raw == path.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
        with Image.open(io.BytesIO(raw)) as im:
            assert im.format == "PNG" and im.size == (int(img["width"]), int(img["height"]))
        assert img["section"] == "plots" and img["alt"] and path.name in img["caption"]


def test_gif_and_missing_files_given_explicitly(fitted, tmp_path):
    result, _, _ = fitted
    frames = [Image.new("RGB", (40, 30), color) for color in ("red", "blue", "green")]
    gif = tmp_path / "fit.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {"animation": gif, "loss": result.files["loss"], "history": result.files["history"],
             "residuals": tmp_path / "absent.png"}
    page = Page(write_report(tmp_path, result, files=files).read_text(encoding="utf-8"))
    assert [img["src"].split(",")[0] for img in page.images] == ["data:image/gif;base64", "data:image/png;base64"]
    with Image.open(io.BytesIO(base64.b64decode(page.images[0]["src"].split(",")[1]))) as im:
        assert im.format == "GIF" and im.n_frames == 3 and im.size == (40, 30)
    assert "Not found: residuals" in "".join(page.text)


def test_the_numbers_shown_are_the_results(fitted):
    result, _, page = fitted
    data = tutorial_data()
    X, y = data.X.double().numpy(), data.y.double().numpy()
    A = np.hstack([X, np.ones_like(X)])
    (w_ref, b_ref), *_ = np.linalg.lstsq(A, y[:, 0], rcond=None)
    # the page shows the refined optimum (a few ulps) to 8 decimals: half a unit (5e-9) and the parse back
    # (≤ u·|v|), plus NumPy's lstsq error: backward stable (gelsd), ‖Δθ‖ ≤ ε·κ·(2‖θ‖ + κ‖r‖/‖A‖₂) with
    # ε = γ_{mn}·√n (Higham Thm 20.3, 20.1), ×10 for the constants; κ([x, 1]) ≈ 60: ≈ 1e-10 in all
    r = y[:, 0] - A @ [w_ref, b_ref]
    kappa, eps = np.linalg.cond(A), 10 * gamma(A.size) * np.sqrt(2)
    shown = 0.5e-8 + eps * kappa * (2 * np.hypot(w_ref, b_ref) + kappa * np.linalg.norm(r) / np.linalg.norm(A, 2))

    model = page.table("model")
    assert model["parameter"] == ["trained", "optimum", "difference"]
    assert model["weight x"][:2] == [f"{result.weight[0][0]:.8f}", f"{result.solution.coef[0][0]:.8f}"]
    assert model["bias"][:2] == [f"{result.bias[0]:.8f}", f"{result.solution.intercept[0]:.8f}"]
    assert float(model["weight x"][1]) == pytest.approx(w_ref, abs=shown + 4 * U64 * abs(w_ref))
    assert float(model["bias"][1]) == pytest.approx(b_ref, abs=shown + 4 * U64 * abs(b_ref))
    # the optimum's loss, shown to 8 decimals (≈ 2.4e-10 relative at 20.5): at the optimum the loss is flat (the
    # parameter gap moves it second order, ≈ 1e-20) and evaluating it rounds by ≤ γ_n + 2γ_3·(|wx| + |b| + |y|)/|r|
    # ≈ 1e-14 relative; pytest.approx's 1e-6 is far above
    assert float(model["loss (MSE)"][1]) == pytest.approx(np.mean((X[:, 0] * w_ref + b_ref - y[:, 0]) ** 2))

    epochs = page.tables["epochs"][0]
    assert epochs[0] == ["epoch", "loss", "validation loss", "lr", "weight x", "bias"]
    assert len(epochs) == 1 + 20
    for row, record in zip(epochs[1:], result.history.records):
        assert row[:2] == [str(record.epoch), f"{record.loss:.8f}"]
        # the same values shown to 8 decimals: half a unit (5e-9) plus the parse back (≤ u·|v|, |v| < 8)
        assert float(row[4]) == pytest.approx(record.params["linear.weight"][0][0], abs=5e-9 + 8 * U64)
        assert float(row[5]) == pytest.approx(record.params["linear.bias"][0], abs=5e-9 + 8 * U64)
        assert row[2] == "—" and float(row[3]) == 0.001

    columns = page.table("data", 1)
    for name, values in [("x", X[:, 0]), ("y", y[:, 0])]:
        shown = [float(v) for v in columns[name][1:]]
        reference = [values.mean(), values.std(ddof=1), values.min(), values.max()]
        # shown to 6 significant digits: half a unit is ≤ 5e-6 relative; the library's and NumPy's sums of 50
        # terms differ by ≤ 2γ_50 ≈ 1e-14 (the data's means are far from 0): rtol 1e-5 is above both
        np.testing.assert_allclose(shown, reference, rtol=1e-5)
    assert page.table("data")["rows"] == ["50"]

    metrics = page.table("metrics")
    # the same values shown to 6 significant digits: ≤ 5e-6 relative
    assert [float(v) for v in metrics["train"]] == pytest.approx(
        [result.metrics["train"][k] for k in ("mse", "rmse", "mae", "r2")], rel=1e-5)

    settings = {k: v[0] for table in page.tables["settings"] for k, *v in table}
    assert settings["epochs"] == "20" and settings["lr"] == "0.001" and settings["optimizer"] == "sgd"
    assert settings["standardize"] == "no"

    diagnostics = page.table("diagnostics")
    d = result.diagnostics
    assert diagnostics["stable learning rates (divergence limit)"] == [f"below {d.max_stable_lr:.6g}"]
    assert diagnostics["best constant rate, 2/(λmax+λmin)"] == [f"{d.best_lr:.6g}"]
    text = "".join(page.text)
    assert all(message in text for message in d.messages())
    assert f"{d.epochs_needed:,}" in text


def test_nothing_external_and_no_script(fitted):
    _, path, page = fitted
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text.lower() and "https://" not in text.lower()
    assert "@import" not in text and "url(" not in text
    assert not {"script", "link", "iframe", "object", "embed"} & set(page.tags)
    for name, value in page.attrs:
        if name == "src":
            assert value.startswith("data:image/")
        if name == "href":
            assert value.startswith("#")
    assert f'content="{CSP}"' in text


def test_names_from_the_data_are_escaped(tmp_path):
    data = tutorial_data()
    data = Dataset(data.X, data.y, feature_names=(HOSTILE,), target_names=('y & "<b>"',))
    result = run_fit(data, TrainConfig(epochs=3), tmp_path, plots=False, stream=io.StringIO())

    class Summary:  # statistics without the coefficient keys: shown as their text
        def summary(self):
            return "term <i>x</i> & more"

        def to_dict(self):
            return {"target": "<u>y</u>"}

    text = write_report(tmp_path, result, statistics=[Summary()]).read_text(encoding="utf-8")
    assert HOSTILE not in text and "<b>" not in text and "<i>" not in text and "<u>" not in text
    assert html.escape(HOSTILE) in text
    page = Page(text)
    assert "script" not in page.tags and "b" not in page.tags
    assert f"weight {HOSTILE}" in page.table("model")  # shown to the reader as the name it is
    assert "term <i>x</i> & more" in "".join(page.text)


def test_a_diverged_run_says_so_and_why(tmp_path):
    result = run_fit(tutorial_data(), TrainConfig(epochs=30, lr=0.01), tmp_path, plots=False, stream=io.StringIO())
    assert result.history.status == "diverged"
    text = write_report(tmp_path, result).read_text(encoding="utf-8")
    page = Page(text)
    assert "<title>torchlinreg report: diverged</title>" in text and 'class="status status-diverged"' in text
    assert result.history.message in "".join(page.text)
    assert page.table("diagnostics")["predicted epochs at this rate (to within 1e-06 of the optimum's loss)"] == [
        "never: the rate is above the divergence limit"]


def test_without_diagnostics_the_section_says_why(tmp_path):
    result = run_fit(tutorial_data(), TrainConfig(optimizer="lbfgs", epochs=5), tmp_path, plots=False,
                     standardize=True, stream=io.StringIO())
    page = Page(write_report(tmp_path, result).read_text(encoding="utf-8"))
    assert page.tables["diagnostics"] == [] and "Not computed" in "".join(page.text)
    assert {k: v[0] for table in page.tables["settings"] for k, *v in table}["standardize"] == "yes"
    assert page.images == [] and "No plots" in "".join(page.text)


def test_long_histories_show_their_ends(tmp_path):
    result = run_fit(tutorial_data(), TrainConfig(epochs=250), tmp_path, plots=False, stream=io.StringIO())
    rows = Page(write_report(tmp_path, result).read_text(encoding="utf-8")).tables["epochs"][0][1:]
    assert len(rows) == 100 + 1 + 100
    assert [int(r[0]) for r in rows[:100]] == list(range(1, 101))
    assert [int(r[0]) for r in rows[101:]] == list(range(151, 251))
    assert rows[100][0].startswith("… 50 epochs skipped (epochs 101 to 150")


def test_statistics_become_a_table(fitted, tmp_path):
    sm = pytest.importorskip("statsmodels.api")
    result, _, _ = fitted
    X, y = result.data.X.double().numpy(), result.data.y.double().numpy()[:, 0]
    ols = sm.OLS(y, sm.add_constant(X)).fit()

    class Statistics:  # the interface of torchlinreg.statistics.RegressionStatistics
        def summary(self):
            return str(ols.summary())

        def to_dict(self):
            return {"term_names": ["intercept", "x"], "params": ols.params.tolist(), "std_err": ols.bse.tolist(),
                    "t_values": ols.tvalues.tolist(), "p_values": ols.pvalues.tolist(),
                    "conf_int": ols.conf_int(0.05).tolist(), "alpha": 0.05, "r2": ols.rsquared}

    page = Page(write_report(tmp_path, result, statistics=[Statistics()]).read_text(encoding="utf-8"))
    assert list(page.sections)[-1] == "statistics"
    coef = page.table("statistics")
    assert coef["term"] == ["coef", "std err", "t", "P>|t|", "[0.025, 0.975]"]
    for k, term in enumerate(["intercept", "x"]):
        shown = coef[term]
        # the same values shown to 6 significant digits: ≤ 5e-6 relative (the interval's ends too)
        assert [float(v) for v in shown[:2]] == pytest.approx([ols.params[k], ols.bse[k]], rel=1e-5)
        low, high = (float(v) for v in shown[4].strip("[]").split(","))
        assert (low, high) == pytest.approx(tuple(ols.conf_int(0.05)[k]), rel=1e-5)
    # R² ≈ 0.97 shown to 6 significant digits: half a unit 5e-7, ≈ 5.2e-7 relative < pytest.approx's 1e-6
    assert float(page.table("statistics", 1)["R²"][0]) == pytest.approx(ols.rsquared)


@pytest.mark.parametrize("cov_type", ["nonrobust", "HC3"])
def test_the_statistics_are_labelled_as_the_text_summary_labels_them(fitted, tmp_path, cov_type):
    """Every head and label of the report's statistics block is the text summary's; no key of to_dict() shows."""
    import re

    from torchlinreg.statistics import regression_statistics
    from torchlinreg.statistics_tables import LABELS

    result, _, _ = fitted
    X, y = result.data.X.double().numpy(), result.data.y.double().numpy()
    y = np.column_stack([y[:, 0], -y[:, 0] + X[:, 0] ** 2 / 10])  # two targets: two tables
    statistics = regression_statistics(X, y, cov_type=cov_type, feature_names=["x"], target_names=["y", "curve"])
    page = Page(write_report(tmp_path, result, statistics=statistics).read_text(encoding="utf-8"))
    tables = page.tables["statistics"]
    assert len(tables) == 2 * len(statistics)  # per target: the coefficients, the figures
    for stats, coef, figures in zip(statistics, tables[::2], tables[1::2]):
        summary = stats.summary()
        heads = coef[0]
        stat = "t" if cov_type == "nonrobust" else "z"
        assert heads[:5] == ["term", "coef", "std err", stat, f"P>|{stat}|"]
        assert all(head in summary for head in heads[:5])
        assert all(end in summary for end in heads[5].strip("[]").split(", "))  # "[0.025" ... "0.975]"
        labels = [row[0] for row in figures]
        assert labels == [label for label, _ in stats.figures()] and sorted(labels) == sorted(LABELS.values())
        for label, value in figures:
            assert re.search(rf"{re.escape(label)}:\s+{re.escape(value)}(\s|$)", summary, re.M), label  # same text
    text = "".join(page.text)
    assert all(stats.title in text for stats in statistics)  # "OLS regression of 'y'": the summary's first line
    assert all(note in text for stats in statistics for note in stats.notes())
    shown = " ".join(cell for table in tables for row in table for cell in row)
    assert not re.search(r"\b[a-z]+_[a-z_0-9]+\b", shown), shown  # no snake_case key (target_name, use_t, adj_r2 ...)
    assert not {"target_name", "use_t", "adj_r2", "f_pvalue", "weighted", "conf_level"} & set(text.split())


def test_an_unwritable_folder_is_an_output_error(fitted, tmp_path):
    result, _, _ = fitted
    with pytest.raises(OutputError, match="cannot write"):
        write_report(tmp_path / "absent", result)


# -- in a real browser ----------------------------------------------------------------

def test_chromium_renders_a_page_with_content(fitted, chromium, tmp_path):
    _, path, _ = fitted
    gray = screenshot_gray(chromium, tmp_path, path.as_uri())
    # A blank page gives 0 and 0; this report's first 2000 px about 30 and 0.066 (mostly white margins).
    assert gray.std() > 15  # not a blank or uniform page
    assert (gray < 245).mean() > 0.03  # text, table lines and plots cover a good part of it


def images_loaded(chromium, tmp_path, text: str) -> str:
    """``loaded/total`` images once the page has loaded, counted by a script the test adds."""
    assert CSP in text
    text = text.replace(CSP, CSP + "; script-src 'unsafe-inline'")  # the counter runs; images load as before
    return Page(counted_dom(chromium, tmp_path, text)).html_attrs.get("data-images", "script did not run")


def test_chromium_loads_every_image(fitted, chromium, tmp_path):
    result, path, page = fitted
    n = len(images_on_disk(result))
    text = path.read_text(encoding="utf-8")
    assert images_loaded(chromium, tmp_path, text) == f"{n}/{n}" == f"{len(page.images)}/{len(page.images)}"
    broken = text.replace("</main>", '<img src="data:image/png;base64,iVBORw0KGgo=" alt="broken"></main>')
    assert images_loaded(chromium, tmp_path, broken) == f"{n}/{n + 1}"  # the count does see a failed image
