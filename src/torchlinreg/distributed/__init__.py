"""Several processes and machines: row shards, one merge of the R factors, DDP, and failures that end every rank.

Launched by ``torchrun --nproc-per-node N [--nnodes M ...] -m torchlinreg ...``, every process
reads its place in the job from the environment (:func:`from_env`), takes a contiguous share
of the rows (:func:`shard`) and accumulates their R factor; :func:`merge_accumulators` gathers
the ranks' R factors in one collective and every rank merges them in rank order, so that all
hold the same global R and the exact solve, the loss at any parameters and full-batch descent
need no further communication (the exact solve of a Source across ranks is
:func:`torchlinreg.exact.solve_shard`: chunk ``i`` is rank ``i % world_size``'s), and sums over every
rank's rows (metrics, the statistics' pass) are gathered by :func:`gather_vectors`. Mini-batch
training wraps the model in ``DistributedDataParallel`` (:func:`wrap_ddp`); :func:`epoch_batches`
and :func:`ddp_mse` make its steps those of single-process training with the same seed and
batch size (see :mod:`torchlinreg.minibatch` for the loop).

Failures end every rank: a phase run by :func:`run_guarded` that fails or hangs on one rank
ends with a :class:`DistributedError` on every rank, naming the rank at fault (how: ``guarded``);
a damaged or unusable file there keeps its kind (a ``DataError``, ``ModelFileError`` or
``CheckpointError`` too), so a command exits on every rank as it does in one process.

A command runs all this through :class:`Job`: its place in the job, with every phase guarded.

Modules
-------
One concept each; a module imports only those listed before it:

* ``group``: ``Dist``, ``from_env``, ``shutdown``, ``shard``, ``quiet_unless_main``
* ``guarded``: ``run_guarded``, and small texts exchanged through the job's store
* ``merge``: ``merge_accumulators``, ``gather_vectors``, ``sum_pass``
* ``schema``: ``check_same_schema``
* ``ddp``: ``wrap_ddp``, ``epoch_batches``, ``ddp_mse``
* ``job``: ``Job``

Names are loaded on first use, so a single-process command that enters a :class:`Job` imports
neither PyTorch nor the other modules.
"""

from importlib import import_module

_EXPORTS = {
    "DEFAULT_TIMEOUT_S": ".group",
    "Dist": ".group",
    "from_env": ".group",
    "shutdown": ".group",
    "shard": ".group",
    "quiet_unless_main": ".group",
    "run_guarded": ".guarded",
    "merge_accumulators": ".merge",
    "gather_vectors": ".merge",
    "sum_pass": ".merge",
    "check_same_schema": ".schema",
    "wrap_ddp": ".ddp",
    "epoch_batches": ".ddp",
    "ddp_mse": ".ddp",
    "Job": ".job",
    "DistributedError": "..errors",  # this package's error, defined with the others in errors.py
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchlinreg.distributed' has no attribute {name!r}")


def __dir__():
    return __all__
