"""A physically motivated MOCK catalogue of SDSS-like galaxies with joint labels.

The mock is for tests, demos and calibration checks of the posterior estimators; it is
*not* real data and should never be used to draw scientific conclusions.  It draws a
flux-limited sample resembling the SDSS Main Galaxy Sample (MGS) and gives every galaxy
the nine targets of the project (stellar mass, SFR, redshift, black-hole mass, gas-phase
metallicity, and the Hα, Hβ, [N II] 6584 and [O III] 5007 fluxes) together with ugriz
model magnitudes, built from a chain of published scaling relations.

Each physical relation lives in its own small private function so that later work (for
instance gri images of Sérsic bulge + disc galaxies) can reuse the same draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.cosmology import FLRW, Planck18
from astropy.stats import gaussian_fwhm_to_sigma
from astropy.table import Table
from scipy.special import expit

from ..physics import (
    CURVE_R_V,
    FLUX_UNIT,
    HALPHA_WAVELENGTH,
    HBETA_WAVELENGTH,
    LINES,
    SDSS_FIBER_RADIUS,
    SIGMA_MAX,
    SIGMA_MIN,
    SIGMA_SN_MIN,
    bpt_class,
    k_lambda,
    kauffmann03,
    kewley01,
    mbh_from_sigma,
    sersic_enclosed_fraction,
)
from .mock_photometry import (
    BANDS,
    Z_MAX_SUPPORTED,
    PhotometryModel,
    brightest_r,
    line_maggies,
    observed_magnitudes,
    photometry_model,
    stellar_maggies,
)

__all__ = ["make_mock_catalog"]

#: Width (mag) of the half-normal A(Hα) of quenched galaxies: nearly dust free.
_QUENCHED_AHA = 0.1
#: Case B intrinsic Balmer decrement Hα/Hβ for star-forming gas (Osterbrock 1989).
_BALMER_SF = 2.86
#: Harder-field (AGN) intrinsic Balmer decrement (Halpern & Steiner 1983; Gaskell & Ferland 1984).
_BALMER_AGN = 3.1
#: Kennicutt (1998) SFR/L(Hα) = 7.9e-42 Msun/yr per erg/s for a Salpeter IMF, times 0.63
#: to convert to a Chabrier IMF (Madau & Dickinson 2014).
_KENNICUTT_HA = 7.9e-42 * 0.63
#: Mean and scatter of log sSFR (1/yr) of quenched galaxies: the passive peak of
#: Brinchmann et al. (2004, Fig. 22) lies near 1e-12 /yr, ~2 dex below the main sequence.
_PASSIVE_LOG_SSFR, _PASSIVE_SCATTER = -12.0, 0.4
#: Intrinsic scatter (dex) of 12 + log(O/H) about the mass-SFR-metallicity relation.
_OH_SCATTER = 0.08
#: 1-sigma widths ((p84 - p16) / 2) of the labels, as MPA-JHU quotes them for the MGS:
#: stellar masses ~0.09 dex (Kauffmann et al. 2003); SFRs ~0.25 dex from the lines of
#: star-forming spectra, ~0.45 dex for low-S/N and composite ones and ~0.75 dex from
#: D4000 for AGN, LINERs and passive spectra (Brinchmann et al. 2004); O/H ~0.04 dex
#: (Tremonti et al. 2004).
_LGM_WIDTH = 0.09
_SFR_WIDTH_BY_BPT = {1: 0.25, 2: 0.45, 3: 0.45}
_SFR_WIDTH_OTHER = 0.75
_OH_WIDTH = 0.04
#: SDSS reports a reliable velDisp only for early-type (absorption-dominated) spectra
#: with σ in `~astro_galpost.physics.SIGMA_MIN`-`~astro_galpost.physics.SIGMA_MAX` and
#: median S/N above `~astro_galpost.physics.SIGMA_SN_MIN` per pixel (Bernardi et al.
#: 2003; SDSS DR7 velDisp notes). A spectrum counts as early type below this log sSFR
#: (1/yr), with a logistic transition of the given width.
_EARLY_LOG_SSFR, _EARLY_WIDTH = -10.3, 0.2
#: Stellar continuum E(B-V) is 0.44 times the nebular one (Calzetti 2000).
_STELLAR_TO_GAS_EBV = 0.44
#: SDSS-I/II spectroscopic fibre radius, arcsec.
_FIBRE_RADIUS_ARCSEC = SDSS_FIBER_RADIUS.to_value(u.arcsec)
#: Median SDSS r-band seeing FWHM, arcsec.
_SEEING_FWHM = 1.4
#: MPA-JHU / CAS sentinel for a missing value.
_SENTINEL = -9999.0
#: Catalogue column (without ``_flux``) of each reported line of `~astro_galpost.physics.LINES`.
_LINE_COLUMNS = {"halpha": "h_alpha", "hbeta": "h_beta", "nii_6584": "nii_6584",
                 "oiii_5007": "oiii_5007"}
#: Lines whose flux the photometry includes: the reported ones and their doublet partners.
_PHOTOMETRY_LINES = ("halpha", "hbeta", "nii_6584", "nii_6548", "oiii_5007", "oiii_4959")


# --------------------------------------------------------------------------------------
# Small physical helpers
# --------------------------------------------------------------------------------------


#: Logistic function.
_sigmoid = expit


def _stellar_mass_function(logm: np.ndarray) -> np.ndarray:
    """Double-Schechter stellar mass function per dex (Baldry et al. 2012, GAMA, z < 0.06)."""
    log_mstar, phi1, alpha1, phi2, alpha2 = 10.66, 3.96e-3, -0.35, 0.79e-3, -1.47
    x = 10.0 ** (logm - log_mstar)
    return np.log(10.0) * np.exp(-x) * (phi1 * x ** (alpha1 + 1) + phi2 * x ** (alpha2 + 1))


def _main_sequence(logm: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean log SFR (Msun/yr) of the star-forming main sequence.

    Slope 0.76 and normalisation -0.1 at log M* = 10 for SDSS (z ≈ 0.1, as in the MPA-JHU
    SFRs; cf. Elbaz et al. 2007, Renzini & Peng 2015), with sSFR ∝ (1 + z)^2.8 (Sargent et
    al. 2014) so the normalisation evolves mildly across 0 < z < 0.3.
    """
    return 0.76 * (logm - 10.0) - 0.1 + 2.8 * np.log10((1.0 + z) / 1.1)


