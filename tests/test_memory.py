"""--max-memory: sizes, the estimate of a file's size in memory, and the choice to stream it."""

import json

import numpy as np
import pytest

from torchlinreg import make_regression, write_table
from torchlinreg.data import dataset_columns
from torchlinreg.errors import ConfigError
from torchlinreg.memory import (FIT_COPIES, available_memory, default_budget, estimate_shape, format_size,
                                parse_size, plan_reading)


@pytest.mark.parametrize("text, expected", [("2G", 2 * 1024**3), ("500M", 500 * 1024**2), ("1.5GiB", 3 * 1024**3 // 2),
                                            ("64kb", 64 * 1024), ("1000", 1000), (" 1T ", 1024**4), (".5K", 512)])
def test_sizes_read_as_powers_of_1024(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "2X", "-1G", "two gigabytes", "1e9", "0", "0.0001K"])
def test_bad_sizes_say_what_a_size_looks_like(text):
    with pytest.raises(ConfigError, match="expected a size"):
        parse_size(text)


def test_format_size_reads_back():
    for n in (900, 3 * 1024**2, 5 * 1024**3):
        # format_size shows 3 significant digits: reading it back is within half a unit, rel ≤ 5e-3
        assert parse_size(format_size(n).replace(" ", "")) == pytest.approx(n, rel=1e-2)


def test_the_default_budget_is_half_of_the_available_memory_shared_by_local_ranks(monkeypatch):
    room = available_memory()  # MemAvailable moves between reads on a busy machine: compare loosely
    assert room is not None and room > 0
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_budget() == pytest.approx(room / 2, rel=0.5)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # as torchrun sets it for 4 processes on this machine
    assert default_budget() == pytest.approx(room / 8, rel=0.5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memory")
    data = make_regression(5000, 4, 1, seed=3)
    columns = dataset_columns(data)
    paths = {suffix: write_table(folder / f"d{suffix}", columns) for suffix in (".csv", ".tsv", ".parquet")}
    paths[".npy"] = folder / "d.npy"
    np.save(paths[".npy"], np.column_stack(list(columns.values())))
    parts = folder / "parts"
    parts.mkdir()
    for i in range(3):
        write_table(parts / f"p{i}.parquet", dataset_columns(make_regression(1000, 4, 1, seed=i)))
    paths["folder"] = parts
    return paths


def test_shapes_come_from_metadata_or_the_first_bytes(files):
    assert estimate_shape(files[".parquet"]) == (5000, 5)
    assert estimate_shape(files[".npy"]) == (5000, 5)
    assert estimate_shape(files["folder"]) == (3000, 5)
    for suffix in (".csv", ".tsv"):  # under 1 MiB: the first MiB is the whole file, so exact
        assert estimate_shape(files[suffix]) == (5000, 5)


def test_a_large_csv_is_estimated_from_its_first_mib(tmp_path):
    data = make_regression(60_000, 3, 1, seed=1)  # about 4 MB of text
    path = write_table(tmp_path / "big.csv", dataset_columns(data))
    rows, columns = estimate_shape(path)
    assert columns == 4 and rows == pytest.approx(60_000, rel=0.05)  # an estimate from the bytes of the first MiB


def test_a_file_streams_when_its_copies_exceed_the_budget(files):
    rows, columns = 5000, 5
    need = rows * columns * 8 * FIT_COPIES
    assert not plan_reading(files[".parquet"], need).stream
    over = plan_reading(files[".parquet"], need - 1)
    assert over.stream and "over the" in over.reason and "--max-memory" in over.reason
    assert plan_reading(files[".csv"], need, stream=True).stream
    assert plan_reading(files["folder"], 1 << 40).stream  # a folder always streams


def test_npy_cannot_stream_and_is_refused_over_the_budget(files):
    assert not plan_reading(files[".npy"], 1 << 30).stream
    with pytest.raises(ConfigError, match="read whole.*Parquet"):
        plan_reading(files[".npy"], 1000)
    with pytest.raises(ConfigError, match="stream=True was asked for"):
        plan_reading(files[".npy"], 1 << 30, stream=True)


def test_too_many_columns_for_the_factor_are_refused_whatever_the_rows(tmp_path, capsys):
    from torchlinreg.cli import main
    from torchlinreg.memory import DECOMPOSITION_COPIES, FACTOR_COPIES, plan_reading

    wide = tmp_path / "wide.csv"
    columns = 3000
    wide.write_text(",".join(f"x{j}" for j in range(columns)) + "\n" + ",".join("1" for _ in range(columns)) + "\n")
    # R of [X, 1, y] is (columns + 2)² float64 (about 72 MB), its accumulation and its decomposition
    # several such arrays each: about 1.3 GB, where three rows of data would need far less
    need = (columns + 2) ** 2 * 8 * (FACTOR_COPIES + DECOMPOSITION_COPIES)
    with pytest.raises(ConfigError, match="1 rows x 3,000 columns: the R factor .* decomposition about"):
        plan_reading(wide, budget=need - 1)
    assert not plan_reading(wide, budget=need + (1 << 20)).stream  # just enough room: read whole
    code = main(["fit", str(wide), "--max-memory", "100M", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "the R factor" in err[-1] and "--features" in err[-1] and "--max-memory" in err[-1]
    assert not (tmp_path / "out").exists()
    # solve reads fewer rows than columns whole and solves them through the rows' side (solve.wide)
    assert main(["solve", str(wide), "--max-memory", "100M"]) == 0
    code = main(["solve", str(wide), "--max-memory", "100M", "--stream"])  # streamed, R is needed: refused
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "without --stream" in err[-1]


def test_the_factor_counts_the_columns_chosen_with_features_not_the_files_width(tmp_path, capsys):
    """The refusal above says "choose fewer columns with --features": doing so must then work."""
    from torchlinreg.cli import main
    from torchlinreg.memory import FACTOR_COPIES, plan_reading

    wide = tmp_path / "wide.csv"
    columns = 3000
    rows = np.random.default_rng(2).integers(-9, 10, (20, columns))
    wide.write_text(",".join(f"x{j}" for j in range(columns)) + "\n" + "\n".join(",".join(map(str, r)) for r in rows)
                    + "\n")
    need = (columns + 1) ** 2 * 8 * FACTOR_COPIES
    assert plan_reading(wide, budget=need - 1, n_selected=3, command="solve", one_pass=True).stream
    code = main(["solve", str(wide), "--max-memory", "100M", "--features", "x1", "x2", "--target", "x3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert list(json.loads(out)["coef"]["x3"]) == ["x1", "x2"]
