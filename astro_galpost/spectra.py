"""Emission-line fluxes from 1-D spectra (SDSS ``spec`` files and any specutils spectrum).

:func:`measure_lines` fits Gaussian emission lines jointly to a
`specutils.Spectrum` (``Spectrum1D`` in specutils < 2):

* **Continuum.** Each group of overlapping line windows (a *complex*, e.g.
  H-alpha + [NII]) gets a local linear continuum.  It is first estimated by an
  inverse-variance-weighted, sigma-clipped linear fit to side bands free of
  known lines; pixels clipped there (sky residuals, cosmic rays) are dropped,
  and the continuum coefficients are then refitted jointly with the lines, so
  that the flux uncertainties include the continuum uncertainty.  An external
  continuum model (e.g. a stellar-population fit, which corrects Balmer
  absorption) can be subtracted first with ``continuum=``.
* **Lines.** Pixel-integrated Gaussians (exact for binned data) whose centres
  share one velocity offset and whose widths share one velocity dispersion per
  *family*: Balmer lines (H-alpha, H-beta, H-gamma) and forbidden lines ([NII],
  [OIII], [SII], [OI]).  ``tie="all"`` ties every line together instead.  The
  [NII] 6548/6584 and [OIII] 4959/5007 doublets have fixed atomic flux ratios
  (6584/6548 = 2.94 and 5007/4959 = 2.98, Storey & Zeippen 2000).  Lines that
  fall inside a fitted window are always modelled (so H-alpha alone is never
  contaminated by [NII]), but only the requested lines are reported.
* **Fit and errors.** Weighted least squares (`scipy.optimize.least_squares`,
  analytic Jacobian, weights from the inverse variance) started from the best
  point of a coarse grid in velocity and width.  Uncertainties are the square
  roots of the diagonal of :math:`(J^T W J)^{-1}` and are not rescaled by the
  reduced chi-square unless ``rescale_errors=True``; with honest inverse
  variances their pulls are unit normal (checked by the test-suite with
  injected lines).

Wavelengths are **vacuum** (SDSS ``loglam`` is vacuum); see :data:`LINES`.
Reported widths are *observed* dispersions: they include the instrumental
broadening (about 60-70 km/s for SDSS, R ~ 2000).
"""

from __future__ import annotations

import enum
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.io import fits
from astropy.nddata import InverseVariance, NDUncertainty
from astropy.stats import mad_std, sigma_clip
from astropy.table import QTable
from astropy.utils.masked import Masked
from scipy.optimize import least_squares
from scipy.special import ndtr

try:  # specutils >= 2.0
    from specutils import Spectrum
except ImportError:  # pragma: no cover - specutils < 2
    from specutils import Spectrum1D as Spectrum

__all__ = [
    "LINES",
    "SPPIXMASK",
    "SPPIXMASK_BAD",
    "EmissionLine",
    "LineFlag",
    "measure_lines",
    "measure_spectra",
    "read_sdss_spectrum",
]

_C_KMS = const.c.to_value(u.km / u.s)
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
#: SDSS flux-density unit.
SDSS_FLUX_UNIT = u.Unit("1e-17 erg / (s cm2 Angstrom)")


@dataclass(frozen=True)
class EmissionLine:
    """An emission line: vacuum rest wavelength (Angstrom), kinematic family and doublet tie."""

    name: str
    wavelength: float
    family: str
    label: str
    tied_to: str | None = None
    ratio: float = 1.0  # flux(this) = ratio * flux(tied_to)


#: Emission lines known to :func:`measure_lines`, with **vacuum** rest wavelengths
#: in Angstrom (as in the SDSS spectroscopic pipeline).  ``nii_6548`` and
#: ``oiii_4959`` are tied to their stronger doublet partner by the atomic ratio.
LINES: dict[str, EmissionLine] = {
    line.name: line
    for line in (
        EmissionLine("hgamma", 4341.68, "balmer", "H-gamma"),
        EmissionLine("hbeta", 4862.68, "balmer", "H-beta"),
        EmissionLine("oiii_4959", 4960.30, "forbidden", "[OIII] 4959", "oiii_5007", 1 / 2.98),
        EmissionLine("oiii_5007", 5008.24, "forbidden", "[OIII] 5007"),
        EmissionLine("oi_6300", 6302.05, "forbidden", "[OI] 6300"),
        EmissionLine("nii_6548", 6549.86, "forbidden", "[NII] 6548", "nii_6584", 1 / 2.94),
        EmissionLine("halpha", 6564.61, "balmer", "H-alpha"),
        EmissionLine("nii_6584", 6585.27, "forbidden", "[NII] 6584"),
        EmissionLine("sii_6717", 6718.29, "forbidden", "[SII] 6717"),
        EmissionLine("sii_6731", 6732.67, "forbidden", "[SII] 6731"),
    )
}

#: Broad stellar Balmer absorption under the Balmer emission lines, fitted by
#: :func:`measure_lines` with ``balmer_absorption=True`` (one negative Gaussian
#: per Balmer line, sharing one velocity and one width; never reported as lines).
_ABSORPTION: dict[str, EmissionLine] = {
    f"{name}_absorption": EmissionLine(f"{name}_absorption", LINES[name].wavelength, "absorption",
                                       f"{LINES[name].label} absorption")
    for name in ("hgamma", "hbeta", "halpha")
}
_ALL_LINES: dict[str, EmissionLine] = {**LINES, **_ABSORPTION}
#: Width range (km/s) of the absorption component: Balmer troughs of A/F stars
#: in galaxy spectra have sigma ~ 10-20 Angstrom (600-1200 km/s).
_ABSORPTION_SIGMA = (300.0, 2500.0)

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


