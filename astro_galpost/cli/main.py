"""The ``galpost`` command line: ``demo``, ``fit``, ``predict``, ``evaluate``, ``fetch-sdss`` and ``fetch-cutouts``.

Errors in the inputs (missing or unreadable files, a corrupt model folder, an
existing output without ``--overwrite``) print ``galpost COMMAND: error: ...``
and exit with status 2; an interrupt exits with 130 (``galpost predict`` can
then be rerun to continue).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..io import write_table_atomic
from ..utils.atomic import check_output, output_lock, write_text_atomic
from ..utils.threads import default_threads

__all__ = ["main"]

#: Optional packages of the ``data`` extra that some table formats need (HDF5, chunked CSV reading).
_DATA_EXTRA = ("h5py", "pandas", "pyarrow", "reproject", "photutils", "astroquery", "specutils")


def _read_table(path: str):
    from astropy.table import QTable

    from ..io import TableFormatError, check_input_file

    check_input_file(path)
    try:
        return QTable.read(path)
    except Exception as err:  # noqa: BLE001 - astropy's readers raise many types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TableFormatError(f"cannot read {path}: {first}") from err


def _whole_number(minimum: int):
    """An argparse ``type``: a whole number of at least ``minimum``, refused by argparse otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _ensemble_size(text: str) -> int | str:
    """``--n-ensemble``: 'auto' or a whole number."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number, got {text!r}") from None


def _parse_targets(values: Sequence[str] | None):
    """``name`` or ``name=column`` items → list or dict for GalaxyPosterior."""
    if not values:
        return None
    if not any("=" in v for v in values):
        return list(values)
    from ..model.targets import TARGETS

    return dict(v.split("=", 1) if "=" in v else (v, TARGETS[v].column) for v in values)


def _add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=_whole_number(1), default=None, metavar="N",
                        help="torch threads (default: $OMP_NUM_THREADS if set, else 1, the measured best on a shared "
                             "machine; never more than the CPUs this process may use)")


# ---------------------------------------------------------------- commands
def _cmd_demo(args) -> int:
    from ..datasets.demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def _cmd_fit(args) -> int:
    from .. import GalaxyPosterior
    from ..model.persistence import CONFIG, WEIGHTS, is_model_folder

    out = check_output(args.model, overwrite=args.overwrite, inputs=(args.table,),  # before training
                       is_ours=is_model_folder, allowed=(CONFIG, WEIGHTS))
    table = _read_table(args.table)
    kwargs = {}
    targets = _parse_targets(args.targets)
    if targets is not None:
        kwargs["targets"] = targets
    if args.photometry:
        kwargs["photometry"] = args.photometry
    gp = GalaxyPosterior(
        **kwargs, n_ensemble=args.n_ensemble, max_epochs=args.max_epochs,
        random_state=args.seed, device=args.device, progress=not args.no_progress,
    )
    t0 = time.perf_counter()
    gp.fit(table)
    gp.save(out, overwrite=args.overwrite)
    members = f" ({gp.n_ensemble_} networks)" if gp.n_ensemble_ > 1 else ""
    print(f"fitted {list(gp.targets_)} on {gp.n_train_} galaxies{members} in {time.perf_counter() - t0:.1f} s; "
          f"saved to {out}")
    return 0


def _cmd_predict(args) -> int:
    if args.dask:
        return _predict_with_dask(args)
    from ..io import predict_catalog

    result = predict_catalog(
        args.model, args.table, args.output, chunk_size=args.chunk_size, batch_size=args.batch_size,
        n_samples=args.n_samples, random_state=args.seed, samples_path=args.samples, resume=not args.no_resume,
        progress=not args.no_progress, overwrite=args.overwrite, columns=args.columns, device=args.device,
        replace_columns=args.replace_columns,
    )
    print(result.summary())
    return 0


def _predict_with_dask(args) -> int:
    """``galpost predict --dask``: partitions computed on a cluster, written here in order.

    The output's lock is held throughout, as by the serial command: a second
    run writing the same output (serial or not) stops with an error.
    """
    from ..io import detect_format

    if args.samples:
        raise ValueError("--samples is not available with --dask")
    if not Path(args.table).exists():
        raise FileNotFoundError(f"input table {args.table} does not exist")
    out = Path(args.output)
    detect_format(out)
    check_output(out, overwrite=args.overwrite, inputs=(args.table,))
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - distributed is a dependency of the [dask] extra
        raise ValueError("--dask needs dask.distributed (pip install 'dask[distributed]')") from err
    t0 = time.perf_counter()
    with output_lock(out):
        cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None) \
            if args.dask == "local" else None
        client = Client(cluster if cluster is not None else args.dask)
        try:
            rows = _write_dask_output(args, out, client)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    print(f"wrote posterior summaries of {rows} galaxies to {out} in {time.perf_counter() - t0:.1f} s "
          f"(dask: {args.dask}; seed {args.seed})")
    return 0


def _write_dask_output(args, out: Path, client) -> int:
    """Compute `predict_dask` on ``client`` and write its partitions to ``out`` in order; the rows written."""
    from tqdm.auto import tqdm

    from ..io import frame_to_table, open_chunked_writer, predict_dask

    writer = None
    try:
        ddf = predict_dask(args.model, args.table, n_samples=args.n_samples, random_state=args.seed,
                           client=client, batch_size=args.batch_size, columns=args.columns, device=args.device,
                           replace_columns=args.replace_columns)
        futures = client.compute(ddf.to_delayed())
        writer = open_chunked_writer(out)
        rows = 0
        with tqdm(total=len(futures), desc="partitions", disable=args.no_progress) as bar:
            for future in futures:  # in order; the cluster computes ahead
                frame = future.result()
                future.release()
                writer.write(frame_to_table(frame))  # units, descriptions, header: frame.attrs
                rows += len(frame)
                bar.update()
        writer.close(overwrite=args.overwrite)
    except BaseException:
        if writer is not None:
            writer.discard()
        raise
    return rows


def _markdown(report) -> str:
    """The evaluation report as a Markdown table, with the run's row counts, samples and seed below it."""
    from ..evaluation import to_markdown

    meta = ", ".join(f"{k} = {report.meta[k]}" for k in ("n_rows", "n_unusable", "n_samples", "seed")
                     if k in report.meta)
    return to_markdown(report) + f"\n\n{meta}\n"


