"""Aligned multi-band cutouts around galaxies from calibrated survey frames.

SDSS observes g, r and i through different CCDs at different times in a drift
scan, so the same galaxy lands on different pixels in each band's ``frame``
file (about 10 pixels apart in 2820/3/122). :func:`make_cutouts` cuts the
reference band with `~astropy.nddata.Cutout2D` and resamples the other bands
onto that same pixel grid through their WCS (`reproject.reproject_interp`,
from the ``data`` extra), so channel ``k`` of every pixel
sees the same patch of sky. Positions are refined on the reference band with
photutils centroids, the residual sky is removed, and pixels beyond a frame
edge stay NaN and masked rather than the cutout silently shifting.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.nddata import Cutout2D, NDData, NoOverlapError
from astropy.stats import mad_std, sigma_clipped_stats
from astropy.table import Table
from astropy.utils.data import get_readable_fileobj
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_area, proj_plane_pixel_scales

from ..utils.columns import column_data
from .inputs import DEFAULT_BANDS
from .units import common_unit, parse_bunit

__all__ = ["make_cutouts"]

# Cutouts at least this big get a Background2D mesh; smaller ones a single clipped median.
_MIN_MESH_SIZE = 64


def _reproject_interp():
    """`reproject.reproject_interp`, or an ImportError naming the extra that installs it."""
    try:
        from reproject import reproject_interp
    except ImportError as err:
        raise ImportError(
            "make_cutouts needs the 'reproject' package to put the bands on one pixel grid; "
            "it comes with the 'data' extra: pip install 'astro_galpost[data]'",
            name="reproject",
        ) from err
    return reproject_interp


# --------------------------------------------------------------------------------------
# frames
# --------------------------------------------------------------------------------------


class _Frame:
    """One band's full image (float64, NaN where masked), celestial WCS and unit."""

    __slots__ = ("band", "data", "wcs", "unit", "_planes")

    def __init__(self, band: str, data: np.ndarray, wcs: WCS, unit: u.UnitBase | None):
        self.band, self.data, self.wcs, self.unit = band, data, wcs, unit

    @property
    def planes(self) -> np.ndarray:
        """What is interpolated (computed once): ``(1, ny, nx)`` data, or with bad (NaN) pixels
        ``(2, ny, nx)`` data set to 0 there and a float map of them.

        Interpolation multiplies a NaN by a zero weight too, which would lose
        every output pixel next to a bad one; interpolating the two planes
        loses only those that draw on it.
        """
        if not hasattr(self, "_planes"):
            bad = ~np.isfinite(self.data)
            self._planes = (np.stack([np.where(bad, 0.0, self.data), bad.astype(np.float64)]) if bad.any()
                            else self.data[None])
        return self._planes


def _wcs_from_header(header: fits.Header) -> WCS:
    with warnings.catch_warnings():
        # SDSS headers use the deprecated RADECSYS keyword; astropy fixes it and says so.
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)


def _frame_source(path: Path) -> Path | io.BytesIO:
    """``path``, or its bytes decompressed once when it is compressed (``frame-*.fits.bz2``).

    astropy reads a compressed file through a stream that it seeks backwards in, which
    decompresses a bzip2 frame twice; reading it into memory first halves the time.
    """
    if path.suffix.lower() not in {".bz2", ".gz", ".xz"}:
        return path
    with get_readable_fileobj(str(path), encoding="binary") as f:
        return io.BytesIO(f.read())


