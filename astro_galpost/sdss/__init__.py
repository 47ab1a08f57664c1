"""SDSS data: the Main Galaxy Sample with MPA-JHU properties (query, fetch, read) and image cutouts.

This subpackage builds the training catalogue of the seed paper (section 2.1):
SDSS Main Galaxy Sample galaxies with a good spectroscopic redshift
``0 < z <= 0.3``, ugriz photometry, MPA-JHU stellar mass, star-formation rate,
gas-phase metallicity and emission-line fluxes, and the stellar velocity
dispersion from which the black-hole mass is derived
(:func:`astro_galpost.physics.add_mbh_column`).

* :func:`build_query` writes the SkyServer (CAS) SQL
  (:mod:`astro_galpost.sdss.query`).
* :func:`fetch_catalog` pages through SkyServer with `astroquery.sdss`, saving
  every page atomically so an interrupted download resumes where it stopped
  (:mod:`astro_galpost.sdss.fetch`; transient errors are retried by
  :mod:`astro_galpost.sdss.retry`).
* :func:`read_catalog` reads local exports (SkyServer CSV, FITS, ECSV, Parquet,
  astroML's ``SDSSspecgalsDR8``) into one normalised form: CAS column names,
  unsigned 64-bit IDs, SDSS sentinels masked, units attached and ``log_mbh``
  derived; :func:`join_catalogs` joins two such tables on ``specObjID``
  (:mod:`astro_galpost.sdss.catalog`).
* :func:`decode_objid` tells the imaging field of a photometric ``objID``
  (:mod:`astro_galpost.sdss.frames`, which also downloads and caches frames).
* :func:`fetch_cutouts` downloads the calibrated SDSS ``frame`` files of a
  catalogue's galaxies through `astroquery.sdss` (each field's frames once, kept
  under ``out_dir/frames/``), cuts aligned multi-band stamps with
  :func:`astro_galpost.images.make_cutouts` and writes one FITS cube per galaxy
  plus a resumable manifest (:mod:`astro_galpost.sdss.cutouts`,
  :mod:`astro_galpost.sdss.cutout_manifest`)::

      galpost fetch-cutouts sdss_mgs/sdss_catalog.fits --out sdss_cutouts --size 64 --bands gri

  or, from Python::

      from astro_galpost.sdss import fetch_cutouts
      manifest = fetch_cutouts("sdss_mgs/sdss_catalog.fits", "sdss_cutouts", size=64)
      done = manifest[manifest["status"] == "ok"]  # files cutouts/<objID>.fits: (3, 64, 64)

  Run the same command again after an interruption: finished galaxies are
  skipped, cached frames are reused and only failed galaxies are retried.

The ``galpost fetch-sdss`` and ``galpost fetch-cutouts`` commands are in
:mod:`astro_galpost.cli.sdss`.

Notes
-----
SDSS object IDs do not fit in signed 64-bit integers: ``specObjID`` (and
``plateID``) of DR8+ spectra on plates above ~8000 exceed 2**63. They are kept as
`numpy.uint64` throughout; never read them as floats (precision is lost above
2**53) or signed integers.
"""

from .catalog import ID_COLUMNS, join_catalogs, read_catalog
from .cutout_manifest import CUTOUT_STATUSES, CUTOUTS_MANIFEST_FILENAME
from .cutouts import fetch_cutouts
from .fetch import CATALOG_FILENAME, MANIFEST_FILENAME, fetch_catalog
from .frames import decode_objid
from .query import BANDS, DEFAULT_COLUMNS, MGS_TARGET_BITS, Z_MIN, build_query

__all__ = [
    "BANDS",
    "CATALOG_FILENAME",
    "CUTOUTS_MANIFEST_FILENAME",
    "CUTOUT_STATUSES",
    "DEFAULT_COLUMNS",
    "ID_COLUMNS",
    "MANIFEST_FILENAME",
    "MGS_TARGET_BITS",
    "Z_MIN",
    "build_query",
    "decode_objid",
    "fetch_catalog",
    "fetch_cutouts",
    "join_catalogs",
    "read_catalog",
]
