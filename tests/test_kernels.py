"""The block step's kernels (``solve.kernels``): every kernel gives the same Gram matrix, and so the
same R, to the bound of the computation; the measured choice; the forced choice; the thread settings
put back; where the run happened.

Error bound used throughout (Higham, *Accuracy and Stability of Numerical Algorithms*, §3.1):
each entry of ``B = √w ([X, y] - μ)`` is formed with at most 2 roundings (the shift, the product
by an exact ``√w``), and an inner product of k such entries, summed in any order and grouping
(tiles, threads, BLAS blocking), is within ``γ_{k+2} (|B|ᵀ|B|)_ij`` of the exact one, with
``γ_n = n u / (1 - n u)``, ``u = 2⁻⁵³``. The references are exact rational arithmetic.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from torchlinreg.errors import ConfigError
from torchlinreg.solve import QRAccumulator, kernels
from torchlinreg.solve.machine import machine, machine_record
from torchlinreg.solve.blocks import _Rows
from torchlinreg.solve.kernels import Kernel, set_kernel, shifted_gram

U = 2.0 ** -53

KERNELS = [Kernel(library, threads, tile, product) for library in ("numpy", "torch") for threads in (None, 1, 2, 3)
           for tile in (8 * 1024, 2 * 1024 * 1024) for product in ("syrk", "gemm") if library == "numpy" or
           product == "syrk"]


def gamma(n: int) -> float:
    return n * U / (1 - n * U)


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    """Each test starts with no measurement made and nothing forced, and leaves none behind."""
    monkeypatch.delenv(kernels.ENVIRONMENT, raising=False)
    monkeypatch.setattr(kernels, "_CHOICES", {})
    previous = set_kernel(None)
    yield
    set_kernel(previous)


def problem(rows: int = 700, d: int = 4, m: int = 1, *, weighted: bool = False, dtype=np.float64, seed: int = 3):
    """Data with means far from their spread (the shift matters), and weights that are exact squares."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(rows, d)) * np.logspace(-2, 2, d) + rng.uniform(-50, 50, d)).astype(dtype)
    y = (X.astype(np.float64) @ rng.normal(size=(d, m)) + rng.normal(size=(rows, m))).astype(dtype)
    w = (rng.integers(0, 9, rows) / 4.0) ** 2 if weighted else None  # √w = integer / 4: exact
    mu = np.concatenate([X[:5].mean(axis=0, dtype=np.float64), y[:5].mean(axis=0, dtype=np.float64)])
    return X, y, w, mu


def exact_gram(X, y, w, mu) -> tuple[np.ndarray, np.ndarray]:
    """``BᵀB`` in exact rationals rounded once to float64, and ``|B|ᵀ|B|`` (for the bound)."""
    A = np.hstack([X.astype(np.float64), y.astype(np.float64)])
    root = np.ones(len(A)) if w is None else np.sqrt(w)
    cols = [[Fraction(float(r)) * (Fraction(float(a)) - Fraction(float(m))) for a, r in zip(A[:, j], root)]
            for j, m in enumerate(mu)] + [[Fraction(float(r)) for r in root]]
    q = len(cols)
    G = np.array([[float(sum(a * b for a, b in zip(cols[i], cols[j]))) for j in range(q)] for i in range(q)])
    B = np.abs(np.array([[float(v) for v in c] for c in cols]).T)
    return G, B.T @ B


