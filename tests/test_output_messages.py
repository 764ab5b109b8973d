"""A write that fails names the option of the command that chose where (issue 15, finding 13).

``atomic_write_bytes`` said "pass --out with another folder" whatever was written, but only
``fit`` has ``--out``: ``predict`` and ``make-data`` write the file of their ``-o/--output``.
The disk fills as in tests/test_outputs.py (ENOSPC in the middle of the write).
"""

import pytest

from test_outputs import DiskFills
from torchlinreg import modelfiles, outputs
from torchlinreg.cli import build_parser, main


def _option_strings(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command_name")
    return {s for action in sub.choices[command]._actions for s in action.option_strings}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    assert main(["fit", "--epochs", "2", "--quiet", "--no-plots", "--out", str(folder / "run"),
                 "--save", str(folder / "m")]) == 0
    assert main(["make-data", "-o", str(folder / "rows.csv")]) == 0
    return folder / "m", folder / "rows.csv"


@pytest.mark.parametrize("command", ["predict", "make-data"])
def test_a_full_disk_names_the_commands_own_output_option(command, saved_model, tmp_path, capsys, monkeypatch):
    model, rows = saved_model
    target = tmp_path / "written.csv"
    argv = {"predict": ["predict", str(model), str(rows), "-o", str(target)],
            "make-data": ["make-data", "-o", str(target)]}[command]
    capsys.readouterr()
    monkeypatch.setattr(outputs, "os", DiskFills())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "--out " not in err and "--output" in err, err  # the option this command has
    assert {"-o", "--output"} <= _option_strings(command) and "--out" not in _option_strings(command)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_a_full_disk_during_fit_still_names_out(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(outputs, "os", DiskFills())
    assert main(["fit", "--epochs", "2", "--quiet", "--no-plots", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "pass --out with another folder" in err, err


class _ReplaceFails:
    """``outputs``' view of ``os`` in which putting a file whose name ends in ``suffix`` in place hits a full disk."""

    def __init__(self, suffix: str):
        self.suffix = suffix

    def replace(self, src, dst, *args, **kwargs):
        import errno
        import os

        if str(dst).endswith(self.suffix):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.replace(src, dst, *args, **kwargs)

    def __getattr__(self, name):
        import os

        return getattr(os, name)


def test_a_full_disk_while_saving_the_model_names_save(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(modelfiles, "os", _ReplaceFails(".safetensors"))  # the model pair's own writer
    assert main(["fit", "--epochs", "2", "--quiet", "--no-plots", "--out", str(tmp_path / "run"),
                 "--save", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err, err
    assert "choose another --save path" in err, err
