"""Galaxies of known size injected into a real SDSS frame: the cutouts' flux and the ``image_stats`` radii.

Sérsic galaxies (a Gaussian PSF of sigma 1.5 pixels, the profile integrated over
5x5 sub-pixels, r = 17.5, g and i at 0.7 and 1.3 times the r flux) are added at
random places to the g, r and i frames of SDSS field 2820/3/122 and cut out with
`~astro_galpost.images.make_cutouts` at 64 and 160 pixels.

* Flux: exponential discs of effective radius 4, 8, 12 and 16 pixels (axis ratio
  0.5-1). For each, the r-band flux the galaxy adds to the cutout's inscribed
  circle (the cutout with it minus the cutout without it, each made alike), as a
  fraction of its total, without and with ``subtract_background``.
* Radii: ``n`` = 1 and 4, effective radius 3-8 pixels. The R50 of
  `~astro_galpost.encoders.image_stats.image_statistics` over that of the same
  galaxy's noise-free image alone on a 301-pixel canvas without sky subtraction;
  and RESOLVE galaxy rf0698 (SDSS r-band Petrosian R50 1.89", R90 4.46") in both
  cutouts.

The tables give medians (and 16th-84th percentiles of the radii); the last line
printed is one JSON object.

    python benchmarks/injected_galaxies.py [--galaxies 40] [--seed 5]

Needs the shared data (``ASTRO_GALPOST_DATA`` or ``../shared/data``): the frames
``sdss_frames/frame-{g,r,i}-002820-3-0122.fits.bz2``.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.modeling.models import Sersic2D
from astropy.wcs import WCS
from scipy.ndimage import gaussian_filter

from astro_galpost.datasets import shared_data_dir
from astro_galpost.encoders.image_stats import STAT_NAMES, image_statistics
from astro_galpost.images import make_cutouts

SIZES = (64, 160)
COLOURS = {"g": 0.7, "r": 1.0, "i": 1.3}
PIXEL = 0.396  # arcsec
SUB = 5  # sub-pixels per side


def sersic_image(shape, x0, y0, re, n, ellip, theta):
    """A PSF-convolved Sérsic profile of unit total flux on ``shape``, integrated over sub-pixels."""
    ny, nx = shape
    yy, xx = (np.mgrid[: ny * SUB, : nx * SUB] + 0.5) / SUB - 0.5
    image = Sersic2D(1.0, re, n, x0, y0, ellip, theta)(xx, yy).reshape(ny, SUB, nx, SUB).mean(axis=(1, 3))
    image = gaussian_filter(image, 1.5)
    return image / image.sum()


def radii(cube, mask=None):
    """R50 and R90 in pixels of a ``(3, H, W)`` cutout."""
    stats = dict(zip(STAT_NAMES, image_statistics(cube, mask)))
    side = min(cube.shape[-2:])
    return 10 ** stats["log_r50"] * side, 10 ** stats["log_r90"] * side


def inject(frames, coord, galaxy):
    """Copies of ``frames`` with ``galaxy`` (its Sérsic parameters) added at ``coord``, r = 17.5."""
    out = {}
    for band, hdu in frames.items():
        x, y = WCS(hdu.header).world_to_pixel(coord)
        x0, y0 = int(x) - 120, int(y) - 120
        stamp = sersic_image((241, 241), float(x) - x0, float(y) - y0, *galaxy)
        data = hdu.data.copy()
        data[y0:y0 + 241, x0:x0 + 241] += COLOURS[band] * 10 ** (-0.4 * (17.5 - 22.5)) * stamp
        out[band] = fits.PrimaryHDU(data, hdu.header)
    return out


def flux_kept(frames, rng, repeats=4):
    """Median fraction of an injected disc's r flux in the inscribed circle, per (radius, size, subtraction)."""
    kept = {}
    for re in (4, 8, 12, 16):
        for _ in range(repeats):
            galaxy = (re, 1, rng.uniform(0, 0.5), rng.uniform(0, np.pi))
            coord = WCS(frames["r"].header).pixel_to_world(rng.uniform(200, 1850), rng.uniform(200, 1290))
            injected = inject(frames, coord, galaxy)
            for size in SIZES:
                circle = np.hypot(*(np.mgrid[:size, :size] - (size - 1) / 2)) < size / 2
                for subtract in (False, True):
                    with_galaxy = make_cutouts(injected, coord, size, subtract_background=subtract)[0][0, 1]
                    without = make_cutouts(frames, coord, size, subtract_background=subtract)[0][0, 1]
                    added = np.nansum((with_galaxy - without)[circle]) / 10 ** (-0.4 * (17.5 - 22.5))
                    kept.setdefault((re, size, subtract), []).append(added)
    return {key: float(np.median(values)) for key, values in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--galaxies", type=int, default=40)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # the frames' FITS WCS keywords
    folder = shared_data_dir() / "sdss_frames"
    frames = {b: fits.open(folder / f"frame-{b}-002820-3-0122.fits.bz2")[0] for b in COLOURS}
    rng = np.random.default_rng(args.seed)
    kept = flux_kept(frames, rng)
    print(f"{'R_e (px)':<10}{'cutout':>8}{'kept, no subtraction':>24}{'kept, subtract_background':>28}")
    for re, size in sorted({key[:2] for key in kept}):
        print(f"{re:<10}{size:>8}{kept[re, size, False]:>24.3f}{kept[re, size, True]:>28.3f}")
    ratios = {(n, size): [] for n in (1, 4) for size in SIZES}
    for k in range(args.galaxies):
        n = (1, 4)[k % 2]
        galaxy = (rng.uniform(3, 8), n, rng.uniform(0, 0.5), rng.uniform(0, np.pi))
        coord = WCS(frames["r"].header).pixel_to_world(rng.uniform(150, 1900), rng.uniform(150, 1340))
        offset = rng.uniform(-0.5, 0.5, 2)
        alone = sersic_image((301, 301), 150 + offset[0], 150 + offset[1], *galaxy)
        truth = radii(np.stack([COLOURS[b] * alone for b in COLOURS]))[0]
        injected = inject(frames, coord, galaxy)
        for size in SIZES:
            cube, mask, _ = make_cutouts(injected, coord, size, subtract_background=False)
            ratios[n, size].append(radii(cube[0], mask[0])[0] / truth)
    rf0698 = {}
    for size in SIZES:
        cube, mask, _ = make_cutouts(frames, SkyCoord(38.385832, -0.075917, unit="deg"), size)
        rf0698[size] = [round(r * PIXEL, 3) for r in radii(cube[0], mask[0])]
    print(f"{'profile':<10}{'cutout':>8}{'galaxies':>10}{'median':>9}{'p16':>8}{'p84':>8}   measured / noise-free R50")
    summary = {}
    for (n, size), values in ratios.items():
        p16, p50, p84 = np.percentile(values, [16, 50, 84])
        print(f"{'n = ' + str(n):<10}{size:>8}{len(values):>10}{p50:>9.3f}{p16:>8.3f}{p84:>8.3f}")
        summary[f"n{n}_{size}"] = {"median": round(p50, 4), "p16": round(p16, 4), "p84": round(p84, 4)}
    for size, (r50, r90) in rf0698.items():
        print(f"rf0698 {size}-pixel cutout: R50 {r50:.2f}\", R90 {r90:.2f}\" (SDSS r Petrosian 1.89\", 4.46\")")
    flux = {f"re{re}_{size}_{'subtracted' if sub else 'as_is'}": round(v, 4) for (re, size, sub), v in kept.items()}
    print(json.dumps({"benchmark": "injected_galaxies", "seed": args.seed, "galaxies": args.galaxies,
                      "flux_kept": flux,
                      "r50_ratio": summary, "rf0698_r50_r90_arcsec": {str(k): v for k, v in rf0698.items()}}))


if __name__ == "__main__":
    main()