def rows_of(X, y, layout: str) -> _Rows:
    if layout == "rows":
        return _Rows(X, y)
    return _Rows(columns=[X[:, j] for j in range(X.shape[1])] + [y[:, j] for j in range(y.shape[1])],
                 n_features=X.shape[1])


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
@pytest.mark.parametrize("layout", ["rows", "columns"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_every_kernel_gives_the_gram_matrix_to_the_bound(kernel, layout, weighted):
    X, y, w, mu = problem(weighted=weighted)
    reference, magnitude = exact_gram(X, y, w, mu)
    set_kernel(kernel)
    G = shifted_gram(rows_of(X, y, layout), w, mu)
    assert G.shape == reference.shape and G.dtype == np.float64
    bound = gamma(len(X) + 2) * magnitude + 2 * U * np.abs(reference)  # + the reference's own rounding
    assert np.all(np.abs(G - reference) <= bound), (np.abs(G - reference) / magnitude).max()


@pytest.mark.parametrize("kernel", [Kernel("numpy", None), Kernel("torch", 2, 8192), Kernel("numpy", 1, 8192, "gemm"),
                                    Kernel("torch", 1, 8192)], ids=str)
@pytest.mark.parametrize("layout", ["rows", "columns"])
def test_float32_values_are_shifted_in_float64(kernel, layout):
    X, y, w, mu = problem(dtype=np.float32, m=2)
    reference, magnitude = exact_gram(X, y, w, mu)  # of the float32 values, taken exactly
    set_kernel(kernel)
    G = shifted_gram(rows_of(X, y, layout), w, mu)
    assert np.all(np.abs(G - reference) <= gamma(len(X) + 2) * magnitude + 2 * U * np.abs(reference))


def test_every_kernel_gives_the_same_solution():
    """The R factor (a Cholesky factorisation of the Gram matrix, cond ≈ 1e4 after scaling) and the
    solution agree across kernels far inside what float64 least squares promises (eps·cond ≈ 1e-12)."""
    X, y, _, _ = problem(rows=3000, d=6, seed=5)
    solutions = []
    for kernel in KERNELS:
        set_kernel(kernel)
        solutions.append(QRAccumulator(6).update(X, y).solve())
    reference = solutions[0]
    for kernel, s in zip(KERNELS, solutions):
        scale = np.abs(np.r_[reference.coef.ravel(), reference.intercept]).max()
        assert np.abs(np.r_[s.coef.ravel(), s.intercept] - np.r_[reference.coef.ravel(), reference.intercept]).max() \
            <= 1e-9 * scale, kernel


def test_the_first_blocks_measure_every_candidate_and_the_answer_stays_exact(monkeypatch):
    """Slices of a small block go to the candidates in turn (each slice's Gram matrix is part of the
    answer); the choice is then kept for the shape class and reported."""
    monkeypatch.setattr(kernels, "SLICE_BYTES", 6 * 100 * 8)  # 100 rows of 6 columns
    monkeypatch.setattr(kernels, "LEAST_SLICE_BYTES", 6 * 50 * 8)
    X, y, w, mu = problem(rows=2000)
    reference, magnitude = exact_gram(X, y, w, mu)
    G = shifted_gram(rows_of(X, y, "rows"), w, mu)
    assert np.all(np.abs(G - reference) <= gamma(len(X) + 2) * magnitude + 2 * U * np.abs(reference))
    (choice,) = kernels._CHOICES.values()
    assert not choice.measuring
    libraries = {k.library for k in choice.times}
    assert libraries == {"numpy", "torch"}  # torch is imported here: every candidate timed
    splits = {k.threads for k in choice.times}
    assert 1 in splits and None not in splits  # the libraries' own threads only when forced
    tiles = {k.tile_bytes for k in choice.times if (k.library, k.threads) == (choice.best().library,
                                                                                choice.best().threads)}
    assert tiles == set(kernels.TILE_BYTES)
    (line,) = kernels.chosen().values()
    assert line.startswith(str(choice.best())) and "measured" in line
    assert choice.best() == min(choice.times, key=choice.times.get)  # on full slices


def test_small_calls_are_not_measured_and_say_so():
    X, y, w, mu = problem(rows=100)
    shifted_gram(rows_of(X, y, "rows"), w, mu)
    (line,) = kernels.chosen().values()
    assert "not measured" in line


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_a_kernel_is_repeated_by_its_spec(kernel):
    assert Kernel.parse(kernel.spec) == kernel


def test_a_solution_records_the_kernel_its_blocks_took(monkeypatch):
    """What summary.json records: the kernel, how it was chosen and the setting that repeats it; a rerun
    with that setting gives the same bits (the measured choice may differ between processes)."""
    monkeypatch.setattr(kernels, "SLICE_BYTES", 6 * 100 * 8)
    monkeypatch.setattr(kernels, "LEAST_SLICE_BYTES", 6 * 50 * 8)
    X, y, _, _ = problem(rows=5000)
    first = QRAccumulator(4).update(X, y).solve()
    (line,) = first.kernels.values()
    assert "(measured; TORCHLINREG_KERNEL=" in line
    spec = line.split("TORCHLINREG_KERNEL=")[1].split()[0]
    monkeypatch.setenv(kernels.ENVIRONMENT, spec)
    again = [QRAccumulator(4).update(X, y).solve() for _ in range(2)]
    assert "forced" in next(iter(again[0].kernels.values()))
    assert np.array_equal(again[0].coef, again[1].coef) and np.array_equal(again[0].intercept, again[1].intercept)


def test_kernel_texts_parse():
    assert Kernel.parse("numpy") == Kernel("numpy", None)
    assert Kernel.parse("torch,own") == Kernel("torch", None)
    assert Kernel.parse("numpy,1,512,gemm") == Kernel("numpy", 1, 512 * 1024, "gemm")
    assert str(Kernel("numpy", 2, 512 * 1024, "gemm")) == \
        "numpy (rows split over 2 threads, tiles of 512 KiB, GEMM on 256 KiB pieces)"


def test_a_forced_kernel_from_the_environment(monkeypatch):
    monkeypatch.setenv(kernels.ENVIRONMENT, "numpy,2,64")
    X, y, w, mu = problem()
    shifted_gram(rows_of(X, y, "rows"), w, mu)
    assert kernels._CHOICES == {}  # nothing measured
    assert kernels.chosen() == {"every shape": "numpy (rows split over 2 threads, tiles of 64 KiB) "
                                               "(forced by TORCHLINREG_KERNEL or set_kernel)"}


@pytest.mark.parametrize("text, words", [
    ("blas", "is not a kernel"), ("numpy,two", "whole numbers"), ("torch,0", "at least 1"),
    ("numpy,2,4", "at least 8 KiB"), ("numpy,2,64,9", "is not a kernel"), ("torch,2,64,gemm,1", "is not a kernel"),
])
def test_a_bad_kernel_setting_names_the_variable_and_the_fix(monkeypatch, text, words):
    monkeypatch.setenv(kernels.ENVIRONMENT, text)
    X, y, w, mu = problem(rows=50)
    with pytest.raises(ConfigError, match=words) as info:
        shifted_gram(rows_of(X, y, "rows"), w, mu)
    assert "TORCHLINREG_KERNEL" in str(info.value) and "e.g. numpy,2,2048" in str(info.value)


def test_the_command_refuses_a_bad_kernel_setting_in_one_line(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(20)))
    env = {**__import__("os").environ, "TORCHLINREG_KERNEL": "fortran"}
    done = subprocess.run([sys.executable, "-m", "torchlinreg", "solve", str(data), "--target", "y"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "TORCHLINREG_KERNEL" in lines[0] and "Traceback" not in done.stderr


def test_thread_settings_are_put_back():
    """A pass sets the libraries to one thread between its products and splits rows among its own
    threads; afterwards PyTorch's and NumPy's BLAS have the thread counts they had."""
    from threadpoolctl import threadpool_info

    before_torch = torch.get_num_threads()
    before_blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    X, y, _, _ = problem(rows=20000, d=8)
    for kernel in (None, Kernel("torch", 2, 8192), Kernel("numpy", 2, 8192), Kernel("torch", None)):
        set_kernel(kernel)
        QRAccumulator(8).update(X, y).solve()
    assert torch.get_num_threads() == before_torch
    assert [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"] == before_blas


def test_machine_names_the_cpu_and_both_libraries():
    m = machine()
    assert m["cpu"] and m["cores"].isdigit()
    assert m["numpy_blas"].startswith("numpy ") and m["torch_blas"].startswith("torch ")
    record = machine_record()
    assert set(record) == set(m) | {"kernels"}
