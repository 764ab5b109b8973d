"""Library messages name settings by their keywords; the command names the same settings by their flags.

A message is written with placeholders (``{chunk_rows}``, ``{chunk_rows=65536}``, see errors.py):
``str(exc)`` renders them as keywords, ``torchlinreg.cli.main`` as the flags it was given.
"""

import ast
import re
import warnings
from pathlib import Path

import pytest

import torchlinreg
from torchlinreg.cli import FLAGS, build_parser, main
from torchlinreg.config import TrainConfig
from torchlinreg.data import tutorial_data
from torchlinreg.errors import PLACEHOLDER, SETTINGS, ConfigError, ConvergenceWarning, DataError, OutputError, render
from torchlinreg.fitting import run_fit

SRC = Path(torchlinreg.__file__).parent
FLAG = re.compile(r"(?<![\w-])--[a-z]")  # a command-line flag, e.g. --chunk-rows


def fit_args(tmp_path, *flags):
    return ["fit", "--out", str(tmp_path / "out"), "--no-plots", "--quiet", "--epochs", "2", *flags]


def test_a_bad_chunk_rows_names_the_keyword_in_the_library_and_the_flag_in_the_command(tmp_path, capsys):
    with pytest.raises(ConfigError) as info:
        run_fit(tutorial_data(20), TrainConfig(epochs=2), None, chunk_rows=0, quiet=True, plots=False)
    message = str(info.value)
    assert message == "chunk_rows must be a positive integer, got 0; pass e.g. chunk_rows=65536"
    assert "--" not in message

    assert main(fit_args(tmp_path, "--chunk-rows", "0")) == 2
    err = capsys.readouterr().err
    assert err == "torchlinreg: error: --chunk-rows must be a positive integer, got 0; pass e.g. --chunk-rows 65536\n"


def test_an_existing_model_file_without_force(tmp_path, capsys):
    model = tmp_path / "model"
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(OutputError) as info:
        run_fit(tutorial_data(20), TrainConfig(epochs=2), None, save=model, quiet=True, plots=False)
    message = str(info.value)
    assert "exists; pass force=True to replace it or choose another save path" in message
    assert not FLAG.search(message), message

    assert main(fit_args(tmp_path, "--save", str(model))) == 2
    err = capsys.readouterr().err
    assert "exists; pass --force to replace it or choose another --save path" in err and err.count("\n") == 1


def test_checkpoints_without_an_output_folder(tmp_path):
    with pytest.raises(ConfigError) as info:
        run_fit(tutorial_data(20), TrainConfig(epochs=2), None, checkpoint_every=1, quiet=True, plots=False)
    assert str(info.value) == "checkpoints need an output folder (out_dir) and one process (not torchrun)"
    # the command always has --out; this is how it would name the setting
    assert info.value.for_command(FLAGS) == "checkpoints need an output folder (--out) and one process (not torchrun)"


def test_a_convergence_warning_names_the_keyword_or_the_flag(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_fit(tutorial_data(20), TrainConfig(epochs=2, tol=1e-12), None, quiet=True, plots=False)
    message = next(str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning))
    assert message.endswith("the loss was still improving: raise epochs") and "--" not in message

    assert main(fit_args(tmp_path, "--tol", "1e-12")) == 0
    err = capsys.readouterr().err
    assert "torchlinreg: warning: the stopping rule (tol 1e-12, patience 5) was not met in 2 epochs; " \
           "the loss was still improving: raise --epochs\n" in err


@pytest.mark.parametrize("template, library, command", [
    ("{chunk_rows}", "chunk_rows", "--chunk-rows"),
    ("{chunk_rows=65536}", "chunk_rows=65536", "--chunk-rows 65536"),
    ("{engine='gram'}", "engine='gram'", "--engine gram"),
    ("{force=True}", "force=True", "--force"),
    ("{plots=False}", "plots=False", "--no-plots"),
    ("{statistics=True}", "statistics=True", "--summary"),
    ("{out_dir}", "out_dir", "--out"),
])
def test_render(template, library, command):
    assert render(f"pass {template}; got 'a {{b'") == f"pass {library}; got 'a {{b'"
    assert render(f"pass {template}; got 'a {{b'", FLAGS) == f"pass {command}; got 'a {{b'"


# ---- the rule, for every message in src ------------------------------------------------------------------------

