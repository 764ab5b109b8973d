"""The old home of streamed reading, kept so that ``torchlinreg.stream`` imports still work.

The library itself imports from :mod:`torchlinreg.sources` (the Source interface, ``open_source``),
:mod:`torchlinreg.filesource` (the file source read in chunks) and :mod:`torchlinreg.passes`
(``accumulate``, ``solve_source``, ``ShuffledBatches``); this module only re-exports their names for
the tests, the benchmarks and users' code. Here ``open_source`` is the streamed opener
(:func:`torchlinreg.filesource.open_files`), which always streams, and ``StreamSource`` is
:class:`torchlinreg.filesource.FileSource`.
"""

from .filesource import CHUNK_ROWS, FORMATS, READ_AHEAD, _group, _read_ahead
from .filesource import FileSource as StreamSource
from .filesource import open_files as open_source
from .passes import BUFFER_ROWS, ShuffledBatches, accumulate, fold, solve_source

__all__ = ["BUFFER_ROWS", "CHUNK_ROWS", "FORMATS", "READ_AHEAD", "ShuffledBatches", "StreamSource", "_group",
           "_read_ahead", "accumulate", "fold", "open_source", "solve_source"]
