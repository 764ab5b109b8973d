"""The exact least-squares answer of any Source: one pass for the R factor, refinement passes when the
design is ill-conditioned, and one more pass when the statistics need the residuals.

Rows in memory, files streamed and the processes of a torchrun job (each reading its part of the
rows, one collective merging the R factors) all go through :func:`solve`; :func:`accumulate` and
:func:`solve_source` are its one-process parts, :func:`solve_shard` its torchrun part;
``torchlinreg solve`` is :func:`run_solve`. A file source's columns go to the solver without copies.
"""

from __future__ import annotations

from .data import Source, as_source
from .config import check_chunk_rows
from .defaults import CHUNK_ROWS
from .errors import DataError, check_positive
from .solve import MAX_PASSES, RANK_RTOL, LstsqSolution, QRAccumulator, needs_refinement
from .solve import refine as refine_solution


def accumulate(source: Source, *, chunk_rows: int = CHUNK_ROWS,
               fit_intercept: bool = True) -> QRAccumulator:
    """One pass over a source into a :class:`~torchlinreg.solve.QRAccumulator`.

    ``source`` is a Source (:mod:`torchlinreg.sources`; a Dataset is taken as its rows).
    Memory for a file source: about three record batches of ``source.read_bytes`` at most (see
    :func:`torchlinreg.filesource._read_ahead`), one chunk's QR workspace, and the small R factor.
    """
    source = as_source(source)
    acc = QRAccumulator(len(source.feature_names), len(source.target_names), fit_intercept=fit_intercept)
    check_positive("chunk_rows", chunk_rows)
    fold(source, acc, chunk_rows)
    if acc.weighted and acc.sum_weights == 0:
        from .columns import zero_weights_error  # (pyarrow's import, for a message: not on the tutorial's path)

        raise zero_weights_error(getattr(source, "where", "the data"), source.weight_name)
    return acc


def fold(source: Source, acc: QRAccumulator, chunk_rows: int, part: int = 0, n_parts: int = 1) -> None:
    """Chunks number ``part``, ``part + n_parts``, ... of ``source`` into ``acc``.

    A source with a ``fold`` method of its own (a file source: its columns go to the solver as read,
    without a matrix copy) does it; any other gives its chunks to ``acc.update``.
    """
    own = getattr(source, "fold", None)
    if own is not None:
        own(acc, chunk_rows, part, n_parts)
        return
    for i, (X, y, w) in enumerate(source.chunks(chunk_rows, part, n_parts)):
        acc.update(X, y, w, first_row=(part + i * n_parts) * chunk_rows + 1)  # chunk part + i·n_parts: its data rows


def solve_source(
    source: Source,
    *,
    chunk_rows: int = CHUNK_ROWS,
    refine: bool | None = None,
    fit_intercept: bool = True,
    rtol: float = RANK_RTOL,
    max_passes: int = MAX_PASSES,
) -> LstsqSolution:
    """The exact least-squares solution of a Source (or a Dataset): one pass, then refinement passes.

    Equal to :func:`torchlinreg.solve.lstsq` on the whole data read at once (same QR, the rows
    grouped differently; refinement brings both to float64 accuracy). Each refinement pass
    re-reads the source; ``refine=None`` (default) refines only an ill-conditioned design
    (``solve.needs_refinement``), ``refine=False`` makes one pass only.

    Raises
    ------
    DataError
        From the source's chunks, before any solution exists.
    """
    source = as_source(source)
    acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names, rtol=rtol)
    if refine is None:
        refine = needs_refinement(solution)
    if not refine:
        return solution
    return refine_solution(solution, lambda: source.chunks(chunk_rows), max_passes=max_passes)


def accumulate_shard(source, dist, *, chunk_rows: int,
                     fit_intercept: bool = True) -> tuple[QRAccumulator, list[int]]:
    """The R factor of a streamed source, each rank reading its own chunks, merged; and each rank's rows.

    Chunk ``i`` of ``source`` (a :class:`torchlinreg.filesource.FileSource`, chunks of
    ``chunk_rows`` rows) belongs to rank ``i % world_size``: the parts
    :class:`torchlinreg.minibatch.ShuffledBatches` gives the ranks with the same ``chunk_rows``.
    Every rank reads the file but converts and checks only its chunks. Returns the merged
    accumulator (the same on every rank) and the rows of every rank's part, in rank order.
    """
    from .distributed import gather_vectors, merge_accumulators

    acc = QRAccumulator(len(source.feature_names), len(source.target_names), fit_intercept=fit_intercept)
    fold(source, acc, chunk_rows, dist.rank, dist.world_size)  # the parts of ShuffledBatches
    counts = [int(v[0]) for v in gather_vectors([acc.n_samples], dist)]
    merged = merge_accumulators(acc, dist)
    if merged.weighted and merged.sum_weights == 0:
        raise DataError(f"weight column {source.weight_name!r} is all zero; give some rows a positive weight")
    return merged, counts


