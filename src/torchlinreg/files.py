"""The old home of whole-file reading and ``write_table``, kept so that ``torchlinreg.files`` imports still work.

The library itself imports from :mod:`torchlinreg.formats` (the file formats, whole-file reads,
``write_table``) and :mod:`torchlinreg.columns` (choosing columns, checking values, the messages);
this module only re-exports their names for the tests, the benchmarks and users' code.
"""

from .columns import check_magnitudes, float64_values, magnitude_error
from .formats import SUPPORTED_SUFFIXES, WRITABLE_SUFFIXES, parquet_schema, read_columns, read_dataset, write_table
from .formats.text import check_delimiter, no_header_error, wrong_width_error

__all__ = ["SUPPORTED_SUFFIXES", "WRITABLE_SUFFIXES", "check_delimiter", "check_magnitudes", "float64_values",
           "magnitude_error", "no_header_error", "parquet_schema", "read_columns", "read_dataset",
           "wrong_width_error", "write_table"]
