"""The ``torchlinreg`` command's flags: one parser builder per command, and the help they print.

Nothing here imports PyTorch or matplotlib, so ``--help`` and flag errors answer at once. ``cli.py``
runs the command a parsed ``args.command_name`` names.
"""

from __future__ import annotations

import argparse
import dataclasses

from . import __version__, defaults
from .config import (AUTO_EPOCHS, COV_TYPES, DEFAULT_LR, DEFAULT_TIMEOUT_S, DTYPES, ENGINES, OPTIMIZERS, SCHEDULES,
                     FitOptions, TrainConfig)
from .errors import ConfigError, for_command

EXIT_BAD_INPUT = 2
# The flags of the settings that messages name (errors.render) where the flag is not "--" + the name, "_" as "-"
FLAGS = {"statistics": "--summary", "out_dir": "--out", "animation": "--animate", "plots": "--no-plots",
         "groups": "--cluster", "fit_intercept": "--no-intercept"}


def _default(settings, name: str):
    """The library's default of a setting (a field of TrainConfig or FitOptions): written once, there."""
    return next(f.default for f in dataclasses.fields(settings) if f.name == name)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr, exit code 2."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for every option that takes a value."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)


def _add_columns(p) -> None:
    """DATA and the choice of its columns, shared by fit and solve."""
    p.add_argument("data", nargs="?", metavar="DATA",
                   help="CSV, TSV, Parquet, .npy or .npz file (default: the tutorial's data)")
    p.add_argument("--target", nargs="+", metavar="COL", help="target column(s) (default: the last column)")
    p.add_argument("--features", nargs="+", metavar="COL",
                   help="input columns (default: every other numeric column)")
    p.add_argument("--weights", metavar="COL", help="column of non-negative sample weights (weighted least squares)")


def _add_formula(p) -> None:
    """A formula instead of --target/--features, and text columns, shared by fit and solve."""
    f = p.add_argument_group("formulas and categorical data (columns made by the formulaic library)")
    f.add_argument("--formula", metavar="F",
                   help="the model as a Wilkinson formula, e.g. \"y ~ x1 + C(region) + x1:x2 + poly(x3, 3)\" "
                        "(- 1: no intercept); replaces --target and --features; DATA is read whole")
    f.add_argument("--categorical", choices=("drop", "auto"), default="drop",
                   help="text columns: drop leaves them out with a warning; auto one-hot encodes them (treatment "
                        "contrasts, the first level the base), DATA read whole")


def _add_dist_timeout(p) -> None:
    p.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="under torchrun: seconds a rank waits for the others before every rank stops")


