"""The tutorial's numbers, and the library's limit on data values, named once.

Every default in torchlinreg that comes from "Linear Regression with PyTorch" is defined
here and nowhere else. This module imports nothing heavy, so the command line can show
these defaults in ``--help`` without loading PyTorch.
"""

# Data: y = TRUE_WEIGHT * x + TRUE_BIAS + e, x evenly spaced, e integer noise.
N_SAMPLES = 50  # number of points
X_START = 1.0  # first x value
X_STOP = 50.0  # last x value (inclusive, as torch.linspace)
TRUE_WEIGHT = 2.0
TRUE_BIAS = 1.0
NOISE_LOW = -8  # smallest noise value, inclusive
NOISE_HIGH = 8  # largest noise value, inclusive (torch.randint(-8, 9) in the tutorial)
DATA_SEED = 71  # torch.manual_seed(71) before the noise is drawn
# The keywords (and flags) that shape the tutorial's data only, with their defaults: no multivariate data set.
TUTORIAL_ONLY = {"x_start": X_START, "x_stop": X_STOP, "true_weight": TRUE_WEIGHT, "true_bias": TRUE_BIAS,
                 "noise_low": NOISE_LOW, "noise_high": NOISE_HIGH}

# Model: nn.Linear(1, 1) built right after torch.manual_seed(59).
IN_FEATURES = 1
OUT_FEATURES = 1
MODEL_SEED = 59

# Training: full-batch SGD on the MSE loss.
EPOCHS = 50
LR = 0.001
MOMENTUM = 0.0
WEIGHT_DECAY = 0.0

# Where `torchlinreg fit` writes plots and the history unless told otherwise.
OUTPUT_DIR = "torchlinreg-output"

# The library's limit on data values: beyond it, squared residuals and sums of squares can overflow float64.
MAX_MAGNITUDE = 1e150

# Passes over the data: rows per chunk (5 MiB of float64 at 10 columns; amortises reading and checking a
# chunk), and rows in the shuffle buffer of streamed mini-batches (rows mix with the ~4 chunks around them).
CHUNK_ROWS = 65_536
BUFFER_ROWS = 262_144
