"""The state of a :func:`~astro_galpost.sdss.fetch_cutouts` output folder: one record per galaxy.

:class:`CutoutManifest` turns a catalogue into records (ID, position, imaging
field, status), merges them with the manifest of earlier runs in the same
folder, finds the field of galaxies that have none (SkyServer cross-match)
and writes the manifest ``cutouts_manifest.ecsv`` (atomically, at a bounded
rate).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

from .catalog import ID_COLUMNS, to_uint64
from .files import write_table
from .frames import FRAMES_RERUN, decode_objid
from .retry import call_with_retries

__all__ = [
    "CUTOUTS_MANIFEST_FILENAME",
    "CUTOUT_FLOATS",
    "CUTOUT_STATUSES",
    "FIELD_KEYS",
    "CutoutManifest",
    "one_line",
]

#: Name of the manifest :func:`~astro_galpost.sdss.fetch_cutouts` writes in its output folder.
CUTOUTS_MANIFEST_FILENAME = "cutouts_manifest.ecsv"

#: Values of the ``status`` column of the cutout manifest: ``pending`` (not yet
#: processed), ``ok`` (cutout written), ``edge`` (cutout written, but part of it
#: falls off the frame: those pixels are NaN and masked), ``off_frame`` (the
#: position is not on the frame at all: no file) and ``failed`` (see ``error``;
#: retried by the next run).
CUTOUT_STATUSES = ("pending", "ok", "edge", "off_frame", "failed")

#: Columns of the imaging field of a galaxy (in the catalogue, the manifest and the cutout header).
FIELD_KEYS = ("run", "rerun", "camcol", "field")

#: Float columns of the manifest with the centring results of a cutout.
CUTOUT_FLOATS = ("x_cutout", "y_cutout", "shift", "frac_masked")

_CUTOUTS_VERSION = 1
_CUTOUT_FILED = frozenset({"ok", "edge"})
_CROSSID_CHUNK = 500
_MAX_ERROR_CHARS = 500


def one_line(exc: BaseException, context: str = "") -> str:
    """An error as one short line for the manifest's ``error`` column."""
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


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", key)


def _new_record(key: str, ident: Any, ra: float, dec: float) -> dict[str, Any]:
    return {"key": key, "id": ident, "ra": ra, "dec": dec, "run": None, "rerun": None,
            "camcol": None, "field": None, "status": "pending", "error": "", "file": "",
            **{name: math.nan for name in CUTOUT_FLOATS}, "centroid_failed": False}


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


def _catalog_ids(table: Table, id_column: str) -> tuple[list[Any], bool]:
    """The IDs of the catalogue's galaxies (checked: present and unique); and whether they are integers."""
    id_name = _find_column(table, id_column)
    if id_name is None:
        raise ValueError(f"the catalogue has no {id_column!r} column to name the cutouts by "
                         f"(columns: {', '.join(table.colnames)}); pass id_column=")
    column = table[id_name]
    if np.ma.getmaskarray(column).any():
        raise ValueError(f"{id_name!r} is missing for some rows")
    integer_ids = id_name in ID_COLUMNS or np.ma.getdata(column).dtype.kind in "iu"
    if integer_ids:
        ids: list[Any] = np.asarray(to_uint64(column, id_name)).tolist()
    else:
        ids = [str(v).strip() for v in np.ma.getdata(column)]
    keys = [str(v) for v in ids]
    if len(set(keys)) != len(keys):
        repeated = sorted(k for k, n in Counter(keys).items() if n > 1)[:5]
        raise ValueError(f"{id_name!r} is not unique (e.g. {', '.join(repeated)})")
    return ids, integer_ids


def _catalog_objids(table: Table) -> list[int | None]:
    """The PhotoObj ``objID`` of each row, where the catalogue has a usable one."""
    objid_name = _find_column(table, "objID")
    if objid_name is None:
        return [None] * len(table)
    try:
        converted = to_uint64(table[objid_name], objid_name)
    except (TypeError, ValueError):
        return [None] * len(table)
    masked = np.ma.getmaskarray(converted).tolist()
    return [None if m else v for v, m in zip(np.asarray(converted).tolist(), masked)]


