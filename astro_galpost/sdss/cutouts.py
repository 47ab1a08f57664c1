"""Per-galaxy SDSS image cutouts: download the frames of each field, cut, write, resumably.

:func:`fetch_cutouts` downloads the calibrated SDSS ``frame`` files of a
catalogue's galaxies through `astroquery.sdss` (each field's frames once, kept
under ``out_dir/frames/``), cuts aligned multi-band stamps with
:func:`astro_galpost.images.make_cutouts` and writes one FITS cube per galaxy
plus a resumable manifest (:class:`~astro_galpost.sdss.cutout_manifest.CutoutManifest`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyWarning

from ..utils.atomic import write_atomic
from .catalog import read_catalog
from .cutout_manifest import CUTOUT_FLOATS, FIELD_KEYS, CutoutManifest, one_line
from .files import PART_SUFFIX, clean_partial_files
from .frames import field_frames
from .query import BANDS

__all__ = ["fetch_cutouts"]


def _number(value: Any) -> float:
    """A float from a table cell, a Quantity or a numpy scalar."""
    return float(getattr(value, "value", value))


def _card(value: Any) -> float | None:
    """A header card's number: None (FITS's undefined value) for NaN, which a FITS header cannot
    hold (e.g. the background of a cutout made without background subtraction)."""
    number = _number(value)
    return number if math.isfinite(number) else None


def _cutout_signature(size: Any, bands: tuple[str, ...], data_release: int,
                      options: dict[str, Any]) -> dict[str, Any]:
    """What must not change between runs sharing one cutout folder."""
    size_text = size.to_string() if isinstance(size, u.Quantity) else str(int(size))
    return {"size": size_text, "bands": ",".join(bands), "data_release": int(data_release),
            "cutout_options": {k: repr(v) for k, v in sorted(options.items())}}


def _cutout_header(info: Any, rec: dict[str, Any], *, bands: tuple[str, ...], data_release: int,
                   meta: dict[str, Any], id_column: str, signature_hash: str) -> Any:
    """The primary header of a cutout file, without its WCS."""
    from astropy.io import fits

    header = fits.Header()
    header["OBJID"] = (rec["id"], f"catalogue {id_column}")
    header["RA"] = (rec["ra"], "[deg] catalogue right ascension")
    header["DEC"] = (rec["dec"], "[deg] catalogue declination")
    header["RA_CEN"] = (_card(info["ra_centroid"]), "[deg] right ascension of the centre")
    header["DEC_CEN"] = (_card(info["dec_centroid"]), "[deg] declination of the centre")
    header["X_CEN"] = (_card(info["x_cutout"]), "[pix] centre x in the cutout (0-based)")
    header["Y_CEN"] = (_card(info["y_cutout"]), "[pix] centre y in the cutout (0-based)")
    header["SHIFT"] = (_card(info["shift"]), "[pix] centroid - catalogue position")
    header["CENFAIL"] = (bool(info["centroid_failed"]), "centroid refinement failed")
    header["EDGE"] = (bool(info["edge"]), "part of the cutout is off the frame")
    header["FRACMASK"] = (_card(info["frac_masked"]), "fraction of masked pixels")
    header["BANDS"] = (",".join(bands), "bands of the cube planes")
    for k, band in enumerate(bands, start=1):
        header[f"BAND{k}"] = (band, f"band of plane {k}")
    for band in bands:
        header[f"BKG_{band.upper()}"] = (_card(info[f"bkg_{band}"]),
                                         f"median residual sky removed, {band}")
    header["REFBAND"] = (meta.get("reference_band", bands[0]), "band whose pixel grid is used")
    header["PIXSCALE"] = (_card(meta.get("pixel_scale_arcsec", math.nan)), "[arcsec/pix]")
    header["RESAMPLE"] = (str(meta.get("resample", ""))[:60], "other bands resampled by")
    for name in FIELD_KEYS:
        header[name.upper()] = (int(rec[name]), f"SDSS imaging {name}")
    header["DR"] = (int(data_release), "SDSS data release")
    header["CUTSIG"] = (signature_hash, "fetch_cutouts options hash")
    header["ORIGIN"] = "astro_galpost.sdss.fetch_cutouts"
    return header


def _cutout_hdulist(cube: np.ndarray, mask: np.ndarray, info: Any, header: Any, ref_header: Any,
                    unit: str | None) -> Any:
    """The cutout file of one galaxy: the cube (primary HDU, with its WCS) and its MASK extension."""
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    # the cutout's world coordinates: the reference frame's WCS moved to the cutout origin
    x0 = int(round(_number(info["x_centroid"]) - _number(info["x_cutout"])))
    y0 = int(round(_number(info["y_centroid"]) - _number(info["y_cutout"])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(ref_header).celestial
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        header.extend(wcs.to_header(relax=False), update=True)
    header["BUNIT"] = "nanomaggy" if unit in ("nmgy", "nanomaggy", "nanomaggies") else (unit or "")
    primary = fits.PrimaryHDU(np.asarray(cube, dtype=np.float32), header=header)
    mask_hdu = fits.ImageHDU(np.asarray(mask, dtype=np.uint8), name="MASK")
    mask_hdu.header["COMMENT"] = "1 where the pixel has no data (off the frame or masked)"
    return fits.HDUList([primary, mask_hdu])


@dataclass
class _FieldCutter:
    """Cuts and writes the cutouts of the galaxies of one field at a time, recording the outcome."""

    manifest: CutoutManifest
    size: int | u.Quantity
    bands: tuple[str, ...]
    data_release: int
    cutout_options: dict[str, Any]
    frames: dict[str, Any]  # keyword arguments of field_frames

    def cut(self, key: tuple[int, int, int, int], group: list[dict[str, Any]]) -> None:
        """Fetch the frames of field ``key`` and write the cutouts of ``group`` (failures are recorded)."""
        from astropy.coordinates import SkyCoord

        from ..images import make_cutouts

        label = f"field {key[0]}/{key[2]}/{key[3]}"
        try:
            frames = field_frames(key, self.bands, data_release=self.data_release, **self.frames)
            coords = SkyCoord([r["ra"] for r in group], [r["dec"] for r in group], unit="deg")
            cube, mask, info = make_cutouts(frames, coords, self.size, band_order=self.bands,
                                            **self.cutout_options)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            message = one_line(exc, label)
            for rec in group:
                rec.update(status="failed", error=message)
            return
        reference = self.cutout_options.get("reference_band") or self.bands[0]
        for k, rec in enumerate(group):
            self._write(rec, cube[k], mask[k], info[k], info.meta, frames[reference].header, label)

    def _write(self, rec: dict[str, Any], cube: np.ndarray, mask: np.ndarray, row: Any,
               meta: dict[str, Any], ref_header: Any, label: str) -> None:
        """Write one galaxy's cutout file and record it (or why there is none)."""
        rec.update({name: _number(row[name]) for name in CUTOUT_FLOATS},
                   centroid_failed=bool(row["centroid_failed"]), error="", file="")
        if row["off_frame"]:
            rec.update(status="off_frame", error=f"position not on the frames of {label}")
            return
        path = self.manifest.cutout_path(rec)
        try:
            header = _cutout_header(row, rec, bands=self.bands, data_release=self.data_release,
                                    meta=meta, id_column=self.manifest.id_column,
                                    signature_hash=self.manifest.signature_hash)
            hdul = _cutout_hdulist(cube, mask, row, header, ref_header, meta.get("unit"))
            write_atomic(path, lambda tmp: hdul.writeto(tmp, overwrite=True), overwrite=True,
                         suffix=PART_SUFFIX)
        except Exception as exc:  # noqa: BLE001 - recorded; the run goes on
            rec.update(status="failed", error=one_line(exc, "writing the cutout"))
            return
        rec.update(status="edge" if row["edge"] else "ok",
                   file=path.relative_to(self.manifest.out).as_posix())


