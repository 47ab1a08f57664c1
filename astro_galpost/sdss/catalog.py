"""Reading SDSS galaxy catalogues into one normalised form.

:func:`read_catalog` reads local exports (SkyServer CSV, FITS, ECSV, Parquet,
astroML's ``SDSSspecgalsDR8``) with CAS column names in any letter case;
:func:`join_catalogs` joins two of them on ``specObjID``. The normal form: CAS
column names, unsigned 64-bit IDs (:func:`to_uint64`), SDSS "not measured"
sentinels masked, astropy units attached and ``log_mbh`` derived. IDs stay
`numpy.uint64` (some exceed 2**63; see :mod:`astro_galpost.sdss`).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Column, MaskedColumn, Table, join
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

from ..io import TableFormatError
from .query import BANDS

__all__ = ["ID_COLUMNS", "join_catalogs", "read_catalog", "to_uint64"]

#: Identifier columns read as unsigned 64-bit integers (CAS ``bigint`` or
#: ``numeric(20)``; ``specObjID`` and ``plateID`` exceed 2**63 for DR8+ plates).
ID_COLUMNS = ("objID", "specObjID", "bestObjID", "targetObjID", "plateID", "fieldID")


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
#: SDSS "not measured" values of measurements (magnitudes, redshift, MPA-JHU properties, line
#: fluxes): masked by `read_catalog` and left out by
#: `~astro_galpost.evaluation.local_calibration`. Other float columns use the first, -9999, only.
SENTINELS = (-9999.0, -999.0, -99.0)
_OH_SENTINELS = (-99.9,)  # seen in some MPA-JHU metallicity releases


def to_uint64(col: Any, name: str = "") -> MaskedColumn | Column:
    """An SDSS ID column (text, signed or unsigned integers, floats) as `numpy.uint64`.

    Parameters
    ----------
    col : column or array-like
        The IDs. Text is parsed exactly; signed integers that overflowed (IDs
        above 2**63 stored as int64 come back negative) are restored; floats
        are converted with a warning (they lost precision above 2**53).
    name : str, optional
        Column name, for messages and the returned column.

    Returns
    -------
    `~astropy.table.Column` or `~astropy.table.MaskedColumn`
        Masked where an ID is missing (blank, "null", NaN or masked) or 0,
        which SDSS writes for "none" (the ``specObjID`` of a photometric
        object without a spectrum).

    Raises
    ------
    TypeError
        For a dtype that cannot hold IDs.
    """
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
    none = values == 0
    if none.any():
        mask = none if mask is None else (mask | none)
    info = {"name": getattr(col, "name", name), "description": getattr(col, "description", None)}
    if mask is not None and mask.any():
        return MaskedColumn(values, mask=mask, **info)
    return Column(values, **info)


def _warn_float_ids(name: str) -> None:
    warnings.warn(f"ID column {name!r} was stored as floating point: IDs above 2**53 lost "
                  "precision and must not be used to join tables", AstropyUserWarning,
                  stacklevel=4)


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
    lower = [n.lower() for n in stripped]  # SQL Server names are case-insensitive: Z and z clash
    duplicates = sorted({n for n in lower if lower.count(n) > 1})
    if not duplicates:
        return header
    positions = [k for k, n in enumerate(lower) if n == "z"]
    run = [k for k in positions if k >= 4 and lower[k - 4:k] == list(BANDS[:4])]
    if duplicates != ["z"] or len(positions) != 2 or len(run) != 1:
        raise ValueError(
            f"{path}: the header names column(s) {', '.join(map(repr, duplicates))} more than once "
            f"(positions {[k + 1 for k, n in enumerate(lower) if n in duplicates]}); which is which cannot be "
            "told from the header: alias them in the SQL select (e.g. 's.z AS redshift')"
        )
    for k in range(run[0] - 4, run[0] + 1):
        stripped[k] = f"modelMag_{lower[k]}"
    stripped[next(k for k in positions if k != run[0])] = "z"  # the redshift
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
        sentinels = SENTINELS if name in _MEASUREMENTS else SENTINELS[:1]
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
    >>> from astro_galpost.sdss import read_catalog
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
            table[name] = to_uint64(table[name], name)
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
    `~astropy.table.join`, passed through ``kwargs``). A row without an ID
    (missing, or 0, SDSS's "none", as the ``specObjID`` of a galaxy without a
    spectrum) matches no row, with a warning: an inner join leaves it out, a
    left, right or outer join keeps it with its key masked.

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
    placeholder = _unmatched_keys(tables, keys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)  # meta merge conflicts
        joined = join(tables[0], tables[1], keys=keys, join_type=join_type, **kwargs)
    for name in keys:
        values = np.asarray(joined[name])
        missing = np.ma.getmaskarray(joined[name]) | ((values >= placeholder) if values.dtype.kind == "u" else False)
        if missing.any():
            joined[name] = MaskedColumn(np.where(missing, 0, values).astype(values.dtype), name=name,
                                        mask=missing, description=joined[name].description)
    return joined


def _unmatched_keys(tables: list[Table], keys: list[str]) -> int:
    """Give the rows of ``tables`` without a key (missing, or 0: SDSS's "none") placeholder IDs
    that match nothing (`astropy.table.join` refuses masked keys), counting down from the top of
    the uint64 range, with a warning per table; return the lowest placeholder."""
    missing = [np.any([np.ma.getmaskarray(t[name]) for name in keys], axis=0) for t in tables]
    lowest = 2**64 - int(sum(m.sum() for m in missing))
    next_free = 2**64 - 1
    for side, table, rows in zip(("left", "right"), tables, missing):
        if not rows.any():
            continue
        warnings.warn(f"{int(rows.sum())} of {len(table)} rows of the {side} table have no "
                      f"{' or '.join(keys)} (missing, or 0: SDSS's 'none'); they match no row",
                      AstropyUserWarning, stacklevel=3)
        fill = np.uint64(next_free) - np.arange(int(rows.sum()), dtype=np.uint64)
        next_free -= int(rows.sum())
        for name in keys:
            values, own = np.ma.getdata(table[name]).copy(), np.ma.getmaskarray(table[name])
            if own.any() and (values.dtype.kind != "u" or (values[~own] >= lowest).any()):
                raise ValueError(f"join key {name!r} of the {side} table has missing values, which "
                                 "can be left unmatched only in an SDSS ID column (uint64)")
            if values.dtype.kind == "u":
                values[rows] = fill
            table[name] = Column(values, name=name, description=table[name].description)
    return lowest
