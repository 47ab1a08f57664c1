"""The ``galpost`` command line: ``demo``, ``fit``, ``predict`` and ``fetch-sdss``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .io import write_table_atomic

__all__ = ["main"]


def _read_table(path: str):
    from astropy.table import QTable

    if not Path(path).is_file():
        raise FileNotFoundError(f"input table {path} does not exist")
    return QTable.read(path)


def _parse_targets(values: Sequence[str] | None):
    """``name`` or ``name=column`` items → list or dict for GalaxyPosterior."""
    if not values:
        return None
    if not any("=" in v for v in values):
        return list(values)
    from .targets import TARGETS

    return dict(v.split("=", 1) if "=" in v else (v, TARGETS[v].column) for v in values)


# ---------------------------------------------------------------- commands
def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.out, quick=args.quick, progress=not args.no_progress)
    return 0


def _cmd_fit(args) -> int:
    from . import GalaxyPosterior

    out = Path(args.model)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
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
    print(f"fitted {list(gp.targets_)} on {gp.n_train_} galaxies in {time.perf_counter() - t0:.1f} s; saved to {out}")
    return 0


def _cmd_predict(args) -> int:
    from . import GalaxyPosterior

    gp = GalaxyPosterior.load(args.model, device=args.device)
    gp.progress = not args.no_progress
    table = _read_table(args.table)
    result = gp.predict(table, n_samples=args.n_samples, random_state=args.seed)
    write_table_atomic(result, args.output, overwrite=args.overwrite)
    print(f"wrote posterior summaries of {len(result)} galaxies to {args.output}")
    return 0


def _cmd_fetch(args) -> int:
    from .datasets.sdss import run_fetch

    return run_fetch(args)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="galpost",
        description="Calibrated posteriors of galaxy properties and emission lines from photometry and images.",
    )
    parser.add_argument("--version", action="version", version=f"astro_galpost {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="train and predict on real SDSS galaxies shipped with kcorrect and on the mock catalog",
                       description="Photometric-redshift posteriors for real SDSS galaxies (kcorrect's test sample) and "
                                   "all nine targets on the mock catalog; writes tables and a PNG figure.")
    p.add_argument("--out", default="galpost_demo", help="output folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="smaller samples and fewer epochs (about a minute)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("fit", help="train a model on a labelled table and save it",
                       description="Train GalaxyPosterior on an astropy-readable table (FITS, ECSV, CSV, Parquet, HDF5).")
    p.add_argument("table", help="training table")
    p.add_argument("model", help="output model folder")
    p.add_argument("--targets", nargs="+", metavar="NAME[=COLUMN]",
                   help="targets, optionally with their column (default: all nine)")
    p.add_argument("--photometry", nargs="+", metavar="COLUMN", help="magnitude columns (default: modelMag_u … modelMag_z)")
    p.add_argument("--n-ensemble", type=int, default=1, help="deep-ensemble members (default: %(default)s)")
    p.add_argument("--max-epochs", type=int, default=300, help="epoch limit (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_fit)

    p = sub.add_parser("predict", help="posterior summaries for a table with a saved model",
                       description="Add <target>_p16/_p50/_p84 columns with units to a copy of the input table.")
    p.add_argument("model", help="model folder written by 'galpost fit'")
    p.add_argument("table", help="input table (never modified)")
    p.add_argument("output", help="output table; the format follows the extension")
    p.add_argument("--n-samples", type=int, default=1000, help="posterior samples per galaxy (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_predict)

    from .datasets.sdss import add_fetch_arguments

    p = sub.add_parser("fetch-sdss", help="download the seed paper's SDSS training sample (needs a network)",
                       description="Query SkyServer for the SDSS Main Galaxy Sample with MPA-JHU labels, "
                                   "paged, cached and resumable.")
    add_fetch_arguments(p)
    p.set_defaults(func=_cmd_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``galpost`` command; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("galpost: interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"galpost {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
