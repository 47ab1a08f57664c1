"""The SDSS Main Galaxy Sample with MPA-JHU properties: query, fetch and read.

This module builds the training catalogue of the seed paper (section 2.1): SDSS
Main Galaxy Sample galaxies with a good spectroscopic redshift ``0 < z <= 0.3``,
ugriz photometry, MPA-JHU stellar mass, star-formation rate, gas-phase
metallicity and emission-line fluxes, and the stellar velocity dispersion from
which the black-hole mass is derived (:func:`astro_galpost.physics.add_mbh_column`).

* :func:`build_query` writes the SkyServer (CAS) SQL.
* :func:`fetch_catalog` pages through SkyServer with `astroquery.sdss`, saving
  every page atomically so an interrupted download resumes where it stopped.
* :func:`read_catalog` reads local exports (SkyServer CSV, FITS, ECSV, Parquet,
  astroML's ``SDSSspecgalsDR8``) into one normalised form: CAS column names,
  unsigned 64-bit IDs, SDSS sentinels masked, units attached and ``log_mbh``
  derived.
* :func:`join_catalogs` joins two such tables on ``specObjID``.
* :func:`add_fetch_arguments` and :func:`run_fetch` are the ``galpost fetch``
  command-line hooks.
* :func:`fetch_cutouts` downloads the calibrated SDSS ``frame`` files of a
  catalogue's galaxies through `astroquery.sdss` (each field's frames once, kept
  under ``out_dir/frames/``), cuts aligned multi-band stamps with
  :func:`astro_galpost.images.make_cutouts` and writes one FITS cube per galaxy
  plus a resumable manifest; :func:`add_fetch_cutouts_arguments` and
  :func:`run_fetch_cutouts` are its command-line hooks
  (``galpost fetch-cutouts``)::

      galpost fetch-cutouts sdss_mgs/sdss_catalog.fits --out sdss_cutouts --size 64 --bands gri

  or, from Python::

      from astro_galpost.datasets.sdss import fetch_cutouts
      manifest = fetch_cutouts("sdss_mgs/sdss_catalog.fits", "sdss_cutouts", size=64)
      done = manifest[manifest["status"] == "ok"]  # files cutouts/<objID>.fits: (3, 64, 64)

  Run the same command again after an interruption: finished galaxies are
  skipped, cached frames are reused and only failed galaxies are retried.

Notes
-----
SDSS object IDs do not fit in signed 64-bit integers: ``specObjID`` (and
``plateID``) of DR8+ spectra on plates above ~8000 exceed 2**63. They are kept as
`numpy.uint64` throughout; never read them as floats (precision is lost above
2**53) or signed integers.
"""

from __future__ import annotations

import argparse
import bz2
import email.utils
import hashlib
import io
import json
import math
import os
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table, join, vstack
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

from ..utils.atomic import write_atomic
from ..io import TableFormatError

__all__ = [
    "BANDS",
    "MGS_TARGET_BITS",
    "Z_MIN",
    "DEFAULT_COLUMNS",
    "ID_COLUMNS",
    "CATALOG_FILENAME",
    "MANIFEST_FILENAME",
    "build_query",
    "fetch_catalog",
    "read_catalog",
    "join_catalogs",
    "add_fetch_arguments",
    "run_fetch",
    "CUTOUTS_MANIFEST_FILENAME",
    "CUTOUT_STATUSES",
    "decode_objid",
    "fetch_cutouts",
    "add_fetch_cutouts_arguments",
    "run_fetch_cutouts",
]

#: SDSS photometric bands, blue to red.
BANDS = "ugriz"

#: ``legacy_target1`` bits of the Main Galaxy Sample: GALAXY (bit 6),
#: GALAXY_BIG (bit 7) and GALAXY_BRIGHT_CORE (bit 8), as documented for the
#: SDSS spectroscopic target flags (Strauss et al. 2002).
MGS_TARGET_BITS = 64 | 128 | 256

#: Spectroscopic emission lines (galSpecLine prefixes) fetched by default: the
#: four lines the seed paper models.
_DEFAULT_LINES = ("h_alpha", "h_beta", "nii_6584", "oiii_5007")

#: Columns selected by :func:`build_query`, as ``<table alias>.<CAS column>``.
#: Aliases: ``s`` SpecObj, ``p`` PhotoObj, ``i`` galSpecInfo, ``e`` galSpecExtra,
#: ``l`` galSpecLine. A qualified column keeps its CAS name in the result; the
#: position and redshift are named explicitly because CAS reuses those names
#: across tables: ``z`` is the redshift in SpecObj but the z-band magnitude in
#: PhotoObj, and ``ra``/``dec`` exist in all of them. (Short select items keep
#: the URL of SkyServer's GET interface well below 2 kB.)
DEFAULT_COLUMNS: tuple[str, ...] = (
    "p.objID",
    "s.specObjID",
    "p.ra AS ra",
    "p.dec AS dec",
    "s.z AS z",
    "s.zErr",
    "s.plate",
    "s.mjd",
    "s.fiberID",
    "s.velDisp",
    "s.velDispErr",
    "i.v_disp",
    "i.v_disp_err",
    "i.sn_median",
    *(f"p.modelMag_{b}" for b in BANDS),
    *(f"p.modelMagErr_{b}" for b in BANDS),
    *(f"p.extinction_{b}" for b in BANDS),
    *(f"p.fiberMag_{b}" for b in BANDS),
    "p.petroMag_r",
    "p.petroR50_r",
    "p.petroR90_r",
    "e.lgm_tot_p50",
    "e.sfr_tot_p50",
    "e.oh_p50",
    "e.bptclass",
    "i.reliable",
    *(f"l.{line}_{suffix}" for line in _DEFAULT_LINES for suffix in ("flux", "flux_err")),
)

#: Identifier columns read as unsigned 64-bit integers (CAS ``bigint`` or
#: ``numeric(20)``; ``specObjID`` and ``plateID`` exceed 2**63 for DR8+ plates).
ID_COLUMNS = ("objID", "specObjID", "bestObjID", "targetObjID", "plateID", "fieldID")

#: Default lower redshift limit of :func:`build_query`: below it peculiar
#: velocities (~300 km/s, i.e. z ~ 0.001) are 10% or more of the Hubble flow.
Z_MIN = 0.01

#: Name of the concatenated catalogue written by :func:`fetch_catalog`.
CATALOG_FILENAME = "sdss_catalog.fits"

#: Name of the download state file written by :func:`fetch_catalog`.
MANIFEST_FILENAME = "manifest.json"

_MANIFEST_VERSION = 1
_PAGE_KEYS = {"specObjID": "s.specObjID", "objID": "p.objID"}
_PAGE_FORMATS = {"ecsv": "ascii.ecsv", "fits": "fits"}
_PART_SUFFIX = ".part"

# --- catalogue conventions ------------------------------------------------------------

_MPA_LINES = (
    "oii_3726", "oii_3729", "neiii_3869", "h_delta", "h_gamma", "oiii_4363", "h_beta",
    "oiii_4959", "oiii_5007", "hei_5876", "oi_6300", "nii_6548", "h_alpha", "nii_6584",
    "sii_6717", "sii_6731", "ariii7135",
)
_LINE_SUFFIXES = ("flux", "flux_err", "cont", "cont_err", "eqw", "eqw_err", "reqw",
                  "reqw_err", "inst_res", "chisq")
_MAG_PREFIXES = ("modelMag", "modelMagErr", "petroMag", "petroMagErr", "psfMag", "psfMagErr",
                 "cModelMag", "cModelMagErr", "fiberMag", "fiberMagErr", "fiber2Mag",
                 "fiber2MagErr", "deVMag", "deVMagErr", "expMag", "expMagErr", "extinction",
                 "dered")
_MPA_PROPERTIES = tuple(
    f"{q}_{stat}"
    for q in ("lgm_tot", "lgm_fib", "sfr_tot", "sfr_fib", "specsfr_tot", "specsfr_fib", "oh")
    for stat in ("p2p5", "p16", "p50", "p84", "p97p5", "entropy")
)
_KMS_COLUMNS = ("velDisp", "velDispErr", "v_disp", "v_disp_err", "sigma_balmer", "sigma_balmer_err",
                "sigma_forbidden",
                "sigma_forbidden_err", "v_off_balmer", "v_off_balmer_err", "v_off_forbidden",
                "v_off_forbidden_err", "sigmaStars", "sigmaStarsErr")

#: Canonical CAS spellings; a column whose lower-cased name matches one of these
#: is renamed to it (``SPECOBJID``, ``specobjid`` → ``specObjID``; ``H_ALPHA_FLUX``
#: → ``h_alpha_flux``; ``Z`` → ``z``).
_CANONICAL = (
    *ID_COLUMNS, "ra", "dec", "z", "zErr", "zWarning", "class", "subClass", "plate", "mjd",
    "fiberID", "velDisp", "velDispErr", "rChi2", "legacy_target1", "sciencePrimary",
    "bptclass", "reliable", "sn_median", "d4000", "d4000_err", "d4000_n", "d4000_n_err",
    *(f"{p}_{b}" for p in _MAG_PREFIXES for b in BANDS),
    *(f"petroR{k}_{b}" for k in (50, 90) for b in BANDS),
    *_MPA_PROPERTIES,
    *(f"{line}_{s}" for line in _MPA_LINES for s in _LINE_SUFFIXES),
    *_KMS_COLUMNS,
)
_CANONICAL_BY_LOWER = {name.lower(): name for name in _CANONICAL}

#: Float columns where -99 and -999 are sentinels too; elsewhere only -9999 is
#: (a velocity offset of -99 km/s is a real value).
_MEASUREMENTS = frozenset(
    {"z", "zErr", "velDisp", "velDispErr", "v_disp", "v_disp_err", *(f"{p}_{b}" for p in _MAG_PREFIXES for b in BANDS),
     *(f"petroR{k}_{b}" for k in (50, 90) for b in BANDS), *_MPA_PROPERTIES,
     *(f"{line}_{s}" for line in _MPA_LINES for s in ("flux", "flux_err")), "log_mbh"}
)
_SENTINELS = (-9999.0, -999.0, -99.0)
_OH_SENTINELS = (-99.9,)  # seen in some MPA-JHU metallicity releases


# ======================================================================================
# SQL
# ======================================================================================

def _select_alias(expr: str) -> str:
    """Output name of a select-list expression (``... AS name`` or ``t.name``)."""
    match = re.search(r"\bAS\s+\[?(\w+)\]?\s*$", expr, flags=re.IGNORECASE)
    if match:
        return match.group(1)
    return expr.strip().split(".")[-1].strip("[] ")


