"""Photometry of the MOCK catalogue: kcorrect templates projected on the SDSS ugriz filters.

`~astro_galpost.datasets.make_mock_catalog` gives every mock galaxy ugriz model
magnitudes from a mixture of three kcorrect (Blanton & Roweis 2007) v4 templates, an
old population, a star-forming continuum and a metal-rich LRG template, attenuated by
the Calzetti et al. (2000) curve and with the catalogue's own emission lines added;
`~astro_galpost.datasets.make_mock_images` colours its bulges with the same old
population.  This module holds those projections and the mixture.

These are **simulated** magnitudes for tests, demos and calibration checks, not real data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import astropy.units as u
import numpy as np
from scipy.special import expit

from ..physics import CURVE_R_V, LINES, k_lambda

__all__ = [
    "AV_NODES",
    "BANDS",
    "SDSS_MINUS_AB",
    "Z_MAX_SUPPORTED",
    "Z_NODES",
    "PhotometryModel",
    "brightest_r",
    "line_maggies",
    "lrg_weight",
    "observed_magnitudes",
    "old_population_maggies",
    "photometry_model",
    "stellar_maggies",
    "template_maggies",
]

# numpy < 2 names it trapz.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

#: SDSS bands, in order.
BANDS = ("u", "g", "r", "i", "z")
#: kcorrect names of the SDSS 2.5 m filter responses (1.3 airmass, "0" = standard set).
_RESPONSES = tuple(f"sdss_{b}0" for b in BANDS)
#: Indices, in kcorrect's default v4 template set (Blanton & Roweis 2007), of the two
#: emission-line-free templates used: an old population and a star-forming one. A third,
#: kcorrect's metal-rich LRG template, joins the old one in massive galaxies.
_OLD_TEMPLATE, _YOUNG_TEMPLATE = 3, 4
#: Scale and power of the star-forming template's mass fraction versus sSFR x 1 Gyr
#: (see `_young_fraction`), tuned so that g-r and u-r percentiles at z = 0.03-0.15 agree
#: with the SDSS MGS photometry in the shared real-data folder to within ~0.1 mag.
_YOUNG_BOOST = 1.1
_YOUNG_POWER = 1.3
#: Stellar A_V nodes at which dust-attenuated templates are projected; log-maggies are
#: interpolated between them (error < 0.002 mag for a 1 mag step).
AV_NODES = np.arange(0.0, 4.0, 1.0)
#: Redshift nodes of the projected templates; log-maggies are interpolated between them.
Z_NODES = np.linspace(0.0, 0.5, 26)
#: Largest redshift the mock supports (the projected template grid ends here).
Z_MAX_SUPPORTED = float(Z_NODES[-1])
#: SDSS magnitude error model per band: modelMagErr at mag 17 and log10 slope per mag,
#: fitted by eye to the MGS photometry in the shared real-data folder.
_MAG_ERR_17 = {"u": 0.0165, "g": 0.0056, "r": 0.0060, "i": 0.0066, "z": 0.0177}
_MAG_ERR_SLOPE = {"u": 0.225, "g": 0.18, "r": 0.16, "i": 0.16, "z": 0.19}
#: SDSS magnitudes are not exactly AB: u_SDSS = u_AB + 0.04, z_SDSS = z_AB - 0.02
#: (SDSS DR7 photometric calibration notes).
SDSS_MINUS_AB = {"u": 0.04, "g": 0.0, "r": 0.0, "i": 0.0, "z": -0.02}


@dataclass(frozen=True)
class PhotometryModel:
    """kcorrect template projections onto the SDSS filters, and what emission lines need.

    Made (once, cached) by `photometry_model`.
    """

    log_maggies: np.ndarray  # [nz, nband, ntemplate(3), nAV] log maggies per unit coefficient
    mremain: np.ndarray  # [3] surviving stellar mass per unit coefficient (Msun)
    gyr_fraction: np.ndarray  # [3] mass formed in the last Gyr per surviving mass
    line_wave: tuple[np.ndarray, ...]  # per band: response wavelengths (Angstrom)
    line_resp: tuple[np.ndarray, ...]  # per band: response values
    ab_norm: np.ndarray  # [nband] ∫ f_AB R λ dλ, so maggies = F R(λ) λ / ab_norm


def photometry_model() -> PhotometryModel:
    """Project dust-attenuated kcorrect templates onto the SDSS ugriz responses (cached).

    Uses kcorrect (Blanton & Roweis 2007) v4 templates 3 (old, no emission lines) and 4
    (star-forming continuum, no emission lines) and the metal-rich LRG template, each
    attenuated by a Calzetti curve at the A_V nodes and handed to
    ``kcorrect.kcorrect.Kcorrect`` as its template set; its ``Amatrix`` then gives the AB
    maggies per unit template coefficient (Msun at 10 pc) through the SDSS responses on
    the redshift grid. Emission lines are added separately, from the line labels, so the
    photometry is consistent with them.
    """
    return _build_photometry_model()


@functools.lru_cache(maxsize=1)
def _build_photometry_model() -> PhotometryModel:
    """`photometry_model`, computed once."""
    import os

    import kcorrect
    import kcorrect.kcorrect
    import kcorrect.response
    import kcorrect.template
    import kcorrect.utils

    tdir = os.path.join(kcorrect.KCORRECT_DIR, "data", "templates")
    base = kcorrect.template.Template(
        filename=os.path.join(tdir, "kcorrect-default-v4.fits"), interpolate=False
    )
    lrg = kcorrect.template.Template(
        filename=os.path.join(tdir, "kcorrect-lrg1-v4.fits"), interpolate=False
    )
    which = [_OLD_TEMPLATE, _YOUNG_TEMPLATE]
    wave = base.restframe_wave
    lrg_flux = np.interp(wave, lrg.restframe_wave, lrg.restframe_flux[0], left=0.0, right=0.0)
    rest_flux = np.vstack([base.restframe_flux[which], lrg_flux])
    k_over_rv = k_lambda(wave * u.AA, "calzetti2000", clip=True) / CURVE_R_V["calzetti2000"]
    # Order the SEDs as [AV node, template] so the A matrix reshapes to (nAV, 3).
    flux = np.concatenate([rest_flux * 10.0 ** (-0.4 * av * k_over_rv) for av in AV_NODES])
    seds = kcorrect.template.SED(wave=wave, flux=flux, interpolate=False)
    kc = kcorrect.kcorrect.Kcorrect(
        responses=list(_RESPONSES),
        templates=seds,
        redshift_range=[float(Z_NODES[0]), float(Z_NODES[-1])],
        nredshift=len(Z_NODES),
    )
    amat = np.asarray(kc.Amatrix(Z_NODES), dtype=float)  # [nz, nband, nAV*3]
    amat = amat.reshape(len(Z_NODES), len(BANDS), len(AV_NODES), 3).transpose(0, 1, 3, 2)

    mremain = np.append(base.mremain[which], lrg.mremain[0]).astype(float)
    gyr_fraction = np.append(base.m1000[which], lrg.m1000[0]).astype(float) / mremain

    responses = kcorrect.response.ResponseDict()
    waves, resps, norms = [], [], []
    for name in _RESPONSES:
        responses.load_response(name)
        wave = np.asarray(responses[name].wave, dtype=float)
        resp = np.asarray(responses[name].response, dtype=float)
        waves.append(wave)
        resps.append(resp)
        norms.append(_trapezoid(kcorrect.utils.sed_ab(wave) * resp * wave, wave))
    return PhotometryModel(
        log_maggies=np.log(np.clip(amat, 1e-300, None)),
        mremain=mremain,
        gyr_fraction=gyr_fraction,
        line_wave=tuple(waves),
        line_resp=tuple(resps),
        ab_norm=np.asarray(norms),
    )


def template_maggies(model: PhotometryModel, z: np.ndarray, av_star: np.ndarray) -> np.ndarray:
    """AB maggies per unit coefficient of the three templates, shape (n, nband, 3).

    Log-linear interpolation in both z and A_V, which is far smoother than linear
    interpolation in maggies (kcorrect's own interp1d).
    """
    dz = Z_NODES[1] - Z_NODES[0]
    iz = np.clip(np.floor(z / dz).astype(int), 0, len(Z_NODES) - 2)
    wz = ((z - Z_NODES[iz]) / dz)[:, None, None]
    av = np.clip(av_star, AV_NODES[0], AV_NODES[-1])
    da = AV_NODES[1] - AV_NODES[0]
    ia = np.clip(np.floor(av / da).astype(int), 0, len(AV_NODES) - 2)
    wa = ((av - AV_NODES[ia]) / da)[:, None, None]
    lm = model.log_maggies  # [nz, nband, 3, nAV]

    def at(jz: np.ndarray, ja: np.ndarray) -> np.ndarray:
        return lm[jz, :, :, ja]  # -> (n, nband, 3)

    log_m = (1 - wz) * ((1 - wa) * at(iz, ia) + wa * at(iz, ia + 1)) + wz * (
        (1 - wa) * at(iz + 1, ia) + wa * at(iz + 1, ia + 1)
    )
    return np.exp(log_m)


def line_maggies(
    model: PhotometryModel, z: np.ndarray, line_flux_cgs: dict[str, np.ndarray]
) -> np.ndarray:
    """AB maggies that total emission-line fluxes (erg/s/cm²) add to each band, (n, nband).

    A line of flux F at observed wavelength λ projects to F R(λ) λ / ∫ f_AB R λ dλ, the
    same AB projection kcorrect uses for continua.
    """
    out = np.zeros((len(z), len(BANDS)))
    for name, flux in line_flux_cgs.items():
        lam_obs = LINES[name].wavelength * (1.0 + z)
        for b in range(len(BANDS)):
            wave = model.line_wave[b]
            if lam_obs.size == 0 or lam_obs.max() < wave[0] or lam_obs.min() > wave[-1]:
                continue  # this line never falls in this band
            resp = np.interp(lam_obs, wave, model.line_resp[b], left=0.0, right=0.0)
            out[:, b] += flux * resp * lam_obs / model.ab_norm[b]
    return out


def _young_fraction(ssfr_gyr: np.ndarray, g_old: float, g_young: float) -> np.ndarray:
    """Mass fraction in the star-forming template for a given sSFR x 1 Gyr.

    Linear in sSFR, the star-forming template's mass formed in the last Gyr would match
    the SFR exactly; the kcorrect templates are not single-age populations, so the
    fraction is scaled (and steepened about sSFR = 0.1/Gyr, which keeps quenched
    galaxies red) to match the colour distribution of the SDSS MGS.
    """
    x = np.clip(ssfr_gyr, 0.0, None)
    f = _YOUNG_BOOST * 0.1 * (x / 0.1) ** _YOUNG_POWER
    return np.clip((f - g_old) / (g_young - g_old), 0.0, 1.0)


def _magnitude_errors(rng: np.random.Generator, mag: np.ndarray, band: str) -> np.ndarray:
    """SDSS-like modelMagErr: photon-noise scaling with magnitude, 0.05 dex jitter."""
    err = _MAG_ERR_17[band] * 10.0 ** (_MAG_ERR_SLOPE[band] * (mag - 17.0))
    return err * 10.0 ** (0.05 * rng.standard_normal(len(mag)))


def lrg_weight(logm: np.ndarray) -> np.ndarray:
    """Share of the old stellar mass in kcorrect's metal-rich LRG template.

    Old stars are more metal rich in massive galaxies (Gallazzi et al. 2005): the old
    mass moves from the solar-metallicity template to the LRG one around log M* = 10.6.
    """
    return expit((logm - 10.6) / 0.35)


def stellar_maggies(model: PhotometryModel, z: np.ndarray, logm: np.ndarray,
                    log_sfr: np.ndarray, distmod: np.ndarray, av_star: np.ndarray) -> np.ndarray:
    """AB maggies of the stellar continuum, shape (n, nband).

    A kcorrect template mixture whose mass formed in the last Gyr matches the SFR
    (sSFR x 1 Gyr), the old part split by `lrg_weight`, normalised to the stellar mass
    at distance modulus ``distmod`` and attenuated by the stellar A_V ``av_star``.
    """
    ssfr_gyr = 10.0 ** (log_sfr - logm + 9.0)
    g_old, g_young = model.gyr_fraction[:2]
    f_young = _young_fraction(ssfr_gyr, g_old, g_young)
    w_lrg = lrg_weight(logm)
    coeffs = (10.0 ** (logm - 0.4 * distmod))[:, None] * np.stack(
        [
            (1.0 - f_young) * (1.0 - w_lrg) / model.mremain[0],
            f_young / model.mremain[1],
            (1.0 - f_young) * w_lrg / model.mremain[2],
        ],
        axis=1,
    )
    return np.einsum("nbt,nt->nb", template_maggies(model, z, av_star), coeffs)


def brightest_r(model: PhotometryModel, z: np.ndarray, logm: np.ndarray,
                distmod: np.ndarray) -> np.ndarray:
    """r magnitude of the bluest, dust-free, line-free mixture: the brightest a galaxy of
    mass ``logm`` at redshift ``z`` can be (for a cheap flux-limit pre-cut)."""
    young = np.exp(np.interp(z, Z_NODES, model.log_maggies[:, 2, 1, 0]))
    return -2.5 * np.log10(10.0**logm * young / model.mremain[1]) + distmod


def observed_magnitudes(rng: np.random.Generator, maggies: np.ndarray) -> dict[str, np.ndarray]:
    """SDSS-system ``modelMag_*``, ``modelMagErr_*`` and ``extinction_*`` (0) per band.

    Galactic-extinction-free, as SDSS magnitudes are once dereddened; Gaussian noise of
    the SDSS-like magnitude errors is added.
    """
    size = len(maggies)
    out: dict[str, np.ndarray] = {}
    for b, band in enumerate(BANDS):
        mag = -2.5 * np.log10(maggies[:, b]) + SDSS_MINUS_AB[band]
        err = _magnitude_errors(rng, mag, band)
        out[f"modelMag_{band}"] = mag + err * rng.standard_normal(size)
        out[f"modelMagErr_{band}"] = err
        out[f"extinction_{band}"] = np.zeros(size)
    return out


def old_population_maggies(z: np.ndarray, logm: np.ndarray, bands: tuple[str, ...]) -> np.ndarray:
    """Relative AB fluxes, shape (n, len(bands)), of the mock's dust-free old population.

    The old solar-metallicity template blended into the metal-rich LRG template with
    `lrg_weight`, as in the catalogue's photometry.
    """
    model = photometry_model()
    z = np.clip(z, Z_NODES[0], Z_NODES[-1])
    templ = template_maggies(model, z, np.zeros_like(z))  # (n, 5 bands, 3)
    w_lrg = lrg_weight(logm)
    old = (1.0 - w_lrg)[:, None] * templ[:, :, 0] / model.mremain[0]
    old = old + w_lrg[:, None] * templ[:, :, 2] / model.mremain[2]
    idx = [BANDS.index(b) for b in bands]
    return old[:, idx]
