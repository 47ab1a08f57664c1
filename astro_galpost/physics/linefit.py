"""Emission-line fluxes from 1-D spectra: a joint Gaussian fit of the lines of `LINES`.

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

Wavelengths are **vacuum** (SDSS ``loglam`` is vacuum); see
:data:`~astro_galpost.physics.LINES`.
Reported widths are *observed* dispersions: they include the instrumental
broadening (about 60-70 km/s for SDSS, R ~ 2000).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

import numpy as np
from astropy import constants as const
from astropy import units as u
from astropy.stats import gaussian_sigma_to_fwhm, mad_std, sigma_clip
from astropy.table import QTable
from astropy.utils.masked import Masked
from scipy.optimize import least_squares
from scipy.special import ndtr

from .lines import FLUX_UNIT, LINES, EmissionLine, parse_line_names
from .spectra import Spectrum, read_sdss_spectrum, spectrum_arrays

__all__ = ["LineFlag", "measure_lines", "measure_spectra"]

_C_KMS = const.c.to_value(u.km / u.s)
_SQRT_2PI = np.sqrt(2.0 * np.pi)

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
    #: The fit failed, or the data cannot tell the line from another (its covariance is
    #: singular): values are NaN.
    FIT_FAILED = 128
    #: Fewer than 4 usable side-band pixels: the linear continuum is poorly constrained.
    POOR_CONTINUUM = 256
    #: The SDSS pipeline classifies the spectrum as a star or a quasar (``meta["class"]``),
    #: not a galaxy: stars and z > 1 quasars are not measured (values NaN).
    NOT_GALAXY = 512
    #: The SDSS pipeline's redshift carries a warning (``meta["zwarning"]``, ZWARNING bits other
    #: than MANY_OUTLIERS, which SDSS says "only rarely signifies a real error": it is set by
    #: strong emission lines): the lines may not be where the redshift puts them.
    ZWARNING = 1024


def _flag_names(flag: int) -> str:
    if flag == 0:
        return "ok"
    return "|".join(f.name.lower() for f in LineFlag if f.value and flag & f.value)


# --------------------------------------------------------------------------- model
def _pixel_edges(lam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid = 0.5 * (lam[1:] + lam[:-1])
    lo = np.concatenate([[lam[0] - (mid[0] - lam[0])], mid])
    hi = np.concatenate([mid, [lam[-1] + (lam[-1] - mid[-1])]])
    return lo, hi


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
        dv, sig, fl, _ = self.unpack(p)
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


def _covariance(jac: np.ndarray, rcond: float = 1e-10) -> np.ndarray:
    """Parameter covariance ``(J^T J)^-1``, NaN for parameters the data cannot tell apart.

    ``J^T J`` is scaled to unit diagonal (so that fluxes, velocities and continua
    compare) and diagonalised; a direction with an eigenvalue below ``rcond``
    times the largest is not constrained by the data (two lines of the same
    shape, a width with no flux to measure it). The parameters that move along
    such a direction get NaN variances and covariances; the others get the
    inverse on the constrained directions. (Well-posed fits of SDSS spectra
    have condition numbers below 10^3; degenerate ones above 10^15.)
    """
    jtj = jac.T @ jac
    scale = np.sqrt(np.diag(jtj))
    scale = np.where(scale > 0, scale, 1.0)
    eigval, eigvec = np.linalg.eigh(jtj / np.outer(scale, scale))
    null = eigval <= rcond * max(eigval[-1], 0.0)
    kept = eigvec[:, ~null]
    cov = (kept / eigval[~null]) @ kept.T / np.outer(scale, scale)
    undetermined = np.any(np.abs(eigvec[:, null]) > 1e-6, axis=1)
    cov[undetermined, :] = np.nan
    cov[:, undetermined] = np.nan
    return cov


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


# --------------------------------------------------------------------------- fit steps
@dataclass(frozen=True)
class _Options:
    """Validated velocity options of `measure_lines` (km/s)."""

    window: float
    exclusion: float
    sigma_init: float
    sigma_lo: float
    sigma_hi: float
    vmax: float


def _options(window, line_exclusion, sigma_init, sigma_bounds, max_velocity) -> _Options:
    def vel(q: Any) -> float:
        return u.Quantity(q).to_value(u.km / u.s)

    win_kms, excl_kms, sig0 = vel(window), vel(line_exclusion), vel(sigma_init)
    sig_lo, sig_hi = vel(sigma_bounds[0]), vel(sigma_bounds[1])
    vmax = vel(max_velocity)
    if not (0 < sig_lo < sig_hi) or win_kms <= 0 or excl_kms <= 0 or vmax <= 0:
        raise ValueError("window, line_exclusion, max_velocity and sigma_bounds must be positive "
                         "with sigma_bounds[0] < sigma_bounds[1]")
    sig0 = float(np.clip(sig0, sig_lo * 1.01, sig_hi * 0.99))
    return _Options(win_kms, excl_kms, sig0, sig_lo, sig_hi, vmax)


def _redshift(spectrum: Spectrum, redshift: Any) -> float:
    """The redshift argument, or ``spectrum.meta["redshift"]``, as a checked float."""
    if redshift is None:
        redshift = (spectrum.meta or {}).get("redshift")
        if redshift is None:
            raise ValueError("redshift is required (no 'redshift' in spectrum.meta)")
    if isinstance(redshift, u.Quantity):
        redshift = redshift.to_value(u.dimensionless_unscaled)
    try:
        z = float(redshift)
    except (TypeError, ValueError):
        raise TypeError(f"redshift must be a number, got {type(redshift).__name__}") from None
    if not np.isfinite(z) or z <= -0.05:
        raise ValueError(f"invalid redshift {z!r}: must be finite and > -0.05")
    return z


def _pipeline_class(spectrum: Spectrum, z: float, on_error: str) -> tuple[str, bool]:
    """The SDSS pipeline class and whether it forbids a fit (stars, z > 1 quasars)."""
    pipeline_class = str((spectrum.meta or {}).get("class", "")).strip().upper()
    refuse = pipeline_class == "STAR" or (pipeline_class == "QSO" and z > 1)
    if refuse and on_error == "raise":
        raise ValueError(f"the SDSS pipeline classifies this spectrum as {pipeline_class} (z = {z:.4g}), "
                         "not a galaxy: there are no galaxy emission lines to measure "
                         "(on_error='flag' returns NaN rows flagged not_galaxy)")
    return pipeline_class, refuse


#: SDSS ZWARNING bit MANY_OUTLIERS (bit 4): set by high S/N spectra and strong or broad lines
_MANY_OUTLIERS = 16


def _zwarning(spectrum: Spectrum) -> int:
    """`LineFlag.ZWARNING` if the SDSS redshift carries a warning that matters, else 0."""
    zwarning = int((spectrum.meta or {}).get("zwarning", 0) or 0)
    return LineFlag.ZWARNING if zwarning & ~_MANY_OUTLIERS else 0


@dataclass
class _Data:
    """The spectrum's arrays and the observed wavelength of each line at redshift ``z``."""

    lam: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray | None
    good: np.ndarray
    cont_ext: np.ndarray | None
    z: float

    def obs(self, name: str) -> float:
        return _ALL_LINES[name].wavelength * (1.0 + self.z)

    def status(self, name: str, sig0: float) -> str:
        """``"outside"`` the coverage, ``"nodata"`` (< 3 good core pixels) or ``"ok"``."""
        obs = self.obs(name)
        if obs < self.lam[0] or obs > self.lam[-1]:
            return "outside"
        core = (self.lam >= obs * (1 - 3 * sig0 / _C_KMS)) & (self.lam <= obs * (1 + 3 * sig0 / _C_KMS))
        return "nodata" if np.count_nonzero(core & self.good) < 3 else "ok"