def _check_count(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def build_query(
    n: int | None = None,
    *,
    z_min: float = Z_MIN,
    z_max: float = 0.3,
    r_max: float | None = 17.77,
    top: int | None = None,
    after: int | None = None,
    page_key: str = "specObjID",
    columns: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    target_bits: int | None = MGS_TARGET_BITS,
    dereddened: bool = True,
    reliable_only: bool = True,
) -> str:
    """SkyServer SQL selecting the seed paper's SDSS Main Galaxy Sample.

    SpecObj (science-primary spectra) is joined with PhotoObj on
    ``bestObjID = objID`` and with the MPA-JHU tables galSpecInfo, galSpecExtra
    and galSpecLine on ``specObjID``. Rows are ordered by ``page_key`` so that
    pages can be fetched by *keyset paging*: each page asks for the rows whose
    key is greater than the last key of the previous page (``after``), which
    SkyServer answers quickly from its index, unlike ``OFFSET``.

    Parameters
    ----------
    n, top : int, optional
        Maximum number of rows (SQL ``TOP``); ``top`` is a synonym of ``n``.
        `None` selects every matching row.
    z_min, z_max : float, optional
        Redshift range ``z_min < z <= z_max`` (default ``0.01 < z <= 0.3``,
        :data:`Z_MIN`: below ``z ~ 0.01`` peculiar velocities of a few hundred
        km/s make the redshift a poor distance). Pass ``z_min=0`` to drop it.
    r_max : float or None, optional
        Petrosian r-band limit of the Main Galaxy Sample (17.77). `None` drops
        the cut (the target bits alone still select the MGS).
    after : int, optional
        Only rows whose ``page_key`` is greater than this value (keyset paging).
    page_key : {"specObjID", "objID"}, optional
        Column the rows are ordered and paged by. ``specObjID`` (default) is the
        primary key of the joined result, so keyset paging on it can neither skip
        nor repeat a row; ``objID`` is unique only while no two science-primary
        spectra share a photometric object.
    columns : sequence of str, optional
        Select-list expressions replacing :data:`DEFAULT_COLUMNS` (e.g.
        ``"p.petroMag_g AS petroMag_g"``). The paging key is added if missing.
    extra_columns : sequence of str, optional
        Expressions appended to the select list.
    target_bits : int or None, optional
        Required ``legacy_target1`` bits (any of them), default
        :data:`MGS_TARGET_BITS`; `None` drops the target cut.
    dereddened : bool, optional
        Apply ``r_max`` to the extinction-corrected Petrosian magnitude
        ``petroMag_r - extinction_r``, as the MGS target selection did (Strauss
        et al. 2002); `False` cuts on ``petroMag_r``.
    reliable_only : bool, optional
        Keep only rows with galSpecInfo ``reliable = 1`` (default). `False`
        keeps them all; the flag is selected either way, so it can be applied later.

    Returns
    -------
    sql : str

    Raises
    ------
    ValueError
        For inconsistent or invalid options.

    Examples
    --------
    >>> from astro_galpost.datasets.sdss import build_query
    >>> sql = build_query(1000, after=1234)
    >>> print(sql.splitlines()[0])
    SELECT TOP 1000
    >>> "AND s.specObjID > 1234" in sql
    True
    """
    n = _check_count(n, "n")
    top = _check_count(top, "top")
    if n is not None and top is not None and n != top:
        raise ValueError(f"n={n} and top={top} disagree: give only one of them")
    limit = n if n is not None else top
    if page_key not in _PAGE_KEYS:
        raise ValueError(f"page_key must be one of {sorted(_PAGE_KEYS)}, got {page_key!r}")
    for name, value in (("z_min", z_min), ("z_max", z_max)):
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be finite, got {value!r}")
    if not float(z_min) < float(z_max):
        raise ValueError(f"z_min ({z_min}) must be below z_max ({z_max})")
    if r_max is not None and not math.isfinite(float(r_max)):
        raise ValueError(f"r_max must be finite or None, got {r_max!r}")

    select = list(DEFAULT_COLUMNS if columns is None else columns) + list(extra_columns)
    if not select:
        raise ValueError("no columns to select")
    for expr in select:
        # select expressions are pasted into SQL: refuse statement separators
        if ";" in expr or "--" in expr:
            raise ValueError(f"invalid select expression {expr!r}")
    aliases = [_select_alias(expr) for expr in select]
    duplicates = sorted({a for a in aliases if aliases.count(a) > 1})
    if duplicates:
        raise ValueError(f"duplicate output column name(s): {', '.join(duplicates)}")
    key_expr = _PAGE_KEYS[page_key]
    if page_key not in aliases:
        select.insert(0, key_expr)

    where = ["s.class = 'GALAXY'", "s.zWarning = 0",
             f"s.z > {float(z_min)!r}", f"s.z <= {float(z_max)!r}"]
    if target_bits is not None:
        bits = int(target_bits)
        if bits <= 0:
            raise ValueError(f"target_bits must be a positive bit mask, got {target_bits!r}")
        spelled = " | ".join(str(1 << k) for k in range(bits.bit_length()) if bits >> k & 1)
        where.append(f"(s.legacy_target1 & ({spelled})) > 0")
    if r_max is not None:
        mag = "p.petroMag_r - p.extinction_r" if dereddened else "p.petroMag_r"
        where.append(f"{mag} < {float(r_max)!r}")
    if reliable_only:
        where.append("i.reliable = 1")
    if after is not None:
        if isinstance(after, bool) or int(after) != after or int(after) < 0:
            raise ValueError(f"after must be a non-negative integer key, got {after!r}")
        where.append(f"{key_expr} > {int(after)}")

    lines = ["SELECT TOP " + str(limit) if limit is not None else "SELECT"]
    lines.append(",\n".join("    " + expr for expr in select))
    lines += [
        "FROM SpecObj AS s",
        "    JOIN PhotoObj AS p ON p.objID = s.bestObjID",
        "    JOIN galSpecInfo AS i ON i.specObjID = s.specObjID",
        "    JOIN galSpecExtra AS e ON e.specObjID = s.specObjID",
        "    JOIN galSpecLine AS l ON l.specObjID = s.specObjID",
        "WHERE " + "\n    AND ".join(where),
        f"ORDER BY {key_expr}",
    ]
    return "\n".join(lines)


# ======================================================================================
# fetching
# ======================================================================================

def _sleep(seconds: float) -> None:
    """Indirection so tests can skip real waiting."""
    time.sleep(seconds)


def _skyserver_query(sql: str, data_release: int, *, timeout: float = 600.0) -> Table | None:
    """Run ``sql`` on SkyServer through `astroquery.sdss.SDSS` (no astroquery cache).

    The cache is off because :func:`fetch_catalog` keeps its own copy of every page.
    """
    from astroquery.sdss import SDSS

    with warnings.catch_warnings():
        # astroquery reads IDs above 2**63 as text, then converts them to uint64
        # itself: the parser's overflow warning is expected on every page
        warnings.filterwarnings("ignore", message=r".*OverflowError converting to IntType",
                                category=AstropyWarning)
        return SDSS.query_sql(_compact_sql(sql), data_release=data_release, timeout=timeout,
                              cache=False)


def _compact_sql(sql: str) -> str:
    """Collapse whitespace outside string literals: SkyServer's SQL search is a GET
    request, and web servers cap the length of a query string (IIS: 2 kB by default).
    """
    parts = sql.split("'")
    parts[::2] = [re.sub(r"\s+", " ", part) for part in parts[::2]]
    return "'".join(parts).strip()


_TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504, 509, 520, 521, 522, 524})
_TRANSIENT_WORDS = ("too many requests", "timeout", "timed out", "temporarily unavailable",
                    "service unavailable", "server busy", "try again", "connection reset",
                    "connection aborted", "bad gateway", "gateway time")


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "code", None)  # urllib.error.HTTPError
    try:
        return int(status) if status is not None else None
    except (TypeError, ValueError):
        return None