class LineFlag(enum.IntFlag):
    """Quality bits of a measured line (column ``flag``; ``quality`` spells them out)."""

    OK = 0
    #: ``|flux| / flux_err`` below ``snr_min`` (includes negative fluxes).
    LOW_SNR = 1
    #: Flux fixed to a doublet partner by the atomic ratio (error scaled likewise).
    TIED = 2
    #: Velocity or width hit a fit bound: kinematics and errors unreliable.
    AT_BOUND = 4
    #: More than 20% of the pixels within 3 sigma of the centre are masked or off the spectrum.
    FEW_PIXELS = 8
    #: The spectrum had no uncertainty; the noise was estimated from the continuum scatter.
    NOISE_ESTIMATED = 16
    #: The line is outside the wavelength coverage (only with ``on_error="flag"``).
    OUTSIDE_COVERAGE = 32
    #: Every pixel around the line is masked (only with ``on_error="flag"``).
    NO_DATA = 64
    #: The fit failed or its covariance is singular: values are NaN.
    FIT_FAILED = 128
    #: Fewer than 4 usable side-band pixels: the linear continuum is poorly constrained.
    POOR_CONTINUUM = 256
    #: The SDSS pipeline classifies the spectrum as a star or a quasar (``meta["class"]``),
    #: not a galaxy: stars and z > 1 quasars are not measured (values NaN).
    NOT_GALAXY = 512


def _flag_names(flag: int) -> str:
    if flag == 0:
        return "ok"
    return "|".join(f.name.lower() for f in LineFlag if f.value and flag & f.value)


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
    >>> from astro_galpost.spectra import read_sdss_spectrum
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
        meta: dict[str, Any] = {"header": header}
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

    bunit = header.get("BUNIT", "")
    flux_unit = SDSS_FLUX_UNIT
    if bunit:
        text = bunit.replace("Angstrom", "Ang").replace("Ang", "Angstrom")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", u.UnitsWarning)
            try:
                parsed = u.Unit(text)
                if parsed.is_equivalent(SDSS_FLUX_UNIT):
                    flux_unit = parsed
            except ValueError:
                pass

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


# --------------------------------------------------------------------------- helpers
def _pixel_edges(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid = 0.5 * (lam[1:] + lam[:-1])
    lo = np.concatenate([[lam[0] - (mid[0] - lam[0])], mid])
    hi = np.concatenate([mid, [lam[-1] + (lam[-1] - mid[-1])]])
    return lo, hi


def _spectral_arrays(spectrum: Any, continuum: Any
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray,
                                u.UnitBase, u.UnitBase, np.ndarray | None]:
    """Wavelength (Angstrom), flux and ivar in working f_lambda units, good mask, units."""
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
    lam = axis.to_value(u.AA, equivalencies=u.spectral()).astype(float)
    flam_unit = u.erg / (u.s * u.cm ** 2 * u.AA)
    funit = flux_q.unit
    if funit.is_equivalent(flam_unit):
        line_unit = funit * (axis.unit if axis.unit.is_equivalent(u.AA) else u.AA)
        if not line_unit.is_equivalent(u.erg / (u.s * u.cm ** 2)):  # pragma: no cover
            line_unit = funit * u.AA
        work_unit = line_unit / u.AA
        factor = np.full(lam.shape, funit.to(work_unit))
    elif funit.is_equivalent(flam_unit, equivalencies=u.spectral_density(lam * u.AA)):
        line_unit = u.Unit("1e-17 erg / (s cm2)")
        work_unit = line_unit / u.AA
        factor = (np.ones(lam.shape) * funit).to_value(
            work_unit, equivalencies=u.spectral_density(lam * u.AA))
    else:
        raise u.UnitTypeError(f"the flux has unit {funit.to_string()!r}, which is not a spectral "
                              "flux density (e.g. erg / (s cm2 Angstrom) or Jy); line fluxes "
                              "cannot be measured in it")
    flux = flux_q.value.astype(float) * factor

    ivar = None
    unc = spectrum.uncertainty
    if unc is not None:
        if not isinstance(unc, NDUncertainty):  # pragma: no cover - specutils always wraps
            raise TypeError("spectrum.uncertainty must be an astropy NDUncertainty")
        inv = unc if isinstance(unc, InverseVariance) else unc.represent_as(InverseVariance)
        ivar_vals = np.broadcast_to(np.asarray(inv.array, dtype=float), flux.shape).copy()
        ivar_unit = inv.unit if inv.unit is not None else funit ** -2
        ivar_vals = ivar_vals * (ivar_unit.to(funit ** -2))
        ivar = ivar_vals / factor ** 2
        ivar[~np.isfinite(ivar) | (ivar < 0)] = 0.0

    good = np.isfinite(flux) & np.isfinite(lam)
    if spectrum.mask is not None:
        good &= ~np.broadcast_to(np.asarray(spectrum.mask, dtype=bool), flux.shape)
    if ivar is not None:
        good &= ivar > 0

    cont = None
    if continuum is not None:
        if isinstance(continuum, Spectrum):
            cont_q = u.Quantity(continuum.flux)
        else:
            cont_q = continuum
        if not isinstance(cont_q, u.Quantity) or cont_q.shape != flux.shape:
            raise ValueError("continuum must be a Quantity or Spectrum with the same shape and "
                             "flux units as the spectrum")
        cont = cont_q.to_value(funit).astype(float) * factor
        flux = flux - cont
        good &= np.isfinite(cont)

    order = np.argsort(lam)
    if not np.all(order == np.arange(lam.size)):
        lam, flux, good = lam[order], flux[order], good[order]
        ivar = ivar[order] if ivar is not None else None
        cont = cont[order] if cont is not None else None
    return lam, flux, ivar, good, line_unit, work_unit, cont


@dataclass
class _Complex:
    lines: list[str]
    lo: float
    hi: float
    pix: np.ndarray | None = None  # indices of pixels used in the fit
    side: np.ndarray | None = None  # side-band indices (after clipping)
    c0: float = 0.0
    c1: float = 0.0
    center: float = 0.0
    noise_estimated: bool = False
    poor_continuum: bool = False


def _linear_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    if x.size >= 2 and np.ptp(x) > 0:
        a = np.vstack([np.ones_like(x), x]).T * np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)
        return float(coef[0]), float(coef[1])
    if x.size:
        return float(np.average(y, weights=w)), 0.0
    return 0.0, 0.0