def _check_coverage(data: _Data, requested: list[str], flags: dict[str, int], sig0: float,
                    on_error: str) -> None:
    """Raise, or flag ``OUTSIDE_COVERAGE``/``NO_DATA``, for requested lines that cannot be fitted."""
    z, lam_min, lam_max = data.z, data.lam[0], data.lam[-1]
    for name in requested:
        st, obs = data.status(name, sig0), data.obs(name)
        if st == "outside":
            msg = (f"line {name!r} ({LINES[name].label}, vacuum rest {LINES[name].wavelength:.2f} "
                   f"Angstrom) is observed at {obs:.1f} Angstrom at z={z:.5g}, outside the "
                   f"spectrum's coverage {lam_min:.1f}-{lam_max:.1f} Angstrom "
                   f"(rest-frame {lam_min / (1 + z):.1f}-{lam_max / (1 + z):.1f})")
            if on_error == "raise":
                raise ValueError(msg)
            flags[name] |= LineFlag.OUTSIDE_COVERAGE
        elif st == "nodata":
            msg = (f"line {name!r} ({LINES[name].label}) at {obs:.1f} Angstrom: all pixels "
                   "around the line are masked or have zero inverse variance")
            if on_error == "raise":
                raise ValueError(msg)
            flags[name] |= LineFlag.NO_DATA


