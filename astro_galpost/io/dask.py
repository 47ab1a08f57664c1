"""Posterior summaries over the partitions of a Dask DataFrame, on one machine or a cluster.

`predict_dask` runs `GalaxyPosterior.predict` on every partition of a Dask
DataFrame (or of a Parquet dataset or HATS catalog read lazily) and returns a
lazy Dask DataFrame whose values equal those of one in-process
``model.predict(whole_catalog, random_state=seed)`` call, bit for bit.

How results stay identical
    `GalaxyPosterior.predict` seeds each batch of ``batch_size`` rows from the
    seed and the batch's first row in the whole catalog. `predict_dask` first
    computes the length of each partition the tasks will read (one pass over
    the catalog; a one-column projection could be partitioned otherwise by
    dask's optimiser), then gives each partition its ``row_offset``; a
    partition read later with another length raises an error. Partition lengths must be multiples of
    ``batch_size`` (the last may be shorter); when they are not, the rows are
    regrouped into aligned partitions of ``partition_rows`` rows, each built
    from slices of the original partitions. The regrouping changes only the
    partitioning, never the row order.

How the model reaches the workers
    The saved model folder (``config.json`` and ``weights.safetensors``, a few
    MB) is read into a `ModelPayload` and sent to every worker once with
    ``client.scatter(payload, broadcast=True)``. Each worker process loads it
    on first use and keeps it in a module-level cache keyed by the weights'
    SHA-256 (and device), so later partitions and later calls with the same
    model reuse it. Without a distributed client the payload is one shared
    node of the task graph (threaded or synchronous schedulers load it once per
    process).

Output columns
    The carried input columns as they are in the input DataFrame, then the
    columns of `GalaxyPosterior.predict` with the same names
    (``<target>_p16`` …, ``metallicity_prob``, ``ood_score``, ``ood_flag``) as
    float64 (bool for ``ood_flag``) in each column's unit, NaN where the input
    was unusable (where `~GalaxyPosterior.predict` masks). Units are recorded in
    the pandas ``attrs`` of the result (``df.attrs["units"]``, a dict of unit
    strings, e.g. ``"dex(solMass)"`` for stellar mass, whose values are log10
    M*/M☉), returned by `prediction_units`, with the columns' descriptions
    (``df.attrs["descriptions"]``) and the input's astropy header
    (``df.attrs["header"]``: units, descriptions and masks of the carried
    columns, table metadata). `frame_to_table` restores them all, giving back
    the masked Quantity table of `~GalaxyPosterior.predict`.

Running on a cluster
    The same call runs on any ``dask.distributed`` cluster; pass its client (or
    make it the default client) and put the catalog where workers can read it::

        from dask_jobqueue import SLURMCluster
        from dask.distributed import Client
        from astro_galpost.io import predict_dask

        cluster = SLURMCluster(cores=8, processes=8, memory="32GB", walltime="02:00:00",
                               job_extra_directives=["--partition=cpu"])
        cluster.scale(jobs=10)                     # 80 single-threaded workers
        client = Client(cluster)
        result = predict_dask("models/sdss_v1", "/shared/catalog/", n_samples=1000,
                              random_state=0, client=client)
        result.to_parquet("/shared/posteriors/")   # written by the workers in parallel

    or from the command line against a running scheduler:
    ``galpost predict models/sdss_v1 catalog.parquet out.parquet --dask tcp://host:8786``.
    Use one thread per worker process (``processes`` = ``cores``): torch already
    vectorises each batch, and results do not depend on the number of workers.
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.columns import column_data
from .formats import apply_table_header, logical_column_names, parse_table_header, stored_column_names
from .read import pandas_to_table
from .streaming import check_output_clash, free_table_cycles, model_checksum, required_columns, resolve_seed

__all__ = ["ModelPayload", "frame_to_table", "predict_dask", "prediction_units", "read_catalog"]

#: Worker-side cache of loaded models: ``{(weights_sha256, device): GalaxyPosterior}``.
_MODEL_CACHE: dict[tuple[str, str], Any] = {}
_CACHE_LOCK = threading.Lock()
#: Number of models this process has loaded from payloads (for tests and monitoring).
_LOADS = {"count": 0}


class ModelPayload:
    """A saved model folder as bytes, to ship to workers once.

    Parameters
    ----------
    files : dict
        ``{file name: bytes}`` of the model folder.
    checksum : str
        SHA-256 of the weights (``weights_sha256`` in ``config.json``).
    device : str
        Torch device the workers load the model on.
    """

    def __init__(self, files: dict[str, bytes], checksum: str, device: str = "cpu") -> None:
        self.files, self.checksum, self.device = files, checksum, device

    @classmethod
    def from_model(cls, model, device: str = "cpu") -> ModelPayload:
        """Payload of a fitted `GalaxyPosterior` or of a saved model folder."""
        from ..model.persistence import CONFIG, WEIGHTS

        def read(folder: Path) -> ModelPayload:
            if not folder.is_dir():
                raise FileNotFoundError(f"no saved model at {folder} (expected a folder with {CONFIG} and {WEIGHTS})")
            checksum = model_checksum(folder)
            files = {name: (folder / name).read_bytes() for name in (CONFIG, WEIGHTS)}
            return cls(files, checksum, device)

        if isinstance(model, (str, os.PathLike)):
            payload = read(Path(model))
            payload.load()  # validate here, with a clear error, before any task is sent
            return payload
        with tempfile.TemporaryDirectory(prefix="galpost-model-") as tmp:
            model.save(Path(tmp) / "model")
            return read(Path(tmp) / "model")

    def load(self):
        """The model, loaded once per process and cached by checksum and device."""
        key = (self.checksum, self.device)
        with _CACHE_LOCK:
            if key not in _MODEL_CACHE:
                from ..model.persistence import load_model

                with tempfile.TemporaryDirectory(prefix="galpost-model-") as tmp:
                    for name, data in self.files.items():
                        (Path(tmp) / name).write_bytes(data)
                    model = load_model(tmp, device=self.device)
                model.progress = False
                _MODEL_CACHE[key] = model
                _LOADS["count"] += 1
            return _MODEL_CACHE[key]

    def __repr__(self) -> str:
        size = sum(len(b) for b in self.files.values())
        return f"<ModelPayload {self.checksum[:12]} ({size / 1e6:.1f} MB, {self.device})>"


# ---------------------------------------------------------------- inputs
def _parquet_header(path: Path):
    """astropy's YAML header of a Parquet file (or of the first file of a dataset folder)."""
    import pyarrow.parquet as pq

    files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
    if not files:
        return None
    try:
        md = pq.ParquetFile(files[0]).schema_arrow.metadata or {}
    except Exception:  # noqa: BLE001 - no header: plain columns
        return None
    text = md.get(b"table_meta_yaml")
    return parse_table_header(text.decode().split("\n")) if text else None