def _check_options(size: Any, bands: Sequence[str] | str, retries: int) -> tuple[Any, tuple[str, ...]]:
    bands = tuple(bands)
    if not bands or any(b not in BANDS for b in bands) or len(set(bands)) != len(bands):
        raise ValueError(f"bands must be distinct SDSS bands from {BANDS!r}, got {bands!r}")
    if not isinstance(size, u.Quantity):
        if isinstance(size, bool) or int(size) != size or size < 3:
            raise ValueError(f"size must be a number of pixels >= 3 or an angle, got {size!r}")
        size = int(size)
    if isinstance(retries, bool) or int(retries) != retries or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    return size, bands


def _prepare_folders(out: Path, frame_cache: str | os.PathLike | None, keep_frames: bool) -> Path:
    """Create the output folders, remove leftovers of killed runs; returns the frame cache folder."""
    cutouts_dir = out / "cutouts"
    cache_dir = Path(frame_cache) if frame_cache is not None else out / "frames"
    for folder in (out, cutouts_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if keep_frames:
        cache_dir.mkdir(parents=True, exist_ok=True)
    clean_partial_files(out, cutouts_dir)
    if frame_cache is None:
        clean_partial_files(cache_dir)
    else:  # a shared cache: another process may be writing there right now
        clean_partial_files(cache_dir, min_age=3600.0)
    return cache_dir


# Long for its docstring (every option documented, ~135 lines); the code is ~55 lines of steps.
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
    (see :data:`~astro_galpost.sdss.CUTOUT_STATUSES`), ``error`` (why a galaxy failed), ``file``
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
        The galaxies (a path is read with :func:`~astro_galpost.sdss.read_catalog`). Needed: an ID
        column (``id_column``) and ``ra``/``dec`` in degrees (any letter case).
        The field is taken from ``run``/``camcol``/``field`` (and ``rerun``,
        default 301) columns where present, else decoded from a PhotoObj
        ``objID`` column (:func:`~astro_galpost.sdss.decode_objid`: the field where the object is
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
        ``centroid_box``, ``max_shift``).

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
    >>> from astro_galpost.sdss import fetch_cutouts
    >>> from astropy.table import Table
    >>> galaxies = Table({"objID": [1237666407922335897], "ra": [38.385832],
    ...                   "dec": [-0.075917], "run": [2820], "camcol": [3], "field": [122]})
    >>> manifest = fetch_cutouts(galaxies, "sdss_cutouts", size=64)  # doctest: +REMOTE_DATA +SKIP
    >>> manifest["status"][0]  # doctest: +SKIP
    'ok'
    """
    from tqdm.auto import tqdm

    size, bands = _check_options(size, bands, retries)
    retry = {"retries": int(retries), "backoff": float(backoff),
             "max_backoff": float(max_backoff), "jitter": float(jitter)}
    if not isinstance(table, Table):
        table = read_catalog(table, derive_mbh=False)
    out = Path(out_dir)
    manifest = CutoutManifest(table, out, id_column=id_column,
                              signature=_cutout_signature(size, bands, data_release, cutout_options),
                              retry_failed=retry_failed, checkpoint_interval=checkpoint_interval)
    cache_dir = _prepare_folders(out, frame_cache, keep_frames)
    manifest.locate(data_release=data_release, radius=match_radius, timeout=timeout, retry=retry)
    fields = manifest.fields()
    cutter = _FieldCutter(manifest, size, bands, data_release, cutout_options,
                          frames={"cache_dir": cache_dir, "fetch": get_frames, "timeout": timeout,
                                  "keep": keep_frames, "compress": compress_frames, "retry": retry})
    todo = manifest.todo
    n_failed = sum(r["status"] == "failed" for r in todo)
    with tqdm(total=len(todo), initial=len(todo) - sum(map(len, fields.values())), unit="gal",
              desc="SDSS cutouts", disable=not progress, dynamic_ncols=True) as bar:
        try:
            manifest.save(force=True)
            for key, group in fields.items():
                cutter.cut(key, group)
                n_failed += sum(r["status"] == "failed" for r in group)
                bar.update(len(group))
                if n_failed:
                    bar.set_postfix(failed=n_failed, refresh=False)
                manifest.save()
        finally:
            manifest.save(force=True)
    return manifest.table()
