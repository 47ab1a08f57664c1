"""SDSS imaging frames: which field holds a galaxy, and the calibrated frames of a field.

:func:`decode_objid` reads the imaging run, camcol and field out of a
photometric ``objID``; :func:`field_frames` returns the calibrated frames
(``frame-<band>-RUN-CAMCOL-FIELD.fits.bz2``, nanomaggies) of a field, from a
local cache or downloaded through `astroquery.sdss.SDSS.get_images` (and
cached, atomically).
"""

from __future__ import annotations

import bz2
import io
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

from ..utils.atomic import write_atomic
from .files import PART_SUFFIX
from .retry import call_with_retries

__all__ = ["FRAMES_RERUN", "decode_objid", "field_frames"]

#: Rerun of every DR8+ calibrated frame.
FRAMES_RERUN = 301


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
    >>> from astro_galpost.sdss import decode_objid
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
    exist. Its cache is off: :func:`~astro_galpost.sdss.fetch_cutouts` keeps its own copy.
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
    write_atomic(path, lambda tmp: tmp.write_bytes(data), overwrite=True, suffix=PART_SUFFIX)


def _cached_frames(key: tuple[int, int, int, int], bands: tuple[str, ...], cache_dir: Path) -> dict[str, Any]:
    """Image HDU per band of the frames of field ``key`` found in ``cache_dir`` (unreadable ones skipped)."""
    cached: dict[str, Path] = {}
    for band in bands:
        for compressed in (True, False):
            path = cache_dir / _frame_name(band, key, compressed)
            if path.is_file():
                cached[band] = path
                break
    frames: dict[str, Any] = {}
    if not cached:
        return frames
    with ThreadPoolExecutor(min(len(cached), 3)) as pool:  # bz2 releases the GIL
        futures = {b: pool.submit(_read_frame_file, p) for b, p in cached.items()}
    for band, future in futures.items():
        try:
            frames[band] = _check_frame(_frame_image(future.result(), str(cached[band])),
                                        band, key, str(cached[band]))
        except Exception as exc:  # noqa: BLE001 - a damaged cache file is fetched again
            warnings.warn(f"cached frame {cached[band]} is unreadable ({exc}); downloading "
                          "it again", AstropyUserWarning, stacklevel=4)
    return frames


def field_frames(key: tuple[int, int, int, int], bands: tuple[str, ...], cache_dir: Path, *,
                 fetch: Callable[..., Any] | None = None, timeout: float = 120.0,
                 data_release: int = 17, keep: bool = True, compress: bool = True,
                 retry: dict[str, Any] | None = None) -> dict[str, Any]:
    """The calibrated frames of one field: from the frame cache, else downloaded (and cached).

    Parameters
    ----------
    key : tuple of int
        ``(run, rerun, camcol, field)``.
    bands : tuple of str
        SDSS bands wanted.
    cache_dir : `~pathlib.Path`
        Folder of cached frames, named as on the SDSS server
        (``frame-g-002820-3-0122.fits.bz2``, or ``.fits``).
    fetch : callable, optional
        Transport ``fetch(run=, rerun=, camcol=, field=, band=, data_release=)``
        returning an `~astropy.io.fits.HDUList` (or a list holding one); default
        `astroquery.sdss.SDSS.get_images` with ``timeout`` seconds per request.
    timeout : float, optional
        Seconds per request of the default transport.
    data_release : int, optional
        SDSS data release.
    keep, compress : bool, optional
        Write downloaded frames to ``cache_dir``, bzip2-compressed.
    retry : dict, optional
        ``retries``, ``backoff``, ``max_backoff``, ``jitter`` of
        :func:`~astro_galpost.sdss.retry.call_with_retries` (default: 4 retries,
        5 s backoff, at most 120 s, 10% jitter).

    Returns
    -------
    frames : dict
        Image HDU (the frame's primary HDU) per band.

    Raises
    ------
    Exception
        When a frame cannot be had: the transport's last error once the retries
        are spent, `LookupError` if SDSS returned no file, `ValueError` if the
        file's header names another band, run or camcol.
    """
    run, rerun, camcol, field = key
    label = f"{run}/{camcol}/{field}"
    retry = {"retries": 4, "backoff": 5.0, "max_backoff": 120.0, "jitter": 0.1, **(retry or {})}
    if fetch is None:
        def fetch(**kwargs: Any) -> Any:
            return _get_sdss_frame(timeout=timeout, **kwargs)

    frames = _cached_frames(key, bands, cache_dir)
    for band in bands:
        if band in frames:
            continue
        what = f"frame {band} of field {label} (rerun {rerun})"
        hdul = call_with_retries(
            lambda band=band, what=what: _frame_hdulist(fetch(run=run, rerun=rerun, camcol=camcol, field=field,
                                         band=band, data_release=data_release), what),
            what=f"SDSS {what}", **retry)
        image = _check_frame(_frame_image(hdul, what), band, key, what)
        if keep:
            _write_frame_file(hdul, cache_dir / _frame_name(band, key, compress))
        frames[band] = image
    return frames
