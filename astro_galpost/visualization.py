"""Plots of posteriors against truth (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from astropy.table import Table

from .targets import TARGETS

__all__ = ["plot_predicted_vs_true"]


def _values(col) -> np.ndarray:
    from ._columns import column_data

    data, mask, _ = column_data(col)
    return np.where(mask, np.nan, data)


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

    The layout of the seed paper's Figure 2, with the 1:1 line dashed in red.
    Emission-line fluxes are shown in log10, as they are modelled.

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
                        ecolor="0.75", elinewidth=0.5, zorder=1)
        ax.scatter(true[ok], p50[ok], s=4, alpha=0.6, zorder=2)
        if ok.any():
            lo, hi = np.nanpercentile(np.concatenate([true[ok], p50[ok]]), [0.5, 99.5])
            pad = 0.05 * (hi - lo or 1.0)
            ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "r--", lw=1, zorder=3)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_ylim(lo - pad, hi + pad)
            resid = p50[ok] - true[ok]
            r2 = 1 - np.sum(resid**2) / np.sum((true[ok] - true[ok].mean()) ** 2)
            ax.text(0.04, 0.96, f"$R^2$ = {r2:.2f}\nN = {ok.sum()}", transform=ax.transAxes, va="top", fontsize=8)
        label = f"log10 {name}" if target.space == "log10" else name
        unit = "" if target.unit.to_string() == "" else f" [{target.unit.to_string()}]"
        ax.set_xlabel(f"true {label}{unit}", fontsize=8)
        ax.set_ylabel(f"predicted {label}", fontsize=8)
        ax.set_title(target.description, fontsize=8)
    for ax in axes[len(targets):]:
        ax.set_visible(False)
    return fig
