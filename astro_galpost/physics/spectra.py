"""Reading 1-D spectra: SDSS ``spec`` files and any `specutils.Spectrum`.

:func:`read_sdss_spectrum` reads an SDSS DR8+ ``spec``/``spec-lite`` file into a
`specutils.Spectrum` (``Spectrum1D`` in specutils < 2) with vacuum wavelengths,
flux in `SDSS_FLUX_UNIT`, inverse-variance uncertainty, a pixel mask and the
redshift; :func:`spectrum_arrays` turns any such spectrum into the plain arrays
that the line fit (`astro_galpost.physics.linefit`) works on.
"""

from __future__ import annotations

import warnings
from os import PathLike
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, NDUncertainty

from .lines import FLUX_UNIT

try:  # specutils >= 2.0
    from specutils import Spectrum
except ImportError:  # pragma: no cover - specutils < 2
    from specutils import Spectrum1D as Spectrum

__all__ = [
    "SDSS_FLUX_UNIT",
    "SPPIXMASK",
    "SPPIXMASK_BAD",
    "read_sdss_spectrum",
    "spectrum_arrays",
]

#: SDSS flux-density unit, the package's line-flux unit per Angstrom.
SDSS_FLUX_UNIT = FLUX_UNIT / u.AA

#: SDSS ``and_mask``/``or_mask`` pixel bits (SPPIXMASK, from idlspec2d ``sdssMaskbits.par``).
SPPIXMASK: dict[str, int] = {
    "NOPLUG": 0, "BADTRACE": 1, "BADFLAT": 2, "BADARC": 3, "MANYBADCOLUMNS": 4,
    "MANYREJECTED": 5, "LARGESHIFT": 6, "BADSKYFIBER": 7, "NEARWHOPPER": 8, "WHOPPER": 9,
    "SMEARIMAGE": 10, "SMEARHIGHSN": 11, "SMEARMEDSN": 12, "NEARBADPIXEL": 16,
    "LOWFLAT": 17, "FULLREJECT": 18, "PARTIALREJECT": 19, "SCATTEREDLIGHT": 20,
    "CROSSTALK": 21, "NOSKY": 22, "BRIGHTSKY": 23, "NODATA": 24, "COMBINEREJ": 25,
    "BADFLUXFACTOR": 26, "BADSKYCHI": 27, "REDMONSTER": 28,
}

#: ``and_mask`` bits that :func:`read_sdss_spectrum` masks by default: pixels
#: with no usable data in every exposure.  Informational bits such as
#: BRIGHTSKY, NEARBADPIXEL or MANYBADCOLUMNS (set over half of some spectra) are
#: not masked; pixels the pipeline rejects always have ``ivar = 0`` anyway.
SPPIXMASK_BAD: int = sum(1 << SPPIXMASK[name] for name in (
    "NOPLUG", "BADTRACE", "BADFLAT", "BADARC", "FULLREJECT", "NODATA"))


def _specobj_meta(hdul: fits.HDUList) -> dict[str, Any]:
    """Redshift, class and identifiers from the first row of HDU2 (``SPECOBJ``/``SPALL``)."""
    meta: dict[str, Any] = {}
    if len(hdul) > 2 and isinstance(hdul[2], fits.BinTableHDU) and len(hdul[2].data):
        row = hdul[2].data[0]
        cols = {n.upper(): n for n in hdul[2].columns.names}
        for key, col in (("redshift", "Z"), ("z_err", "Z_ERR"), ("zwarning", "ZWARNING"),
                         ("class", "CLASS"), ("subclass", "SUBCLASS"), ("plate", "PLATE"),
                         ("mjd", "MJD"), ("fiberid", "FIBERID")):
            if col in cols:
                val = row[cols[col]]
                if isinstance(val, (bytes, str)):
                    val = (val.decode() if isinstance(val, bytes) else val).strip()
                elif np.ndim(val) == 0:
                    val = val.item()
                meta[key] = val
    return meta


def _flux_unit(bunit: str) -> u.UnitBase:
    """The header's ``BUNIT`` if it parses to a flux density, else `SDSS_FLUX_UNIT`."""
    if bunit:
        text = bunit.replace("Angstrom", "Ang").replace("Ang", "Angstrom")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            try:
                parsed = u.Unit(text)
                if parsed.is_equivalent(SDSS_FLUX_UNIT):
                    return parsed
            except ValueError:
                pass
    return SDSS_FLUX_UNIT


