"""Astrophysics of the package's targets: emission lines, dust, M–σ, Sérsic profiles, spectra.

Modules
-------
`~astro_galpost.physics.lines`
    The emission-line table `LINES` (vacuum wavelengths), the line-flux unit
    `FLUX_UNIT`, BPT classes, Balmer decrement, nebular attenuation and the Hα
    star-formation rate, propagated sample by sample through joint posteriors.
`~astro_galpost.physics.dust`
    Attenuation and extinction curves :math:`k(\\lambda)` (Calzetti et al. 2000;
    Cardelli et al. 1989 through ``dust_extinction``).
`~astro_galpost.physics.msigma`
    Black-hole masses from velocity dispersions (M–σ relations, aperture
    corrections, catalogue columns).
`~astro_galpost.physics.sersic`
    Sérsic :math:`b_n` and enclosed light.
`~astro_galpost.physics.spectra` and `~astro_galpost.physics.linefit`
    Reading SDSS spectra and measuring their emission lines (need specutils,
    which is imported only when one of their names is first used).
"""

from .dust import CALZETTI2000_RANGE, CURVE_R_V, k_lambda, resolve_r_v
from .lines import (
    BPT_CLASSES,
    FLUX_UNIT,
    HALPHA_WAVELENGTH,
    HBETA_WAVELENGTH,
    LINES,
    EmissionLine,
    av_from_balmer,
    balmer_decrement,
    bpt_class,
    bpt_class_probabilities,
    bpt_line_ratios,
    halpha_luminosity,
    kauffmann03,
    kewley01,
    parse_line_names,
    sfr_from_halpha,
    vacuum_to_air,
)
from .msigma import (
    CAPPELLARI_2006_EXPONENT,
    JORGENSEN_1995_EXPONENT,
    MBH_SIGMA_RELATIONS,
    SDSS_FIBER_RADIUS,
    SIGMA_COLUMN_CANDIDATES,
    SIGMA_MAX,
    SIGMA_MIN,
    SIGMA_RANGE_KMS,
    SIGMA_SN_MIN,
    MSigmaRelation,
    add_mbh_column,
    aperture_correct_sigma,
    mbh_from_sigma,
    sigma_quality,
)
from .sersic import sersic_b, sersic_enclosed_fraction

__all__ = [
    "BPT_CLASSES",
    "CALZETTI2000_RANGE",
    "CAPPELLARI_2006_EXPONENT",
    "CURVE_R_V",
    "FLUX_UNIT",
    "HALPHA_WAVELENGTH",
    "HBETA_WAVELENGTH",
    "JORGENSEN_1995_EXPONENT",
    "LINES",
    "MBH_SIGMA_RELATIONS",
    "SDSS_FIBER_RADIUS",
    "SDSS_FLUX_UNIT",
    "SIGMA_COLUMN_CANDIDATES",
    "SIGMA_MAX",
    "SIGMA_MIN",
    "SIGMA_RANGE_KMS",
    "SIGMA_SN_MIN",
    "SPPIXMASK",
    "SPPIXMASK_BAD",
    "EmissionLine",
    "LineFlag",
    "MSigmaRelation",
    "add_mbh_column",
    "aperture_correct_sigma",
    "av_from_balmer",
    "balmer_decrement",
    "bpt_class",
    "bpt_class_probabilities",
    "bpt_line_ratios",
    "halpha_luminosity",
    "k_lambda",
    "kauffmann03",
    "kewley01",
    "mbh_from_sigma",
    "measure_lines",
    "measure_spectra",
    "parse_line_names",
    "read_sdss_spectrum",
    "resolve_r_v",
    "sersic_b",
    "sersic_enclosed_fraction",
    "sfr_from_halpha",
    "sigma_quality",
    "spectrum_arrays",
    "vacuum_to_air",
]

# specutils takes over a second to import and is an optional dependency: the names of
# the spectrum modules are imported on first use (PEP 562).
_LAZY = {
    ".spectra": ("SDSS_FLUX_UNIT", "SPPIXMASK", "SPPIXMASK_BAD", "read_sdss_spectrum",
                 "spectrum_arrays"),
    ".linefit": ("LineFlag", "measure_lines", "measure_spectra"),
}


def __getattr__(name):
    module = next((m for m, names in _LAZY.items() if name in names), None)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module, __name__), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
