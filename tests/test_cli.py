import json
import subprocess
import sys

import pytest

from torchlinreg.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_history_and_plots(capsys, tmp_path):
    code, out, err = run_cli(capsys, "fit", "--epochs", "5", "--out", str(tmp_path))
    assert code == 0
    assert len([ln for ln in out.splitlines() if ln.startswith("epoch:")]) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "current_model.png", "data.png", "history.csv", "history.json", "initial_model.png", "loss.png",
        "predicted_vs_actual.png", "qq.png", "residuals.png", "residuals_vs_features.png", "summary.json"]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [r["epoch"] for r in history["records"]] == [1, 2, 3, 4, 5]
    assert str(tmp_path) in err


def test_flags_reach_the_library(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "fit", "--epochs", "2", "--lr", "0.0005", "--momentum", "0.5", "--nesterov",
                           "--weight-decay", "0.01", "--seed", "3", "--data-seed", "4", "--n-samples", "20",
                           "--x-start", "0", "--x-stop", "10", "--true-weight", "-1", "--true-bias", "5",
                           "--noise-low", "-2", "--noise-high", "2", "--out", str(tmp_path), "--no-plots")
    assert code == 0
    from torchlinreg import TrainConfig, build_model, train, tutorial_data

    data = tutorial_data(20, x_start=0, x_stop=10, weight=-1, bias=5, noise_low=-2, noise_high=2, seed=4)
    cfg = TrainConfig(epochs=2, lr=0.0005, momentum=0.5, nesterov=True, weight_decay=0.01, seed=3)
    expected = train(build_model(seed=3), data.X, data.y, cfg)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert [r["loss"] for r in saved["records"]] == expected.losses
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "history.json", "summary.json"]


@pytest.mark.parametrize("argv, words", [
    (["--epochs", "0"], "epochs must be a positive integer"),
    (["--epochs", "-4"], "epochs must be a positive integer"),
    (["--epochs", "2.5"], "invalid int value"),
    (["--epochs", "ten"], "invalid int value"),
    (["--lr", "-0.1"], "learning rate must be above 0"),
    (["--lr", "0"], "learning rate must be above 0"),
    (["--lr", "nan"], "learning rate must be a finite number"),
    (["--lr", "inf"], "learning rate must be a finite number"),
    (["--momentum", "-0.5"], "momentum must not be negative"),
    (["--weight-decay", "-1"], "weight decay must not be negative"),
    (["--n-samples", "0"], "number of samples"),
    (["--bogus"], "unrecognized arguments"),
])
def test_bad_flags_give_one_line_and_exit_2(capsys, tmp_path, argv, words):
    with pytest.raises(SystemExit) if words in ("invalid int value", "unrecognized arguments") else _no_raise() as exc:
        code = main(["fit", "--out", str(tmp_path / "out"), *argv])
    code = exc.value.code if exc is not None and hasattr(exc, "value") else code
    out, err = capsys.readouterr()
    assert code == 2
    assert words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "epoch:" not in out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_output_folder_that_cannot_be_written(capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    for target in (blocker, blocker / "sub"):
        code, out, err = run_cli(capsys, "fit", "--out", str(target))
        assert code == 2
        assert "output folder" in err and "--out" in err
        assert len(err.strip().splitlines()) == 1
        assert "epoch:" not in out  # refused before training
    assert blocker.read_text() == "keep me"


def test_divergence_stops_without_nan(capsys, tmp_path):
    code, out, err = run_cli(capsys, "fit", "--lr", "0.01", "--epochs", "200", "--out", str(tmp_path))
    assert code == 3
    assert "nan" not in out.lower() and "inf" not in out.lower()
    epochs = [ln for ln in out.splitlines() if ln.startswith("epoch:")]
    assert 1 < len(epochs) < 200
    assert "diverged" in err and "0.00116" in err and "--lr 0.001" in err
    assert [ln for ln in out.splitlines() if ln.startswith("Current weight:")]
    assert (tmp_path / "loss.png").exists()


def test_module_entry_point_and_help_show_defaults():
    proc = subprocess.run([sys.executable, "-m", "torchlinreg", "fit", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())  # undo line wrapping
    for flag, default in [("--epochs", "50"), ("--seed", "59"), ("--data-seed", "71"),
                          ("--out", "torchlinreg-output")]:
        assert flag in text and f"(default: {default})" in text
    assert "(default: 0.001 for sgd" in text


def test_help_and_flag_errors_do_not_import_torch():
    code = ("import sys\nfrom torchlinreg.cli import main\n"
            "for argv in (['--help'], ['fit', '--help'], ['fit', '--epochs', 'x']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "fit" in capsys.readouterr().err


def test_make_data_and_predict_are_one_library_call_each(tmp_path):
    """torchlinreg.datafiles: what make-data and predict do, from the library; its messages name keywords."""
    import numpy as np
    import pyarrow.csv as pa_csv

    from torchlinreg.datafiles import write_data, write_predictions
    from torchlinreg.errors import ConfigError
    from torchlinreg.formats import read_dataset
    from torchlinreg.persistence import SavedModel

    path, data = write_data(tmp_path / "d.csv", features=2, targets=1, seed=5)
    back = read_dataset(path, target="y")
    np.testing.assert_array_equal(back.X.numpy(), data.X.numpy())  # CSV keeps float64 exactly (repr round trip)
    with pytest.raises(ConfigError, match=r"^x_start shapes the tutorial's data.*features, targets, coef"):
        write_data(tmp_path / "e.csv", features=2, x_start=3.0)
    model = SavedModel(np.array([[1.0, -2.0]]), np.array([0.5]), ("x1", "x2"), ("y",), {})
    out, n_rows = write_predictions(model, path, tmp_path / "p.csv")
    got = pa_csv.read_csv(out).column("predicted_y").to_numpy()
    X = back.X.numpy()
    # two products and two sums in float64, in some order: within γ_3·(|x1| + 2|x2| + 0.5)
    u = 2.0 ** -53
    np.testing.assert_allclose(got, X @ np.array([1.0, -2.0]) + 0.5, rtol=0,
                               atol=float((3 * u / (1 - 3 * u)) * (np.abs(X) @ [1.0, 2.0] + 0.5).max()))
    assert n_rows == len(X) == 1000
