"""The ``torchlinreg`` command: parses arguments and calls the library.

The flags are built in ``flags.py``; here is one ``_cmd_<name>`` per command. PyTorch and matplotlib are
imported only inside the command functions, so ``--help`` and flag errors answer at once.
Exit codes: 0 success; 1 bad data or model file; 2 bad flags or an output that cannot be
written; 3 training diverged (the report and plots of the finite epochs are still written);
130/143 stopped by SIGINT/SIGTERM (fit writes a checkpoint first; ``--resume`` continues it).
"""

from __future__ import annotations

import dataclasses
import sys
import warnings

from . import defaults, plot_process, startup
from .config import choose_settings
from .errors import ConfigError, DataError, Interrupted, ModelFileError, TorchlinregError, for_command
from .flags import EXIT_BAD_INPUT, FLAGS, build_parser  # noqa: F401 (FLAGS and build_parser: the command's API)

EXIT_OK, EXIT_BAD_DATA, EXIT_DIVERGED = 0, 1, 3


def _tutorial_data(args):
    """The tutorial's data set, shaped by its flags."""
    if args.target or args.features or args.weights or args.formula:
        raise ConfigError("--target, --features, --weights and --formula need a DATA file")
    from .data import tutorial_data

    return tutorial_data(args.n_samples, x_start=args.x_start, x_stop=args.x_stop, weight=args.true_weight,
                         bias=args.true_bias, noise_low=args.noise_low, noise_high=args.noise_high,
                         seed=args.data_seed)


@plot_process.alongside(lambda args: not args.no_plots)  # PNGs drawn by a second process, see plot_process.py
@startup.fast_start("torchlinreg.fitting")  # no GC of the imports, no torch._dynamo: see startup.py
def _cmd_fit(args) -> int:
    if args.threads is not None:
        from .devices import set_threads

        set_threads(args.threads)
    settings = choose_settings(  # with DATA and no --optimizer/--lr: settings that converge on real data
        standardize=args.standardize, for_data=args.data is not None, epochs=args.epochs, lr=args.lr,
        optimizer=args.optimizer, momentum=args.momentum, nesterov=args.nesterov, weight_decay=args.weight_decay,
        batch_size=args.batch_size, tol=args.tol, patience=args.patience, schedule=args.schedule,
        step_size=args.step_size, gamma=args.gamma, dtype=args.dtype, device=args.device, seed=args.seed,
        fit_intercept=args.fit_intercept)
    config = settings.config
    if args.summary:
        from .dependence import check_options

        check_options(args.cov_type, args.maxlags, args.cluster is not None)  # bad flags: exit 2, before the data
    if args.log_every < 1:
        raise ConfigError(f"--log-every must be a positive integer, got {args.log_every}; pass e.g. --log-every 100")

    from .fitting import run_fit
    from .memory import FIT_COPIES
    from .publish import OUTPUT_FILES
    from .sources import check_outside

    check_outside(args.data, args.out, OUTPUT_FILES)  # the data folder cannot be --out, nor a file fit writes
    with _job(args) as dist:
        main = dist.is_main
        data, why = _open_data(dist, args, FIT_COPIES)
        fit_intercept = _intercept(data, args)
        if fit_intercept != args.fit_intercept:  # a formula's "- 1": the model has no bias
            config = dataclasses.replace(config, fit_intercept=fit_intercept)
        groups = dist.run(lambda: _clusters(args, data), "reading the clusters")
        result = dist.run(lambda: run_fit(
            data, config, args.out if main else None, dist=dist.dist, standardize=settings.standardize,
            chosen=settings.why, flags=FLAGS,
            validation_fraction=args.validation_fraction, split_seed=args.split_seed, engine=args.engine,
            tutorial=args.data is None, fit_intercept=fit_intercept, statistics=args.summary,
            positive=args.positive,
            conf_level=args.conf_level, cov_type=args.cov_type, maxlags=args.maxlags, groups=groups,
            chunk_rows=args.chunk_rows, reading=why, checkpoint_every=args.checkpoint_every, resume=args.resume,
            save=args.save if main else None, force=args.force, plots=main and not args.no_plots,
            animation=args.animate, report=args.report and main, log_every=0 if args.quiet else args.log_every,
            quiet=not main, progress=False if args.quiet else None,  # --quiet: no epoch lines, no bar
            tensorboard=args.tensorboard if main else None), "the fit")
        if not main:
            return EXIT_DIVERGED if result.history.diverged else EXIT_OK
    return _fit_done(args, result)


