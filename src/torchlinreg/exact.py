"""The exact least-squares answer of any source: one pass for the R factor, refinement passes when the
design is ill-conditioned, and one more pass when the statistics need the residuals.

Rows in memory, files streamed and the processes of a torchrun job (each reading its part of the
rows, one collective merging the R factors) all go through :func:`solve`; ``torchlinreg solve``
is :func:`run_solve`.
"""

from __future__ import annotations

from .config import CHUNK_ROWS
from .solve import LstsqSolution, QRAccumulator, needs_refinement, refine



def solve(source, dist=None, chunk_rows: int = CHUNK_ROWS) -> tuple[QRAccumulator, list[int], LstsqSolution]:
    """One pass over ``source`` (each process its part): the R factor, each process's rows, the optimum.

    An ill-conditioned design is refined by passes in double-double over the same chunks (the sums
    of each pass added across the processes). The rows of each process are given for streamed
    sources under torchrun (their mini-batches need them), else as one count.
    """
    if dist is not None and dist.is_distributed:  # each process its chunks; one collective merges the R factors
        from .distributed import solve_shard

        return solve_shard(source, dist, chunk_rows=chunk_rows)
    from .passes import accumulate

    acc = accumulate(source, chunk_rows=chunk_rows)
    solution = acc.solve(feature_names=source.feature_names, target_names=source.target_names)
    if needs_refinement(solution):  # ill-conditioned: passes in double-double restore the digits
        solution = refine(solution, lambda: source.chunks(chunk_rows))
    return acc, [acc.n_samples], solution


def statistics_of(source, solution: LstsqSolution, *, conf_level: float = 0.95, cov_type: str = "nonrobust",
               dist=None, chunk_rows: int = CHUNK_ROWS) -> list:
    """The inference tables of ``solution`` (one :class:`~torchlinreg.statistics.RegressionStatistics` per target).

    The classical covariance of unweighted rows comes from R alone; an HC covariance or weighted
    rows read the rows once more (each process its part, the sums gathered).
    """
    from .statistics import ResidualPass, check_settings, solution_statistics

    _, cov_type = check_settings(conf_level, cov_type)
    residuals = ResidualPass(solution, cov_type)
    if not residuals.needed:
        return solution_statistics(solution, None, conf_level=conf_level, cov_type=cov_type)
    several = dist is not None and dist.is_distributed
    for X, y, w in source.chunks(chunk_rows, *((dist.rank, dist.world_size) if several else ())):
        residuals.update(X, y, w)
    if several:
        from .distributed import gather_vectors

        vectors = gather_vectors(residuals.to_vector(), dist)
        residuals = ResidualPass(solution, cov_type)
        for v in vectors:
            residuals.add_vector(v)
    return solution_statistics(solution, residuals, conf_level=conf_level, cov_type=cov_type)


def run_solve(data, *, statistics: bool = False, conf_level: float = 0.95, cov_type: str = "nonrobust", dist=None,
              chunk_rows: int = CHUNK_ROWS) -> tuple[LstsqSolution, list | None]:
    """``torchlinreg solve``: the exact solution of ``data`` (a Dataset or a source) and, with ``statistics``,
    its inference tables at ``conf_level`` with the ``cov_type`` covariance."""
    from .errors import ConfigError
    from .sources import as_source
    from .statistics import check_settings

    if statistics:
        check_settings(conf_level, cov_type)  # before the pass
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be a positive integer, got {chunk_rows!r}; pass e.g. 65536")
    source = as_source(data)
    _, _, solution = solve(source, dist, chunk_rows)
    stats = statistics_of(source, solution, conf_level=conf_level, cov_type=cov_type, dist=dist,
                          chunk_rows=chunk_rows) if statistics else None
    return solution, stats
