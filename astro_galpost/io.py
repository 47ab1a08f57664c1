"""Reading and writing tables safely, whole or chunk by chunk.

Whole tables
    `write_table_atomic` writes an astropy table through a temporary file that is
    renamed only when complete.

Chunked reading
    `iter_table_chunks` reads a catalog in chunks of rows without loading it
    whole, as astropy `~astropy.table.Table` objects with the units, masks and
    mixin columns the format carries:

    ============  ==============================================================
    Format        How rows are read
    ============  ==============================================================
    Parquet       ``pyarrow.parquet.ParquetFile.iter_batches`` (column projection;
                  row groups before the first wanted row are skipped); astropy's
                  ``table_meta_yaml`` metadata restores units and masks.
    FITS          the first table HDU (or ``hdu=``), opened with ``memmap=True``
                  and re-opened for every chunk, so the mapped pages of earlier
                  chunks are released; converted with astropy's FITS reader.
                  Compressed (``.gz``) FITS files cannot be sliced: decompress them.
    HDF5          ``h5py`` row slices of an astropy-written table dataset
                  (``path=`` or the first table in the file); the
                  ``<path>.__table_column_meta__`` header restores units and masks.
    CSV           ``pandas.read_csv(chunksize=...)`` with round-trip float
                  parsing (no units in CSV).
    ECSV          the header is parsed once; data lines are read in chunks and
                  each chunk is parsed by astropy's ECSV reader with that header.
    ============  ==============================================================

Chunked writing
    `ChunkedTableWriter` (see `open_chunked_writer`) writes chunks to a temporary
    file (or folder) beside the final name and renames it to the final name only
    when every chunk is written. Its `~ChunkedTableWriter.checkpoint` state lets
    a later process continue an interrupted write:

    ============  ==============================================================
    Format        How chunks are written
    ============  ==============================================================
    Parquet       each chunk is written as its own small Parquet file in the
                  folder ``.<name>.parts``; `~ChunkedTableWriter.close` merges the
                  parts, one row group per part, with ``pyarrow.parquet.ParquetWriter``
                  into ``.<name>.partial`` (the merge holds one chunk at a time).
                  Parts survive a hard kill, so Parquet output always resumes.
    HDF5          an appendable ``h5py`` dataset (``path="data"``), flushed after
                  every chunk, plus astropy's ``data.__table_column_meta__``.
    FITS          a primary HDU and a binary-table header, then raw rows appended
                  chunk by chunk; ``NAXIS2`` is fixed and the data padded at the end.
    CSV, ECSV     text appended chunk by chunk (the header once).
    ============  ==============================================================

    Every chunk must have the columns and types of the first. Masked columns are
    written with explicit ``<name>.mask`` columns in Parquet and HDF5 (astropy's
    convention), so `astropy.table.QTable.read` gives back the masks and units.
    FITS and HDF5 store strings at a fixed width, taken from the first chunk (or
    the input format's declared width): a later, longer string raises
    `ValueError` (write Parquet, CSV or ECSV instead).
"""

from __future__ import annotations

import copy
import csv
import io
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .utils.atomic import fsync_path, write_atomic

__all__ = [
    "write_table_atomic",
    "TableFormatError",
    "FORMATS",
    "detect_format",
    "count_rows",
    "table_columns",
    "iter_table_chunks",
    "ChunkedTableWriter",
    "open_chunked_writer",
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


def write_table_atomic(table, path, overwrite: bool = False, **kwargs) -> Path:
    """Write an astropy table to ``path`` via a temporary file renamed when complete.

    An interrupted run never leaves a half-written file under the final name
    (see `astro_galpost.utils.atomic.write_atomic`: synced, umask permissions).
    """
    fmt = kwargs.pop("format", None)
    return write_atomic(path, lambda tmp: table.write(tmp, overwrite=True, format=fmt, **kwargs),
                        overwrite=overwrite)


# ---------------------------------------------------------------- formats
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
            f"{path}: compressed FITS cannot be read in row slices; decompress it (gunzip) first")
    if suffix not in FORMATS:
        raise TableFormatError(
            f"cannot tell the table format of {path} from its suffix {suffix or '(none)'!r}; "
            f"supported: {', '.join(sorted(FORMATS))}")
    return FORMATS[suffix]