_REPORT_SUFFIXES = (".md", ".markdown", ".ecsv", ".csv", ".fits", ".parquet")


def _cmd_evaluate(args) -> int:
    from .. import GalaxyPosterior
    from ..evaluation import evaluate_model

    report_path = Path(args.report) if args.report else None
    if report_path is not None:
        check_output(report_path, overwrite=args.overwrite, inputs=(args.table, args.model))
        if report_path.suffix.lower() not in _REPORT_SUFFIXES:
            raise ValueError(f"cannot write a report to {report_path.name}: use one of {', '.join(_REPORT_SUFFIXES)}")
    gp = GalaxyPosterior.load(args.model, device=args.device)
    gp.progress = not args.no_progress
    table = _read_table(args.table)
    report = evaluate_model(gp, table, n_samples=args.n_samples, random_state=args.seed, batch_size=args.batch_size,
                            sbc=False, joint=False)
    report.pprint(max_lines=-1, max_width=-1)
    if report_path is not None:
        if report_path.suffix.lower() in (".md", ".markdown"):
            write_text_atomic(report_path, _markdown(report), overwrite=args.overwrite)
        else:
            write_table_atomic(report, report_path, overwrite=args.overwrite)
        print(f"wrote the evaluation of {len(table)} galaxies to {report_path}")
    return 0


def _cmd_fetch_cutouts(args) -> int:
    from .sdss import run_fetch_cutouts

    return run_fetch_cutouts(args)


def _cmd_fetch(args) -> int:
    from .sdss import run_fetch

    return run_fetch(args)