def _modelled_lines(data: _Data, start: list[str], opts: _Options, absorption: bool) -> list[str]:
    """The requested lines plus doublet partners, neighbours inside the windows and,
    if ``absorption``, the Balmer absorption under them, sorted by wavelength."""
    modelled = list(start)
    reach = (opts.window - opts.exclusion) / _C_KMS
    changed = True
    while changed:
        changed = False
        for name, line in LINES.items():
            if name in modelled or data.status(name, opts.sigma_init) != "ok":
                continue
            partner = line.tied_to in modelled or any(LINES[m].tied_to == name for m in modelled)
            near = any(abs(data.obs(name) - data.obs(m)) < data.obs(m) * reach for m in modelled)
            if partner or near:
                modelled.append(name)
                changed = True
    if absorption:
        modelled += [f"{n}_absorption" for n in modelled if f"{n}_absorption" in _ABSORPTION]
    return sorted(modelled, key=lambda n: _ALL_LINES[n].wavelength)


def _families(modelled: list[str], tie: str) -> list[str]:
    families = ["all"] if tie == "all" else []
    for n in modelled:
        fam = _ALL_LINES[n].family
        if fam not in families and (tie == "family" or fam == "absorption"):
            families.append(fam)
    return families


def _complexes(data: _Data, modelled: list[str], opts: _Options) -> list[_Complex]:
    """Groups of lines whose fit windows overlap (broad absorption troughs get twice the
    window, to separate them from the continuum)."""
    half = {n: opts.window * (2 if n in _ABSORPTION else 1) / _C_KMS for n in modelled}
    spans = sorted((data.obs(n) * (1 - half[n]), data.obs(n) * (1 + half[n]), n) for n in modelled)
    complexes: list[_Complex] = []
    for lo, hi, n in spans:
        if complexes and lo <= complexes[-1].hi:
            complexes[-1].hi = max(complexes[-1].hi, hi)
            complexes[-1].lines.append(n)
        else:
            complexes.append(_Complex([n], lo, hi))
    return complexes


def _side_band_continuum(c: _Complex, data: _Data, ivar_fit: np.ndarray, exclusion: float) -> None:
    """Sigma-clipped linear continuum of a complex from its line-free side bands; sets
    the complex's pixels (clipped side-band pixels dropped), side band and coefficients."""
    lam, flux = data.lam, data.flux
    all_obs = np.array([data.obs(n) for n in LINES])
    inwin = (lam >= c.lo) & (lam <= c.hi) & data.good
    near_line = np.any(np.abs(lam[:, None] / all_obs[None, :] - 1.0) < exclusion / _C_KMS, axis=1)
    side = np.flatnonzero(inwin & ~near_line)
    c.center = 0.5 * (c.lo + c.hi)
    x, y = lam[side] - c.center, flux[side]
    w = ivar_fit[side] if data.ivar is not None else np.ones(side.size)
    keep = np.ones(side.size, dtype=bool)
    for _ in range(5):
        c0, c1 = _linear_fit(x[keep], y[keep], w[keep])
        clipped = sigma_clip(np.ma.masked_array(y - (c0 + c1 * x), ~keep), sigma=3.0, maxiters=1)
        new_keep = ~np.ma.getmaskarray(clipped)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    c.c0, c.c1 = _linear_fit(x[keep], y[keep], w[keep])
    c.poor_continuum = int(keep.sum()) < 4
    c.pix = np.setdiff1d(np.flatnonzero(inwin), side[~keep])
    c.side = side[keep]