def _check_input(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input table {path} does not exist")
    if not path.is_file():
        raise FileNotFoundError(f"input table {path} is not a file")
    return path


def _unreadable(path, fmt: str, err: BaseException) -> TableFormatError:
    return TableFormatError(f"cannot read {path} as {fmt.upper()}: {err}")


# -------------------------------------------------------- astropy metadata
def _yaml_header(lines) -> dict | None:
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


def _stored_names(header: dict | None, stored: Sequence[str], wanted: Sequence[str] | None) -> list[str]:
    """Stored column names needed for the logical columns ``wanted`` (all when None)."""
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


def _finish_table(table, header: dict | None):
    """Apply an astropy YAML header (units, descriptions, meta) and rebuild mixin columns."""
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
    return serialize._construct_mixins_from_columns(table)


# ---------------------------------------------------------------- readers
class _Reader:
    fmt = ""

    def __init__(self, path, **options):
        self.path = _check_input(path)
        self.options = options

    def colnames(self) -> list[str]:
        raise NotImplementedError

    def count(self) -> int | None:
        raise NotImplementedError

    def chunks(self, chunk_size: int, start: int, columns: Sequence[str] | None) -> Iterator:
        raise NotImplementedError


class _ParquetReader(_Reader):
    fmt = "parquet"

    def __init__(self, path, **options):
        super().__init__(path, **options)
        import pyarrow.parquet as pq

        try:
            # buffered page reads: without buffer_size, pyarrow reads whole column chunks at once
            self.file = pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)
        except Exception as err:  # noqa: BLE001 - pyarrow raises several types
            raise _unreadable(self.path, self.fmt, err) from err
        md = {k.decode(): v.decode() for k, v in (self.file.schema_arrow.metadata or {}).items()}
        self.lengths = {k[len("table::len::"):]: int(v) for k, v in md.items() if k.startswith("table::len::")}
        self.header = _yaml_header(md["table_meta_yaml"].split("\n")) if "table_meta_yaml" in md else None
        self.stored = list(self.file.schema_arrow.names)

    def colnames(self) -> list[str]:
        return _logical_names(self.header, self.stored)

    def count(self) -> int:
        return self.file.metadata.num_rows

    def chunks(self, chunk_size, start, columns):
        import pyarrow as pa

        names = _stored_names(self.header, self.stored, columns)
        rg_rows = [self.file.metadata.row_group(i).num_rows for i in range(self.file.num_row_groups)]
        first, skip = 0, start
        while first < len(rg_rows) and skip >= rg_rows[first]:
            skip -= rg_rows[first]
            first += 1
        schema = self.file.schema_arrow
        schema = pa.schema([schema.field(n) for n in names])
        pending, n_pending = [], 0
        batches = (
            self.file.iter_batches(batch_size=chunk_size, row_groups=list(range(first, len(rg_rows))), columns=names,
                                   use_threads=False)
            if first < len(rg_rows) else iter(())
        )
        for batch in batches:
            if skip:
                drop = min(skip, batch.num_rows)
                batch, skip = batch.slice(drop), skip - drop
            if batch.num_rows == 0:
                continue
            pending.append(batch)
            n_pending += batch.num_rows
            while n_pending >= chunk_size:
                joined = pa.Table.from_batches(pending, schema=schema)
                yield self._convert(joined.slice(0, chunk_size), names)
                rest = joined.slice(chunk_size)
                pending, n_pending = rest.to_batches(), rest.num_rows
        if n_pending:
            yield self._convert(pa.Table.from_batches(pending, schema=schema), names)

    def _convert(self, arrow, names):
        from astropy.table import Column, MaskedColumn, Table

        import pyarrow as pa

        table = Table()
        for name in names:
            col = arrow.column(name)
            t = col.type
            string = pa.types.is_string(t) or pa.types.is_large_string(t)
            binary = pa.types.is_binary(t) or pa.types.is_large_binary(t)
            nulls = col.null_count
            if string or binary:
                width = self.lengths.get(name)
                data = col.to_numpy(zero_copy_only=False)
                mask = np.asarray(col.is_null()) if nulls else None
                if nulls:
                    data = np.where(mask, "" if string else b"", data)
                kind = "U" if string else "S"
                data = data.astype(f"{kind}{width}" if width else kind)
            elif isinstance(t, pa.FixedSizeListType):
                flat = col.combine_chunks().flatten().to_numpy(zero_copy_only=False)
                data, mask = flat.reshape(len(col), t.list_size), None
            else:
                mask = np.asarray(col.is_null()) if nulls else None
                if nulls and pa.types.is_floating(t):
                    mask = None  # NaN marks a missing float
                if nulls:
                    col = col.fill_null(False if pa.types.is_boolean(t) else 0)
                data = col.to_numpy(zero_copy_only=False)
            table[name] = MaskedColumn(data, mask=mask) if mask is not None else Column(data)
        return _finish_table(table, self.header)


def _logical_names(header: dict | None, stored: Sequence[str]) -> list[str]:
    """Column names as astropy shows them (mixins joined) from the stored names."""
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