# --------------------------------------------------------------------------- model
class _LineModel:
    """Pixel-integrated Gaussian lines + one linear continuum per complex."""

    def __init__(self, lam, flux, ivar, edges, complexes, lines, z, families):
        self.complexes = complexes
        self.lines = lines  # modelled line names
        self.families = families  # ordered family names
        self.z = z
        idx = np.concatenate([c.pix for c in complexes])
        self.idx = idx
        self.lam = lam[idx]
        self.flux = flux[idx]
        self.sqrt_w = np.sqrt(ivar[idx])
        self.lo = edges[0][idx]
        self.hi = edges[1][idx]
        self.width = self.hi - self.lo
        # free lines: those without a modelled partner
        self.free = [n for n in lines if not (_ALL_LINES[n].tied_to and _ALL_LINES[n].tied_to in lines)]
        self.free_index = {n: i for i, n in enumerate(self.free)}
        self.fam_of = {n: families.index(_family(n, families)) for n in lines}
        n_fam, n_free = len(families), len(self.free)
        self.i_dv = np.arange(n_fam) * 2
        self.i_sig = np.arange(n_fam) * 2 + 1
        self.i_flux = 2 * n_fam + np.arange(n_free)
        self.i_cont = 2 * n_fam + n_free + np.arange(2 * len(complexes))
        self.n_par = 2 * n_fam + n_free + 2 * len(complexes)
        # pixel -> complex membership
        self.cmask = []
        start = 0
        for c in complexes:
            m = np.zeros(idx.size, dtype=bool)
            m[start:start + c.pix.size] = True
            self.cmask.append(m)
            start += c.pix.size
        # line -> (free parent index, ratio)
        self.parent = {}
        for n in lines:
            line = _ALL_LINES[n]
            if n in self.free_index:
                self.parent[n] = (self.free_index[n], 1.0)
            else:
                self.parent[n] = (self.free_index[line.tied_to], line.ratio)

    def profiles(self, dv: np.ndarray, sig: np.ndarray, with_derivs: bool = False):
        """Unit-flux profiles (per Angstrom) of each modelled line at the fitted pixels."""
        out, d_dv, d_sig = {}, {}, {}
        for n in self.lines:
            f = self.fam_of[n]
            lam0 = _ALL_LINES[n].wavelength * (1.0 + self.z)
            mu = lam0 * (1.0 + dv[f] / _C_KMS)
            s = mu * sig[f] / _C_KMS
            a = (self.lo - mu) / s
            b = (self.hi - mu) / s
            prof = (ndtr(b) - ndtr(a)) / self.width
            out[n] = prof
            if with_derivs:
                pa = np.exp(-0.5 * a * a) / _SQRT_2PI
                pb = np.exp(-0.5 * b * b) / _SQRT_2PI
                dprof_dmu = -(pb - pa) / s / self.width
                dprof_ds = -(pb * b - pa * a) / s / self.width
                dmu_ddv = lam0 / _C_KMS
                ds_ddv = lam0 * sig[f] / _C_KMS ** 2
                ds_dsig = mu / _C_KMS
                d_dv[n] = dprof_dmu * dmu_ddv + dprof_ds * ds_ddv
                d_sig[n] = dprof_ds * ds_dsig
        return out, d_dv, d_sig

    def design(self, dv, sig):
        """Design matrix of the linear parameters (free fluxes, continua) at fixed kinematics."""
        prof, _, _ = self.profiles(dv, sig)
        nlin = len(self.free) + 2 * len(self.complexes)
        a = np.zeros((self.lam.size, nlin))
        for n in self.lines:
            j, r = self.parent[n]
            a[:, j] += r * prof[n]
        for k, (c, m) in enumerate(zip(self.complexes, self.cmask)):
            a[m, len(self.free) + 2 * k] = 1.0
            a[m, len(self.free) + 2 * k + 1] = self.lam[m] - c.center
        return a

    def linear_solve(self, dv, sig):
        a = self.design(dv, sig) * self.sqrt_w[:, None]
        y = self.flux * self.sqrt_w
        coef, *_ = np.linalg.lstsq(a, y, rcond=None)
        chi2 = float(np.sum((a @ coef - y) ** 2))
        return coef, chi2

    def unpack(self, p):
        return p[self.i_dv], p[self.i_sig], p[self.i_flux], p[self.i_cont]

    def residuals(self, p):
        dv, sig, fl, ct = self.unpack(p)
        a = self.design(dv, sig)
        return (a @ np.concatenate([fl, ct]) - self.flux) * self.sqrt_w

    def jacobian(self, p):
        dv, sig, fl, ct = self.unpack(p)
        prof, d_dv, d_sig = self.profiles(dv, sig, with_derivs=True)
        jac = np.zeros((self.lam.size, self.n_par))
        for n in self.lines:
            j, r = self.parent[n]
            amp = r * fl[j]
            f = self.fam_of[n]
            jac[:, self.i_dv[f]] += amp * d_dv[n]
            jac[:, self.i_sig[f]] += amp * d_sig[n]
            jac[:, self.i_flux[j]] += r * prof[n]
        for k, (c, m) in enumerate(zip(self.complexes, self.cmask)):
            jac[m, self.i_cont[2 * k]] = 1.0
            jac[m, self.i_cont[2 * k + 1]] = self.lam[m] - c.center
        return jac * self.sqrt_w[:, None]