def _estimate_noise(c: _Complex, data: _Data, ivar_fit: np.ndarray) -> None:
    """Without an uncertainty: inverse variance of the complex from its side-band scatter."""
    resid = data.flux[c.side] - (c.c0 + c.c1 * (data.lam[c.side] - c.center))
    mad = mad_std(resid) if resid.size >= 3 else 0.0
    if not np.isfinite(mad) or mad <= 0:
        mad = np.std(data.flux[c.pix]) if c.pix.size > 1 else 1.0
        mad = mad if mad > 0 else 1.0
    ivar_fit[c.pix] = 1.0 / mad ** 2
    c.noise_estimated = True


def _start(model: _LineModel, families: list[str], opts: _Options
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Starting point (best of a coarse grid in velocity and width per family, optimised one
    family at a time in two sweeps, linear parameters solved) and the parameter bounds."""
    nfam = len(families)
    is_abs = np.array([f == "absorption" for f in families])
    dv_grid = np.array([-0.5, 0.0, 0.5]) * min(opts.vmax, 300.0)
    sig_grid = np.clip(np.array([0.5, 1.0, 2.0, 4.0]) * opts.sigma_init,
                       opts.sigma_lo * 1.01, opts.sigma_hi * 0.99)
    grids = [[(0.0, ss) for ss in (500.0, 800.0, 1200.0, 1800.0)] if fam == "absorption"
             else [(dvv, ss) for dvv in dv_grid for ss in sig_grid] for fam in families]
    best = (np.inf, None, None)
    start_dv, start_sig = np.zeros(nfam), np.where(is_abs, 800.0, opts.sigma_init)
    for _ in range(2):
        for f in range(nfam):
            for dvv, ss in grids[f]:
                dv, sg = start_dv.copy(), start_sig.copy()
                dv[f], sg[f] = dvv, ss
                _, chi2 = model.linear_solve(dv, sg)
                if chi2 < best[0]:
                    best = (chi2, dv, sg)
            start_dv, start_sig = best[1].copy(), best[2].copy()
    coef, _ = model.linear_solve(start_dv, start_sig)
    p0 = np.empty(model.n_par)
    p0[model.i_dv], p0[model.i_sig] = start_dv, start_sig
    p0[model.i_flux] = coef[: len(model.free)]
    p0[model.i_cont] = coef[len(model.free):]
    lower, upper = np.full(model.n_par, -np.inf), np.full(model.n_par, np.inf)
    # the absorption is stellar: held at the redshift (SDSS's comes from stellar templates);
    # left free it drifts to the bound, trading flux with the emission lines
    vlim = np.where(is_abs, min(opts.vmax, 1.0), opts.vmax)
    lower[model.i_dv], upper[model.i_dv] = -vlim, vlim
    lower[model.i_sig] = np.where(is_abs, _ABSORPTION_SIGMA[0], opts.sigma_lo)
    upper[model.i_sig] = np.where(is_abs, _ABSORPTION_SIGMA[1], opts.sigma_hi)
    absorbing = model.i_flux[[n in _ABSORPTION for n in model.free]]
    upper[absorbing] = 0.0  # an absorption trough, never emission
    p0[absorbing] = np.minimum(p0[absorbing], 0.0)
    return p0, lower, upper


@dataclass
class _Fit:
    """Best-fit parameters, their errors and the fit's diagnostics."""

    p: np.ndarray
    err: np.ndarray
    chi2: float
    dof: int
    ok: bool
    has_cov: bool
    at_bound: np.ndarray
    rescaled: bool


def _fit(model: _LineModel, p0: np.ndarray, lower: np.ndarray, upper: np.ndarray,
         families: list[str], rescale_errors: bool) -> _Fit:
    """Bounded least squares from ``p0``; errors from the covariance of the free parameters."""
    try:
        res = least_squares(model.residuals, p0, jac=model.jacobian, bounds=(lower, upper),
                            method="trf", x_scale="jac", xtol=1e-10, ftol=1e-10, max_nfev=2000)
        p, chi2 = res.x, float(np.sum(res.fun ** 2))
        jac = model.jacobian(p)
        ok = bool(res.status > 0) and bool(np.all(np.isfinite(p)))
    except (ValueError, np.linalg.LinAlgError):  # pragma: no cover - defensive
        ok, p, jac, chi2 = False, p0, None, np.nan
    dof = int(model.lam.size - model.n_par)
    at_bound = np.zeros(model.n_par, dtype=bool)
    if ok:
        span = upper - lower
        tol = 1e-4 * np.where(np.isfinite(span), span, 1.0)
        at_bound = (np.abs(p - lower) < tol) | (np.abs(upper - p) < tol)
    rescaled = bool(rescale_errors and dof > 0 and chi2 / dof > 1)
    err = np.full(model.n_par, np.nan)
    if ok and jac is not None:
        absorbing = model.i_flux[[n in _ABSORPTION for n in model.free]]
        free = _free_parameters(model, p, families, absorbing)
        cov = np.zeros((model.n_par, model.n_par))
        cov[np.ix_(free, free)] = _covariance(jac[:, free])
        if rescaled:
            cov = cov * (chi2 / dof)
        err = np.sqrt(np.clip(np.diag(cov), 0, None))
    return _Fit(p, err, chi2, dof, ok, ok and jac is not None, at_bound, rescaled)


def _kinematics_meta(model: _LineModel, fit: _Fit, families: list[str]) -> dict[str, Any]:
    """Fit diagnostics and each family's velocity and width (flat floats in km/s, so the
    table writes to FITS)."""
    dv, sg, _, _ = model.unpack(fit.p)
    meta: dict[str, Any] = {"chi2": fit.chi2, "dof": fit.dof, "rescaled": fit.rescaled,
                            "families": list(families)}
    for i, fam in enumerate(families):
        meta[f"{fam}_velocity"] = float(dv[i])
        meta[f"{fam}_velocity_err"] = float(fit.err[model.i_dv[i]])
        meta[f"{fam}_sigma"] = float(sg[i])
        meta[f"{fam}_sigma_err"] = float(fit.err[model.i_sig[i]])
    return meta


def _few_pixels(data: _Data, mu: float, s_ang: float) -> bool:
    """Whether fewer than 80% of the pixels within 3 sigma of ``mu`` are usable."""
    lam = data.lam
    core_lo, core_hi = mu - 3 * s_ang, mu + 3 * s_ang
    core = (lam >= core_lo) & (lam <= core_hi)
    i = np.searchsorted(lam, mu)
    step = np.median(np.diff(lam[max(0, i - 5): i + 5])) if lam.size > 2 else 1.0
    expected = max(1.0, (core_hi - core_lo) / step)
    return np.count_nonzero(core & data.good) < 0.8 * expected


def _line_row(name: str, model: _LineModel, fit: _Fit, data: _Data,
              snr_min: float) -> tuple[dict[str, float], int]:
    """Measured values of one modelled line and its quality flags."""
    dv, sg, fl, ct = model.unpack(fit.p)
    j, ratio = model.parent[name]
    f = model.fam_of[name]
    ci = next(k for k, c in enumerate(model.complexes) if name in c.lines)
    c = model.complexes[ci]
    mu = data.obs(name) * (1 + dv[f] / _C_KMS)
    cont = ct[2 * ci] + ct[2 * ci + 1] * (mu - c.center)
    if data.cont_ext is not None:
        cont = cont + float(np.interp(mu, data.lam, data.cont_ext))
    line_flux, line_err = ratio * fl[j], ratio * fit.err[model.i_flux[j]]
    flag = 0 if name in model.free_index else LineFlag.TIED
    if not fit.ok or not fit.has_cov or not np.isfinite(line_err) or line_err <= 0:
        flag |= LineFlag.FIT_FAILED
        line_flux = line_err = np.nan
    if fit.at_bound[model.i_dv[f]] or fit.at_bound[model.i_sig[f]]:
        flag |= LineFlag.AT_BOUND
    if c.noise_estimated:
        flag |= LineFlag.NOISE_ESTIMATED
    if c.poor_continuum:
        flag |= LineFlag.POOR_CONTINUUM
    if _few_pixels(data, mu, mu * sg[f] / _C_KMS):
        flag |= LineFlag.FEW_PIXELS
    snr = line_flux / line_err if np.isfinite(line_err) and line_err > 0 else np.nan
    if not np.isfinite(snr) or abs(snr) < snr_min or snr < 0:
        flag |= LineFlag.LOW_SNR
    absorption = f"{name}_absorption"
    row = {
        "absorption": fl[model.free_index[absorption]] if absorption in model.free_index else np.nan,
        "wavelength": mu, "velocity": dv[f], "flux": line_flux, "flux_err": line_err,
        "sigma": sg[f], "sigma_err": fit.err[model.i_sig[f]], "continuum": cont, "snr": snr,
    }
    return row, flag


def _fit_lines(data: _Data, modelled: list[str], families: list[str], opts: _Options,
               rescale_errors: bool) -> tuple[_LineModel, _Fit]:
    """Build the complexes and their side-band continua, then fit every modelled line."""
    complexes = _complexes(data, modelled, opts)
    ivar_fit = np.zeros_like(data.flux) if data.ivar is None else data.ivar.copy()
    for c in complexes:
        _side_band_continuum(c, data, ivar_fit, opts.exclusion)
        if data.ivar is None:
            _estimate_noise(c, data, ivar_fit)
    model = _LineModel(data.lam, data.flux, ivar_fit, _pixel_edges(data.lam), complexes,
                       modelled, data.z, families)
    p0, lower, upper = _start(model, families, opts)
    fit = _fit(model, p0, lower, upper, families, rescale_errors)
    absorbing = model.i_flux[[n in _ABSORPTION for n in model.free]]
    if np.isnan(fit.err[absorbing]).any():
        # the absorption has the shape of a Balmer emission line (a broad line, as in
        # an AGN): the two cannot be told apart, so the emission is fitted alone
        emission = [n for n in modelled if n not in _ABSORPTION]
        return _fit_lines(data, emission, [f for f in families if f != "absorption"], opts,
                          rescale_errors)
    return model, fit


def _line_table(requested: list[str], rows: dict[str, dict[str, float]], flags: dict[str, int],
                z: float, line_unit: u.UnitBase, work_unit: u.UnitBase,
                meta: dict[str, Any]) -> QTable:
    """One row per requested line; NaN where a value could not be measured."""
    def col(key: str) -> np.ndarray:
        return np.array([rows.get(r, {}).get(key, np.nan) for r in requested], dtype=float)

    kms = u.km / u.s
    flux_v, cont_v = col("flux"), col("continuum")
    with np.errstate(divide="ignore", invalid="ignore"):
        ew = np.where(cont_v > 0, flux_v / cont_v / (1 + z), np.nan)
    table = QTable(meta=meta)
    table["line"] = requested
    table["rest_wavelength"] = np.array([LINES[r].wavelength for r in requested]) * u.AA
    table["wavelength"] = col("wavelength") * u.AA
    table["velocity"] = col("velocity") * kms
    table["flux"] = flux_v * line_unit
    table["flux_err"] = col("flux_err") * line_unit
    table["sigma"] = col("sigma") * kms
    table["sigma_err"] = col("sigma_err") * kms
    table["fwhm"] = col("sigma") * gaussian_sigma_to_fwhm * kms
    table["absorption_flux"] = col("absorption") * line_unit
    table["continuum"] = cont_v * work_unit
    table["ew"] = ew * u.AA
    table["snr"] = col("snr") if rows else np.full(len(requested), np.nan)
    table["flag"] = np.array([int(flags[r]) for r in requested], dtype=np.int32)
    table["quality"] = [_flag_names(flags[r]) for r in requested]
    return table


# --------------------------------------------------------------------------- main API
# Long for its numpydoc docstring (a public entry point with many parameters); the code is under 100 lines.
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
        Names from :data:`~astro_galpost.physics.LINES` to report.  Doublet partners and lines inside
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
        absorption). When the fit cannot tell the absorption from the emission
        (Balmer emission as broad as the trough, as in a broad-line AGN), the
        emission is fitted alone and ``absorption_flux`` is NaN.

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
        If ``spectrum`` is not a specutils spectrum.
    ValueError
        If the redshift is missing (not given and not in ``spectrum.meta``)
        or invalid, the spectral axis is not a wavelength (e.g. pixels), the
        flux is all zero or all masked, a line name is unknown, or (with
        ``on_error="raise"``) a line is outside the coverage (the message
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
    >>> from astro_galpost.physics import measure_lines
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
    requested = parse_line_names(lines)
    lam, flux, ivar, good, line_unit, work_unit, cont_ext = spectrum_arrays(spectrum, continuum)
    z = _redshift(spectrum, redshift)
    pipeline_class, refuse = _pipeline_class(spectrum, z, on_error)
    finite_flux = flux[np.isfinite(flux)]
    if finite_flux.size == 0 or np.all(finite_flux == 0):
        raise ValueError("the spectrum's flux is all zero (or NaN): nothing to measure "
                         "(an SDSS spectrum like this has ZWARNING set and ivar = 0 everywhere)")
    if not good.any():
        raise ValueError("every pixel of the spectrum is masked (mask or zero inverse variance)")
    opts = _options(window, line_exclusion, sigma_init, sigma_bounds, max_velocity)

    data = _Data(lam, flux, ivar, good, cont_ext, z)
    initial = (LineFlag.NOT_GALAXY if pipeline_class in ("STAR", "QSO") else 0) | _zwarning(spectrum)
    flags: dict[str, int] = dict.fromkeys(requested, initial)
    if not refuse:
        _check_coverage(data, requested, flags, opts.sigma_init, on_error)
    start = [] if refuse else [n for n in requested
                               if not flags[n] & (LineFlag.OUTSIDE_COVERAGE | LineFlag.NO_DATA)]
    modelled = _modelled_lines(data, start, opts, balmer_absorption and cont_ext is None) \
        if start else []
    families = _families(modelled, tie)

    meta: dict[str, Any] = {"redshift": z, "line_flux_unit": line_unit.to_string(), "tie": tie}
    rows: dict[str, dict[str, float]] = {}
    if modelled:
        model, fit = _fit_lines(data, modelled, families, opts, rescale_errors)
        meta.update(_kinematics_meta(model, fit, model.families))
        for name in requested:
            if name in modelled:
                rows[name], flag = _line_row(name, model, fit, data, snr_min)
                flags[name] |= flag
    return _line_table(requested, rows, flags, z, line_unit, work_unit, meta)



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
        Lines to report (see :data:`~astro_galpost.physics.LINES`).
    **options
        Passed to :func:`measure_lines` (not ``on_error``).

    Returns
    -------
    `~astropy.table.QTable`
        One row per spectrum and line: ``spectrum`` (index), ``source`` (file
        name or ``""``), ``line``, ``flux``, ``flux_err``, ``absorption_flux``
        (masked where not measured), ``snr``, ``flag``, ``quality``, ``error``.
    """
    requested = parse_line_names(lines)
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
    for name in ("flux", "flux_err", "absorption_flux"):
        values = np.asarray(columns[name], dtype=float)
        out[name] = Masked(values * FLUX_UNIT, mask=~np.isfinite(values))
    out["snr"] = np.asarray(columns["snr"], dtype=float)
    out["flag"] = np.asarray(columns["flag"], dtype=np.int32)
    out["quality"] = [_flag_names(f) for f in out["flag"]]
    out["error"] = np.asarray(columns["error"], dtype=str)
    return out
