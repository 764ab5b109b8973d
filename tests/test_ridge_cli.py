"""``torchlinreg solve --l2`` and ``--l2-grid`` (issue 18 item 2): scikit-learn's Ridge from the command, in memory
and streamed; bad flags one line, exit 2.

Tolerance: 1e-10 relative against scikit-learn (issue 18's figure); JSON carries every digit (repr).
"""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
from sklearn.linear_model import Ridge  # noqa: E402

from torchlinreg.cli import main  # noqa: E402
from torchlinreg.ridge_solve import ridge_cv  # noqa: E402


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    rng = np.random.default_rng(21)
    X = rng.normal(size=(150, 3)) * [1.0, 4.0, 0.5] + 2.0
    Y = X @ rng.normal(size=(3, 2)) + 1.0 + rng.normal(size=(150, 2))
    w = rng.uniform(0.5, 2.0, 150)
    path = tmp_path_factory.mktemp("ridge") / "data.csv"
    rows = "\n".join(",".join(repr(float(v)) for v in row) for row in np.c_[X, Y, w])
    path.write_text("a,b,c,y0,y1,w\n" + rows + "\n")
    return path, X, Y, w


def solve_json(capsys, *args):
    assert main(["solve", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def close(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert np.abs(a - b).max() <= 1e-10 * max(np.abs(b).max(), 1.0), (a, b)


@pytest.mark.parametrize("stream", [[], ["--stream", "--chunk-rows", "16"]])
@pytest.mark.parametrize("intercept", [[], ["--no-intercept"]])
def test_solve_l2_is_scikit_learns_ridge(table, capsys, stream, intercept):
    path, X, Y, w = table
    out = solve_json(capsys, path, "--target", "y0", "y1", "--features", "a", "b", "c", "--weights", "w",
                     "--l2", "3", "0.5", *stream, *intercept)
    ref = Ridge(alpha=[3.0, 0.5], fit_intercept=not intercept).fit(X, Y, sample_weight=w)
    close([[out["coef"][t][f] for f in "abc"] for t in ("y0", "y1")], ref.coef_)
    close([out["intercept"][t] for t in ("y0", "y1")], np.broadcast_to(ref.intercept_, (2,)))
    assert out["l2"] == {"y0": 3.0, "y1": 0.5}


def test_solve_l2_grid_chooses_alpha_by_gcv(table, capsys):
    path, X, Y, _ = table
    out = solve_json(capsys, path, "--target", "y0", "--features", "a", "b", "c", "--l2-grid", "0.1", "10", "100",
                     "--stream", "--chunk-rows", "40")
    ref = ridge_cv(X, Y[:, 0], (0.1, 10.0, 100.0), mode="gcv")
    close(out["gcv"]["y0"], ref.scores[:, 0])
    assert out["l2"]["y0"] == ref.alpha[0]
    close([out["coef"]["y0"][f] for f in "abc"], ref.coef[0])


def test_the_table(table, capsys):
    path, *_ = table
    assert main(["solve", str(path), "--target", "y0", "--l2", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Ridge solution (150 rows, l2 1):") and "weight a" in out and "intercept" in out


@pytest.mark.parametrize("flags, message", [
    (["--l2", "-1"], "--l2 must be a finite number >= 0"),
    (["--l2", "nan"], "--l2 must be a finite number >= 0"),
    (["--l2-grid", "1", "-2"], "--l2-grid must hold finite numbers >= 0"),
    (["--l2", "1", "--summary"], "leave out --summary"),
    (["--l2", "1", "--l2-grid", "2"], "give one of them"),
    (["--l2", "1", "2", "3"], "give one, or one per target"),
])
def test_bad_ridge_flags_are_one_line_exit_2(table, capsys, flags, message):
    path, *_ = table
    assert main(["solve", str(path), "--target", "y0", "y1", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


# --- one rule for settings that would have no effect (issue 18 item 3) ------------------------------------

def test_weight_decay_with_lbfgs_is_refused_with_one_message_by_the_command_and_the_library(tmp_path, capsys):
    from torchlinreg.config import TrainConfig
    from torchlinreg.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        TrainConfig(optimizer="lbfgs", weight_decay=0.1)
    library = str(info.value)
    assert library.startswith("weight decay 0.1 (weight_decay) would have no effect with L-BFGS") and "--" not in library
    assert main(["fit", "--optimizer", "lbfgs", "--weight-decay", "0.1", "--out", str(tmp_path / "o"),
                 "--no-plots", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"torchlinreg: error: {info.value.for_command({})}\n"
    assert "(--weight-decay) would have no effect with L-BFGS" in err
    TrainConfig(optimizer="lbfgs", weight_decay=0.0)  # no weight decay: nothing to refuse
    TrainConfig(optimizer="adam", weight_decay=0.1)


def test_tl_fit_refuses_weight_decay_with_lbfgs_chosen_or_given():
    import torchlinreg as tl
    from torchlinreg.data import tutorial_data
    from torchlinreg.errors import ConfigError

    for given in ({"optimizer": "lbfgs"}, {}):  # {}: L-BFGS is what fit chooses for data
        with pytest.raises(ConfigError, match=r"^weight decay 0\.1 \(weight_decay\) would have no effect with L-BFGS"):
            tl.fit(tutorial_data(20), weight_decay=0.1, **given)
