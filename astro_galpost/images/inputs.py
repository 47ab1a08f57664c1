"""Turn the many forms galaxy images come in into one ``(N, 3, H, W)`` array.

Users hold cutouts as numpy arrays (channel-first or channel-last), as lists of
`~astropy.nddata.NDData` / `~astropy.nddata.CCDData` (one cube per galaxy, or one
2-D image per band), as FITS cubes, or as SkyServer-style JPEG/PNG colour
composites. :func:`as_image_array` and :func:`load_images` reduce all of these to
a float32 array in ``g, r, i`` order plus a mask of bad pixels, which is what
the preprocessing and the image encoders read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.io import fits
from astropy.nddata import NDData

from ..utils.columns import column_data
from .resampling import resample_images, size_pair
from .units import common_unit, parse_bunit

__all__ = ["DEFAULT_BANDS", "as_image_array", "colour_composites", "load_images", "usable_images"]

#: Band order of every image array in this package (the seed paper's gri).
DEFAULT_BANDS: tuple[str, str, str] = ("g", "r", "i")

# FITS is recognised by name; anything else is handed to Pillow.
_FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fits.bz2", ".fits.fz", ".fz")

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------
# one galaxy at a time
# --------------------------------------------------------------------------------------


class _Image:
    """One galaxy: (3, H, W) float64 data, bool mask and unit (internal)."""

    __slots__ = ("data", "mask", "unit")

    def __init__(self, data: np.ndarray, mask: np.ndarray, unit: u.UnitBase | None):
        self.data, self.mask, self.unit = data, mask, unit


def _split(obj: Any) -> tuple[np.ndarray, np.ndarray | None, u.UnitBase | None]:
    """Data, mask (None when there is none) and unit of an NDData, Quantity, masked array or plain array."""
    if isinstance(obj, NDData):
        mask = None if obj.mask is None else np.asarray(obj.mask, dtype=bool)
        unit = None if obj.unit is None else u.Unit(obj.unit)
        obj = obj.data
    else:
        mask = np.ma.getmaskarray(obj) if isinstance(obj, np.ma.MaskedArray) else None
        unit = getattr(obj, "unit", None)
    try:
        data, own_mask, _ = column_data(obj if mask is None else np.ma.getdata(obj))
    except TypeError as err:
        raise TypeError(f"image data of type {type(obj).__name__} is not numeric") from err
    if mask is None and own_mask.any():  # an astropy Masked Quantity or array
        mask = own_mask
    unit = None if unit is None or unit == u.dimensionless_unscaled else u.Unit(unit)
    if mask is not None and mask.shape != data.shape:
        try:
            mask = np.broadcast_to(mask, data.shape).copy()
        except ValueError:
            raise ValueError(f"mask of shape {mask.shape} does not match image of shape {data.shape}") from None
    return data, mask, unit


def _band_axis_error(shape: tuple[int, ...], what: str) -> ValueError:
    """A 'wrong number of bands' error naming the count along the likelier band axis."""
    # The band axis is whichever end axis is shorter (images are much wider than 3-5 bands).
    first, last = shape[-3], shape[-1]
    count, where = (first, "first") if first <= last else (last, "last")
    return ValueError(
        f"{what} has {count} bands along its {where} image axis (shape {shape}); "
        f"expected exactly 3 (g, r, i) in (3, H, W) or (H, W, 3) order"
    )


def _to_channel_first(data: np.ndarray, mask: np.ndarray | None, what: str):
    """Put a 3-D single-galaxy array into (3, H, W) order (channel-last if (H, W, 3), H != 3)."""
    if data.shape[0] == 3:
        return data, mask
    if data.shape[-1] == 3:
        return np.moveaxis(data, -1, 0), (None if mask is None else np.moveaxis(mask, -1, 0))
    raise _band_axis_error(data.shape, what)


def _from_cube(obj: Any, what: str) -> _Image:
    """One galaxy given as a (3, H, W) (or (H, W, 3)) array, Quantity or NDData."""
    data, mask, unit = _split(obj)
    if data.ndim != 3:
        raise ValueError(
            f"{what} has {data.ndim} dimensions (shape {data.shape}); expected a 3-D (3, H, W) cube, "
            "or one 2-D image per band"
        )
    data, mask = _to_channel_first(data, mask, what)
    return _Image(data, np.zeros(data.shape, bool) if mask is None else mask, unit)


def _from_bands(planes: Sequence[Any], what: str) -> _Image:
    """One galaxy given as one 2-D image per band, in band order."""
    if len(planes) != 3:
        raise ValueError(f"{what} has {len(planes)} bands; expected exactly 3 (g, r, i)")
    parts = [_split(plane) for plane in planes]
    shapes = {p[0].shape for p in parts}
    for (data, _, _), band in zip(parts, range(3)):
        if data.ndim != 2:
            raise ValueError(f"{what}: band {band} image has shape {data.shape}; expected a 2-D image per band")
    if len(shapes) != 1:
        raise ValueError(f"{what}: the band images differ in size ({', '.join(map(str, sorted(shapes)))})")
    unit, factors = common_unit([p[2] for p in parts])
    data = np.stack([p[0] * f for p, f in zip(parts, factors)])
    mask = np.stack([np.zeros(p[0].shape, bool) if p[1] is None else p[1] for p in parts])
    return _Image(data, mask, unit)


def _from_item(item: Any, bands: Sequence[str], what: str) -> _Image:
    """One galaxy in any per-galaxy form (cube, per-band mapping or per-band list)."""
    if isinstance(item, Mapping):
        missing = [b for b in bands if b not in item]
        if missing:
            raise ValueError(
                f"{what} has bands {', '.join(map(str, item))}; missing {', '.join(missing)} "
                f"(need {', '.join(bands)})"
            )
        return _from_bands([item[b] for b in bands], what)
    if isinstance(item, list | tuple):
        return _from_bands(item, what)
    return _from_cube(item, what)


def _read_fits_cube(path: Path) -> list[_Image]:
    """Galaxies in a FITS cube: (N, 3, H, W) or (3, H, W); BUNIT and a MASK HDU honoured."""
    _check_exists(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.is_image), None)
            if hdu is None:
                raise ValueError(f"{path} holds no image data")
            data = np.array(hdu.data, dtype=np.float64)
            unit = parse_bunit(hdu.header, path)
            order = _band_order(hdu.header, path)
            mask = None
            if "MASK" in hdul and hdul["MASK"].data is not None:
                mask = np.asarray(hdul["MASK"].data) != 0
    except (OSError, TypeError) as err:
        raise OSError(f"could not read FITS file {path}: {err}") from err
    if mask is not None and mask.shape != data.shape:
        raise ValueError(f"{path}: MASK extension has shape {mask.shape}, image has {data.shape}")
    if data.ndim == 3:
        data, mask = data[None], (None if mask is None else mask[None])
    if data.ndim != 4:
        raise ValueError(
            f"{path} holds a {data.ndim}-D image of shape {data.shape}; expected (N, 3, H, W) or (3, H, W)"
        )
    if data.shape[1] != 3:
        raise ValueError(f"{path} holds {data.shape[1]} bands (shape {data.shape}); expected 3 (g, r, i) on axis 1")
    if order is not None:  # planes in the order the header names (e.g. fetch_cutouts(bands="irg"))
        data, mask = data[:, order], (None if mask is None else mask[:, order])
    return [
        _Image(data[k], np.zeros(data.shape[1:], bool) if mask is None else mask[k], unit) for k in range(len(data))
    ]


def _band_order(header: fits.Header, path: Path) -> list[int] | None:
    """The plane of each of g, r, i from the header's ``BANDS`` (``"i,r,g"``) or ``BAND1``..``BAND3``,
    None when it names none (the planes are then taken as g, r, i)."""
    named = str(header.get("BANDS", "")).replace(" ", "").split(",") if header.get("BANDS") else \
        [str(header[f"BAND{k}"]).strip() for k in (1, 2, 3) if f"BAND{k}" in header]
    if not any(named):
        return None
    if sorted(named) != sorted(DEFAULT_BANDS):
        raise ValueError(f"{path}: its planes are the bands {', '.join(named)} (header BANDS/BANDk); "
                         f"the images must be {', '.join(DEFAULT_BANDS)}")
    return [named.index(band) for band in DEFAULT_BANDS]


def _check_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if not path.is_file():
        raise OSError(f"image path is not a file: {path}")


def _finish(images: list[_Image], n_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Stack galaxies, unify units, flag non-finite pixels and zero the bad ones."""
    if not images:
        raise ValueError("no images given")
    if n_rows is not None and len(images) != n_rows:
        raise ValueError(f"{len(images)} images given for a table of {n_rows} rows")
    shapes = [im.data.shape for im in images]
    if len(set(shapes)) != 1:
        first = shapes[0]
        k = next(i for i, s in enumerate(shapes) if s != first)
        raise ValueError(
            f"images differ in size: image 0 is {first[1]}x{first[2]} but image {k} is "
            f"{shapes[k][1]}x{shapes[k][2]}; cut or resample them to one size first"
        )
    _, factors = common_unit([im.unit for im in images])
    data = np.stack([im.data * f if f != 1.0 else im.data for im, f in zip(images, factors)])
    mask = np.stack([im.mask for im in images])
    # Cast first: float64 values beyond float32's range become inf and must be flagged too.
    with np.errstate(over="ignore"):
        out = data.astype(np.float32)
    mask |= ~np.isfinite(out)
    out[mask] = 0.0
    return out, mask


