"""Reading a catalog chunk by chunk without loading it whole.

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

CSV is read with pandas rather than astropy's chunked ASCII reader
(``ascii.read(..., fast_reader={"chunk_size": ..., "chunk_generator": True})``):
astropy's splits the file by bytes, so its chunks hold varying numbers of rows
and it cannot start at a given row, while `iter_table_chunks` gives chunks of
exactly ``chunk_size`` rows from row ``start`` (what resuming needs).
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

import numpy as np

from .formats import (
    TableFormatError,
    apply_table_header,
    detect_format,
    logical_column_names,
    parse_table_header,
    stored_column_names,
)

__all__ = ["check_input_file", "count_rows", "iter_table_chunks", "pandas_to_table", "table_columns"]


def check_input_file(path, what: str = "input table") -> Path:
    """``path`` as a `~pathlib.Path`, or `FileNotFoundError` saying that ``what`` is missing or a folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} {'is a folder, not a file' if path.is_dir() else 'does not exist'}")
    return path


def _unreadable(path, fmt: str, err: BaseException) -> TableFormatError:
    return TableFormatError(f"cannot read {path} as {fmt.upper()}: {err}")


# ---------------------------------------------------------------- readers
class _Reader:
    fmt = ""

    def __init__(self, path, **options):
        self.path = check_input_file(path)
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
        self.header = parse_table_header(md["table_meta_yaml"].split("\n")) if "table_meta_yaml" in md else None
        self.stored = list(self.file.schema_arrow.names)
        self.nullable = self._columns_with_nulls()

    def _columns_with_nulls(self) -> set[str]:
        """Columns with a null anywhere in the file (row-group statistics; a column without
        statistics counts as one), so that every chunk of them is masked alike."""
        names, metadata = set(), self.file.metadata
        for i in range(metadata.num_row_groups):
            group = metadata.row_group(i)
            for j in range(group.num_columns):
                column = group.column(j)
                stats = column.statistics
                if stats is None or not stats.has_null_count or stats.null_count:
                    names.add(column.path_in_schema.split(".")[0])
        return names

    def colnames(self) -> list[str]:
        return logical_column_names(self.header, self.stored)

    def count(self) -> int:
        return self.file.metadata.num_rows

    def chunks(self, chunk_size, start, columns):
        import pyarrow as pa

        names = stored_column_names(self.header, self.stored, columns)
        self._check_types(names)
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

    def _check_types(self, names: Sequence[str]) -> None:
        """Refuse, before any row is read, columns whose Parquet type has no astropy column (naming them)."""
        schema = self.file.schema_arrow
        for name in names:
            t = schema.field(name).type
            if not _readable_type(t):
                raise TableFormatError(
                    f"column {name!r} of {self.path} has the Parquet type {t}, which cannot be read (supported: "
                    "numbers, booleans, strings, bytes, fixed-size lists of numbers and categoricals of these); "
                    "leave it out (columns=, --columns) or convert it")

    def _convert(self, arrow, names):
        import pyarrow as pa
        from astropy.table import Column, MaskedColumn, Table

        table = Table()
        for name in names:
            col = arrow.column(name)
            t = col.type
            if pa.types.is_dictionary(t):  # pandas categoricals: their values
                col, t = col.cast(t.value_type), t.value_type
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
            elif pa.types.is_floating(t):  # NaN marks a missing float
                data = (col.fill_null(np.nan) if nulls else col).to_numpy(zero_copy_only=False)
                mask = None
            else:  # masked in every chunk if the file has a null anywhere: one layout for all chunks
                mask = np.asarray(col.is_null()) if name in self.nullable else None
                if nulls:
                    col = col.fill_null(False if pa.types.is_boolean(t) else 0)
                data = col.to_numpy(zero_copy_only=False)
            table[name] = MaskedColumn(data, mask=mask) if mask is not None else Column(data)
        return apply_table_header(table, self.header)