def _size(text: str) -> int:
    """``--max-memory``'s value in bytes; argparse turns the error into one line, exit 2."""
    from .memory import parse_size

    try:
        return parse_size(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(for_command(exc, FLAGS)) from None


def _add_reading(p, command: str) -> None:
    """Reading DATA whole or in chunks, shared by fit and solve."""
    from .memory import FIT_COPIES, SOLVE_COPIES

    copies = FIT_COPIES if command == "fit" else SOLVE_COPIES
    r = p.add_argument_group("large data")
    automatic = ("always, for CSV/TSV/Parquet files: the solve needs only passes over the rows" if command == "solve"
                 else "automatic for a folder of files and for files too large for --max-memory")
    r.add_argument("--stream", action="store_true",
                   help="read DATA in chunks instead of whole (memory bounded by the chunk and the read size, "
                        f"not the file); {automatic}")
    budget = ("memory solve may use, e.g. 2G or 500M (K, M, G, T: powers of 1024): it bounds the streamed "
              "read size and the solver's factor; a .npy/.npz file, read whole (about "
              f"{copies} copies of rows x columns x 8 bytes), is refused over it" if command == "solve" else
              "memory DATA may take when read whole, e.g. 2G or 500M (K, M, G, T: powers of 1024); "
              f"DATA is streamed when reading it whole would take more ({command} holds about "
              f"{copies} copies of rows x columns x 8 bytes)")
    r.add_argument("--max-memory", type=_size, metavar="SIZE",
                   help=f"{budget} (default: half of the available memory, shared by the processes of one machine)")
    r.add_argument("--chunk-rows", type=int, default=_default(FitOptions, "chunk_rows"), metavar="N",
                   help="rows per chunk of each pass over the data")


def _add_statistics(p) -> None:
    s = p.add_argument_group("statistics of the exact solution")
    s.add_argument("--summary", action="store_true",
                   help="print standard errors, t and p values, confidence intervals, R², F, AIC, BIC, ...")
    s.add_argument("--conf-level", type=float, default=_default(FitOptions, "conf_level"), metavar="L",
                   help="level of the confidence intervals")
    s.add_argument("--cov-type", default=_default(FitOptions, "cov_type"), choices=COV_TYPES,
                   help="covariance of the coefficients: classical, heteroscedasticity-robust HC0-HC3, HAC "
                        "(Newey-West, the rows a time series in file order; needs --maxlags) or cluster "
                        "(needs --cluster); HAC and cluster in fit: one process")
    s.add_argument("--maxlags", type=int, metavar="N", help="HAC: the most lags of the Newey-West sum")
    s.add_argument("--cluster", metavar="COL", help="cluster: the column holding each row's cluster")


def _add_tutorial_data(p, title: str = "the tutorial's data, used when no DATA file is given",
                       n_samples: int | None = defaults.N_SAMPLES, n_samples_help: str = "number of points") -> None:
    g = p.add_argument_group(f"{title}: points around y = weight*x + bias with integer noise")
    g.add_argument("--data-seed", type=int, default=defaults.DATA_SEED, metavar="SEED", help="seed of the noise")
    g.add_argument("--n-samples", type=int, default=n_samples, metavar="N", help=n_samples_help)
    g.add_argument("--x-start", type=float, default=defaults.X_START, metavar="X", help="smallest x")
    g.add_argument("--x-stop", type=float, default=defaults.X_STOP, metavar="X", help="largest x")
    g.add_argument("--true-weight", type=float, default=defaults.TRUE_WEIGHT, metavar="W", help="slope of the line")
    g.add_argument("--true-bias", type=float, default=defaults.TRUE_BIAS, metavar="B", help="intercept of the line")
    g.add_argument("--noise-low", type=int, default=defaults.NOISE_LOW, metavar="E", help="smallest noise value")
    g.add_argument("--noise-high", type=int, default=defaults.NOISE_HIGH, metavar="E", help="largest noise value")


def _add_fit_parser(commands) -> None:
    p = commands.add_parser(
        "fit", formatter_class=_Formatter,
        help="train nn.Linear by gradient descent, print every epoch, compare with the exact optimum",
        description="Train nn.Linear on the MSE loss, printing every epoch as the tutorial does, then set the "
                    "trained model beside the exact least-squares optimum. With no DATA and no options this is "
                    "the tutorial's run: its data, seeds and 50 epochs of SGD at lr 0.001.",
    )
    _add_columns(p)
    _add_formula(p)
    _add_training(p)
    _add_positive(p, "keep the weights >= 0: after each optimizer step they are set to max(w, 0) (projected "
                     "gradient; SGD or Adam, not L-BFGS); the optimum shown beside them is the exact one of --positive")
    _add_statistics(p)
    _add_reading(p, "fit")
    _add_dist_timeout(p)
    _add_tutorial_data(p)
    _add_checkpoints(p)
    _add_output(p)


def _add_training(p) -> None:
    t = p.add_argument_group("training")
    t.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"optimizer (default: {_default(TrainConfig, 'optimizer')}, the tutorial's, without DATA; with "
                        "DATA and no --lr, lbfgs on standardised columns in float64, stopped when the loss stops "
                        "improving: see docs/cli.md)")
    t.add_argument("--epochs", type=int, metavar="N",
                   help=f"most full passes over the data (default: {_default(TrainConfig, 'epochs')}, the "
                        f"tutorial's; {AUTO_EPOCHS:,} for the settings chosen for DATA)")
    t.add_argument("--lr", type=float, metavar="LR",
                   help=f"learning rate (default: {DEFAULT_LR['sgd']:g} for sgd, adam and adamw; "
                        f"{DEFAULT_LR['lbfgs']:g} for lbfgs)")
    t.add_argument("--momentum", type=float, default=_default(TrainConfig, "momentum"), metavar="MU",
                   help="SGD momentum, in [0, 1)")
    t.add_argument("--nesterov", action="store_true", help="use Nesterov momentum (needs --momentum > 0)")
    t.add_argument("--weight-decay", type=float, default=_default(TrainConfig, "weight_decay"), metavar="WD",
                   help="L2 penalty")
    t.add_argument("--batch-size", type=int, metavar="N", help="rows per step, shuffled with --seed (default: full batch)")
    t.add_argument("--tol", type=float, metavar="TOL",
                   help="stop when the loss improves by less than TOL (relative) for --patience epochs (default: off)")
    t.add_argument("--patience", type=int, default=_default(TrainConfig, "patience"), metavar="N",
                   help="epochs without improvement before stopping")
    t.add_argument("--schedule", default=_default(TrainConfig, "schedule"), choices=SCHEDULES,
                   help="learning-rate schedule")
    t.add_argument("--step-size", type=int, default=_default(TrainConfig, "step_size"), metavar="N",
                   help="step schedule: epochs between decays")
    t.add_argument("--gamma", type=float, default=_default(TrainConfig, "gamma"), metavar="G",
                   help="step schedule: decay factor")
    t.add_argument("--dtype", choices=DTYPES,
                   help=f"precision of training (default: {_default(TrainConfig, 'dtype')}, the tutorial's; "
                        "float64 for the settings chosen for DATA)")
    t.add_argument("--engine", default=_default(FitOptions, "engine"), choices=ENGINES,
                   help="training loop: data (every epoch reads the rows: the tutorial's loop), gram (one pass "
                        "builds the R factor of [X, 1, y], then each epoch costs O(d²)); auto picks gram for "
                        "full-batch MSE on your data, data for the tutorial run and mini-batches")
    t.add_argument("--device", default="cpu", metavar="DEV",
                   help="where to train: auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    t.add_argument("--seed", type=int, default=_default(TrainConfig, "seed"), metavar="SEED",
                   help="seed of the initial weights and of the mini-batch order")
    t.add_argument("--standardize", action=argparse.BooleanOptionalAction,
                   help="train on standardised features and targets; results are reported in the data's units "
                        "(default: on for the settings chosen for DATA, off otherwise)")
    t.add_argument("--no-intercept", dest="fit_intercept", action="store_false",
                   help="fit a line through the origin: the model has no bias, the optimum and statistics are "
                        "those without a constant term; --standardize then scales the columns without centring")
    t.add_argument("--validation-fraction", type=float, default=_default(FitOptions, "validation_fraction"), metavar="F",
                   help="hold out this fraction of the rows (seeded split) and report metrics on it")
    t.add_argument("--split-seed", type=int, default=_default(FitOptions, "split_seed"), metavar="SEED",
                   help="seed of the split")