def _covariance(jac: np.ndarray) -> np.ndarray:
    """Parameter covariance ``(J^T J)^-1`` (pseudo-inverse when singular)."""
    jtj = jac.T @ jac
    try:
        cov = np.linalg.inv(jtj)
        if np.all(np.isfinite(cov)) and np.all(np.diag(cov) >= 0):
            return cov
    except np.linalg.LinAlgError:
        pass
    return np.linalg.pinv(jtj)


def _free_parameters(model: _LineModel, p: np.ndarray, families: Sequence[str],
                     absorbing: np.ndarray) -> np.ndarray:
    """Parameters that are not held fixed: the absorption velocity (pinned to the
    redshift) and an absorption flux at its bound 0 do not enter the covariance,
    and neither does the absorption width when no absorption was found."""
    free = np.ones(model.n_par, dtype=bool)
    if "absorption" in families:
        k = list(families).index("absorption")
        at_zero = absorbing[p[absorbing] > -1e-9 * max(1.0, np.max(np.abs(p[model.i_flux])))]
        free[model.i_dv[k]] = False
        free[at_zero] = False
        if at_zero.size == absorbing.size:
            free[model.i_sig[k]] = False
    return np.flatnonzero(free)


def _family(name: str, families: Sequence[str]) -> str:
    fam = _ALL_LINES[name].family
    return fam if fam in families else families[0]