def _readable_type(t) -> bool:
    """Whether `_ParquetReader` reads columns of the Arrow type ``t``."""
    import pyarrow as pa

    plain = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_string,
             pa.types.is_large_string, pa.types.is_binary, pa.types.is_large_binary)
    if pa.types.is_dictionary(t):
        return _readable_type(t.value_type)
    if isinstance(t, pa.FixedSizeListType):
        return any(test(t.value_type) for test in plain[:3])
    return any(test(t) for test in plain)


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
                # astropy's FITS reader (what Table.read calls); not Table.read itself, which would turn
                # the QTable it returns for Quantity columns into a Table
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
                self.header = parse_table_header(h.decode("utf-8") for h in f[meta][()]) if meta in f else None
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
        return logical_column_names(self.header, self.stored)

    def count(self):
        return self.n

    def chunks(self, chunk_size, start, columns):
        import h5py
        from astropy.table import Table

        names = stored_column_names(self.header, self.stored, columns)
        with h5py.File(self.path, "r") as f:
            ds = f[self.dataset]
            for lo in range(start, self.n, chunk_size):
                hi = min(lo + chunk_size, self.n)
                data = ds.fields(names)[lo:hi] if names != self.stored else ds[lo:hi]
                if len(names) == 1 and data.dtype.names is None:
                    data = np.rec.fromarrays([data], names=names)
                yield apply_table_header(Table(data, copy=False), self.header)


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

    def _read_csv(self, source, **options):
        """`pandas.read_csv` of the data rows of ``source`` with this file's names and exact floats."""
        import pandas as pd

        # pandas 3 parses floats exactly by default (and deprecates float_precision)
        exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
        return pd.read_csv(source, header=None, names=self.names, skip_blank_lines=True, **exact, **options)

    def dtypes(self, columns) -> tuple[dict[str, str], set[str]]:
        """One pandas dtype per column for the whole file, from a first pass over it, and the
        columns with a missing value anywhere.

        pandas infers each chunk's types apart: a chunk whose IDs all fit in int64
        and one that needs uint64 (SDSS IDs above 2**63), an integer column with a
        missing value in one chunk only (float there), a string column all
        missing in one chunk. Read with these, every chunk has the same types,
        and a column with a missing value anywhere is masked in every chunk.
        """
        kinds: dict[str, set[str]] = {}
        negative: set[str] = set()
        missing: set[str] = set()
        with open(self.path, newline="", encoding="utf-8") as f:
            f.readline()
            row = 0
            for frame in self._read_csv(f, usecols=list(columns) if columns is not None else None,
                                        chunksize=1 << 16):
                for name in frame.columns:
                    values = frame[name]
                    kind = self._chunk_kind(values, name, row)
                    text = values.dtype.kind == "O"
                    absent = values.isna() | (values.astype(str).str.strip() == "") if text else values.isna()
                    found = kinds.setdefault(name, set())
                    found.add(kind)
                    if text and kind in "iu" and absent.any():
                        found.add("f")  # integers with missing values, as pandas reads them as numbers
                    if kind in "ifF" and not text and (values < 0).any() or \
                            kind == "i" and text and values.astype(str).str.strip().str.startswith("-").any():
                        negative.add(name)
                    if absent.any():
                        missing.add(name)
                row += len(frame)
        # whole floats with missing values: integers only if their text says so (float64 rounds 19-digit IDs)
        unsure = [name for name, found in kinds.items() if name in missing and found <= {"i", "u", "f"}]
        for name, found in self._text_kinds(unsure).items():
            kinds[name] |= found
        return {name: _csv_dtype(found, name in negative) for name, found in kinds.items()}, missing

    def _chunk_kind(self, values, name: str, row: int) -> str:
        """The dtype kind of one chunk's column as the first pass records it.

        ``"F"`` for floats that are not all whole; for text (pandas reads
        integers above 2**63 with an empty field as text), the integer kind of
        the text if it is all integers, after refusing line breaks.
        """
        kind = values.dtype.kind
        if kind == "f" and (values.dropna() % 1 != 0).any():
            return "F"  # not integers with missing values: floats
        if kind == "O":
            self._check_single_line(values, name, row)
            return _integer_kind(values) or "O"
        return kind

    def _check_single_line(self, values, name: str, row: int) -> None:
        """Refuse a text column with a quoted line break: rows are counted by lines to resume a run."""
        broken = np.flatnonzero(values.astype(str).str.contains("[\r\n]", regex=True).to_numpy(dtype=bool))
        if len(broken):
            raise TableFormatError(
                f"{self.path}: the {name!r} field of data row {row + int(broken[0]) + 1} holds a line break "
                "(a quoted multi-line value); CSV files with multi-line values cannot be read chunk by chunk: "
                "remove the line breaks or convert the catalog to Parquet, FITS or HDF5")

    def _text_kinds(self, names: Sequence[str]) -> dict[str, set[str]]:
        """For columns ``names``, ``{"F"}`` when a value is not written as an integer, else the integer
        kinds their text needs (``"i"``, or ``"u"`` above the int64 range; none when all are missing).

        A second pass over the file, reading only these columns, as text.
        """
        if not names:
            return {}
        found: dict[str, set[str]] = {name: set() for name in names}
        with open(self.path, newline="", encoding="utf-8") as f:
            f.readline()
            for frame in self._read_csv(f, usecols=list(names), dtype=str, chunksize=1 << 16):
                for name in names:
                    kind = _integer_kind(frame[name])
                    if kind != "":  # "": all missing in this chunk
                        found[name].add(kind or "F")
        return found

    def chunks(self, chunk_size, start, columns):
        import pandas as pd

        dtypes, missing = self.dtypes(columns)
        with open(self.path, newline="", encoding="utf-8") as f:
            f.readline()
            skipped = 0
            while skipped < start:  # data rows, not lines: pandas skips blank lines too
                line = f.readline()
                if not line:
                    break
                skipped += bool(line.strip())
            try:
                reader = self._read_csv(f, usecols=list(columns) if columns is not None else None,
                                        chunksize=chunk_size, dtype=dtypes)
                for frame in reader:
                    if len(frame):  # at the end of the file pandas may give one empty frame
                        yield pandas_to_table(frame, masked=missing)
            except pd.errors.EmptyDataError:
                return
            except (pd.errors.ParserError, UnicodeDecodeError) as err:
                raise _unreadable(self.path, self.fmt, err) from err


