"""The benchmark scripts still run (at --quick sizes) and print their tables."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["exact_fit.py", "epochs.py"])
def test_benchmark_runs_quick(script):
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| torchlinreg" in proc.stdout or "| gram engine" in proc.stdout
    assert "target:" in proc.stdout
