"""Catalog (table) I/O: reading and writing tables whole or chunk by chunk, and catalog-wide prediction.

=====================================  ============================================================
Module                                 What it holds
=====================================  ============================================================
`astro_galpost.io.formats`             `FORMATS`, `detect_format`, `TableFormatError`, and
                                       astropy's table header in Parquet, HDF5 and ECSV files
`astro_galpost.io.read`                `iter_table_chunks`, `count_rows`, `table_columns`,
                                       `check_input_file`: catalogs read chunk by chunk,
                                       never whole
`astro_galpost.io.write`               `write_table_atomic`, `open_chunked_writer`,
                                       `ChunkedTableWriter`: files that appear under their final
                                       name only when complete, resumable chunk by chunk
`astro_galpost.io.layout`              the stored columns of a chunked Parquet or HDF5 output
`astro_galpost.io.streaming`           `predict_catalog`: a catalog file streamed through a
                                       model, resumable
`astro_galpost.io.samples`             the posterior samples `predict_catalog` writes on request
`astro_galpost.io.dask`                `predict_dask`: the partitions of a Dask DataFrame
=====================================  ============================================================

Every public name is importable from ``astro_galpost.io``. Importing it
loads neither torch nor dask: the modules import them inside the functions
that need them.
"""

from .dask import ModelPayload, frame_to_table, predict_dask, prediction_units, read_catalog
from .formats import FORMATS, TableFormatError, detect_format
from .read import check_input_file, count_rows, iter_table_chunks, table_columns
from .streaming import DEFAULT_CHUNK_BATCHES, CatalogPrediction, model_checksum, predict_catalog, resolve_model
from .write import ChunkedTableWriter, open_chunked_writer, write_table_atomic

__all__ = [
    # formats, reading, writing (astro_galpost.io before the subpackage)
    "write_table_atomic",
    "TableFormatError",
    "FORMATS",
    "detect_format",
    "count_rows",
    "table_columns",
    "iter_table_chunks",
    "check_input_file",
    "ChunkedTableWriter",
    "open_chunked_writer",
    # catalog prediction (astro_galpost.streaming before)
    "predict_catalog",
    "CatalogPrediction",
    "model_checksum",
    "resolve_model",
    "DEFAULT_CHUNK_BATCHES",
    # Dask (astro_galpost.dask before)
    "predict_dask",
    "prediction_units",
    "frame_to_table",
    "ModelPayload",
    "read_catalog",
]
