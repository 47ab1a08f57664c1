"""Galaxy images: reading, validation, cutouts from survey frames and preprocessing.

The image encoders read ``(N, 3, H, W)`` float32 arrays in g, r, i order.
:func:`as_image_array` validates any supported input form (arrays, NDData,
FITS), :func:`load_images` reads FITS cutouts and JPEG/PNG colour composites,
:func:`make_cutouts` cuts aligned gri stamps out of calibrated frames (such as
SDSS ``frame-*.fits.bz2``) around sky positions, and :class:`ImagePreprocessor`
resizes and rescales them for a network.
"""

from .cutouts import make_cutouts
from .inputs import DEFAULT_BANDS, as_image_array, colour_composites, load_images, usable_images
from .preprocess import SCALINGS, ImagePreprocessor
from .resampling import resample_images

__all__ = [
    "DEFAULT_BANDS",
    "SCALINGS",
    "ImagePreprocessor",
    "as_image_array",
    "colour_composites",
    "load_images",
    "make_cutouts",
    "resample_images",
    "usable_images",
]