def _parse_lines(lines: str | Sequence[str]) -> list[str]:
    if isinstance(lines, str):
        lines = [lines]
    out = []
    for name in lines:
        key = str(name).lower().replace(" ", "_")
        if key not in LINES:
            raise ValueError(f"unknown line {name!r}; known lines: {', '.join(LINES)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError("no lines requested")
    return out


# --------------------------------------------------------------------------- main API
def measure_lines(
    spectrum: Spectrum,
    redshift: float | None = None,
    lines: str | Sequence[str] = ("halpha", "hbeta", "nii_6584", "oiii_5007"),
    *,
    window: u.Quantity = 2500 * u.km / u.s,
    line_exclusion: u.Quantity = 800 * u.km / u.s,
    sigma_init: u.Quantity = 120 * u.km / u.s,
    sigma_bounds: tuple[u.Quantity, u.Quantity] = (10 * u.km / u.s, 1000 * u.km / u.s),
    max_velocity: u.Quantity = 600 * u.km / u.s,
    tie: str = "family",
    continuum: Any = None,
    snr_min: float = 3.0,
    rescale_errors: bool = False,
    on_error: str = "raise",
    balmer_absorption: bool = True,
) -> QTable:
    """Measure emission-line fluxes with a joint Gaussian fit.

    Parameters
    ----------
    spectrum : `specutils.Spectrum`
        One-dimensional spectrum with a wavelength axis (vacuum; frequency or
        energy axes are converted) and a spectral flux density (f_lambda, or
        f_nu which is converted).  Its ``uncertainty`` (inverse variance,
        variance or standard deviation) weights the fit; ``mask`` (True = bad)
        and pixels with zero inverse variance are ignored.  Without an
        uncertainty the noise is estimated from the continuum scatter and the
        lines are flagged ``NOISE_ESTIMATED``.
    redshift : float, optional
        Redshift of the galaxy.  Default: ``spectrum.meta["redshift"]`` (set by
        :func:`read_sdss_spectrum`).  Line centres may move by up to
        ``max_velocity`` from it.
    lines : str or sequence of str, optional
        Names from :data:`LINES` to report.  Doublet partners and lines inside
        the fitted windows are modelled even if not requested.
    window : `~astropy.units.Quantity`, optional
        Half-width (velocity) of the fitted region beyond the outermost line of
        each complex.
    line_exclusion : `~astropy.units.Quantity`, optional
        Half-width around every known line excluded from the continuum side bands.
    sigma_init : `~astropy.units.Quantity`, optional
        Central value of the starting grid of line widths.
    sigma_bounds : tuple of `~astropy.units.Quantity`, optional
        Allowed range of the observed velocity dispersion.
    max_velocity : `~astropy.units.Quantity`, optional
        Largest allowed offset of a family's velocity from ``redshift``.
    tie : {"family", "all"}, optional
        Share velocity and width within the Balmer and forbidden families
        (default) or across all lines.
    continuum : `~astropy.units.Quantity` or `specutils.Spectrum`, optional
        Continuum model (e.g. stellar-population fit) subtracted before fitting;
        a local linear term is still fitted on top.  Without it, Balmer fluxes
        are not corrected for underlying stellar absorption.
    snr_min : float, optional
        Below this S/N a line is flagged ``LOW_SNR``.
    rescale_errors : bool, optional
        Multiply uncertainties by ``sqrt(chi2/dof)`` when that exceeds one (use
        when the inverse variance is known to be underestimated).
    on_error : {"raise", "flag"}, optional
        What to do with a requested line that is outside the spectral coverage
        or whose pixels are all masked, and with a spectrum the SDSS pipeline
        classifies as a star or a z > 1 quasar (``spectrum.meta["class"]``):
        raise `ValueError` (default), or return NaN rows flagged
        ``OUTSIDE_COVERAGE`` / ``NO_DATA`` / ``NOT_GALAXY`` and fit the others.
        Lower-redshift quasars are measured and flagged ``NOT_GALAXY``.
    balmer_absorption : bool, optional
        Fit the stellar Balmer absorption under H-alpha, H-beta and H-gamma as
        one broad negative Gaussian per line (at the given redshift, with one
        shared width of 300-2500 km/s), so that the emission fluxes are not biased low by it
        (default). Its flux (<= 0) is reported in ``absorption_flux``. Ignored
        when an external ``continuum`` model is given (which already holds the
        absorption).

    Returns
    -------
    table : `~astropy.table.QTable`
        One row per requested line with columns ``line``, ``rest_wavelength``
        (vacuum, Angstrom), ``wavelength`` (fitted observed centre), ``velocity``
        (offset from ``redshift``), ``flux`` and ``flux_err`` (in the flux unit
        times Angstrom, e.g. ``1e-17 erg / (s cm2)`` for SDSS), ``sigma`` and
        ``sigma_err`` (observed dispersion incl. instrumental, km/s), ``fwhm``,
        ``continuum`` (at the line centre), ``ew`` (rest-frame equivalent width,
        positive in emission), ``snr``, ``flag`` (`LineFlag` bits) and
        ``quality`` (flag names).  Unmeasurable values are NaN.  ``meta`` holds
        ``redshift``, ``line_flux_unit``, the fit's ``chi2`` and ``dof``, the
        kinematic ``families`` and, for each family, ``<family>_velocity``,
        ``<family>_sigma`` and their ``_err`` (plain floats in km/s).

    Raises
    ------
    TypeError
        If ``spectrum`` is not a specutils spectrum or ``redshift`` is missing.
    ValueError
        If the spectral axis is not a wavelength (e.g. pixels), the flux is all
        zero or all masked, a line name is unknown, the redshift is invalid, or
        (with ``on_error="raise"``) a line is outside the coverage (the message
        names the line and the range) or has no unmasked pixel.
    astropy.units.UnitTypeError
        If the flux is not a spectral flux density.

    Examples
    --------
    A synthetic H-alpha + [NII] spectrum on SDSS-like log-lambda pixels:

    >>> import numpy as np
    >>> import astropy.units as u
    >>> from astropy.nddata import InverseVariance
    >>> from specutils import Spectrum
    >>> from astro_galpost.spectra import measure_lines
    >>> lam = 10 ** np.arange(np.log10(6600), np.log10(6900), 1e-4)
    >>> def gauss(flux, centre, sigma_kms):
    ...     s = centre * sigma_kms / 299792.458
    ...     return flux * np.exp(-0.5 * ((lam - centre) / s) ** 2) / (np.sqrt(2 * np.pi) * s)
    >>> z = 0.03
    >>> f = (10 + gauss(300, 6564.61 * (1 + z), 100) + gauss(100, 6585.27 * (1 + z), 100)
    ...      + gauss(100 / 2.94, 6549.86 * (1 + z), 100))
    >>> spec = Spectrum(flux=f * u.Unit("1e-17 erg / (s cm2 Angstrom)"), spectral_axis=lam * u.AA,
    ...                 uncertainty=InverseVariance(np.full(lam.size, 4.0)))
    >>> t = measure_lines(spec, z, lines=["halpha", "nii_6584"])
    >>> for row in t:
    ...     print(f"{row['line']}: {row['flux'].value:.0f} +- {row['flux_err'].value:.0f}")
    halpha: 300 +- 2
    nii_6584: 100 +- 2
    """
    if on_error not in ("raise", "flag"):
        raise ValueError(f"on_error must be 'raise' or 'flag', got {on_error!r}")
    if tie not in ("family", "all"):
        raise ValueError(f"tie must be 'family' or 'all', got {tie!r}")
    requested = _parse_lines(lines)

    lam, flux, ivar, good, line_unit, work_unit, cont_ext = _spectral_arrays(spectrum, continuum)

    if redshift is None:
        redshift = (spectrum.meta or {}).get("redshift")
        if redshift is None:
            raise TypeError("redshift is required (no 'redshift' in spectrum.meta)")
    if isinstance(redshift, u.Quantity):
        redshift = redshift.to_value(u.dimensionless_unscaled)
    try:
        z = float(redshift)
    except (TypeError, ValueError):
        raise TypeError(f"redshift must be a number, got {type(redshift).__name__}") from None
    if not np.isfinite(z) or z <= -0.05:
        raise ValueError(f"invalid redshift {z!r}: must be finite and > -0.05")
    pipeline_class = str((spectrum.meta or {}).get("class", "")).strip().upper()
    refuse = pipeline_class == "STAR" or (pipeline_class == "QSO" and z > 1)
    if refuse and on_error == "raise":
        raise ValueError(f"the SDSS pipeline classifies this spectrum as {pipeline_class} (z = {z:.4g}), "
                         "not a galaxy: there are no galaxy emission lines to measure "
                         "(on_error='flag' returns NaN rows flagged not_galaxy)")

    finite_flux = flux[np.isfinite(flux)]
    if finite_flux.size == 0 or np.all(finite_flux == 0):
        raise ValueError("the spectrum's flux is all zero (or NaN): nothing to measure "
                         "(an SDSS spectrum like this has ZWARNING set and ivar = 0 everywhere)")
    if not good.any():
        raise ValueError("every pixel of the spectrum is masked (mask or zero inverse variance)")

    vel = lambda q: u.Quantity(q).to_value(u.km / u.s)  # noqa: E731
    win_kms, excl_kms, sig0 = vel(window), vel(line_exclusion), vel(sigma_init)
    sig_lo, sig_hi = vel(sigma_bounds[0]), vel(sigma_bounds[1])
    vmax = vel(max_velocity)
    if not (0 < sig_lo < sig_hi) or win_kms <= 0 or excl_kms <= 0 or vmax <= 0:
        raise ValueError("window, line_exclusion, max_velocity and sigma_bounds must be positive "
                         "with sigma_bounds[0] < sigma_bounds[1]")
    sig0 = float(np.clip(sig0, sig_lo * 1.01, sig_hi * 0.99))

    lam_min, lam_max = lam[0], lam[-1]
    edges = _pixel_edges(lam)
    flags: dict[str, int] = {n: LineFlag.NOT_GALAXY if pipeline_class in ("STAR", "QSO") else 0
                             for n in requested}

    def obs(name: str) -> float:
        return _ALL_LINES[name].wavelength * (1.0 + z)

    # ---- which lines can be modelled
    def status(name: str) -> str:
        lo_core = obs(name) * (1 - 3 * sig0 / _C_KMS)
        hi_core = obs(name) * (1 + 3 * sig0 / _C_KMS)
        if obs(name) < lam_min or obs(name) > lam_max:
            return "outside"
        core = (lam >= lo_core) & (lam <= hi_core)
        if np.count_nonzero(core & good) < 3:
            return "nodata"
        return "ok"

    for name in [] if refuse else requested:
        st = status(name)
        if st == "outside":
            msg = (f"line {name!r} ({LINES[name].label}, vacuum rest {LINES[name].wavelength:.2f} "
                   f"Angstrom) is observed at {obs(name):.1f} Angstrom at z={z:.5g}, outside the "
                   f"spectrum's coverage {lam_min:.1f}-{lam_max:.1f} Angstrom "
                   f"(rest-frame {lam_min / (1 + z):.1f}-{lam_max / (1 + z):.1f})")
            if on_error == "raise":
                raise ValueError(msg)
            flags[name] |= LineFlag.OUTSIDE_COVERAGE
        elif st == "nodata":
            msg = (f"line {name!r} ({LINES[name].label}) at {obs(name):.1f} Angstrom: all pixels "
                   "around the line are masked or have zero inverse variance")
            if on_error == "raise":
                raise ValueError(msg)
            flags[name] |= LineFlag.NO_DATA

    modelled = [] if refuse else [n for n in requested if flags[n] & ~LineFlag.NOT_GALAXY == 0]
    # add doublet partners and neighbours inside the windows
    changed = True
    while changed:
        changed = False
        for name, line in LINES.items():
            if name in modelled or status(name) != "ok":
                continue
            partner = line.tied_to in modelled or any(
                LINES[m].tied_to == name for m in modelled)
            near = any(abs(obs(name) - obs(m)) < obs(m) * (win_kms - excl_kms) / _C_KMS
                       for m in modelled)
            if partner or near:
                modelled.append(name)
                changed = True
    if balmer_absorption and cont_ext is None:
        modelled += [f"{n}_absorption" for n in modelled if f"{n}_absorption" in _ABSORPTION]
    modelled.sort(key=lambda n: _ALL_LINES[n].wavelength)

    families = ["all"] if tie == "all" else []
    for n in modelled:
        fam = _ALL_LINES[n].family
        if fam not in families and (tie == "family" or fam == "absorption"):
            families.append(fam)

    meta: dict[str, Any] = {"redshift": z, "line_flux_unit": line_unit.to_string(), "tie": tie}
    result_rows: dict[str, dict[str, float]] = {}

    if modelled:
        # ---- complexes of overlapping windows
        # broad absorption troughs need twice the window to separate them from the continuum
        half = {n: win_kms * (2 if n in _ABSORPTION else 1) / _C_KMS for n in modelled}
        spans = sorted((obs(n) * (1 - half[n]), obs(n) * (1 + half[n]), n) for n in modelled)
        complexes: list[_Complex] = []
        for lo, hi, n in spans:
            if complexes and lo <= complexes[-1].hi:
                complexes[-1].hi = max(complexes[-1].hi, hi)
                complexes[-1].lines.append(n)
            else:
                complexes.append(_Complex([n], lo, hi))
        all_obs = np.array([obs(n) for n in LINES])
        ivar_fit = np.zeros_like(flux) if ivar is None else ivar.copy()
        for c in complexes:
            inwin = (lam >= c.lo) & (lam <= c.hi) & good
            near_line = np.any(np.abs(lam[:, None] / all_obs[None, :] - 1.0)
                               < excl_kms / _C_KMS, axis=1)
            side = np.flatnonzero(inwin & ~near_line)
            c.center = 0.5 * (c.lo + c.hi)
            x = lam[side] - c.center
            y = flux[side]
            w = ivar_fit[side] if ivar is not None else np.ones(side.size)
            keep = np.ones(side.size, dtype=bool)
            for _ in range(5):
                c0, c1 = _linear_fit(x[keep], y[keep], w[keep])
                resid = y - (c0 + c1 * x)
                clipped = sigma_clip(np.ma.masked_array(resid, ~keep), sigma=3.0, maxiters=1)
                new_keep = ~np.ma.getmaskarray(clipped)
                if np.array_equal(new_keep, keep):
                    break
                keep = new_keep
            c.c0, c.c1 = _linear_fit(x[keep], y[keep], w[keep])
            c.poor_continuum = int(keep.sum()) < 4
            dropped = side[~keep]
            pix = np.flatnonzero(inwin)
            c.pix = np.setdiff1d(pix, dropped)
            c.side = side[keep]
            if ivar is None:
                resid = flux[c.side] - (c.c0 + c.c1 * (lam[c.side] - c.center))
                if resid.size >= 3:
                    mad = mad_std(resid)
                else:
                    mad = 0.0
                if not np.isfinite(mad) or mad <= 0:
                    mad = np.std(flux[c.pix]) if c.pix.size > 1 else 1.0
                    mad = mad if mad > 0 else 1.0
                ivar_fit[c.pix] = 1.0 / mad ** 2
                c.noise_estimated = True

        model = _LineModel(lam, flux, ivar_fit, edges, complexes, modelled, z, families)
        nfam = len(families)

        # ---- starting point: coarse grid in (dv, sigma) per family, linear params solved
        dv_grid = np.array([-0.5, 0.0, 0.5]) * min(vmax, 300.0)
        sig_grid = np.clip(np.array([0.5, 1.0, 2.0, 4.0]) * sig0, sig_lo * 1.01, sig_hi * 0.99)
        fam_lo = np.array([_ABSORPTION_SIGMA[0] if f == "absorption" else sig_lo for f in families])
        fam_hi = np.array([_ABSORPTION_SIGMA[1] if f == "absorption" else sig_hi for f in families])
        grids = [[(0.0, ss) for ss in (500.0, 800.0, 1200.0, 1800.0)] if fam == "absorption"
                 else [(dvv, ss) for dvv in dv_grid for ss in sig_grid] for fam in families]
        best = (np.inf, None, None)
        start_dv = np.zeros(nfam)
        start_sig = np.where([f == "absorption" for f in families], 800.0, sig0)
        # optimise one family at a time (coordinate descent), two sweeps
        for _ in range(2):
            for f in range(nfam):
                for dvv, ss in grids[f]:
                    dv, sg = start_dv.copy(), start_sig.copy()
                    dv[f], sg[f] = dvv, ss
                    coef, chi2 = model.linear_solve(dv, sg)
                    if chi2 < best[0]:
                        best = (chi2, dv, sg)
                start_dv, start_sig = best[1].copy(), best[2].copy()
        coef, _ = model.linear_solve(start_dv, start_sig)
        p0 = np.empty(model.n_par)
        p0[model.i_dv], p0[model.i_sig] = start_dv, start_sig
        p0[model.i_flux] = coef[: len(model.free)]
        p0[model.i_cont] = coef[len(model.free):]
        lower = np.full(model.n_par, -np.inf)
        upper = np.full(model.n_par, np.inf)
        # the absorption is stellar: held at the redshift (SDSS's comes from stellar templates);
        # left free it drifts to the bound, trading flux with the emission lines
        vlim = np.array([min(vmax, 1.0) if f == "absorption" else vmax for f in families])
        lower[model.i_dv], upper[model.i_dv] = -vlim, vlim
        lower[model.i_sig], upper[model.i_sig] = fam_lo, fam_hi
        absorbing = model.i_flux[[n in _ABSORPTION for n in model.free]]
        upper[absorbing] = 0.0  # an absorption trough, never emission
        p0[absorbing] = np.minimum(p0[absorbing], 0.0)

        fit_ok = True
        try:
            res = least_squares(model.residuals, p0, jac=model.jacobian, bounds=(lower, upper),
                                method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10,
                                max_nfev=2000)
            p = res.x
            jac = model.jacobian(p)
            chi2 = float(np.sum(res.fun ** 2))
            fit_ok = bool(res.status > 0) and np.all(np.isfinite(p))
        except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - defensive
            fit_ok, p, jac, chi2 = False, p0, None, np.nan
        dof = int(model.lam.size - model.n_par)
        at_bound = np.zeros(model.n_par, dtype=bool)
        if fit_ok:
            span = upper - lower
            tol = 1e-4 * np.where(np.isfinite(span), span, 1.0)
            at_bound = (np.abs(p - lower) < tol) | (np.abs(upper - p) < tol)
        cov = None
        if fit_ok and jac is not None:
            free = _free_parameters(model, p, families, absorbing)
            cov = np.zeros((model.n_par, model.n_par))
            cov[np.ix_(free, free)] = _covariance(jac[:, free])
            if rescale_errors and dof > 0 and chi2 / dof > 1:
                cov = cov * (chi2 / dof)
        err = np.sqrt(np.clip(np.diag(cov), 0, None)) if cov is not None \
            else np.full(model.n_par, np.nan)

        dv, sg, fl, ct = model.unpack(p)
        meta.update(chi2=chi2, dof=dof, rescaled=bool(rescale_errors and dof > 0
                                                       and chi2 / dof > 1))
        meta["families"] = list(families)
        for i, fam in enumerate(families):  # flat floats (km/s) so the table writes to FITS
            meta[f"{fam}_velocity"] = float(dv[i])
            meta[f"{fam}_velocity_err"] = float(err[model.i_dv[i]])
            meta[f"{fam}_sigma"] = float(sg[i])
            meta[f"{fam}_sigma_err"] = float(err[model.i_sig[i]])

        for name in requested:
            if name not in modelled:
                continue
            j, ratio = model.parent[name]
            f = model.fam_of[name]
            ci = next(k for k, c in enumerate(complexes) if name in c.lines)
            c = complexes[ci]
            mu = obs(name) * (1 + dv[f] / _C_KMS)
            cont = ct[2 * ci] + ct[2 * ci + 1] * (mu - c.center)
            if cont_ext is not None:
                cont = cont + float(np.interp(mu, lam, cont_ext))
            line_flux = ratio * fl[j]
            line_err = ratio * err[model.i_flux[j]]
            fl_flag = 0
            if name not in model.free_index:
                fl_flag |= LineFlag.TIED
            if not fit_ok or cov is None or not np.isfinite(line_err) or line_err <= 0:
                fl_flag |= LineFlag.FIT_FAILED
                line_flux = line_err = np.nan
            if at_bound[model.i_dv[f]] or at_bound[model.i_sig[f]]:
                fl_flag |= LineFlag.AT_BOUND
            if c.noise_estimated:
                fl_flag |= LineFlag.NOISE_ESTIMATED
            if c.poor_continuum:
                fl_flag |= LineFlag.POOR_CONTINUUM
            # coverage of the line core
            s_ang = mu * sg[f] / _C_KMS
            core_lo, core_hi = mu - 3 * s_ang, mu + 3 * s_ang
            core = (lam >= core_lo) & (lam <= core_hi)
            step = np.median(np.diff(lam[max(0, np.searchsorted(lam, mu) - 5):
                                         np.searchsorted(lam, mu) + 5])) \
                if lam.size > 2 else 1.0
            expected = max(1.0, (core_hi - core_lo) / step)
            if np.count_nonzero(core & good) < 0.8 * expected:
                fl_flag |= LineFlag.FEW_PIXELS
            snr = line_flux / line_err if np.isfinite(line_err) and line_err > 0 else np.nan
            if not np.isfinite(snr) or abs(snr) < snr_min or snr < 0:
                fl_flag |= LineFlag.LOW_SNR
            absorption = f"{name}_absorption"
            result_rows[name] = {
                "absorption": fl[model.free_index[absorption]] if absorption in model.free_index else np.nan,
                "wavelength": mu, "velocity": dv[f], "flux": line_flux, "flux_err": line_err,
                "sigma": sg[f], "sigma_err": err[model.i_sig[f]], "continuum": cont,
                "snr": snr,
            }
            flags[name] |= fl_flag

    # ---- assemble the table
    n = len(requested)
    nan = np.full(n, np.nan)

    def col(key: str) -> np.ndarray:
        return np.array([result_rows.get(r, {}).get(key, np.nan) for r in requested], dtype=float)

    flux_v, cont_v = col("flux"), col("continuum")
    with np.errstate(divide="ignore", invalid="ignore"):
        ew = np.where(cont_v > 0, flux_v / cont_v / (1 + z), np.nan)
    table = QTable(meta=meta)
    table["line"] = requested
    table["rest_wavelength"] = np.array([LINES[r].wavelength for r in requested]) * u.AA
    table["wavelength"] = col("wavelength") * u.AA
    table["velocity"] = col("velocity") * u.km / u.s
    table["flux"] = flux_v * line_unit
    table["flux_err"] = col("flux_err") * line_unit
    table["sigma"] = col("sigma") * u.km / u.s
    table["sigma_err"] = col("sigma_err") * u.km / u.s
    table["fwhm"] = col("sigma") * _FWHM_PER_SIGMA * u.km / u.s
    table["absorption_flux"] = col("absorption") * line_unit
    table["continuum"] = cont_v * work_unit
    table["ew"] = ew * u.AA
    table["snr"] = col("snr") if result_rows else nan
    table["flag"] = np.array([int(flags[r]) for r in requested], dtype=np.int32)
    table["quality"] = [_flag_names(flags[r]) for r in requested]
    return table


# --------------------------------------------------------------------------- batches
def measure_spectra(
    spectra: Sequence[str | PathLike | Spectrum],
    lines: str | Sequence[str] = ("halpha", "hbeta", "nii_6584", "oiii_5007"),
    **options: Any,
) -> QTable:
    """Measure lines in many spectra; one that cannot be measured never stops the batch.

    Each spectrum (an SDSS ``spec`` file, read with :func:`read_sdss_spectrum`,
    or a `specutils.Spectrum`) goes through :func:`measure_lines` with
    ``on_error="flag"``: a line outside the coverage or fully masked, a star or
    a z > 1 quasar gives flagged rows. A spectrum that cannot be measured at
    all (all-zero flux, every pixel masked, a FITS file that is not a
    spectrum) gives rows flagged ``NO_DATA`` whose ``error`` says why.

    Parameters
    ----------
    spectra : sequence of path-like or `specutils.Spectrum`
        The spectra.
    lines : str or sequence of str, optional
        Lines to report (see :data:`LINES`).
    **options
        Passed to :func:`measure_lines` (not ``on_error``).

    Returns
    -------
    `~astropy.table.QTable`
        One row per spectrum and line: ``spectrum`` (index), ``source`` (file
        name or ``""``), ``line``, ``flux``, ``flux_err``, ``absorption_flux``
        (masked where not measured), ``snr``, ``flag``, ``quality``, ``error``.
    """
    requested = _parse_lines(lines)
    rows = []
    for k, item in enumerate(spectra):
        source = "" if isinstance(item, Spectrum) else str(item)
        try:
            spectrum = item if isinstance(item, Spectrum) else read_sdss_spectrum(item)
            table = measure_lines(spectrum, lines=requested, on_error="flag", **options)
        except (ValueError, OSError) as err:
            rows += [(k, source, name, np.nan, np.nan, np.nan, np.nan, int(LineFlag.NO_DATA), str(err))
                     for name in requested]
            continue
        for r in table:
            rows.append((k, source, r["line"], r["flux"].value, r["flux_err"].value,
                         r["absorption_flux"].value, r["snr"], int(r["flag"]), ""))
    names = ("spectrum", "source", "line", "flux", "flux_err", "absorption_flux", "snr", "flag", "error")
    columns = dict(zip(names, zip(*rows))) if rows else {n: [] for n in names}
    out = QTable()
    out["spectrum"] = np.asarray(columns["spectrum"], dtype=int)
    out["source"] = np.asarray(columns["source"], dtype=str)
    out["line"] = np.asarray(columns["line"], dtype=str)
    unit = u.Unit("1e-17 erg / (s cm2)")
    for name in ("flux", "flux_err", "absorption_flux"):
        values = np.asarray(columns[name], dtype=float)
        out[name] = Masked(values * unit, mask=~np.isfinite(values))
    out["snr"] = np.asarray(columns["snr"], dtype=float)
    out["flag"] = np.asarray(columns["flag"], dtype=np.int32)
    out["quality"] = [_flag_names(f) for f in out["flag"]]
    out["error"] = np.asarray(columns["error"], dtype=str)
    return out
