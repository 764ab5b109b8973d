"""The refusals of a fit that need no data, and the checkpoint that fingerprints it.

:func:`check_fit` runs before any row is read or any file written, so that a bad setting costs
nothing; each rule is a few lines with its message. :func:`checkpointer` makes the
:class:`torchlinreg.checkpoint.Checkpointer` of a run once its first pass has read the data.
"""

from __future__ import annotations

from .config import check_chunk_rows
from .errors import ConfigError

CHECKPOINT_NEEDS = "checkpoints need an output folder ({out_dir}) and one process (not torchrun)"
FULL_BATCH_STREAMED = ("full-batch training with {engine='data'} reads every row in every epoch, which needs the "
                       "rows in memory, but DATA is streamed; use {engine='gram'} (the same steps from one pass over "
                       "the data) or {batch_size=N}")


def check_fit(run) -> None:
    """Every setting of ``run`` (a :class:`torchlinreg.fitting._Run`) that is refused whatever the data."""
    config, options, publish = run.config, run.options, run.publish
    if config.device is not None:
        from .devices import resolve_device

        resolve_device(config.device, config.dtype)  # an unavailable device is refused before anything is written
    if options.statistics or publish.report:
        from .statistics import check_settings

        check_settings(options.conf_level, options.cov_type)  # refuse a bad level before training, not after
        _check_dependent(run)
    _check_reading(run)
    _check_engine(run)
    if options.positive:
        from .nnls import refuse_positive_with

        refuse_positive_with(config.optimizer, options.statistics)
    if options.checkpoint_every is not None or options.resume:
        if run.dist is not None:
            raise ConfigError(f"checkpoints need one process, but this fit runs under torchrun across "
                              f"{run.dist.world_size} processes; drop {{checkpoint_every}}/{{resume}}, or run the fit "
                              "without torchrun (streamed data fits in one process too)")
        if publish.out_dir is None:
            raise ConfigError(CHECKPOINT_NEEDS)
    publish.check(claim=options.resume)
    if publish.out_dir is not None and run.dist is None:
        from .checkpoint import check_folder

        check_folder(publish.out_dir, every=options.checkpoint_every, resume=options.resume, force=publish.force)


def _check_dependent(run) -> None:
    """HAC and cluster covariances: their options, and the rows in file order of one process."""
    from .dependence import check_options
    from .statistics import check_settings

    options = run.options
    _, cov_type = check_settings(options.conf_level, options.cov_type)
    check_options(cov_type, options.maxlags, options.groups is not None)
    if cov_type not in ("HAC", "cluster"):
        return
    if run.dist is not None:
        raise ConfigError(f"the {cov_type} covariance is not computed under torchrun: "
                          + ("its lags join rows that different processes read" if cov_type == "HAC" else
                             "the processes' per-cluster sums are not gathered yet")
                          + "; run the fit in one process for it, or choose another {cov_type}")
    if options.validation_fraction:
        raise ConfigError(f"the {cov_type} covariance needs every row in file order, but {{validation_fraction}} "
                          "holds out a random part of them; drop {validation_fraction} for it")


def _check_reading(run) -> None:
    chunk_rows, fraction = run.options.chunk_rows, run.options.validation_fraction
    check_chunk_rows(chunk_rows)
    if not 0 <= fraction < 1:
        raise ConfigError(f"{{validation_fraction}} must be in [0, 1), got {fraction}; pass e.g. {{validation_fraction=0.2}}")
    if fraction and not run.in_memory:
        why = f" ({run.options.reading})" if run.options.reading else ""
        raise ConfigError(f"{{validation_fraction}} draws a random split of rows held in memory, but DATA is "
                          f"streamed{why}; hold out rows in a file of their own, or read DATA whole (without "
                          "{stream=True}, within {max_memory})")


def _check_engine(run) -> None:
    """Engine names, and the engine settings that no number of rows makes valid."""
    from .gram import select_engine

    config, engine = run.config, run.options.engine
    if not run.in_memory and engine == "data" and config.batch_size is None:
        raise ConfigError(FULL_BATCH_STREAMED)
    n_rows = getattr(run.source, "n_rows", None)
    select_engine(config, requested=engine, n_samples=n_rows if run.in_memory else (None if engine == "gram" else 1))


def checkpointer(run, out):
    """The run's :class:`~torchlinreg.checkpoint.Checkpointer` in ``out``, or None without checkpoints.

    Every setting that changes the numbers is in its settings: ``config`` (batch size, seed,
    dtype, optimizer, ...), the engine, standardisation, the split, and for streamed data how
    the rows are read (the chunks decide R's last bits and, with the shuffle buffer, the
    mini-batches). The data's fingerprint: of the rows in memory, or of the files as the first
    pass read them (no extra pass).
    """
    from .checkpoint import Checkpointer, fit_settings

    options, source, force = run.options, run.source, run.publish.force
    common = dict(engine=run.engine, standardize=options.standardize, features=source.feature_names,
                  targets=source.target_names)
    if not options.fit_intercept:  # only then: checkpoints of fits with an intercept resume as before
        common["fit_intercept"] = False
    if run.in_memory:
        from .checkpoint import data_sha256

        settings = fit_settings(run.config, validation_fraction=options.validation_fraction,
                                split_seed=options.split_seed, **common)
        val = run.val
        return Checkpointer(out, settings, lambda: data_sha256(*run._tensors(), *(
            (val.X.double(), val.y.double()) if val is not None else (None, None))),
                            every=options.checkpoint_every, resume=options.resume, force=force)
    from .checkpoint import STREAMED_DATA, streamed_data_sha256
    from .defaults import BUFFER_ROWS

    settings = fit_settings(run.config, reading="stream", chunk_rows=options.chunk_rows, buffer_rows=BUFFER_ROWS,
                            weights=source.weight_name, **common)
    fingerprint = streamed_data_sha256(run.acc, source)  # now: of the files as the first pass read them
    return Checkpointer(out, settings, lambda: fingerprint, every=options.checkpoint_every, resume=options.resume,
                        force=force, data_what=STREAMED_DATA)
