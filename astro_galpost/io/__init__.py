"""Catalog (table) I/O: reading and writing tables whole or chunk by chunk, and catalog-wide prediction.

=====================================  ============================================================
Module                                 What it holds
=====================================  ============================================================
`astro_galpost.io.formats`             `FORMATS`, `detect_format`, `TableFormatError`, and
                                       astropy's table header in Parquet, HDF5 and ECSV files
`astro_galpost.io.read`                `iter_table_chunks`, `count_rows`, `table_columns`:
                                       catalogs read chunk by chunk, never whole
`astro_galpost.io.write`               `write_table_atomic`, `open_chunked_writer`,
                                       `ChunkedTableWriter`: files that appear under their final
                                       name only when complete, resumable chunk by chunk
`astro_galpost.io.layout`              the stored columns of a chunked Parquet or HDF5 output
`astro_galpost.io.streaming`           `predict_catalog`: a catalog file streamed through a
                                       model, resumable
`astro_galpost.io.dask`                `predict_dask`: the partitions of a Dask DataFrame
=====================================  ============================================================

Every public name is importable from ``astro_galpost.io``. The prediction
names are imported on first use (PEP 562), so ``import astro_galpost.io``
loads neither torch nor dask.
"""

from .formats import FORMATS, TableFormatError, detect_format
from .read import count_rows, iter_table_chunks, table_columns
from .write import ChunkedTableWriter, open_chunked_writer, write_table_atomic

_LAZY = {
    ".streaming": ("predict_catalog", "CatalogPrediction", "model_checksum", "resolve_model",
                   "DEFAULT_CHUNK_BATCHES"),
    ".dask": ("predict_dask", "prediction_units", "frame_to_table", "ModelPayload", "read_catalog"),
}
_MODULE_OF = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_MODULE_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


__all__ = [
    # formats, reading, writing (astro_galpost.io before the subpackage)
    "write_table_atomic",
    "TableFormatError",
    "FORMATS",
    "detect_format",
    "count_rows",
    "table_columns",
    "iter_table_chunks",
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
