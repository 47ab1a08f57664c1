"""Plots: each is written to a non-empty file and has the expected panels."""

import numpy as np
import pytest
from astropy.table import Table

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt

from astro_galpost.model.targets import TARGETS
from astro_galpost.visualization import (
    plot_bpt,
    plot_corner,
    plot_coverage,
    plot_pit_histogram,
    plot_predicted_vs_true,
)

LINES = ("halpha", "hbeta", "nii_6584", "oiii_5007")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def posterior():
    """Joint posterior samples of seven targets for 60 galaxies, and their truths."""
    rng = np.random.default_rng(0)
    n, s = 60, 300
    centre = {"log_mstar": rng.normal(10.5, 0.4, n), "log_sfr": rng.normal(0.0, 0.5, n),
              "redshift": rng.uniform(0.05, 0.2, n), "halpha": rng.normal(2.3, 0.3, n),
              "hbeta": rng.normal(1.8, 0.3, n), "nii_6584": rng.normal(1.9, 0.3, n),
              "oiii_5007": rng.normal(1.6, 0.4, n)}
    width = {"log_mstar": 0.15, "log_sfr": 0.3, "redshift": 0.02}
    samples, truth = {}, Table()
    for name, c in centre.items():
        w = width.get(name, 0.1)
        draws = c[:, None] + rng.normal(0, w, (n, s))
        true = c + rng.normal(0, w, n)
        if TARGETS[name].space == "log10":
            draws, true = 10**draws, 10**true
        samples[name] = TARGETS[name].distribution(draws)
        truth[TARGETS[name].column] = true
    return samples, truth


def _saved(fig, path):
    fig.savefig(path)
    assert path.stat().st_size > 1000
    return path


def test_corner_three_targets_with_truth_table(posterior, tmp_path):
    samples, truth = posterior
    names = ["log_mstar", "log_sfr", "redshift"]
    fig = plot_corner(samples, 4, names, truths=truth)
    _saved(fig, tmp_path / "corner.png")
    assert len(fig.axes) == 9
    axes = np.array(fig.axes).reshape(3, 3)
    # truth: a red dashed vertical line on each diagonal panel, at the true value
    true_mstar = float(truth["lgm_tot_p50"][4])
    dashed = [ln for ln in axes[0, 0].get_lines() if ln.get_linestyle() == "--"]
    assert dashed and np.allclose(dashed[0].get_xdata(), true_mstar)
    assert axes[0, 2].get_visible() is False or not axes[0, 2].has_data()
    # negative indices count from the end, for the samples and the truths alike
    last = plot_corner(samples, -1, ["redshift"], truths=truth)
    dashed = [ln for ln in last.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert len(last.axes) == 1 and np.allclose(dashed[0].get_xdata(), truth["z"][-1])


def test_corner_lines_in_log10_with_truth_dict(posterior, tmp_path):
    samples, truth = posterior
    fig = plot_corner(samples, 0, list(LINES), truths={"halpha": truth["h_alpha_flux"]})
    _saved(fig, tmp_path / "corner_lines.pdf")
    assert len(fig.axes) == 16
    axes = np.array(fig.axes).reshape(4, 4)
    dashed = [ln for ln in axes[0, 0].get_lines() if ln.get_linestyle() == "--"]
    assert np.allclose(dashed[0].get_xdata(), TARGETS["halpha"].to_model(truth["h_alpha_flux"][0]))
    assert not [ln for ln in axes[1, 1].get_lines() if ln.get_linestyle() == "--"]  # no Hβ truth given
    low, high = axes[0, 0].get_xlim()
    assert 0 < low < high < 5  # log10 flux, not flux


def test_pit_histogram_panels(tmp_path):
    rng = np.random.default_rng(1)
    fig = plot_pit_histogram({"log_mstar": rng.uniform(size=500), "redshift": rng.uniform(size=400),
                              "halpha": np.r_[rng.uniform(size=300), np.nan], "x": rng.uniform(size=50)},
                             bins=10, ncols=3)
    _saved(fig, tmp_path / "pit.png")
    assert len(fig.axes) == 6 and sum(ax.get_visible() for ax in fig.axes) == 4
    single = plot_pit_histogram(rng.uniform(size=200))
    _saved(single, tmp_path / "pit1.png")
    assert len(single.axes) == 1
    # the histogram is a density: its bars integrate to one
    bars = single.axes[0].containers[0]
    assert len(bars) == 20
    assert sum(b.get_height() * b.get_width() for b in bars) == pytest.approx(1.0)


def test_coverage_plot(tmp_path):
    levels = np.linspace(0.05, 0.95, 19)
    fig = plot_coverage(levels, {"log_mstar": levels, "redshift": levels**1.2}, n=500)
    _saved(fig, tmp_path / "coverage.png")
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 3  # diagonal + two targets
    fig2 = plot_coverage(levels, levels)
    assert len(fig2.axes) == 1
    with pytest.raises(ValueError, match="shape"):
        plot_coverage(levels, {"z": levels[:5]})


def test_bpt_from_posteriors_and_tables(posterior, tmp_path):
    samples, truth = posterior
    fig = plot_bpt(samples, contours=[0, 1], truths=truth)
    _saved(fig, tmp_path / "bpt.png")
    assert len(fig.axes) == 2  # diagram + P(AGN) colour bar
    ax = fig.axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "Kauffmann et al. 2003" in labels and "Kewley et al. 2001" in labels
    # the posterior-median points sit at the median log line ratios
    x_med = np.median(np.log10(samples["nii_6584"].distribution.value / samples["halpha"].distribution.value), 1)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], x_med, atol=1e-9)
    # plain fluxes from a table: points only, no colour bar; into a given axes
    fig2, ax2 = plt.subplots()
    out = plot_bpt(truth, ax=ax2, max_points=20)
    assert out is fig2 and len(fig2.axes) == 1 and len(ax2.collections[0].get_offsets()) == 20
    _saved(fig2, tmp_path / "bpt_truth.png")
    with pytest.raises(ValueError, match="contours"):
        plot_bpt(truth, contours=[0])
    with pytest.raises(KeyError, match="oiii_5007"):
        plot_bpt({k: samples[k] for k in LINES[:3]})


