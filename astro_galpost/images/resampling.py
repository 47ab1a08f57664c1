"""Resampling of image cubes to another pixel size, with their bad-pixel masks."""

from __future__ import annotations

import numpy as np

__all__ = ["resample_images", "resample_masked", "size_pair"]


def size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` as (H, W) positive ints."""
    pair = (size, size) if np.ndim(size) == 0 else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"size must be a positive int or a pair of positive ints, got {size!r}")
    return int(pair[0]), int(pair[1])


def resample_masked(data: np.ndarray, mask: np.ndarray, size: tuple[int, int]):
    """Bilinear, antialiased resampling of images and their masks to ``size``.

    Bad pixels are filled with their image's band median first, so that they
    do not bleed NaN or a false dip into their neighbours; an output pixel is
    bad when at least half of its interpolation weight came from bad pixels.
    """
    import torch
    import torch.nn.functional as F

    if data.shape[-2:] == tuple(size):
        return data, mask
    filled = data.astype(np.float32, copy=True)
    if mask.any():
        masked = np.ma.masked_array(filled, mask)
        fill = np.ma.median(masked.reshape(*filled.shape[:2], -1), axis=-1).filled(0.0)
        filled = np.where(mask, fill[:, :, None, None], filled).astype(np.float32)

    def interpolate(values: np.ndarray) -> np.ndarray:
        # antialias: downsampling averages pixels instead of aliasing noise and stars.
        with torch.no_grad():
            tensor = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
            return F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False).numpy()

    out = interpolate(filled)
    if mask.any():
        out_mask = interpolate(mask) >= 0.5
    else:
        out_mask = np.zeros((*data.shape[:2], *size), bool)
    return out, out_mask


def resample_images(images: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample ``(N, C, H, W)`` images to ``size`` with antialiased bilinear interpolation.

    NaN pixels are treated as bad: they do not contaminate their neighbours,
    and output pixels mostly made of them are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> resample_images(np.ones((1, 3, 32, 32), np.float32), 16).shape
    (1, 3, 16, 16)
    """
    data = np.asarray(images, dtype=np.float32)
    if data.ndim != 4:
        raise ValueError(f"images must be 4-D (N, C, H, W), got shape {data.shape}")
    mask = ~np.isfinite(data)
    out, out_mask = resample_masked(np.where(mask, 0.0, data), mask, size_pair(size))
    out[out_mask] = np.nan
    return out
