"""Real SDSS galaxies shipped inside the ``kcorrect`` package, as a CAS-style table."""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import MaskedColumn, Table

__all__ = ["kcorrect_sample_path", "load_kcorrect_sample"]

_BANDS = "ugriz"
# 2.5 / ln(10): converts a fractional flux error to a magnitude error
_MAG_PER_LN = 2.5 / np.log(10.0)
#: Softening b of SDSS asinh magnitudes in u, g, r, i, z (maggies; Lupton, Gunn & Szalay 1999;
#: SDSS EDR paper, Stoughton et al. 2002, Table 21): CAS magnitudes are asinh magnitudes.
_SDSS_SOFTENING = np.array([1.4e-10, 0.9e-10, 1.2e-10, 1.8e-10, 7.4e-10])


def _asinh_magnitudes(nanomaggies: np.ndarray, ivar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SDSS asinh magnitudes and their errors from fluxes in nanomaggies (N, 5) and inverse variances.

    ``m = -2.5 / ln 10 * (asinh(f / 2b) + ln b)``, with ``f`` in maggies: the Pogson magnitude
    to 1% above about 10 b, finite for faint and negative fluxes, as CAS gives them.
    """
    x = nanomaggies * 1e-9 / (2 * _SDSS_SOFTENING)
    mag = -_MAG_PER_LN * (np.arcsinh(x) + np.log(_SDSS_SOFTENING))
    with np.errstate(divide="ignore"):
        err = _MAG_PER_LN * 1e-9 / np.sqrt(ivar) / (2 * _SDSS_SOFTENING) / np.sqrt(1 + x ** 2)
    return mag, err


def kcorrect_sample_path() -> Path:
    """Path of ``kcorrect/data/test/gst_tests_small.fits`` in the installed kcorrect."""
    try:
        import kcorrect
    except ImportError as err:  # pragma: no cover - kcorrect is a dependency
        raise ImportError("the demo sample ships with the 'kcorrect' package: pip install kcorrect") from err
    path = Path(kcorrect.__file__).parent / "data" / "test" / "gst_tests_small.fits"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed kcorrect package")
    return path


def load_kcorrect_sample(deredden: bool = False) -> Table:
    """10,000 real SDSS galaxies with ugriz model photometry and spectroscopic redshift.

    Read from the test data of the ``kcorrect`` package (Blanton & Roweis 2007),
    whose ``MODELFLUX`` (nanomaggies) and inverse variances are converted to
    SDSS CAS-style columns, following the CAS convention: ``modelMag_u`` …
    ``modelMag_z`` (SDSS asinh magnitudes on the SDSS photometric system, as
    CAS's: nearly AB, with u_AB ≈ u − 0.04 and z_AB ≈ z + 0.02; *not*
    corrected for Galactic extinction), their errors ``modelMagErr_u`` …, the extinctions
    ``extinction_u`` … (mag), ``z`` (redshift), ``ra``, ``dec``. Like CAS's,
    the asinh magnitudes of faint and negative fluxes are finite; fluxes
    without an inverse variance give masked magnitudes.
    The default `~astro_galpost.encoders.PhotometryEncoder` dereddens
    ``modelMag_<band>`` with ``extinction_<band>``.

    Parameters
    ----------
    deredden : bool, optional
        Also add the corrected magnitudes under CAS's own name for them,
        ``dered_<band> = modelMag_<band> - extinction_<band>``.

    Examples
    --------
    >>> from astro_galpost.datasets import load_kcorrect_sample
    >>> t = load_kcorrect_sample()
    >>> len(t), t["modelMag_r"].unit, t["extinction_r"].unit
    (10000, Unit("mag"), Unit("mag"))
    """
    raw = Table.read(kcorrect_sample_path())
    flux = np.asarray(raw["MODELFLUX"], dtype=float)
    ivar = np.asarray(raw["MODELFLUX_IVAR"], dtype=float)
    extinction = np.asarray(raw["EXTINCTION"], dtype=float)
    good = ivar > 0
    mag, err = _asinh_magnitudes(flux, ivar)
    out = Table(meta={"source": str(kcorrect_sample_path()),
                      "description": "SDSS galaxies from the kcorrect package test data"})
    out["ra"] = np.asarray(raw["RA"], dtype=float) * u.deg
    out["dec"] = np.asarray(raw["DEC"], dtype=float) * u.deg
    for j, band in enumerate(_BANDS):
        out[f"modelMag_{band}"] = MaskedColumn(mag[:, j], mask=~good[:, j], unit=u.mag)
        out[f"modelMagErr_{band}"] = MaskedColumn(err[:, j], mask=~good[:, j], unit=u.mag)
    for j, band in enumerate(_BANDS):
        out[f"extinction_{band}"] = MaskedColumn(extinction[:, j], unit=u.mag,
                                                 description="Galactic extinction (SFD98)")
    if deredden:
        for j, band in enumerate(_BANDS):
            out[f"dered_{band}"] = MaskedColumn(mag[:, j] - extinction[:, j], mask=~good[:, j], unit=u.mag)
    out["z"] = np.asarray(raw["Z"], dtype=float)
    out["z"].description = "spectroscopic redshift"
    return out