# --------------------------------------------------------------------------- reading
def read_sdss_spectrum(path: str | PathLike, mask_bits: int | None = SPPIXMASK_BAD) -> Spectrum:
    """Read an SDSS DR8+ ``spec``/``spec-lite`` file into a `specutils.Spectrum`.

    specutils ships a loader for these files (format ``"SDSS-III/IV spec"``),
    but it masks every pixel with a non-zero ``and_mask`` (which drops half of
    some spectra for purely informational bits), ignores ``ivar = 0`` and does
    not return the redshift; this small reader fixes those three points.

    Parameters
    ----------
    path : str or path-like
        The FITS file (HDU1 ``COADD`` with ``loglam``, ``flux``, ``ivar``,
        ``and_mask``; HDU2 ``SPECOBJ``/``SPALL`` with ``Z``).
    mask_bits : int or None, optional
        ``and_mask`` bits to mask in addition to pixels with ``ivar <= 0`` or
        non-finite flux.  Default :data:`SPPIXMASK_BAD`; ``-1`` masks any set
        bit (the specutils behaviour); `None` or 0 masks on ``ivar`` only.

    Returns
    -------
    spectrum : `specutils.Spectrum`
        Vacuum wavelengths in Angstrom (float64), flux in
        ``1e-17 erg / (s cm2 Angstrom)``, `~astropy.nddata.InverseVariance`
        uncertainty, boolean mask (True = bad).  ``spectrum.meta`` holds
        ``redshift`` (HDU2 ``Z``), ``z_err``, ``zwarning``, ``class``,
        ``subclass``, ``plate``, ``mjd``, ``fiberid`` where present, and the
        primary ``header``.

    Raises
    ------
    ValueError
        If the file lacks the COADD columns of an SDSS spec file.

    Examples
    --------
    >>> from astro_galpost.physics import read_sdss_spectrum
    >>> spec = read_sdss_spectrum("spec-1045-52725-0628.fits")  # doctest: +SKIP
    >>> print(f"z = {spec.meta['redshift']:.4f}")  # doctest: +SKIP
    z = 0.0320
    """
    with fits.open(path, memmap=False) as hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{path}: not an SDSS spec file (no COADD binary table in HDU1)")
        coadd = hdul[1].data
        names = {n.lower(): n for n in coadd.columns.names}
        missing = [c for c in ("loglam", "flux", "ivar") if c not in names]
        if missing:
            raise ValueError(f"{path}: HDU1 lacks column(s) {', '.join(missing)}; "
                             "not an SDSS DR8+ spec file")
        loglam = np.asarray(coadd[names["loglam"]], dtype=float)
        flux = np.asarray(coadd[names["flux"]], dtype=float)
        ivar = np.asarray(coadd[names["ivar"]], dtype=float)
        and_mask = (np.asarray(coadd[names["and_mask"]], dtype=np.int64)
                    if "and_mask" in names else np.zeros(flux.shape, dtype=np.int64))
        header = hdul[0].header.copy()
        meta: dict[str, Any] = {"header": header, **_specobj_meta(hdul)}
    flux_unit = _flux_unit(header.get("BUNIT", ""))

    bad = (ivar <= 0) | ~np.isfinite(ivar) | ~np.isfinite(flux)
    if mask_bits:
        bad |= (and_mask & int(mask_bits)) != 0
    ivar = np.where(np.isfinite(ivar) & (ivar > 0), ivar, 0.0)
    return Spectrum(
        flux=flux * flux_unit,
        spectral_axis=10.0 ** loglam * u.AA,
        uncertainty=InverseVariance(ivar, unit=flux_unit ** -2),
        mask=bad,
        meta=meta,
    )


# --------------------------------------------------------------------------- arrays
def _checked_flux_and_axis(spectrum: Any) -> tuple[u.Quantity, u.Quantity]:
    """The flux and spectral axis of a one-dimensional spectrum with a wavelength-like axis."""
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectrum must be a specutils Spectrum (Spectrum1D), got "
                        f"{type(spectrum).__name__}")
    flux_q = u.Quantity(spectrum.flux)
    if flux_q.ndim != 1:
        raise ValueError(f"spectrum must be one-dimensional, flux has shape {flux_q.shape}")
    axis = u.Quantity(spectrum.spectral_axis)
    if axis.unit is None or axis.unit == u.dimensionless_unscaled or axis.unit == u.pix \
            or not axis.unit.is_equivalent(u.AA, equivalencies=u.spectral()):
        raise ValueError(f"the spectral axis has unit {axis.unit!s}, not a wavelength: build the "
                         "spectrum with spectral_axis=<wavelengths> * u.AA (vacuum)")
    return flux_q, axis


def _working_units(funit: u.UnitBase, axis_unit: u.UnitBase, lam: np.ndarray
                   ) -> tuple[u.UnitBase, u.UnitBase, np.ndarray]:
    """``(line_unit, work_unit, factor)``: line-flux and f_lambda units, and the per-pixel factor from ``funit``."""
    flam_unit = u.erg / (u.s * u.cm ** 2 * u.AA)
    if funit.is_equivalent(flam_unit):
        line_unit = funit * (axis_unit if axis_unit.is_equivalent(u.AA) else u.AA)
        if not line_unit.is_equivalent(u.erg / (u.s * u.cm ** 2)):  # pragma: no cover
            line_unit = funit * u.AA
        work_unit = line_unit / u.AA
        factor = np.full(lam.shape, funit.to(work_unit))
    elif funit.is_equivalent(flam_unit, equivalencies=u.spectral_density(lam * u.AA)):
        line_unit = FLUX_UNIT
        work_unit = line_unit / u.AA
        factor = (np.ones(lam.shape) * funit).to_value(
            work_unit, equivalencies=u.spectral_density(lam * u.AA))
    else:
        raise u.UnitTypeError(f"the flux has unit {funit.to_string()!r}, which is not a spectral "
                              "flux density (e.g. erg / (s cm2 Angstrom) or Jy); line fluxes "
                              "cannot be measured in it")
    return line_unit, work_unit, factor


