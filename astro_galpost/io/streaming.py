"""Posterior summaries for catalogs larger than memory: read, infer and write chunk by chunk.

`predict_catalog` streams a catalog file through `GalaxyPosterior.predict`
(see `astro_galpost.io.read` and `astro_galpost.io.write` for how each format
is read and written in chunks).
Peak memory depends on the chunk and batch sizes and the number of samples,
never on the catalog length. The output appears under its final name only when
complete, and an interrupted run continues where it stopped, giving the same
result as an uninterrupted one.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.atomic import check_output, output_lock, write_json_atomic
from .formats import detect_format
from .read import check_input_file, count_rows, iter_table_chunks, table_columns
from .samples import open_samples_writer, sample_arrays
from .write import open_chunked_writer

__all__ = [
    "DEFAULT_CHUNK_BATCHES",
    "CatalogPrediction",
    "check_output_clash",
    "free_table_cycles",
    "model_checksum",
    "predict_catalog",
    "required_columns",
    "resolve_model",
    "resolve_seed",
]

#: Default chunk size, in batches: ``chunk_size = DEFAULT_CHUNK_BATCHES * batch_size``.
DEFAULT_CHUNK_BATCHES = 16
_STATE_VERSION = 1
_FULL_GC_CALLS = 8  # free_table_cycles: a full collection on every 8th call
_GC_CALLS = itertools.count(1)


@dataclass
class CatalogPrediction:
    """What `predict_catalog` did.

    Attributes
    ----------
    output : `~pathlib.Path`
        The output file (it exists only when ``complete``).
    samples : `~pathlib.Path` or None
        The samples file, if requested.
    n_rows : int
        Rows written so far (all rows when complete).
    n_chunks : int
        Chunks written so far.
    resumed_rows : int
        Rows taken over from an interrupted run (0 for a fresh run).
    n_unusable : int
        Rows processed in this call whose inputs were unusable (masked outputs).
    seconds : float
        Wall time of this call.
    seed : int
        The seed used (record it to reproduce the run).
    complete : bool
        False when stopped early by ``max_chunks``.
    """

    output: Path
    samples: Path | None
    n_rows: int
    n_chunks: int
    resumed_rows: int
    n_unusable: int
    seconds: float
    seed: int
    complete: bool

    @property
    def rows_per_second(self) -> float:
        """Rows processed per second in this call."""
        return (self.n_rows - self.resumed_rows) / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> str:
        """One line about the run, as ``galpost predict`` prints it."""
        resumed = f" (resumed after {self.resumed_rows} rows)" if self.resumed_rows else ""
        where = self.output if self.complete else f"{self.output} (incomplete: run again to continue)"
        return (f"wrote posterior summaries of {self.n_rows} galaxies to {where}{resumed} "
                f"in {self.seconds:.1f} s ({self.rows_per_second:.0f} galaxies/s; seed {self.seed})")


# ------------------------------------------------------------------ model
def _folder_checksum(path: Path) -> str:
    from ..model.persistence import CONFIG, ModelFormatError

    try:
        config = json.loads((path / CONFIG).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelFormatError(f"cannot read {path / CONFIG}: {err}") from err
    checksum = config.get("weights_sha256")
    if not checksum:
        raise ModelFormatError(f"{path / CONFIG} records no weights_sha256")
    return str(checksum)


def model_checksum(model) -> str:
    """The SHA-256 of a model's weights, as recorded in its saved ``config.json``.

    Parameters
    ----------
    model : GalaxyPosterior, str or path-like
        A fitted model (saved to a temporary folder to compute the checksum) or
        the folder of a saved one.
    """
    if isinstance(model, (str, os.PathLike)):
        return _folder_checksum(Path(model))
    with tempfile.TemporaryDirectory(prefix="galpost-model-") as tmp:
        model.save(Path(tmp) / "model")
        return _folder_checksum(Path(tmp) / "model")


def resolve_model(model, device: str | None = None):
    """``(GalaxyPosterior, checksum)`` from a fitted model or a saved model folder."""
    from ..model.estimator import GalaxyPosterior

    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        gp = GalaxyPosterior.load(path, device=device or "cpu")
        return gp, _folder_checksum(path)
    if not isinstance(model, GalaxyPosterior):
        raise TypeError(f"model must be a GalaxyPosterior or a saved model folder, got {type(model).__name__}")
    model._check_fitted()
    return model, model_checksum(model)


def required_columns(model, available: Sequence[str]) -> list[str] | None:
    """Input columns a model's encoders read, or None when that cannot be told (then read all).

    Parameters
    ----------
    model : GalaxyPosterior
        A fitted model.
    available : sequence of str
        The catalog's columns (not used to filter: the caller reports the
        missing ones).

    Returns
    -------
    list of str or None
        The photometry encoders' input columns, in order; None when the model
        has another encoder (images, spectra), whose columns are not declared.
    """
    from ..encoders import PhotometryEncoder

    needed: list[str] = []
    for enc in model.encoders_:
        if type(enc) is not PhotometryEncoder:
            return None
        for name in enc.input_columns:
            if name not in needed:
                needed.append(name)
    return needed


def check_output_clash(outputs: Sequence[str], available: Sequence[str], replace_columns: bool, source) -> None:
    """Refuse, before any work, an input that has columns named like the ``outputs`` (a previous prediction).

    Parameters
    ----------
    outputs : sequence of str
        The columns the prediction adds (`GalaxyPosterior.output_columns`).
    available : sequence of str
        The input's columns.
    replace_columns : bool
        Replace such columns instead (nothing is raised).
    source : str or path-like
        The input, named in the error.

    Raises
    ------
    ValueError
        Naming the clashing columns.
    """
    clash = [c for c in outputs if c in available]
    if clash and not replace_columns:
        raise ValueError(f"{source} already has the output columns {clash} (a previous prediction?); "
                         "pass replace_columns=True (--replace-columns) to replace them")


def resolve_seed(random_state, model) -> int:
    """The integer seed of a catalog run: ``random_state``, else the model's, else a fresh one.

    Parameters
    ----------
    random_state : int or None
        The seed asked for.
    model : GalaxyPosterior
        Its ``random_state`` is used when ``random_state`` is None.

    Raises
    ------
    TypeError
        For a `numpy.random.Generator` or other non-integer seed: its state
        cannot be recorded for resuming.
    """
    if random_state is None:
        random_state = model.random_state
    if random_state is None:
        return int(np.random.SeedSequence().entropy)
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise TypeError(
        "random_state must be an int or None for catalog prediction (a Generator's state "
        f"cannot be recorded for resuming), got {type(random_state).__name__}")


def free_table_cycles() -> int:
    """Free the reference cycles of astropy tables no longer used; cheap enough to call after every chunk.

    Tables (sliced ones, the Quantity and masked columns of predictions) form reference cycles, so
    their arrays would wait for the next full garbage collection, which is rare in a process holding
    many objects: memory would grow with the number of chunks. A chunk's tables are young, so a
    collection of the young generations (about a millisecond) frees them; every eighth call makes a
    full collection (0.2-0.4 s once torch is loaded), which frees any that were promoted.

    Returns
    -------
    int
        The number of unreachable objects found, as `gc.collect` returns it.
    """
    return gc.collect(2 if next(_GC_CALLS) % _FULL_GC_CALLS == 0 else 1)


# ------------------------------------------------------------------ main
def _state_path(output: Path) -> Path:
    return output.parent / f".{output.name}.progress.json"


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@dataclass(frozen=True)
class _Settings:
    """How every chunk of one `predict_catalog` run is read, predicted and written."""

    n_samples: int
    levels: list[float]
    seed: int
    batch_size: int
    carried: list[str]
    outputs: list[str]
    replace_columns: bool
    samples_dtype: str


def _check_paths(input_path: Path, output_path: Path, samples_path: Path | None, input_format, output_format,
                 overwrite: bool) -> tuple[str, str]:
    """The input and output formats, after checking that the files can be read and written."""
    check_input_file(input_path)
    in_fmt = detect_format(input_path, input_format)
    out_fmt = detect_format(output_path, output_format)
    check_output(output_path, overwrite=overwrite, inputs=(input_path,))
    if samples_path is not None:
        if samples_path.resolve() == output_path.resolve():
            raise ValueError(f"the samples file {samples_path} must differ from the output file")
        check_output(samples_path, overwrite=overwrite, inputs=(input_path,))
    return in_fmt, out_fmt


def _check_sizes(batch_size, chunk_size, n_samples) -> tuple[int, int, int]:
    """``(batch_size, chunk_size, n_samples)`` as checked integers (chunk_size defaulted)."""
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    chunk_size = int(chunk_size) if chunk_size is not None else DEFAULT_CHUNK_BATCHES * batch_size
    if chunk_size < batch_size or chunk_size % batch_size:
        raise ValueError(
            f"chunk_size ({chunk_size}) must be a multiple of batch_size ({batch_size}) so that chunks "
            "reproduce a whole-catalog call exactly")
    n_samples = int(n_samples)
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}")
    return batch_size, chunk_size, n_samples


def _plan_columns(gp, input_path: Path, in_fmt: str, columns, levels: list[float], replace_columns: bool):
    """``(carried, outputs, read_columns)``: input columns written, output columns, input columns read."""
    available = table_columns(input_path, in_fmt)
    if columns is not None:
        columns = list(columns)
        missing = [c for c in columns if c not in available]
        if missing:
            raise KeyError(f"columns {missing} are not in {input_path} (columns: {', '.join(available)})")
    outputs = gp.output_columns(levels)
    check_output_clash(outputs, available, replace_columns, input_path)
    carried = [c for c in (columns if columns is not None else available) if c not in outputs]
    required = required_columns(gp, available)
    if required is None:
        return carried, outputs, None
    absent = [c for c in required if c not in available]
    if absent:
        raise KeyError(f"the model needs columns {absent}, which are not in {input_path}")
    return carried, outputs, carried + [c for c in required if c not in carried]


def _load_progress(state_file: Path, identity: dict, resume: bool) -> dict | None:
    """The recorded progress of an interrupted run with the same ``identity``, if any."""
    if not (resume and state_file.is_file()):
        return None
    try:
        previous = json.loads(state_file.read_text())
    except (OSError, json.JSONDecodeError):
        previous = None
    if previous and previous.get("identity") == identity:
        return previous
    if previous:
        warnings.warn(f"ignoring the progress in {state_file}: it was made with a different input, model "
                      "or settings; starting over", UserWarning, stacklevel=3)
    return None


def _open_outputs(state: dict | None, output_path: Path, out_fmt: str, open_samples):
    """``(writer, samples writer or None, state)``: continue ``state``'s outputs, else start over (state None)."""
    if state is not None:
        writer = None
        try:
            writer = open_chunked_writer(output_path, format=out_fmt, state=state["writer"])
            samples = open_samples(state["samples"]) if open_samples is not None else None
            return writer, samples, state
        except (ValueError, KeyError, OSError) as err:
            warnings.warn(f"cannot continue the interrupted run ({err}); starting over", UserWarning, stacklevel=3)
            if writer is not None:
                writer.abort()
    writer = open_chunked_writer(output_path, format=out_fmt)
    return writer, (open_samples(None) if open_samples is not None else None), None


