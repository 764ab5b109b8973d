"""docs/tutorial.ipynb: it runs, it shows the tutorial's table, its kept outputs are a fresh run's, its page renders.

The notebook is executed once per test run, as ``scripts/run-notebook`` executes it (``scripts/notebook.py``:
a kernel on this interpreter, importing this torchlinreg), in a temporary folder and on a copy, so nothing in
docs/ changes. When the kept outputs are stale, ``scripts/run-notebook`` refreshes them and the page.
"""

import copy
import importlib.util
import math
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from conftest import EPOCH_LINE
from browser import counted_dom, screenshot_gray
from test_reproduction import PRINTED, current_line_agrees, tutorial_float32_error

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
PAGE = ROOT / "docs" / "tutorial.html"
# A number as printed: 12, -0.5, 10,520, 1.01e-208; not the digits of a name (x0, s1, float32)
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


@pytest.fixture(scope="module")
def script():
    """scripts/notebook.py, which scripts/run-notebook runs: ``execute`` and ``to_html``."""
    spec = importlib.util.spec_from_file_location("notebook_script", ROOT / "scripts" / "notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stored():
    return nbformat.read(NOTEBOOK, as_version=4)


@pytest.fixture(scope="module")
def executed(script, stored, tmp_path_factory):
    """A fresh run of a copy of the notebook; a cell that raises fails every test here with its traceback."""
    nb = copy.deepcopy(stored)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return script.execute(nb, tmp_path_factory.mktemp("notebook"))  # 120 s a cell at most; about 15 s in all


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def text_outputs(cell) -> list[tuple[str, str]]:
    """What a reader reads of a cell's outputs: each stream's text, each result's text/plain, in order."""
    shown = []
    for out in cell.outputs:
        if out.output_type == "stream":
            shown.append((out.name, out.text))
        elif out.output_type in ("execute_result", "display_data"):
            shown.append((out.output_type, out.data.get("text/plain", "")))
    return shown


def report_lines(nb) -> list[str]:
    """The printed report of the tutorial's run: the output of the one cell that prints epoch lines."""
    texts = [text for cell in code_cells(nb) for name, text in text_outputs(cell)
             if name == "stdout" and "epoch:" in text]
    assert texts and texts[0].startswith("Weight: "), "the first cell to print epoch lines is the tutorial's run"
    return texts[0].splitlines()


@pytest.mark.parametrize("which", ["stored", "executed"])
def test_every_cell_ran_in_order_without_error(which, request):
    nb = request.getfixturevalue(which)
    cells = code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))  # one run, top to bottom
    assert [out for cell in cells for out in cell.outputs if out.output_type == "error"] == []
    assert all(out.name == "stdout" for cell in cells for out in cell.outputs if out.output_type == "stream"), \
        "nothing on stderr (a warning there names a path of the machine that ran it)"


@pytest.mark.parametrize("which", ["stored", "executed"])
def test_the_report_is_the_tutorials_table(which, request, tutorial_table):
    lines = report_lines(request.getfixturevalue(which))
    # exact: nn.Linear's seeded initial values, printed before any arithmetic
    assert lines[:2] == [tutorial_table["weight_line"], tutorial_table["bias_line"]]
    got = [EPOCH_LINE.fullmatch(line).groups() for line in lines if line.startswith("epoch:")]
    assert len(got) == len(tutorial_table["epochs"]) == 50
    param_err, loss_err = tutorial_float32_error()
    for (epoch, loss, w, b), (t_epoch, t_loss, t_w, t_b) in zip(got, tutorial_table["epochs"]):
        # as in test_reproduction: two float32 runs, each within the bound of the exact one, both printed to
        # 8 decimals: 2·bound + 2·half a unit (epoch k prints θ_{k-1} and its loss)
        k = t_epoch - 1
        assert int(epoch) == t_epoch
        assert abs(float(loss) - t_loss) <= 2 * loss_err[k] + 2 * PRINTED, f"loss at epoch {epoch}"
        assert abs(float(w) - t_w) <= 2 * param_err[k] + 2 * PRINTED, f"weight at epoch {epoch}"
        assert abs(float(b) - t_b) <= 2 * param_err[k] + 2 * PRINTED, f"bias at epoch {epoch}"
    assert current_line_agrees(lines, tutorial_table["current_line"])


def split_numbers(text: str) -> tuple[str, list[str]]:
    """``text`` with each number replaced by ``#``, and the numbers as printed."""
    return NUMBER.sub("#", text), NUMBER.findall(text)


def last_place(number: str) -> float:
    """A unit in the last printed place of ``number``: 1e-8 for 21.05850983, 1 for 10,520, 1e-210 for 1.01e-208."""
    return 10.0 ** Decimal(number.replace(",", "")).as_tuple().exponent


@pytest.fixture(scope="module")
def float32_slack():
    """How far apart two runs of the notebook may print a number, beyond its last printed place.

    Every number the notebook prints is either a float64 result that two CPUs round alike to far more digits
    than are printed (the optimum, the diagnostics, the statistics, L-BFGS on the diabetes data), or comes from
    the tutorial's float32 run, which two CPUs may round differently (tutorial_float32_error, as in
    test_reproduction). The epoch lines are compared with their own bound (``epoch_line_slack``); after them, the
    parameters of two runs differ by up to 2·bound, and what is computed from them at the data's rows (residuals,
    so the losses and metrics; differences and distances) by up to max‖[x_i, 1]‖ = ‖[50, 1]‖ times that.
    Percentages of the optimum's loss or size move less.
    """
    from torchlinreg import tutorial_data

    param_err, _ = tutorial_float32_error()
    x_max = float(tutorial_data().X.abs().max())
    return 2 * math.hypot(x_max, 1.0) * max(param_err)