def _quenched_fraction(logm: np.ndarray) -> np.ndarray:
    """Fraction of quenched (red-sequence) galaxies, rising with mass (cf. Peng et al. 2010)."""
    return _sigmoid((logm - 10.6) / 0.3)


def _mass_metallicity(logm: np.ndarray) -> np.ndarray:
    """Tremonti et al. (2004) mass-metallicity relation, 12 + log(O/H)."""
    return -1.492 + 1.847 * logm - 0.08026 * logm**2


def _fundamental_metallicity(logm: np.ndarray, log_sfr: np.ndarray) -> np.ndarray:
    """Mannucci et al. (2010, eq. 2) fundamental metallicity relation, 12 + log(O/H).

    m = log M* - 10 and s = log SFR are clipped to the ranges the relation was fitted on
    (9.2 < log M* < 11.4, -1.45 < log SFR < 0.8), so quenched galaxies do not extrapolate.
    """
    m = np.clip(logm, 9.2, 11.4) - 10.0
    s = np.clip(log_sfr, -1.45, 0.8)
    return 8.90 + 0.37 * m - 0.14 * s - 0.19 * m**2 + 0.12 * m * s - 0.054 * s**2


def _fibre_fraction(r_half_arcsec: np.ndarray, n: np.ndarray | float) -> np.ndarray:
    """Fraction of a Sérsic component's light that falls in the 3 arcsec SDSS fibre.

    Seeing is folded in by adding the PSF half-light radius (FWHM / 2 for a Gaussian) in
    quadrature to the half-light radius: crude, but it shrinks the fraction for large,
    nearby galaxies and saturates it for compact, distant ones as it should.
    """
    r_eff = np.hypot(r_half_arcsec, 0.5 * _SEEING_FWHM)
    return sersic_enclosed_fraction(n, _FIBRE_RADIUS_ARCSEC / r_eff)


# --------------------------------------------------------------------------------------
# Distances (cached: they do not depend on the draws)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DistanceGrid:
    """Distances tabulated on a redshift grid, interpolated for speed (Planck18 is slow)."""

    z: np.ndarray
    distmod: np.ndarray  # mag
    lum_dist_cm: np.ndarray
    kpc_per_arcsec: np.ndarray  # proper
    dvdz: np.ndarray  # comoving volume per unit z (arbitrary normalisation)

    def interp(self, name: str, z: np.ndarray) -> np.ndarray:
        return np.interp(z, self.z, getattr(self, name))


#: Distance grids already computed, keyed by the cosmology's repr (astropy cosmologies
#: are not hashable).
_DISTANCE_GRIDS: dict[str, _DistanceGrid] = {}


def _distance_grid(cosmology: FLRW) -> _DistanceGrid:
    key = repr(cosmology)
    if key not in _DISTANCE_GRIDS:
        _DISTANCE_GRIDS[key] = _make_distance_grid(cosmology)
    return _DISTANCE_GRIDS[key]


def _make_distance_grid(cosmology: FLRW) -> _DistanceGrid:
    z = np.linspace(1e-4, Z_MAX_SUPPORTED, 1001)
    return _DistanceGrid(
        z=z,
        distmod=cosmology.distmod(z).to_value(u.mag),
        lum_dist_cm=cosmology.luminosity_distance(z).to_value(u.cm),
        kpc_per_arcsec=cosmology.kpc_proper_per_arcmin(z).to_value(u.kpc / u.arcmin) / 60.0,
        dvdz=cosmology.differential_comoving_volume(z).to_value(u.Mpc**3 / u.sr),
    )


# --------------------------------------------------------------------------------------
# Draws: one function per physical relation
# --------------------------------------------------------------------------------------


