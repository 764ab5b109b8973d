"""The default run reproduces the tutorial's printed table, line by line."""

import pytest

from conftest import EPOCH_LINE
from torchlinreg.cli import main


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["fit", "--out", str(tmp_path_factory.mktemp("run"))])
    return code, out.getvalue().splitlines()


def test_exit_code_zero(default_run):
    assert default_run[0] == 0


def test_initial_parameter_lines_are_exact(default_run, tutorial_table):
    _, lines = default_run
    assert lines[0] == tutorial_table["weight_line"]
    assert lines[1] == tutorial_table["bias_line"]


def test_every_epoch_line_agrees_with_the_tutorial(default_run, tutorial_table):
    _, lines = default_run
    got = [EPOCH_LINE.fullmatch(ln).groups() for ln in lines if ln.startswith("epoch:")]
    assert len(got) == len(tutorial_table["epochs"]) == 50
    for (epoch, loss, w, b), (t_epoch, t_loss, t_w, t_b) in zip(got, tutorial_table["epochs"]):
        assert int(epoch) == t_epoch
        assert float(loss) == pytest.approx(t_loss, rel=1e-6), f"loss at epoch {epoch}"
        assert float(w) == pytest.approx(t_w, abs=1e-6), f"weight at epoch {epoch}"
        assert float(b) == pytest.approx(t_b, abs=1e-6), f"bias at epoch {epoch}"


def test_current_line_is_exact(default_run, tutorial_table):
    _, lines = default_run
    assert tutorial_table["current_line"] in lines
