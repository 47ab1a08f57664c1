"""Evaluation of posterior estimates: point metrics and calibration diagnostics.

`~astro_galpost.evaluation.metrics` holds point metrics of posterior medians
(R², RMSE, bias, σ_NMAD, outlier fraction); `~astro_galpost.evaluation.calibration`
holds calibration diagnostics of the full posteriors (PIT with KS/CvM tests,
interval coverage, CRPS, simulation-based calibration, TARP and joint
highest-density coverage); `~astro_galpost.evaluation.crossval` draws every
training galaxy from a model fitted without it, for choices made by inner
cross-validation; `~astro_galpost.evaluation.derived` checks the
calibration of quantities derived from several targets (sSFR, line ratios,
Hα SFR, ...) and the calibration per bin of an input or target; `~astro_galpost.evaluation.uncertainty` splits a
deep ensemble's spread into aleatoric and epistemic parts (the seed paper's
Table 2); `~astro_galpost.evaluation.report` evaluates a model on a labelled
table and writes the paper's Tables 1 and 2 as Markdown/ECSV.

All functions accept posterior samples as an `astropy.uncertainty.Distribution`
of shape ``(N,)`` or a plain ``(N, S)`` array/Quantity, and truths of shape
``(N,)`` (arrays, Quantities, masked columns); masked or non-finite truths are
ignored.
"""

from .calibration import (
    SBCResult,
    TARPResult,
    UniformityTest,
    calibrated_pass_chance,
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
from .crossval import cross_val_samples
from .derived import (
    DERIVED_QUANTITIES,
    DerivedQuantity,
    derived_calibration,
    derived_samples,
    derived_truth,
    local_calibration,
)
from .metrics import (
    bias,
    outlier_fraction,
    point_metrics,
    r2_score,
    rmse,
    sigma_nmad,
)
from .report import (
    SEED_PAPER_TABLE1,
    SEED_PAPER_TABLE2,
    evaluate_model,
    evaluate_samples,
    joint_calibration,
    metric_unit,
    model_space_samples,
    model_space_truth,
    table1,
    table2,
    to_markdown,
    write_report,
)
from .uncertainty import member_moments, uncertainty_decomposition

__all__ = [
    "DERIVED_QUANTITIES",
    "SEED_PAPER_TABLE1",
    "SEED_PAPER_TABLE2",
    "DerivedQuantity",
    "SBCResult",
    "TARPResult",
    "UniformityTest",
    "bias",
    "calibrated_pass_chance",
    "calibration_summary",
    "coverage",
    "crps",
    "cross_val_samples",
    "derived_calibration",
    "derived_samples",
    "derived_truth",
    "evaluate_model",
    "evaluate_samples",
    "hpd_coverage",
    "joint_calibration",
    "local_calibration",
    "member_moments",
    "metric_unit",
    "model_space_samples",
    "model_space_truth",
    "outlier_fraction",
    "pit",
    "pit_cvm",
    "pit_ks",
    "point_metrics",
    "r2_score",
    "rmse",
    "sbc_ranks",
    "sigma_nmad",
    "table1",
    "table2",
    "tarp_coverage",
    "to_markdown",
    "uncertainty_decomposition",
    "write_report",
]
