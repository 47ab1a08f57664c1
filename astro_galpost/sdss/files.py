"""Files of the SDSS downloads: atomic writes, and the leftovers of writers that were killed.

Every file :func:`~astro_galpost.sdss.fetch_catalog` and
:func:`~astro_galpost.sdss.fetch_cutouts` write goes through
`astro_galpost.utils.atomic.write_atomic` (a synced temporary file renamed over the
final name), so a reader or a resumed run sees either no file or a complete
one. Their temporary files end in :data:`PART_SUFFIX`, so that the next run can
recognise and remove those of a process killed mid-write
(:func:`clean_partial_files`).
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..utils.atomic import write_atomic

__all__ = ["PART_SUFFIX", "clean_partial_files", "write_table"]

#: Suffix of the temporary files of the SDSS downloads (``.<name>.<random>.part``).
PART_SUFFIX = ".part"


def write_table(table: Table, path: Path, fmt: str) -> None:
    """Write ``table`` to ``path`` in format ``fmt`` atomically, replacing an existing file."""
    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # e.g. unit strings in FITS
            table.write(tmp, format=fmt, overwrite=True)

    write_atomic(path, write, overwrite=True, suffix=PART_SUFFIX)


#: The random part `tempfile.mkstemp` puts in a temporary name: a dot and 8 of ``[a-z0-9_]``.
_RANDOM = r"\.[a-z0-9_]{8}"


def clean_partial_files(*folders: Path, min_age: float = 0.0, names: tuple[str, ...] = ()) -> None:
    """Remove temporary files left by a process killed mid-write (they are ours).

    Only names of the exact form this package's atomic writes give their
    temporary files are removed: ``.<name>.<8 random characters>.part``, and
    ``.<name>.<8 random characters><suffixes of name>`` for the ``names``
    given; a user's ``.download.part`` or ``.manifest.json.bak`` stays.

    Parameters
    ----------
    *folders : path-like
        Folders to clean; those that do not exist are skipped.
    min_age : float, optional
        Only remove files not modified for that many seconds (for folders that
        another process may be writing to right now).
    names : tuple of str, optional
        Final names written with `astro_galpost.utils.atomic`'s default temporary
        names (``.<name>.<random><suffixes>``) rather than :data:`PART_SUFFIX`;
        their leftovers go too.
    """
    limit = time.time() - min_age
    patterns = [re.compile(r"\..+" + _RANDOM + re.escape(PART_SUFFIX)),
                *(re.compile(re.escape(f".{name}") + _RANDOM + re.escape("".join(Path(name).suffixes)))
                  for name in names)]
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for stale in folder.iterdir():
            if not any(p.fullmatch(stale.name) for p in patterns) or stale.is_symlink():
                continue
            try:
                if stale.is_file() and (min_age <= 0 or stale.stat().st_mtime < limit):
                    stale.unlink(missing_ok=True)
            except FileNotFoundError:  # its writer finished meanwhile
                pass
