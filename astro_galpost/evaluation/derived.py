"""Calibration of derived quantities and local (per-bin) calibration.

A posterior can be calibrated target by target and still be wrong where users look:
a quantity that combines several targets (specific SFR, a line ratio, the Hα-based SFR
against the SFR label) has the right width only if the *joint* posterior has the right
correlations, and a posterior too narrow for faint galaxies and too wide for bright ones
can average to a calibrated whole. This module checks both:

`derived_calibration`
    Computes a function of several targets sample by sample (so the joint draws keep
    their correlations) and for the truth, then tests the PIT and central-interval
    coverage of the result, with the same `pit`, `pit_ks`, `pit_cvm` and `coverage` as
    the per-target checks. `DERIVED_QUANTITIES` holds six built-in quantities.
`local_calibration`
    Splits each target's labelled galaxies into quantile bins (default quintiles) of an
    input column or a target and reports the coverage and PIT KS distance of every
    target (or derived quantity) in each bin.

Values are combined in catalog units: log10 for stellar mass, SFR and black-hole mass,
1e-17 erg/s/cm² for line fluxes, plain redshift.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import astropy.units as u
import numpy as np
from astropy.cosmology import FlatLambdaCDM
from astropy.table import QTable, Table

from ..model.targets import TARGETS
from ..physics import balmer_decrement, sfr_from_halpha
from ..utils.columns import column_data
from .calibration import coverage, pit, pit_cvm, pit_ks
from .report import model_space_samples, model_space_truth

__all__ = [
    "DERIVED_QUANTITIES",
    "DerivedQuantity",
    "derived_calibration",
    "derived_samples",
    "derived_truth",
    "local_calibration",
]


@dataclass(frozen=True)
class DerivedQuantity:
    """A function of several targets, evaluated sample by sample.

    Parameters
    ----------
    name : str
        Short name, used as the row label of the result tables.
    inputs : tuple of str
        Registered target names the function needs, in the order it takes them.
    function : callable
        ``function(*values)`` with one float array per input, in catalog units (log10
        for log targets, 1e-17 erg/s/cm² for line fluxes), all of the same shape;
        returns an array of that shape, NaN where the quantity is undefined.
    unit : `~astropy.units.UnitBase`
        Unit of the result (for documentation and tables).
    description : str
        What the quantity is.
    """

    name: str
    inputs: tuple[str, ...]
    function: Callable[..., np.ndarray]
    unit: u.UnitBase = u.dimensionless_unscaled
    description: str = ""

    def __call__(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Evaluate on ``{target: values}`` (catalog units); NaN where undefined."""
        missing = [n for n in self.inputs if n not in values]
        if missing:
            raise KeyError(f"derived quantity {self.name!r} needs targets {missing}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.function(*(np.asarray(values[n], dtype=float) for n in self.inputs))
        return np.asarray(getattr(out, "value", out), dtype=float)


def _log_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """log10(num/den), NaN unless both are positive."""
    ok = (num > 0) & (den > 0)
    return np.where(ok, np.log10(np.where(ok, num, 1.0) / np.where(ok, den, 1.0)), np.nan)


#: The cosmology of the MPA-JHU SFRs (Brinchmann et al. 2004): H0 = 70 km/s/Mpc, Omega_M = 0.3,
#: flat (Planck18 distances would add 0.03 dex to the offset).
_LABEL_COSMOLOGY = FlatLambdaCDM(H0=70.0, Om0=0.3)


def _halpha_sfr_offset(halpha: np.ndarray, redshift: np.ndarray, log_sfr: np.ndarray) -> np.ndarray:
    log_sfr_ha = sfr_from_halpha(halpha, redshift, cosmology=_LABEL_COSMOLOGY).to_value(u.dex(u.Msun / u.yr))
    return log_sfr_ha - log_sfr


#: Built-in derived quantities by name (see `DerivedQuantity`):
#:
#: ``log_ssfr``
#:     log sSFR = log SFR − log M* (1/yr).
#: ``log_mbh_mstar``
#:     log M_BH − log M*.
#: ``halpha_sfr_offset``
#:     log SFR(Hα) − log SFR, with the observed (fibre, not dust-corrected) Hα flux
#:     converted by `astro_galpost.physics.sfr_from_halpha` (Kennicutt & Evans 2012) at
#:     the luminosity distance of the redshift in the MPA-JHU SFRs' cosmology (H0 = 70, Ω_M = 0.3).
#: ``balmer_decrement``
#:     Hα/Hβ (`astro_galpost.physics.balmer_decrement`).
#: ``n2``
#:     log10 [N II] 6584/Hα.
#: ``o3``
#:     log10 [O III] 5007/Hβ.
#:
#: The line quantities are undefined (NaN) where a flux is not positive.
DERIVED_QUANTITIES: dict[str, DerivedQuantity] = {
    q.name: q
    for q in (
        DerivedQuantity("log_ssfr", ("log_sfr", "log_mstar"), np.subtract, u.dex(1 / u.yr),
                        "specific star formation rate, log10 sSFR/yr⁻¹"),
        DerivedQuantity("log_mbh_mstar", ("log_mbh", "log_mstar"), np.subtract, u.dex,
                        "black-hole to stellar mass ratio, log10 M_BH/M*"),
        DerivedQuantity("halpha_sfr_offset", ("halpha", "redshift", "log_sfr"), _halpha_sfr_offset,
                        u.dex, "log10 SFR(Hα) − log10 SFR, Hα not corrected for dust or aperture"),
        DerivedQuantity("balmer_decrement", ("halpha", "hbeta"),
                        lambda ha, hb: balmer_decrement(ha, hb).to_value(u.one),
                        u.dimensionless_unscaled, "Balmer decrement Hα/Hβ"),
        DerivedQuantity("n2", ("nii_6584", "halpha"), _log_ratio, u.dex,
                        "N2 = log10 [N II] 6584/Hα"),
        DerivedQuantity("o3", ("oiii_5007", "hbeta"), _log_ratio, u.dex,
                        "O3 = log10 [O III] 5007/Hβ"),
    )
}


def _resolve(quantity: str | DerivedQuantity) -> DerivedQuantity:
    if isinstance(quantity, DerivedQuantity):
        return quantity
    if quantity not in DERIVED_QUANTITIES:
        raise KeyError(f"unknown derived quantity {quantity!r}; built in: {sorted(DERIVED_QUANTITIES)}"
                       " (or pass a DerivedQuantity)")
    return DERIVED_QUANTITIES[quantity]


def derived_samples(samples: Mapping[str, Any], quantity: str | DerivedQuantity) -> np.ndarray:
    """Posterior samples of a derived quantity, computed draw by draw.

    Parameters
    ----------
    samples : `~astro_galpost.PosteriorSamples` or dict
        ``{target: samples}`` from the *same joint draws*: ``(N,)`` Distributions or
        ``(N, S)`` arrays in catalog units.
    quantity : str or `DerivedQuantity`
        A name in `DERIVED_QUANTITIES` or a custom quantity.

    Returns
    -------
    `~numpy.ndarray`
        ``(N, S)`` values; NaN where the quantity is undefined for a draw.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import derived_samples
    >>> samples = {"log_sfr": np.array([[0.0, 1.0]]), "log_mstar": np.array([[10.0, 10.5]])}
    >>> derived_samples(samples, "log_ssfr")
    array([[-10. ,  -9.5]])
    """
    q = _resolve(quantity)
    missing = [n for n in q.inputs if n not in samples]
    if missing:
        raise KeyError(f"derived quantity {q.name!r} needs samples of {missing} (have {list(samples)})")
    values = {n: TARGETS[n].from_model(model_space_samples(samples[n], n)) for n in q.inputs}
    return q(values)


def derived_truth(
    truth: Any, quantity: str | DerivedQuantity, columns: Mapping[str, str] | None = None
) -> np.ndarray:
    """True values of a derived quantity, NaN where any input label is missing.

    Parameters
    ----------
    truth : `~astropy.table.Table` or dict
        Labelled table (labels read with `~astro_galpost.model.targets.Target.read`, so
        sentinels count as missing) or ``{target: values}`` in catalog units.
    quantity : str or `DerivedQuantity`
        A name in `DERIVED_QUANTITIES` or a custom quantity.
    columns : dict, optional
        ``{target: column}`` of ``truth``; default the registry's columns.

    Returns
    -------
    `~numpy.ndarray`
        ``(N,)`` values.
    """
    q = _resolve(quantity)
    columns = dict(columns or {})
    values = {n: TARGETS[n].from_model(model_space_truth(truth, n, columns.get(n))) for n in q.inputs}
    return q(values)


def _defined_draws(values: np.ndarray, min_defined: float, gen: np.random.Generator) -> np.ndarray:
    """Rows with at least ``min_defined`` finite draws, their undefined draws replaced by
    draws resampled from the finite ones (the posterior given that it is defined);
    other rows all NaN, so `pit` and `coverage` skip them."""
    out = values.copy()
    finite = np.isfinite(values)
    frac = finite.mean(axis=1)
    out[frac < min_defined] = np.nan
    for i in np.flatnonzero((frac >= min_defined) & (frac < 1.0)):
        good = values[i, finite[i]]
        out[i, ~finite[i]] = gen.choice(good, size=int((~finite[i]).sum()))
    return out


def _calibration_row(
    values: np.ndarray, tru: np.ndarray, levels: Sequence[float], gen: np.random.Generator
) -> list[float]:
    """``n``, PIT KS and CvM (statistic, p value) and coverage per level; NaN if n < 2."""
    ok = np.isfinite(tru) & np.all(np.isfinite(values), axis=1)
    n = int(ok.sum())
    if n < 2:
        return [n] + [np.nan] * (4 + len(levels))
    p = pit(values[ok], tru[ok], rng=gen)
    ks, cvm = pit_ks(p), pit_cvm(p)
    cov = np.atleast_1d(coverage(values[ok], tru[ok], levels=list(levels)))
    return [n, ks.statistic, ks.pvalue, cvm.statistic, cvm.pvalue, *map(float, cov)]


def _level_names(levels: Sequence[float]) -> list[str]:
    return [f"coverage_{100 * lv:g}".replace(".", "_") for lv in levels]


def _quantities(samples: Mapping[str, Any], quantities: Any) -> list[DerivedQuantity]:
    if quantities is None:
        return [q for q in DERIVED_QUANTITIES.values() if all(n in samples for n in q.inputs)]
    return [_resolve(q) for q in quantities]


def derived_calibration(
    samples: Mapping[str, Any],
    truth: Any,
    quantities: Sequence[str | DerivedQuantity] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    levels: Sequence[float] = (0.68, 0.95),
    min_defined: float = 0.5,
    rng: int | np.random.Generator | None = 0,
) -> QTable:
    """PIT and coverage of quantities derived from several targets' joint samples.

    Each quantity is computed draw by draw from the joint samples and from the
    truths; its PIT is tested for uniformity (KS and Cramér–von Mises) and the
    coverage of its central credible intervals is measured. A posterior with correct
    marginals but wrong correlations gives derived quantities of the wrong width,
    which these statistics flag.

    Parameters
    ----------
    samples : `~astro_galpost.PosteriorSamples` or dict
        ``{target: samples}`` from the *same joint draws* (as
        `~astro_galpost.GalaxyPosterior.sample` returns them), ``(N,)``
        Distributions or ``(N, S)`` arrays in catalog units.
    truth : `~astropy.table.Table` or dict
        Labelled table or ``{target: values}``.
    quantities : sequence of str or `DerivedQuantity`, optional
        Default: every quantity of `DERIVED_QUANTITIES` whose inputs are all in
        ``samples``.
    columns : dict, optional
        ``{target: column}`` of ``truth``; default the registry's columns.
    levels : sequence of float, optional
        Credibility levels of the coverage columns.
    min_defined : float, optional
        A galaxy is used only if the quantity is defined (finite, e.g. positive
        fluxes for a line ratio) for at least this fraction of its draws; its
        undefined draws are replaced by resampling the defined ones, i.e. the
        posterior is taken given that the quantity is defined.
    rng : int, Generator or None, optional
        Seed for the randomised PIT and the resampling.

    Returns
    -------
    `~astropy.table.QTable`
        One row per quantity: ``quantity``, ``inputs``, ``n`` (galaxies whose
        truth is defined and whose draws pass ``min_defined``), ``n_undefined_truth``
        (galaxies skipped because the truth is not defined), ``pit_ks``,
        ``pit_ks_pvalue``, ``pit_cvm``, ``pit_cvm_pvalue`` and ``coverage_<level>``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import derived_calibration
    >>> rng = np.random.default_rng(0)
    >>> mstar = 10 + 0.3 * rng.standard_normal((2000, 1))
    >>> sfr = mstar - 10 + 0.1 * rng.standard_normal((2000, 201))  # last draw = truth
    >>> samples = {"log_mstar": np.repeat(mstar, 200, axis=1), "log_sfr": sfr[:, :200]}
    >>> truth = {"log_mstar": mstar[:, 0], "log_sfr": sfr[:, 200]}
    >>> res = derived_calibration(samples, truth, ["log_ssfr"])
    >>> bool(res["pit_ks"][0] < 0.05), round(float(res["coverage_68"][0]), 1)
    (True, 0.7)
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    names = _level_names(levels)
    out = QTable(
        names=["quantity", "inputs", "n", "n_undefined_truth", "pit_ks", "pit_ks_pvalue",
               "pit_cvm", "pit_cvm_pvalue", *names],
        dtype=[str, str, int, int] + [float] * (4 + len(levels)),
    )
    for q in _quantities(samples, quantities):
        values = _defined_draws(derived_samples(samples, q), min_defined, gen)
        tru = derived_truth(truth, q, columns)
        labelled = np.all([np.isfinite(model_space_truth(truth, n, (columns or {}).get(n)))
                           for n in q.inputs], axis=0)
        undefined = int(np.sum(labelled & ~np.isfinite(tru)))
        n, *stats = _calibration_row(values, tru, levels, gen)
        out.add_row([q.name, ",".join(q.inputs), n, undefined, *stats])
    return out


def _bin_values(truth: Any, by: Any, columns: Mapping[str, str]) -> tuple[np.ndarray, u.UnitBase | None]:
    """Values to bin on and their unit: a column of ``truth``, a target's truth (in its catalog
    unit), or an array/Quantity; masked values and SDSS "not measured" sentinels are NaN."""
    from ..sdss.catalog import SENTINELS

    if isinstance(by, str):
        if isinstance(truth, Table) and by in truth.colnames:
            by = truth[by]
        elif by in TARGETS:
            return TARGETS[by].from_model(model_space_truth(truth, by, columns.get(by))), TARGETS[by].unit
        else:
            raise KeyError(f"cannot bin by {by!r}: it is neither a column of the truth table "
                           "nor a registered target")
    data, mask, unit = column_data(by)
    if data.ndim != 1:
        raise ValueError(f"values to bin by must be one-dimensional (N,), got shape {data.shape}")
    return np.where(mask | np.isin(data, SENTINELS), np.nan, data), unit


def _plain_edges(bins: Any, unit: u.UnitBase | None) -> Any:
    """``bins`` with Quantity edges converted to ``unit``, the unit of the values binned (None: no unit)."""
    if not isinstance(bins, u.Quantity) or bins.ndim == 0:
        return bins
    unit = u.dimensionless_unscaled if unit is None else unit
    # a unit on one side only is refused: astropy would turn edges in mag into flux ratios
    if (unit == u.dimensionless_unscaled) == (bins.unit == u.dimensionless_unscaled):
        try:
            return bins.to_value(unit)
        except u.UnitsError:
            pass
    raise u.UnitConversionError(f"bins are in {bins.unit.to_string() or 'no unit'!r}, which does not convert "
                                f"to the unit of the values binned by ({unit.to_string() or 'no unit'!r})")


def _bin_index(values: np.ndarray, bins: int | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Bin number per row (-1 outside or NaN) and the bin edges (quantiles for an int)."""
    finite = np.isfinite(values)
    if np.ndim(bins) == 0:
        if int(bins) < 1:
            raise ValueError(f"bins must be a positive number of quantile bins, got {bins!r}")
        edges = np.quantile(values[finite], np.linspace(0.0, 1.0, int(bins) + 1))
    else:
        edges = np.asarray(bins, dtype=float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("bin edges must be an increasing sequence of at least two values")
    index = np.searchsorted(edges, values, side="right") - 1
    index[values == edges[-1]] = len(edges) - 2  # the last bin includes its upper edge
    inside = finite & (index >= 0) & (index < len(edges) - 1)
    return np.where(inside, index, -1), edges


def _labelled(values: np.ndarray, truth: np.ndarray, bins: int | Sequence[float]) -> np.ndarray:
    """``values`` with NaN where ``truth`` is missing, for quantile bins of the labelled galaxies only."""
    labelled = np.isfinite(truth) & np.isfinite(values)
    if np.ndim(bins) != 0 or not labelled.any():
        return values
    return np.where(labelled, values, np.nan)


def local_calibration(
    samples: Mapping[str, Any],
    truth: Any,
    by: Any,
    *,
    bins: int | Sequence[float] = 5,
    targets: Sequence[str | DerivedQuantity] | None = None,
    columns: Mapping[str, str] | None = None,
    levels: Sequence[float] = (0.68, 0.95),
    rng: int | np.random.Generator | None = 0,
) -> QTable:
    """Coverage and PIT KS per bin of an input or a target (local calibration).

    Miscalibration that averages out over the whole sample (too narrow for faint
    galaxies, too wide for bright ones) shows up bin by bin.

    Parameters
    ----------
    samples : `~astro_galpost.PosteriorSamples` or dict
        ``{target: samples}``, ``(N,)`` Distributions or ``(N, S)`` arrays in
        catalog units.
    truth : `~astropy.table.Table` or dict
        Labelled table or ``{target: values}``.
    by : str, array-like or `~astropy.units.Quantity`
        What to bin on: a column of ``truth`` (e.g. ``"modelMag_r"``), a
        registered target (its true value in the target's catalog unit, e.g.
        ``"redshift"``) or ``(N,)`` values (e.g. a colour). Galaxies with a
        missing value (masked, NaN, or an SDSS "not measured" sentinel,
        ``astro_galpost.sdss.catalog.SENTINELS``: -9999, -999, -99) are left out.
    bins : int, sequence of float or `~astropy.units.Quantity`, optional
        Number of quantile bins (default 5, quintiles) or explicit bin edges,
        plain numbers in the unit of ``by`` or a Quantity converted to it.
        Quantile bins are those of the galaxies with a usable truth of each
        target or derived quantity, so that each bin holds its share of them:
        a target labelled in a fifth of the galaxies (metallicity, mostly in
        blue galaxies) would otherwise leave a colour quintile with a handful.
    targets : sequence of str or `DerivedQuantity`, optional
        Targets and/or derived quantities (names in `DERIVED_QUANTITIES`) to
        evaluate; default every registered target in ``samples``.
    columns : dict, optional
        ``{target: column}`` of ``truth``; default the registry's columns.
    levels : sequence of float, optional
        Credibility levels of the coverage columns.
    rng : int, Generator or None, optional
        Seed for the randomised PIT.

    Returns
    -------
    `~astropy.table.QTable`
        One row per target and bin: ``target``, ``bin`` (0 = lowest), ``lo`` and
        ``hi`` (bin edges, with the unit of ``by`` where it has one, the
        target's unit when binning by a target), ``n``
        (galaxies in the bin with a usable truth), ``coverage_<level>`` and
        ``pit_ks``. ``meta["by"]`` names what was binned on.

    Raises
    ------
    astropy.units.UnitConversionError
        When Quantity ``bins`` do not convert to the unit of ``by``.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import local_calibration
    >>> rng = np.random.default_rng(1)
    >>> z = rng.uniform(0.02, 0.3, 1000)
    >>> samples = {"redshift": z[:, None] + 0.01 * rng.standard_normal((1000, 200))}
    >>> res = local_calibration(samples, {"redshift": z + 0.01 * rng.standard_normal(1000)},
    ...                         "redshift", bins=2)
    >>> [int(n) for n in res["n"]], bool(np.all(abs(res["coverage_68"] - 0.68) < 0.05))
    ([500, 500], True)
    """
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    columns = dict(columns or {})
    values, unit = _bin_values(truth, by, columns)
    bins = _plain_edges(bins, unit)
    names = [n for n in samples if n in TARGETS] if targets is None else list(targets)
    rows = []
    for name in names:
        if isinstance(name, DerivedQuantity) or name in DERIVED_QUANTITIES:
            q = _resolve(name)
            label, tru = q.name, derived_truth(truth, q, columns)
            draws = _defined_draws(derived_samples(samples, q), 0.5, gen)
        else:
            label = name
            draws = model_space_samples(samples[name], name)
            tru = model_space_truth(truth, name, columns.get(name))
        if len(values) != len(tru):
            raise ValueError(f"{len(values)} values to bin by for {len(tru)} galaxies of {label!r}")
        index, edges = _bin_index(_labelled(values, tru, bins), bins)
        for b in range(len(edges) - 1):
            sel = index == b
            n, ks, _, _, _, *cov = _calibration_row(draws[sel], tru[sel], levels, gen)
            rows.append([label, b, edges[b], edges[b + 1], n, *cov, ks])
    out = QTable(rows=rows or None, names=["target", "bin", "lo", "hi", "n", *_level_names(levels), "pit_ks"],
                 dtype=[str, int, float, float, int] + [float] * (len(levels) + 1))
    if unit is not None:
        out["lo"] = out["lo"] * unit
        out["hi"] = out["hi"] * unit
    out.meta["by"] = by if isinstance(by, str) else "values"
    return out
