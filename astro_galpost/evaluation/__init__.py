"""Evaluation of posterior estimates: point metrics and calibration diagnostics.

`~astro_galpost.evaluation.metrics` holds point metrics of posterior medians
(R², RMSE, bias, σ_NMAD, outlier fraction); `~astro_galpost.evaluation.calibration`
holds calibration diagnostics of the full posteriors (PIT with KS/CvM tests,
interval coverage, CRPS, simulation-based calibration, TARP and joint
highest-density coverage).

All functions accept posterior samples as an `astropy.uncertainty.Distribution`
of shape ``(N,)`` or a plain ``(N, S)`` array/Quantity, and truths of shape
``(N,)`` (arrays, Quantities, masked columns); masked or non-finite truths are
ignored.
"""

from .calibration import (
    SBCResult,
    TARPResult,
    UniformityTest,
    calibration_summary,
    coverage,
    crps,
    hpd_coverage,
    pit,
    pit_cvm,
    pit_ks,
    sbc_ranks,
    tarp_coverage,
)
from .metrics import (
    bias,
    outlier_fraction,
    point_metrics,
    r2_score,
    rmse,
    sigma_nmad,
)

__all__ = [
    "SBCResult",
    "TARPResult",
    "UniformityTest",
    "bias",
    "calibration_summary",
    "coverage",
    "crps",
    "hpd_coverage",
    "outlier_fraction",
    "pit",
    "pit_cvm",
    "pit_ks",
    "point_metrics",
    "r2_score",
    "rmse",
    "sbc_ranks",
    "sigma_nmad",
    "tarp_coverage",
]
