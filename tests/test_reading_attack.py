"""Attacks on reading data (issue 15, findings 4, 9, 10, 11): a footer that lies about its rows, a CSV
field longer than a block, column names holding terminal escapes, folders holding what is not a data file.
Each test reproduces the attack and checks the promise: the right rows, or one line naming the problem."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fuzzing import run_cli
from parquet_footer import CHUNK_VALUES, FILE_ROWS, GROUP_ROWS, rewrite_footer
from torchlinreg import formats
from torchlinreg.errors import DataError
from torchlinreg.filesource import open_files

GROUPS, GROUP = 8, 2500  # the 8 row groups, a hundredth of their rows


def _refused(code: int, out: str, err: str, *words: str) -> None:
    """Exit 1 with one line on stderr holding ``words``, and no result printed."""
    assert code == 1, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Least-squares solution" not in out and "Trained model" not in out


# ---- finding 4: a Parquet footer that claims other row counts than its pages hold ---------------

@pytest.fixture(scope="module")
def honest_parquet(tmp_path_factory) -> Path:
    """8 row groups of 2,500 rows: y = 2x + 1 + noise."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal(GROUPS * GROUP)
    path = tmp_path_factory.mktemp("footer") / "honest.parquet"
    pq.write_table(pa.table({"x": x, "y": 2 * x + 1 + 0.1 * rng.standard_normal(len(x))}), path,
                   row_group_size=GROUP)
    return path


