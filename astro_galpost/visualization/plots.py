"""Plots of posteriors against truth (matplotlib).

`plot_predicted_vs_true` (the seed paper's Figure 2), `plot_corner` (one
galaxy's joint posterior, Figure 5), `plot_pit_histogram` and `plot_coverage`
(calibration), and `plot_bpt` (the [N II] BPT diagram of posterior line
ratios). Every function returns a `~matplotlib.figure.Figure`; emission-line
fluxes are shown in log10, the space they are modelled in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from ..model.targets import TARGETS

__all__ = ["axis_label", "plot_bpt", "plot_corner", "plot_coverage", "plot_pit_histogram", "plot_predicted_vs_true"]

_BPT_LINES = ("halpha", "hbeta", "nii_6584", "oiii_5007")


def _unit_text(unit) -> str:
    """A unit in words for axis labels: ``M☉ yr⁻¹``, ``10⁻¹⁷ erg s⁻¹ cm⁻²``."""
    return unit.to_string("unicode").removeprefix("1×")


def axis_label(name: str, words: bool = True) -> str:
    """Axis label of a target in the space it is plotted (modelled) in, built from its description and unit.

    Parameters
    ----------
    name : str
        Registry name of the target (other names are returned unchanged).
    words : bool, optional
        Start with the quantity in words (the part of the target's
        ``description`` before a comma); False for the symbol and unit alone.

    Returns
    -------
    str

    Examples
    --------
    >>> from astro_galpost.visualization import axis_label
    >>> axis_label("log_sfr")
    'star formation rate, log SFR/(M☉ yr⁻¹)'
    >>> axis_label("halpha", words=False)
    'log flux/(10⁻¹⁷ erg s⁻¹ cm⁻²)'
    """
    if name not in TARGETS:
        return name
    target = TARGETS[name]
    quantity, _, expression = target.description.partition(", ")
    quantity = quantity or name
    if target.is_logarithmic:  # dex(unit): the description's symbol over the physical unit
        symbol = expression.replace("log10", "").split("/")[0].strip() or name
        symbol = re.sub(r"_(\w+)", r"$_\\mathrm{\1}$", symbol)  # M_BH: subscript in matplotlib's mathtext
        unit = _unit_text(target.unit.physical_unit)
        short = f"log {symbol}/({unit})" if " " in unit else f"log {symbol}/{unit}"
    elif target.in_log10:
        symbol = "flux" if "flux" in quantity.split() else "value"
        short = f"log {symbol}/({_unit_text(target.unit)})"
    elif expression:
        short = expression.replace("log10", "log")
    else:
        unit = _unit_text(target.unit)
        short = f"{name} [{unit}]" if unit else name
    if not words:
        return short
    return quantity if short == name else f"{quantity}, {short}"


def _values(col) -> np.ndarray:
    """Float values of a column, Quantity or array (masked or not), masked entries as NaN."""
    from ..utils.columns import column_data

    data, mask, _ = column_data(col)
    return np.where(mask, np.nan, data)


def _fit_text(predicted: np.ndarray, true: np.ndarray) -> str:
    """R² (`~astro_galpost.evaluation.r2_score`; "n/a" for fewer than two galaxies or constant truths) and N."""
    from ..evaluation import r2_score

    r2 = r2_score(predicted, true)
    score = f"{r2:.2f}" if np.isfinite(r2) else "n/a"
    return f"$R^2$ = {score}\nN = {true.size}"


def _square_limits(ax, values: np.ndarray) -> None:
    """Equal x and y limits holding every value (no point clipped), with the 1:1 line."""
    lo, hi = float(np.min(values)), float(np.max(values))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "r--", lw=1, zorder=3, label="1:1")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)


def plot_predicted_vs_true(
    predictions: Table,
    truth: Table | Mapping[str, str] | None = None,
    targets: Sequence[str] | None = None,
    *,
    ncols: int = 3,
    errorbars: bool = True,
    fig=None,
):
    """Predicted (posterior median with 16–84% bars) against true values, one panel per target.

    The layout of the seed paper's Figure 2, with the 1:1 line dashed in red
    and a legend in the first panel. Axis labels name the quantity and its unit
    (`axis_label`); the limits hold every point. Emission-line fluxes are
    shown in log10, as they are modelled. Each panel gives N and R²
    (`~astro_galpost.evaluation.r2_score`), "n/a" where it is undefined
    (one galaxy, or truths all equal).

    Parameters
    ----------
    predictions : `~astropy.table.Table`
        Output of `~astro_galpost.GalaxyPosterior.predict` (``<target>_p16``,
        ``_p50``, ``_p84`` columns), which also holds the truth columns when
        predicting on a labelled table.
    truth : Table or dict, optional
        Where the true values are: a table aligned with ``predictions``, or a
        mapping ``{target: column}`` into ``predictions``. Default: each
        target's registry column in ``predictions``.
    targets : sequence of str, optional
        Targets to plot; default every target with a ``_p50`` column.
    ncols : int, optional
        Panels per row.
    errorbars : bool, optional
        Draw the 16–84% interval.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw into.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    if targets is None:
        # catalog columns such as lgm_tot_p50 also end in _p50: keep registered targets only
        targets = [c[:-4] for c in predictions.colnames if c.endswith("_p50") and c[:-4] in TARGETS]
    if not targets:
        raise ValueError("no '<target>_p50' columns in the predictions")
    columns = dict(truth) if isinstance(truth, Mapping) else {}
    source = truth if isinstance(truth, Table) else predictions
    nrows = int(np.ceil(len(targets) / ncols))
    if fig is None:
        fig = plt.figure(figsize=(3.4 * min(ncols, len(targets)), 3.2 * nrows), layout="constrained")
    axes = fig.subplots(nrows, min(ncols, len(targets)), squeeze=False).ravel()
    for ax, name in zip(axes, targets):
        target = TARGETS[name]
        column = columns.get(name, target.column)
        if column not in source.colnames:
            raise KeyError(f"no truth column {column!r} for target {name!r}; pass truth={{{name!r}: column}}")
        true, _ = target.values_from(source[column], column)
        p16, p50, p84 = (_values(predictions[f"{name}_p{p}"]) for p in (16, 50, 84))
        true, p16, p50, p84 = (target.to_model(v) for v in (true, p16, p50, p84))
        ok = np.isfinite(true) & np.isfinite(p50)
        if errorbars:
            ax.errorbar(true[ok], p50[ok], yerr=[p50[ok] - p16[ok], p84[ok] - p50[ok]], fmt="none",
                        ecolor="0.75", elinewidth=0.5, zorder=1, label="16–84% interval")
        ax.scatter(true[ok], p50[ok], s=4, alpha=0.6, zorder=2, label="posterior median")
        if ok.any():
            _square_limits(ax, np.concatenate([true[ok], p50[ok]]))
            ax.text(0.04, 0.96, _fit_text(p50[ok], true[ok]), transform=ax.transAxes, va="top", fontsize=8)
        quantity = axis_label(name, words=False)
        ax.set_xlabel(f"true {quantity}", fontsize=8)
        ax.set_ylabel(f"predicted {quantity}", fontsize=8)
        ax.set_title(axis_label(name).partition(", ")[0], fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower right", handletextpad=0.3, borderaxespad=0.3)
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    return fig


# ----------------------------------------------------------------------------
# Joint posterior of one galaxy
# ----------------------------------------------------------------------------
def _truth_values(truths: Any, names: Sequence[str], index: int, columns: Mapping[str, str]) -> list[float] | None:
    """Truths of one galaxy in modelled space (NaN where unknown)."""
    from ..evaluation.report import model_space_truth

    if truths is None:
        return None
    if isinstance(truths, Table):
        return [float(model_space_truth(truths[[index]], n, columns.get(n))[0])
                if (columns.get(n) or TARGETS[n].column) in truths.colnames else np.nan for n in names]
    if isinstance(truths, Mapping):
        out = []
        for n in names:
            if n not in truths:
                out.append(np.nan)
                continue
            arr = np.atleast_1d(truths[n])  # keeps a Quantity's unit
            if arr.shape[0] > 1:
                arr = arr[[index]]
            out.append(float(model_space_truth(arr, n)[0]))
        return out
    values = [float(v) for v in truths]
    if len(values) != len(names):
        raise ValueError(f"{len(values)} truths given for {len(names)} targets")
    return values


def plot_corner(
    samples: Mapping[str, Any],
    index: int,
    targets: Sequence[str] | None = None,
    truths: Table | Mapping[str, Any] | Sequence[float] | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    bins: int = 30,
    fig=None,
    **corner_kwargs,
):
    """One galaxy's joint posterior as a corner plot, with its true values (paper Figure 5).

    Diagonal panels show the marginal posteriors with the 16–84% interval
    shaded black; off-diagonal panels the 2-D contours; true values are red
    dashed lines. Emission-line fluxes are shown in log10 (the paper's Figure
    5b uses ln(1 + flux)). Needs the ``corner`` package.

    Parameters
    ----------
    samples : `~astro_galpost.PosteriorSamples` or dict
        ``{target: samples}``, ``(N,)`` Distributions or ``(N, S)`` arrays in
        catalog units, from the same joint draws.
    index : int
        Row of the galaxy to show.
    targets : sequence of str, optional
        Targets (panels), e.g. ``["log_mstar", "log_sfr", "redshift"]`` (Figure
        5a) or the four lines (5b). Default: every target in ``samples``.
    truths : Table, dict or sequence, optional
        True values: the labelled table (row ``index`` is read, with
        ``columns`` or the registry columns), a mapping ``{target: value or
        (N,) values}`` in catalog units, or a sequence in modelled space, one
        per target. NaN (missing labels) draws no line.
    columns : dict, optional
        ``{target: column}`` of a ``truths`` table.
    bins : int, optional
        Histogram bins.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw into (it needs no axes, or D×D of them).
    **corner_kwargs
        Passed to `corner.corner`.

    Returns
    -------
    `~matplotlib.figure.Figure`
        With D × D axes for D targets (the upper triangle hidden).
    """
    import corner
    import matplotlib.pyplot as plt

    from ..evaluation.report import model_space_samples

    names = [n for n in samples if n in TARGETS] if targets is None else list(targets)
    if not names:
        raise ValueError("no targets to plot")
    data = np.column_stack([model_space_samples(samples[n], n)[index] for n in names])
    data = data[np.all(np.isfinite(data), axis=1)]
    if len(data) < 2:
        raise ValueError(f"galaxy {index} has fewer than two finite joint samples (unusable inputs?)")
    truth = _truth_values(truths, names, index, dict(columns or {}))
    if fig is None:
        fig = plt.figure(figsize=(2.2 * len(names) + 0.6, 2.2 * len(names) + 0.6))
    options = {"bins": bins, "labels": [axis_label(n, words=False) for n in names], "color": "k", "show_titles": True,
                   "title_fmt": ".2f", "title_kwargs": {"fontsize": 8}, "label_kwargs": {"fontsize": 9},
                   "plot_datapoints": False, "fill_contours": True, "levels": (0.393, 0.865)}
    options.update(corner_kwargs)
    fig = corner.corner(data, fig=fig, **options)
    d = len(names)
    axes = np.array(fig.axes).reshape(d, d)
    lo, hi = np.percentile(data, [16, 84], axis=0)
    for i in range(d):
        axes[i, i].axvspan(lo[i], hi[i], color="k", alpha=0.15, lw=0)
        if truth is None:
            continue
        if np.isfinite(truth[i]):
            axes[i, i].axvline(truth[i], color="red", ls="--", lw=1.2)
        for j in range(i):
            if np.isfinite(truth[j]):
                axes[i, j].axvline(truth[j], color="red", ls="--", lw=1)
            if np.isfinite(truth[i]):
                axes[i, j].axhline(truth[i], color="red", ls="--", lw=1)
            if np.isfinite(truth[i]) and np.isfinite(truth[j]):
                axes[i, j].plot(truth[j], truth[i], "s", color="red", ms=4)
    return fig


# ----------------------------------------------------------------------------
# Calibration plots
# ----------------------------------------------------------------------------
def _panels(values: Any) -> dict[str, np.ndarray]:
    """``{name: float values}`` of one array or a mapping of them, masked entries as NaN ("" names a lone array)."""
    if isinstance(values, Mapping):
        return {str(k): _values(v) for k, v in values.items()}
    return {"": _values(values)}


def plot_pit_histogram(
    pit_values: np.ndarray | Mapping[str, np.ndarray],
    bins: int = 20,
    *,
    ncols: int = 3,
    band: float = 0.95,
    fig=None,
):
    """Histogram(s) of PIT values with the uniform expectation and its sampling band.

    A calibrated posterior gives a flat histogram at density 1; a U shape means
    over-confident (too narrow) posteriors, a hump under-confident (too wide)
    ones, a slope a bias. The grey band is the central ``band`` interval of a
    bin's density for N uniform values (binomial), so about ``1 - band`` of the
    bins of a calibrated model fall outside it.

    Parameters
    ----------
    pit_values : array-like or dict
        PIT values (e.g. `~astro_galpost.evaluation.pit`), or ``{target: values}``
        for one panel per target; masked (`~astropy.table.MaskedColumn`,
        `~astropy.utils.masked.Masked`, `numpy.ma`) and NaN values are left out
        of the histogram, the KS distance and N.
    bins : int, optional
        Number of equal-width bins on [0, 1].
    ncols : int, optional
        Panels per row.
    band : float, optional
        Probability content of the expectation band.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw into.

    Returns
    -------
    `~matplotlib.figure.Figure`
        One axes per panel.
    """
    import matplotlib.pyplot as plt
    from scipy import stats

    panels = _panels(pit_values)
    n_panels = len(panels)
    if n_panels == 0:
        raise ValueError("no PIT values to plot")
    ncols = min(ncols, n_panels)
    nrows = int(np.ceil(n_panels / ncols))
    if fig is None:
        fig = plt.figure(figsize=(3.2 * ncols, 2.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    for ax, (name, values) in zip(axes, panels.items()):
        v = values[np.isfinite(values)].ravel()
        n = v.size
        if n:
            lo, hi = stats.binom.ppf([(1 - band) / 2, (1 + band) / 2], n, 1.0 / bins) * bins / n
            ax.axhspan(lo, hi, color="0.85", zorder=0, label=f"{100 * band:g}% for uniform")
            ax.hist(v, bins=edges, density=True, histtype="bar", color="C0", alpha=0.6, ec="white", lw=0.3, zorder=1)
            ks = stats.kstest(v, "uniform").statistic
            ax.text(0.03, 0.95, f"KS = {ks:.3f}\nN = {n}", transform=ax.transAxes, va="top", fontsize=8)
        ax.axhline(1.0, color="k", ls="--", lw=1, zorder=2)
        ax.set_xlim(0, 1)
        ax.set_xlabel("PIT", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        if name:
            ax.set_title(TARGETS[name].description if name in TARGETS else name, fontsize=8)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig


def plot_coverage(
    levels: Sequence[float],
    coverage: np.ndarray | Mapping[str, np.ndarray],
    *,
    n: int | None = None,
    ax=None,
):
    """Empirical coverage of central credible intervals against their nominal level.

    Points on the diagonal are calibrated; below it the intervals are too
    narrow (over-confident), above too wide.

    Parameters
    ----------
    levels : sequence of float
        Nominal credibility levels (e.g. ``np.linspace(0.05, 0.95, 19)``).
    coverage : array-like or dict
        Empirical coverage at ``levels`` (`~astro_galpost.evaluation.coverage`),
        or ``{target: coverage}`` for one curve per target; masked or NaN
        levels are not drawn.
    n : int, optional
        Number of galaxies: adds the ±2σ binomial band expected from a finite
        sample around the diagonal.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in.

    Returns
    -------
    `~matplotlib.figure.Figure`
        One axes.
    """
    import matplotlib.pyplot as plt

    levels = np.asarray(levels, dtype=float)
    if ax is None:
        _fig, ax = plt.subplots(figsize=(4, 4), layout="constrained")
    grid = np.linspace(0, 1, 101)
    ax.plot(grid, grid, "k--", lw=1, label="calibrated")
    if n:
        half = 2 * np.sqrt(grid * (1 - grid) / n)
        ax.fill_between(grid, grid - half, grid + half, color="0.85", lw=0, label=f"±2σ for N = {n}")
    for i, (name, cov) in enumerate(_panels(coverage).items()):
        if cov.shape != levels.shape:
            raise ValueError(f"coverage of {name or 'the curve'} has shape {cov.shape}, levels {levels.shape}")
        ax.plot(levels, cov, "o-", ms=3, lw=1.2, color=f"C{i % 10}", label=name or None)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal credibility level")
    ax.set_ylabel("empirical coverage")
    ax.legend(fontsize=7, loc="upper left")
    return ax.figure


# ----------------------------------------------------------------------------
# BPT diagram
# ----------------------------------------------------------------------------
def _line_inputs(data: Any, columns: Mapping[str, str]) -> dict[str, Any]:
    """The four BPT line fluxes from samples, a dict or a table."""
    if isinstance(data, Table):
        out = {}
        for n in _BPT_LINES:
            values, _ = TARGETS[n].read(data, columns.get(n))
            out[n] = values
        return out
    missing = [n for n in _BPT_LINES if n not in data]
    if missing:
        raise KeyError(f"the BPT diagram needs {list(_BPT_LINES)}; missing {missing}")
    return {n: data[n] for n in _BPT_LINES}


def plot_bpt(
    samples: Any,
    ax=None,
    *,
    columns: Mapping[str, str] | None = None,
    color_by_agn: bool = True,
    contours: Sequence[int] | None = None,
    truths: Table | Mapping[str, Any] | None = None,
    max_points: int | None = None,
):
    """The [N II] BPT diagram of posterior line ratios, with the Kauffmann and Kewley curves.

    Each galaxy is placed at the posterior median of log([N II]/Hα) and
    log([O III]/Hβ), computed sample by sample from the joint line posterior,
    and coloured by its probability of lying in the AGN region
    (`~astro_galpost.physics.bpt_class_probabilities`). The Kauffmann et al.
    (2003) star-forming limit is dashed, the Kewley et al. (2001) maximum
    starburst line solid.

    Parameters
    ----------
    samples : `~astro_galpost.PosteriorSamples`, dict or `~astropy.table.Table`
        ``{"halpha", "hbeta", "nii_6584", "oiii_5007"}`` posterior
        Distributions (or plain fluxes, then no probabilities), or a table of
        line fluxes (registry columns, or ``columns``), e.g. the truths.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw in.
    columns : dict, optional
        ``{line: column}`` when ``samples`` or ``truths`` is a table.
    color_by_agn : bool, optional
        Colour the points by P(AGN) with a colour bar (posterior samples only).
    contours : sequence of int, optional
        Rows whose 68% and 95% posterior contours are drawn.
    truths : Table or dict, optional
        True fluxes, drawn as small grey crosses at the true line ratios.
    max_points : int, optional
        Plot at most this many galaxies (the first ones).

    Returns
    -------
    `~matplotlib.figure.Figure`
        The diagram's axes, plus a colour-bar axes when coloured by P(AGN).
    """
    import matplotlib.pyplot as plt
    from astropy.uncertainty import Distribution

    from ..physics import bpt_class_probabilities, bpt_line_ratios, kauffmann03, kewley01

    columns = dict(columns or {})
    lines = _line_inputs(samples, columns)
    if max_points is not None:
        lines = {n: v[:max_points] for n, v in lines.items()}
    x, y = bpt_line_ratios(lines["halpha"], lines["hbeta"], lines["nii_6584"], lines["oiii_5007"])
    is_dist = isinstance(x, Distribution)
    xs = np.asarray(x.distribution.value if is_dist else x.value, dtype=float)
    ys = np.asarray(y.distribution.value if is_dist else y.value, dtype=float)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # galaxies without usable samples
        xm = np.nanmedian(xs, axis=-1) if is_dist else xs
        ym = np.nanmedian(ys, axis=-1) if is_dist else ys
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 4.4), layout="constrained")
    fig = ax.figure
    if truths is not None:
        tl = _line_inputs(truths, columns)
        if max_points is not None:
            tl = {n: v[:max_points] for n, v in tl.items()}
        tx, ty = bpt_line_ratios(tl["halpha"], tl["hbeta"], tl["nii_6584"], tl["oiii_5007"])
        ax.plot(np.asarray(tx.value), np.asarray(ty.value), "x", color="0.6", ms=3, lw=0.5, label="truth", zorder=1)
    if is_dist and color_by_agn:
        p_agn = np.asarray(bpt_class_probabilities(lines["halpha"], lines["hbeta"], lines["nii_6584"],
                                                   lines["oiii_5007"])["AGN"], dtype=float)
        sc = ax.scatter(xm, ym, c=p_agn, cmap="coolwarm", vmin=0, vmax=1, s=8, zorder=2, label="posterior median")
        fig.colorbar(sc, ax=ax, label="P(AGN)")
    else:
        ax.scatter(xm, ym, s=8, color="C0", zorder=2, label="posterior median" if is_dist else "galaxies")
    if contours is not None:
        if not is_dist:
            raise ValueError("contours need posterior samples (Distributions)")
        import corner

        for k, i in enumerate(contours):
            ok = np.isfinite(xs[i]) & np.isfinite(ys[i])
            if ok.sum() < 10:
                continue
            corner.hist2d(xs[i][ok], ys[i][ok], ax=ax, levels=(0.68, 0.95), plot_datapoints=False,
                          plot_density=False, color=f"C{(k + 2) % 10}", smooth=1.0, new_fig=False)
    gx = np.linspace(-2.2, 0.04, 200)
    ax.plot(gx, kauffmann03(gx), "k--", lw=1.2, label="Kauffmann et al. 2003")
    gx = np.linspace(-2.2, 0.46, 200)
    ax.plot(gx, kewley01(gx), "k-", lw=1.2, label="Kewley et al. 2001")
    ax.set_xlim(-2.0, 1.0)
    ax.set_ylim(-1.5, 1.5)
    ax.set_xlabel(r"$\log([\mathrm{N\,II}]\,6584/\mathrm{H}\alpha)$")
    ax.set_ylabel(r"$\log([\mathrm{O\,III}]\,5007/\mathrm{H}\beta)$")
    ax.legend(fontsize=7, loc="lower left")
    return fig