def test_predicted_vs_true_still_works(posterior, tmp_path):
    samples, truth = posterior
    pred = Table(truth, copy=True)
    for name in ("log_mstar", "redshift", "halpha"):
        v = np.percentile(samples[name].distribution.value, [16, 50, 84], axis=1)
        for p, row in zip((16, 50, 84), v):
            pred[f"{name}_p{p}"] = row
    fig = plot_predicted_vs_true(pred, ncols=2)
    _saved(fig, tmp_path / "pvt.png")
    assert sum(ax.get_visible() for ax in fig.axes) == 3


@pytest.mark.parametrize("name, words, expected", [
    ("log_mstar", True, "stellar mass, log M*/M☉"),
    ("log_sfr", True, "star formation rate, log SFR/(M☉ yr⁻¹)"),
    ("log_sfr", False, "log SFR/(M☉ yr⁻¹)"),
    ("redshift", True, "spectroscopic redshift"),
    ("metallicity", False, "12 + log(O/H)"),
    ("oiii_5007", True, "[O III] 5007 flux in the 3-arcsec SDSS fibre, log flux/(10⁻¹⁷ erg s⁻¹ cm⁻²)"),
    ("not_a_target", True, "not_a_target"),
])
def test_axis_labels_in_words_with_units(name, words, expected):
    from astro_galpost.visualization import axis_label

    assert axis_label(name, words=words) == expected


def test_predicted_vs_true_labels_legend_and_no_clipped_points(posterior):
    samples, truth = posterior
    pred = Table(truth, copy=True)
    for name in ("log_mstar", "log_sfr"):
        v = np.percentile(samples[name].distribution.value, [16, 50, 84], axis=1)
        for p, row in zip((16, 50, 84), v):
            pred[f"{name}_p{p}"] = row
    for p, value in ((16, 3.8), (50, 4.0), (84, 4.2)):  # an outlier far above the rest (truths about 0 ± 0.5)
        pred[f"log_sfr_p{p}"][0] = value
    fig = plot_predicted_vs_true(pred, ncols=2)
    mass, sfr = fig.axes[:2]
    assert mass.get_xlabel() == "true log M*/M☉" and mass.get_ylabel() == "predicted log M*/M☉"
    assert sfr.get_title() == "star formation rate"
    legend = [t.get_text() for t in mass.get_legend().get_texts()]
    assert "16–84% interval" in legend and "posterior median" in legend
    assert sfr.get_ylim()[1] > 4.0 and sfr.get_xlim()[1] > 4.0  # the outlier is inside, the panel square


