"""The ``torchlinreg`` command: parses arguments and calls the library.

PyTorch and matplotlib are imported only inside the command functions, so ``--help`` and
argument errors answer at once. Exit codes: 0 success, 2 bad input (flags, folders,
files), 3 training diverged (the report and plots of the finite epochs are still written).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__, defaults
from .errors import TorchlinregError

EXIT_OK, EXIT_BAD_INPUT, EXIT_DIVERGED = 0, 2, 3


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


def _add_fit_parser(commands) -> None:
    p = commands.add_parser(
        "fit", formatter_class=_Formatter,
        help="train the model with gradient descent, print every epoch, save plots",
        description="Train nn.Linear with SGD on the MSE loss, printing every epoch as the tutorial does. "
                    "With no options this is the tutorial's run: its data, seeds and 50 epochs at lr 0.001.",
    )
    train = p.add_argument_group("training")
    train.add_argument("--epochs", type=int, metavar="N", default=defaults.EPOCHS, help="number of full passes over the data")
    train.add_argument("--lr", type=float, metavar="LR", default=defaults.LR, help="learning rate of SGD")
    train.add_argument("--momentum", type=float, metavar="MU", default=defaults.MOMENTUM, help="SGD momentum, in [0, 1)")
    train.add_argument("--nesterov", action="store_true", help="use Nesterov momentum (needs --momentum > 0)")
    train.add_argument("--weight-decay", type=float, metavar="WD", default=defaults.WEIGHT_DECAY, help="L2 penalty (SGD weight decay)")
    train.add_argument("--seed", type=int, metavar="SEED", default=defaults.MODEL_SEED, help="seed of the model's initial weight and bias")

    data = p.add_argument_group("data: points around the line y = weight*x + bias, with integer noise")
    data.add_argument("--data-seed", type=int, metavar="SEED", default=defaults.DATA_SEED, help="seed of the noise")
    data.add_argument("--n-samples", type=int, metavar="N", default=defaults.N_SAMPLES, help="number of points")
    data.add_argument("--x-start", type=float, metavar="X", default=defaults.X_START, help="smallest x")
    data.add_argument("--x-stop", type=float, metavar="X", default=defaults.X_STOP, help="largest x")
    data.add_argument("--true-weight", type=float, metavar="W", default=defaults.TRUE_WEIGHT, help="slope of the line")
    data.add_argument("--true-bias", type=float, metavar="B", default=defaults.TRUE_BIAS, help="intercept of the line")
    data.add_argument("--noise-low", type=int, metavar="E", default=defaults.NOISE_LOW, help="smallest noise value (inclusive)")
    data.add_argument("--noise-high", type=int, metavar="E", default=defaults.NOISE_HIGH, help="largest noise value (inclusive)")

    out = p.add_argument_group("output")
    out.add_argument("--out", default=defaults.OUTPUT_DIR, metavar="DIR",
                     help="folder for history.json and the plots; created if missing, files of the same name replaced")
    out.add_argument("--no-plots", action="store_true", help="do not draw the plots")
    p.set_defaults(command=_cmd_fit)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="torchlinreg", description="Linear regression with PyTorch: the tutorial's system as a tool.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command_name", required=True, parser_class=_Parser)
    _add_fit_parser(commands)
    commands.metavar = "{" + ",".join(commands.choices) + "}"
    return parser


def _cmd_fit(args) -> int:
    from .config import TrainConfig

    config = TrainConfig(epochs=args.epochs, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
                         weight_decay=args.weight_decay, seed=args.seed)
    from .data import tutorial_data
    from .pipeline import run_fit

    data = tutorial_data(args.n_samples, x_start=args.x_start, x_stop=args.x_stop, weight=args.true_weight,
                         bias=args.true_bias, noise_low=args.noise_low, noise_high=args.noise_high,
                         seed=args.data_seed)
    result = run_fit(data, config, args.out, plots=not args.no_plots)
    names = ", ".join(path.name for path in result.files.values())
    print(f"torchlinreg: wrote {names} to {args.out}", file=sys.stderr)
    if result.history.diverged:
        print(f"torchlinreg: training diverged: {result.history.message}", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.command(args)
    except TorchlinregError as exc:
        print(f"torchlinreg: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("torchlinreg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
