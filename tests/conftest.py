import re
from pathlib import Path

import pytest

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