def _is_hats(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in ("properties", "hats.properties",
                                                                     "partition_info.csv"))


def read_catalog(path, columns: Sequence[str] | None = None):
    """``(dask DataFrame, astropy header or None)`` of a Parquet file/dataset or a HATS catalog.

    HATS catalogs (folders with a ``properties`` file) are read with
    ``lsdb.read_hats(path)._ddf`` when `lsdb <https://docs.lsdb.io>`_ is installed.
    """
    import dask.dataframe as dd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input catalog {path} does not exist")
    if _is_hats(path):
        try:
            import lsdb
        except ImportError as err:
            raise ImportError(f"{path} looks like a HATS catalog; reading it needs lsdb (pip install lsdb)") from err
        ddf = lsdb.read_hats(str(path), columns=list(columns) if columns is not None else None)._ddf
        return ddf, None
    if path.is_file() and path.suffix.lower() not in (".parquet", ".pq"):
        raise ValueError(f"predict_dask reads Parquet files or datasets and HATS catalogs, not {path.name}")
    ddf = dd.read_parquet(str(path), columns=list(columns) if columns is not None else None)
    return ddf, _parquet_header(path)


def _frame_to_input_table(frame, header):
    """A pandas partition as the astropy table `GalaxyPosterior.predict` reads."""
    table = pandas_to_table(frame.reset_index(drop=True))
    return apply_table_header(table, header)


