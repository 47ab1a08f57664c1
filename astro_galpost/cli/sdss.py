"""The ``galpost fetch-sdss`` and ``galpost fetch-cutouts`` commands (argparse hooks).

:func:`add_fetch_arguments` and :func:`run_fetch` drive
:func:`astro_galpost.sdss.fetch_catalog`; :func:`add_fetch_cutouts_arguments`
and :func:`run_fetch_cutouts` drive :func:`astro_galpost.sdss.fetch_cutouts`.
``python -m astro_galpost.cli.sdss`` runs the catalogue download alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..io import check_input_file
from ..sdss import (
    CATALOG_FILENAME,
    CUTOUT_STATUSES,
    CUTOUTS_MANIFEST_FILENAME,
    MANIFEST_FILENAME,
    Z_MIN,
    build_query,
    fetch_catalog,
    fetch_cutouts,
)

__all__ = ["add_fetch_arguments", "add_fetch_cutouts_arguments", "run_fetch", "run_fetch_cutouts"]


def add_fetch_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``galpost fetch`` to ``parser`` (returned for chaining)."""
    parser.add_argument("--n", type=int, default=250_000,
                        help="number of galaxies to fetch (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("sdss_mgs"),
                        help="download folder; rerun with the same folder to resume "
                             "(default: %(default)s)")
    parser.add_argument("--page-size", type=int, default=50_000,
                        help="rows per SkyServer request (default: %(default)s)")
    parser.add_argument("--data-release", type=int, default=17,
                        help="SDSS data release (default: %(default)s)")
    parser.add_argument("--z-min", type=float, default=Z_MIN,
                        help="minimum redshift, exclusive (default: %(default)s; 0 drops the cut)")
    parser.add_argument("--z-max", type=float, default=0.3,
                        help="maximum redshift (default: %(default)s)")
    parser.add_argument("--include-unreliable", action="store_true",
                        help="keep galaxies with galSpecInfo reliable = 0 (default: dropped)")
    parser.add_argument("--r-max", type=float, default=17.77,
                        help="dereddened Petrosian r limit (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=4,
                        help="retries per page on network errors (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the SQL of the first page and exit")
    return parser


def run_fetch(args: argparse.Namespace) -> int:
    """Run ``galpost fetch`` with parsed ``args``; returns the exit code."""
    options = {"z_min": args.z_min, "z_max": args.z_max, "r_max": args.r_max,
               "reliable_only": not args.include_unreliable}
    try:
        if args.dry_run:
            first = min(args.page_size, args.n) if args.n else args.page_size
            print(build_query(first, **options))
            print(f"-- later pages add: AND s.specObjID > <last specObjID of the previous "
                  f"page>; data release {args.data_release}")
            return 0
        catalog = fetch_catalog(args.out, n=args.n, page_size=args.page_size,
                                data_release=args.data_release, retries=args.retries,
                                progress=not args.no_progress, **options)
    except KeyboardInterrupt:
        print(f"interrupted: pages fetched so far are kept in {args.out}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI reports, the traceback helps nobody
        code = _report("fetch-sdss", exc)
        if code == 1 and _pages_kept(Path(args.out)):
            print(f"pages fetched so far are kept in {args.out}; run the same command "
                  "again to resume", file=sys.stderr)
        return code
    print(f"{len(catalog)} galaxies written to {Path(args.out) / CATALOG_FILENAME}")
    return 0


#: Errors in what the user asked for (exit status 2); others, such as the network's, give 1.
_INPUT_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                 FileExistsError)


def _report(command: str, exc: Exception) -> int:
    """Print ``exc`` as one short line; return 2 for an input error, 1 for another (e.g. the network's)."""
    text = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).strip()
    text = text.splitlines()[0] if text else type(exc).__name__
    text = text if len(text) <= 300 else text[:297] + "..."
    if isinstance(exc, _INPUT_ERRORS):
        print(f"galpost {command}: error: {text}", file=sys.stderr)
        return 2
    print(f"galpost {command}: {type(exc).__name__}: {text}", file=sys.stderr)
    return 1


def _pages_kept(out: Path) -> bool:
    """Whether the download folder ``out`` records at least one fetched page."""
    try:
        return bool(json.loads((out / MANIFEST_FILENAME).read_text(encoding="utf-8")).get("pages"))
    except (OSError, ValueError, AttributeError):
        return False


def add_fetch_cutouts_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the options of ``galpost fetch-cutouts`` to ``parser`` (returned for chaining)."""
    parser.add_argument("catalog", type=Path,
                        help="galaxy catalogue (FITS, ECSV, SkyServer CSV ...) with objID, ra, dec "
                             "and ideally run, camcol, field")
    parser.add_argument("--out", type=Path, default=Path("sdss_cutouts"),
                        help="output folder; rerun with the same folder to resume "
                             "(default: %(default)s)")
    parser.add_argument("--size", type=int, default=64,
                        help="cutout side in pixels, 0.396\"/pixel (default: %(default)s)")
    parser.add_argument("--bands", default="gri",
                        help="bands in cube order, e.g. gri or g,r,i (default: %(default)s)")
    parser.add_argument("--data-release", type=int, default=17,
                        help="SDSS data release (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=4,
                        help="retries per frame on network errors (default: %(default)s)")
    parser.add_argument("--id-column", default="objID",
                        help="column naming the galaxies and files (default: %(default)s)")
    parser.add_argument("--frame-cache", type=Path, default=None,
                        help="folder of cached frames (default: OUT/frames)")
    parser.add_argument("--no-keep-frames", action="store_true",
                        help="do not keep downloaded frames on disk")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run_fetch_cutouts(args: argparse.Namespace) -> int:
    """Run ``galpost fetch-cutouts`` with parsed ``args``.

    Returns 0 when every galaxy is done (``ok``, ``edge`` or ``off_frame``), 1
    when some failed (they are in the manifest; run again to retry them) or on
    another error (the network's), 2 on an error in the inputs, and 130 on Ctrl-C.
    """
    bands = tuple(c for c in str(args.bands) if c not in ", ")  # "gri" or "g,r,i"
    manifest_path = Path(args.out) / CUTOUTS_MANIFEST_FILENAME
    try:
        check_input_file(args.catalog, "catalogue")
        manifest = fetch_cutouts(args.catalog, args.out, size=args.size, bands=bands,
                                 data_release=args.data_release, retries=args.retries,
                                 id_column=args.id_column, frame_cache=args.frame_cache,
                                 keep_frames=not args.no_keep_frames,
                                 progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"interrupted: cutouts made so far are kept in {args.out}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a CLI reports, the traceback helps nobody
        return _report("fetch-cutouts", exc)
    status = np.asarray(manifest["status"], dtype=str)
    counts = {s: int(np.sum(status == s)) for s in CUTOUT_STATUSES if np.any(status == s)}
    print(f"{len(manifest)} galaxies: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f"; manifest {manifest_path}")
    if counts.get("failed"):
        print(f"{counts['failed']} failed (see the 'error' column); run the same command again "
              "to retry them", file=sys.stderr)
        return 1
    return 0


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astro_galpost.cli.sdss",
                                     description="Fetch the SDSS Main Galaxy Sample catalogue.")
    add_fetch_arguments(parser)
    return run_fetch(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