LIES = {  # name: (footer edits, the row group a message names)
    # the file: every row group claims a twentieth of its rows, the total agrees with them
    "groups-short": ({GROUP_ROWS: lambda g: GROUP // 20, FILE_ROWS: lambda: GROUPS * GROUP // 20}, 1),
    # the row groups claim fewer rows, the total the right number
    "total-right": ({GROUP_ROWS: lambda g: GROUP // 20}, None),
    # one row group claims more rows than its pages hold
    "one-long": ({GROUP_ROWS: lambda g: GROUP + 500 * (g == 2), FILE_ROWS: lambda: GROUPS * GROUP + 500}, 3),
    # ... and its column chunks' value counts agree with the lie: only the pages tell
    "one-long-values": ({GROUP_ROWS: lambda g: GROUP + 500 * (g == 2), FILE_ROWS: lambda: GROUPS * GROUP + 500,
                         CHUNK_VALUES: lambda g, c: GROUP + 500 * (g == 2)}, 3),
    # one row group claims fewer rows, the others more, the total right
    "shuffled": ({GROUP_ROWS: lambda g: GROUP - 700 if g == 4 else GROUP + 100}, None),
}


@pytest.fixture(scope="module", params=sorted(LIES))
def lying_parquet(request, honest_parquet) -> tuple[Path, int | None]:
    edits, group = LIES[request.param]
    path = honest_parquet.with_name(f"{request.param}.parquet")
    path.write_bytes(rewrite_footer(honest_parquet.read_bytes(), edits))
    return path, group


def _group_words(path: Path, group: int | None) -> tuple[str, ...]:
    return (str(path), "damaged") + ((f"row group {group}",) if group else ())


def test_the_rewritten_footer_claims_what_the_attack_says(honest_parquet, lying_parquet):
    """The test's own footer writer: pyarrow reads the lie back (and the honest file is untouched)."""
    path, _ = lying_parquet
    claimed = pq.ParquetFile(path).metadata
    honest = pq.ParquetFile(honest_parquet).metadata
    assert honest.num_rows == GROUPS * GROUP
    assert claimed.num_row_groups == GROUPS
    assert [claimed.row_group(g).num_rows for g in range(GROUPS)] != [GROUP] * GROUPS


@pytest.mark.parametrize("how", ["whole", "streamed"])
def test_a_footer_lying_about_rows_is_refused_by_the_library(lying_parquet, how):
    path, group = lying_parquet
    with pytest.raises(DataError) as caught:
        if how == "whole":
            formats.read_dataset(path, target=["y"])
        else:
            source = open_files(path, target=["y"])
            for _ in source.chunks(1000):
                pass
    for word in _group_words(path, group):
        assert word in str(caught.value)


@pytest.mark.parametrize("argv", [["solve"], ["solve", "--stream"], ["fit", "--epochs", "2"],
                                  ["fit", "--epochs", "2", "--stream"]])
def test_a_footer_lying_about_rows_is_refused_by_the_command(tmp_path, lying_parquet, argv):
    """The issue's attack: exit 0 and "100000 rows" with --stream before; one line and exit 1 now."""
    path, group = lying_parquet
    out = ["--out", tmp_path / "out"] if argv[0] == "fit" else []
    _refused(*run_cli(argv[0], path, "--target", "y", *argv[1:], *out), *_group_words(path, group))
    assert not (tmp_path / "out").exists()


def test_an_honest_file_reads_every_row_whole_and_streamed(honest_parquet):
    expected = pq.read_table(honest_parquet)
    whole = formats.read_dataset(honest_parquet, target=["y"])
    assert whole.X.shape == (GROUPS * GROUP, 1)
    streamed = np.concatenate([X for X, _, _ in open_files(honest_parquet, target=["y"]).chunks(999)])
    np.testing.assert_array_equal(streamed[:, 0], expected.column("x").to_numpy())
    np.testing.assert_array_equal(whole.X.numpy()[:, 0], expected.column("x").to_numpy())


# ---- finding 9: a CSV field longer than pyarrow's block ---------------------------------------------

LONG_ROW = 1001  # the data row holding the long field (the issue's)


def _long_field_csv(path: Path, field_bytes: int, rows: int = 3000, newline: bytes = b"\n") -> np.ndarray:
    """A CSV of x, notes, y = 2x + 1 whose row ``LONG_ROW`` has a quoted notes field of ``field_bytes``
    (commas, doubled quotes and newlines inside); the x values, for the reference."""
    x = np.random.default_rng(9).standard_normal(rows)
    unit = b'ab, ""c""\n x '  # 13 bytes: a comma, a doubled quote and a newline inside the quotes
    with open(path, "wb") as f:
        f.write(b"x,notes,y" + newline)
        for i, value in enumerate(x):
            notes = b'"' + unit * (field_bytes // len(unit)) + b'"' if i + 1 == LONG_ROW else b"n"
            f.write(b"%r,%s,%r" % (float(value), notes, float(2 * value + 1)) + newline)
    return x


@pytest.fixture(scope="module")
def long_field(tmp_path_factory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("long") / "notes.csv"
    return path, _long_field_csv(path, 3 << 20)


def test_a_long_quoted_field_reads_whole_and_streamed(long_field):
    """The 3 MB field straddled pyarrow's 1 MiB block: "straddling object straddles two block boundaries"."""
    path, x = long_field
    whole = formats.read_dataset(path, target=["y"])
    np.testing.assert_array_equal(whole.X.numpy()[:, 0], x)
    np.testing.assert_array_equal(whole.y.numpy()[:, 0], 2 * x + 1)
    chunks = list(open_files(path, target=["y"]).chunks(700))
    np.testing.assert_array_equal(np.concatenate([X for X, _, _ in chunks])[:, 0], x)


@pytest.mark.parametrize("argv", [["solve"], ["solve", "--stream"], ["fit", "--epochs", "3"],
                                  ["fit", "--epochs", "3", "--stream"]])
def test_a_long_quoted_field_is_read_by_every_command_path(tmp_path, long_field, argv):
    """solve streams through the parallel piece parser; fit reads whole or streams."""
    path, x = long_field
    out = ["--out", tmp_path / "out", "--no-plots"] if argv[0] == "fit" else []
    code, stdout, err = run_cli(argv[0], path, "--target", "y", *argv[1:], *out)
    assert code == 0, err
    assert f"{len(x)} rows" in stdout or argv[0] == "fit", stdout


def test_a_long_field_in_a_file_of_carriage_returns_is_read_by_pyarrows_streaming_reader(tmp_path):
    """Rows ended by \\r\\n and a lone \\r are not split by the piece parser: pyarrow's streaming reader
    grows its block instead, and the rows already given are not given again."""
    path = tmp_path / "cr.csv"
    x = _long_field_csv(path, 3 << 20, rows=1500, newline=b"\r")
    chunks = list(open_files(path, target=["y"]).chunks(500))
    np.testing.assert_array_equal(np.concatenate([X for X, _, _ in chunks])[:, 0], x)


@pytest.mark.parametrize("where", ["field", "header"])
def test_a_row_longer_than_the_budget_allows_is_refused_by_number(tmp_path, where):
    """--max-memory 16M lets a CSV row take 2 MiB (an eighth): a 5 MB field or header is one line naming it."""
    path = tmp_path / "long.csv"
    if where == "field":
        _long_field_csv(path, 5 << 20)
        named = f"row {LONG_ROW}"
    else:
        path.write_text('x,"' + "n" * (5 << 20) + '",y\n' + "".join(f"{i},1,{2 * i}\n" for i in range(100)))
        named = "the header line"
    for command in ("solve", "fit"):
        out = ["--out", tmp_path / "out"] if command == "fit" else []
        code, stdout, err = run_cli(command, path, "--target", "y", "--features", "x", "--max-memory", "16M",
                                    "--stream", *out)
        _refused(code, stdout, err, str(path), named, "--max-memory", "2 MiB")
        assert not (tmp_path / "out").exists()


# ---- finding 10: column names holding terminal escape sequences ---------------------------------------

HOSTILE = "a\nb\x1b[31mRED\x1b]0;pwned\x07\x1b[0m"  # a newline, a colour, a window title, a bell


def test_shown_name_escapes_what_is_not_printable_and_keeps_the_rest():
    from torchlinreg.shown import shown_name

    assert shown_name("x1 (€/m²)") == "x1 (€/m²)"
    shown = shown_name(HOSTILE)
    assert shown == repr(HOSTILE)[1:-1]  # as repr escapes it, without the quotes
    assert shown.isprintable()


@pytest.fixture(scope="module")
def hostile_parquet(tmp_path_factory) -> Path:
    rng = np.random.default_rng(10)
    x, z = rng.standard_normal((2, 200))
    path = tmp_path_factory.mktemp("names") / "names.parquet"
    pq.write_table(pa.table({HOSTILE: x, "z": z, "y" + HOSTILE: 2 * x - z + 1 + 0.1 * rng.standard_normal(200)}),
                   path)
    return path


@pytest.mark.parametrize("argv", [["solve"], ["solve", "--summary"], ["solve", "--json"],
                                  ["fit", "--epochs", "3", "--no-plots", "--summary"],
                                  ["fit", "--epochs", "3", "--no-plots", "--stream"]])
def test_escape_sequences_in_column_names_never_reach_the_terminal(tmp_path, hostile_parquet, argv):
    """The names were printed raw in fit's trained-model table and solve's output: they recoloured the
    terminal, set its title and broke the table. Now every table shows them escaped."""
    out = ["--out", tmp_path / "out"] if argv[0] == "fit" else []
    code, stdout, err = run_cli(argv[0], hostile_parquet, *argv[1:], *out)
    assert code == 0, err
    text = stdout + err
    assert "\x1b" not in text and "\x07" not in text
    assert not any(line.startswith("b\\x1b") or line.startswith("b\x1b") for line in text.splitlines())
    if argv[1:2] != ["--json"]:
        assert repr(HOSTILE)[1:-1] in stdout  # the name shown, escaped, in the table
    if argv[0] == "fit":  # the files keep the real name
        import json

        assert HOSTILE in json.loads((tmp_path / "out" / "summary.json").read_text())["features"]


# ---- finding 11: folders holding what is not a data file, and a data folder as --out ---------------------

@pytest.fixture
def parts(tmp_path) -> Path:
    """A folder of two Parquet parts of y = 2 x1 + 1."""
    folder = tmp_path / "parts"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for k in range(2):
        x = rng.standard_normal(50)
        pq.write_table(pa.table({"x1": x, "y": 2 * x + 1}), folder / f"p{k}.parquet")
    return folder


@pytest.mark.parametrize("entry, words", [("dangling", "symbolic link to nothing"), ("fifo", "FIFO"),
                                          ("folder", "is a folder")])
def test_a_data_name_that_is_not_a_regular_file_is_refused_by_name(parts, entry, words):
    """A dangling b.parquet symlink, a FIFO named b.parquet, a folder named b.parquet: skipped silently
    before (the FIFO can also block a read forever); now one line naming it, exit 1."""
    bad = parts / "b.parquet"
    if entry == "dangling":
        bad.symlink_to(parts / "missing.parquet")
    elif entry == "fifo":
        os.mkfifo(bad)
    else:
        bad.mkdir()
    with pytest.raises(DataError, match=words):
        open_files(parts, target="y")
    _refused(*run_cli("solve", parts, "--target", "y"), str(bad), words)


def test_a_fifo_as_data_is_refused_before_anything_reads_it(tmp_path):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    for command in ("solve", "fit"):
        _refused(*run_cli(command, fifo, "--target", "y", *(["--out", tmp_path / "o"] if command == "fit" else [])),
                 str(fifo), "not a regular file")


def test_a_subfolder_and_other_files_are_named_in_a_warning_and_not_read(parts):
    (parts / "sub").mkdir()
    pq.write_table(pa.table({"x1": [1.0], "y": [100.0]}), parts / "sub" / "p9.parquet")
    (parts / "notes.txt").write_text("not data")
    (parts / "_SUCCESS").write_text("")  # Spark's marker, and hidden files: left out without a word
    with pytest.warns(UserWarning) as caught:
        source = open_files(parts, target="y")
    assert len(caught) == 1 and "'sub' (a folder)" in str(caught[0].message) and "'notes.txt'" in str(caught[0].message)
    assert [p.name for p in source.paths] == ["p0.parquet", "p1.parquet"]
    code, out, err = run_cli("solve", parts, "--target", "y")
    assert code == 0 and "100 rows" in out and "'sub' (a folder)" in err


@pytest.mark.parametrize("out", [".", "out", "out/deeper"])
def test_the_data_folder_or_a_folder_inside_it_cannot_be_out(tmp_path, parts, out):
    """`fit parts --out parts` wrote its history.csv among the parts; the next run failed on it."""
    before = sorted(p.name for p in parts.iterdir())
    code, stdout, err = run_cli("fit", parts, "--target", "y", "--epochs", "2", "--out", parts / out)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "data folder" in err and "--out" in err
    assert sorted(p.name for p in parts.iterdir()) == before  # nothing written


def test_run_fit_refuses_a_streamed_data_folder_as_out_dir(parts):
    from torchlinreg.errors import ConfigError
    from torchlinreg.fitting import run_fit
    from torchlinreg.sources import open_source

    source = open_source(parts, target="y", stream=True)
    with pytest.raises(ConfigError, match="data folder"):
        run_fit(source, out_dir=parts)
    assert sorted(p.name for p in parts.iterdir()) == ["p0.parquet", "p1.parquet"]


def test_data_inside_what_fit_writes_cannot_be_read_from_there(tmp_path):
    """DATA out/history.csv (a file fit writes) or a folder out/checkpoint: refused, as a file was before."""
    out = tmp_path / "out"
    (out / "checkpoint").mkdir(parents=True)
    (out / "history.csv").write_text("x,y\n1,3\n2,5\n3,7\n")
    (out / "checkpoint" / "d.csv").write_text("x,y\n1,3\n2,5\n3,7\n")
    for data in (out / "history.csv", out / "checkpoint"):
        code, _, err = run_cli("fit", data, "--target", "y", "--epochs", "2", "--out", out)
        assert code == 2 and "fit writes into --out" in err, err