def _add_output(p) -> None:
    o = p.add_argument_group("output")
    o.add_argument("--out", default=defaults.OUTPUT_DIR, metavar="DIR",
                   help="folder for the history, summary and plots; created if missing, files of the same name replaced")
    o.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    o.add_argument("--animate", action="store_true", help="also write fit.gif: the model moving epoch by epoch")
    o.add_argument("--report", action="store_true", help="also write report.html: everything in one offline page")
    o.add_argument("--log-every", type=int, default=1, metavar="N",
                   help="print every N-th epoch line (and the first and last); 1 prints all, as the tutorial")
    o.add_argument("--quiet", action="store_true", help="no epoch lines and no progress bar")
    o.add_argument("--tensorboard", metavar="DIR",
                   help="write loss, learning rate and parameters per epoch for TensorBoard (needs the tensorboard extra)")
    o.add_argument("--save", metavar="PATH", help="save the trained model as PATH.safetensors + PATH.json")
    o.add_argument("--force", action="store_true",
                   help="replace existing model files, and same-named files in an --out folder that is not "
                        "from an earlier torchlinreg run")


def _add_checkpoints(p) -> None:
    c = p.add_argument_group("interruptions and reproducibility",
                             "Ctrl-C or SIGTERM stops training after the current epoch and writes a checkpoint "
                             "into --out/checkpoint; the same command with --resume continues it and ends with "
                             "the same numbers and files as a run never interrupted")
    c.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="also write a checkpoint every N epochs (a killed run then loses at most N epochs)")
    c.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out (refused if the settings or the data differ)")
    c.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for PyTorch (default: PyTorch's choice); sums over many rows may round "
                        "differently with another number, see the README")


