"""Aleatoric/epistemic decomposition of the predictive spread of a deep ensemble.

A `~astro_galpost.GalaxyPosterior` with ``n_ensemble = K >= 2`` samples from the
equal-weight mixture of its ``K`` members.  By the law of total variance the
mixture's variance of a target splits exactly into

.. math::

    \\sigma^2_\\mathrm{tot} = \\underbrace{\\frac1K\\sum_k v_k}_{\\sigma^2_\\mathrm{ale}}
    + \\underbrace{\\frac1K\\sum_k (m_k - \\bar m)^2}_{\\sigma^2_\\mathrm{epi}},

where :math:`m_k` and :math:`v_k` are member *k*'s posterior mean and variance
(Lakshminarayanan et al. 2017; Depeweg et al. 2018).  The aleatoric part is the
spread each network assigns to the data (noise, degeneracies); the epistemic
part is the disagreement between networks (model uncertainty), which shrinks
with more training data.  This is the decomposition of the seed paper's Table 2.

Everything is computed in the space the model works in (`Target.to_model`):
dex for stellar mass, SFR and black-hole mass, plain redshift and
12 + log(O/H), and **log10** of the emission-line fluxes (in 1e-17 erg/s/cm²;
asinh-softened below 2e-17, see `~astro_galpost.Target`).
The seed paper's Table 2 reports the lines in *log1p* space, ln(1 + flux); for
fluxes much larger than 1e-17 erg/s/cm² a spread in ln(1 + F) is ln(10) ≈ 2.303
times the same spread in log10 F.  Pass ``line_space="log1p"`` to compute the
line columns in the paper's space directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from ..model.targets import TARGETS

__all__ = ["member_moments", "uncertainty_decomposition"]

Average = Literal["rms", "mean", "median"]
LineSpace = Literal["log10", "log1p"]

#: Row names of the decomposition table, in order.
ROWS = ("sigma_ale", "sigma_epi", "sigma_tot")


def _check_fitted(model: Any) -> None:
    from ..model.estimator import NotFittedError

    if not hasattr(model, "networks_"):
        raise NotFittedError("the model is not fitted yet: call fit(table) before decomposing its uncertainty")


def _check_ensemble(model: Any) -> int:
    _check_fitted(model)
    k = len(model.networks_)
    if k < 2:
        raise ValueError(
            f"the uncertainty decomposition needs a deep ensemble (n_ensemble >= 2), but the model has "
            f"{k} network; refit with GalaxyPosterior(..., n_ensemble=5)"
        )
    return k


def _to_space(values: np.ndarray, name: str, line_space: LineSpace) -> np.ndarray:
    """Model-space values of target ``name`` → the space of the decomposition."""
    target = TARGETS[name]
    if line_space == "log1p" and target.in_log10:
        with np.errstate(invalid="ignore"):  # fluxes below -1 have no log1p
            return np.log1p(target.from_model(values))
    return values


def member_moments(
    model: Any,
    table: Table,
    images: Any = None,
    n_samples: int = 1000,
    random_state: int | np.random.SeedSequence | None = None,
    *,
    batch_size: int = 256,
    line_space: LineSpace = "log10",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Posterior mean and variance of every target under each ensemble member.

    Each member network samples ``n_samples`` joint draws per galaxy on its own
    (not the mixture), in modelled space; galaxies are processed in batches so
    memory does not grow with the table.

    Parameters
    ----------
    model : `~astro_galpost.GalaxyPosterior`
        A fitted model (any number of members).
    table : `~astropy.table.Table`
        Galaxies with the model's input columns (labels are not needed).
    images : array-like, optional
        Cutouts for image encoders, one per row.
    n_samples : int, optional
        Samples per galaxy *per member* (at least 2).
    random_state : int or None, optional
        Seed; default the model's ``random_state``.
    batch_size : int, optional
        Galaxies per batch.
    line_space : {"log10", "log1p"}, optional
        Space of the emission-line fluxes: log10 (as modelled) or ln(1 + F),
        the seed paper's Table 2 space.

    Returns
    -------
    means, variances : `~numpy.ndarray`
        ``(K, N, T)`` member posterior means and (unbiased, ``ddof=1``) sample
        variances, targets in the order of ``model.targets_``; NaN for rows
        with unusable inputs.
    usable : `~numpy.ndarray`
        bool ``(N,)``.
    """
    if int(n_samples) < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a variance, got {n_samples}")
    if line_space not in ("log10", "log1p"):
        raise ValueError(f"line_space must be 'log10' or 'log1p', got {line_space!r}")
    _check_fitted(model)
    names = list(model.targets_)
    means, variances, usable = [], [], []
    for _, draws, ok in model.sample_members(table, images, int(n_samples), random_state,
                                             batch_size=batch_size, space="model"):
        for j, name in enumerate(names):
            draws[..., j] = _to_space(draws[..., j], name, line_space)
        # (members, rows, samples, targets); rows with unusable inputs are NaN
        means.append(draws.mean(axis=2))
        variances.append(draws.var(axis=2, ddof=1))
        usable.append(ok)
    return np.concatenate(means, axis=1), np.concatenate(variances, axis=1), np.concatenate(usable)