def _add_demo(sub) -> None:
    """Add ``galpost demo`` to the subcommands ``sub``."""
    p = sub.add_parser("demo", help="train and predict on real SDSS galaxies shipped with kcorrect and on the mock catalog",
                       description="Photometric-redshift posteriors for real SDSS galaxies (kcorrect's test sample) and "
                                   "all nine targets on the mock catalog; writes tables and a PNG figure.")
    p.add_argument("--out", default="galpost_demo", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer galaxies and epochs (about 1 minute)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of the demo's names that an earlier demo did not write")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)
    p.set_defaults(func=_cmd_demo)


def _add_fit(sub) -> None:
    """Add ``galpost fit`` to the subcommands ``sub``."""
    p = sub.add_parser("fit", help="train a model on a labelled table and save it",
                       description="Train GalaxyPosterior on an astropy-readable table (FITS, ECSV, CSV, Parquet, HDF5).")
    p.add_argument("table", help="training table")
    p.add_argument("model", help="output model folder")
    p.add_argument("--targets", nargs="+", metavar="NAME[=COLUMN]",
                   help="targets, optionally with their column (default: all nine)")
    p.add_argument("--photometry", nargs="+", metavar="COLUMN", help="magnitude columns (default: modelMag_u … modelMag_z)")
    p.add_argument("--n-ensemble", type=_ensemble_size, default="auto",
                   help="deep-ensemble members, or 'auto': 3 below 5,000 labelled rows, else 1 (default: %(default)s)")
    p.add_argument("--max-epochs", type=_whole_number(1), default=300, help="epoch limit (default: %(default)s)")
    p.add_argument("--seed", type=_whole_number(0), default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)
    p.set_defaults(func=_cmd_fit)


def _add_predict(sub) -> None:
    """Add ``galpost predict`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "predict", help="posterior summaries for a catalog with a saved model, chunk by chunk",
        description="Add <target>_p16/_p50/_p84 columns (with units), metallicity_prob, ood_score and ood_flag "
                    "to a copy of the input catalog. The catalog is read, inferred and written in chunks, so "
                    "memory does not grow with its length; the output appears under its name only when "
                    "complete, and an interrupted run continues where it stopped when rerun. Formats (from "
                    "the suffix): Parquet, FITS, HDF5, CSV, ECSV.",
        epilog="Exit status: 0 on success, 2 on an input error (missing or unreadable file, corrupt model, "
               "existing output without --overwrite), 130 when interrupted.")
    p.add_argument("model", help="model folder written by 'galpost fit'")
    p.add_argument("table", metavar="input", help="input catalog (never modified)")
    p.add_argument("output", help="output catalog; the format follows the extension")
    p.add_argument("--n-samples", type=_whole_number(1), default=1000, help="posterior samples per galaxy (default: %(default)s)")
    p.add_argument("--seed", type=_whole_number(0), default=0, help="random seed (default: %(default)s)")
    p.add_argument("--chunk-size", type=_whole_number(1), default=None, metavar="ROWS",
                   help="rows per chunk, a multiple of --batch-size (default: 16 x batch size)")
    p.add_argument("--batch-size", type=_whole_number(1), default=1024, metavar="ROWS",
                   help="galaxies sampled at once (default: %(default)s)")
    p.add_argument("--samples", metavar="FILE", default=None,
                   help="also write the posterior samples: .h5 (dataset 'samples', N x n_samples x n_targets) "
                        "or .parquet (one column per target); large, and doubles the run time")
    p.add_argument("--columns", nargs="+", metavar="COLUMN", default=None,
                   help="input columns to copy into the output (default: all)")
    p.add_argument("--no-resume", action="store_true", help="start over instead of continuing an interrupted run")
    p.add_argument("--replace-columns", action="store_true",
                   help="replace input columns that have the names of output columns (default: refuse)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="run on a Dask cluster: a scheduler address (tcp://host:8786) or 'local' for a "
                        "LocalCluster on this machine; the input must be Parquet (file or dataset) or a HATS "
                        "catalog; no resume")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)
    p.set_defaults(func=_cmd_predict)


def _add_evaluate(sub) -> None:
    """Add ``galpost evaluate`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "evaluate", help="point metrics and calibration of a saved model on a labelled table",
        description="Sample posteriors for every row of a labelled table and report, per target, the point "
                    "metrics of the posterior medians (R2, RMSE, bias, sigma_NMAD, outlier fraction; redshift "
                    "residuals divided by 1+z) and calibration (68/95% interval coverage, PIT KS and CvM "
                    "tests, CRPS). Line fluxes are evaluated in log10, as they are modelled.",
        epilog="Exit status: 0 on success, 2 on an input error.")
    p.add_argument("model", help="model folder written by 'galpost fit'")
    p.add_argument("table", help="labelled table (FITS, ECSV, CSV, Parquet, HDF5) with the target columns")
    p.add_argument("--report", metavar="FILE", default=None,
                   help="write the report: .md (Markdown) or an astropy table format such as .ecsv")
    p.add_argument("--n-samples", type=_whole_number(2), default=1000, help="posterior samples per galaxy (default: %(default)s)")
    p.add_argument("--seed", type=_whole_number(0), default=0, help="random seed (default: %(default)s)")
    p.add_argument("--batch-size", type=_whole_number(1), default=1024, help="galaxies sampled at once (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing report")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_threads(p)
    p.set_defaults(func=_cmd_evaluate)


def _add_fetch(sub) -> None:
    """Add ``galpost fetch-sdss`` and ``fetch-cutouts`` (their options: `astro_galpost.cli.sdss`) to the subcommands ``sub``."""
    from .sdss import add_fetch_arguments

    p = sub.add_parser("fetch-sdss", help="download the seed paper's SDSS training sample (needs a network)",
                       description="Query SkyServer for the SDSS Main Galaxy Sample with MPA-JHU labels, "
                                   "paged, cached and resumable.")
    add_fetch_arguments(p)
    p.set_defaults(func=_cmd_fetch)

    from .sdss import add_fetch_cutouts_arguments

    p = sub.add_parser("fetch-cutouts", help="download SDSS frames and write per-galaxy gri cutouts (needs a network)",
                       description="Fetch the calibrated SDSS frames of each galaxy's field (once per field, cached) "
                                   "and write one gri cutout FITS per galaxy plus a manifest; resumable.")
    add_fetch_cutouts_arguments(p)
    p.set_defaults(func=_cmd_fetch_cutouts)


def _parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="galpost",
        description="Calibrated posteriors of galaxy properties and emission lines from photometry and images.",
    )
    parser.add_argument("--version", action="version", version=f"astro_galpost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_fit, _add_predict, _add_evaluate, _add_fetch):
        add(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line for a command-line user, not a Python source location."""
    print(f"galpost: {category.__name__}: {message}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``galpost`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with default_threads(getattr(args, "threads", None)), warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("galpost: interrupted", file=sys.stderr)
        return 130
    except (OSError, ImportError, KeyError, ValueError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        if isinstance(err, ImportError) and err.name in _DATA_EXTRA:
            message = f"{err}; it comes with the 'data' extra: pip install 'astro_galpost[data]'"
        print(f"galpost {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
