"""Writing tables safely: whole (`write_table_atomic`) or chunk by chunk (`open_chunked_writer`).

`write_table_atomic` writes an astropy table through a temporary file that is
renamed only when complete.

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
FITS          each chunk is written by astropy (``Table.write(format="fits")``)
              to memory; the first chunk's primary HDU and binary-table header
              and every chunk's rows are appended; `~ChunkedTableWriter.close`
              pads the data and rewrites the header with the row count.
CSV, ECSV     text appended chunk by chunk (the header once).
============  ==============================================================

Every chunk must have the columns and types of the first. Masked columns are
written with explicit ``<name>.mask`` columns in Parquet and HDF5 (astropy's
convention), so `astropy.table.QTable.read` gives back the masks and units.
FITS and HDF5 store strings at a fixed width, taken from the first chunk (or
the input format's declared width): a later, longer string raises
`ValueError` (write Parquet, CSV or ECSV instead).

Every finished file reaches its final name through
`astro_galpost.utils.atomic.write_atomic` (synced, umask permissions, renamed).
"""

from __future__ import annotations

import io
import os
import shutil
import warnings
from pathlib import Path

import numpy as np

from ..utils.atomic import fsync_path, write_atomic
from .formats import detect_format
from .layout import TableLayout, string_width

__all__ = ["ChunkedTableWriter", "open_chunked_writer", "publish_file", "write_table_atomic"]


def write_table_atomic(table, path, /, overwrite: bool = False, **kwargs) -> Path:
    """Write an astropy table to ``path`` via a temporary file renamed when complete.

    An interrupted run never leaves a half-written file under the final name
    (see `astro_galpost.utils.atomic.write_atomic`: synced, umask permissions).
    ``kwargs`` go to `astropy.table.Table.write` (e.g. an HDF5 dataset's ``path``).
    """
    fmt = kwargs.pop("format", None)
    return write_atomic(path, lambda tmp: table.write(tmp, overwrite=True, format=fmt, **kwargs),
                        overwrite=overwrite)


def publish_file(tmp_path, path, *, overwrite: bool = False) -> Path:
    """Move a finished temporary file to ``path`` with `astro_galpost.utils.atomic.write_atomic`.

    The file is synced, given the umask's permissions and renamed over ``path``;
    the folder is synced after the rename.

    Parameters
    ----------
    tmp_path : str or path-like
        The complete file, in the folder of ``path``.
    path : str or path-like
        Final file name.
    overwrite : bool, optional
        Replace an existing ``path``; without it `FileExistsError` is raised
        and ``tmp_path`` is kept.

    Returns
    -------
    `~pathlib.Path`
        ``path``.
    """
    tmp_path = Path(tmp_path)
    return write_atomic(path, lambda tmp: os.replace(tmp_path, tmp), overwrite=overwrite)


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
        return publish_file(self.tmp_path, self.path, overwrite=overwrite)