# ---------------------------------------------------------------- outputs
def _prediction_frame(result, new: Sequence[str]):
    """Prediction columns of a `predict` QTable as a pandas DataFrame of floats (NaN where masked)."""
    import pandas as pd

    data = {}
    for name in new:
        col = result[name]
        if col.dtype.kind == "f":
            values, mask, _ = column_data(col)
            values[mask] = np.nan
        else:  # ood_flag: its values, False where masked
            values = np.asarray(getattr(col, "unmasked", col))
        data[name] = values
    return pd.DataFrame(data)


def _units_of(result, new: Sequence[str]) -> dict[str, str]:
    units = {}
    for name in new:
        unit = getattr(result[name], "unit", None)
        if unit is not None:
            units[name] = unit.to_string()
    return units


def _predict_frame(model, frame, *, header, offset, n_samples, seed, batch_size, percentiles, carried,
                   replace_columns):
    """Predict one pandas partition; returns the output partition (carried columns + predictions).

    Its ``attrs`` hold the prediction columns' ``units`` and ``descriptions``
    and the input's astropy ``header`` (see `frame_to_table`).
    """
    import pandas as pd

    from ..model.estimator import UnusableRowsWarning

    if len(frame) == 0:
        raise ValueError("empty partition")  # handled by the caller
    table = _frame_to_input_table(frame, header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusableRowsWarning)
        result = model.predict(table, n_samples=n_samples, percentiles=percentiles, random_state=seed,
                               batch_size=batch_size, row_offset=offset, replace_columns=replace_columns)
    new = model.output_columns(percentiles)
    pred = _prediction_frame(result, new)
    pred.index = frame.index
    out = pd.concat([frame[list(carried)], pred], axis=1)
    out.attrs["units"] = _units_of(result, new)
    out.attrs["descriptions"] = {name: result[name].info.description for name in new}
    out.attrs["header"] = header
    return out


def _predict_pieces(payload, frames, lengths, bounds, offset, options, meta):
    """Task body: join slices of input partitions, predict, return one output partition.

    ``lengths`` are the rows each of ``frames`` had when the plan was made; a
    partition read with other rows now raises `RuntimeError` (never a silent
    loss or shift of rows).
    """
    import pandas as pd

    for frame, n in zip(frames, lengths):
        if len(frame) != n:
            raise RuntimeError(f"an input partition has {len(frame)} rows, but {n} when the rows were planned")
    pieces = [f.iloc[lo:hi] if (lo, hi) != (None, None) else f for f, (lo, hi) in zip(frames, bounds)]
    frame = pieces[0] if len(pieces) == 1 else pd.concat(pieces)
    if len(frame) == 0:
        return meta.copy()
    model = payload.load()
    out = _predict_frame(model, frame, offset=offset, **options)
    out.attrs = dict(meta.attrs)
    del frame, pieces
    free_table_cycles()  # astropy tables form reference cycles: free their arrays before the next partition
    return out


def prediction_units(model, percentiles: Iterable[float] = (16, 50, 84)) -> dict[str, str]:
    """Units of the prediction columns (``{column: unit string}``), as in ``df.attrs["units"]``."""
    from ..model.targets import TARGETS

    units = {}
    levels = list(percentiles)
    for name in model.targets_:
        for level in levels:
            units[f"{name}_p{level:g}".replace(".", "_")] = TARGETS[name].unit.to_string()
    for g in model.groups_:
        if g.detect:
            units[f"{g.name}_prob"] = ""
    units["ood_score"] = ""
    return units


