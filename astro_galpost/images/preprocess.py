"""Resize and rescale gri cutouts for an image encoder.

SDSS pixels span orders of magnitude between the sky and a galaxy's core, and
g, r and i differ in sky level and noise. :class:`ImagePreprocessor` brings every
cutout to one size and puts each band on a common, learned scale (by default a
Lupton-style arcsinh stretch softened at the sky noise), so that a VAE sees
inputs of order unity. Its fitted state is a few named arrays, saved with a
model without pickling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.stats import mad_std

from .inputs import DEFAULT_BANDS, as_image_array
from .resampling import resample_images, resample_masked

__all__ = ["SCALINGS", "ImagePreprocessor", "resample_images"]

#: Accepted values of ``ImagePreprocessor(scaling=...)``.
SCALINGS = ("arcsinh", "robust", "linear", "auto", "none")
#: Accepted values of ``ImagePreprocessor(resize=...)``.
RESIZE_METHODS = ("resample", "crop")
# Smallest output size: three stride-2 convolutions still leave a 2x2 map.
_MIN_SIZE = 16
# Percentile of (pixel - median) that the arcsinh stretch maps to ~1.
_UPPER_PERCENTILE = 99.9
# Pixels per band used for the statistics; more only costs time.
_MAX_STAT_PIXELS = 2_000_000
# Images processed at once in transform, to bound memory.
_CHUNK = 256


def _center_crop(data: np.ndarray, mask: np.ndarray, height: int, width: int):
    """Central ``height x width`` window; smaller inputs are padded with masked zeros.

    The centre pixel ``(H // 2, W // 2)`` of the input lands on ``(height // 2,
    width // 2)``, the convention of `~astropy.nddata.Cutout2D` cutouts.
    """
    n, c, h, w = data.shape
    out = np.zeros((n, c, height, width), data.dtype)
    out_mask = np.ones((n, c, height, width), bool)
    # Offsets of the input's first row/column in the output frame.
    dy, dx = height // 2 - h // 2, width // 2 - w // 2
    ys, xs = max(0, -dy), max(0, -dx)  # first input row/col kept
    ye, xe = min(h, height - dy), min(w, width - dx)
    out[:, :, ys + dy : ye + dy, xs + dx : xe + dx] = data[:, :, ys:ye, xs:xe]
    out_mask[:, :, ys + dy : ye + dy, xs + dx : xe + dx] = mask[:, :, ys:ye, xs:xe]
    return out, out_mask


def _per_band(value: Any, name: str) -> np.ndarray | None:
    """None, one positive number, or three positive numbers (one per band)."""
    if value is None:
        return None
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,)).copy() if np.ndim(value) == 0 else None
    if arr is None:
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (3,):
            raise ValueError(f"{name} must be a number or one number per band (3), got {value!r}")
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return arr


class ImagePreprocessor:
    """Resize gri cutouts and put each band on a learned, robust scale.

    Parameters
    ----------
    size : int
        Output images are ``size x size`` pixels (the seed paper uses 160; 64 is
        much cheaper to train). At least 16.
    scaling : {"arcsinh", "robust", "linear", "auto", "none"}
        Per-band pixel scaling, learned by :meth:`fit` on the resized training
        images:

        - ``"arcsinh"``: ``asinh((x - median) / softening) / asinh(upper / softening)``,
          a Lupton et al. (1999) stretch: linear within the sky noise,
          logarithmic in bright cores, with ``upper`` the 99.9th percentile of
          ``x - median``, so bright galaxy pixels come out near 1 and the sky near 0;
        - ``"robust"``: ``(x - median) / sigma``, with sigma from the median
          absolute deviation (the sky noise): a robust z-score (galaxy cores are
          many sigma);
        - ``"linear"``: ``(x - median) / upper``: no stretch, the sky near 0 and
          bright galaxy pixels near 1. Suits colour composites (SkyServer
          JPEGs), whose pixels are already arcsinh-stretched: a second arcsinh
          would squash the galaxy's core and its colours into a narrow range;
        - ``"auto"``: ``"linear"`` when the training images look like display
          composites (every finite pixel within [0, 1], as
          :func:`~astro_galpost.images.load_images` returns JPEG/PNG files),
          ``"arcsinh"`` otherwise (calibrated fluxes, with negative sky noise
          or values above 1). The choice is made once by :meth:`fit` and kept
          in :attr:`scaling_`;
        - ``"none"``: pixels unchanged (only resized; bad pixels zeroed).
    softening : float or sequence of 3 floats, optional
        arcsinh softening, in the images' units, for all bands or per band.
        By default the sky noise (MAD sigma) of each band.
    resize : {"resample", "crop"}
        How images reach ``size``: ``"resample"`` (default) crops non-square
        images to their central square, then interpolates (bilinear,
        antialiased when shrinking) so the whole field is kept; ``"crop"``
        keeps the pixel scale and takes the central ``size x size`` window
        (smaller images are padded with masked pixels).
    max_fit_images : int
        At most this many images (evenly spaced) are used by :meth:`fit`.

    Notes
    -----
    Statistics are learned on the resized images, so that the sky noise used
    for the softening is the noise the network sees (downsampling averages it
    down). Masked and non-finite pixels are ignored by :meth:`fit` and set to 0,
    the sky level, by :meth:`transform`. SkyServer JPEG composites are already
    arcsinh-stretched and quantised; ``scaling="robust"`` or ``"none"`` may suit
    them better than a second arcsinh stretch (``"auto"`` picks ``"linear"`` for them).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> images = rng.normal(0.0, 0.01, (4, 3, 40, 40)).astype(np.float32)
    >>> pre = ImagePreprocessor(size=32).fit(images)
    >>> pre.transform(images).shape
    (4, 3, 32, 32)
    >>> pre2 = ImagePreprocessor.from_config(pre.get_config(), pre.get_arrays())
    >>> bool(np.array_equal(pre2.transform(images), pre.transform(images)))
    True
    """

    def __init__(
        self,
        size: int = 160,
        scaling: str = "arcsinh",
        softening: float | Sequence[float] | None = None,
        *,
        resize: str = "resample",
        max_fit_images: int = 2000,
    ):
        if isinstance(size, bool) or not isinstance(size, int | np.integer):
            raise TypeError(f"size must be an int number of pixels, got {size!r}")
        if size < _MIN_SIZE:
            raise ValueError(f"size must be at least {_MIN_SIZE} pixels, got {size}")
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {', '.join(SCALINGS)}; got {scaling!r}")
        if resize not in RESIZE_METHODS:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_METHODS)}; got {resize!r}")
        if isinstance(max_fit_images, bool) or not isinstance(max_fit_images, int | np.integer) or max_fit_images < 1:
            raise ValueError(f"max_fit_images must be a positive int, got {max_fit_images!r}")
        self.size = int(size)
        self.scaling = scaling
        self._softening_arg = _per_band(softening, "softening")
        self.softening = softening if softening is None or np.ndim(softening) == 0 else list(softening)
        self.resize = resize
        self.max_fit_images = int(max_fit_images)

    def __repr__(self) -> str:
        return (
            f"ImagePreprocessor(size={self.size}, scaling={self.scaling!r}, softening={self.softening!r}, "
            f"resize={self.resize!r}{'' if self.is_fitted else ', unfitted'})"
        )

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has learned the per-band statistics."""
        return hasattr(self, "median_")

    # ------------------------------------------------------------------ geometry

    @staticmethod
    def _validate(images: Any, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Images as (N, 3, H, W) float32 with bad pixels zeroed, and the combined mask."""
        data, bad = as_image_array(images)
        if mask is not None:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != bad.shape:
                raise ValueError(f"mask has shape {mask.shape}; images have shape {bad.shape}")
            bad = bad | mask
            data[bad] = 0.0
        return data, bad

    def _geometry(self, data: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Images and mask brought to ``size x size``."""
        if self.resize == "crop":
            return _center_crop(data, bad, self.size, self.size)
        h, w = data.shape[-2:]
        if h != w:  # keep the aspect ratio: central square first
            side = min(h, w)
            data, bad = _center_crop(data, bad, side, side)
        return resample_masked(data, bad, (self.size, self.size))

    # ------------------------------------------------------------------ fit / transform

    def fit(self, images: Any, mask: np.ndarray | None = None) -> ImagePreprocessor:
        """Learn per-band median, sky noise and bright-pixel scale from training images.

        Parameters
        ----------
        images : array-like
            ``(N, 3, H, W)`` images, or anything :func:`as_image_array` accepts.
        mask : `~numpy.ndarray`, optional
            bool, ``(N, 3, H, W)``, True for pixels to ignore (added to NaNs).

        Returns
        -------
        self
        """
        data, bad = self._validate(images, mask)
        n = len(data)
        if n > self.max_fit_images:  # evenly spaced: deterministic and representative
            keep = np.linspace(0, n - 1, self.max_fit_images).round().astype(int)
            data, bad = data[keep], bad[keep]
        data, bad = self._geometry(data, bad)
        rng = np.random.default_rng(0)
        median, noise, upper = np.zeros(3), np.ones(3), np.ones(3)
        for b in range(3):
            good = data[:, b][~bad[:, b]].astype(np.float64)
            if good.size == 0:
                raise ValueError(f"band {DEFAULT_BANDS[b]} has no good pixels to fit the scaling on")
            if good.size > _MAX_STAT_PIXELS:
                good = rng.choice(good, _MAX_STAT_PIXELS, replace=False)
            median[b] = np.median(good)
            resid = good - median[b]
            sigma = mad_std(good)
            if not sigma > 0:  # quantised (JPEG) or flat skies: MAD can be 0
                sigma = np.std(resid)
            noise[b] = sigma if sigma > 0 else 1.0
            top = np.percentile(resid, _UPPER_PERCENTILE)
            upper[b] = max(top, noise[b])
        self.scaling_ = self._resolve_scaling(data, bad)
        self.median_ = median
        self.noise_ = noise
        self.upper_ = upper
        self.softening_ = noise.copy() if self._softening_arg is None else self._softening_arg.copy()
        return self

    def _resolve_scaling(self, data: np.ndarray, bad: np.ndarray) -> str:
        """The scaling used: ``scaling``, or for ``"auto"`` the one that suits ``data``."""
        if self.scaling != "auto":
            return self.scaling
        good = data[~bad]
        # 0-1 composites resampled in float32 can overshoot by a rounding error (1.0000002)
        composite = good.size > 0 and float(good.min()) >= -1e-6 and float(good.max()) <= 1.0 + 1e-6
        return "linear" if composite else "arcsinh"

    def _scale(self, data: np.ndarray) -> np.ndarray:
        scaling = getattr(self, "scaling_", self.scaling)
        if scaling == "none":
            return data
        med = self.median_[None, :, None, None]
        if scaling == "linear":
            return (data - med) / self.upper_[None, :, None, None]
        if scaling == "robust":
            return (data - med) / self.noise_[None, :, None, None]
        soft = self.softening_[None, :, None, None]
        norm = np.arcsinh(self.upper_ / self.softening_)[None, :, None, None]
        return np.arcsinh((data - med) / soft) / norm

    def transform(self, images: Any, mask: np.ndarray | None = None) -> np.ndarray:
        """Resize and rescale images.

        Parameters
        ----------
        images : array-like
            ``(N, 3, H, W)`` images, or anything :func:`as_image_array` accepts.
        mask : `~numpy.ndarray`, optional
            bool, ``(N, 3, H, W)``, True for pixels to ignore (added to NaNs).

        Returns
        -------
        `~numpy.ndarray`
            float32, ``(N, 3, size, size)``, finite; bad pixels are 0 (the sky
            level after scaling).
        """
        if self.scaling != "none" and not self.is_fitted:
            raise RuntimeError("this ImagePreprocessor is not fitted yet; call fit(images) first")
        data, bad = self._validate(images, mask)
        out = np.empty((len(data), 3, self.size, self.size), np.float32)
        for start in range(0, len(data), _CHUNK):
            chunk = slice(start, start + _CHUNK)
            small, small_bad = self._geometry(data[chunk], bad[chunk])
            scaled = self._scale(small.astype(np.float64))
            scaled[small_bad] = 0.0
            # Guard float32 overflow for "none"/"robust" on extreme inputs.
            out[chunk] = np.nan_to_num(np.clip(scaled, -1e30, 1e30), nan=0.0)
        return out

    def fit_transform(self, images: Any, mask: np.ndarray | None = None) -> np.ndarray:
        """:meth:`fit`, then :meth:`transform` the same images."""
        return self.fit(images, mask).transform(images, mask)

    # ------------------------------------------------------------------ persistence

    def get_config(self) -> dict:
        """JSON-serialisable constructor parameters (the fitted state is in :meth:`get_arrays`)."""
        return {
            "size": self.size,
            "scaling": self.scaling,
            "softening": None if self.softening is None else (
                float(self.softening) if np.ndim(self.softening) == 0 else [float(s) for s in self.softening]
            ),
            "resize": self.resize,
            "max_fit_images": self.max_fit_images,
            "bands": list(DEFAULT_BANDS),
            **({"fitted_scaling": self.scaling_} if self.is_fitted else {}),
        }

    def get_arrays(self) -> dict[str, np.ndarray]:
        """Fitted per-band statistics by name (empty before :meth:`fit`)."""
        if not self.is_fitted:
            return {}
        return {
            "median": self.median_.copy(),
            "noise": self.noise_.copy(),
            "upper": self.upper_.copy(),
            "softening": self.softening_.copy(),
        }

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray] | None = None) -> ImagePreprocessor:
        """Rebuild a preprocessor from :meth:`get_config` and :meth:`get_arrays`."""
        params = {k: v for k, v in config.items() if k not in ("bands", "fitted_scaling")}
        obj = cls(**params)
        if arrays:
            missing = {"median", "noise", "upper", "softening"} - set(arrays)
            if missing:
                raise KeyError(f"arrays lack {', '.join(sorted(missing))} for a fitted ImagePreprocessor")
            for name in ("median", "noise", "upper", "softening"):
                value = np.asarray(arrays[name], dtype=np.float64).reshape(-1)
                if value.shape != (3,):
                    raise ValueError(f"array {name!r} must hold 3 values (one per band), got shape {value.shape}")
                setattr(obj, f"{name}_", value.copy())
            fitted = config.get("fitted_scaling", obj.scaling)
            if fitted not in SCALINGS or fitted == "auto":
                raise ValueError(f"fitted_scaling must be a concrete scaling, got {fitted!r}")
            obj.scaling_ = fitted
        return obj