class _FITSReader(_Reader):
    fmt = "fits"

    def __init__(self, path, **options):
        super().__init__(path, **options)
        from astropy.io import fits

        try:
            with fits.open(self.path, memmap=True) as hdul:
                self.hdu = self._find(hdul, options.get("hdu"))
                header = hdul[self.hdu].header
                self.n = int(header["NAXIS2"])
                self.names = list(hdul[self.hdu].columns.names)
        except TableFormatError:
            raise
        except Exception as err:  # noqa: BLE001 - astropy raises several types
            raise _unreadable(self.path, self.fmt, err) from err

    def _find(self, hdul, hdu):
        from astropy.io import fits

        if hdu is not None:
            return hdu
        for i, h in enumerate(hdul):
            if isinstance(h, (fits.BinTableHDU, fits.TableHDU)):
                return i
        raise TableFormatError(f"{self.path} has no table HDU")

    def colnames(self):
        from astropy.io import fits
        from astropy.io.fits.connect import read_table_fits

        with fits.open(self.path, memmap=True) as hdul:
            h = hdul[self.hdu]
            table = read_table_fits(fits.BinTableHDU(data=h.data[:0], header=h.header)
                                    if isinstance(h, fits.BinTableHDU) else h)
            return list(table.colnames)

    def count(self):
        return self.n

    def chunks(self, chunk_size, start, columns):
        from astropy.io import fits
        from astropy.io.fits.connect import read_table_fits

        for lo in range(start, self.n, chunk_size):
            hi = min(lo + chunk_size, self.n)
            # re-open per chunk: closing the file unmaps the pages read so far
            with fits.open(self.path, memmap=True, character_as_bytes=True) as hdul:
                h = hdul[self.hdu]
                cls = fits.BinTableHDU if isinstance(h, fits.BinTableHDU) else fits.TableHDU
                part = cls(data=h.data[lo:hi], header=h.header)
                table = read_table_fits(part)
                if columns is not None:
                    table = table[list(columns)]
                table = table.__class__(table, copy=True)  # detach from the memory map
                del part, h
            yield table


class _HDF5Reader(_Reader):
    fmt = "hdf5"

    def __init__(self, path, **options):
        super().__init__(path, **options)
        import h5py

        try:
            with h5py.File(self.path, "r") as f:
                self.dataset = options.get("path") or self._find(f)
                if self.dataset not in f:
                    raise TableFormatError(f"{self.path} has no dataset {self.dataset!r}")
                ds = f[self.dataset]
                if not isinstance(ds, h5py.Dataset) or ds.dtype.names is None:
                    raise TableFormatError(f"{self.path}:{self.dataset} is not a table (structured dataset)")
                self.n = int(ds.shape[0])
                self.stored = list(ds.dtype.names)
                meta = f"{self.dataset}.__table_column_meta__"
                self.header = _yaml_header(h.decode("utf-8") for h in f[meta][()]) if meta in f else None
        except TableFormatError:
            raise
        except Exception as err:  # noqa: BLE001 - h5py raises OSError and others
            raise _unreadable(self.path, self.fmt, err) from err

    def _find(self, f) -> str:
        import h5py

        found: list[str] = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.names is not None and not name.endswith("__table_column_meta__"):
                found.append(name)

        f.visititems(visit)
        if not found:
            raise TableFormatError(f"{self.path} holds no table (structured dataset)")
        return found[0]

    def colnames(self):
        return _logical_names(self.header, self.stored)

    def count(self):
        return self.n

    def chunks(self, chunk_size, start, columns):
        import h5py
        from astropy.table import Table

        names = _stored_names(self.header, self.stored, columns)
        with h5py.File(self.path, "r") as f:
            ds = f[self.dataset]
            for lo in range(start, self.n, chunk_size):
                hi = min(lo + chunk_size, self.n)
                data = ds.fields(names)[lo:hi] if names != self.stored else ds[lo:hi]
                if len(names) == 1 and data.dtype.names is None:
                    data = np.rec.fromarrays([data], names=names)
                yield _finish_table(Table(data, copy=False), self.header)


class _CSVReader(_Reader):
    fmt = "csv"

    def __init__(self, path, **options):
        super().__init__(path, **options)
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                self.names = next(csv.reader(f))
        except StopIteration:
            raise TableFormatError(f"{self.path} is empty") from None
        except (UnicodeDecodeError, csv.Error) as err:
            raise _unreadable(self.path, self.fmt, err) from err

    def colnames(self):
        return list(self.names)

    def count(self):
        return max(_count_lines(self.path) - 1, 0)

    def chunks(self, chunk_size, start, columns):
        import pandas as pd

        with open(self.path, newline="", encoding="utf-8") as f:
            f.readline()
            skipped = 0
            while skipped < start:  # data rows, not lines: pandas skips blank lines too
                line = f.readline()
                if not line:
                    break
                skipped += bool(line.strip())
            try:
                # pandas 3 parses floats exactly by default (and deprecates float_precision)
                exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
                reader = pd.read_csv(
                    f, header=None, names=self.names, usecols=list(columns) if columns is not None else None,
                    chunksize=chunk_size, skip_blank_lines=True, **exact,
                )
                for frame in reader:
                    if len(frame):  # at the end of the file pandas may give one empty frame
                        yield _frame_to_table(frame)
            except pd.errors.EmptyDataError:
                return
            except (pd.errors.ParserError, UnicodeDecodeError) as err:
                raise _unreadable(self.path, self.fmt, err) from err


def _frame_to_table(frame):
    """A pandas DataFrame → astropy Table, NaN kept for missing floats, masks for other missing values."""
    from astropy.table import Column, MaskedColumn, Table

    table = Table()
    for name in frame.columns:
        s = frame[name]
        kind = getattr(s.dtype, "kind", "O")
        if kind in "biufc" and not hasattr(s.dtype, "na_value"):
            table[name] = Column(s.to_numpy())
            continue
        missing = s.isna().to_numpy()
        if kind in "fc":
            table[name] = Column(s.to_numpy(dtype=float, na_value=np.nan))
        elif kind in "biu":
            data = s.to_numpy(dtype=s.dtype.numpy_dtype, na_value=0)
            table[name] = MaskedColumn(data, mask=missing) if missing.any() else Column(data)
        else:
            data = np.asarray(["" if m else str(v) for v, m in zip(s.to_numpy(), missing)], dtype=str)
            table[name] = MaskedColumn(data, mask=missing) if missing.any() else Column(data)
    return table