def _is_transient(exc: BaseException) -> bool:
    """Whether a failed query is worth retrying (network trouble, overload, 5xx)."""
    status = _http_status(exc)
    if status is not None:
        return status in _TRANSIENT_STATUS or status >= 500
    try:
        import requests
    except ImportError:  # pragma: no cover - astroquery depends on requests
        requests = None
    if requests is not None and isinstance(exc, requests.RequestException):
        return isinstance(exc, (requests.ConnectionError, requests.Timeout,
                                requests.exceptions.ChunkedEncodingError,
                                requests.exceptions.ContentDecodingError))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    import http.client
    import urllib.error

    if isinstance(exc, (urllib.error.URLError, http.client.HTTPException)):
        return True
    message = str(exc).lower()
    return any(word in message for word in _TRANSIENT_WORDS)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds asked for by a ``Retry-After`` header, if the error carries one."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _query_with_retries(query: Callable[[], Table | None], *, retries: int, backoff: float,
                        max_backoff: float, jitter: float, what: str) -> Table | None:
    """Call ``query`` with exponential backoff on transient errors."""
    attempt = 0
    while True:
        try:
            return query()
        except Exception as exc:  # noqa: BLE001 - classified below, re-raised otherwise
            if attempt >= retries or not _is_transient(exc):
                raise
            delay = min(max_backoff, backoff * 2.0 ** attempt)
            asked = _retry_after(exc)
            if asked is not None:
                delay = max(delay, asked)  # the server's wish wins over our schedule
            if jitter:
                delay *= 1.0 + random.uniform(0.0, jitter)  # spread clients out
            warnings.warn(f"{what} failed ({type(exc).__name__}: {exc}); retry "
                          f"{attempt + 1}/{retries} in {delay:.1f} s", AstropyUserWarning,
                          stacklevel=3)
            _sleep(delay)
            attempt += 1


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a synced temporary file in the same folder renamed into place (`write_atomic`).

    A reader (or a resumed run) therefore sees either no file or a complete one,
    whatever happens during the write.
    """
    write_atomic(path, write, overwrite=True, suffix=_PART_SUFFIX)


def _write_table(table: Table, path: Path, fmt: str) -> None:
    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # e.g. unit strings in FITS
            table.write(tmp, format=fmt, overwrite=True)

    _atomic_write(path, write)


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = json.dumps(manifest, indent=1)

    def write(tmp: Path) -> None:
        tmp.write_text(text + "\n", encoding="utf-8")

    _atomic_write(path, write)


def _to_uint64(col: Any, name: str = "") -> MaskedColumn | Column:
    """Convert an ID column (str, signed/unsigned int or float) to uint64."""
    mask = np.ma.getmaskarray(col) if hasattr(col, "mask") else None
    data = np.ma.getdata(col)
    kind = data.dtype.kind
    if kind == "u":
        values = data.astype(np.uint64)
    elif kind == "i":
        # IDs above 2**63 saved in signed 64-bit columns come back negative:
        # the cast re-reads the same bits as unsigned, which restores them
        values = data.astype(np.int64).astype(np.uint64)
    elif kind in "USO":
        values = np.zeros(len(data), dtype=np.uint64)
        bad = np.zeros(len(data), dtype=bool) if mask is None else mask.copy()
        for k, text in enumerate(data):
            if bad[k]:
                continue
            text = text.decode() if isinstance(text, bytes) else str(text)
            text = text.strip()
            if not text or text.lower() in ("null", "nan", "none"):
                bad[k] = True
                continue
            try:
                values[k] = int(text) % 2**64  # a negative text ID is a wrapped one
            except ValueError:
                number = float(text)  # float notation: precision already lost
                values[k] = int(number)
                _warn_float_ids(name)
        mask = bad if bad.any() else mask
    elif kind == "f":
        _warn_float_ids(name)
        finite = np.isfinite(data)
        values = np.where(finite, data, 0).astype(np.uint64)
        mask = ~finite if mask is None else (mask | ~finite)
    else:
        raise TypeError(f"ID column {name!r} has unsupported dtype {data.dtype}")
    info = {"name": getattr(col, "name", name), "description": getattr(col, "description", None)}
    if mask is not None and mask.any():
        return MaskedColumn(values, mask=mask, **info)
    return Column(values, **info)


def _warn_float_ids(name: str) -> None:
    warnings.warn(f"ID column {name!r} was stored as floating point: IDs above 2**53 lost "
                  "precision and must not be used to join tables", AstropyUserWarning,
                  stacklevel=4)


def _page_table(result: Table | None, page_key: str) -> Table:
    """Check a page returned by the query function and make its key column uint64."""
    if result is None:
        return Table()
    table = Table(result, copy=False)
    if len(table) == 0:
        return table
    names = {name.lower(): name for name in table.colnames}
    if page_key.lower() not in names:
        raise ValueError(f"query result has no {page_key!r} column to page by "
                         f"(columns: {', '.join(table.colnames)})")
    if names[page_key.lower()] != page_key:
        table.rename_column(names[page_key.lower()], page_key)
    for name in ID_COLUMNS:
        if name in table.colnames:
            table[name] = _to_uint64(table[name], name)
    if np.ma.getmaskarray(table[page_key]).any():
        raise ValueError(f"query result has rows without {page_key}")
    keys = np.asarray(table[page_key])
    if np.any(keys[1:] <= keys[:-1]):
        # SkyServer honours ORDER BY; a custom transport might not: sort to keep
        # the "last key" of the page meaningful
        table.sort(page_key)
        keys = np.asarray(table[page_key])
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError(f"{page_key} is not unique in the query result; page by "
                             "specObjID instead")
    return table


def _read_page(path: Path) -> Table:
    """Read a page file in the format its suffix names (runs may differ in format)."""
    return Table.read(path, format=_PAGE_FORMATS[path.suffix.lstrip(".")])


def _signature(data_release: int, page_key: str, query_options: dict[str, Any]) -> dict:
    """What must not change between runs sharing one download folder."""
    return {"data_release": int(data_release), "page_key": page_key,
            "query": build_query(page_key=page_key, **query_options)}


def _clean_partial_files(*folders: Path, min_age: float = 0.0) -> None:
    """Remove temporary files left by a process killed mid-write (they are ours).

    With ``min_age`` only those not modified for that many seconds go.
    """
    limit = time.time() - min_age
    for folder in folders:
        if folder.is_dir():
            for stale in folder.glob(f".*{_PART_SUFFIX}"):
                try:
                    if min_age <= 0 or stale.stat().st_mtime < limit:
                        stale.unlink(missing_ok=True)
                except FileNotFoundError:  # its writer finished meanwhile
                    pass


def fetch_catalog(
    out_dir: str | os.PathLike,
    n: int | None = 250_000,
    *,
    page_size: int = 50_000,
    data_release: int = 17,
    retries: int = 4,
    backoff: float = 5.0,
    max_backoff: float = 300.0,
    jitter: float = 0.1,
    pause: float = 1.0,
    timeout: float = 600.0,
    progress: bool = True,
    query_func: Callable[[str, int], Table | None] | None = None,
    page_key: str = "specObjID",
    page_format: str = "ecsv",
    **query_options: Any,
) -> Table:
    """Download the Main Galaxy Sample catalogue from SkyServer, resumably.

    The sample of :func:`build_query` is fetched in pages of ``page_size`` rows
    ordered by ``page_key``. Each page is written atomically to
    ``out_dir/pages/page-00001.ecsv`` … and recorded, with the last key fetched,
    in ``out_dir/manifest.json`` (also written atomically). A later call with the
    same ``out_dir`` reads that state and only asks SkyServer for the rows after
    the last recorded key: pages already on disk are never fetched again, and an
    interruption (network failure, Ctrl-C, a killed process) loses at most the
    page being downloaded. The pages are finally concatenated into
    ``out_dir/sdss_catalog.fits`` (raw CAS columns, written atomically), which
    is returned normalised by :func:`read_catalog`.

    Parameters
    ----------
    out_dir : path-like
        Download folder (created if needed). Reuse it to resume.
    n : int or None, optional
        Number of galaxies wanted (default 250,000, the seed paper's sample);
        `None` fetches every matching galaxy.
    page_size : int, optional
        Rows per SkyServer request (default 50,000: below SkyServer's row limit
        and its query time-out for this query).
    data_release : int, optional
        SDSS data release (default 17).
    retries : int, optional
        Retries per page after transient failures (connection errors,
        time-outs, HTTP 429 and 5xx); other errors (e.g. an SQL error) are raised
        at once. Default 4.
    backoff, max_backoff : float, optional
        The k-th retry waits ``min(max_backoff, backoff * 2**k)`` seconds, or longer
        if the server sends ``Retry-After``.
    jitter : float, optional
        Waits are stretched by a random fraction up to ``jitter`` so that
        parallel clients do not retry in step.
    pause : float, optional
        Seconds to wait between successful pages, to be polite to SkyServer.
    timeout : float, optional
        Seconds allowed for each SkyServer request (default query function only).
    progress : bool, optional
        Show a `tqdm` progress bar.
    query_func : callable, optional
        ``query_func(sql, data_release) -> Table or None`` replacing the default
        `astroquery.sdss.SDSS.query_sql` transport (e.g. for CasJobs).
    page_key : {"specObjID", "objID"}, optional
        Keyset-paging column, see :func:`build_query`.
    page_format : {"ecsv", "fits"}, optional
        File format of the pages.
    **query_options
        Passed to :func:`build_query` (``z_max``, ``r_max``, ``columns``,
        ``extra_columns``, ``reliable_only`` …).

    Returns
    -------
    catalog : `~astropy.table.Table`
        At most ``n`` galaxies, ordered by ``page_key``, as :func:`read_catalog`
        returns them.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a download of a different query (other options,
        data release or paging key), or a recorded page is missing, or the query
        selected nothing.
    Exception
        The last error of a page whose retries ran out; everything fetched
        before it stays on disk and the next call resumes from there.

    Notes
    -----
    Two processes must not share one ``out_dir`` at the same time.

    Examples
    --------
    >>> from astro_galpost.datasets.sdss import fetch_catalog
    >>> catalog = fetch_catalog("sdss_mgs", n=1000, page_size=500)  # doctest: +REMOTE_DATA +SKIP
    """
    page_size = _check_count(page_size, "page_size")
    n = _check_count(n, "n")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    if page_format not in _PAGE_FORMATS:
        raise ValueError(f"page_format must be one of {sorted(_PAGE_FORMATS)}, got {page_format!r}")
    for bad in ("n", "top", "after", "page_key"):
        if bad in query_options:
            raise TypeError(f"fetch_catalog() sets {bad!r} of the query itself")

    out = Path(out_dir)
    pages_dir = out / "pages"
    pages_dir.mkdir(parents=True, exist_ok=True)
    _clean_partial_files(out, pages_dir)
    manifest_path = out / MANIFEST_FILENAME
    signature = _signature(data_release, page_key, query_options)  # validates the options

    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("version") != _MANIFEST_VERSION:
            raise ValueError(f"{manifest_path} was written by an incompatible version")
        changed = [k for k, v in signature.items() if manifest.get(k) != v]
        if changed:
            raise ValueError(
                f"{out} holds a download of a different query ({', '.join(changed)} "
                "differ); use another out_dir or delete this one")
        for page in manifest["pages"]:
            if not (out / page["file"]).is_file():
                raise ValueError(f"page {page['file']} recorded in {manifest_path} is missing; "
                                 "restore it or delete the folder to start again")
    else:
        if any(pages_dir.glob("page-*")):
            raise ValueError(f"{pages_dir} holds pages but {manifest_path} is missing, so "
                             "they cannot be trusted; delete them or use another out_dir")
        manifest = {"version": _MANIFEST_VERSION, **signature, "pages": [], "last_key": None,
                    "rows": 0, "exhausted": False}
        _write_manifest(manifest_path, manifest)

    if query_func is None:
        def query_func(sql: str, release: int) -> Table | None:
            return _skyserver_query(sql, release, timeout=timeout)

    fmt = _PAGE_FORMATS[page_format]
    from tqdm.auto import tqdm

    with tqdm(total=n, initial=min(manifest["rows"], n or manifest["rows"]), unit="gal",
              desc="SDSS MGS", disable=not progress, dynamic_ncols=True) as bar:
        while not manifest["exhausted"] and (n is None or manifest["rows"] < n):
            index = len(manifest["pages"]) + 1
            name = f"page-{index:05d}.{page_format}"
            path = pages_dir / name
            if path.is_file():
                # written by a run that stopped before recording it: the file is
                # complete (atomic write) and continues the recorded pages
                table = _page_table(_read_page(path), page_key)
                if len(table) and manifest["last_key"] is not None \
                        and int(table[page_key][0]) <= manifest["last_key"]:
                    raise ValueError(f"{path} does not follow the recorded pages; delete it")
            else:
                want = page_size if n is None else min(page_size, n - manifest["rows"])
                sql = build_query(want, after=manifest["last_key"], page_key=page_key,
                                  **query_options)
                if manifest["pages"] and pause > 0:
                    _sleep(pause)
                result = _query_with_retries(
                    lambda: query_func(sql, data_release), retries=retries, backoff=backoff,
                    max_backoff=max_backoff, jitter=jitter, what=f"SkyServer page {index}")
                table = _page_table(result, page_key)
                if len(table) < want:
                    manifest["exhausted"] = True  # SkyServer has no more rows
                if len(table):
                    _write_table(table, path, fmt)
            if len(table) == 0:
                manifest["exhausted"] = True
                _write_manifest(manifest_path, manifest)
                break
            keys = np.asarray(table[page_key])
            manifest["pages"].append({"file": f"pages/{name}", "rows": len(table),
                                      "first_key": int(keys[0]), "last_key": int(keys[-1])})
            manifest["last_key"] = int(keys[-1])
            manifest["rows"] += len(table)
            _write_manifest(manifest_path, manifest)
            bar.update(len(table) if n is None else min(len(table), n - bar.n))

    if not manifest["pages"]:
        raise ValueError("the SkyServer query selected no galaxies")
    pages = [_page_table(_read_page(out / page["file"]), page_key)
             for page in manifest["pages"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # metadata conflicts between pages
        catalog = vstack(pages, join_type="outer", metadata_conflicts="silent")
    if n is not None and len(catalog) > n:
        catalog = catalog[:n]
    catalog.meta.update({"DR": int(data_release), "SOURCE": "SDSS SkyServer",
                         "PAGEKEY": page_key})
    final = out / CATALOG_FILENAME
    _write_table(catalog, final, "fits")
    return read_catalog(final)


# ======================================================================================
# reading
# ======================================================================================

_FORMATS_BY_SUFFIX = {
    ".csv": "csv", ".fits": "fits", ".fit": "fits", ".fts": "fits", ".fz": "fits",
    ".ecsv": "ascii.ecsv", ".parquet": "parquet", ".pq": "parquet", ".hdf5": "hdf5",
    ".h5": "hdf5", ".vot": "votable", ".xml": "votable",
}


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz"):
        suffixes = suffixes[:-1]
    return _FORMATS_BY_SUFFIX.get(suffixes[-1]) if suffixes else None


def _read_skyserver_csv(path: Path) -> Table:
    """Read a SkyServer CSV export, possibly preceded by ``#Table1`` lines."""
    from astropy.utils.data import get_readable_fileobj

    with get_readable_fileobj(str(path), encoding="utf-8") as handle:
        text = handle.read()
    lines = text.splitlines()
    start = 0
    while start < len(lines) and (lines[start].startswith("#") or not lines[start].strip()):
        start += 1  # SkyServer writes "#Table1" before the header
    if start < len(lines):
        lines[start] = _dedupe_header(lines[start], path)
    body = "\n".join(lines[start:])
    if not body.strip():
        raise ValueError(f"{path}: no table in the file")
    head = body.lstrip()[:200].lower()
    if head.startswith("<") or "error_message" in head:
        raise ValueError(f"{path}: not a CSV table (an HTML page or a SkyServer error?)")
    with warnings.catch_warnings():
        # IDs above 2**63 overflow int64 and come back as strings: expected,
        # they are converted to uint64 below
        warnings.filterwarnings("ignore", message=r".*OverflowError converting to IntType",
                                category=AstropyWarning)
        # the trailing newline keeps a header-only body from being taken as a file name
        return Table.read(body + "\n", format="ascii.csv",
                          fill_values=[("", "0"), ("null", "0"), ("NULL", "0")])


def _dedupe_header(header: str, path: Any) -> str:
    """Resolve a CSV header that names a column twice, or refuse it.

    The one duplicate CAS produces is ``z``: ``SELECT s.z, p.u, p.g, p.r, p.i,
    p.z`` gives ``z,u,g,r,i,z``, the redshift and the z-band magnitude. The
    ``z`` that closes a ``u,g,r,i,z`` run is the magnitude (it becomes
    ``modelMag_z`` with the other shorthand bands); any other duplicate is an error.
    """
    import csv

    names = next(csv.reader([header]))
    stripped = [n.strip() for n in names]
    duplicates = sorted({n for n in stripped if stripped.count(n) > 1})
    if not duplicates:
        return header
    positions = [k for k, n in enumerate(stripped) if n == "z"]
    run = [k for k in positions if k >= 4 and stripped[k - 4:k] == list(BANDS[:4])]
    if duplicates != ["z"] or len(positions) != 2 or len(run) != 1:
        raise ValueError(
            f"{path}: the header names column(s) {', '.join(map(repr, duplicates))} more than once "
            f"(positions {[k + 1 for k, n in enumerate(stripped) if n in duplicates]}); which is which cannot be "
            "told from the header: alias them in the SQL select (e.g. 's.z AS redshift')"
        )
    for k in range(run[0] - 4, run[0] + 1):
        stripped[k] = f"modelMag_{stripped[k]}"
    return ",".join(stripped)


def _normalise_names(table: Table) -> None:
    """Rename columns to their CAS spelling where that is unambiguous."""
    names = table.colnames
    bare = [b for b in BANDS if b in names]
    if len(bare) == len(BANDS) and "z_1" in names:
        # astropy's name for a second "z" column: a redshift and a magnitude
        raise ValueError("the table has shorthand magnitudes u g r i z and also 'z_1' (a duplicated 'z' "
                         "header renamed by astropy): one is the redshift and one the z-band magnitude, "
                         "and which is which is lost; read the CSV file itself, or rename the columns")
    if len(bare) == len(BANDS):
        # SkyServer's PhotoObj shorthands: u, g, r, i, z are modelMag_u…modelMag_z
        # and err_u… their errors. Here "z" is a magnitude, not a redshift.
        for b in BANDS:
            if f"modelMag_{b}" not in names:
                table.rename_column(b, f"modelMag_{b}")
            if f"err_{b}" in table.colnames and f"modelMagErr_{b}" not in table.colnames:
                table.rename_column(f"err_{b}", f"modelMagErr_{b}")
        if "redshift" in table.colnames and "z" not in table.colnames:
            table.rename_column("redshift", "z")
    targets: dict[str, list[str]] = {}
    for name in table.colnames:
        canonical = _CANONICAL_BY_LOWER.get(name.lower())
        if canonical is not None:
            targets.setdefault(canonical, []).append(name)
    for canonical, found in targets.items():
        if canonical in found:
            others = [f for f in found if f != canonical]
            if others:
                warnings.warn(f"columns {', '.join(others)} left as they are: {canonical!r} "
                              "exists too", AstropyUserWarning, stacklevel=3)
            continue
        if len(found) > 1:
            warnings.warn(f"columns {', '.join(found)} all look like {canonical!r}; none "
                          "renamed", AstropyUserWarning, stacklevel=3)
            continue
        table.rename_column(found[0], canonical)


def _float_column(col: Any) -> MaskedColumn:
    data = np.ma.getdata(col)
    mask = np.ma.getmaskarray(col).copy()
    values = np.array(data, dtype=float)
    return MaskedColumn(values, mask=mask, name=col.info.name, unit=col.info.unit,
                        description=col.info.description)


def _mask_sentinels(table: Table) -> None:
    """Mask SDSS "not measured" values: sentinels, NaN, non-positive σ, failed line fits."""
    for name in table.colnames:
        col = table[name]
        if getattr(col, "ndim", 1) != 1 or name in ID_COLUMNS:
            continue
        kind = np.ma.getdata(col).dtype.kind
        if name in _MEASUREMENTS and kind in "iu":
            kind = "f"  # e.g. a page where a property is -9999 everywhere reads as int
        if kind != "f":
            continue
        col = _float_column(col)
        values = np.ma.getdata(col)
        bad = ~np.isfinite(values)
        sentinels = _SENTINELS if name in _MEASUREMENTS else _SENTINELS[:1]
        if name.startswith("oh_"):
            sentinels = sentinels + _OH_SENTINELS
        for sentinel in sentinels:
            bad |= values == sentinel
        col.mask |= bad
        table[name] = col
    # a velocity dispersion <= 0 means "not measured" (SDSS writes 0)
    for sigma, error in (("velDisp", "velDispErr"), ("v_disp", "v_disp_err")):
        if sigma not in table.colnames:
            continue
        bad = np.ma.filled(table[sigma] <= 0, True)
        for name in (sigma, error):
            if name in table.colnames:
                table[name].mask |= bad
        if error in table.colnames:
            table[error].mask |= np.ma.filled(table[error] <= 0, True)
    # MPA-JHU writes flux 0 and error <= 0 where a line was not fitted
    for name in table.colnames:
        if name.endswith("_flux") and f"{name}_err" in table.colnames:
            flux, err = table[name], table[f"{name}_err"]
            if any(np.ma.getdata(c).dtype.kind not in "fiu" for c in (flux, err)):
                continue
            flux, err = _float_column(flux), _float_column(err)
            bad = np.ma.filled(err <= 0, True)
            flux.mask |= bad
            err.mask |= bad
            table[name], table[f"{name}_err"] = flux, err


def _unit_for(name: str) -> u.UnitBase | None:
    from ..model.targets import LINE_FLUX_UNIT

    if name in ("ra", "dec"):
        return u.deg
    prefix, _, band = name.rpartition("_")
    if band in BANDS and prefix in _MAG_PREFIXES:
        return u.mag
    if band in BANDS and prefix in ("petroR50", "petroR90"):
        return u.arcsec
    if name in _KMS_COLUMNS:
        return u.km / u.s
    if re.fullmatch(r"[a-z0-9_]+_flux(_err)?", name):
        return LINE_FLUX_UNIT
    return None


def _attach_units(table: Table) -> None:
    for name in table.colnames:
        unit = _unit_for(name)
        col = table[name]
        if unit is None or np.ma.getdata(col).dtype.kind not in "fiu":
            continue
        if col.unit is not None:
            try:
                factor = u.Unit(col.unit).to(unit)
            except (u.UnitsError, ValueError, TypeError):
                continue  # someone else's unit: leave it to them
            if factor != 1.0:  # e.g. fluxes stored in erg/s/cm2
                data = np.ma.getdata(col).astype(float) * factor
                table[name] = MaskedColumn(data, mask=np.ma.getmaskarray(col), name=name,
                                           description=col.info.description)
            table[name].unit = unit
        else:
            col.unit = unit


def _not_utf8(path: Path, err: UnicodeDecodeError) -> TableFormatError:
    """A `TableFormatError` naming the file and the first line that is not UTF-8 text."""
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as bad:
                return TableFormatError(
                    f"{path}, line {number}: not UTF-8 text ({bad.reason} at byte {bad.start} of the line: "
                    f"{line[max(bad.start - 10, 0):bad.start + 10]!r}); a binary file, or text in another "
                    "encoding (re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8)")
    return TableFormatError(f"{path}: not UTF-8 text ({err.reason})")


def read_catalog(
    path_or_table: str | os.PathLike | Table,
    format: str | None = None,
    *,
    derive_mbh: bool = True,
) -> Table:
    """Read an SDSS galaxy catalogue into the package's normalised form.

    Accepted inputs: SkyServer CSV exports (with or without the ``#Table1``
    line SkyServer puts before the header), FITS, ECSV, Parquet or VOTable files
    with CAS column names (any letter case: ``SPECOBJID`` and ``H_ALPHA_FLUX``
    work, as in the MPA-JHU FITS files), astroML's ``SDSSspecgalsDR8`` table
    (``fetch_sdss_specgals``) and in-memory `~astropy.table.Table` objects.

    Normalisation:

    * columns renamed to their CAS spelling (``specobjid`` → ``specObjID``;
      ``Z`` → ``z`` only when no other column claims that name). A table with
      the SkyServer shorthand magnitudes ``u g r i z`` has them renamed
      ``modelMag_u`` … ``modelMag_z`` (there ``z`` is a magnitude) and its
      ``redshift`` column, if any, becomes ``z``;
    * ID columns (:data:`ID_COLUMNS`) become `numpy.uint64`: CSV IDs are parsed
      exactly, and IDs that overflowed into negative signed integers are restored;
    * SDSS "not measured" values are masked: -9999 everywhere, and -999 and -99
      in measurement columns, NaN, ``velDisp <= 0``, and line fluxes (with their
      errors) whose error is ``<= 0`` (no fit);
    * units: deg (``ra``, ``dec``), mag (magnitudes, extinctions), arcsec
      (Petrosian radii), km/s (``velDisp`` …), and
      `~astro_galpost.model.targets.LINE_FLUX_UNIT` (1e-17 erg/s/cm2) for line fluxes;
    * ``log_mbh`` from galSpecInfo ``v_disp`` (the DR7 measurement, consistent
      with the MPA-JHU labels) or else SpecObj ``velDisp`` with
      :func:`astro_galpost.physics.add_mbh_column` (McConnell & Ma 2013),
      masked where :func:`astro_galpost.physics.sigma_quality` finds σ
      unreliable (outside 70-420 km/s, median S/N < 10, error > 25%), with the
      reason in ``log_mbh_reason``.

    Columns such as the MPA-JHU ``lgm_tot_p50`` (log M*/Msun), ``sfr_tot_p50``
    (log SFR) and ``oh_p50`` (12 + log O/H) stay unitless logarithms, which is
    what :data:`astro_galpost.model.targets.TARGETS` reads.

    Parameters
    ----------
    path_or_table : path-like or `~astropy.table.Table`
        File to read, or a table (which is copied, never modified).
    format : str, optional
        Force a format: ``"csv"`` (SkyServer CSV) or any `astropy.table.Table.read`
        format. By default it follows the file suffix.
    derive_mbh : bool, optional
        Add ``log_mbh`` when the table has ``v_disp`` or ``velDisp`` and no ``log_mbh``.

    Returns
    -------
    catalog : `~astropy.table.Table`

    Notes
    -----
    A ``z`` column is taken to be what CAS means by it in SpecObj, the
    redshift. In PhotoObj-only exports without the other four shorthand bands,
    or in the ``Photoz`` table (photometric redshift), rename it first.

    Examples
    --------
    >>> from astropy.table import Table
    >>> from astro_galpost.datasets.sdss import read_catalog
    >>> raw = Table({"SPECOBJID": ["9223372036854775809"], "Z": [0.1],
    ...              "H_ALPHA_FLUX": [120.0], "H_ALPHA_FLUX_ERR": [-1.0]})
    >>> cat = read_catalog(raw)
    >>> cat.colnames
    ['specObjID', 'z', 'h_alpha_flux', 'h_alpha_flux_err']
    >>> int(cat["specObjID"][0]), bool(cat["h_alpha_flux"].mask[0])
    (9223372036854775809, True)
    """
    if isinstance(path_or_table, Table):
        table = Table(path_or_table, copy=True)
    else:
        path = Path(path_or_table)
        fmt = format or _format_of(path)
        try:
            if fmt in ("csv", "skyserver", "ascii.csv"):
                table = _read_skyserver_csv(path)
            else:
                table = Table.read(path, format=fmt) if fmt else Table.read(path)
        except UnicodeDecodeError as err:
            raise _not_utf8(path, err) from err
    _normalise_names(table)
    for name in ID_COLUMNS:
        if name in table.colnames:
            table[name] = _to_uint64(table[name], name)
    _mask_sentinels(table)
    _attach_units(table)
    sigma_column = next((c for c in ("v_disp", "velDisp") if c in table.colnames), None)
    if derive_mbh and sigma_column is not None and "log_mbh" not in table.colnames:
        from ..physics import add_mbh_column

        table = add_mbh_column(table, sigma_column=sigma_column, name="log_mbh")
    return table


def join_catalogs(
    left: str | os.PathLike | Table,
    right: str | os.PathLike | Table,
    key: str | Sequence[str] = "specObjID",
    join_type: str = "inner",
    **kwargs: Any,
) -> Table:
    """Join two SDSS catalogues on an ID column (default ``specObjID``).

    Both sides go through :func:`read_catalog` first, so IDs are compared as
    `numpy.uint64` whatever their storage (CSV text, signed FITS integers), and
    then `astropy.table.join` does the work; repeated IDs give every pairing, as
    in SQL. Columns present on both sides other than the key get astropy's
    ``_1``/``_2`` suffixes (see ``table_names``/``uniq_col_name`` of
    `~astropy.table.join`, passed through ``kwargs``).

    Parameters
    ----------
    left, right : path-like or `~astropy.table.Table`
    key : str or sequence of str, optional
    join_type : {"inner", "left", "right", "outer"}, optional
    **kwargs
        Passed to `astropy.table.join`.

    Returns
    -------
    joined : `~astropy.table.Table`
    """
    tables = [read_catalog(side) for side in (left, right)]
    keys = [key] if isinstance(key, str) else list(key)
    for table in tables:
        for name in keys:
            if name not in table.colnames:
                raise KeyError(f"join key {name!r} missing (columns: {', '.join(table.colnames)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # meta merge conflicts
        return join(tables[0], tables[1], keys=keys, join_type=join_type, **kwargs)


# ======================================================================================
# command line
# ======================================================================================

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
        print(f"galpost fetch: {type(exc).__name__}: {exc}", file=sys.stderr)
        if Path(args.out, MANIFEST_FILENAME).exists() and not isinstance(exc, ValueError):
            print(f"pages fetched so far are kept in {args.out}; run the same command "
                  "again to resume", file=sys.stderr)
        return 1
    print(f"{len(catalog)} galaxies written to {Path(args.out) / CATALOG_FILENAME}")
    return 0


# ======================================================================================
# image cutouts
# ======================================================================================

#: Name of the manifest :func:`fetch_cutouts` writes in its output folder.
CUTOUTS_MANIFEST_FILENAME = "cutouts_manifest.ecsv"

#: Values of the ``status`` column of the cutout manifest: ``pending`` (not yet
#: processed), ``ok`` (cutout written), ``edge`` (cutout written, but part of it
#: falls off the frame: those pixels are NaN and masked), ``off_frame`` (the
#: position is not on the frame at all: no file) and ``failed`` (see ``error``;
#: retried by the next run).
CUTOUT_STATUSES = ("pending", "ok", "edge", "off_frame", "failed")

_CUTOUTS_VERSION = 1
_CUTOUT_FILED = frozenset({"ok", "edge"})
_FIELD_KEYS = ("run", "rerun", "camcol", "field")
_FRAMES_RERUN = 301  # every DR8+ calibrated frame is rerun 301
_CROSSID_CHUNK = 500
_MAX_ERROR_CHARS = 500
_CUTOUT_FLOATS = ("x_cutout", "y_cutout", "shift", "frac_masked")


def decode_objid(objid: int | np.integer | str) -> dict[str, int]:
    """Imaging run, rerun, camcol and field encoded in an SDSS photometric ``objID``.

    A PhotoObj ``objID`` packs, from the lowest bit: the object number (16
    bits), the field (12), the ``firstField`` flag (1), the camera column (3),
    the run (16), the rerun (11) and the sky version (4). The field of a
    primary object's ``objID`` (such as ``SpecObj.bestObjID``) is the field in
    which the object is primary, so its frames contain it.

    Parameters
    ----------
    objid : int or str
        The ``objID`` (a 64-bit integer; never a float, which loses the low bits).

    Returns
    -------
    fields : dict
        ``sky_version``, ``rerun``, ``run``, ``camcol``, ``first_field``,
        ``field`` and ``obj``.

    Raises
    ------
    ValueError
        If the value cannot be an SDSS ``objID`` (negative, above 2**63, camcol
        outside 1-6, run or field 0).

    Examples
    --------
    >>> from astro_galpost.datasets.sdss import decode_objid
    >>> f = decode_objid(1237666407922335897)
    >>> f["run"], f["rerun"], f["camcol"], f["field"]
    (4874, 301, 3, 677)
    """
    if isinstance(objid, bool | float | np.floating):
        raise ValueError(f"an objID must be an integer, got {objid!r}")
    value = int(objid)
    if value <= 0 or value >> 63:
        raise ValueError(f"{objid!r} is not an SDSS objID")
    fields = {
        "sky_version": (value >> 59) & 0xF,
        "rerun": (value >> 48) & 0x7FF,
        "run": (value >> 32) & 0xFFFF,
        "camcol": (value >> 29) & 0x7,
        "first_field": (value >> 28) & 0x1,
        "field": (value >> 16) & 0xFFF,
        "obj": value & 0xFFFF,
    }
    if not 1 <= fields["camcol"] <= 6 or fields["run"] == 0 or fields["field"] == 0:
        raise ValueError(f"{objid!r} is not an SDSS objID (decodes to run {fields['run']}, "
                         f"camcol {fields['camcol']}, field {fields['field']})")
    return fields


def _frame_name(band: str, key: tuple[int, int, int, int], compress: bool = True) -> str:
    """SDSS's own name of a calibrated frame: ``frame-g-002820-3-0122.fits.bz2``."""
    run, _rerun, camcol, field = key
    return f"frame-{band}-{run:06d}-{camcol}-{field:04d}.fits" + (".bz2" if compress else "")


def _get_sdss_frame(*, run: int, rerun: int, camcol: int, field: int, band: str,
                    data_release: int, timeout: float = 120.0) -> Any:
    """One calibrated frame through `astroquery.sdss.SDSS.get_images` (no astroquery cache).

    The field is passed as a one-row ``matches`` table, which makes astroquery
    download the frame directly instead of first asking SkyServer which fields
    exist. Its cache is off: :func:`fetch_cutouts` keeps its own copy.
    """
    from astroquery.sdss import SDSS

    matches = Table({"run": [run], "rerun": [rerun], "camcol": [camcol], "field": [field]})
    return SDSS.get_images(matches=matches, band=band, data_release=data_release,
                           timeout=timeout, cache=False, show_progress=False)


def _frame_hdulist(result: Any, what: str) -> Any:
    """The HDUList of a frame from whatever the transport returned; raises if there is none."""
    from astropy.io import fits

    if isinstance(result, list | tuple) and not isinstance(result, fits.HDUList):
        if len(result) > 1:
            warnings.warn(f"{len(result)} files returned for {what}; using the first",
                          AstropyUserWarning, stacklevel=3)
        result = result[0] if result else None
    if result is None:
        raise LookupError(f"SDSS returned no file for {what}")
    if isinstance(result, fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU):
        result = fits.HDUList([fits.PrimaryHDU(result.data, header=result.header)])
    if not isinstance(result, fits.HDUList):
        raise TypeError(f"{what}: expected a FITS HDUList, got {type(result).__name__}")
    _frame_image(result, what)
    return result


def _check_frame(hdu: Any, band: str, key: tuple[int, int, int, int], what: str) -> Any:
    """Refuse a frame whose header names another band, run or camcol (SDSS headers do)."""
    header = hdu.header
    expected = {"FILTER": band, "RUN": key[0], "CAMCOL": key[2]}
    for name, value in expected.items():
        found = header.get(name)
        if found is None:
            continue
        if str(found).strip().lower() != str(value).lower():
            raise ValueError(f"{what}: the file's header says {name} = {found!r}, "
                             f"not {value!r}")
    return hdu


def _frame_image(hdul: Any, what: str) -> Any:
    """The first 2-D image HDU of a frame file (HDU 0 for SDSS frames)."""
    for hdu in hdul:
        if hdu.is_image and hdu.data is not None and hdu.data.ndim == 2:
            return hdu
    raise ValueError(f"{what} holds no 2-D image")


def _read_frame_file(path: Path) -> Any:
    """Read a cached frame (plain or bzip2 FITS) fully into memory."""
    from astropy.io import fits

    data = path.read_bytes()
    if path.suffix == ".bz2":
        data = bz2.decompress(data)  # in one go: twice as fast as fits.open on the .bz2
    hdul = fits.HDUList.fromstring(data)
    _frame_image(hdul, str(path))
    return hdul


def _writable_copy(hdul: Any) -> Any:
    """The HDUs again, with data that astropy may write.

    A file parsed from bytes (``HDUList.fromstring``, which is what astroquery
    returns) has read-only arrays, and astropy refuses to write a table HDU whose
    data were loaded from such a buffer.
    """
    from astropy.io import fits

    hdus = []
    for hdu in hdul:
        data = hdu.data
        if data is not None and not data.flags.writeable:
            data = data.copy()
        hdus.append(type(hdu)(data=data, header=hdu.header.copy()))
    return fits.HDUList(hdus)


def _write_frame_file(hdul: Any, path: Path) -> None:
    """Write a frame atomically, bzip2-compressed when the name ends in ``.bz2``."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # e.g. non-standard SDSS keywords
        try:
            hdul.writeto(buffer, output_verify="silentfix")
        except ValueError as exc:
            if "read-only" not in str(exc):
                raise
            buffer = io.BytesIO()
            _writable_copy(hdul).writeto(buffer, output_verify="silentfix")
    data = buffer.getvalue()
    if path.suffix == ".bz2":
        data = bz2.compress(data, 9)  # SDSS's own compression: same size as their file

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    _atomic_write(path, write)


def _one_line(exc: BaseException, context: str = "") -> str:
    """An error as one short line for the manifest."""
    text = f"{type(exc).__name__}: {exc}"
    if context:
        text = f"{context}: {text}"
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def _find_column(table: Table, name: str) -> str | None:
    """The column called ``name`` in any letter case (exact spelling first)."""
    if name in table.colnames:
        return name
    matches = [c for c in table.colnames if c.lower() == name.lower()]
    return matches[0] if len(matches) == 1 else None


def _degrees(col: Any) -> np.ndarray:
    unit = getattr(col, "unit", None)
    values = np.ma.filled(np.ma.asarray(col, dtype=float), np.nan)
    if unit is not None and u.Unit(unit) != u.dimensionless_unscaled:
        values = (values * u.Unit(unit)).to_value(u.deg)
    return np.asarray(values, dtype=float)


def _int_or_none(value: Any) -> int | None:
    if value is None or value is np.ma.masked or np.ma.is_masked(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number) or number <= 0 or number != int(number):
        return None
    return int(number)


def _number(value: Any) -> float:
    """A float from a table cell, a Quantity or a numpy scalar."""
    return float(getattr(value, "value", value))


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)


def _new_record(key: str, ident: Any, ra: float, dec: float) -> dict[str, Any]:
    return {"key": key, "id": ident, "ra": ra, "dec": dec, "run": None, "rerun": None,
            "camcol": None, "field": None, "status": "pending", "error": "", "file": "",
            **{name: math.nan for name in _CUTOUT_FLOATS}, "centroid_failed": False}


def _int_list(col: Any) -> list[int | None]:
    """Positive whole numbers of a column as ints; None where masked, missing or invalid."""
    mask = np.ma.getmaskarray(col)
    try:
        values = np.asarray(np.ma.getdata(col), dtype=float)
    except (TypeError, ValueError):  # text with blanks: one by one
        return [None if m else _int_or_none(v) for v, m in zip(np.ma.getdata(col), mask)]
    with np.errstate(invalid="ignore"):
        good = ~mask & np.isfinite(values) & (values > 0) & (values == np.round(values))
    return [int(v) if g else None for v, g in zip(values.tolist(), good.tolist())]


def _input_records(table: Table, id_column: str) -> tuple[list[dict[str, Any]], bool]:
    """One record per catalogue row; and whether the IDs are integers."""
    id_name = _find_column(table, id_column)
    if id_name is None:
        raise ValueError(f"the catalogue has no {id_column!r} column to name the cutouts by "
                         f"(columns: {', '.join(table.colnames)}); pass id_column=")
    column = table[id_name]
    if np.ma.getmaskarray(column).any():
        raise ValueError(f"{id_name!r} is missing for some rows")
    integer_ids = id_name in ID_COLUMNS or np.ma.getdata(column).dtype.kind in "iu"
    if integer_ids:
        ids: list[Any] = np.asarray(_to_uint64(column, id_name)).tolist()
    else:
        ids = [str(v).strip() for v in np.ma.getdata(column)]
    keys = [str(v) for v in ids]
    if len(set(keys)) != len(keys):
        from collections import Counter

        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
        raise ValueError(f"{id_name!r} is not unique (e.g. {', '.join(repeated)})")

    ra_name, dec_name = _find_column(table, "ra"), _find_column(table, "dec")
    if ra_name is None or dec_name is None:
        raise ValueError("the catalogue needs 'ra' and 'dec' columns (degrees)")
    ra = _degrees(table[ra_name]).tolist()
    dec = _degrees(table[dec_name]).tolist()
    nothing: list[int | None] = [None] * len(table)
    given = {k: _int_list(table[name]) if (name := _find_column(table, k)) else nothing
             for k in _FIELD_KEYS}
    objid_name = _find_column(table, "objID")
    objids: list[int | None] = nothing
    if objid_name is not None:
        try:
            converted = _to_uint64(table[objid_name], objid_name)
        except (TypeError, ValueError):
            pass
        else:
            masked = np.ma.getmaskarray(converted).tolist()
            objids = [None if m else v for v, m in zip(np.asarray(converted).tolist(), masked)]

    records = []
    for row, key in enumerate(keys):
        rec = _new_record(key, ids[row], float(ra[row]), float(dec[row]))
        if all(given[k][row] is not None for k in ("run", "camcol", "field")):
            rec.update({k: given[k][row] for k in _FIELD_KEYS})
            rec["rerun"] = rec["rerun"] or _FRAMES_RERUN
        elif objids[row] is not None:
            # a PhotoObj objID names the field where the object is primary
            try:
                decoded = decode_objid(objids[row])
            except ValueError:
                pass
            else:
                rec.update({k: decoded[k] for k in ("run", "camcol", "field")})
                rec["rerun"] = decoded["rerun"] if decoded["sky_version"] >= 2 else _FRAMES_RERUN
        if not (math.isfinite(rec["ra"]) and math.isfinite(rec["dec"])
                and -90.0 <= rec["dec"] <= 90.0):
            rec.update(status="failed", error="no valid ra/dec")
        records.append(rec)
    return records, integer_ids


def _field_key(rec: dict[str, Any]) -> tuple[int, int, int, int] | None:
    if any(rec[k] is None for k in _FIELD_KEYS):
        return None
    return tuple(int(rec[k]) for k in _FIELD_KEYS)  # type: ignore[return-value]


def _signature_hash(signature: dict[str, Any]) -> str:
    text = json.dumps(signature, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _cutout_signature(size: Any, bands: tuple[str, ...], data_release: int,
                      options: dict[str, Any]) -> dict[str, Any]:
    """What must not change between runs sharing one cutout folder."""
    size_text = size.to_string() if isinstance(size, u.Quantity) else str(int(size))
    return {"size": size_text, "bands": ",".join(bands), "data_release": int(data_release),
            "cutout_options": {k: repr(v) for k, v in sorted(options.items())}}


def _manifest_table(records: list[dict[str, Any]], id_column: str, integer_ids: bool,
                    meta: dict[str, Any]) -> Table:
    table = Table(meta=dict(meta))
    table[id_column] = (np.array([r["id"] for r in records], dtype=np.uint64) if integer_ids
                        else np.array([str(r["id"]) for r in records], dtype=str))
    table["ra"] = np.array([r["ra"] for r in records], dtype=float) * u.deg
    table["dec"] = np.array([r["dec"] for r in records], dtype=float) * u.deg
    for name in _FIELD_KEYS:
        values = [r[name] for r in records]
        table[name] = MaskedColumn([0 if v is None else int(v) for v in values], dtype=np.int64,
                                   mask=[v is None for v in values])
    for name in ("status", "error", "file"):
        table[name] = np.array([str(r[name]) for r in records], dtype=str)
    for name in _CUTOUT_FLOATS:
        table[name] = np.array([r[name] for r in records], dtype=float)
    for name in ("x_cutout", "y_cutout", "shift"):
        table[name].unit = u.pix
    table["centroid_failed"] = np.array([bool(r["centroid_failed"]) for r in records], dtype=bool)
    return table


def _records_from_manifest(table: Table, id_column: str) -> dict[str, dict[str, Any]]:
    id_name = _find_column(table, id_column) or table.colnames[0]
    n = len(table)
    integer_ids = np.ma.getdata(table[id_name]).dtype.kind in "iu"
    ids = [int(v) if integer_ids else str(v) for v in np.ma.getdata(table[id_name]).tolist()]

    def texts(name: str) -> list[str]:
        if name not in table.colnames:
            return [""] * n
        col = table[name]
        mask = np.ma.getmaskarray(col).tolist()
        return ["" if m else str(v) for v, m in zip(np.ma.getdata(col).tolist(), mask)]

    def floats(name: str) -> list[float]:
        if name not in table.colnames:
            return [math.nan] * n
        return np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan).tolist()

    fields = {k: _int_list(table[k]) if k in table.colnames else [None] * n for k in _FIELD_KEYS}
    status, error, file = texts("status"), texts("error"), texts("file")
    numbers = {name: floats(name) for name in ("ra", "dec", *_CUTOUT_FLOATS)}
    centroid_failed = (np.ma.filled(table["centroid_failed"], False).astype(bool).tolist()
                       if "centroid_failed" in table.colnames else [False] * n)
    out = {}
    for row in range(n):
        rec = _new_record(str(ids[row]), ids[row], numbers["ra"][row], numbers["dec"][row])
        rec.update({k: fields[k][row] for k in _FIELD_KEYS})
        rec.update({name: numbers[name][row] for name in _CUTOUT_FLOATS})
        rec.update(status=status[row] if status[row] in CUTOUT_STATUSES else "pending",
                   error=error[row], file=file[row], centroid_failed=centroid_failed[row])
        out[rec["key"]] = rec
    return out


def _adopt_cutout(rec: dict[str, Any], out: Path, signature_hash: str) -> bool:
    """Take over a complete cutout file written by a run stopped before its manifest was."""
    from astropy.io import fits

    path = out / "cutouts" / f"{_safe_name(rec['key'])}.fits"
    if not path.is_file():
        return False
    try:
        header = fits.getheader(path)
    except (OSError, ValueError):
        return False
    if header.get("CUTSIG") != signature_hash or str(header.get("OBJID")) != rec["key"]:
        return False
    rec.update(status="edge" if header.get("EDGE") else "ok", error="",
               file=path.relative_to(out).as_posix(),
               x_cutout=float(header.get("X_CEN", math.nan)),
               y_cutout=float(header.get("Y_CEN", math.nan)),
               shift=float(header.get("SHIFT", math.nan)),
               frac_masked=float(header.get("FRACMASK", math.nan)),
               centroid_failed=bool(header.get("CENFAIL", False)))
    for name in _FIELD_KEYS:
        if rec[name] is None and name.upper() in header:
            rec[name] = int(header[name.upper()])
    return True


def _locate_fields(records: list[dict[str, Any]], *, data_release: int, radius: u.Quantity,
                   timeout: float, retry: dict[str, Any]) -> None:
    """Find the field of galaxies without one: nearest primary object via SkyServer CrossID."""
    from astropy.coordinates import SkyCoord
    from astroquery.sdss import SDSS

    for start in range(0, len(records), _CROSSID_CHUNK):
        chunk = records[start:start + _CROSSID_CHUNK]
        coords = SkyCoord([r["ra"] for r in chunk], [r["dec"] for r in chunk], unit="deg")
        try:
            result = _query_with_retries(
                lambda: SDSS.query_crossid(coords, radius=radius, data_release=data_release,
                                           photoobj_fields=["ra", "dec", *_FIELD_KEYS],
                                           timeout=timeout, cache=False),
                what=f"SkyServer cross-match of {len(chunk)} positions", **retry)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            message = _one_line(exc, "finding the SDSS field")
            for rec in chunk:
                rec.update(status="failed", error=message)
            continue
        found = Table() if result is None else Table(result)
        names = {k: _find_column(found, k) for k in ("ra", "dec", *_FIELD_KEYS)}
        if len(found) and None in (names["ra"], names["dec"], names["run"], names["camcol"],
                                   names["field"]):
            for rec in chunk:
                rec.update(status="failed", error="SkyServer cross-match returned no "
                                                  f"run/camcol/field (columns: {found.colnames})")
            continue
        if len(found):
            matched = SkyCoord(_degrees(found[names["ra"]]), _degrees(found[names["dec"]]),
                               unit="deg")
            index, separation, _ = coords.match_to_catalog_sky(matched)
        for k, rec in enumerate(chunk):
            if not len(found) or separation[k] > radius:
                rec.update(status="failed",
                           error=f"no SDSS photometric object within {radius} of the position")
                continue
            row = found[int(index[k])]
            for key, name in names.items():
                if key in _FIELD_KEYS:
                    rec[key] = _int_or_none(row[name]) if name else None
            rec["rerun"] = rec["rerun"] or _FRAMES_RERUN
            if _field_key(rec) is None:
                rec.update(status="failed", error="SkyServer cross-match gave an invalid field")


def _field_frames(key: tuple[int, int, int, int], bands: tuple[str, ...], cache_dir: Path, *,
                  fetch: Callable[..., Any], data_release: int, keep: bool, compress: bool,
                  retry: dict[str, Any]) -> dict[str, Any]:
    """Image HDU per band of one field: from the frame cache, else downloaded (and cached)."""
    run, rerun, camcol, field = key
    label = f"{run}/{camcol}/{field}"
    cached: dict[str, Path] = {}
    for band in bands:
        for compressed in (True, False):
            path = cache_dir / _frame_name(band, key, compressed)
            if path.is_file():
                cached[band] = path
                break
    frames: dict[str, Any] = {}
    if cached:
        with ThreadPoolExecutor(min(len(cached), 3)) as pool:  # bz2 releases the GIL
            futures = {b: pool.submit(_read_frame_file, p) for b, p in cached.items()}
        for band, future in futures.items():
            try:
                frames[band] = _check_frame(_frame_image(future.result(), str(cached[band])),
                                            band, key, str(cached[band]))
            except Exception as exc:  # noqa: BLE001 - a damaged cache file is fetched again
                warnings.warn(f"cached frame {cached[band]} is unreadable ({exc}); downloading "
                              "it again", AstropyUserWarning, stacklevel=3)
    for band in bands:
        if band in frames:
            continue
        what = f"frame {band} of field {label} (rerun {rerun})"
        hdul = _query_with_retries(
            lambda: _frame_hdulist(fetch(run=run, rerun=rerun, camcol=camcol, field=field,
                                         band=band, data_release=data_release), what),
            what=f"SDSS {what}", **retry)
        image = _check_frame(_frame_image(hdul, what), band, key, what)
        if keep:
            _write_frame_file(hdul, cache_dir / _frame_name(band, key, compress))
        frames[band] = image
    return frames


def _cutout_hdulist(cube: np.ndarray, mask: np.ndarray, info: Any, rec: dict[str, Any], *,
                    bands: tuple[str, ...], data_release: int, meta: dict[str, Any],
                    ref_header: Any, id_column: str, signature_hash: str) -> Any:
    """The cutout file of one galaxy: the cube (primary HDU) and its MASK extension."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    header = fits.Header()
    header["OBJID"] = (rec["id"], f"catalogue {id_column}")
    header["RA"] = (rec["ra"], "[deg] catalogue right ascension")
    header["DEC"] = (rec["dec"], "[deg] catalogue declination")
    header["RA_CEN"] = (_number(info["ra_centroid"]), "[deg] right ascension of the centre")
    header["DEC_CEN"] = (_number(info["dec_centroid"]), "[deg] declination of the centre")
    x_cut, y_cut = _number(info["x_cutout"]), _number(info["y_cutout"])
    header["X_CEN"] = (x_cut, "[pix] centre x in the cutout (0-based)")
    header["Y_CEN"] = (y_cut, "[pix] centre y in the cutout (0-based)")
    header["SHIFT"] = (_number(info["shift"]), "[pix] centroid - catalogue position")
    header["CENFAIL"] = (bool(info["centroid_failed"]), "centroid refinement failed")
    header["EDGE"] = (bool(info["edge"]), "part of the cutout is off the frame")
    header["FRACMASK"] = (_number(info["frac_masked"]), "fraction of masked pixels")
    header["BANDS"] = (",".join(bands), "bands of the cube planes")
    for k, band in enumerate(bands, start=1):
        header[f"BAND{k}"] = (band, f"band of plane {k}")
    for band in bands:
        header[f"BKG_{band.upper()}"] = (_number(info[f"bkg_{band}"]),
                                         f"median residual sky removed, {band}")
    header["REFBAND"] = (meta.get("reference_band", bands[0]), "band whose pixel grid is used")
    header["PIXSCALE"] = (float(meta.get("pixel_scale_arcsec", math.nan)), "[arcsec/pix]")
    header["RESAMPLE"] = (str(meta.get("resample", ""))[:60], "other bands resampled by")
    for name in _FIELD_KEYS:
        header[name.upper()] = (int(rec[name]), f"SDSS imaging {name}")
    header["DR"] = (int(data_release), "SDSS data release")
    header["CUTSIG"] = (signature_hash, "fetch_cutouts options hash")
    header["ORIGIN"] = "astro_galpost.datasets.sdss.fetch_cutouts"
    # the cutout's world coordinates: the reference frame's WCS moved to the cutout origin
    x0 = int(round(_number(info["x_centroid"]) - x_cut))
    y0 = int(round(_number(info["y_centroid"]) - y_cut))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(ref_header).celestial
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        header.extend(wcs.to_header(relax=False), update=True)
    unit = meta.get("unit")
    header["BUNIT"] = "nanomaggy" if unit in ("nmgy", "nanomaggy", "nanomaggies") else (unit or "")
    primary = fits.PrimaryHDU(np.asarray(cube, dtype=np.float32), header=header)
    mask_hdu = fits.ImageHDU(np.asarray(mask, dtype=np.uint8), name="MASK")
    mask_hdu.header["COMMENT"] = "1 where the pixel has no data (off the frame or masked)"
    return fits.HDUList([primary, mask_hdu])


def _write_cutout_file(hdul: Any, path: Path) -> None:
    def write(tmp: Path) -> None:
        hdul.writeto(tmp, overwrite=True)

    _atomic_write(path, write)


def fetch_cutouts(
    table: Table | str | os.PathLike,
    out_dir: str | os.PathLike,
    size: int | u.Quantity = 64,
    bands: Sequence[str] | str = ("g", "r", "i"),
    *,
    data_release: int = 17,
    retries: int = 4,
    backoff: float = 5.0,
    max_backoff: float = 120.0,
    jitter: float = 0.1,
    timeout: float = 120.0,
    progress: bool = True,
    frame_cache: str | os.PathLike | None = None,
    keep_frames: bool = True,
    compress_frames: bool = True,
    get_frames: Callable[..., Any] | None = None,
    id_column: str = "objID",
    retry_failed: bool = True,
    checkpoint_interval: float = 0.0,
    match_radius: u.Quantity = 2.0 * u.arcsec,
    **cutout_options: Any,
) -> Table:
    """Download SDSS frames and write one aligned multi-band cutout per galaxy, resumably.

    For every galaxy of ``table`` the calibrated SDSS frames
    (``frame-<band>-RUN-CAMCOL-FIELD.fits.bz2``, nanomaggies) of its imaging
    field are fetched through `astroquery.sdss.SDSS.get_images`, and
    :func:`astro_galpost.images.make_cutouts` cuts a centroid-refined,
    sky-subtracted stamp with every band resampled onto the reference band's
    pixel grid. Galaxies are grouped by field, so each frame is downloaded once
    however many galaxies it holds, and frames are kept (atomically written) in
    ``out_dir/frames/`` where later runs find them.

    Each galaxy gets ``out_dir/cutouts/<id>.fits``: a float32 ``(n_bands, S, S)``
    cube in nanomaggies (NaN where there is no data) in the primary HDU, whose
    header holds ``OBJID``, ``RA``/``DEC`` (catalogue), ``RA_CEN``/``DEC_CEN``
    and ``X_CEN``/``Y_CEN`` (the refined centre, in degrees and in 0-based
    cutout pixels), ``SHIFT``, ``CENFAIL``, ``EDGE``, ``FRACMASK``, ``BANDS``
    (and ``BAND1``...), ``BKG_<band>``, ``RUN``/``RERUN``/``CAMCOL``/``FIELD``,
    ``DR``, ``BUNIT`` and the celestial WCS of the cutout grid (read it with
    ``WCS(header).celestial``); and a ``MASK``
    image extension (uint8, 1 = no data). Files are written atomically.

    The manifest ``out_dir/cutouts_manifest.ecsv`` has one row per galaxy: the
    ID, ``ra``, ``dec``, ``run``/``rerun``/``camcol``/``field``, ``status``
    (see :data:`CUTOUT_STATUSES`), ``error`` (why a galaxy failed), ``file``
    (relative to ``out_dir``) and the centring results (``x_cutout``,
    ``y_cutout``, ``shift``, ``frac_masked``, ``centroid_failed``). Failures
    (HTTP errors once the retries are spent, missing frames, positions with no
    SDSS object) are recorded and the run goes on. The manifest is rewritten
    atomically after each field, at the end, and on an interruption.

    Calling again with the same ``out_dir`` resumes: galaxies already ``ok``,
    ``edge`` or ``off_frame`` (with their files present) are skipped, cached
    frames are read instead of downloaded, and ``failed`` galaxies are retried.
    A cutout file written just before a crash, but not yet in the manifest, is
    recognised and kept.

    Parameters
    ----------
    table : `~astropy.table.Table` or path-like
        The galaxies (a path is read with :func:`read_catalog`). Needed: an ID
        column (``id_column``) and ``ra``/``dec`` in degrees (any letter case).
        The field is taken from ``run``/``camcol``/``field`` (and ``rerun``,
        default 301) columns where present, else decoded from a PhotoObj
        ``objID`` column (:func:`decode_objid`: the field where the object is
        primary), else found on SkyServer (``SDSS.query_crossid``: the nearest
        primary object within ``match_radius``).
    out_dir : path-like
        Output folder (created if needed). Reuse it to resume.
    size : int or `~astropy.units.Quantity`, optional
        Cutout side in pixels (default 64, i.e. 25″ at SDSS's 0.396″/pixel), or
        an angle.
    bands : sequence of str or str, optional
        Bands, in cube-plane order (default ``("g", "r", "i")``; ``"gri"`` works).
    data_release : int, optional
        SDSS data release the frames are taken from (default 17).
    retries : int, optional
        Retries per frame download after transient failures (connection
        errors, time-outs, HTTP 429 and 5xx); other errors (e.g. HTTP 404,
        frame missing) fail the field at once. Default 4.
    backoff, max_backoff, jitter : float, optional
        The k-th retry waits ``min(max_backoff, backoff * 2**k)`` seconds
        (longer if the server sends ``Retry-After``), stretched by up to
        ``jitter`` at random.
    timeout : float, optional
        Seconds allowed per request (default transport only).
    progress : bool, optional
        Show a `tqdm` progress bar over galaxies.
    frame_cache : path-like, optional
        Folder of cached frames (default ``out_dir/frames``). Several output
        folders can share one; files named as on the SDSS server
        (``frame-g-002820-3-0122.fits.bz2``, or ``.fits``) that are already
        there are used without downloading.
    keep_frames : bool, optional
        Write downloaded frames to ``frame_cache`` (default). About 3 MB per
        band and field, and at Main Galaxy Sample density most fields hold a
        single galaxy: for large catalogues `False` saves the disk, at the price
        of downloading a field again if one of its galaxies must be redone.
    compress_frames : bool, optional
        Cache frames bzip2-compressed like SDSS serves them (default; 4× smaller,
        but reading one back takes a second or more) rather than as plain FITS.
    get_frames : callable, optional
        Transport replacing `~astroquery.sdss.SDSS.get_images`:
        ``get_frames(run=, rerun=, camcol=, field=, band=, data_release=)``
        returning an `~astropy.io.fits.HDUList` (or a list holding one, as
        ``get_images`` does).
    id_column : str, optional
        Column naming the galaxies and their files (default ``"objID"``).
    retry_failed : bool, optional
        Retry galaxies a previous run recorded as ``failed`` (default).
    checkpoint_interval : float, optional
        Minimum seconds between manifest rewrites (default 0: after every
        field). Rewrites are anyway spaced so that they take at most about a
        tenth of the run, which matters for catalogues of 10⁵ galaxies.
    match_radius : `~astropy.units.Quantity`, optional
        Search radius when a galaxy's field must be found on SkyServer.
    **cutout_options
        Passed to :func:`~astro_galpost.images.make_cutouts`
        (``refine_centroid``, ``subtract_background``, ``reference_band``,
        ``centroid_box``, ``max_shift``, ``resample``).

    Returns
    -------
    manifest : `~astropy.table.Table`
        The manifest as written (rows of the galaxies of ``table`` first, then
        any other galaxies recorded in ``out_dir`` by earlier runs).

    Raises
    ------
    ValueError
        For a catalogue without IDs or positions, repeated IDs, invalid options,
        or an ``out_dir`` holding cutouts made with other options (size, bands,
        data release or ``cutout_options``).
    KeyboardInterrupt
        Passed on, after the manifest has been saved: run again to resume.

    Notes
    -----
    Cutouts keep the orientation of the SDSS frame (not north-up); the WCS in
    each file says where every pixel lies. A galaxy is cut from one field only;
    one close to a field edge is flagged ``edge`` (its missing pixels are NaN
    and masked) rather than mosaicked from the neighbouring field. Galaxies are
    identified by their ID: a finished galaxy is not redone when its catalogue
    position changes (delete its file, or use a new ``out_dir``). Two processes
    must not share one ``out_dir`` at the same time (a ``frame_cache`` may be
    shared).

    Examples
    --------
    >>> from astro_galpost.datasets.sdss import fetch_cutouts
    >>> from astropy.table import Table
    >>> galaxies = Table({"objID": [1237666407922335897], "ra": [38.385832],
    ...                   "dec": [-0.075917], "run": [2820], "camcol": [3], "field": [122]})
    >>> manifest = fetch_cutouts(galaxies, "sdss_cutouts", size=64)  # doctest: +REMOTE_DATA +SKIP
    >>> manifest["status"][0]  # doctest: +SKIP
    'ok'
    """
    from astropy.coordinates import SkyCoord
    from tqdm.auto import tqdm

    from ..images import make_cutouts

    bands = tuple(bands)
    if not bands or any(b not in BANDS for b in bands) or len(set(bands)) != len(bands):
        raise ValueError(f"bands must be distinct SDSS bands from {BANDS!r}, got {bands!r}")
    if not isinstance(size, u.Quantity):
        if isinstance(size, bool) or int(size) != size or size < 3:
            raise ValueError(f"size must be a number of pixels >= 3 or an angle, got {size!r}")
        size = int(size)
    if isinstance(retries, bool) or int(retries) != retries or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    retry = {"retries": int(retries), "backoff": float(backoff),
             "max_backoff": float(max_backoff), "jitter": float(jitter)}
    if not isinstance(table, Table):
        table = read_catalog(table, derive_mbh=False)
    records, integer_ids = _input_records(table, id_column)

    out = Path(out_dir)
    cutouts_dir = out / "cutouts"
    cache_dir = Path(frame_cache) if frame_cache is not None else out / "frames"
    for folder in (out, cutouts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if keep_frames:
        cache_dir.mkdir(parents=True, exist_ok=True)
    _clean_partial_files(out, cutouts_dir)
    if frame_cache is None:
        _clean_partial_files(cache_dir)
    else:  # a shared cache: another process may be writing there right now
        _clean_partial_files(cache_dir, min_age=3600.0)
    manifest_path = out / CUTOUTS_MANIFEST_FILENAME

    signature = _cutout_signature(size, bands, data_release, cutout_options)
    signature_hash = _signature_hash(signature)
    meta = {"version": _CUTOUTS_VERSION, **signature, "id_column": id_column}

    previous: dict[str, dict[str, Any]] = {}
    if manifest_path.exists():
        old = Table.read(manifest_path, format="ascii.ecsv")
        changed = [k for k in signature if old.meta.get(k) != signature[k]]
        if old.meta.get("version") != _CUTOUTS_VERSION or changed:
            raise ValueError(f"{out} holds cutouts made with other options "
                             f"({', '.join(changed) or 'version'} differ); use another out_dir")
        previous = _records_from_manifest(old, id_column)
        integer_ids = integer_ids and all(isinstance(r["id"], int) for r in previous.values())

    merged: list[dict[str, Any]] = []
    for rec in records:
        old_rec = previous.pop(rec["key"], None)
        if old_rec is not None:
            filed = old_rec["status"] in _CUTOUT_FILED and (out / old_rec["file"]).is_file()
            if filed or old_rec["status"] == "off_frame" or (
                    old_rec["status"] == "failed" and not retry_failed):
                merged.append(old_rec)
                continue
            if _field_key(rec) is None and _field_key(old_rec) is not None \
                    and (rec["ra"], rec["dec"]) == (old_rec["ra"], old_rec["dec"]):
                rec.update({k: old_rec[k] for k in _FIELD_KEYS})  # located by an earlier run
        if rec["status"] == "pending":
            _adopt_cutout(rec, out, signature_hash)
        merged.append(rec)
    merged.extend(previous.values())  # galaxies of earlier runs not in this table
    todo = [r for r in merged[:len(records)] if r["status"] == "pending"]

    state = {"last_write": -math.inf, "cost": 0.0}

    def save(force: bool = False) -> None:
        now = time.monotonic()
        wait = max(float(checkpoint_interval), 10.0 * state["cost"])
        if not force and now - state["last_write"] < wait:
            return
        _write_table(_manifest_table(merged, id_column, integer_ids, meta), manifest_path,
                     "ascii.ecsv")
        state["last_write"] = time.monotonic()
        state["cost"] = state["last_write"] - now

    unlocated = [r for r in todo if _field_key(r) is None]
    if unlocated:
        _locate_fields(unlocated, data_release=data_release, radius=u.Quantity(match_radius),
                       timeout=timeout, retry=retry)
    fields: dict[tuple[int, int, int, int], list[dict[str, Any]]] = {}
    for rec in todo:
        if rec["status"] == "pending":
            fields.setdefault(_field_key(rec), []).append(rec)  # type: ignore[arg-type]

    fetch = get_frames
    if fetch is None:
        def fetch(**kwargs: Any) -> Any:
            return _get_sdss_frame(timeout=timeout, **kwargs)

    reference = cutout_options.get("reference_band") or bands[0]
    n_failed = sum(r["status"] == "failed" for r in todo)
    with tqdm(total=len(todo), initial=len(todo) - sum(map(len, fields.values())), unit="gal",
              desc="SDSS cutouts", disable=not progress, dynamic_ncols=True) as bar:
        try:
            save(force=True)
            for key, group in fields.items():
                label = f"field {key[0]}/{key[2]}/{key[3]}"
                try:
                    frames = _field_frames(key, bands, cache_dir, fetch=fetch,
                                           data_release=data_release, keep=keep_frames,
                                           compress=compress_frames, retry=retry)
                    coords = SkyCoord([r["ra"] for r in group], [r["dec"] for r in group],
                                      unit="deg")
                    cube, mask, info = make_cutouts(frames, coords, size, band_order=bands,
                                                    **cutout_options)
                except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                    message = _one_line(exc, label)
                    for rec in group:
                        rec.update(status="failed", error=message)
                else:
                    ref_header = frames[reference].header
                    for k, rec in enumerate(group):
                        row = info[k]
                        rec.update({name: _number(row[name]) for name in _CUTOUT_FLOATS},
                                   centroid_failed=bool(row["centroid_failed"]), error="",
                                   file="")
                        if row["off_frame"]:
                            rec.update(status="off_frame",
                                       error=f"position not on the frames of {label}")
                            continue
                        path = cutouts_dir / f"{_safe_name(rec['key'])}.fits"
                        try:
                            hdul = _cutout_hdulist(cube[k], mask[k], row, rec, bands=bands,
                                                   data_release=data_release, meta=info.meta,
                                                   ref_header=ref_header, id_column=id_column,
                                                   signature_hash=signature_hash)
                            _write_cutout_file(hdul, path)
                        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
                            rec.update(status="failed", error=_one_line(exc, "writing the cutout"))
                            continue
                        rec.update(status="edge" if row["edge"] else "ok",
                                   file=path.relative_to(out).as_posix())
                n_failed += sum(r["status"] == "failed" for r in group)
                bar.update(len(group))
                if n_failed:
                    bar.set_postfix(failed=n_failed, refresh=False)
                save()
        finally:
            save(force=True)
    return _manifest_table(merged, id_column, integer_ids, meta)


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
    an error, and 130 on Ctrl-C.
    """
    bands = tuple(c for c in str(args.bands) if c not in ", ")  # "gri" or "g,r,i"
    manifest_path = Path(args.out) / CUTOUTS_MANIFEST_FILENAME
    try:
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
        print(f"galpost fetch-cutouts: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
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
    parser = argparse.ArgumentParser(prog="python -m astro_galpost.datasets.sdss",
                                     description="Fetch the SDSS Main Galaxy Sample catalogue.")
    add_fetch_arguments(parser)
    return run_fetch(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