def frame_to_table(frame, units: dict[str, str] | None = None):
    """A computed result partition (pandas) → the masked-Quantity `~astropy.table.QTable` of ``predict``.

    Prediction columns (those in ``units``, default ``frame.attrs["units"]``)
    become Quantities with their unit (`~astropy.units.Dex` for dex units) and
    ``ood_flag`` a masked boolean column, masked where the galaxy was unusable
    (``ood_score`` is NaN), with the descriptions in
    ``frame.attrs["descriptions"]``. The carried input columns get the units,
    descriptions, masks and table metadata of the input's astropy header
    (``frame.attrs["header"]``), as `~GalaxyPosterior.predict` keeps them.
    """
    import astropy.units as u
    from astropy.table import MaskedColumn, QTable
    from astropy.utils.masked import Masked

    units = dict(frame.attrs.get("units", {}) if units is None else units)
    descriptions = frame.attrs.get("descriptions", {})
    predicted = [c for c in frame.columns if c in units or c == "ood_flag"]
    carried = pandas_to_table(frame[[c for c in frame.columns if c not in predicted]].reset_index(drop=True))
    table = QTable(apply_table_header(carried, frame.attrs.get("header")))
    unusable = np.isnan(frame["ood_score"].to_numpy(dtype=float)) if "ood_score" in frame.columns else None
    for name in predicted:
        values = frame[name].to_numpy()
        if name in units:
            q = values.astype(float) << (u.Unit(units[name]) if units[name] else u.dimensionless_unscaled)
            table[name] = Masked(q, mask=unusable) if unusable is not None else q
        else:
            table[name] = MaskedColumn(values, mask=unusable, fill_value=False) if unusable is not None else values
        if descriptions.get(name):
            table[name].info.description = descriptions[name]
    return table


def _output_meta(model, ddf_meta, header, options):
    """Empty output frame with the right columns and dtypes (from a fake one-row partition)."""
    from dask.dataframe.utils import meta_nonempty

    fake = meta_nonempty(ddf_meta).iloc[:1]
    out = _predict_frame(model, fake, offset=0, **{**options, "n_samples": 2})
    meta = out.iloc[:0].copy()
    meta.attrs = dict(out.attrs)
    return meta


def _compute_all(client, objs: list) -> list:
    """The values of the dask objects ``objs``, computed on ``client`` (or the default scheduler)."""
    import dask

    if client is not None:
        return client.gather(client.compute(objs))
    return list(dask.compute(*objs))


def _partition_lengths(client, parts: list, expected_rows: int | None) -> list[int]:
    """Rows of each delayed partition in ``parts``: the partitions the prediction tasks read.

    Lengths computed on another form of the DataFrame (e.g. a one-column
    projection) can describe other partitions: dask's optimiser may fuse the
    files of a Parquet dataset into fewer partitions when fewer columns are
    read. Raises `RuntimeError` when the lengths do not match ``parts`` or do
    not sum to ``expected_rows`` (when known).
    """
    import dask

    lengths = [int(n) for n in _compute_all(client, [dask.delayed(len, pure=True)(part) for part in parts])]
    if len(lengths) != len(parts):
        raise RuntimeError(f"got {len(lengths)} partition lengths for {len(parts)} partitions")
    if expected_rows is not None and sum(lengths) != expected_rows:
        raise RuntimeError(f"the partitions hold {sum(lengths)} rows but the catalog has {expected_rows}")
    return lengths


def _parquet_rows(path) -> int | None:
    """Rows of a Parquet file or dataset folder from its metadata (None for other inputs)."""
    path = Path(path)
    if _is_hats(path):
        return None
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet").count_rows()