def _integer_kind(text) -> str | None:
    """``"i"`` (int64) or ``"u"`` (uint64, above the int64 range) when every non-empty value of the text
    Series ``text`` is written as an integer in that range; ``""`` when all are empty; else None."""
    text = text.dropna().astype(str).str.strip()
    text = text[text != ""]
    if len(text) == 0:
        return ""
    if not text.str.fullmatch(r"[+-]?\d+").all():
        return None
    digits = text.str.lstrip("+-").str.lstrip("0")

    def above(limit) -> bool:
        bound = str(limit)
        return bool(((digits.str.len() > len(bound)) | ((digits.str.len() == len(bound)) & (digits > bound))).any())

    if above(np.iinfo(np.uint64).max) or (above(np.iinfo(np.int64).max) and text.str.startswith("-").any()):
        return None
    return "u" if above(np.iinfo(np.int64).max) else "i"


def _csv_dtype(kinds: set[str], negative: bool) -> str:
    """The pandas dtype of a CSV column whose chunks pandas read as the dtype kinds ``kinds``."""
    integer = kinds & {"i", "u"}
    if kinds <= {"i", "u", "f", "F"} and "F" in kinds:
        return "float64"
    if kinds <= {"i", "u", "f"} and integer and not (negative and "u" in kinds):
        unsigned = "u" in kinds
        if "f" in kinds:  # missing values in some chunks: a nullable integer, not a rounded float
            return "UInt64" if unsigned else "Int64"
        return "uint64" if unsigned else "int64"
    if kinds <= {"f", "F"}:
        return "float64"
    if kinds == {"b"}:
        return "bool"
    if kinds == {"b", "f"}:
        return "boolean"
    return "str"


def pandas_to_table(frame, masked: Collection[str] = ()):
    """A pandas DataFrame as an astropy Table: NaN kept for missing floats, masks for other missing values.

    Unlike `astropy.table.Table.from_pandas`, missing floats stay NaN (not
    masked) and columns of pandas' nullable types become masked columns of
    plain numpy types, as the chunked CSV reader and the Dask partitions need.

    Parameters
    ----------
    frame : `pandas.DataFrame`
    masked : collection of str, optional
        Columns (other than floats) masked even without a missing value here,
        so that every chunk of a file has the same layout.

    Returns
    -------
    `~astropy.table.Table`
    """
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
            table[name] = MaskedColumn(data, mask=missing) if missing.any() or name in masked else Column(data)
        else:
            data = _object_strings(s.to_numpy(), missing)
            table[name] = MaskedColumn(data, mask=missing) if missing.any() or name in masked else Column(data)
    return table


def _object_strings(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Object values as a ``U`` array, or an ``S`` array when they are all bytes (Parquet binary columns)."""
    present = [v for v, m in zip(values, missing) if not m]
    if present and all(isinstance(v, bytes) for v in present):
        return np.asarray([b"" if m else v for v, m in zip(values, missing)], dtype=bytes)
    return np.asarray(["" if m else str(v) for v, m in zip(values, missing)], dtype=str)


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
        header = parse_table_header(line[2:] for line in self.header_lines[2:]) or {}
        self.delimiter = header.get("delimiter", " ")

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

    def _data_lines(self, f) -> Iterator[str]:
        """The non-blank data lines of the open file ``f``."""
        for _ in range(self._header_size):
            f.readline()
        return (line.rstrip("\n") for line in f if line.strip())

    def _masked_columns(self) -> set[str]:
        """Columns with an empty field anywhere in the file (astropy masks those): a first pass, so
        that every chunk of them is masked alike, as the CSV and Parquet readers do."""
        names = next(csv.reader([self.names_line], delimiter=self.delimiter))
        empty: set[int] = set()
        with open(self.path, encoding="utf-8") as f:
            for fields in csv.reader(self._data_lines(f), delimiter=self.delimiter):
                if "" in fields:
                    empty.update(i for i, v in enumerate(fields) if v == "")
        return {names[i] for i in empty if i < len(names)}

    def chunks(self, chunk_size, start, columns):
        masked = self._masked_columns()
        with open(self.path, encoding="utf-8") as f:
            lines: list[str] = []
            for i, line in enumerate(self._data_lines(f)):
                if i < start:
                    continue
                lines.append(line)
                if len(lines) == chunk_size:
                    yield self._select(_mask_columns(self._read(lines), masked), columns)
                    lines = []
            if lines:
                yield self._select(_mask_columns(self._read(lines), masked), columns)

    @staticmethod
    def _select(table, columns):
        return table if columns is None else table[list(columns)]


def _mask_columns(table, names: Collection[str]):
    """``table`` with its plain columns among ``names`` made masked columns (nothing masked)."""
    from astropy.table import Column, MaskedColumn

    for name in names:
        col = table.columns.get(name)
        if isinstance(col, Column) and not isinstance(col, MaskedColumn):
            table[name] = MaskedColumn(col, mask=np.zeros(len(col), bool))
    return table


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