def _inverse_variance(unc: Any, funit: u.UnitBase, factor: np.ndarray,
                      shape: tuple[int, ...]) -> np.ndarray | None:
    """The inverse variance in the working unit (0 where invalid), or `None` without an uncertainty."""
    if unc is None:
        return None
    if not isinstance(unc, NDUncertainty):  # pragma: no cover - specutils always wraps
        raise TypeError("spectrum.uncertainty must be an astropy NDUncertainty")
    inv = unc if isinstance(unc, InverseVariance) else unc.represent_as(InverseVariance)
    ivar_vals = np.broadcast_to(np.asarray(inv.array, dtype=float), shape).copy()
    ivar_unit = inv.unit if inv.unit is not None else funit ** -2
    ivar_vals = ivar_vals * (ivar_unit.to(funit ** -2))
    ivar = ivar_vals / factor ** 2
    ivar[~np.isfinite(ivar) | (ivar < 0)] = 0.0
    return ivar


def _good_pixels(flux: np.ndarray, lam: np.ndarray, mask: Any, ivar: np.ndarray | None) -> np.ndarray:
    """Pixels with finite flux and wavelength, not masked, and with a positive inverse variance."""
    good = np.isfinite(flux) & np.isfinite(lam)
    if mask is not None:
        good &= ~np.broadcast_to(np.asarray(mask, dtype=bool), flux.shape)
    if ivar is not None:
        good &= ivar > 0
    return good


def _continuum_values(continuum: Any, shape: tuple[int, ...], funit: u.UnitBase,
                      factor: np.ndarray) -> np.ndarray:
    """The continuum (a Quantity or Spectrum of ``shape``) in the working unit."""
    if isinstance(continuum, Spectrum):
        cont_q = u.Quantity(continuum.flux)
    else:
        cont_q = continuum
    if not isinstance(cont_q, u.Quantity) or cont_q.shape != shape:
        raise ValueError("continuum must be a Quantity or Spectrum with the same shape and "
                         "flux units as the spectrum")
    return cont_q.to_value(funit).astype(float) * factor


def _sorted_by_wavelength(lam: np.ndarray, flux: np.ndarray, ivar: np.ndarray | None, good: np.ndarray,
                          cont: np.ndarray | None) -> tuple:
    """``(lam, flux, ivar, good, cont)`` in order of increasing wavelength (unchanged if already sorted)."""
    order = np.argsort(lam)
    if not np.all(order == np.arange(lam.size)):
        lam, flux, good = lam[order], flux[order], good[order]
        ivar = ivar[order] if ivar is not None else None
        cont = cont[order] if cont is not None else None
    return lam, flux, ivar, good, cont


def spectrum_arrays(spectrum: Any, continuum: Any = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray,
                               u.UnitBase, u.UnitBase, np.ndarray | None]:
    """Plain arrays of a spectrum, in a working f_lambda unit, sorted by wavelength.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One-dimensional spectrum with a wavelength (or frequency/energy) axis
        and a spectral flux density (f_lambda, or f_nu, which is converted).
    continuum : `~astropy.units.Quantity` or `specutils.Spectrum`, optional
        Continuum model on the same pixels, subtracted from the flux.

    Returns
    -------
    lam, flux, ivar, good, line_unit, work_unit, continuum
        Wavelength (Angstrom), flux and inverse variance (`None` without an
        uncertainty) in ``work_unit``, the mask of usable pixels, the unit of
        line fluxes (``work_unit`` times Angstrom) and the subtracted continuum
        (`None` if not given).

    Raises
    ------
    TypeError
        If ``spectrum`` is not a specutils spectrum.
    ValueError
        If it is not one-dimensional, its axis is not a wavelength, or
        ``continuum`` does not match it.
    astropy.units.UnitTypeError
        If the flux is not a spectral flux density.
    """
    flux_q, axis = _checked_flux_and_axis(spectrum)
    lam = axis.to_value(u.AA, equivalencies=u.spectral()).astype(float)
    funit = flux_q.unit
    line_unit, work_unit, factor = _working_units(funit, axis.unit, lam)
    flux = flux_q.value.astype(float) * factor
    ivar = _inverse_variance(spectrum.uncertainty, funit, factor, flux.shape)
    good = _good_pixels(flux, lam, spectrum.mask, ivar)

    cont = None
    if continuum is not None:
        cont = _continuum_values(continuum, flux.shape, funit, factor)
        flux = flux - cont
        good &= np.isfinite(cont)

    lam, flux, ivar, good, cont = _sorted_by_wavelength(lam, flux, ivar, good, cont)
    return lam, flux, ivar, good, line_unit, work_unit, cont