# --------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------


def _plain_array(images: np.ndarray, n_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Fast path for a plain numeric 4-D array: one float32 copy, no per-galaxy loop.

    Training sets are large; this avoids the float64 round trip of the general path.
    """
    if images.shape[1] != 3:
        if images.shape[-1] != 3:
            raise _band_axis_error(images.shape, "image array")
        images = np.moveaxis(images, -1, 1)
    if n_rows is not None and len(images) != n_rows:
        raise ValueError(f"{len(images)} images given for a table of {n_rows} rows")
    if len(images) == 0:
        raise ValueError("no images given")
    with np.errstate(over="ignore"):
        out = np.array(images, dtype=np.float32, order="C")
    mask = ~np.isfinite(out)
    out[mask] = 0.0
    return out, mask


def _is_pathlike(obj: Any) -> bool:
    return isinstance(obj, str | os.PathLike)


def usable_images(images: np.ndarray, mask: np.ndarray, max_masked: float = 0.5) -> np.ndarray:
    """Which images hold a galaxy an encoder can measure: ``(N,)`` bool.

    An image is usable when it has an unmasked, finite, non-zero pixel and, in
    every band, less than ``max_masked`` of the pixels within a quarter of the
    side of its centre are masked (or not finite). A cutout at a frame's edge
    keeps its galaxy while the missing part lies outside that disc; one whose
    galaxy is cut in half would give colours, sizes and shapes of half a
    galaxy (a round one measured 0.38 in ellipticity and 0.30 dex fainter).

    Parameters
    ----------
    images : `~numpy.ndarray`
        ``(N, 3, H, W)`` pixels, as `as_image_array` returns.
    mask : `~numpy.ndarray`
        bool, ``(N, 3, H, W)``, True for pixels to ignore.
    max_masked : float, optional
        The masked fraction of the central disc from which an image is not usable.

    Returns
    -------
    `~numpy.ndarray`
        bool ``(N,)``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.images import usable_images
    >>> images, mask = np.ones((2, 3, 16, 16)), np.zeros((2, 3, 16, 16), bool)
    >>> mask[1, :, :, :8] = True  # the left half of the second image off the frame
    >>> usable_images(images, mask).tolist()
    [True, False]
    """
    bad = np.asarray(mask, bool) | ~np.isfinite(images)
    good = ~bad & (np.asarray(images) != 0)
    h, w = bad.shape[-2:]
    yy, xx = np.mgrid[:h, :w]
    centre = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) <= min(h, w) / 4
    masked_centre = bad[..., centre].mean(axis=-1).max(axis=-1)
    return good.reshape(len(good), -1).any(axis=1) & (masked_centre < max_masked)


def as_image_array(
    images: Any, n_rows: int | None = None, bands: Sequence[str] = DEFAULT_BANDS
) -> tuple[np.ndarray, np.ndarray]:
    """Validate galaxy images and return them as one ``(N, 3, H, W)`` float32 array.

    Parameters
    ----------
    images : array-like, list, str or `~pathlib.Path`
        One of

        - a 4-D array (or `~astropy.units.Quantity`, or masked array) of shape
          ``(N, 3, H, W)`` (channel-first) or ``(N, H, W, 3)`` (channel-last).
          The rule: axis 1 of length 3 means channel-first; otherwise a last
          axis of length 3 means channel-last. An ambiguous ``(N, 3, H, 3)``
          array is therefore read as channel-first;
        - an `~astropy.nddata.NDData` / `~astropy.nddata.CCDData` holding such a
          4-D array;
        - a list with one entry per galaxy, each a ``(3, H, W)`` (or
          ``(H, W, 3)``) array or NDData, or a mapping ``band -> 2-D image`` (keys
          ``bands``; other keys are ignored), or a list/tuple of three 2-D images
          in ``bands`` order;
        - a path to a FITS file holding an ``(N, 3, H, W)`` or ``(3, H, W)`` cube
          in its first image HDU (``BUNIT`` read; an extension named ``MASK``,
          nonzero where bad, is honoured); a list of paths is read with
          :func:`load_images`.
    n_rows : int, optional
        The number of catalog rows the images belong to; a different number
        of images raises `ValueError`.
    bands : sequence of str
        Band names, in output order, used to pick entries of per-band mappings.

    Returns
    -------
    data : `~numpy.ndarray`
        float32, shape ``(N, 3, H, W)``, bands in ``bands`` order; bad pixels are 0.
    mask : `~numpy.ndarray`
        bool, same shape, True where a pixel is bad: NaN or infinite, or masked
        by an NDData ``.mask`` or masked array.

    Raises
    ------
    ValueError
        Wrong number of dimensions, a band count other than 3, images of
        different sizes, or a number of images different from ``n_rows``.
    astropy.units.UnitConversionError
        Images with units that cannot be put on one scale.
    FileNotFoundError
        A path that does not exist.

    Notes
    -----
    Units: when every image's unit converts to nanomaggies (maggies,
    nanomaggies, or a spectral flux density through the AB zero point), all are
    converted to nanomaggies; otherwise all must convert to the first image's
    unit (e.g. all ``count``). Images without a unit cannot be mixed with images
    that have one. The unit itself is not returned: image encoders rescale the
    pixels anyway, and only need them to be on one scale.

    Examples
    --------
    >>> import numpy as np
    >>> cube = np.zeros((2, 8, 8, 3))            # channel-last
    >>> cube[0, 0, 0, 1] = np.nan
    >>> data, mask = as_image_array(cube, n_rows=2)
    >>> data.shape, data.dtype, int(mask.sum()), bool(mask[0, 1, 0, 0])
    ((2, 3, 8, 8), dtype('float32'), 1, True)
    """
    bands = tuple(bands)
    if len(bands) != 3:
        raise ValueError(f"bands must name 3 bands, got {len(bands)}: {bands}")
    if _is_pathlike(images):
        return _finish(_read_fits_cube(Path(images)), n_rows)
    if type(images) is np.ndarray and images.ndim == 4 and images.dtype.kind in "fiu":
        return _plain_array(images, n_rows)
    if isinstance(images, NDData) or isinstance(images, np.ndarray):
        return _finish(_from_array(images), n_rows)
    return _finish(_from_sequence(images, bands), n_rows)


def _from_array(images: Any) -> list[_Image]:
    """The galaxies of a 4-D array, Quantity, masked array or NDData (channel-first or channel-last)."""
    data, mask, unit = _split(images)
    if data.ndim != 4:
        raise ValueError(
            f"image array has {data.ndim} dimensions (shape {data.shape}); expected 4: "
            "(N, 3, H, W) or (N, H, W, 3)" + ("; for one galaxy use images[None]" if data.ndim == 3 else "")
        )
    if data.shape[1] != 3:
        if data.shape[-1] != 3:
            raise _band_axis_error(data.shape, "image array")
        data = np.moveaxis(data, -1, 1)
        mask = None if mask is None else np.moveaxis(mask, -1, 1)
    mask = np.zeros(data.shape, bool) if mask is None else mask
    return [_Image(data[k], mask[k], unit) for k in range(len(data))]


def _from_sequence(images: Any, bands: tuple[str, ...]) -> list[_Image]:
    """The galaxies of a list: one entry per galaxy (cube, per-band mapping or list), or image paths."""
    if isinstance(images, Mapping):
        raise TypeError(
            "a single mapping of bands is one galaxy; pass a list with one entry per galaxy, e.g. [images]"
        )
    if not isinstance(images, Sequence):
        raise TypeError(
            f"cannot read images from a {type(images).__name__}; give an array (N, 3, H, W), "
            "a list of NDData or per-band mappings, or a FITS path"
        )
    if len(images) and all(_is_pathlike(item) for item in images):
        return [_Image(d, np.zeros(d.shape, bool), None) for d in load_images(list(images))]
    return [_from_item(item, bands, f"image {k}") for k, item in enumerate(images)]


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(_FITS_SUFFIXES)


def _read_fits_plane(path: Path) -> NDData:
    """The first 2-D image HDU of a FITS file as NDData with its BUNIT."""
    _check_exists(path)
    try:
        with fits.open(path, memmap=False) as hdul:
            hdu = next((h for h in hdul if getattr(h, "data", None) is not None and h.is_image), None)
            if hdu is None:
                raise ValueError(f"{path} holds no image data")
            data, unit = np.array(hdu.data, dtype=np.float64), parse_bunit(hdu.header, path)
    except (OSError, TypeError) as err:
        raise OSError(f"could not read FITS file {path}: {err}") from err
    if data.ndim != 2:
        raise ValueError(f"{path} holds a {data.ndim}-D image of shape {data.shape}; expected one 2-D band image")
    return NDData(data, unit=unit)


def _read_composite(path: Path) -> np.ndarray:
    """An RGB composite as a (3, H, W) float array in g, r, i order, scaled 0-1."""
    from PIL import Image, UnidentifiedImageError

    _check_exists(path)
    try:
        with Image.open(path) as img:
            if img.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):  # not three colours of 8 bits
                raise ValueError(f"{path} is a {img.mode!r} image (e.g. grey or 16-bit), not an 8-bit colour "
                                 "composite: give gri images as FITS (one cube, or one file per band)")
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise OSError(f"could not read image file {path} (not a FITS, JPEG or PNG image?): {err}") from err
    # SDSS composites (Lupton et al. 2004) map i -> R, r -> G, g -> B: reverse for g, r, i.
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[::-1])


def load_images(paths: Any, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Read galaxy images from files into a ``(N, 3, H, W)`` float32 array.

    Parameters
    ----------
    paths : str, `~pathlib.Path` or sequence
        One entry per galaxy (a single path is one file). Each entry is

        - a FITS file (``.fits``, ``.fit``, ``.fts``, optionally ``.gz``/``.bz2``)
          holding a ``(3, H, W)`` g, r, i cube (a file with an ``(N, 3, H, W)``
          cube contributes N galaxies); ``BUNIT`` is honoured as in
          :func:`as_image_array`;
        - a tuple/list of three 2-D FITS files, or a mapping ``{"g": ..., "r":
          ..., "i": ...}``, one per band;
        - any other image Pillow reads (JPEG, PNG, ...): an RGB colour composite
          in the SDSS SkyServer convention (i → red, r → green, g → blue; Lupton
          et al. 2004), returned as g, r, i channels scaled to 0-1.
    size : int or (int, int), optional
        Resample every image to ``size x size`` (or ``(H, W)``) pixels with
        antialiased bilinear interpolation. Needed when the files differ in size.
        Pixel values (surface brightness) are kept, not total fluxes: halving
        the size divides a galaxy's pixel sum by four.

    Returns
    -------
    `~numpy.ndarray`
        float32, shape ``(N, 3, H, W)``, bands in g, r, i order. Bad pixels are
        NaN (pass the array to :func:`as_image_array` for a mask).

    Raises
    ------
    FileNotFoundError
        A file that does not exist (named in the message).
    OSError
        A file that cannot be read as FITS or as an image (named).
    ValueError
        Files of different sizes without ``size``, wrong shapes, or FITS cubes
        mixed with colour composites (they are on different scales).
    """
    items = [paths] if _is_pathlike(paths) or isinstance(paths, Mapping) else list(paths)
    if not items:
        raise ValueError("no image paths given")
    cubes: list[np.ndarray] = []
    names: list[str] = []
    kinds: set[str] = set()
    units: list[u.UnitBase | None] = []
    for item in items:
        if isinstance(item, Mapping) or isinstance(item, list | tuple):
            if isinstance(item, Mapping):
                missing = [b for b in DEFAULT_BANDS if b not in item]
                if missing:
                    raise ValueError(f"band files given for {', '.join(map(str, item))}; missing {', '.join(missing)}")
                planes = [item[b] for b in DEFAULT_BANDS]
            else:
                planes = list(item)
            if len(planes) != 3:
                raise ValueError(f"{len(planes)} band files given for one galaxy; expected 3 (g, r, i)")
            image = _from_bands([_read_fits_plane(Path(p)) for p in planes], f"galaxy {', '.join(map(str, planes))}")
            cubes.append(np.where(image.mask, np.nan, image.data))
            units.append(image.unit)
            names.append(str(planes[0]))
            kinds.add("fits")
            continue
        if not _is_pathlike(item):
            raise TypeError(f"cannot read an image from a {type(item).__name__}; give file paths")
        path = Path(item)
        if _is_fits(path):
            for image in _read_fits_cube(path):
                cubes.append(np.where(image.mask, np.nan, image.data))
                units.append(image.unit)
                names.append(str(path))
            kinds.add("fits")
        else:
            cubes.append(_read_composite(path))
            units.append(None)
            names.append(str(path))
            kinds.add("composite")
    if len(kinds) > 1:
        raise ValueError("FITS images and colour composites (JPEG/PNG) are on different scales; load them separately")
    _, factors = common_unit(units)
    cubes = [c * f if f != 1.0 else c for c, f in zip(cubes, factors)]
    if size is not None:

        out = np.empty((len(cubes), 3, *size_pair(size)), np.float32)
        for k, cube in enumerate(cubes):
            out[k] = resample_images(cube[None].astype(np.float32), size_pair(size))[0]
        return out
    shapes = [c.shape for c in cubes]
    if len(set(shapes)) != 1:
        k = next(i for i, s in enumerate(shapes) if s != shapes[0])
        raise ValueError(
            f"images differ in size: {names[0]} is {shapes[0][1]}x{shapes[0][2]} but {names[k]} is "
            f"{shapes[k][1]}x{shapes[k][2]}; pass size= to resample them"
        )
    return np.stack(cubes).astype(np.float32)