def _count_lines(path) -> int:
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


class _ECSVReader(_Reader):
    fmt = "ecsv"

    def __init__(self, path, **options):
        super().__init__(path, **options)
        self.header_lines: list[str] = []
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("#"):
                        self.header_lines.append(line.rstrip("\n"))
                    elif line.strip():
                        self.names_line = line.rstrip("\n")
                        break
                else:
                    raise TableFormatError(f"{self.path} has no column-name line")
        except UnicodeDecodeError as err:
            raise _unreadable(self.path, self.fmt, err) from err
        if not self.header_lines or not self.header_lines[0].startswith("# %ECSV"):
            raise TableFormatError(f"{self.path} is not an ECSV file (no '# %ECSV' first line)")
        self._header_size = len(self.header_lines) + 1

    def colnames(self):
        return list(self._read([]).colnames)

    def count(self):
        return max(_count_lines(self.path) - self._header_size, 0)

    def _read(self, lines):
        from astropy.io import ascii

        try:
            return ascii.read([*self.header_lines, self.names_line, *lines], format="ecsv", guess=False)
        except Exception as err:  # noqa: BLE001 - astropy raises several types
            raise _unreadable(self.path, self.fmt, err) from err

    def chunks(self, chunk_size, start, columns):
        with open(self.path, encoding="utf-8") as f:
            for _ in range(self._header_size):
                f.readline()
            skipped = 0
            lines: list[str] = []
            for line in f:
                if not line.strip():
                    continue
                if skipped < start:
                    skipped += 1
                    continue
                lines.append(line.rstrip("\n"))
                if len(lines) == chunk_size:
                    yield self._select(self._read(lines), columns)
                    lines = []
            if lines:
                yield self._select(self._read(lines), columns)

    @staticmethod
    def _select(table, columns):
        return table if columns is None else table[list(columns)]


_READERS = {"parquet": _ParquetReader, "fits": _FITSReader, "hdf5": _HDF5Reader, "csv": _CSVReader,
            "ecsv": _ECSVReader}


def _reader(path, format=None, **options) -> _Reader:
    return _READERS[detect_format(path, format)](path, **options)


def count_rows(path, format: str | None = None, **options) -> int:
    """Number of rows of a catalog, from its metadata (Parquet, FITS, HDF5) or by counting lines (CSV, ECSV)."""
    return _reader(path, format, **options).count()


def table_columns(path, format: str | None = None, **options) -> list[str]:
    """Column names of a catalog as astropy shows them, without reading its rows."""
    return _reader(path, format, **options).colnames()


