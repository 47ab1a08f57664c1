"""The SDSS Main Galaxy Sample with MPA-JHU properties: query, fetch and read.

This module builds the training catalogue of the seed paper (section 2.1): SDSS
Main Galaxy Sample galaxies with a good spectroscopic redshift ``0 < z <= 0.3``,
ugriz photometry, MPA-JHU stellar mass, star-formation rate, gas-phase
metallicity and emission-line fluxes, and the stellar velocity dispersion from
which the black-hole mass is derived (:func:`astro_galpost.catalog.add_mbh_column`).

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

Notes
-----
SDSS object IDs do not fit in signed 64-bit integers: ``specObjID`` (and
``plateID``) of DR8+ spectra on plates above ~8000 exceed 2**63. They are kept as
`numpy.uint64` throughout; never read them as floats (precision is lost above
2**53) or signed integers.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import math
import os
import random
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table, join, vstack
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

__all__ = [
    "BANDS",
    "MGS_TARGET_BITS",
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
    *(f"p.modelMag_{b}" for b in BANDS),
    *(f"p.modelMagErr_{b}" for b in BANDS),
    *(f"p.extinction_{b}" for b in BANDS),
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
_KMS_COLUMNS = ("velDisp", "velDispErr", "sigma_balmer", "sigma_balmer_err", "sigma_forbidden",
                "sigma_forbidden_err", "v_off_balmer", "v_off_balmer_err", "v_off_forbidden",
                "v_off_forbidden_err", "sigmaStars", "sigmaStarsErr")

#: Canonical CAS spellings; a column whose lower-cased name matches one of these
#: is renamed to it (``SPECOBJID``, ``specobjid`` → ``specObjID``; ``H_ALPHA_FLUX``
#: → ``h_alpha_flux``; ``Z`` → ``z``).
_CANONICAL = (
    *ID_COLUMNS, "ra", "dec", "z", "zErr", "zWarning", "class", "subClass", "plate", "mjd",
    "fiberID", "velDisp", "velDispErr", "rChi2", "legacy_target1", "sciencePrimary",
    "bptclass", "reliable", "d4000", "d4000_err", "d4000_n", "d4000_n_err",
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
    {"z", "zErr", "velDisp", "velDispErr", *(f"{p}_{b}" for p in _MAG_PREFIXES for b in BANDS),
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
    z_min: float = 0.0,
    z_max: float = 0.3,
    r_max: float | None = 17.77,
    top: int | None = None,
    after: int | None = None,
    page_key: str = "specObjID",
    columns: Sequence[str] | None = None,
    extra_columns: Sequence[str] = (),
    target_bits: int | None = MGS_TARGET_BITS,
    dereddened: bool = True,
    reliable_only: bool = False,
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
        Redshift range ``z_min < z <= z_max`` (default ``0 < z <= 0.3``).
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
        Keep only rows with galSpecInfo ``reliable = 1``. The flag is selected
        either way, so it can be applied later.

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
    """Write through a temporary file in the same folder and rename it into place.

    A reader (or a resumed run) therefore sees either no file or a complete one,
    whatever happens during the write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_PART_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def _clean_partial_files(*folders: Path) -> None:
    """Remove temporary files left by a process killed mid-write (they are ours)."""
    for folder in folders:
        if folder.is_dir():
            for stale in folder.glob(f".*{_PART_SUFFIX}"):
                stale.unlink(missing_ok=True)


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


def _normalise_names(table: Table) -> None:
    """Rename columns to their CAS spelling where that is unambiguous."""
    names = table.colnames
    bare = [b for b in BANDS if b in names]
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
    if "velDisp" in table.colnames:
        bad = np.ma.filled(table["velDisp"] <= 0, True)
        for name in ("velDisp", "velDispErr"):
            if name in table.colnames:
                table[name].mask |= bad
        if "velDispErr" in table.colnames:
            table["velDispErr"].mask |= np.ma.filled(table["velDispErr"] <= 0, True)
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
    from ..targets import LINE_FLUX_UNIT

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
      `~astro_galpost.targets.LINE_FLUX_UNIT` (1e-17 erg/s/cm2) for line fluxes;
    * ``log_mbh`` from ``velDisp`` with
      :func:`astro_galpost.catalog.add_mbh_column` (McConnell & Ma 2013).

    Columns such as the MPA-JHU ``lgm_tot_p50`` (log M*/Msun), ``sfr_tot_p50``
    (log SFR) and ``oh_p50`` (12 + log O/H) stay unitless logarithms, which is
    what :data:`astro_galpost.targets.TARGETS` reads.

    Parameters
    ----------
    path_or_table : path-like or `~astropy.table.Table`
        File to read, or a table (which is copied, never modified).
    format : str, optional
        Force a format: ``"csv"`` (SkyServer CSV) or any `astropy.table.Table.read`
        format. By default it follows the file suffix.
    derive_mbh : bool, optional
        Add ``log_mbh`` when the table has ``velDisp`` and no ``log_mbh``.

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
        if fmt in ("csv", "skyserver", "ascii.csv"):
            table = _read_skyserver_csv(path)
        else:
            table = Table.read(path, format=fmt) if fmt else Table.read(path)
    _normalise_names(table)
    for name in ID_COLUMNS:
        if name in table.colnames:
            table[name] = _to_uint64(table[name], name)
    _mask_sentinels(table)
    _attach_units(table)
    if derive_mbh and "velDisp" in table.colnames and "log_mbh" not in table.colnames:
        from ..catalog import add_mbh_column

        table = add_mbh_column(table, sigma_column="velDisp", name="log_mbh")
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
    parser.add_argument("--z-max", type=float, default=0.3,
                        help="maximum redshift (default: %(default)s)")
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
    options = {"z_max": args.z_max, "r_max": args.r_max}
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


def _main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m astro_galpost.datasets.sdss",
                                     description="Fetch the SDSS Main Galaxy Sample catalogue.")
    add_fetch_arguments(parser)
    return run_fetch(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main())