def _input_records(table: Table, id_column: str) -> tuple[list[dict[str, Any]], bool]:
    """One record per catalogue row; and whether the IDs are integers."""
    ids, integer_ids = _catalog_ids(table, id_column)
    ra_name, dec_name = _find_column(table, "ra"), _find_column(table, "dec")
    if ra_name is None or dec_name is None:
        raise ValueError("the catalogue needs 'ra' and 'dec' columns (degrees)")
    ra = _degrees(table[ra_name]).tolist()
    dec = _degrees(table[dec_name]).tolist()
    nothing: list[int | None] = [None] * len(table)
    given = {k: _int_list(table[name]) if (name := _find_column(table, k)) else nothing
             for k in FIELD_KEYS}
    objids = _catalog_objids(table)
    records = []
    for row, ident in enumerate(ids):
        rec = _new_record(str(ident), ident, float(ra[row]), float(dec[row]))
        if all(given[k][row] is not None for k in ("run", "camcol", "field")):
            rec.update({k: given[k][row] for k in FIELD_KEYS})
            rec["rerun"] = rec["rerun"] or FRAMES_RERUN
        elif objids[row] is not None:
            # a PhotoObj objID names the field where the object is primary
            try:
                decoded = decode_objid(objids[row])
            except ValueError:
                pass
            else:
                rec.update({k: decoded[k] for k in ("run", "camcol", "field")})
                rec["rerun"] = decoded["rerun"] if decoded["sky_version"] >= 2 else FRAMES_RERUN
        if not (math.isfinite(rec["ra"]) and math.isfinite(rec["dec"])
                and -90.0 <= rec["dec"] <= 90.0):
            rec.update(status="failed", error="no valid ra/dec")
        records.append(rec)
    return records, integer_ids


def _field_key(rec: dict[str, Any]) -> tuple[int, int, int, int] | None:
    if any(rec[k] is None for k in FIELD_KEYS):
        return None
    return tuple(int(rec[k]) for k in FIELD_KEYS)  # type: ignore[return-value]



def _manifest_table(records: list[dict[str, Any]], id_column: str, integer_ids: bool,
                    meta: dict[str, Any]) -> Table:
    table = Table(meta=dict(meta))
    table[id_column] = (np.array([r["id"] for r in records], dtype=np.uint64) if integer_ids
                        else np.array([str(r["id"]) for r in records], dtype=str))
    table["ra"] = np.array([r["ra"] for r in records], dtype=float) * u.deg
    table["dec"] = np.array([r["dec"] for r in records], dtype=float) * u.deg
    for name in FIELD_KEYS:
        values = [r[name] for r in records]
        table[name] = MaskedColumn([0 if v is None else int(v) for v in values], dtype=np.int64,
                                   mask=[v is None for v in values])
    for name in ("status", "error", "file"):
        table[name] = np.array([str(r[name]) for r in records], dtype=str)
    for name in CUTOUT_FLOATS:
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

    fields = {k: _int_list(table[k]) if k in table.colnames else [None] * n for k in FIELD_KEYS}
    status, error, file = texts("status"), texts("error"), texts("file")
    numbers = {name: floats(name) for name in ("ra", "dec", *CUTOUT_FLOATS)}
    centroid_failed = (np.ma.filled(table["centroid_failed"], False).astype(bool).tolist()
                       if "centroid_failed" in table.colnames else [False] * n)
    out = {}
    for row in range(n):
        rec = _new_record(str(ids[row]), ids[row], numbers["ra"][row], numbers["dec"][row])
        rec.update({k: fields[k][row] for k in FIELD_KEYS})
        rec.update({name: numbers[name][row] for name in CUTOUT_FLOATS})
        rec.update(status=status[row] if status[row] in CUTOUT_STATUSES else "pending",
                   error=error[row], file=file[row], centroid_failed=centroid_failed[row])
        out[rec["key"]] = rec
    return out


def _locate_fields(records: list[dict[str, Any]], *, data_release: int, radius: u.Quantity,
                   timeout: float, retry: dict[str, Any]) -> None:
    """Find the field of galaxies without one: nearest primary object via SkyServer CrossID."""
    from astropy.coordinates import SkyCoord
    from astroquery.sdss import SDSS

    for start in range(0, len(records), _CROSSID_CHUNK):
        chunk = records[start:start + _CROSSID_CHUNK]
        coords = SkyCoord([r["ra"] for r in chunk], [r["dec"] for r in chunk], unit="deg")
        try:
            result = call_with_retries(
                lambda coords=coords: SDSS.query_crossid(coords, radius=radius, data_release=data_release,
                                           photoobj_fields=["ra", "dec", *FIELD_KEYS],
                                           timeout=timeout, cache=False),
                what=f"SkyServer cross-match of {len(chunk)} positions", **retry)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            message = one_line(exc, "finding the SDSS field")
            for rec in chunk:
                rec.update(status="failed", error=message)
            continue
        _assign_fields(chunk, coords, Table() if result is None else Table(result), radius)


