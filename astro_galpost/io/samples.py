"""Posterior samples of a catalog, written chunk by chunk beside `~astro_galpost.io.predict_catalog`'s output.

HDF5 files hold one dataset ``samples`` of shape (N, n_samples, n_targets),
appended per chunk; other formats a table with one (n_samples,)-shaped column
per target, written with `~astro_galpost.io.open_chunked_writer`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .formats import detect_format
from .write import ChunkedTableWriter, open_chunked_writer, publish_file

__all__ = ["open_samples_writer", "sample_arrays"]


class _SamplesHDF5:
    """Samples as one HDF5 dataset ``samples`` of shape (N, n_samples, n_targets), appended per chunk."""

    def __init__(self, path: Path, targets: list[str], units: list[str], n_samples: int,
                 attrs: dict, dtype: str, state: dict | None):
        import h5py

        self.path = Path(path)
        self.tmp_path = self.path.parent / f".{self.path.name}.partial"
        self.rows = 0
        if state is not None:
            self.rows = int(state["rows"])
            try:
                self._file = h5py.File(self.tmp_path, "r+")
                for name in ("samples", "usable"):
                    ds = self._file[name]
                    ds.resize((self.rows, *ds.shape[1:]))
            except Exception as err:  # noqa: BLE001 - h5py raises several types
                raise ValueError(f"cannot continue the temporary samples file {self.tmp_path}: {err}") from err
            return
        self.tmp_path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w")
        rows = max(1, min(1024, (1 << 24) // max(1, n_samples * len(targets) * 8)))
        ds = self._file.create_dataset("samples", shape=(0, n_samples, len(targets)), dtype=dtype,
                                       maxshape=(None, n_samples, len(targets)),
                                       chunks=(rows, n_samples, len(targets)))
        ds.attrs["targets"] = targets
        ds.attrs["units"] = units
        ds.attrs["dims"] = ["row", "sample", "target"]
        for key, value in attrs.items():
            ds.attrs[key] = value
        self._file.create_dataset("usable", shape=(0,), maxshape=(None,), dtype=bool, chunks=(1 << 16,))

    def write(self, samples: np.ndarray, usable: np.ndarray) -> None:
        n = len(samples)
        for name, data in (("samples", samples), ("usable", usable)):
            ds = self._file[name]
            ds.resize((self.rows + n, *ds.shape[1:]))
            ds[self.rows:] = data
        self.rows += n

    def checkpoint(self) -> dict:
        self._file.flush()
        return {"rows": self.rows}

    def abort(self) -> None:
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = None

    def close(self, overwrite: bool) -> Path:
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; pass overwrite=True (--overwrite) to replace it")
        self.abort()
        return publish_file(self.tmp_path, self.path, overwrite=overwrite)


class _SamplesTable:
    """Samples as a table with one (n_samples,)-shaped column per target (Parquet, FITS, ECSV)."""

    def __init__(self, path: Path, targets: list[str], dtype: str, state: dict | None):
        self.targets, self.dtype = targets, dtype
        self.writer: ChunkedTableWriter = open_chunked_writer(path, state=state)
        self.path = self.writer.path

    def write(self, samples: np.ndarray, usable: np.ndarray) -> None:
        from astropy.table import QTable

        from ..model.targets import TARGETS

        table = QTable()
        for j, name in enumerate(self.targets):
            table[name] = TARGETS[name].quantity(samples[:, :, j].astype(self.dtype))
        table["usable"] = usable
        self.writer.write(table)

    def checkpoint(self) -> dict:
        return self.writer.checkpoint()

    def abort(self) -> None:
        self.writer.abort()

    def close(self, overwrite: bool) -> Path:
        return self.writer.close(overwrite=overwrite)


def open_samples_writer(path, model, n_samples: int, attrs: dict, dtype: str, state: dict | None):
    """A writer of posterior samples, chunk by chunk, for `~astro_galpost.io.predict_catalog`.

    Parameters
    ----------
    path : str or path-like
        ``.h5``/``.hdf5``: one dataset ``samples`` of shape (N, n_samples,
        n_targets) and ``usable`` (N,); ``.parquet``, ``.fits`` or ``.ecsv``: a
        table with one (n_samples,)-shaped column per target and ``usable``.
    model : GalaxyPosterior
        The fitted model (its targets name the columns).
    n_samples : int
        Samples per galaxy.
    attrs : dict
        HDF5 attributes of ``samples`` (seed, model checksum...).
    dtype : str
        Stored dtype of the samples.
    state : dict or None
        A previous writer's ``checkpoint()`` to continue.

    Returns
    -------
    writer
        With ``write(samples, usable)``, ``checkpoint()``, ``abort()`` and
        ``close(overwrite)``.

    Raises
    ------
    ValueError
        For a CSV ``path`` (a column cannot hold n_samples values there).
    """
    from ..model.targets import TARGETS

    path = Path(path)
    targets = list(model.targets_)
    if path.suffix.lower() in (".h5", ".hdf5", ".he5"):
        units = [TARGETS[t].unit.to_string() for t in targets]
        return _SamplesHDF5(path, targets, units, n_samples, attrs, dtype, state)
    if detect_format(path) == "csv":
        raise ValueError("samples cannot be written to CSV (one column per target holds n_samples values); "
                         "use .h5 or .parquet")
    return _SamplesTable(path, targets, dtype, state)


def sample_arrays(model, table, *, n_samples: int, seed: int, batch_size: int, row_offset: int):
    """``(rows, n_samples, n_targets)`` catalog-space samples and the usable flags, one batch at a time.

    The draws are those `GalaxyPosterior.predict` summarises with the same
    ``seed``, ``batch_size`` and ``row_offset``.

    Yields
    ------
    values : `~numpy.ndarray`
        Samples of one batch, in each target's catalog unit.
    usable : `~numpy.ndarray`
        bool per row of the batch.
    """
    for lo in range(0, len(table), batch_size):
        batch = table[lo:lo + batch_size]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(batch, n_samples=n_samples, random_state=seed, batch_size=batch_size,
                                row_offset=row_offset + lo)
        values = np.stack([np.asarray(getattr(d.distribution, "value", d.distribution)) for d in post.values()],
                          axis=-1)
        yield values, np.asarray(post.usable)