def _fsync(f, path: Path) -> None:
    f.flush()
    fsync_path(path)


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
            _fsync(self._file, self.tmp_path)
        size = self.tmp_path.stat().st_size if self.tmp_path.exists() else 0
        return {"bytes": size, "header": self.header}

    def _finish(self):
        if self._file is None:
            raise ValueError("no rows were written")
        _fsync(self._file, self.tmp_path)
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
    """A primary HDU and one binary table; rows appended as raw bytes, the header rewritten at the end.

    astropy's `~astropy.io.fits.StreamingHDU` streams data after a header, but it
    needs the final ``NAXIS2`` before the first row is written (the row count is
    not known until the last chunk) and cannot continue a file after an
    interruption (given an existing file, it appends a new HDU). So each chunk is
    encoded by astropy's own FITS writer into memory, its rows are appended, and
    `close` pads the data to whole FITS blocks and writes the first chunk's
    header again with ``NAXIS2`` set by `astropy.io.fits.Header` (the header's
    length does not change).
    """

    fmt = "fits"
    _BLOCK = 2880  # bytes per FITS block (FITS standard, section 3.1)

    def __init__(self, path, *, state=None, **options):
        self.header: str | None = None
        self.header_offset = 0
        self.widths: dict[str, int] = {}
        self._file = None
        super().__init__(path, state=state, **options)

    def _resume(self, state):
        if not self.tmp_path.is_file() or self.tmp_path.stat().st_size < state["bytes"]:
            raise ValueError(f"temporary output {self.tmp_path} is missing or shorter than recorded")
        self.header, self.widths = state["header"], dict(state["widths"])
        self.header_offset = int(state["header_offset"])
        self._file = open(self.tmp_path, "r+b")
        self._file.truncate(state["bytes"])
        self._file.seek(state["bytes"])

    @staticmethod
    def _comparable(header_text: str) -> list[str]:
        cards = [header_text[i:i + 80] for i in range(0, len(header_text), 80)]
        return [c for c in cards if not c.startswith("NAXIS2 ") and c.strip()]

    def _fixed_widths(self, table):
        """``table`` with its string columns at the first chunk's widths (FITS stores fixed widths)."""
        table = table.copy(copy_data=False)
        for name in table.colnames:
            col = table[name]
            if getattr(col, "dtype", None) is None or col.dtype.kind not in "US" or name not in self.widths:
                continue
            width = self.widths[name]
            if string_width(col.dtype) > width:
                longest = int(np.char.str_len(np.asarray(col)).max())
                if longest > width:
                    raise ValueError(
                        f"string column {name!r} has values of {longest} characters in a later chunk but "
                        f"the FITS output stores {width} (the first chunk's width); write Parquet, CSV "
                        "or ECSV, or leave the column out")
            table[name] = col.astype(f"{col.dtype.kind}{width}")
        return table

    def _encode(self, table) -> tuple[bytes, int, str, bytes]:
        """astropy's FITS file of one chunk: (everything before the data, header offset, header, data)."""
        from astropy.io import fits
        from astropy.utils.exceptions import AstropyUserWarning

        buf = io.BytesIO()
        with warnings.catch_warnings():
            if self.header is not None:  # astropy's warnings (e.g. non-FITS units) once, for the first chunk
                warnings.simplefilter("ignore", AstropyUserWarning)
            self._fixed_widths(table).write(buf, format="fits")
        raw = buf.getvalue()
        buf.seek(0)
        with fits.open(buf) as hdul:
            header, info = hdul[1].header, hdul.fileinfo(1)
            if header.get("PCOUNT", 0):
                raise ValueError("variable-length array columns cannot be written to FITS chunk by chunk")
            start, nbytes = info["datLoc"], header["NAXIS1"] * header["NAXIS2"]
            return raw[:start], info["hdrLoc"], header.tostring(), raw[start:start + nbytes]

    def _write(self, table):
        if self.header is None:
            self.widths = {n: string_width(table[n].dtype) for n in table.colnames
                           if getattr(table[n], "dtype", None) is not None and table[n].dtype.kind in "US"}
        head, header_offset, header_text, data = self._encode(table)
        if self.header is None:
            self.header, self.header_offset = header_text, header_offset
            self._file = open(self.tmp_path, "wb")
            self._file.write(head)
        elif self._comparable(header_text) != self._comparable(self.header):
            raise ValueError("a later chunk's FITS columns differ from the first chunk's (types, units or masks)")
        self._file.write(data)

    def _state(self):
        if self._file is not None:
            _fsync(self._file, self.tmp_path)
        size = self.tmp_path.stat().st_size if self.tmp_path.exists() else 0
        return {"bytes": size, "header": self.header, "header_offset": self.header_offset, "widths": self.widths}

    def _finish(self):
        from astropy.io import fits

        if self._file is None:
            raise ValueError("no rows were written")
        f = self._file
        f.seek(0, os.SEEK_END)
        f.write(b"\0" * (-f.tell() % self._BLOCK))
        header = fits.Header.fromstring(self.header)
        header["NAXIS2"] = self.rows
        text = header.tostring()
        if len(text) != len(self.header):  # cannot happen: one card changed its value
            raise ValueError("the FITS header changed length when NAXIS2 was set")
        f.seek(self.header_offset)
        f.write(text.encode("ascii"))
        _fsync(f, self.tmp_path)
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
        self.layout: TableLayout | None = None
        self._file = None
        self.dataset = options.get("hdf5_path") or "data"
        super().__init__(path, state=state, **options)

    def _resume(self, state):
        import h5py

        self.layout = TableLayout.from_dict(state["layout"])
        try:
            self._file = h5py.File(self.tmp_path, "r+")
            self._file[self.dataset].resize((self.rows,))
        except Exception as err:  # noqa: BLE001 - h5py raises several types
            self.abort()
            raise ValueError(f"cannot continue the temporary HDF5 output {self.tmp_path}: {err}") from err

    def _write(self, table):
        import h5py

        if self.layout is None:
            self.layout = TableLayout.from_table(table, "hdf5", bytes_strings=True)
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
        self.layout: TableLayout | None = None
        self.parts = 0
        self.lengths: dict[str, int] = {}
        path = Path(path)
        self.parts_dir = path.parent / f".{path.name}.parts"
        super().__init__(path, state=state, **options)

    def _part(self, i: int) -> Path:
        return self.parts_dir / f"part-{i:06d}.parquet"

    def _resume(self, state):
        self.layout = TableLayout.from_dict(state["layout"])
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
            self.layout = TableLayout.from_table(table, "parquet")
        arrays = self.layout.encode(table, fixed_strings=False)
        schema = self._schema()
        columns = []
        for name, field in zip(self.layout.names, schema):
            data = arrays[name]
            if data.dtype.kind in "US":
                self.lengths[name] = max(self.lengths.get(name, 0), string_width(data.dtype))
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
                metadata[f"table::len::{name}"] = str(self.lengths.get(name, string_width(dt)))
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