def solve_rows(X, y, sample_weight, dist, *, feature_names=None, target_names=None, fit_intercept: bool = True):
    """The exact solution of rows every rank holds whole: each rank folds its :func:`shard` into
    an R factor, one collective merges them, and an ill-conditioned design is refined by passes
    over each rank's rows with the sums added across the ranks. Returns the merged accumulator
    and the solution, the same on every rank."""
    from .distributed import merge_accumulators, shard, sum_pass

    mine = shard(len(X), dist)
    w = None if sample_weight is None else sample_weight[mine]
    acc = QRAccumulator(X.shape[1], y.shape[1], fit_intercept=fit_intercept).update(X[mine], y[mine], sample_weight=w, first_row=mine.start + 1)
    acc = merge_accumulators(acc, dist)
    solution = acc.solve(feature_names=feature_names, target_names=target_names)
    if needs_refinement(solution):  # every rank its rows, the sums of each pass added across the ranks
        rows = (X[mine], y[mine]) if w is None else (X[mine], y[mine], w)
        solution = refine_solution(solution, [rows], combine=sum_pass(dist))
    return acc, solution


def solve_shard(source, dist, *, chunk_rows: int, fit_intercept: bool = True):
    """The exact least-squares solution of a streamed source whose chunks the ranks share (see
    :func:`accumulate_shard`), refined as ``stream.solve_source`` refines it: when the design is
    ill-conditioned, passes in double-double over each rank's chunks, the sums added across the
    ranks, so that every rank takes the same steps. Returns the merged accumulator, the rows of
    every rank's part (see :func:`accumulate_shard`) and the solution, the same on every rank."""
    from .distributed import sum_pass

    acc, counts = accumulate_shard(source, dist, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
    if needs_refinement(solution):
        solution = refine_solution(solution, lambda: source.chunks(chunk_rows, dist.rank, dist.world_size),
                          combine=sum_pass(dist))
    return acc, counts, solution


def solve(source, dist=None, chunk_rows: int = CHUNK_ROWS, *,
          fit_intercept: bool = True) -> tuple[QRAccumulator, list[int], LstsqSolution]:
    """One pass over ``source`` (each process its part): the R factor, each process's rows, the optimum.

    An ill-conditioned design is refined by passes in double-double over the same chunks (the sums
    of each pass added across the processes). The rows of each process are given for streamed
    sources under torchrun (their mini-batches need them), else as one count.
    """
    if dist is not None and dist.is_distributed:  # each process its chunks; one collective merges the R factors
        return solve_shard(source, dist, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
    if needs_refinement(solution):  # ill-conditioned: passes in double-double restore the digits
        solution = refine_solution(solution, lambda: source.chunks(chunk_rows))
    return acc, [acc.n_samples], solution


def statistics_of(source, solution: LstsqSolution, *, conf_level: float = 0.95, cov_type: str = "nonrobust",
                  dist=None, chunk_rows: int = CHUNK_ROWS, maxlags: int | None = None, groups=None) -> list:
    """The inference tables of ``solution`` (one :class:`~torchlinreg.statistics.RegressionStatistics` per target),
    fitted on the rows of ``source`` (a Source or a Dataset).

    The classical covariance of unweighted rows comes from R alone; a robust covariance or weighted
    rows read the rows once more (each process its part, the sums gathered). HAC takes ``maxlags``
    and the rows in file order; cluster takes ``groups``, each row's cluster in file order (under torchrun
    each process reads every row for these two).
    """
    from .statistics import ResidualPass, check_settings, solution_statistics

    _, cov_type = check_settings(conf_level, cov_type)
    source = as_source(source)
    several = dist is not None and dist.is_distributed
    residuals = ResidualPass(solution, cov_type, maxlags=maxlags, clustered=groups is not None, diagnostics=True)
    if not residuals.needed:
        return solution_statistics(solution, None, conf_level=conf_level, cov_type=cov_type)
    # HAC's lags join rows that different processes read, and a cluster's rows may be anywhere: under torchrun
    # each process makes this pass over every row, in file order, and needs no one else's sums
    several = dist is not None and dist.is_distributed and cov_type not in ("HAC", "cluster")
    start = 0
    for X, y, w in source.chunks(chunk_rows, *((dist.rank, dist.world_size) if several else ())):
        residuals.update(X, y, w, groups=None if groups is None else _rows_groups(groups, start, len(X)))
        start += len(X)
    if groups is not None and start != len(groups):
        raise DataError(f"the cluster column holds {len(groups)} values but the data {start} rows; give one "
                        "cluster per row")
    if several:
        from .distributed import gather_vectors

        vectors = gather_vectors(residuals.to_vector(), dist)
        moments = residuals.moments.gathered(residuals.moments, lambda v: gather_vectors(v, dist))  # in file order
        residuals = ResidualPass(solution, cov_type)
        for v in vectors:
            residuals.add_vector(v)
        residuals.moments = moments
    if residuals.n_rows != solution.n_samples:
        raise ValueError(f"the source holds {residuals.n_rows} rows but the solution was fitted on "
                         f"{solution.n_samples}; give the same rows")
    return solution_statistics(solution, residuals, conf_level=conf_level, cov_type=cov_type)


def _rows_groups(groups, start: int, n: int):
    part = groups[start:start + n]
    if len(part) != n:
        raise DataError(f"the cluster column holds {len(groups)} values but the data more rows; give one "
                        "cluster per row")
    return part


def run_solve(data, *, statistics: bool = False, conf_level: float = 0.95, cov_type: str = "nonrobust", dist=None,
              chunk_rows: int = CHUNK_ROWS, fit_intercept: bool = True, maxlags: int | None = None,
              groups=None, positive: bool = False) -> tuple[LstsqSolution, list | None]:
    """``torchlinreg solve``: the exact solution of ``data`` (a Dataset or a source) and, with ``statistics``,
    its inference tables at ``conf_level`` with the ``cov_type`` covariance (HAC: with ``maxlags``; cluster:
    ``groups``, each row's cluster in file order); ``fit_intercept=False`` (``--no-intercept``) fits no
    constant term (its intercept is 0); ``positive`` (``--positive``): non-negative least squares (``nnls``)."""
    from .nnls import positive_solution, refuse_positive_with

    if positive:
        refuse_positive_with(None, statistics)
    if statistics:
        from .dependence import check_options
        from .statistics import check_settings

        _, cov_name = check_settings(conf_level, cov_type)  # before the pass
        check_options(cov_name, maxlags, groups is not None)
    check_chunk_rows(chunk_rows)
    source = as_source(data)
    if _wide_in_memory(source, dist):  # fewer rows than features: the n × n side, no d × d factor
        from .solve import solve_dataset

        if statistics:
            raise DataError(f"{source.dataset.n_samples} rows for {len(source.feature_names) + fit_intercept} "
                            "parameters: the "
                            "statistics need more rows than parameters; leave out the statistics, or choose fewer "
                            "columns with {features}")
        if positive:  # the R factor is d × d here too, only larger than the rows
            source = as_source(source.dataset)
            acc = accumulate(source, chunk_rows=chunk_rows, fit_intercept=fit_intercept)
            return positive_solution(acc, acc.solve(feature_names=source.feature_names,
                                                    target_names=source.target_names)), None
        return solve_dataset(source.dataset, fit_intercept=fit_intercept), None
    acc, _, solution = solve(source, dist, chunk_rows, fit_intercept=fit_intercept)
    if positive:
        return positive_solution(acc, solution), None
    stats = statistics_of(source, solution, conf_level=conf_level, cov_type=cov_type, dist=dist,
                          chunk_rows=chunk_rows, maxlags=maxlags, groups=groups) if statistics else None
    return solution, stats


def _wide_in_memory(source, dist) -> bool:
    """Whether ``source``'s rows are in memory, in one process, and fewer than its many features (``solve.is_wide``)."""
    from .solve import is_wide

    if not getattr(source, "in_memory", False) or (dist is not None and dist.is_distributed):
        return False
    w = getattr(source.dataset, "sample_weight", None)
    rows = source.dataset.n_samples if w is None else int((w > 0).sum())
    return is_wide(rows, len(source.feature_names))
