"""Table formats of the chunked readers and writers, and astropy's metadata in them.

`detect_format` tells the format of a file from its suffix (see `FORMATS`).
Parquet, HDF5 and ECSV files written by astropy carry a YAML header
(`astropy.table.meta.get_yaml_from_table`) with the units, descriptions and
table metadata, and ``__serialized_columns__``: which stored plain columns make
up each mixin column (a masked Quantity is stored as ``<name>`` and
``<name>.mask``). `parse_table_header`, `stored_column_names`,
`logical_column_names` and `apply_table_header` read that header so that a
chunk of stored columns becomes the table astropy would have read.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "FORMATS",
    "TableFormatError",
    "apply_table_header",
    "detect_format",
    "logical_column_names",
    "parse_table_header",
    "stored_column_names",
]

#: Formats read and written chunk by chunk, by file-name suffix.
FORMATS: dict[str, str] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".he5": "hdf5",
    ".csv": "csv",
    ".ecsv": "ecsv",
}


class TableFormatError(ValueError):
    """A table file has an unknown format or cannot be read as its format."""


def detect_format(path, format: str | None = None) -> str:
    """The chunked-I/O format of ``path``: ``"parquet"``, ``"fits"``, ``"hdf5"``, ``"csv"`` or ``"ecsv"``.

    Parameters
    ----------
    path : str or path-like
        File name; the format follows its suffix (see `FORMATS`).
    format : str, optional
        Explicit format, overriding the suffix.

    Raises
    ------
    TableFormatError
        For an unknown suffix or format.
    """
    known = sorted(set(FORMATS.values()))
    if format is not None:
        fmt = format.lower()
        if fmt not in known:
            raise TableFormatError(f"unknown table format {format!r}; chunked I/O supports {', '.join(known)}")
        return fmt
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".gz" and Path(path.stem).suffix.lower() in (".fits", ".fit", ".fts"):
        raise TableFormatError(
            f"{path}: compressed FITS cannot be read or written in row slices (chunk by chunk); "
            "use an uncompressed .fits (gunzip an input first)")
    if suffix not in FORMATS:
        raise TableFormatError(
            f"cannot tell the table format of {path} from its suffix {suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


# -------------------------------------------------------- astropy metadata
def parse_table_header(lines) -> dict | None:
    """astropy's YAML table header from its lines, with or without the "# " prefix; None when it is not one.

    Parameters
    ----------
    lines : iterable of str
        The header lines, as astropy writes them to ECSV, Parquet
        (``table_meta_yaml``) or HDF5 (``<path>.__table_column_meta__``).

    Returns
    -------
    dict or None
        The header (``datatype``, ``meta``...), or None for foreign metadata,
        which is then ignored (the columns are read without units).
    """
    from astropy.table import meta

    try:
        return meta.get_header_from_yaml(list(lines))
    except Exception:  # noqa: BLE001 - foreign metadata: read without units
        return None


def _serialized_names(serialized: dict) -> list[str]:
    """Names of the plain columns a serialized mixin column is stored in (as astropy's ``_get_names``)."""
    names = []
    for key, value in serialized.items():
        if isinstance(value, dict):  # includes astropy.table.SerializedColumn
            names.extend(_serialized_names(value))
        elif key == "name":
            names.append(value)
    return names


def stored_column_names(header: dict | None, stored: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """Stored column names needed for the columns ``wanted`` as astropy names them (all when None).

    Parameters
    ----------
    header : dict or None
        The table's `parse_table_header`.
    stored : sequence of str
        The column names in the file.
    wanted : sequence of str or None
        Columns as astropy shows them (a masked Quantity ``m`` is stored as
        ``m`` and ``m.mask``).

    Raises
    ------
    KeyError
        Naming a wanted column that is not in the file.
    """
    if wanted is None:
        return list(stored)
    serialized = ((header or {}).get("meta") or {}).get("__serialized_columns__", {})
    names: list[str] = []
    for name in wanted:
        if name in serialized:
            parts = _serialized_names(serialized[name])
        else:
            parts = [name]
        for part in parts:
            if part not in stored:
                raise KeyError(f"column {name!r} is not in the table (columns: {', '.join(stored)})")
            if part not in names:
                names.append(part)
    return names


def apply_table_header(table, header: dict | None):
    """``table`` (stored plain columns) with an astropy header's units, descriptions and meta applied.

    Mixin columns (Quantity, Masked, Time...) listed in the header's
    ``__serialized_columns__`` are rebuilt from their stored columns; those
    whose stored columns are not all in ``table`` are left out of the header.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Plain columns as stored (a chunk of rows, or a subset of the columns).
    header : dict or None
        `parse_table_header`'s result; None returns ``table`` unchanged.

    Returns
    -------
    `~astropy.table.Table` or `~astropy.table.QTable`
    """
    from astropy.table import serialize

    if header is None:
        return table
    meta = copy.deepcopy(header.get("meta") or {})
    serialized = meta.get("__serialized_columns__")
    if serialized is not None:
        present = set(table.colnames)
        for key in list(serialized):
            if not set(_serialized_names(serialized[key])) <= present:
                serialized.pop(key)
        if not serialized:
            meta.pop("__serialized_columns__")
    table.meta = meta
    header_cols = {c["name"]: c for c in header.get("datatype", [])}
    for col in table.columns.values():
        spec = header_cols.get(col.info.name, {})
        for attr in ("description", "format", "unit", "meta"):
            if attr in spec:
                setattr(col.info, attr, spec[attr])
    # astropy has no public function that rebuilds mixin columns from stored columns and their
    # __serialized_columns__ (its own Parquet, HDF5, ECSV and FITS readers all call this private one);
    # the public alternative, a round trip of every chunk through Table.write/Table.read on a buffer,
    # would encode and decode each chunk a second time.
    return serialize._construct_mixins_from_columns(table)


def logical_column_names(header: dict | None, stored: Sequence[str]) -> list[str]:
    """Column names as astropy shows them (mixin columns joined) from the stored names.

    Parameters
    ----------
    header : dict or None
        The table's `parse_table_header`.
    stored : sequence of str
        The column names in the file.
    """
    serialized = ((header or {}).get("meta") or {}).get("__serialized_columns__", {})
    owner = {}
    for name, spec in serialized.items():
        for part in _serialized_names(spec):
            owner[part] = name
    out: list[str] = []
    for name in stored:
        logical = owner.get(name, name)
        if logical not in out:
            out.append(logical)
    return out