def _decompose(
    means: np.ndarray, variances: np.ndarray, n_samples: int | None, mc_correction: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-galaxy aleatoric and (unclipped) epistemic variances, ``(N, T)`` each."""
    k = means.shape[0]
    ale2 = variances.mean(axis=0)
    epi2 = means.var(axis=0, ddof=0)
    if mc_correction and n_samples:
        # each member mean carries Monte Carlo noise of variance v_k / S, which inflates
        # the spread of the means by (K - 1)/K * mean_k(v_k) / S on average
        epi2 = epi2 - (k - 1) / k * ale2 / n_samples
    return ale2, epi2


def _aggregate(ale2: np.ndarray, epi2: np.ndarray, valid: np.ndarray, average: Average) -> tuple[float, float, float]:
    a, e = ale2[valid], epi2[valid]
    if a.size == 0:
        return (float("nan"),) * 3
    if average == "rms":
        sa, se = np.sqrt(np.mean(a)), np.sqrt(max(np.mean(e), 0.0))
        return float(sa), float(se), float(np.hypot(sa, se))
    reduce = np.mean if average == "mean" else np.median
    e = np.clip(e, 0.0, None)
    return float(reduce(np.sqrt(a))), float(reduce(np.sqrt(e))), float(reduce(np.sqrt(a + e)))


def _unit(name: str, line_space: LineSpace) -> u.UnitBase:
    target = TARGETS[name]
    if target.in_log10:
        return u.dex if line_space == "log10" else u.dimensionless_unscaled
    if target.is_logarithmic:
        return u.dex
    return u.dimensionless_unscaled


def _chosen_targets(model: Any, targets: Sequence[str] | None) -> list[str]:
    """The targets to report: all of the model's by default; others raise ValueError."""
    fitted = list(model.targets_)
    names = fitted if targets is None else list(targets)
    unknown = [t for t in names if t not in fitted]
    if unknown:
        raise ValueError(f"targets {unknown} are not modelled by this model (it has {fitted})")
    return names


def _averaged_rows(
    model: Any, table: Table, name: str, usable: np.ndarray, ale2: np.ndarray, epi2: np.ndarray, labelled_only: bool
) -> np.ndarray:
    """Galaxies averaged for target ``name``: usable and finite, with a label if ``labelled_only``."""
    valid = usable & np.isfinite(ale2) & np.isfinite(epi2)
    if labelled_only:
        _, has_label = TARGETS[name].read(table, model.targets_[name])
        valid &= has_label
    return valid


def _add_per_galaxy(
    galaxies: QTable, name: str, ale2: np.ndarray, epi2: np.ndarray, valid: np.ndarray, unit: u.UnitBase
) -> None:
    """Columns ``<name>_sigma_ale``, ``_sigma_epi`` and ``_sigma_tot`` (NaN where not averaged)."""
    a = np.where(valid, np.sqrt(ale2), np.nan)
    e = np.where(valid, np.sqrt(np.clip(epi2, 0.0, None)), np.nan)
    galaxies[f"{name}_sigma_ale"] = u.Quantity(a, unit)
    galaxies[f"{name}_sigma_epi"] = u.Quantity(e, unit)
    galaxies[f"{name}_sigma_tot"] = u.Quantity(np.hypot(a, e), unit)


def _space_name(name: str, line_space: LineSpace) -> str:
    """How target ``name`` is expressed in the decomposition, for the table's ``meta``."""
    return line_space if TARGETS[name].in_log10 else "as catalog"


def uncertainty_decomposition(
    model: Any,
    table: Table,
    images: Any = None,
    n_samples: int = 1000,
    random_state: int | None = None,
    *,
    targets: Sequence[str] | None = None,
    average: Average = "rms",
    mc_correction: bool = True,
    labelled_only: bool = False,
    line_space: LineSpace = "log10",
    per_galaxy: bool = False,
    batch_size: int = 256,
) -> QTable | tuple[QTable, QTable]:
    """Aleatoric and epistemic spread of a deep ensemble's posteriors (seed paper Table 2).

    For every galaxy and target, each of the ``K`` ensemble members is sampled
    separately; with member posterior means :math:`m_k` and variances
    :math:`v_k` (in modelled space),

    * :math:`\\sigma_\\mathrm{ale} = \\sqrt{\\langle v_k \\rangle_k}` (mean
      member variance: the noise each network sees in the data),
    * :math:`\\sigma_\\mathrm{epi} = \\sqrt{\\mathrm{Var}_k\\, m_k}` (population
      variance, ``ddof=0``, of the member means: their disagreement),
    * :math:`\\sigma_\\mathrm{tot} = \\sqrt{\\sigma_\\mathrm{ale}^2 + \\sigma_\\mathrm{epi}^2}`,
      exactly the spread of the members' equal-weight mixture (law of total
      variance). A recalibrated ensemble's
      `~astro_galpost.GalaxyPosterior.sample` narrows each member about its
      mean so that the mixture's variance is about
      :math:`\\sigma_\\mathrm{ale}^2 - \\sigma_\\mathrm{epi}^2`, the error
      of the members' mean when each member is calibrated
      (`~astro_galpost.model.recalibration.narrow_mixture`).

    Parameters
    ----------
    model : `~astro_galpost.GalaxyPosterior`
        A fitted deep ensemble (``n_ensemble >= 2``).
    table : `~astropy.table.Table`
        Galaxies to evaluate, e.g. a validation set (labels are only read with
        ``labelled_only``).
    images : array-like, optional
        Cutouts for image encoders, one per row.
    n_samples : int, optional
        Samples per galaxy for *each* member.
    random_state : int or None, optional
        Seed; default the model's ``random_state``.
    targets : sequence of str, optional
        Targets to report (default: all of the model's, in its order).
    average : {"rms", "mean", "median"}, optional
        How per-galaxy spreads are summarised over galaxies. ``"rms"`` (default)
        is the square root of the mean variance, so that the summary rows still
        add in quadrature (σ_tot² = σ_ale² + σ_epi²); ``"mean"``/``"median"`` are
        the mean/median of the per-galaxy σ (these do not add in quadrature).
        The seed paper does not say which it used.
    mc_correction : bool, optional
        Subtract the expected Monte Carlo noise of the member means,
        :math:`(K-1)/K \\, \\langle v_k\\rangle / S`, from the epistemic
        variance (unbiased; per-galaxy values are clipped at zero). Without
        it σ_epi is biased high by about σ_ale/√S, which is not negligible
        next to the small epistemic spread of a well-trained ensemble.
    labelled_only : bool, optional
        Average each target only over galaxies with a usable label for it in
        ``table`` (read from the model's target columns), e.g. metallicity only
        where it was measured. Default: every galaxy with usable inputs.
    line_space : {"log10", "log1p"}, optional
        Emission lines in log10 flux (default, as modelled) or in ln(1 + flux)
        with flux in 1e-17 erg/s/cm², the space of the paper's Table 2 (for
        bright lines, σ_log1p ≈ ln(10) σ_log10 ≈ 2.303 σ_log10).
    per_galaxy : bool, optional
        Also return the per-galaxy spreads.
    batch_size : int, optional
        Galaxies sampled at once (memory grows with ``batch_size * n_samples``).

    Returns
    -------
    summary : `~astropy.table.QTable`
        The layout of the paper's Table 2: a ``quantity`` column with rows
        ``sigma_ale``, ``sigma_epi`` and ``sigma_tot``, and one column per
        target (unit ``dex`` for logarithmic targets). ``meta`` records the
        averaging, number of members and samples, the space of each target and
        the number of galaxies averaged.
    per_galaxy : `~astropy.table.QTable`
        Only with ``per_galaxy=True``: one row per galaxy with columns
        ``<target>_sigma_ale``, ``<target>_sigma_epi``, ``<target>_sigma_tot``
        (NaN for unusable rows) and ``usable``.

    Raises
    ------
    ValueError
        If the model has fewer than two ensemble members.
    astro_galpost.model.estimator.NotFittedError
        If the model is not fitted.

    Examples
    --------
    >>> from astro_galpost import GalaxyPosterior
    >>> from astro_galpost.datasets import make_mock_catalog
    >>> from astro_galpost.evaluation import uncertainty_decomposition
    >>> cat = make_mock_catalog(400, random_state=0)
    >>> gp = GalaxyPosterior(targets=["redshift"], n_ensemble=2, max_epochs=2, representation=16,
    ...                      hidden=16, progress=False, random_state=0).fit(cat[:300])
    >>> tab = uncertainty_decomposition(gp, cat[300:], n_samples=50)
    >>> tab["quantity"].tolist(), tab.colnames
    (['sigma_ale', 'sigma_epi', 'sigma_tot'], ['quantity', 'redshift'])
    """
    if average not in ("rms", "mean", "median"):
        raise ValueError(f"average must be 'rms', 'mean' or 'median', got {average!r}")
    n_members = _check_ensemble(model)
    names = _chosen_targets(model, targets)
    means, variances, usable = member_moments(
        model, table, images, n_samples, random_state, batch_size=batch_size, line_space=line_space
    )
    table = table if isinstance(table, Table) else Table(table)  # sample_members has checked it converts
    ale2, epi2 = _decompose(means, variances, int(n_samples), mc_correction)
    fitted = list(model.targets_)
    valid = {name: _averaged_rows(model, table, name, usable, ale2[:, fitted.index(name)],
                                  epi2[:, fitted.index(name)], labelled_only) for name in names}
    summary = QTable()
    summary["quantity"] = list(ROWS)
    summary["quantity"].info.description = "aleatoric, epistemic and total posterior spread"
    galaxies = QTable()
    for name in names:
        j, unit = fitted.index(name), _unit(name, line_space)
        summary[name] = u.Quantity(_aggregate(ale2[:, j], epi2[:, j], valid[name], average), unit)
        summary[name].info.description = (
            f"{TARGETS[name].description} ({average} over {int(valid[name].sum())} galaxies)")
        if per_galaxy:
            _add_per_galaxy(galaxies, name, ale2[:, j], epi2[:, j], valid[name], unit)
    summary.meta.update(
        average=average,
        n_ensemble=n_members,
        n_samples_per_member=int(n_samples),
        mc_correction=bool(mc_correction),
        labelled_only=bool(labelled_only),
        space={name: _space_name(name, line_space) for name in names},
        n_galaxies={name: int(valid[name].sum()) for name in names},
    )
    if per_galaxy:
        galaxies["usable"] = usable
        galaxies.meta.update(summary.meta)
        return summary, galaxies
    return summary