def _draw_redshift_mass(
    rng: np.random.Generator,
    size: int,
    grid: _DistanceGrid,
    z_range: tuple[float, float],
    logm_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Redshifts uniform in comoving volume and masses from the stellar mass function."""
    zs = np.linspace(z_range[0], z_range[1], 512)
    dvdz = grid.interp("dvdz", zs)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dvdz[1:] + dvdz[:-1]))])
    z = np.interp(rng.random(size), cdf / cdf[-1], zs)
    ms = np.linspace(logm_range[0], logm_range[1], 1024)
    phi = _stellar_mass_function(ms)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (phi[1:] + phi[:-1]))])
    logm = np.interp(rng.random(size), cdf / cdf[-1], ms)
    return z, logm


def _draw_star_formation(
    rng: np.random.Generator, logm: np.ndarray, z: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Quenched flag and true log SFR (Msun/yr).

    Star-forming galaxies scatter by 0.3 dex about the main sequence; quenched ones have
    log sSFR = -12 with 0.4 dex scatter, the passive peak of Brinchmann et al. (2004),
    so the two populations are ~2 dex apart and their tails make a green valley.
    """
    size = len(logm)
    quenched = rng.random(size) < _quenched_fraction(logm)
    noise = rng.standard_normal(size)
    star_forming = _main_sequence(logm, z) + 0.3 * noise
    passive = logm + _PASSIVE_LOG_SSFR + _PASSIVE_SCATTER * noise
    return quenched, np.where(quenched, passive, star_forming)


def _draw_morphology(
    rng: np.random.Generator,
    logm: np.ndarray,
    quenched: np.ndarray,
    kpc_per_arcsec: np.ndarray,
) -> dict[str, np.ndarray]:
    """Bulge + disc structure, ready for Sérsic images.

    B/T (r-band light) follows a beta distribution whose mean rises with mass and is
    higher for quenched galaxies. Disc half-light radii follow the late-type and bulge
    radii the early-type size-mass relations of Shen et al. (2003), the latter at the
    bulge mass; angular sizes use the proper distance per arcsec. Discs are thin
    (intrinsic q0 = 0.15) and randomly inclined; bulges are mildly flattened.
    """
    size = len(logm)
    mean_bt = np.where(
        quenched,
        0.45 + 0.35 * _sigmoid((logm - 10.8) / 0.4),
        0.05 + 0.25 * _sigmoid((logm - 10.5) / 0.4),
    )
    concentration = 6.0
    bulge_frac = rng.beta(mean_bt * concentration, (1.0 - mean_bt) * concentration)

    mass = 10.0**logm
    r_disc_kpc = 0.1 * mass**0.14 * (1.0 + mass / 3.98e10) ** (0.39 - 0.14)
    # Quenched galaxies are more compact at fixed mass (Shen et al. 2003).
    r_disc_kpc *= 10.0 ** (np.where(quenched, -0.1, 0.0) + 0.17 * rng.standard_normal(size))
    bulge_mass = np.clip(bulge_frac, 1e-3, None) * mass
    r_bulge_kpc = 2.88e-6 * bulge_mass**0.56 * 10.0 ** (0.15 * rng.standard_normal(size))
    r_bulge_kpc = np.clip(r_bulge_kpc, 0.1, None)

    cos_i = rng.random(size)
    q0 = 0.15
    axis_ratio = np.sqrt(cos_i**2 * (1.0 - q0**2) + q0**2)
    axis_ratio_bulge = np.clip(0.75 + 0.15 * rng.standard_normal(size), 0.3, 1.0)
    position_angle = 180.0 * rng.random(size)
    return {
        "bulge_frac": bulge_frac,
        "r_half_disc": r_disc_kpc / kpc_per_arcsec,
        "r_half_bulge": r_bulge_kpc / kpc_per_arcsec,
        "axis_ratio": axis_ratio,
        "axis_ratio_bulge": axis_ratio_bulge,
        "position_angle": position_angle,
        "cos_i": cos_i,
    }


def _draw_dust(
    rng: np.random.Generator,
    logm: np.ndarray,
    delta_ms: np.ndarray,
    quenched: np.ndarray,
    cos_i: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Nebular and stellar A_V (mag).

    A(Hα) follows the mass dependence of Garn & Best (2010) with 0.3 mag scatter, grows by
    0.4 mag per dex above the main sequence, and is larger for edge-on discs; quenched
    galaxies are nearly dust free. Nebular A_V = A(Hα) k(V)/k(Hα) (Calzetti 2000) and the
    stellar continuum sees 0.44 of the nebular reddening.
    """
    size = len(logm)
    x = np.clip(logm, 8.5, 11.5) - 10.0
    a_ha = 0.91 + 0.77 * x + 0.11 * x**2 - 0.09 * x**3
    a_ha = a_ha + 0.4 * delta_ms + 0.3 * rng.standard_normal(size)
    a_ha = a_ha * (1.0 + 0.5 * (1.0 - cos_i)) / 1.25  # the inclination factor averages to 1
    a_ha = np.where(quenched, np.abs(_QUENCHED_AHA * rng.standard_normal(size)), a_ha)
    a_ha = np.clip(a_ha, 0.0, 4.0)
    av_gas = a_ha * CURVE_R_V["calzetti2000"] / k_lambda(HALPHA_WAVELENGTH)
    return av_gas, _STELLAR_TO_GAS_EBV * av_gas


def _draw_metallicity(
    rng: np.random.Generator, logm: np.ndarray, log_sfr: np.ndarray, z: np.ndarray
) -> np.ndarray:
    """Gas-phase 12 + log(O/H) on the Tremonti et al. (2004) scale.

    The Tremonti et al. (2004) mass-metallicity relation holds on the main sequence; off
    it, O/H moves as the Mannucci et al. (2010) fundamental metallicity relation says
    (lower at higher SFR for fixed M*, by ~0.14 dex per dex at log M* = 10), plus
    0.08 dex intrinsic scatter.
    """
    offset = _fundamental_metallicity(logm, log_sfr) - _fundamental_metallicity(
        logm, _main_sequence(logm, z)
    )
    oh = _mass_metallicity(np.clip(logm, 8.5, 11.5)) + offset
    return oh + _OH_SCATTER * rng.standard_normal(len(logm))


def _draw_velocity_dispersion(
    rng: np.random.Generator, logm: np.ndarray, bulge_frac: np.ndarray
) -> np.ndarray:
    """Stellar velocity dispersion (km/s) from the broken power-law mass-σ relation of
    Zahid et al. (2016), higher for bulge-dominated galaxies, 0.07 dex scatter."""
    dm = logm - 10.26
    log_sigma = 2.07 + np.where(dm > 0, 0.286, 0.403) * dm + 0.1 * (bulge_frac - 0.4)
    return 10.0 ** (log_sigma + 0.07 * rng.standard_normal(len(logm)))


def _draw_agn(rng: np.random.Generator, logm: np.ndarray, quenched: np.ndarray) -> np.ndarray:
    """Optical AGN flag: common only in massive hosts (Kauffmann et al. 2003)."""
    p = np.where(quenched, 0.1, 0.3) * _sigmoid((logm - 10.4) / 0.2)
    return rng.random(len(logm)) < p


def _star_forming_ratios(
    rng: np.random.Generator, oh_t04: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log [N II]/Hα and log [O III]/Hβ of H II regions with metallicity ``oh_t04``.

    T04 metallicities are mapped to the Pettini & Pagel (2004, PP04) scale, which is
    ~0.3 dex lower (Kewley & Ellison 2008), by 12+log(O/H)_PP04 = 8.615 + 0.627 (x - 8.95);
    the PP04 N2 calibration (12+log(O/H) = 8.90 + 0.57 N2) is then inverted for N2, which
    saturates near -0.25, and the PP04 O3N2 calibration (8.73 - 0.32 O3N2) gives
    [O III]/Hβ. At high N2 the sequence is bent to stay 0.3 dex below the Kauffmann et
    al. (2003) line, as the observed star-forming locus does.
    """
    size = len(oh_t04)
    oh_pp04 = 8.615 + 0.627 * (oh_t04 - 8.95)
    log_n2 = (oh_pp04 - 8.90) / 0.57 + 0.05 * rng.standard_normal(size)
    log_n2 = np.minimum(log_n2, -0.25)
    o3n2 = (8.73 - (8.90 + 0.57 * log_n2)) / 0.32
    log_o3hb = np.minimum(o3n2 + log_n2, kauffmann03(log_n2) - 0.3)
    log_o3hb = log_o3hb + 0.1 * rng.standard_normal(size)
    return log_n2, log_o3hb


def _agn_ratios(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Seyfert/LINER narrow-line ratios, always above the Kewley et al. (2001) line."""
    log_n2 = np.clip(0.1 + 0.12 * rng.standard_normal(size), -0.2, 0.4)
    log_o3hb = np.maximum(0.45 + 0.3 * rng.standard_normal(size), kewley01(log_n2) + 0.15)
    return log_n2, log_o3hb


def _emission_lines(
    rng: np.random.Generator,
    log_sfr: np.ndarray,
    log_sfr_ms: np.ndarray,
    quenched: np.ndarray,
    agn: np.ndarray,
    oh_t04: np.ndarray,
    av_gas: np.ndarray,
    lum_dist_cm: np.ndarray,
) -> dict[str, dict[str, np.ndarray]]:
    """Dust-attenuated total line fluxes (erg/s/cm²), split by emitting component.

    Components: ``"hii"`` (star formation, Kennicutt 1998 Hα, disc-distributed),
    ``"lier"`` (weak diffuse emission of quenched galaxies, LINER-like ratios, following
    the bulge) and ``"agn"`` (a nuclear point source about as bright as the host's
    total lines, so it dominates the fibre spectrum). The same Calzetti (2000)
    attenuation applies to all; Hβ comes from the intrinsic decrement, so the observed
    Hα/Hβ is ≥ 2.86 before noise. The diffuse Hα of quenched galaxies scales with the
    main-sequence SFR ``log_sfr_ms`` at their mass (a stellar-mass proxy), not with their
    own, far lower SFR.
    """
    size = len(log_sfr)
    four_pi_d2 = 4.0 * np.pi * lum_dist_cm**2
    ha_sf = 10.0**log_sfr / _KENNICUTT_HA / four_pi_d2
    k_ha, k_hb = k_lambda(HALPHA_WAVELENGTH), k_lambda(HBETA_WAVELENGTH)
    ebv = av_gas / CURVE_R_V["calzetti2000"]
    att_ha, att_hb = 10.0 ** (-0.4 * k_ha * ebv), 10.0 ** (-0.4 * k_hb * ebv)

    n2_sf, o3_sf = _star_forming_ratios(rng, oh_t04)
    # Quenched galaxies: diffuse LINER-like emission from old stars, ~2 dex below the
    # Hα of a main-sequence galaxy of the same mass.
    n2_lier = 0.05 + 0.15 * rng.standard_normal(size)
    o3_lier = 0.0 + 0.2 * rng.standard_normal(size)
    ha_ms = 10.0**log_sfr_ms / _KENNICUTT_HA / four_pi_d2
    ha_lier = ha_ms * 10.0 ** (-2.1 + 0.5 * rng.standard_normal(size))
    n2_agn, o3_agn = _agn_ratios(rng, size)
    eta = 10.0 ** (-0.1 + 0.4 * rng.standard_normal(size))

    ha_hii = np.where(quenched, 0.0, ha_sf)
    ha_lier = np.where(quenched, ha_lier, 0.0)
    ha_agn = np.where(agn, eta * (ha_hii + ha_lier), 0.0)

    out: dict[str, dict[str, np.ndarray]] = {}
    for comp, ha, n2, o3, balmer in (
        ("hii", ha_hii, n2_sf, o3_sf, _BALMER_SF),
        ("lier", ha_lier, n2_lier, o3_lier, _BALMER_SF),
        ("agn", ha_agn, n2_agn, o3_agn, _BALMER_AGN),
    ):
        hb = ha / balmer
        nii = ha * 10.0**n2
        oiii = hb * 10.0**o3
        out[comp] = {
            "halpha": ha * att_ha,
            "hbeta": hb * att_hb,
            "nii_6584": nii * att_ha,
            # Doublet partners fixed by atomic physics (the ratios of LINES); they
            # matter only for the broad-band photometry.
            "nii_6548": nii * att_ha * LINES["nii_6548"].ratio,
            "oiii_5007": oiii * att_hb,
            "oiii_4959": oiii * att_hb * LINES["oiii_4959"].ratio,
        }
    return out


def _bpt_class(
    fluxes: dict[str, np.ndarray], errors: dict[str, np.ndarray]
) -> np.ndarray:
    """MPA-JHU-style BPT class (Brinchmann et al. 2004) from measured fluxes.

    1 star-forming, 3 composite, 4 AGN: all four lines S/N ≥ 3, split by the Kauffmann
    et al. (2003) and Kewley et al. (2001) lines; 2 low-S/N star-forming and 5 low-S/N
    LINER/AGN: Hα S/N ≥ 2 with log [N II]/Hα below / above -0.4 (or [N II] undetected
    for class 2); -1 unclassifiable.
    """
    sn = {k: fluxes[k] / np.where(errors[k] > 0, errors[k], np.inf) for k in fluxes}
    with np.errstate(divide="ignore", invalid="ignore"):
        n2 = np.log10(fluxes["nii_6584"] / fluxes["halpha"])
        o3 = np.log10(fluxes["oiii_5007"] / fluxes["hbeta"])
    all_good = np.all([sn[k] >= 3 for k in sn], axis=0)
    cls = np.full(len(n2), -1, dtype=np.int16)
    ha_ok = sn["halpha"] >= 2
    nii_ok = sn["nii_6584"] >= 2
    cls[ha_ok & ~nii_ok] = 2
    cls[ha_ok & nii_ok & (n2 < -0.4)] = 2
    cls[ha_ok & nii_ok & (n2 >= -0.4)] = 5
    codes = {"star-forming": 1, "composite": 3, "AGN": 4}
    diagram = bpt_class(n2[all_good], o3[all_good])
    cls[all_good] = [codes[name] for name in diagram]
    return cls


def _sdss_obj_ids(rng: np.random.Generator, size: int) -> np.ndarray:
    """Unique int64 objIDs with the SDSS bit layout (skyVersion 2, rerun 301)."""
    ids: set[int] = set()
    out = np.empty(size, dtype=np.int64)
    i = 0
    while i < size:
        m = size - i
        run = rng.integers(94, 8163, m, dtype=np.int64)
        camcol = rng.integers(1, 7, m, dtype=np.int64)
        field = rng.integers(11, 800, m, dtype=np.int64)
        obj = rng.integers(1, 2000, m, dtype=np.int64)
        cand = (2 << 59) | (301 << 48) | (run << 32) | (camcol << 29) | (field << 16) | obj
        for c in cand.tolist():
            if c not in ids:
                ids.add(c)
                out[i] = c
                i += 1
    return out


# --------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------


def _simulate_candidates(
    rng: np.random.Generator,
    size: int,
    grid: _DistanceGrid,
    model: PhotometryModel,
    z_range: tuple[float, float],
    logm_range: tuple[float, float],
    r_limit: float | None,
) -> dict[str, Any]:
    """Draw ``size`` galaxies, keep those that can pass the flux limit, give them labels
    and ugriz photometry, and return the rows brighter than ``r_limit``."""
    z, logm = _draw_redshift_mass(rng, size, grid, z_range, logm_range)
    distmod = grid.interp("distmod", z)
    if r_limit is not None:
        # Cheap pre-cut: the bluest, dust-free, line-free mixture is the brightest a
        # galaxy of this mass can be; 1 mag covers lines, noise and interpolation.
        keep = brightest_r(model, z, logm, distmod) - 1.0 < r_limit
        z, logm, distmod = z[keep], logm[keep], distmod[keep]
    quenched, log_sfr = _draw_star_formation(rng, logm, z)
    log_sfr_ms = _main_sequence(logm, z)
    delta_ms = log_sfr - log_sfr_ms
    morph = _draw_morphology(rng, logm, quenched, grid.interp("kpc_per_arcsec", z))
    av_gas, av_star = _draw_dust(rng, logm, delta_ms, quenched, morph["cos_i"])
    oh_true = _draw_metallicity(rng, logm, log_sfr, z)
    sigma_true = _draw_velocity_dispersion(rng, logm, morph["bulge_frac"])
    agn = _draw_agn(rng, logm, quenched)
    lum_dist = grid.interp("lum_dist_cm", z)
    lines = _emission_lines(
        rng, log_sfr, log_sfr_ms, quenched, agn, oh_true, av_gas, lum_dist
    )

    maggies = stellar_maggies(model, z, logm, log_sfr, distmod, av_star)
    total_lines = {k: sum(lines[c][k] for c in lines) for k in _PHOTOMETRY_LINES}
    maggies = maggies + line_maggies(model, z, total_lines)

    out: dict[str, Any] = observed_magnitudes(rng, maggies)
    out.update(
        z=z,
        logm=logm,
        log_sfr=log_sfr,
        quenched=quenched,
        agn=agn,
        oh_true=oh_true,
        sigma_true=sigma_true,
        av_gas=av_gas,
        av_star=av_star,
        lines=lines,
        r_true=-2.5 * np.log10(maggies[:, 2]),
        **morph,
    )
    if r_limit is not None:
        passed = out["modelMag_r"] < r_limit
        out = _take(out, passed)
    return out


def _take(data: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """Index every array (also inside nested dicts) of ``data``."""
    return {k: _take(v, index) if isinstance(v, dict) else v[index] for k, v in data.items()}


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the arrays (also inside nested dicts) of several batches."""
    out: dict[str, Any] = {}
    for k, first in parts[0].items():
        values = [p[k] for p in parts]
        out[k] = _concat(values) if isinstance(first, dict) else np.concatenate(values)
    return out


def _fibre_fractions(gal: dict[str, Any]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fractions of each line component's and of the continuum's light in the fibre."""
    frac_disc = _fibre_fraction(gal["r_half_disc"], 1.0)
    frac_bulge = _fibre_fraction(gal["r_half_bulge"], 4.0)
    # A Gaussian PSF's light inside the fibre, for the nuclear AGN.
    sigma_psf = _SEEING_FWHM * gaussian_fwhm_to_sigma
    frac_psf = 1.0 - np.exp(-0.5 * (_FIBRE_RADIUS_ARCSEC / sigma_psf) ** 2)
    bt = gal["bulge_frac"]
    frac_cont = bt * frac_bulge + (1.0 - bt) * frac_disc
    return {"hii": frac_disc, "lier": frac_bulge, "agn": frac_psf}, frac_cont


def _observe_lines(
    rng: np.random.Generator,
    gal: dict[str, Any],
    frac: dict[str, np.ndarray],
    fibre_cont: np.ndarray,
) -> dict[str, np.ndarray]:
    """galSpecLine-like fibre fluxes and errors (1e-17 erg/s/cm²).

    The error grows with the starlight in the fibre; the measured flux is the fibre
    flux plus Gaussian noise and is kept as measured (negative for some weak lines),
    as galSpecLine does.
    """
    size = len(fibre_cont)
    base_err = 2.3 * np.sqrt(1.0 + fibre_cont / 0.25) * 10.0 ** (0.12 * rng.standard_normal(size))
    line_err_scale = {"halpha": 1.0, "hbeta": 0.85, "nii_6584": 0.95, "oiii_5007": 0.9}
    to_flux_unit = (u.erg / u.s / u.cm**2).to(FLUX_UNIT)
    out: dict[str, np.ndarray] = {}
    for name, scale in line_err_scale.items():
        true = sum(gal["lines"][c][name] * frac[c] for c in frac) * to_flux_unit
        err = np.hypot(base_err * scale, 0.015 * true)
        column = _LINE_COLUMNS[name]
        out[f"{column}_flux"] = true + err * rng.standard_normal(size)
        out[f"{column}_flux_err"] = err
    return out


def _spectrum_sn(rng: np.random.Generator, fibre_cont: np.ndarray) -> np.ndarray:
    """Median continuum S/N per pixel of an SDSS spectrum.

    ``fibre_cont`` is the fibre's continuum flux in units of an r = 17 source. SDSS
    reaches (S/N)² = 15 at fibre g = 20.2 (S/N ≈ 3.9, sky limited, so ∝ flux); brighter
    spectra become source limited (∝ √flux). 0.1 dex scatter for sky and seeing.
    """
    rel = fibre_cont * 10.0 ** (0.4 * 3.2)  # flux relative to fibre mag 20.2
    sn = 3.9 * rel / np.sqrt(1.0 + fibre_cont)
    return sn * 10.0 ** (0.1 * rng.standard_normal(len(fibre_cont)))


def _observe_sigma(
    rng: np.random.Generator, gal: dict[str, Any], sn: np.ndarray
) -> dict[str, np.ndarray]:
    """SDSS-like ``velDisp``/``velDispErr`` (km/s, 0 where not measured) and log M_BH.

    A dispersion is reported only where SDSS reports a reliable one: early-type
    (absorption-dominated) spectra, 70 < σ < 420 km/s and S/N > 10 (and 2 % of the rest
    fail at random). Early type means a true log sSFR below about -10.3 /yr. M_BH comes
    from the reported σ through `astro_galpost.physics.mbh_from_sigma` (McConnell & Ma
    2013), so it is missing wherever σ is, which is not at random.
    """
    size = len(sn)
    sigma = gal["sigma_true"]
    vd_err = np.hypot(0.04 * sigma, 6.0 * 10.0 ** (0.2 * (gal["r_true"] - 17.0)))
    vd = sigma + vd_err * rng.standard_normal(size)
    log_ssfr = gal["log_sfr"] - gal["logm"]
    early = rng.random(size) < _sigmoid((_EARLY_LOG_SSFR - log_ssfr) / _EARLY_WIDTH)
    kms = u.km / u.s
    measured = early & (vd > SIGMA_MIN.to_value(kms)) & (vd < SIGMA_MAX.to_value(kms))
    measured &= sn > SIGMA_SN_MIN
    measured &= rng.random(size) > 0.02
    log_mbh = np.full(size, _SENTINEL)
    log_mbh[measured] = mbh_from_sigma(vd[measured] * (u.km / u.s)).value
    return {
        "velDisp": np.where(measured, vd, 0.0),
        "velDispErr": np.where(measured, vd_err, 0.0),
        "log_mbh": log_mbh,
    }


def _noisy_labels(
    rng: np.random.Generator, gal: dict[str, Any], bpt: np.ndarray
) -> dict[str, np.ndarray]:
    """MPA-JHU-like p16/p50/p84 of stellar mass, SFR and O/H around the true values.

    Each p50 is the truth plus Gaussian noise of the label's quoted width, and p16/p84
    are p50 ∓ that width. O/H is reported (otherwise -9999) only for confidently
    star-forming spectra (``bptclass == 1``), of which 3 % fail, as in MPA-JHU.
    """
    size = len(bpt)
    sfr_width = np.full(size, _SFR_WIDTH_OTHER)
    for cls, width in _SFR_WIDTH_BY_BPT.items():
        sfr_width[bpt == cls] = width
    oh_ok = (bpt == 1) & (rng.random(size) > 0.03)
    out: dict[str, np.ndarray] = {}
    for name, truth, width in (
        ("lgm_tot", gal["logm"], np.full(size, _LGM_WIDTH)),
        ("sfr_tot", gal["log_sfr"], sfr_width),
        ("oh", gal["oh_true"], np.full(size, _OH_WIDTH)),
    ):
        p50 = truth + width * rng.standard_normal(size)
        ok = oh_ok if name == "oh" else np.ones(size, dtype=bool)
        for suffix, value in (("p16", p50 - width), ("p50", p50), ("p84", p50 + width)):
            out[f"{name}_{suffix}"] = np.where(ok, value, _SENTINEL)
    return out


def _observe_spectra(rng: np.random.Generator, gal: dict[str, Any]) -> dict[str, np.ndarray]:
    """Fibre line fluxes with galSpecLine-like errors, BPT class, σ measurement and the
    MPA-JHU labels with their noise (CAS sentinels where not measurable)."""
    frac, frac_cont = _fibre_fractions(gal)
    fibre_cont = frac_cont * 10.0 ** (-0.4 * (gal["r_true"] - 17.0))
    out = _observe_lines(rng, gal, frac, fibre_cont)
    out["bptclass"] = _bpt_class(
        {k: out[f"{c}_flux"] for k, c in _LINE_COLUMNS.items()},
        {k: out[f"{c}_flux_err"] for k, c in _LINE_COLUMNS.items()},
    )
    out.update(_noisy_labels(rng, gal, out["bptclass"]))
    out.update(_observe_sigma(rng, gal, _spectrum_sn(rng, fibre_cont)))
    return out


def _sky_positions(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions uniform on the sphere within a box around the SDSS Legacy north cap."""
    ra = 120.0 + 130.0 * rng.random(size)
    sin_lo, sin_hi = np.sin(np.radians(-3.0)), np.sin(np.radians(65.0))
    dec = np.degrees(np.arcsin(sin_lo + (sin_hi - sin_lo) * rng.random(size)))
    return ra, dec


def _draw_flux_limited(
    rng: np.random.Generator,
    n: int,
    grid: _DistanceGrid,
    model: PhotometryModel,
    z_range: tuple[float, float],
    logm_range: tuple[float, float],
    r_limit: float | None,
) -> dict[str, Any]:
    """Simulate candidates in batches until ``n`` pass the flux limit; return the first ``n``."""
    parts: list[dict[str, Any]] = []
    have = 0
    # First guess at the fraction of raw draws that survive the cut (~2 % for the MGS
    # limit); later batches use the measured fraction.
    accept = 1.0 if r_limit is None else 0.02
    while have < n:
        need = n - have
        size = int(np.clip(1.3 * need / accept + 200, 1000, 2_000_000))
        part = _simulate_candidates(rng, size, grid, model, z_range, logm_range, r_limit)
        got = len(part["z"])
        accept = max(got / size, 1e-4)
        if got:
            parts.append(part)
            have += got
    return _take(_concat(parts), np.arange(n))


def _catalog_table(
    gal: dict[str, Any], spec: dict[str, np.ndarray], ra: np.ndarray, dec: np.ndarray, obj_id: np.ndarray
) -> Table:
    """Assemble the catalogue table (without meta) in its CAS-like column order."""
    table = Table()
    table["objID"] = obj_id
    table["ra"] = ra * u.deg
    table["dec"] = dec * u.deg
    table["z"] = gal["z"]
    for prefix in ("modelMag", "modelMagErr", "extinction"):
        for band in BANDS:
            table[f"{prefix}_{band}"] = gal[f"{prefix}_{band}"] * u.mag
    _add_spectral_columns(table, spec)
    _add_structure_and_truth_columns(table, gal)
    return table


def _add_spectral_columns(table: Table, spec: dict[str, np.ndarray]) -> None:
    """Append the MPA-JHU labels, velocity dispersion, black-hole mass, lines and BPT class."""
    for name in ("lgm_tot", "sfr_tot", "oh"):
        for suffix in ("p50", "p16", "p84"):
            table[f"{name}_{suffix}"] = spec[f"{name}_{suffix}"]
    table["velDisp"] = spec["velDisp"] * (u.km / u.s)
    table["velDispErr"] = spec["velDispErr"] * (u.km / u.s)
    table["log_mbh"] = spec["log_mbh"]
    for line in _LINE_COLUMNS.values():
        table[f"{line}_flux"] = spec[f"{line}_flux"] * FLUX_UNIT
        table[f"{line}_flux_err"] = spec[f"{line}_flux_err"] * FLUX_UNIT
    table["bptclass"] = spec["bptclass"]


def _add_structure_and_truth_columns(table: Table, gal: dict[str, Any]) -> None:
    """Append the bulge + disc morphology and the mock truths that have no CAS counterpart."""
    n = len(table)
    table["bulge_frac"] = gal["bulge_frac"]
    table["r_half_disc"] = gal["r_half_disc"] * u.arcsec
    table["r_half_bulge"] = gal["r_half_bulge"] * u.arcsec
    table["sersic_n_disc"] = np.ones(n)
    table["sersic_n_bulge"] = np.full(n, 4.0)
    table["axis_ratio"] = gal["axis_ratio"]
    table["axis_ratio_bulge"] = gal["axis_ratio_bulge"]
    table["position_angle"] = gal["position_angle"] * u.deg
    table["quenched"] = gal["quenched"]
    table["agn"] = gal["agn"]
    table["av_gas"] = gal["av_gas"] * u.mag
    table["av_star"] = gal["av_star"] * u.mag
    table["lgm_true"] = gal["logm"]
    table["sfr_true"] = gal["log_sfr"]
    table["oh_true"] = gal["oh_true"]
    table["sigma_true"] = gal["sigma_true"] * (u.km / u.s)


# Long for its numpydoc docstring (a public entry point with many parameters); the code is about 30 lines.
def make_mock_catalog(
    n: int,
    random_state: int | np.random.Generator | None = None,
    *,
    r_limit: float | None = 17.77,
    z_range: tuple[float, float] = (0.01, 0.3),
    logm_range: tuple[float, float] = (8.5, 12.0),
    cosmology: FLRW | None = None,
) -> Table:
    """Make a MOCK catalogue of SDSS-like galaxies with physically linked labels.

    This is **simulated data** for tests, demos and calibration checks; none of its rows
    is a real galaxy. Galaxies are drawn uniformly in comoving volume with stellar masses
    from a double-Schechter mass function, then given, through a chain of published
    scaling relations, star formation, dust, metallicity, structure, stellar velocity
    dispersion, black-hole mass, emission lines and ugriz photometry. With ``r_limit``
    set (the default), candidates are oversampled and exactly ``n`` galaxies brighter
    than the limit are kept, so that redshift and mass distributions resemble the SDSS
    Main Galaxy Sample (median z ≈ 0.1, most galaxies at 0.02 < z < 0.25).

    Parameters
    ----------
    n : int
        Number of galaxies (rows) to return.
    random_state : int, numpy.random.Generator or None, optional
        Seed or generator; the same integer seed gives an identical table. A generator
        passed in is advanced.
    r_limit : float or None, optional
        Flux limit on the (Galactic-extinction-free) r-band magnitude ``modelMag_r``; the
        MGS cut of 17.77 is on dereddened Petrosian r, for which the model magnitude
        stands in here. ``None`` gives a volume-limited sample.
    z_range : tuple of float, optional
        Redshift range from which candidates are drawn; the upper end must not exceed 0.5.
    logm_range : tuple of float, optional
        Range of log10 stellar mass (Msun) from which candidates are drawn.
    cosmology : astropy.cosmology.FLRW, optional
        Cosmology for distances and angular sizes; default `~astropy.cosmology.Planck18`.

    Returns
    -------
    astropy.table.Table
        One row per galaxy. Columns carry SDSS CAS names (PhotoObj, SpecObj and MPA-JHU
        ``galSpecExtra``/``galSpecLine``), so a mock reads like a real export, and keep
        the CAS sentinels (-9999, or 0 for a failed ``velDisp``) where a label could not
        be measured:

        - ``objID`` (int64, SDSS bit layout), ``ra``, ``dec`` (deg)
        - ``z``: spectroscopic redshift
        - ``modelMag_{u,g,r,i,z}``, ``modelMagErr_{u,g,r,i,z}`` (mag): model magnitudes
          on the SDSS system (AB except u - 0.04 and z + 0.02), **already corrected for
          Galactic extinction** (as SDSS magnitudes are once dereddened, which the SDSS
          path does to its inputs); ``extinction_{u,g,r,i,z}`` are kept for a CAS-like
          layout and are 0, so ``modelMag - extinction`` is the same magnitude
        - ``lgm_tot_p50``: log10 stellar mass (Msun); ``sfr_tot_p50``: log10 SFR
          (Msun/yr); with ``_p16``/``_p84``: MPA-JHU-like labels, the truth plus noise of
          the widths MPA-JHU quotes (see Notes)
        - ``oh_p50`` (and ``oh_p16``, ``oh_p84``): 12 + log(O/H) (Tremonti et al. 2004
          scale), -9999 unless the spectrum is confidently star forming
          (``bptclass == 1``), and for ~3 % of those
        - ``velDisp``, ``velDispErr`` (km/s): 0 where SDSS would not report a reliable
          dispersion: spectra that are not early type, σ outside 70-420 km/s, or S/N below
          10 (about 40 % of an MGS-like mock, mostly star-forming and low-mass galaxies)
        - ``log_mbh``: log10 black-hole mass (Msun) from ``velDisp`` by the McConnell &
          Ma (2013) relation (`astro_galpost.physics.mbh_from_sigma`), -9999 where
          ``velDisp`` is 0
        - ``h_alpha_flux``, ``h_beta_flux``, ``nii_6584_flux``, ``oiii_5007_flux`` and
          their ``*_err`` (1e-17 erg/s/cm²): fibre fluxes with Gaussian noise, kept as
          measured as in galSpecLine: 25-45 % of each line has S/N < 3 and weak lines can
          be negative
        - ``bptclass``: 1 star forming, 2 low-S/N star forming, 3 composite, 4 AGN,
          5 low-S/N LINER, -1 unclassifiable (Brinchmann et al. 2004 scheme)
        - morphology for future images: ``bulge_frac`` (r-band B/T), ``r_half_disc`` and
          ``r_half_bulge`` (arcsec), ``sersic_n_disc`` (1), ``sersic_n_bulge`` (4),
          ``axis_ratio`` (disc b/a), ``axis_ratio_bulge``, ``position_angle`` (deg, E of N)
        - mock truths with no CAS counterpart: ``quenched``, ``agn`` (bool), ``av_gas``
          and ``av_star`` (mag, Calzetti 2000); noise-free ``lgm_true``, ``sfr_true``,
          ``oh_true`` (defined for every galaxy) and ``sigma_true`` (km/s)

        Log quantities (``z``, ``lgm_tot_p50``, ``sfr_tot_p50``, ``oh_p50``, ``log_mbh``)
        are unitless, as in CAS exports, so that sentinels stay plain numbers.
        ``meta`` records that the table is a mock and how it was made.

    Notes
    -----
    The relations used (each in its own private function of this module):

    - stellar mass function: double Schechter of Baldry et al. (2012);
    - star-forming main sequence log SFR = 0.76 (log M* - 10) - 0.1, scatter 0.3 dex,
      with sSFR ∝ (1 + z)^2.8 (Sargent et al. 2014) about z = 0.1; a quenched
      population, whose fraction rises with mass, at log sSFR = -12 with 0.4 dex scatter
      (the passive peak of Brinchmann et al. 2004, ~2 dex below the sequence);
    - metallicity: the mass-metallicity relation of Tremonti et al. (2004) on the main
      sequence, moved off it by the SFR dependence of the Mannucci et al. (2010)
      fundamental metallicity relation (O/H lower at higher SFR for fixed M*), 0.08 dex
      intrinsic scatter;
    - labels: MPA-JHU-like noise, 1σ = (p84 - p16) / 2 of 0.09 dex in stellar mass
      (Kauffmann et al. 2003), 0.25 dex in SFR for star-forming spectra, 0.45 dex for
      low-S/N star-forming and composite ones and 0.75 dex for AGN, LINER and passive
      spectra whose SFR comes from D4000 (Brinchmann et al. 2004), 0.04 dex in O/H
      (Tremonti et al. 2004);
    - dust: A(Hα) versus mass of Garn & Best (2010), rising with SFR offset and
      inclination; Calzetti et al. (2000) curve; stellar E(B-V) = 0.44 nebular;
    - Hα from the Kennicutt (1998) SFR calibration (Chabrier IMF); Hβ from the case B
      decrement 2.86; [N II] and [O III] from the Pettini & Pagel (2004) N2 and O3N2
      calibrations; an AGN branch above the Kewley et al. (2001) line in massive hosts;
      weak LINER-like lines in quenched galaxies; fibre aperture fractions from Sérsic
      profiles of the bulge and disc and 1.4 arcsec seeing;
    - sizes: Shen et al. (2003) size-mass relations; velocity dispersion: Zahid et al.
      (2016) mass-σ relation, reported only where SDSS reports it (early-type spectra,
      70 < σ < 420 km/s, median S/N > 10 per pixel; Bernardi et al. 2003); black-hole
      mass: McConnell & Ma (2013);
    - photometry: kcorrect (Blanton & Roweis 2007) v4 templates projected on the SDSS
      filter curves at the galaxy's redshift: a star-forming continuum whose mass
      fraction rises with sSFR (tied to the mass the template formed in the last Gyr,
      with a scale and power calibrated on real MGS colours), the rest in an old
      population that moves from solar metallicity to kcorrect's metal-rich LRG template
      with increasing mass; scaled to the stellar mass at the luminosity distance,
      attenuated by the stellar A_V, plus the modelled emission lines; SDSS-like
      magnitude errors (about 0.006 mag in r and 0.02-0.05 in u at r ≈ 17, as in the
      MGS) and matching Gaussian noise; no Galactic extinction (the magnitudes stand for
      dereddened SDSS ones).

    The flux limit is applied by drawing candidates in batches, discarding those that
    cannot reach it even with the bluest template, simulating the rest and keeping the
    first ``n`` that pass; about 2 % of raw draws survive the MGS limit.

    Simplifications: positions are random (no clustering, no real footprint or
    extinction map); the continuum is a three-template mixture, so colour scatter at
    fixed sSFR and dust is smaller than in real data (g-r and u-r percentiles match the
    MGS to ~0.1 mag); label noise is Gaussian with fixed widths per class. The first
    call builds and caches the kcorrect projections (about a second); later calls take
    about 1 s per 20,000 galaxies.

    Examples
    --------
    >>> from astro_galpost.datasets.mock import make_mock_catalog
    >>> cat = make_mock_catalog(200, random_state=1)
    >>> len(cat)
    200
    >>> bool((cat["modelMag_r"] < 17.77).all())
    True
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    n = int(n)
    z_lo, z_hi = (float(v) for v in z_range)
    if not 0.0 < z_lo < z_hi <= Z_MAX_SUPPORTED:
        raise ValueError(f"z_range must satisfy 0 < z_min < z_max <= {Z_MAX_SUPPORTED}")
    m_lo, m_hi = (float(v) for v in logm_range)
    if not 6.0 <= m_lo < m_hi <= 13.0:
        raise ValueError("logm_range must satisfy 6 <= min < max <= 13")
    cosmology = Planck18 if cosmology is None else cosmology
    rng = np.random.default_rng(random_state)
    grid = _distance_grid(cosmology)
    model = photometry_model()

    gal = _draw_flux_limited(rng, n, grid, model, (z_lo, z_hi), (m_lo, m_hi), r_limit)
    spec = _observe_spectra(rng, gal)
    ra, dec = _sky_positions(rng, n)
    obj_id = _sdss_obj_ids(rng, n)

    table = _catalog_table(gal, spec, ra, dec, obj_id)
    table.meta.update(
        mock=True,
        description="MOCK SDSS-like galaxy catalogue from astro_galpost.datasets.mock; "
        "not real data",
        r_limit=r_limit,
        z_range=(z_lo, z_hi),
        logm_range=(m_lo, m_hi),
        cosmology=getattr(cosmology, "name", None) or repr(cosmology),
        sentinel=_SENTINEL,
    )
    return table