def _select_columns(model, ddf, columns, header, outputs, replace_columns):
    """``(carried columns, ddf with only the columns to read)``; raises `KeyError` for missing columns.

    ``columns`` are named as astropy shows them (a masked column ``m`` is
    stored as ``m`` and ``m.mask``, both carried). Input columns named like the
    ``outputs`` raise `ValueError` unless ``replace_columns``; then they (and
    their stored companions) are not carried.
    """
    available = list(ddf.columns)
    logical = logical_column_names(header, available)
    check_output_clash(outputs, logical, replace_columns, "the catalog")
    if columns is not None:
        missing = [c for c in columns if c not in logical and c not in available]
        if missing:
            raise KeyError(f"columns {missing} are not in the catalog (columns: {', '.join(map(str, logical))})")
    carried = stored_column_names(header, available, columns)
    carried = [c for c in carried if c not in outputs and c.split(".")[0] not in outputs]
    required = required_columns(model, available)
    if required is None:
        return carried, ddf
    absent = [c for c in required if c not in available]
    if absent:
        raise KeyError(f"the model needs columns {absent}, which are not in the catalog")
    extra = [c for c in required if c not in carried]
    # keep astropy's stored companions (e.g. "<col>.mask") of the columns read
    extra += [c for c in available if "." in c and c.split(".")[0] in set(carried) | set(extra)
              and c not in carried and c not in extra]
    return carried, (ddf[carried + extra] if len(carried) + len(extra) < len(available) else ddf)