def iter_table_chunks(
    path,
    chunk_size: int,
    *,
    start: int = 0,
    columns: Sequence[str] | None = None,
    format: str | None = None,
    hdu: int | str | None = None,
    hdf5_path: str | None = None,
) -> Iterator:
    """Read a catalog chunk by chunk without loading it whole.

    Parameters
    ----------
    path : str or path-like
        Parquet, FITS, HDF5, CSV or ECSV file (see the module documentation for
        how each is read). The file is only read.
    chunk_size : int
        Rows per chunk; every chunk but the last has exactly this many rows.
    start : int, optional
        Index of the first row to read (earlier rows are skipped).
    columns : sequence of str, optional
        Columns to read (as astropy names them, e.g. a Quantity column whose
        mask is stored separately); default all.
    format : str, optional
        Format, overriding the file-name suffix.
    hdu : int or str, optional
        FITS: the table HDU (default the first table).
    hdf5_path : str, optional
        HDF5: the table dataset (default the first table in the file).

    Yields
    ------
    `~astropy.table.Table` or `~astropy.table.QTable`
        One chunk, with units, masks and mixin columns restored where the
        format records them (a QTable when it holds Quantity columns).

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    TableFormatError
        For an unknown format or a file that cannot be read as its format.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    options = {}
    if hdu is not None:
        options["hdu"] = hdu
    if hdf5_path is not None:
        options["path"] = hdf5_path
    reader = _reader(path, format, **options)
    yield from reader.chunks(int(chunk_size), int(start), None if columns is None else list(columns))


# ---------------------------------------------------------------- writers
def _encode(table, context: str):
    """Mixin columns (Quantity, Masked, Time...) as plain columns, as astropy writes ``context`` files."""
    from astropy.table import serialize
    from astropy.utils.data_info import serialize_context_as

    with serialize_context_as(context):
        return serialize.represent_mixins_as_columns(table)


def _fully_masked_probe(table):
    """One row of ``table`` with every maskable column masked (fixes which ``.mask`` columns exist)."""
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked

    probe = table[:1].copy()
    for name in probe.colnames:
        col = probe[name]
        if isinstance(col, MaskedColumn):
            col.mask[:] = True
        elif isinstance(col, Masked):
            col[...] = np.ma.masked
    return probe


def _width(dtype: np.dtype) -> int:
    return dtype.itemsize // 4 if dtype.kind == "U" else dtype.itemsize


class _Layout:
    """The stored columns of a chunked output: names, dtypes and astropy's YAML header.

    Built from the first chunk; later chunks are encoded to exactly this layout.
    """

    def __init__(self, names: list[str], dtypes: list, yaml: list[str], context: str):
        # a dtype is a string, or [string, shape] for multidimensional columns
        self.names, self.yaml, self.context = names, yaml, context
        self.dtypes = [np.dtype(d) if isinstance(d, str) else np.dtype((d[0], tuple(d[1]))) for d in dtypes]

    @classmethod
    def from_table(cls, table, context: str, *, bytes_strings: bool = False) -> _Layout:
        from astropy.table import meta

        probe = _encode(_fully_masked_probe(table), context)
        full = _encode(table, context)
        if bytes_strings:
            probe.convert_unicode_to_bytestring()
            full = full.copy(copy_data=False)
            full.convert_unicode_to_bytestring()
        dtypes = []
        for name in probe.colnames:
            dt = probe[name].dtype
            if dt.kind in "US" and name in full.colnames:
                width = max(_width(dt), _width(full[name].dtype), 1)
                dt = np.dtype(f"{dt.kind}{width}")
            shape = probe[name].shape[1:]
            dtypes.append([dt.str, list(shape)] if shape else dt.str)
        return cls(list(probe.colnames), dtypes, list(meta.get_yaml_from_table(probe)), context)

    def to_dict(self) -> dict:
        dtypes = [[d.base.str, list(d.shape)] if d.shape else d.str for d in self.dtypes]
        return {"names": self.names, "dtypes": dtypes, "yaml": self.yaml, "context": self.context}

    @classmethod
    def from_dict(cls, d: dict) -> _Layout:
        return cls(list(d["names"]), list(d["dtypes"]), list(d["yaml"]), d["context"])

    def encode(self, table, *, fixed_strings: bool) -> dict[str, np.ndarray]:
        """Stored arrays of ``table`` in this layout."""
        from astropy.table import MaskedColumn

        enc = _encode(table, self.context)
        have = set(enc.colnames)
        out: dict[str, np.ndarray] = {}
        extra = have - set(self.names)
        for name in extra:
            base = name[: -len(".mask")] if name.endswith(".mask") else None
            if base is None or base not in self.names or self.dtypes[self.names.index(base)].kind not in "fc":
                raise ValueError(
                    f"column {name!r} appears in a later chunk but not in the first one; "
                    "every chunk must have the columns of the first")
        for name, dtype in zip(self.names, self.dtypes):
            if name in have:
                col = enc[name]
                if isinstance(col, MaskedColumn):
                    data = col.filled(np.nan) if col.dtype.kind in "fc" else col.filled()
                else:
                    data = np.asarray(col)
                mask_name = f"{name}.mask"
                if mask_name in extra:  # masked floats the first chunk did not mask: NaN
                    data = np.where(np.asarray(enc[mask_name]), np.nan, data)
                out[name] = self._cast(name, data, dtype, fixed_strings)
            elif name.endswith(".mask") and name[: -len(".mask")] in have:
                out[name] = np.zeros(len(enc), bool)
            else:
                raise ValueError(f"column {name!r} of the first chunk is missing from a later chunk")
        return out

    @staticmethod
    def _cast(name: str, data: np.ndarray, dtype: np.dtype, fixed_strings: bool) -> np.ndarray:
        if dtype.kind in "US":
            if data.dtype.kind == "U" and dtype.kind == "S":
                data = np.char.encode(data, "utf-8")
            elif data.dtype.kind == "S" and dtype.kind == "U":
                data = np.char.decode(data, "utf-8")
            if fixed_strings and data.dtype.kind in "US" and _width(data.dtype) > _width(dtype):
                longest = int(np.char.str_len(data).max()) if len(data) else 0
                if longest > _width(dtype):
                    raise ValueError(
                        f"string column {name!r} has values of {longest} characters in a later chunk but "
                        f"the output stores {_width(dtype)} (the first chunk's width); write Parquet, CSV "
                        "or ECSV, or leave the column out")
            return data.astype(dtype) if fixed_strings else data
        if data.shape[1:] != dtype.shape:
            raise ValueError(f"column {name!r} has shape {data.shape[1:]} per row in a later chunk but "
                             f"{dtype.shape} in the first")
        if data.dtype == dtype.base:
            return data
        if not np.can_cast(data.dtype, dtype.base, casting="same_kind"):
            if data.dtype.kind == "f" and dtype.kind in "iub" and np.isnan(data).any():
                raise ValueError(
                    f"column {name!r} is {dtype} in the first chunk but has missing values (NaN) later; "
                    "CSV input cannot carry masked integers: convert the catalog to Parquet or FITS, "
                    "or leave the column out")
            if not (data.dtype.kind in "iub" and dtype.kind in "fiu"):
                raise ValueError(f"column {name!r} is {data.dtype} in a later chunk but {dtype} in the first")
        return data.astype(dtype.base)


class ChunkedTableWriter:
    """Write a table chunk by chunk; the file appears under its final name only when complete.

    Use `open_chunked_writer` to make one. Call `write` for every chunk in
    order, `checkpoint` after a chunk to get a JSON-able state, and `close` to
    finish and rename. `abort` closes open handles but keeps the temporary
    output so that a writer made with ``state=checkpoint()`` continues it.

    Attributes
    ----------
    path : `~pathlib.Path`
        Final file name.
    tmp_path : `~pathlib.Path`
        Temporary file beside it, ``.<name>.partial``.
    rows : int
        Rows written so far.
    """

    fmt = ""

    def __init__(self, path, *, state: dict | None = None, **options) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.parent / f".{self.path.name}.partial"
        self.options = options
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if state is not None:
            if state.get("format") != self.fmt:
                raise ValueError(f"cannot resume a {state.get('format')} output as {self.fmt}")
            self.rows = int(state["rows"])
            self._resume(state)
        else:
            self.discard()

    # -- to implement
    def _resume(self, state: dict) -> None:
        raise NotImplementedError

    def _write(self, table) -> None:
        raise NotImplementedError

    def _state(self) -> dict:
        return {}

    def _finish(self) -> None:
        pass

    def abort(self) -> None:
        """Close open handles, keeping the temporary output for a resume."""

    def discard(self) -> None:
        """Remove the temporary output."""
        self.abort()
        self.tmp_path.unlink(missing_ok=True)

    # -- public
    def write(self, table) -> None:
        """Append the rows of ``table`` (an astropy table with the first chunk's columns)."""
        if len(table) == 0:
            return
        self._write(table)
        self.rows += len(table)

    def checkpoint(self) -> dict:
        """Flush to disk and return a JSON-able state from which a new writer can continue."""
        return {"format": self.fmt, "rows": self.rows, **self._state()}

    def close(self, overwrite: bool = False) -> Path:
        """Finish the file and rename it to `path`; return `path`."""
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (--overwrite) to replace it")
        self._finish()
        fsync_path(self.tmp_path)
        os.replace(self.tmp_path, self.path)
        fsync_path(self.path.parent)
        return self.path


def _fsync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


class _TextWriter(ChunkedTableWriter):
    """CSV and ECSV: the header once, then data lines appended."""

    astropy_format = ""

    def __init__(self, path, *, state=None, **options):
        self.header: list[str] | None = None
        self._file = None
        super().__init__(path, state=state, **options)

    def _resume(self, state):
        if not self.tmp_path.is_file() or self.tmp_path.stat().st_size < state["bytes"]:
            raise ValueError(f"temporary output {self.tmp_path} is missing or shorter than recorded")
        self.header = state.get("header")
        self._file = open(self.tmp_path, "r+b")
        self._file.truncate(state["bytes"])
        self._file.seek(state["bytes"])

    def _text(self, table) -> tuple[list[str], str]:
        buf = io.StringIO()
        table.write(buf, format=self.astropy_format)
        text = buf.getvalue()
        n_header = self._header_lines(text)
        lines = text.split("\n", n_header)
        return lines[:n_header], (lines[n_header] if len(lines) > n_header else "")

    def _header_lines(self, text: str) -> int:
        return 1

    def _write(self, table):
        header, data = self._text(table)
        if self._file is None:
            self._file = open(self.tmp_path, "wb")
        if self.header is None:
            self.header = header
            self._file.write(("\n".join(header) + "\n").encode("utf-8"))
        elif header != self.header:
            raise ValueError(
                f"a later chunk's {self.fmt.upper()} header differs from the first chunk's "
                "(columns, types or units changed)")
        if data and not data.endswith("\n"):
            data += "\n"
        self._file.write(data.encode("utf-8"))

    def _state(self):
        if self._file is not None:
            _fsync(self._file)
        size = self.tmp_path.stat().st_size if self.tmp_path.exists() else 0
        return {"bytes": size, "header": self.header}

    def _finish(self):
        if self._file is None:
            raise ValueError("no rows were written")
        _fsync(self._file)
        self._file.close()
        self._file = None

    def abort(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class _CSVWriter(_TextWriter):
    fmt = "csv"
    astropy_format = "ascii.csv"


class _ECSVWriter(_TextWriter):
    fmt = "ecsv"
    astropy_format = "ascii.ecsv"

    def _header_lines(self, text):
        n = 0
        for line in text.split("\n"):
            n += 1
            if not line.startswith("#"):
                return n  # comment lines and the column-name line
        return n


class _FITSWriter(ChunkedTableWriter):
    """A primary HDU and one binary table; rows appended as raw bytes, NAXIS2 fixed at the end."""

    fmt = "fits"
    _BLOCK = 2880

    def __init__(self, path, *, state=None, **options):
        self.header: str | None = None
        self.widths: dict[str, int] = {}
        self._file = None
        super().__init__(path, state=state, **options)

    def _resume(self, state):
        if not self.tmp_path.is_file() or self.tmp_path.stat().st_size < state["bytes"]:
            raise ValueError(f"temporary output {self.tmp_path} is missing or shorter than recorded")
        self.header, self.widths = state["header"], dict(state["widths"])
        self._file = open(self.tmp_path, "r+b")
        self._file.truncate(state["bytes"])
        self._file.seek(state["bytes"])

    @staticmethod
    def _comparable(header_text: str) -> list[str]:
        cards = [header_text[i:i + 80] for i in range(0, len(header_text), 80)]
        return [c for c in cards if not c.startswith("NAXIS2 ") and c.strip()]

    def _hdu(self, table):
        from astropy.io import fits

        table = table.copy(copy_data=False)
        for name in table.colnames:
            col = table[name]
            if getattr(col, "dtype", None) is not None and col.dtype.kind in "US" and name in self.widths:
                width = self.widths[name]
                if _width(col.dtype) > width:
                    longest = int(np.char.str_len(np.asarray(col)).max())
                    if longest > width:
                        raise ValueError(
                            f"string column {name!r} has values of {longest} characters in a later chunk but "
                            f"the FITS output stores {width} (the first chunk's width); write Parquet, CSV "
                            "or ECSV, or leave the column out")
                table[name] = col.astype(f"{col.dtype.kind}{width}")
        from astropy.io.fits.connect import _encode_mixins  # as Table.write(format="fits")
        from astropy.utils.exceptions import AstropyUserWarning

        with warnings.catch_warnings():
            if self.header is not None:  # astropy's warnings (e.g. non-FITS units) once, for the first chunk
                warnings.simplefilter("ignore", AstropyUserWarning)
            hdu = fits.table_to_hdu(_encode_mixins(table), character_as_bytes=True)
        if hdu.header.get("PCOUNT", 0):
            raise ValueError("variable-length array columns cannot be written to FITS chunk by chunk")
        return hdu

    def _write(self, table):
        from astropy.io import fits

        if self.header is None:
            self.widths = {n: _width(table[n].dtype) for n in table.colnames
                           if getattr(table[n], "dtype", None) is not None and table[n].dtype.kind in "US"}
        hdu = self._hdu(table)
        buf = io.BytesIO()
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(buf)
        raw = buf.getvalue()
        header_text = hdu.header.tostring()
        nbytes = hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
        offset = self._BLOCK + len(header_text)
        if self.header is None:
            self.header = header_text
            self._file = open(self.tmp_path, "wb")
            self._file.write(raw[:offset])
        elif self._comparable(header_text) != self._comparable(self.header):
            raise ValueError("a later chunk's FITS columns differ from the first chunk's (types, units or masks)")
        self._file.write(raw[offset:offset + nbytes])

    def _state(self):
        if self._file is not None:
            _fsync(self._file)
        size = self.tmp_path.stat().st_size if self.tmp_path.exists() else 0
        return {"bytes": size, "header": self.header, "widths": self.widths}

    def _finish(self):
        from astropy.io import fits

        if self._file is None:
            raise ValueError("no rows were written")
        f = self._file
        f.seek(0, os.SEEK_END)
        pad = -f.tell() % self._BLOCK
        f.write(b"\0" * pad)
        start = self.header.find("NAXIS2  =")
        if start < 0 or start % 80:
            raise ValueError("cannot locate NAXIS2 in the FITS header")
        card = fits.Card("NAXIS2", self.rows, "length of dimension 2").image
        f.seek(self._BLOCK + start)
        f.write(card.encode("ascii"))
        _fsync(f)
        f.close()
        self._file = None

    def abort(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class _HDF5Writer(ChunkedTableWriter):
    """An appendable h5py dataset with astropy's column metadata."""

    fmt = "hdf5"

    def __init__(self, path, *, state=None, **options):
        self.layout: _Layout | None = None
        self._file = None
        self.dataset = options.get("hdf5_path") or "data"
        super().__init__(path, state=state, **options)

    def _resume(self, state):
        import h5py

        self.layout = _Layout.from_dict(state["layout"])
        try:
            self._file = h5py.File(self.tmp_path, "r+")
            self._file[self.dataset].resize((self.rows,))
        except Exception as err:  # noqa: BLE001 - h5py raises several types
            self.abort()
            raise ValueError(f"cannot continue the temporary HDF5 output {self.tmp_path}: {err}") from err

    def _write(self, table):
        import h5py

        if self.layout is None:
            self.layout = _Layout.from_table(table, "hdf5", bytes_strings=True)
            dtype = np.dtype(list(zip(self.layout.names, self.layout.dtypes)))
            self._file = h5py.File(self.tmp_path, "w")
            rows = max(1, min(len(table), 65536))
            self._file.create_dataset(self.dataset, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(rows,))
            self._file.create_dataset(f"{self.dataset}.__table_column_meta__",
                                      data=[h.encode("utf-8") for h in self.layout.yaml])
        arrays = self.layout.encode(table, fixed_strings=True)
        ds = self._file[self.dataset]
        data = np.empty(len(table), dtype=ds.dtype)
        for name in self.layout.names:
            data[name] = arrays[name]
        ds.resize((self.rows + len(table),))
        ds[self.rows:] = data

    def _state(self):
        if self._file is not None:
            self._file.flush()
        return {"layout": self.layout.to_dict() if self.layout else None}

    def _finish(self):
        if self._file is None:
            raise ValueError("no rows were written")
        self._file.close()
        self._file = None

    def abort(self):
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


class _ParquetWriter(ChunkedTableWriter):
    """One Parquet part per chunk in ``.<name>.parts``; merged into one file by `close`."""

    fmt = "parquet"

    def __init__(self, path, *, state=None, **options):
        self.layout: _Layout | None = None
        self.parts = 0
        self.lengths: dict[str, int] = {}
        path = Path(path)
        self.parts_dir = path.parent / f".{path.name}.parts"
        super().__init__(path, state=state, **options)

    def _part(self, i: int) -> Path:
        return self.parts_dir / f"part-{i:06d}.parquet"

    def _resume(self, state):
        self.layout = _Layout.from_dict(state["layout"])
        self.parts, self.lengths = int(state["parts"]), dict(state["lengths"])
        for i in range(self.parts):
            if not self._part(i).is_file():
                raise ValueError(f"part {self._part(i)} of the interrupted output is missing")
        for extra in self.parts_dir.glob("part-*.parquet"):  # parts written after the last checkpoint
            if int(extra.stem.split("-")[1]) >= self.parts:
                extra.unlink()

    def _schema(self, metadata: dict | None = None):
        import pyarrow as pa

        fields = []
        for name, dt in zip(self.layout.names, self.layout.dtypes):
            if dt.kind == "U":
                t = pa.string()
            elif dt.kind == "S":
                t = pa.binary()
            elif dt.shape:
                t = pa.list_(pa.from_numpy_dtype(dt.base.type), int(np.prod(dt.shape)))
            else:
                t = pa.from_numpy_dtype(dt.type)
            fields.append(pa.field(name, t))
        return pa.schema(fields, metadata=metadata)

    def _write(self, table):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.layout is None:
            self.layout = _Layout.from_table(table, "parquet")
        arrays = self.layout.encode(table, fixed_strings=False)
        schema = self._schema()
        columns = []
        for name, field in zip(self.layout.names, schema):
            data = arrays[name]
            if data.dtype.kind in "US":
                self.lengths[name] = max(self.lengths.get(name, 0), _width(data.dtype))
            if data.ndim > 1:
                data = pa.FixedSizeListArray.from_arrays(
                    pa.array(data.reshape(-1).astype(data.dtype.newbyteorder("="))), field.type.list_size)
                columns.append(data)
            else:
                columns.append(pa.array(data.astype(data.dtype.newbyteorder("="), copy=False)
                                        if data.dtype.kind not in "US" else data, type=field.type))
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        part = self._part(self.parts)
        data = pa.Table.from_arrays(columns, schema=schema)
        write_atomic(part, lambda tmp: pq.write_table(data, tmp), overwrite=True, suffix=".tmp")
        self.parts += 1

    def _state(self):
        return {"layout": self.layout.to_dict() if self.layout else None, "parts": self.parts,
                "lengths": self.lengths}

    def _finish(self):
        import pyarrow.parquet as pq

        if not self.parts:
            raise ValueError("no rows were written")
        metadata = {"table_meta_yaml": "\n".join(self.layout.yaml)}
        for name, dt in zip(self.layout.names, self.layout.dtypes):
            if dt.kind in "US":
                metadata[f"table::len::{name}"] = str(self.lengths.get(name, _width(dt)))
        schema = self._schema({k.encode(): v.encode() for k, v in metadata.items()})
        with pq.ParquetWriter(self.tmp_path, schema, version="2.6") as writer:
            for i in range(self.parts):
                writer.write_table(pq.read_table(self._part(i)).cast(schema))

    def close(self, overwrite: bool = False) -> Path:
        path = super().close(overwrite=overwrite)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return path

    def discard(self):
        super().discard()
        shutil.rmtree(self.parts_dir, ignore_errors=True)


_WRITERS = {"parquet": _ParquetWriter, "fits": _FITSWriter, "hdf5": _HDF5Writer, "csv": _CSVWriter,
            "ecsv": _ECSVWriter}


def open_chunked_writer(path, *, format: str | None = None, state: dict | None = None,
                        hdf5_path: str | None = None) -> ChunkedTableWriter:
    """A `ChunkedTableWriter` for ``path`` (format from the suffix or ``format``).

    Parameters
    ----------
    path : str or path-like
        Final output file.
    format : str, optional
        Output format, overriding the suffix.
    state : dict, optional
        A previous writer's `~ChunkedTableWriter.checkpoint`: continue its
        temporary output (raises `ValueError` when that output is unusable).
        Without it, any earlier temporary output is removed.
    hdf5_path : str, optional
        HDF5: name of the table dataset (default ``"data"``).
    """
    fmt = detect_format(path, format)
    return _WRITERS[fmt](path, state=state, hdf5_path=hdf5_path)