def epoch_line_slack(old: str, new: str) -> list[tuple[str, str, float]]:
    """The numbers of two epoch lines, each with how far apart two float32 runs may print it: 2·bound + 2·PRINTED."""
    param_err, loss_err = tutorial_float32_error()
    epoch, *old_numbers = EPOCH_LINE.fullmatch(old).groups()
    new_epoch, *new_numbers = EPOCH_LINE.fullmatch(new).groups()
    assert epoch == new_epoch
    k = int(epoch) - 1
    bounds = (loss_err[k], param_err[k], param_err[k])
    return [(a, b, 2 * bound + 2 * PRINTED) for a, b, bound in zip(old_numbers, new_numbers, bounds)]


def differences(old_text: str, new_text: str, slack: float) -> list[str]:
    """Where two texts differ beyond the rounding of float32 and of the last printed place."""
    old_lines, new_lines = old_text.splitlines(), new_text.splitlines()
    if len(old_lines) != len(new_lines):
        return [f"{len(old_lines)} lines kept, {len(new_lines)} now"]
    found = []
    for old, new in zip(old_lines, new_lines):
        if EPOCH_LINE.fullmatch(old) and EPOCH_LINE.fullmatch(new):
            pairs = epoch_line_slack(old, new)
        else:
            (old_shape, old_numbers), (new_shape, new_numbers) = split_numbers(old), split_numbers(new)
            if old_shape != new_shape:
                found.append(f"{old!r} kept, {new!r} now")
                continue
            pairs = [(a, b, slack) for a, b in zip(old_numbers, new_numbers)]
        for a, b, extra in pairs:
            x, y = float(a.replace(",", "")), float(b.replace(",", ""))
            if abs(x - y) > max(last_place(a), last_place(b)) + extra:
                found.append(f"{a} kept, {b} now, in {old!r}")
    return found


def output_kinds(cell) -> list[tuple]:
    """Each output's type with its stream's name or its MIME types (an image that is no longer shown counts)."""
    return [(out.output_type, out.get("name") or sorted(out.get("data", {}))) for out in cell.outputs]


def test_kept_outputs_are_those_of_a_fresh_run(stored, executed, float32_slack):
    assert len(stored.cells) == len(executed.cells)
    for k, (old, new) in enumerate(zip(code_cells(stored), code_cells(executed)), start=1):
        where = f"code cell {k} ({old.source.splitlines()[0]!r}): run scripts/run-notebook"
        assert output_kinds(old) == output_kinds(new), where
        for (_, old_text), (_, new_text) in zip(text_outputs(old), text_outputs(new)):
            assert differences(old_text, new_text, float32_slack) == [], where


def test_the_page_is_the_kept_notebook_rendered(script, stored):
    # nbconvert renders a notebook the same way every time: the page is reproducible from the notebook alone
    assert PAGE.read_text(encoding="utf-8") == script.to_html(stored, "tutorial"), "run scripts/run-notebook"


class Page(HTMLParser):
    """The page's tags, attributes and text."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text, self.html_attrs = [], [], [], {}
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]
        if tag == "html":
            self.html_attrs = dict(attrs)

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def page(script, executed, tmp_path_factory):
    path = tmp_path_factory.mktemp("page") / "tutorial.html"
    path.write_text(script.to_html(executed, "tutorial"), encoding="utf-8")
    return path


def images(nb) -> int:
    """PNG outputs (the figures), and the images inside HTML outputs (a fit's result shows its plots)."""
    return pngs(nb) + sum(out.get("data", {}).get("text/html", "").count("<img ")
                          for cell in code_cells(nb) for out in cell.outputs)


def pngs(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in code_cells(nb) for out in cell.outputs)


def headings(nb) -> list[str]:
    return [line.lstrip("#").strip().replace("`", "").replace("*", "")
            for cell in nb.cells if cell.cell_type == "markdown"
            for line in cell.source.splitlines() if line.startswith("#")]


def test_the_page_has_every_image_and_no_script_or_fetch(executed, page):
    parsed = Page(page.read_text(encoding="utf-8"))
    assert pngs(executed) == 8  # the tutorial's four plots and the diabetes data's four
    assert images(executed) > 8  # and the plots the diabetes fit's result shows inline
    sources = [value for tag, name, value in parsed.attrs if name == "src"]
    assert len(sources) == parsed.tags.count("img") == images(executed)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    text = " ".join(parsed.text)
    assert all(heading in text for heading in headings(executed))


# -- in a real browser ----------------------------------------------------------------



def test_chromium_loads_every_image(executed, page, chromium, tmp_path):
    text = page.read_text(encoding="utf-8")
    dom = Page(counted_dom(chromium, tmp_path, text))  # the page has no CSP to relax
    n = images(executed)
    assert dom.html_attrs.get("data-images", "script did not run") == f"{n}/{n}"
    text = " ".join(dom.text)
    assert all(heading in text for heading in headings(executed))


def test_chromium_renders_a_page_with_content(page, chromium, tmp_path):
    gray = screenshot_gray(chromium, tmp_path, page.as_uri())
    # A blank page gives 0 and 0; this page's first 2000 px about 40 and 0.2 (text, code cells, the first plots).
    assert gray.std() > 15  # not a blank or uniform page
    assert (gray < 245).mean() > 0.03  # text, cells and plots cover a good part of it