def _assign_fields(chunk: list[dict[str, Any]], coords: Any, found: Table, radius: u.Quantity) -> None:
    """Give each galaxy the field of its nearest cross-matched object within ``radius``, or fail it."""
    from astropy.coordinates import SkyCoord

    names = {k: _find_column(found, k) for k in ("ra", "dec", *FIELD_KEYS)}
    if len(found) and None in (names["ra"], names["dec"], names["run"], names["camcol"],
                               names["field"]):
        for rec in chunk:
            rec.update(status="failed", error="SkyServer cross-match returned no "
                                              f"run/camcol/field (columns: {found.colnames})")
        return
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
            if key in FIELD_KEYS:
                rec[key] = _int_or_none(row[name]) if name else None
        rec["rerun"] = rec["rerun"] or FRAMES_RERUN
        if _field_key(rec) is None:
            rec.update(status="failed", error="SkyServer cross-match gave an invalid field")


class CutoutManifest:
    """The records of the galaxies of one cutout folder, merged with earlier runs, and their manifest.

    Each galaxy is a record (a dict) with its ID (``key``, ``id``), ``ra``,
    ``dec``, imaging field (:data:`FIELD_KEYS`), ``status`` (one of
    :data:`CUTOUT_STATUSES`), ``error``, ``file`` and centring results
    (:data:`CUTOUT_FLOATS`, ``centroid_failed``); the manifest file
    (:data:`CUTOUTS_MANIFEST_FILENAME`) has one row per record.

    Parameters
    ----------
    table : `~astropy.table.Table`
        The catalogue: an ID column, ``ra``/``dec`` (degrees) and, where
        known, ``run``/``rerun``/``camcol``/``field`` or a PhotoObj ``objID``.
    out : `~pathlib.Path`
        The output folder; an existing manifest there is read and merged.
    id_column : str
        Column naming the galaxies and their files.
    signature : dict
        The options that must not change between runs sharing ``out`` (size,
        bands, data release, cutout options), stored in the manifest's metadata.
    retry_failed : bool, optional
        Redo galaxies an earlier run recorded as ``failed``.
    checkpoint_interval : float, optional
        Minimum seconds between manifest rewrites by :meth:`save`.

    Attributes
    ----------
    records : list of dict
        Every record: the catalogue's galaxies first, then those recorded in
        ``out`` by earlier runs only.
    todo : list of dict
        The catalogue's records still to be done (status ``pending``).
    signature_hash : str
        Hash of ``signature``, written into every cutout file (``CUTSIG``).
    path : `~pathlib.Path`
        The manifest file.

    Raises
    ------
    ValueError
        For a catalogue without IDs or positions, repeated IDs, or an ``out``
        whose manifest was written with another ``signature``.
    """

    def __init__(self, table: Table, out: Path, *, id_column: str, signature: dict[str, Any],
                 retry_failed: bool = True, checkpoint_interval: float = 0.0):
        self.out = Path(out)
        self.path = self.out / CUTOUTS_MANIFEST_FILENAME
        self.id_column = id_column
        text = json.dumps(signature, sort_keys=True, default=str)
        self.signature_hash = hashlib.sha1(text.encode()).hexdigest()[:16]
        self.meta = {"version": _CUTOUTS_VERSION, **signature, "id_column": id_column}
        records, self.integer_ids = _input_records(table, id_column)
        previous = self._previous(signature)
        self.records = self._merge(records, previous, retry_failed)
        self.todo = [r for r in self.records[:len(records)] if r["status"] == "pending"]
        self._interval = float(checkpoint_interval)
        self._last_write, self._cost = -math.inf, 0.0

    def _previous(self, signature: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Records of the manifest already in the folder, by key (checked against ``signature``)."""
        if not self.path.exists():
            return {}
        old = Table.read(self.path, format="ascii.ecsv")
        changed = [k for k in signature if old.meta.get(k) != signature[k]]
        if old.meta.get("version") != _CUTOUTS_VERSION or changed:
            raise ValueError(f"{self.out} holds cutouts made with other options "
                             f"({', '.join(changed) or 'version'} differ); use another out_dir")
        previous = _records_from_manifest(old, self.id_column)
        self.integer_ids = self.integer_ids and all(isinstance(r["id"], int) for r in previous.values())
        return previous

    def _merge(self, records: list[dict[str, Any]], previous: dict[str, dict[str, Any]],
               retry_failed: bool) -> list[dict[str, Any]]:
        """Keep the finished records of earlier runs, and what they learnt of the others."""
        merged: list[dict[str, Any]] = []
        for rec in records:
            old_rec = previous.pop(rec["key"], None)
            if old_rec is not None:
                filed = old_rec["status"] in _CUTOUT_FILED and (self.out / old_rec["file"]).is_file()
                if filed or old_rec["status"] == "off_frame" or (
                        old_rec["status"] == "failed" and not retry_failed):
                    merged.append(old_rec)
                    continue
                if _field_key(rec) is None and _field_key(old_rec) is not None \
                        and (rec["ra"], rec["dec"]) == (old_rec["ra"], old_rec["dec"]):
                    rec.update({k: old_rec[k] for k in FIELD_KEYS})  # located by an earlier run
            if rec["status"] == "pending":
                self._adopt(rec)
            merged.append(rec)
        merged.extend(previous.values())  # galaxies of earlier runs not in this table
        return merged

    def cutout_path(self, rec: dict[str, Any]) -> Path:
        """The cutout file of a record: ``out/cutouts/<id>.fits``."""
        return self.out / "cutouts" / f"{_safe_name(rec['key'])}.fits"

    def _adopt(self, rec: dict[str, Any]) -> bool:
        """Take over a complete cutout file written by a run stopped before its manifest was."""
        from astropy.io import fits

        path = self.cutout_path(rec)
        if not path.is_file():
            return False
        try:
            header = fits.getheader(path)
        except (OSError, ValueError):
            return False
        if header.get("CUTSIG") != self.signature_hash or str(header.get("OBJID")) != rec["key"]:
            return False
        rec.update(status="edge" if header.get("EDGE") else "ok", error="",
                   file=path.relative_to(self.out).as_posix(),
                   x_cutout=float(header.get("X_CEN", math.nan)),
                   y_cutout=float(header.get("Y_CEN", math.nan)),
                   shift=float(header.get("SHIFT", math.nan)),
                   frac_masked=float(header.get("FRACMASK", math.nan)),
                   centroid_failed=bool(header.get("CENFAIL", False)))
        for name in FIELD_KEYS:
            if rec[name] is None and name.upper() in header:
                rec[name] = int(header[name.upper()])
        return True

    def locate(self, *, data_release: int, radius: u.Quantity, timeout: float,
               retry: dict[str, Any]) -> None:
        """Find the field of the galaxies to do that have none (SkyServer cross-match within ``radius``)."""
        unlocated = [r for r in self.todo if _field_key(r) is None]
        if unlocated:
            _locate_fields(unlocated, data_release=data_release, radius=u.Quantity(radius),
                           timeout=timeout, retry=retry)

    def fields(self) -> dict[tuple[int, int, int, int], list[dict[str, Any]]]:
        """The pending records grouped by field ``(run, rerun, camcol, field)``."""
        fields: dict[tuple[int, int, int, int], list[dict[str, Any]]] = {}
        for rec in self.todo:
            if rec["status"] == "pending":
                fields.setdefault(_field_key(rec), []).append(rec)  # type: ignore[arg-type]
        return fields

    def table(self) -> Table:
        """The manifest as a table: one row per record."""
        return _manifest_table(self.records, self.id_column, self.integer_ids, self.meta)

    def save(self, force: bool = False) -> None:
        """Write the manifest atomically, unless it was written too recently (and not ``force``).

        Rewrites are at least ``checkpoint_interval`` seconds apart, and spaced
        so that they take at most about a tenth of the run.
        """
        now = time.monotonic()
        wait = max(self._interval, 10.0 * self._cost)
        if not force and now - self._last_write < wait:
            return
        write_table(self.table(), self.path, "ascii.ecsv")
        self._last_write = time.monotonic()
        self._cost = self._last_write - now