MESSAGE_CALLS = {"ConfigError", "OutputError", "DataError", "warn"}


def _modules():
    return [p for p in sorted(SRC.rglob("*.py")) if p.name != "cli.py"]


def _message_texts(tree: ast.Module):
    """(line, text) of every string literal in the first argument of a ConfigError, OutputError, DataError or
    warnings.warn call, with the module-level strings such a call names (START_OVER, CHECKPOINT_NEEDS, ...)."""
    constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                 for t in node.targets if isinstance(t, ast.Name)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name not in MESSAGE_CALLS:
            continue
        for part in ast.walk(node.args[0]):
            if isinstance(part, ast.Name) and part.id in constants:
                part = constants[part.id]
            for leaf in ast.walk(part):
                if isinstance(leaf, ast.Constant) and isinstance(leaf.value, str):
                    yield leaf.lineno, leaf.value


def test_no_library_message_names_a_flag():
    found = []
    for path in _modules():
        for line, text in _message_texts(ast.parse(path.read_text(), str(path))):
            if FLAG.search(PLACEHOLDER.sub("", text)):
                found.append(f"{path.relative_to(SRC)}:{line}: {text!r}")
    assert not found, "name settings as {setting} or {setting=value} (errors.py), not as flags:\n" + "\n".join(found)


def test_text_from_the_user_is_not_taken_for_a_setting():
    """A column called "{x}" (or "{force}" spelt otherwise) in a message stays as the user wrote it."""
    error = DataError("data.csv: column '{x}' holds 'a'; pass {force} or fix it")
    assert str(error) == "data.csv: column '{x}' holds 'a'; pass force or fix it"
    assert error.for_command(FLAGS) == "data.csv: column '{x}' holds 'a'; pass --force or fix it"


def test_every_setting_a_message_names_is_a_flag_of_the_command():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command_name").choices.values()
    flags = {s for p in commands for a in p._actions for s in a.option_strings}
    names = set()
    for path in _modules():
        tree = ast.parse(path.read_text())
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # and other bare strings
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                names.update(m[1] for m in PLACEHOLDER.finditer(node.value))
    assert {"chunk_rows", "force", "out_dir", "max_memory", "epochs"} <= names
    assert names <= SETTINGS, f"add these to errors.SETTINGS: {sorted(names - SETTINGS)}"
    unknown = {n: render(f"{{{n}}}", FLAGS) for n in names if render(f"{{{n}}}", FLAGS) not in flags}
    assert not unknown, f"settings whose flag the command does not have (cli.FLAGS): {unknown}"


def test_library_messages_name_the_data_row_counted_from_1(tmp_path, capsys):
    """Row numbers are data rows from 1 (a file's header not counted) in the library as in the command: the 3rd
    row is "row 3" whether the rows are a Dataset fitted in chunks, arrays given to the statistics, or a CSV file."""
    import numpy as np

    from torchlinreg.data import Dataset
    from torchlinreg.formats import write_table
    from torchlinreg.statistics import regression_statistics

    X = np.arange(12.0).reshape(6, 2) ** 1.5
    y = X @ np.array([1.0, -2.0]) + 3
    X[2, 1] = np.nan  # the 3rd data row
    with pytest.raises(DataError, match=r"X has NaN or infinite values in 1 row \(the first is row 3\)"):
        regression_statistics(X, y)
    with pytest.raises(DataError, match=r"\(the first is row 3\)"):  # chunks of 2 rows: row 3 opens the 2nd chunk
        run_fit(Dataset(X, y), TrainConfig(epochs=1), None, chunk_rows=2, quiet=True, plots=False)
    with pytest.raises(ValueError, match=r"sample_weight has negative values \(the first is -1.0 in row 3\)"):
        torchlinreg.lstsq(np.nan_to_num(X), y, sample_weight=[1.0, 1.0, -1.0, 1.0, 1.0, 1.0])
    write_table(tmp_path / "d.csv", {"a": X[:, 0], "b": X[:, 1], "y": y})
    with pytest.raises(DataError, match="column 'b' .*row 3"):
        torchlinreg.read_dataset(tmp_path / "d.csv")
    assert main(["fit", str(tmp_path / "d.csv"), *fit_args(tmp_path)[1:]]) == 1
    assert "row 3" in capsys.readouterr().err