def test_pca_embedding_known_axes():
    """Two orthogonal directions of known spread: PCA returns the coordinates along them, in order."""
    from astro_galpost.visualization import embed_latents

    rng = np.random.default_rng(4)
    basis, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    basis *= np.sign(basis[np.abs(basis).argmax(axis=0), [0, 1]])  # largest loading positive, as embed_latents
    a, b = rng.normal(size=(2, 300))
    a -= a.mean()
    b -= b.mean()
    b -= a * (a @ b) / (a @ a)  # uncorrelated with a
    coords = np.column_stack([5.0 * a, 1.0 * b])
    latents = coords @ basis.T + 3.0
    np.testing.assert_allclose(embed_latents(latents, method="pca", standardize=False), coords, atol=1e-9)
    with pytest.raises(ValueError, match="n_components must be between 1 and 6"):
        embed_latents(latents, method="pca", n_components=7)


def _masked_pits():
    """200 uniform PIT values, then 50 masked entries whose raw value is 0."""
    values = np.random.default_rng(0).uniform(size=200)
    mask = np.r_[np.zeros(200, bool), np.ones(50, bool)]
    return values, np.r_[values, np.zeros(50)], mask


@pytest.mark.parametrize("kind", ["MaskedColumn", "Masked", "numpy.ma"])
def test_pit_histogram_leaves_masked_values_out(kind):
    from astropy.table import MaskedColumn
    from astropy.utils.masked import Masked
    from scipy import stats

    values, raw, mask = _masked_pits()
    masked = {"MaskedColumn": MaskedColumn, "Masked": Masked, "numpy.ma": np.ma.MaskedArray}[kind](raw, mask=mask)
    for fig in (plot_pit_histogram(masked), plot_pit_histogram({"log_mstar": masked})):
        ax = fig.axes[0]
        expected = f"KS = {stats.kstest(values, 'uniform').statistic:.3f}\nN = 200"
        assert [t.get_text() for t in ax.texts] == [expected]  # KS = 0.080, not 0.207 with N = 250
        heights = [b.get_height() for b in ax.containers[0]]
        assert heights[0] == pytest.approx(np.mean(values < 0.05) * 20)  # no pile of masked zeros in bin 0


def test_coverage_plot_does_not_draw_masked_levels():
    levels = np.linspace(0.05, 0.95, 19)
    covered = np.ma.MaskedArray(np.where(levels > 0.8, 0.0, levels), mask=levels > 0.8)
    for cov in (covered, {"log_mstar": covered}):
        curve = plot_coverage(levels, cov, n=100).axes[0].get_lines()[-1]
        y = np.asarray(curve.get_ydata(), dtype=float)
        assert np.all(np.isnan(y[levels > 0.8])) and np.array_equal(y[levels <= 0.8], levels[levels <= 0.8])


def test_predicted_vs_true_r2_is_na_when_undefined():
    import warnings

    c = np.array([10.0, 10.5, 11.0])
    pred = Table({"log_mstar_p16": c - 0.1, "log_mstar_p50": c + 0.1, "log_mstar_p84": c + 0.2, "lgm_tot_p50": c})
    flat = pred.copy()
    flat["lgm_tot_p50"] = 10.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0
        texts = [plot_predicted_vs_true(t).axes[0].texts[0].get_text() for t in (pred, pred[:1], flat)]
    # R² = 1 - 3 × 0.01 / 0.5 = 0.94 for three galaxies; undefined for one, or for equal truths
    assert texts == ["$R^2$ = 0.94\nN = 3", "$R^2$ = n/a\nN = 1", "$R^2$ = n/a\nN = 3"]