def _load_frame(band: str, obj: Any) -> _Frame:
    """A frame from a path, HDU, NDData/CCDData or ``(array, WCS or Header)`` pair."""
    mask = None
    unit = None
    if isinstance(obj, str | os.PathLike):
        path = Path(obj)
        if not path.exists():
            raise FileNotFoundError(f"frame file for band {band} not found: {path}")
        try:
            with fits.open(_frame_source(path), memmap=False) as hdul:
                hdu = next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 2), None)
                if hdu is None:
                    raise ValueError(f"{path} holds no 2-D image for band {band}")
                data = np.array(hdu.data, dtype=np.float64)
                wcs, unit = _wcs_from_header(hdu.header), parse_bunit(hdu.header, path)
        except OSError as err:
            raise OSError(f"could not read frame file {path} for band {band}: {err}") from err
    elif isinstance(obj, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        data = np.array(obj.data, dtype=np.float64)
        wcs, unit = _wcs_from_header(obj.header), parse_bunit(obj.header, f"frame for band {band}")
    elif isinstance(obj, NDData):
        if obj.wcs is None:
            raise ValueError(f"frame for band {band} has no WCS")
        data = np.array(obj.data, dtype=np.float64)
        wcs = obj.wcs if isinstance(obj.wcs, WCS) else None
        if wcs is None:
            raise TypeError(f"frame for band {band}: only FITS (astropy.wcs.WCS) world coordinates are supported")
        mask = None if obj.mask is None else np.asarray(obj.mask, dtype=bool)
        unit = None if obj.unit is None else u.Unit(obj.unit)
    elif isinstance(obj, tuple) and len(obj) == 2:
        data, mask, unit = column_data(obj[0])  # a Quantity carries its unit, a masked array its mask
        wcs = obj[1] if isinstance(obj[1], WCS) else _wcs_from_header(obj[1])
    else:
        raise TypeError(
            f"frame for band {band} is a {type(obj).__name__}; give a FITS path, an image HDU, "
            "an NDData/CCDData with a WCS, or an (array, WCS) pair"
        )
    if data.ndim != 2:
        raise ValueError(f"frame for band {band} has shape {data.shape}; expected a 2-D image")
    if not wcs.has_celestial:
        raise ValueError(f"frame for band {band} has no celestial WCS")
    wcs = wcs.celestial
    if mask is not None:
        data[np.broadcast_to(mask, data.shape)] = np.nan
    unit = None if unit == u.dimensionless_unscaled else unit
    return _Frame(band, data, wcs, unit)


def _pixel_size(size: int | u.Quantity, wcs: WCS) -> int:
    """Cutout side in pixels from an int or an angle (at the reference frame's pixel scale)."""
    if isinstance(size, u.Quantity):
        if not size.unit.is_equivalent(u.deg):
            raise u.UnitsError(f"size must be a number of pixels or an angle, got {size}")
        scale = np.mean(proj_plane_pixel_scales(wcs)) * u.deg
        n = int(round(float((size / scale).decompose())))
    elif isinstance(size, int | np.integer) and not isinstance(size, bool):
        n = int(size)
    else:
        raise TypeError(f"size must be an int number of pixels or an angular Quantity, got {size!r}")
    if n < 3:
        raise ValueError(f"cutout size must be at least 3 pixels, got {n}")
    return n


# --------------------------------------------------------------------------------------
# per-galaxy steps
# --------------------------------------------------------------------------------------


def _stamp(data: np.ndarray, x: float, y: float, box: int):
    """Sky-subtracted ``box`` stamp at (x, y), its bad-pixel mask, rim noise and origin; None if unusable."""
    try:
        cut = Cutout2D(data, (x, y), (box, box), mode="partial", fill_value=np.nan)
    except NoOverlapError:
        return None
    stamp = cut.data
    bad = ~np.isfinite(stamp)
    if bad.mean() > 0.5:
        return None
    # Local sky from the stamp's rim, so a constant offset does not drag the centroid to the middle.
    rim = np.concatenate([stamp[0], stamp[-1], stamp[1:-1, 0], stamp[1:-1, -1]])
    rim = rim[np.isfinite(rim)]
    sky = np.median(rim) if rim.size else 0.0
    noise = mad_std(rim) if rim.size else 0.0
    return np.where(bad, 0.0, stamp - sky), bad, noise, _cutout_origin(cut)


def _refine_centroid(
    data: np.ndarray, x: float, y: float, box: int, max_shift: float
) -> tuple[float, float, bool]:
    """Light centre near (x, y) on the reference band: (x, y, failed).

    The stamp is first re-centred with the first moment
    (`~photutils.centroids.centroid_com` of the positive pixels, up to three
    times), then the centre is measured by a 2-D Gaussian fit
    (`~photutils.centroids.centroid_2dg`), the first moment being the fallback
    if the fit fails. No significant source in the stamp (S/N < 5), or a move of
    more than ``max_shift`` pixels (the box caught a neighbour, a star, a bad
    column), keeps the input position and flags the galaxy.
    """
    from photutils.centroids import centroid_2dg, centroid_com

    cx, cy = x, y
    for _ in range(3):
        got = _stamp(data, cx, cy, box)
        if got is None:
            return x, y, True
        stamp, bad, noise, (ox, oy) = got
        positive = np.where(stamp > 0, stamp, 0.0)
        signal = stamp[~bad].sum()
        if positive.sum() <= 0 or not signal > 5.0 * noise * np.sqrt((~bad).sum()):
            return x, y, True
        sx, sy = centroid_com(positive)
        step = np.hypot(ox + sx - cx, oy + sy - cy)
        cx, cy = ox + sx, oy + sy
        if step < 0.1:
            break
    got = _stamp(data, cx, cy, box)
    if got is None:
        return x, y, True
    stamp, bad, _, (ox, oy) = got
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fit-quality warnings: the check below handles failures
        try:
            sx, sy = centroid_2dg(stamp, mask=bad)
        except (ValueError, RuntimeError, np.linalg.LinAlgError):
            sx = sy = np.nan
    # A fit that wandered far from the light's first moment failed; keep the moment.
    if np.isfinite(sx) and np.isfinite(sy) and np.hypot(ox + sx - cx, oy + sy - cy) < 2.0:
        cx, cy = ox + sx, oy + sy
    if not (np.isfinite(cx) and np.isfinite(cy)) or np.hypot(cx - x, cy - y) > max_shift:
        return x, y, True
    return float(cx), float(cy), False


def _cutout_origin(cut: Cutout2D) -> tuple[int, int]:
    """Original-frame (x, y) of a cutout's pixel (0, 0); negative past the frame's lower edges.

    (``Cutout2D.origin_original`` is clipped to the frame in partial mode.)
    """
    return (
        int(cut.position_original[0] - cut.position_cutout[0]),
        int(cut.position_original[1] - cut.position_cutout[1]),
    )


def _subtract_background(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """Remove the residual sky: a Background2D mesh for big cutouts, a clipped median otherwise.

    The central disc (radius size/4) is excluded so the galaxy's own light does
    not count as sky; NaN pixels are excluded everywhere. Returns the image and
    the median background level removed.
    """
    from photutils.background import Background2D

    bad = ~np.isfinite(image)
    if bad.all():
        return image, np.nan
    yy, xx = np.mgrid[:size, :size]
    centre = (size - 1) / 2.0
    galaxy = np.hypot(xx - centre, yy - centre) < size / 4.0
    sky = ~(bad | galaxy)
    if sky.sum() < 20:
        sky = ~bad
    level: np.ndarray | float
    if size >= _MIN_MESH_SIZE:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyUserWarning)
                bkg = Background2D(
                    np.where(bad, 0.0, image), size // 4, mask=~sky, filter_size=3, exclude_percentile=50.0
                )
            level = bkg.background
        except ValueError:  # too few sky boxes (edge, crowded field): fall back to one level
            level = sigma_clipped_stats(image[sky], sigma=3.0)[1]
    else:
        level = sigma_clipped_stats(image[sky], sigma=3.0)[1]
    out = image - level
    return out, float(np.nanmedian(level))


def _off_frame(ref: _Frame, frame: _Frame, x0: int, y0: int, size: int) -> bool:
    """Whether a pixel of the reference cutout with origin (x0, y0) falls off ``frame`` (NaN there).

    Only the cutout's rim is mapped through the two WCSs: the frame is a
    rectangle and the map between the grids nearly affine, so a pixel off the
    frame implies a rim pixel off it. A frame reaches half a pixel beyond its
    outermost pixel centres, as in `reproject.reproject_interp`.
    """
    side = np.arange(size, dtype=np.float64)
    low, high = np.zeros(size), np.full(size, size - 1.0)
    x = x0 + np.concatenate([side, side, low, high])
    y = y0 + np.concatenate([low, high, side, side])
    if frame is not ref:
        x, y = frame.wcs.world_to_pixel_values(*ref.wcs.pixel_to_world_values(x, y))
    ny, nx = frame.data.shape
    return not bool(np.all((x >= -0.5) & (x <= nx - 0.5) & (y >= -0.5) & (y <= ny - 0.5)))


def _reproject(frame: _Frame, target_wcs: WCS, size: int) -> np.ndarray:
    """``frame`` on the ``size`` x ``size`` grid of ``target_wcs`` (bilinear); NaN off it and near bad pixels."""
    planes = frame.planes
    # no round-trip check of the pixel mapping: it guards all-sky projections, not a stamp's
    # neighbourhood, and would double the WCS work of each call
    out = _reproject_interp()((planes, frame.wcs), target_wcs, shape_out=(len(planes), size, size),
                              order="bilinear", roundtrip_coords=False, return_footprint=False)
    image = out[0]
    if len(planes) == 2:
        image[~(out[1] <= 1e-6)] = np.nan
    return image


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------


def make_cutouts(
    frames: Mapping[str, Any],
    coords: SkyCoord,
    size: int | u.Quantity,
    *,
    refine_centroid: bool = True,
    subtract_background: bool = False,
    band_order: Sequence[str] = DEFAULT_BANDS,
    reference_band: str | None = None,
    centroid_box: int = 11,
    max_shift: float = 3.0,
) -> tuple[np.ndarray, np.ndarray, Table]:
    """Cut aligned multi-band stamps around sky positions out of calibrated frames.

    Parameters
    ----------
    frames : mapping
        Band name → frame: a FITS path (e.g. SDSS
        ``frame-g-002820-3-0122.fits.bz2``; the first 2-D image HDU and its WCS
        and ``BUNIT`` are read), an image HDU, an `~astropy.nddata.NDData` /
        `~astropy.nddata.CCDData` with a FITS WCS (its ``mask`` is honoured), or
        an ``(array, Quantity or masked array, WCS or Header)`` pair. Opening an SDSS ``.bz2`` frame takes
        seconds: for many calls, open the frames once and pass HDUs or NDData.
    coords : `~astropy.coordinates.SkyCoord`
        Galaxy positions, scalar or array.
    size : int or `~astropy.units.Quantity`
        Cutout side, in pixels or as an angle (converted at the reference
        frame's pixel scale; SDSS: 0.396″/pixel, so 160 pixels ≈ 63″).
    refine_centroid : bool
        Re-centre each cutout on the light centroid of the reference band found
        in a ``centroid_box`` stamp around the catalog position.
    subtract_background : bool
        Subtract the residual sky of each band and cutout
        (`photutils.background.Background2D` on a ``size // 4`` mesh for
        cutouts of 64 pixels or more, a 3σ-clipped median otherwise; the central
        disc of radius ``size / 4`` is excluded as galaxy light). Off by
        default: calibrated frames such as SDSS's are sky-subtracted by their
        pipeline, and the mesh takes a large galaxy's outskirts for sky
        (exponential discs of effective radius 8, 12 and 16 pixels injected into
        SDSS frame 2820/3/122 kept 92%, 77% and 55% of their flux in 64-pixel
        cutouts, against 100%, 96% and 89% without it;
        ``benchmarks/injected_galaxies.py``). For frames that still hold their sky.
    band_order : sequence of str
        Bands to cut, in output channel order (keys of ``frames``).
    reference_band : str, optional
        The band whose pixel grid all bands are put on and on which centroids
        are measured; by default the first of ``band_order``.
    centroid_box : int
        Side of the stamp the centroid is measured in, in pixels.
    max_shift : float
        Largest centroid shift accepted, in pixels. A bigger one (the box caught
        a neighbour, or there is no source) leaves the cutout on the input
        position and sets ``centroid_failed``.

    Returns
    -------
    cube : `~numpy.ndarray`
        float32, ``(N, n_bands, size, size)``, in the frames' unit (nanomaggies
        for SDSS frames); NaN where there is no data.
    mask : `~numpy.ndarray`
        bool, same shape, True where a pixel is NaN (off a frame edge, or
        masked in the input frame).
    table : `~astropy.table.Table`
        One row per position: ``ra``, ``dec`` (input, deg); ``x_input``,
        ``y_input`` (its 0-based pixel position in the reference frame);
        ``x_centroid``, ``y_centroid`` and ``ra_centroid``, ``dec_centroid``
        (the position the cutout is centred on); ``shift_x``, ``shift_y``,
        ``shift`` (pixels); ``x_cutout``, ``y_cutout`` (that position inside
        the cutout, within half a pixel of ``(size - 1) / 2``);
        ``frac_masked``; ``bkg_<band>`` (median background removed); flags
        ``edge`` (some pixels fall off a frame), ``off_frame`` (no reference
        pixels at all) and ``centroid_failed``. ``meta`` records the bands,
        reference band, unit, pixel scale and resampling method.

    Raises
    ------
    ImportError
        Without the ``reproject`` package (the ``data`` extra).
    ValueError
        For frames whose pixel scales differ by more than 1% (see Notes).

    Notes
    -----
    The reference band's pixels are copied exactly (`~astropy.nddata.Cutout2D`
    with ``mode="partial"``); a cutout is centred to the nearest whole pixel,
    and the exact position is in ``x_cutout``/``y_cutout``. Other bands are
    interpolated bilinearly onto that grid by `reproject.reproject_interp`
    (pixels that draw on a bad pixel are NaN and masked), which smooths their
    noise slightly; interpolation preserves
    surface brightness, not flux, so frames of a different pixel scale (by
    more than 1%) are refused: reproject them flux-conservingly first. Cutouts keep the reference frame's
    orientation (SDSS frames are not north-up). Pixels beyond a frame edge are
    NaN and masked; no cutout is shifted to stay inside a frame.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.coordinates import SkyCoord
    >>> from astropy.wcs import WCS
    >>> wcs = WCS(naxis=2)
    >>> wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> wcs.wcs.crval, wcs.wcs.crpix = [150.0, 2.0], [50.0, 50.0]
    >>> wcs.wcs.cdelt = [-0.396 / 3600, 0.396 / 3600]
    >>> frame = (np.ones((100, 100)), wcs)
    >>> cube, mask, info = make_cutouts({"g": frame, "r": frame, "i": frame},
    ...                                 SkyCoord(150.0, 2.0, unit="deg"), 16,
    ...                                 refine_centroid=False, subtract_background=False)
    >>> cube.shape, bool(mask.any())
    ((1, 3, 16, 16), False)
    """
    _reproject_interp()  # fail early without reproject
    band_order, reference_band = _check_arguments(frames, coords, band_order, reference_band, centroid_box)
    loaded, unit = _load_frames(frames, band_order)
    ref = loaded[reference_band]
    _check_pixel_scales(loaded, ref)
    npix = _pixel_size(size, ref.wcs)
    coords = coords.reshape(1) if coords.isscalar else coords.ravel()
    n = len(coords)
    cube = np.full((n, len(band_order), npix, npix), np.nan, np.float32)
    cols: dict[str, np.ndarray] = {
        name: np.full(n, np.nan)
        for name in ("x_input", "y_input", "x_centroid", "y_centroid", "x_cutout", "y_cutout", "frac_masked")
    }
    cols |= {f"bkg_{b}": np.full(n, np.nan) for b in band_order}
    cols |= {name: np.zeros(n, bool) for name in ("edge", "off_frame", "centroid_failed")}
    xin, yin = ref.wcs.world_to_pixel(coords)
    cols["x_input"] = np.atleast_1d(np.asarray(xin, float))
    cols["y_input"] = np.atleast_1d(np.asarray(yin, float))
    steps = {"refine_centroid": refine_centroid, "centroid_box": int(centroid_box), "max_shift": max_shift,
             "subtract_background": subtract_background}
    for k in range(n):
        _cut_one(k, cube, cols, [loaded[b] for b in band_order], ref, npix, **steps)
    table = _cutout_table(coords, cols, ref.wcs, band_order, unit)
    table.meta.update(
        bands=list(band_order),
        reference_band=reference_band,
        unit=None if unit is None else unit.to_string(),
        pixel_scale_arcsec=float(np.mean(proj_plane_pixel_scales(ref.wcs)) * 3600.0),
        size=npix,
        resample="reproject_interp (bilinear)",
    )
    return cube, ~np.isfinite(cube), table


def _check_arguments(frames: Mapping[str, Any], coords: Any, band_order: Sequence[str], reference_band: str | None,
                     centroid_box: Any) -> tuple[tuple[str, ...], str]:
    """Validated ``band_order`` and ``reference_band`` for `make_cutouts`."""
    band_order = tuple(band_order)
    if not band_order:
        raise ValueError("band_order names no bands")
    missing = [b for b in band_order if b not in frames]
    if missing:
        raise KeyError(f"no frame given for band(s) {', '.join(missing)} (frames has {', '.join(map(str, frames))})")
    reference_band = band_order[0] if reference_band is None else reference_band
    if reference_band not in band_order:
        raise ValueError(f"reference_band {reference_band!r} is not in band_order {band_order}")
    if not isinstance(coords, SkyCoord):
        raise TypeError(f"coords must be an astropy SkyCoord, got {type(coords).__name__}")
    if not (isinstance(centroid_box, int | np.integer) and centroid_box >= 3):
        raise ValueError(f"centroid_box must be an int of at least 3 pixels, got {centroid_box!r}")
    return band_order, reference_band


def _load_frames(frames: Mapping[str, Any], band_order: tuple[str, ...]) -> tuple[dict[str, _Frame], u.UnitBase | None]:
    """The frames of ``band_order``, converted to one common unit."""
    loaded = {b: _load_frame(b, frames[b]) for b in band_order}
    unit, factors = common_unit([loaded[b].unit for b in band_order])
    for b, factor in zip(band_order, factors):
        if factor != 1.0:
            loaded[b].data = loaded[b].data * factor
    return loaded, unit


def _check_pixel_scales(frames: dict[str, _Frame], ref: _Frame, rtol: float = 0.01) -> None:
    """Refuse frames whose pixels differ in area from the reference band's: interpolation keeps
    surface brightness, so their fluxes per pixel would be off by the ratio of the areas."""
    ref_scale = float(np.sqrt(proj_plane_pixel_area(ref.wcs))) * 3600.0
    for band, frame in frames.items():
        scale = float(np.sqrt(proj_plane_pixel_area(frame.wcs))) * 3600.0
        if abs(scale / ref_scale - 1.0) > rtol:
            raise ValueError(
                f"the {band} frame has pixels of {scale:.4g} arcsec and the reference band {ref.band} "
                f"{ref_scale:.4g} arcsec: interpolating it would keep surface brightness and put its fluxes "
                f"per pixel off by {(ref_scale / scale) ** 2:.3g}; reproject it flux-conservingly "
                "(reproject.reproject_exact) to the reference pixel scale first")


def _cut_one(k: int, cube: np.ndarray, cols: dict[str, np.ndarray], frames: list[_Frame], ref: _Frame, npix: int, *,
             refine_centroid: bool, centroid_box: int, max_shift: float, subtract_background: bool) -> None:
    """Fill ``cube[k]`` and row ``k`` of ``cols`` for the galaxy at ``cols["x_input"][k], cols["y_input"][k]``."""
    x, y = cols["x_input"][k], cols["y_input"][k]
    if refine_centroid:
        x, y, cols["centroid_failed"][k] = _refine_centroid(ref.data, x, y, centroid_box, max_shift)
    cols["x_centroid"][k], cols["y_centroid"][k] = x, y
    try:
        ref_cut = Cutout2D(ref.data, (x, y), (npix, npix), wcs=ref.wcs, mode="partial", fill_value=np.nan)
    except NoOverlapError:
        cols["off_frame"][k] = cols["edge"][k] = True
        cols["centroid_failed"][k] |= refine_centroid
        return
    x0, y0 = _cutout_origin(ref_cut)
    cols["x_cutout"][k], cols["y_cutout"][k] = x - x0, y - y0
    for j, frame in enumerate(frames):
        cols["edge"][k] |= _off_frame(ref, frame, x0, y0, npix)
        if frame is ref:
            image = np.array(ref_cut.data, dtype=np.float64)
        else:
            image = _reproject(frame, ref_cut.wcs, npix)
        if subtract_background:
            image, cols[f"bkg_{frame.band}"][k] = _subtract_background(image, npix)
        cube[k, j] = image
    cols["frac_masked"][k] = float(np.mean(~np.isfinite(cube[k])))


def _cutout_table(coords: SkyCoord, cols: dict[str, np.ndarray], wcs: WCS, band_order: tuple[str, ...],
                  unit: u.UnitBase | None) -> Table:
    """The per-galaxy table of `make_cutouts` (positions, shifts, backgrounds, flags)."""
    ra_c, dec_c = wcs.pixel_to_world_values(cols["x_centroid"], cols["y_centroid"])
    icrs = coords.icrs
    table = Table()
    table["ra"] = icrs.ra.deg * u.deg
    table["dec"] = icrs.dec.deg * u.deg
    for name in ("x_input", "y_input", "x_centroid", "y_centroid"):
        table[name] = cols[name] * u.pix
    table["ra_centroid"] = np.atleast_1d(ra_c) * u.deg
    table["dec_centroid"] = np.atleast_1d(dec_c) * u.deg
    shift_x, shift_y = cols["x_centroid"] - cols["x_input"], cols["y_centroid"] - cols["y_input"]
    table["shift_x"] = shift_x * u.pix
    table["shift_y"] = shift_y * u.pix
    table["shift"] = np.hypot(shift_x, shift_y) * u.pix
    table["x_cutout"] = cols["x_cutout"] * u.pix
    table["y_cutout"] = cols["y_cutout"] * u.pix
    table["frac_masked"] = cols["frac_masked"]
    for band in band_order:
        table[f"bkg_{band}"] = cols[f"bkg_{band}"] if unit is None else cols[f"bkg_{band}"] * unit
    for name in ("edge", "off_frame", "centroid_failed"):
        table[name] = cols[name]
    return table