def _partition_plan(lengths: list[int], batch_size: int, partition_rows: int | None) -> list[tuple]:
    """``[(input partitions, (lo, hi) slice of each, first row)]`` per output partition.

    The input partitions are kept when every one starts at a multiple of
    ``batch_size``; otherwise rows are regrouped into partitions of
    ``partition_rows`` rows (default: the median length rounded up to a
    multiple of ``batch_size``).
    """
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(int)
    total = int(offsets[-1])
    if total == 0:
        raise ValueError("the catalog has no rows: nothing to predict")
    aligned = all(n % batch_size == 0 for n in lengths[:-1]) and all(
        o % batch_size == 0 for o, n in zip(offsets[:-1], lengths) if n)
    if aligned:
        return [([i], [(None, None)], int(offsets[i])) for i, n in enumerate(lengths) if n]
    if partition_rows is None:
        typical = int(np.median([n for n in lengths if n]))
        partition_rows = max(batch_size, -(-typical // batch_size) * batch_size)
    partition_rows = int(partition_rows)
    if partition_rows % batch_size:
        raise ValueError(f"partition_rows ({partition_rows}) must be a multiple of batch_size ({batch_size})")
    plan = []
    for a in range(0, total, partition_rows):
        b = min(total, a + partition_rows)
        ids, bounds = [], []
        for i, n in enumerate(lengths):
            lo, hi = max(a, offsets[i]), min(b, offsets[i] + n)
            if lo < hi:
                ids.append(i)
                bounds.append((int(lo - offsets[i]), int(hi - offsets[i])))
        plan.append((ids, bounds, a))
    return plan


def predict_dask(
    model_or_path,
    dataframe_or_path,
    *,
    n_samples: int = 1000,
    random_state: int | None = None,
    client=None,
    batch_size: int = 1024,
    columns: Sequence[str] | None = None,
    percentiles: Iterable[float] = (16, 50, 84),
    partition_rows: int | None = None,
    device: str = "cpu",
    replace_columns: bool = False,
):
    """Posterior summaries for every row of a Dask DataFrame, computed on its partitions.

    Parameters
    ----------
    model_or_path : GalaxyPosterior, str or path-like
        A fitted model or the folder of a saved one; shipped to each worker once
        (see the module documentation).
    dataframe_or_path : dask.dataframe.DataFrame, str or path-like
        The catalog: a Dask DataFrame, a Parquet file or dataset folder (astropy
        units and masks in its metadata are used), or a HATS catalog folder
        (needs ``lsdb``). Magnitudes without units are taken as magnitudes.
    n_samples : int, optional
        Posterior samples per galaxy.
    random_state : int, optional
        Seed; default the model's ``random_state`` (a fresh one when that is None;
        it is recorded in ``df.attrs["seed"]`` of the computed result).
    client : distributed.Client, optional
        Client of the cluster to use; default the current default client, if
        any, else the default Dask scheduler.
    batch_size : int, optional
        Galaxies sampled at once (as in `GalaxyPosterior.predict`).
    columns : sequence of str, optional
        Input columns to carry into the output, as astropy names them (a masked
        column's stored ``<name>.mask`` comes with it); default all. Columns the
        model needs are read anyway.
    percentiles : iterable of float, optional
        Percentiles per target.
    partition_rows : int, optional
        Rows per partition when partitions must be regrouped (their lengths are
        not multiples of ``batch_size``); a multiple of ``batch_size``. Default:
        the median input partition length rounded up to a multiple of
        ``batch_size``.
    device : str, optional
        Torch device on the workers.
    replace_columns : bool, optional
        Replace input columns named like output columns (a catalog predicted
        before); without it such an input raises `ValueError` before any work.

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy result (``.compute()`` gives a pandas DataFrame, ``.to_parquet(...)``
        writes it in parallel). Its values equal ``model.predict(catalog,
        n_samples=n_samples, random_state=seed, batch_size=batch_size)``; see the
        module documentation for the columns and units.

    Notes
    -----
    Computing the partition lengths reads every partition once (the very
    partitions the prediction tasks read, so that the row offsets are theirs),
    before the prediction reads them again. The index of the input rows is kept.

    Examples
    --------
    >>> from dask.distributed import Client, LocalCluster  # doctest: +SKIP
    >>> client = Client(LocalCluster(n_workers=4, threads_per_worker=1))  # doctest: +SKIP
    >>> df = predict_dask("model", "catalog.parquet", n_samples=500, random_state=0)  # doctest: +SKIP
    >>> df.compute().attrs["units"]["log_mstar_p50"]  # doctest: +SKIP
    'dex(solMass)'
    """
    import dask
    import dask.dataframe as dd

    if client is None:
        try:
            from distributed import default_client

            client = default_client()
        except (ImportError, ValueError):
            client = None

    payload = ModelPayload.from_model(model_or_path, device=device)
    model = payload.load()
    seed = resolve_seed(random_state, model)
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")

    expected_rows = None
    if isinstance(dataframe_or_path, (str, os.PathLike)):
        ddf, header = read_catalog(dataframe_or_path)
        expected_rows = _parquet_rows(dataframe_or_path)
    elif isinstance(dataframe_or_path, dd.DataFrame):
        ddf, header = dataframe_or_path, None
    else:
        raise TypeError(f"expected a dask DataFrame or a path, got {type(dataframe_or_path).__name__}")

    levels = [float(p) for p in percentiles]
    carried, ddf = _select_columns(model, ddf, columns, header, model.output_columns(levels), replace_columns)

    options = dict(header=header, n_samples=int(n_samples), seed=seed, batch_size=batch_size,
                   percentiles=levels, carried=carried, replace_columns=bool(replace_columns))
    meta = _output_meta(model, ddf._meta, header, options)
    meta.attrs["seed"] = seed

    # partition lengths → row offsets (aligned to batch_size for exact reproducibility)
    parts = ddf.to_delayed()
    lengths = _partition_lengths(client, parts, expected_rows)
    plan = _partition_plan(lengths, batch_size, partition_rows)

    if client is not None:
        shipped = client.scatter(payload, broadcast=True, hash=False)
    else:
        shipped = dask.delayed(payload, pure=True)
    tasks = [
        dask.delayed(_predict_pieces, pure=True)(shipped, [parts[i] for i in ids], [lengths[i] for i in ids],
                                                 bounds, offset, options, meta)
        for ids, bounds, offset in plan
    ]
    with dask.config.set({"dataframe.convert-string": False}):  # bytes columns stay bytes, as in the input
        return dd.from_delayed(tasks, meta=meta, verify_meta=False)
