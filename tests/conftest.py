import os
import re
from pathlib import Path

import pytest
import realdata

TABLE = Path(__file__).parent / "data" / "tutorial_table.txt"
EPOCH_LINE = re.compile(r"epoch:\s+(\d+)\s+loss:\s+(\S+)\s+weight:\s+(\S+)\s+bias:\s+(\S+)")


@pytest.fixture(scope="session")
def tutorial_table():
    """The tutorial's printed output: the Weight/Bias lines, 50 epoch rows, the Current line."""
    lines = [ln for ln in TABLE.read_text().splitlines() if ln and not ln.startswith("#")]
    epochs = [tuple(float(v) for v in EPOCH_LINE.fullmatch(ln).groups()) for ln in lines if ln.startswith("epoch:")]
    return {
        "lines": lines,
        "weight_line": lines[0],
        "bias_line": lines[1],
        "epochs": [(int(e), loss, w, b) for e, loss, w, b in epochs],
        "current_line": lines[-1],
    }


# ---- where the run happened, and which fuzz profiles it runs ------------------------------------

# Settings that choose kernels (and so rounding): a failure report must say which were in force.
KERNEL_ENV = ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
              "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def run_header() -> str:
    """One line: the CPU, PyTorch's and NumPy's BLAS with their thread counts, the settings that choose kernels."""
    import torch  # noqa: F401  (so that machine() describes its BLAS)

    from torchlinreg.solve.kernels import ENVIRONMENT
    from torchlinreg.solve.machine import machine

    m = machine()
    settings = " ".join(f"{k}={os.environ[k]}" for k in KERNEL_ENV + (ENVIRONMENT,) if k in os.environ) or "none"
    return f"cpu: {m['cpu']}, {m['cores']} cores | {m['torch_blas']} | {m['numpy_blas']} | kernel settings: {settings}"


def pytest_sessionstart(session):
    """The run's first line, whatever the verbosity (-q hides pytest's own header)."""
    config = session.config
    lines = [run_header()]
    if config.getoption("fuzz"):
        import fuzzing
        lines.append(f"fuzz: seed {fuzzing.explore_seed()}, {fuzzing.explore_examples()} examples per property "
                     f"(rerun: make fuzz SEED={fuzzing.explore_seed()} EXAMPLES={fuzzing.explore_examples()})")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Under --fuzz: how many cases each property ran, so a run's size is a count, not an assumption."""
    if not config.getoption("fuzz"):
        return
    import fuzzing

    total = sum(fuzzing.CASES_RUN.values())
    per = ", ".join(f"{name} {count:,}" for name, count in fuzzing.CASES_RUN.items())
    terminalreporter.write_line(f"fuzz: seed {fuzzing.explore_seed()}, {total:,} cases run ({per})")


def pytest_addoption(parser):
    parser.addoption("--fuzz", action="store_true",
                     help="run only the random fuzz exploration (tests marked fuzz; see tests/fuzzing.py)")


def pytest_collection_modifyitems(config, items):
    """``fuzz`` tests run only under --fuzz, and then alone: make test never draws a fresh seed."""
    fuzz = config.getoption("fuzz")
    keep = [item for item in items if (item.get_closest_marker("fuzz") is not None) == fuzz]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in keep])
        items[:] = keep


@pytest.fixture(scope="session")
def chromium():
    """The headless browser the HTML pages are checked in (``scripts/install-chromium``); the test skips without it."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("Chromium not installed: run scripts/install-chromium")


@pytest.fixture(scope="module", params=realdata.NAMES)
def real(request, tmp_path_factory):
    """One of tests/realdata.py's eight data sets written to a CSV file: (name, path, frame, targets)."""
    name = request.param
    frame, targets = realdata.load(name)
    path = tmp_path_factory.mktemp(name) / f"{name}.csv"
    frame.to_csv(path, index=False)
    return name, path, frame, targets