def _fit_done(args, result) -> int:
    """The lines on stderr after a fit, and its exit code."""
    in_out = [p.name for k, p in result.files.items() if not k.startswith("model")]
    print(f"torchlinreg: wrote {', '.join(in_out)} to {args.out}", file=sys.stderr)
    if "model" in result.files:
        print(f"torchlinreg: saved the model to {result.files['model']} and {result.files['model_json']}",
              file=sys.stderr)
    if result.history.status == "converged":
        print(f"torchlinreg: {result.history.message}", file=sys.stderr)
    if result.history.diverged:
        print(f"torchlinreg: training diverged: {result.history.message}", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_OK


def _cmd_solve(args) -> int:
    from .exact import run_solve
    from .memory import SOLVE_COPIES

    # The block products run in NumPy unless PyTorch is imported already (solve.kernels): this command never
    # imports it, whose import costs more than a pass over a large file
    from .dependence import check_options

    check_options(args.cov_type, args.maxlags, args.cluster is not None)  # bad flags: exit 2, before the data
    if args.l2 is not None or args.l2_grid is not None:
        return _solve_ridge(args)
    if args.row_figures is not None:
        from .formats.writing import check_target

        check_target(args.row_figures, force=args.force)  # before the solve, not after it
    with _job(args) as job:
        data, _ = _open_data(job, args, SOLVE_COPIES)
        fit_intercept = _intercept(data, args)
        groups = job.run(lambda: _clusters(args, data), "reading the clusters")
        solution, stats = job.run(lambda: run_solve(data, statistics=args.summary, conf_level=args.conf_level,
                                                    cov_type=args.cov_type, dist=job.dist,
                                                    chunk_rows=args.chunk_rows, fit_intercept=fit_intercept,
                                                    maxlags=args.maxlags, groups=groups, positive=args.positive),
                                    "the solve")
    if not job.is_main:
        return EXIT_OK
    if args.row_figures is not None:  # one process reads every row: the file is in row order
        from .rowfigures import write_row_figures

        path, n_rows = write_row_figures(data, solution, args.row_figures, chunk_rows=args.chunk_rows,
                                         force=args.force)
        print(f"torchlinreg: wrote the figures of {n_rows} rows to {path}", file=sys.stderr)
    return _print_solution(args, solution, stats)


def _intercept(data, args) -> bool:
    """--no-intercept, or a formula's own choice (``- 1``)."""
    from .formula_data import formula_intercept

    return formula_intercept(data, args.fit_intercept)


def _solve_ridge(args) -> int:
    from .memory import SOLVE_COPIES
    from .ridge_solve import check_ridge_settings, ridge_output, run_ridge

    l2 = args.l2 if args.l2 is None or len(args.l2) > 1 else args.l2[0]
    check_ridge_settings(l2, args.l2_grid, args.summary)  # bad flags: exit 2, before the data
    if args.positive:
        from .nnls import refuse_positive_with

        refuse_positive_with(None, False, l2=args.l2 or args.l2_grid)
    with _job(args) as job:
        data, _ = _open_data(job, args, SOLVE_COPIES)
        solution = job.run(lambda: run_ridge(data, l2, grid=args.l2_grid, dist=job.dist, chunk_rows=args.chunk_rows,
                                             fit_intercept=_intercept(data, args)), "the solve")
    if job.is_main:
        print(ridge_output(solution, as_json=args.json))
    return EXIT_OK


def _clusters(args, data):
    """The --cluster column's values in file order (None without --summary or --cluster)."""
    if args.cluster is None or not (args.summary or getattr(args, "report", False)):
        return None
    if args.data is None:
        raise ConfigError("--cluster needs a DATA file holding the cluster column")
    if args.cluster in data.feature_names or args.cluster in data.target_names:
        raise ConfigError(f"the cluster column {args.cluster!r} is also a feature or target; name the features "
                          "with {features} and leave it out")
    from .filesource import read_clusters

    return read_clusters(args.data, args.cluster)


def _print_solution(args, solution, stats) -> int:
    from .report import solution_output

    print(solution_output(solution, stats, as_json=args.json))
    return EXIT_OK


def _job(args):
    """The command's place in a torchrun job (``distributed.Job``), from its --dist-timeout, --device and --dtype."""
    from .distributed import Job

    return Job(timeout_s=args.dist_timeout, device=getattr(args, "device", "cpu") or "cpu",
               dtype=getattr(args, "dtype", "float32"))


def _open_data(job, args, copies: int):
    """DATA on every rank of ``job`` as the library chooses to read it (whole, or streamed), and why it is
    streamed ("" when read whole); or the tutorial's data set, checked against --max-memory."""
    if args.data is None:
        from .memory import check_fits

        check_fits(args.n_samples, 2, args.max_memory, copies=copies, what="the tutorial's data")
        return job.load(lambda: _tutorial_data(args)), ""
    if args.formula is not None or args.categorical == "auto":  # the formula's columns, from the rows read whole
        from .formula_data import open_formula

        def formula_():
            return open_formula(args.data, formula=args.formula, target=args.target, features=args.features,
                                weights=args.weights, categorical=args.categorical, stream=args.stream,
                                read_bytes=stream_read_bytes(args.max_memory))

        from .memory import stream_read_bytes

        return (job.load_source(formula_), "--stream given") if args.stream else (job.load(formula_), "")
    from .sources import open_planned, plan

    columns = dict(target=args.target, features=args.features, weights=args.weights)
    reading = plan(args.data, **columns, max_memory=args.max_memory, stream=args.stream,
                   passes="one" if args.command_name == "solve" else "many")  # the library's choice, here
    streamed = job.agree_any(reading.stream)  # every rank streams if one must (the ranks' memory may differ)

    def open_():
        return open_planned(args.data, streamed, **columns, max_memory=args.max_memory)

    if not streamed:
        return job.load(open_), ""
    return job.load_source(open_), reading.reason if reading.stream else "another process cannot hold it whole"


def _cmd_make_data(args) -> int:
    from .datafiles import write_data

    path, data = write_data(args.output, n_samples=args.n_samples, features=args.features, targets=args.targets,
                            coef=args.coef, intercept=args.intercept, noise=args.noise, seed=args.data_seed,
                            force=args.force, **{name: getattr(args, name) for name in defaults.TUTORIAL_ONLY})
    columns = data.feature_names + data.target_names
    shown = ", ".join(columns) if len(columns) <= 8 else f"{', '.join(columns[:4])}, ..., {columns[-1]}"
    print(f"torchlinreg: wrote {data.n_samples} rows of {len(columns)} columns ({shown}) to {path}", file=sys.stderr)
    return EXIT_OK


def _cmd_predict(args) -> int:
    from .datafiles import write_predictions
    from .persistence import load_model

    path, n_rows = write_predictions(load_model(args.model), args.data, args.output, force=args.force,
                                     interval=args.interval, alpha=args.alpha)
    print(f"torchlinreg: wrote {n_rows} predictions to {path}", file=sys.stderr)
    return EXIT_OK


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, RuntimeWarning) and " encountered in " in str(message):
        return  # NumPy's floating-point notices ("overflow encountered in square") say nothing a user can act on
    print(f"torchlinreg: warning: {for_command(message, FLAGS)}", file=sys.stderr)



def _resume_hint(exc: Interrupted, argv: list[str] | None) -> str:
    """``; continue with: torchlinreg <the same arguments> --resume``, when a checkpoint holds the run."""
    import shlex

    if not exc.resumable:
        return ""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--resume" not in argv:
        argv.append("--resume")
    return f"; continue with: torchlinreg {shlex.join(argv)}"


COMMANDS = {"fit": _cmd_fit, "solve": _cmd_solve, "make-data": _cmd_make_data, "predict": _cmd_predict}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    saved_show, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return COMMANDS[args.command_name](args)
    except Interrupted as exc:  # fit stopped by SIGINT/SIGTERM, after writing a checkpoint
        print(f"torchlinreg: {for_command(exc, FLAGS)}{_resume_hint(exc, argv)}", file=sys.stderr)
        return 128 + exc.signum
    except (DataError, ModelFileError) as exc:
        print(f"torchlinreg: error: {for_command(exc, FLAGS)}", file=sys.stderr)
        return EXIT_BAD_DATA
    except (TorchlinregError, ValueError) as exc:  # ValueError: the library's other bad arguments (see STYLE.md)
        print(f"torchlinreg: error: {for_command(exc, FLAGS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("torchlinreg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `| head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        warnings.showwarning = saved_show