def _add_solve_parser(commands) -> None:
    p = commands.add_parser("solve", formatter_class=_Formatter, help="print the exact least-squares solution",
                            description="Solve least squares exactly (QR in float64, refined in extended precision) "
                                        "and print the coefficients, intercepts and loss.")
    _add_columns(p)
    _add_formula(p)
    p.add_argument("--json", action="store_true", help="print the solution as JSON for scripts")
    p.add_argument("--row-figures", metavar="FILE",
                   help="also write each row's fitted value, residual, leverage (hat_diag), studentized residuals, "
                        "Cook's distance and DFFITS to FILE (.csv, .tsv, .parquet), one more pass over DATA, a "
                        "chunk at a time: for data larger than memory")
    p.add_argument("--force", action="store_true", help="replace the --row-figures FILE if it exists")
    p.add_argument("--no-intercept", dest="fit_intercept", action="store_false",
                   help="fit no constant term (the intercept is 0); R² and F as statsmodels' OLS without add_constant")
    _add_ridge(p)
    _add_positive(p, "non-negative least squares: coefficients >= 0, the intercept free, each target separately, "
                     "solved exactly from the R factor (scikit-learn's LinearRegression(positive=True))")
    _add_statistics(p)
    _add_reading(p, "solve")
    _add_dist_timeout(p)
    _add_tutorial_data(p)


def _add_ridge(p) -> None:
    r = p.add_argument_group("ridge (L2 penalty on the weights, not the intercept)")
    r.add_argument("--l2", type=float, nargs="+", metavar="ALPHA",
                   help="solve ridge exactly: minimise the sum of squared errors + ALPHA * |weights|^2; one ALPHA, "
                        "or one per target")
    r.add_argument("--l2-grid", type=float, nargs="+", metavar="ALPHA",
                   help="ridge with ALPHA chosen among these by generalised cross-validation (from the R factor: "
                        "streamed files and torchrun too)")


def _add_positive(p, text: str) -> None:
    p.add_argument("--positive", action="store_true", help=text)


def _add_make_data_parser(commands) -> None:
    p = commands.add_parser("make-data", formatter_class=_Formatter, help="write the tutorial's or a multivariate data set",
                            description="Write the tutorial's data set, or with --features/--targets a multivariate "
                                        "one (standard-normal X, y = X @ coef.T + intercept + normal noise), to CSV "
                                        "or Parquet (chosen by the file's extension).")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="file to write: .csv, .tsv, .parquet")
    p.add_argument("--force", action="store_true", help="replace FILE if it exists")
    m = p.add_argument_group("multivariate data (used when --features, --targets, --coef or --noise is given)")
    m.add_argument("--features", type=int, metavar="N", help="number of features (default: 3)")
    m.add_argument("--targets", type=int, metavar="M", help="number of targets (default: 1)")
    m.add_argument("--coef", type=float, nargs="+", metavar="C",
                   help="true coefficients, M*N values, target by target (default: integers drawn from -5..5)")
    m.add_argument("--intercept", type=float, nargs="+", metavar="B", help="true intercepts, one per target (default: 1)")
    m.add_argument("--noise", type=float, metavar="S", help="standard deviation of the normal noise (default: 1)")
    _add_tutorial_data(p, "the tutorial's data, written unless a multivariate flag is given", n_samples=None,
                       n_samples_help=f"number of rows (default: {defaults.N_SAMPLES} for the tutorial's data, "
                                      "1000 for multivariate data)")


def _add_predict_parser(commands) -> None:
    p = commands.add_parser("predict", formatter_class=_Formatter, help="predict with a saved model",
                            description="Load a model saved by 'fit --save' and write its predictions for DATA, "
                                        "one column per target named predicted_<target>, in DATA's row order.")
    p.add_argument("model", metavar="MODEL", help="model path as given to --save (.safetensors/.json optional)")
    p.add_argument("data", metavar="DATA", help="file with the model's feature columns")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="file to write: .csv, .tsv, .parquet")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    _add_interval(p)


def _alpha(text: str) -> float:
    """``--alpha``'s value: a number in (0, 1); argparse turns the error into one line, exit 2."""
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1 (exclusive), e.g. 0.05; got {text!r}")
    return value


def _add_interval(p) -> None:
    i = p.add_argument_group("intervals (models saved by 'fit --save' hold the exact least-squares fit's state)")
    i.add_argument("--interval", choices=("confidence", "prediction"),
                   help="also write lower_<target> and upper_<target>: the interval of the least-squares fit's "
                        "mean (confidence) or of a new observation (prediction), as statsmodels' "
                        "get_prediction(X).summary_frame(alpha)")
    i.add_argument("--alpha", type=_alpha, default=0.05, metavar="A",
                   help="the intervals' level is 1 - A")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torchlinreg", description="Linear regression with PyTorch: the tutorial's system as a tool.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command_name", required=True, parser_class=_Parser)
    for add in (_add_fit_parser, _add_solve_parser, _add_make_data_parser, _add_predict_parser):
        add(commands)
    commands.metavar = "{" + ",".join(commands.choices) + "}"
    return parser