def colour_composites(images: Any, stretch: float = 0.5, Q: float = 8.0) -> np.ndarray:
    """Render gri flux cutouts as SkyServer-style colour composites, scaled 0-1.

    Each cutout becomes an 8-bit arcsinh colour image (Lupton et al. 2004, with
    `astropy.visualization.make_lupton_rgb`: i → red, r → green, g → blue),
    returned in the form :func:`load_images` gives a SkyServer JPEG: g, r, i
    channels scaled 0-1. Use it to put calibrated cutouts (from
    :func:`make_cutouts`, or the mock images) on the scale of JPEG composites,
    for instance to pretrain a VAE on them before it encodes real composites.

    Parameters
    ----------
    images : array-like
        gri cutouts in any form :func:`as_image_array` reads; fluxes in linear
        units (nanomaggies for SDSS). Bad pixels count as zero flux.
    stretch : float, optional
        Linear range of the arcsinh stretch, in the units of ``images``.
    Q : float, optional
        Softening of the arcsinh stretch.

    Returns
    -------
    `~numpy.ndarray`
        float32, shape ``(N, 3, H, W)``, values in [0, 1] in steps of 1/255.
    """
    from astropy.visualization import make_lupton_rgb

    if not stretch > 0 or not Q > 0:
        raise ValueError(f"stretch and Q must be positive, got stretch={stretch!r}, Q={Q!r}")
    data, mask = as_image_array(images)
    data = np.where(mask | ~np.isfinite(data), 0.0, data)
    out = np.empty(data.shape, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 where a pixel has no flux: black
        for k, (g, r, i) in enumerate(data):
            rgb = make_lupton_rgb(i, r, g, minimum=0.0, stretch=stretch, Q=Q)
            out[k] = np.asarray(rgb, np.float32).transpose(2, 0, 1)[::-1] / 255.0
    return out