def _progress_bar(input_path: Path, in_fmt: str, start: int, progress: bool):
    from tqdm.auto import tqdm

    try:
        total = count_rows(input_path, in_fmt) if progress else None
    except Exception:  # noqa: BLE001 - progress only
        total = None
    return tqdm(total=total, initial=start, desc="predict", unit="galaxy", disable=not progress, smoothing=0.1)


def _predict_chunks(gp, chunks, writer, samples, state: dict, state_file: Path, s: _Settings, bar,
                    max_chunks: int | None) -> tuple[int, bool]:
    """Predict and write ``chunks``, recording progress after each; ``(unusable rows, complete)``."""
    from ..model.estimator import UnusableRowsWarning

    n_unusable = 0
    for this_call, chunk in enumerate(chunks, 1):
        row = int(state["rows"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusableRowsWarning)
            result = gp.predict(chunk, n_samples=s.n_samples, percentiles=s.levels, random_state=s.seed,
                                batch_size=s.batch_size, row_offset=row, replace_columns=s.replace_columns)
        out = result[[c for c in s.carried if c in result.colnames] + s.outputs]
        n_unusable += int(np.count_nonzero(np.ma.getmaskarray(result["ood_score"])))
        writer.write(out)
        if samples is not None:
            for values, usable in sample_arrays(gp, chunk, n_samples=s.n_samples, seed=s.seed,
                                                 batch_size=s.batch_size, row_offset=row):
                samples.write(values.astype(s.samples_dtype, copy=False), usable)
        state["writer"] = writer.checkpoint()
        state["samples"] = samples.checkpoint() if samples is not None else None
        state["rows"], state["chunks"] = row + len(chunk), int(state["chunks"]) + 1
        write_json_atomic(state_file, state)
        bar.update(len(chunk))
        del chunk, result, out
        free_table_cycles()
        if max_chunks is not None and this_call >= max_chunks:
            return n_unusable, False
    return n_unusable, True


def _finish(writer, samples, state_file: Path, input_path: Path, rows: int, overwrite: bool) -> None:
    """Rename the complete output (and samples) to their names and remove the progress file."""
    if rows == 0:
        raise ValueError(f"input table {input_path} has no rows: nothing to predict")
    # check the samples target first: renaming the output must be the last step
    if samples is not None and samples.path.exists() and not overwrite:
        raise FileExistsError(f"{samples.path} exists; pass overwrite=True (--overwrite) to replace it")
    writer.close(overwrite=overwrite)
    if samples is not None:
        samples.close(overwrite=overwrite)
    state_file.unlink(missing_ok=True)


def _abort(writer, samples) -> None:
    writer.abort()
    if samples is not None:
        samples.abort()


def _run_identity(s: _Settings, checksum: str, input_path: Path, in_fmt: str, out_fmt: str, chunk_size: int,
                  samples_path: Path | None) -> dict:
    """What a run must share with an interrupted one to continue it: input, model, seed and settings."""
    return {
        "version": _STATE_VERSION,
        "input": _file_identity(input_path),
        "input_format": in_fmt,
        "model_checksum": checksum,
        "n_samples": s.n_samples,
        "seed": str(s.seed),
        "chunk_size": chunk_size,
        "batch_size": s.batch_size,
        "percentiles": s.levels,
        "columns": s.carried,
        "output_format": out_fmt,
        "samples": str(samples_path.resolve()) if samples_path is not None else None,
        "samples_dtype": s.samples_dtype,
    }


def _samples_opener(samples_path: Path | None, gp, s: _Settings, checksum: str, input_path: Path):
    """``open(state)`` of the samples writer (state None: start a new file), or None when no samples are asked for."""
    samples_attrs = {"seed": str(s.seed), "n_samples": s.n_samples, "model_checksum": checksum,
                     "input": str(input_path.resolve())}
    return None if samples_path is None else (
        lambda st: open_samples_writer(samples_path, gp, s.n_samples, samples_attrs, s.samples_dtype, st))


# Long for its numpydoc docstring (a public entry point with many parameters); the code is under 100 lines.
def predict_catalog(
    model,
    input_path,
    output_path,
    *,
    chunk_size: int | None = None,
    batch_size: int = 1024,
    n_samples: int = 1000,
    percentiles: Iterable[float] = (16, 50, 84),
    random_state: int | None = None,
    samples_path=None,
    samples_dtype: str = "float64",
    resume: bool = True,
    progress: bool = True,
    overwrite: bool = False,
    columns: Sequence[str] | None = None,
    device: str | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    max_chunks: int | None = None,
    replace_columns: bool = False,
) -> CatalogPrediction:
    """Posterior summaries for every row of a catalog file, chunk by chunk.

    Reads ``input_path`` in chunks (never whole; the file is only read), runs
    `GalaxyPosterior.predict` on each with ``row_offset`` set to the chunk's
    first row, and appends the result to a temporary file beside
    ``output_path``, which is renamed to ``output_path`` only when every chunk
    is written. Because chunks are whole multiples of ``batch_size``, the
    output equals ``model.predict(whole_catalog, random_state=seed)`` exactly.

    Parameters
    ----------
    model : GalaxyPosterior, str or path-like
        A fitted model or the folder of a saved one.
    input_path : str or path-like
        Catalog: Parquet, FITS, HDF5, CSV or ECSV (format from the suffix).
    output_path : str or path-like
        Output catalog, any of those formats (from the suffix): the carried
        input columns plus ``<target>_p16`` … columns, ``metallicity_prob``,
        ``ood_score`` and ``ood_flag``, with units and masks where the format
        keeps them.
    chunk_size : int, optional
        Rows read, inferred and written at a time; a multiple of ``batch_size``.
        Default ``DEFAULT_CHUNK_BATCHES * batch_size`` (16 384).
    batch_size : int, optional
        Galaxies sampled at once inside a chunk (as in `GalaxyPosterior.predict`).
    n_samples : int, optional
        Posterior samples per galaxy.
    percentiles : iterable of float, optional
        Percentiles written per target.
    random_state : int, optional
        Seed; default the model's ``random_state``, or a fresh seed when that is
        None too (reported in the result and kept in the progress file, so a
        resumed run continues with it).
    samples_path : str or path-like, optional
        Also write the posterior samples (on request only: they are large).
        ``.h5``/``.hdf5``: dataset ``samples`` of shape (N, n_samples, n_targets)
        in each target's catalog unit (attrs ``targets``, ``units``, ``seed``…)
        and dataset ``usable`` (N,). ``.parquet`` (or ``.fits``, ``.ecsv``): a
        table with one (n_samples,)-shaped column per target and ``usable``.
        Samples are drawn per batch with the same seeds as the summaries, so they
        are the very draws summarised; this samples every galaxy a second time
        (about twice the run time).
    samples_dtype : str, optional
        Stored dtype of the samples (``"float32"`` halves the file).
    resume : bool, optional
        Continue an interrupted run with the same input, model, seed and
        settings from its last completed chunk (see Notes). With False, start over.
    progress : bool, optional
        Show a progress bar over rows.
    overwrite : bool, optional
        Replace existing output (and samples) files when done. Without it, an
        existing output raises `FileExistsError` before any work.
    columns : sequence of str, optional
        Input columns to carry into the output; default all. Columns the model
        needs are read anyway but written only if listed.
    device : str, optional
        Torch device when ``model`` is a folder.
    input_format, output_format : str, optional
        Formats overriding the file-name suffixes.
    max_chunks : int, optional
        Stop after this many chunks in this call, leaving a resumable partial
        output (for tests and for splitting a long run into sessions).
    replace_columns : bool, optional
        Replace input columns named like output columns (a catalog predicted
        before); without it such an input raises `ValueError` before any work.

    Returns
    -------
    CatalogPrediction

    Raises
    ------
    FileNotFoundError
        Missing input or model folder.
    FileExistsError
        The output (or samples) file exists and ``overwrite`` is False.
    astro_galpost.io.TableFormatError
        Unknown or unreadable format.
    astro_galpost.ModelFormatError
        Corrupt or incompatible model folder.

    Notes
    -----
    **Temporary files.** The output is built as ``.<name>.partial`` (Parquet:
    one part file per chunk in the folder ``.<name>.parts``, merged at the end)
    beside ``output_path``; progress is recorded after every completed chunk in
    ``.<name>.progress.json`` (input path, size and modification time, model
    weights checksum, seed, n_samples, chunk settings, rows and chunks done,
    and the writers' state). A rerun with ``resume=True`` whose settings all
    match continues after the last completed chunk; otherwise the stale
    temporary files are removed and the run starts over. The temporary files
    are removed when the output is complete.

    **Memory.** Per chunk: the chunk's input and output columns; per batch:
    ``batch_size × n_samples × n_targets`` samples (float64). Neither depends
    on the catalog length.

    Examples
    --------
    >>> from astro_galpost.io import predict_catalog
    >>> result = predict_catalog("model", "catalog.parquet", "posteriors.parquet",
    ...                          n_samples=500, random_state=0)  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    gp, checksum = resolve_model(model, device)  # errors in the order of the arguments: model, input, output
    input_path, output_path = Path(input_path), Path(output_path)
    samples_path = Path(samples_path) if samples_path is not None else None
    in_fmt, out_fmt = _check_paths(input_path, output_path, samples_path, input_format, output_format, overwrite)
    batch_size, chunk_size, n_samples = _check_sizes(batch_size, chunk_size, n_samples)
    levels = [float(p) for p in percentiles]
    seed = resolve_seed(random_state, gp)
    carried, outputs, read_columns = _plan_columns(gp, input_path, in_fmt, columns, levels, replace_columns)
    settings = _Settings(n_samples, levels, seed, batch_size, carried, outputs, replace_columns, samples_dtype)
    identity = _run_identity(settings, checksum, input_path, in_fmt, out_fmt, chunk_size, samples_path)
    state_file = _state_path(output_path)
    open_samples = _samples_opener(samples_path, gp, settings, checksum, input_path)

    with output_lock(output_path):  # two runs writing one output: the second stops here
        writer, samples, state = _open_outputs(_load_progress(state_file, identity, resume), output_path,
                                               out_fmt, open_samples)
        if state is None:
            state_file.unlink(missing_ok=True)
            state = {"identity": identity, "rows": 0, "chunks": 0}
        resumed = int(state["rows"])
        bar = _progress_bar(input_path, in_fmt, resumed, progress)
        old_progress, gp.progress = gp.progress, False
        try:
            chunks = iter_table_chunks(input_path, chunk_size, start=resumed, columns=read_columns, format=in_fmt)
            n_unusable, complete = _predict_chunks(gp, chunks, writer, samples, state, state_file, settings, bar,
                                                   max_chunks)
            if complete:
                _finish(writer, samples, state_file, input_path, int(state["rows"]), overwrite)
            else:
                _abort(writer, samples)
        except BaseException:
            _abort(writer, samples)
            raise
        finally:
            gp.progress = old_progress
            bar.close()

    from ..model.estimator import UnusableRowsWarning

    row = int(state["rows"])
    if n_unusable:
        warnings.warn(f"{n_unusable} of {row - resumed} rows have unusable inputs (too few measured bands); "
                      "their posteriors are masked", UnusableRowsWarning, stacklevel=2)
    return CatalogPrediction(
        output=output_path, samples=samples_path, n_rows=row, n_chunks=int(state["chunks"]), resumed_rows=resumed,
        n_unusable=n_unusable, seconds=time.perf_counter() - t0, seed=seed, complete=complete,
    )
