"""
Photometric redshifts of real SDSS galaxies
===========================================

This example trains redshift posteriors on **real** galaxies: the 10,000 SDSS galaxies
that ship as test data inside the ``kcorrect`` package (a dependency of
``astro_galpost``), read with :func:`~astro_galpost.datasets.load_kcorrect_sample`. Each
has ugriz model magnitudes (as in CAS, not corrected for Galactic extinction: the photometry
encoder dereddens them with the ``extinction_<band>`` columns) with errors and a
spectroscopic redshift, which serves as the truth.

The model is deliberately small and trained for only 20 epochs so that the example runs
in seconds; train for longer (the default ``max_epochs=300`` with early stopping) for
real work.
"""

import matplotlib.pyplot as plt
import numpy as np

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import load_kcorrect_sample
from astro_galpost.evaluation import coverage, outlier_fraction, sigma_nmad
from astro_galpost.visualization import plot_predicted_vs_true

# %%
# The data
# --------
# ``load_kcorrect_sample`` returns an astropy table with SDSS CAS-style column names:
# ``modelMag_u`` … ``modelMag_z`` (with units of mag), ``modelMagErr_u`` … and the
# spectroscopic redshift ``z``.

table = load_kcorrect_sample()
print(len(table), "galaxies;", "columns:", ", ".join(table.colnames))

rng = np.random.default_rng(0)
order = rng.permutation(len(table))
train, test = table[order[:4000]], table[order[4000:5000]]

# %%
# Training
# --------
# One target, ``redshift``, read from the column ``z``. The magnitude error columns
# (``modelMagErr_<band>``) are found automatically. A single target has nothing for a
# coupling flow to couple, so the redshift residuals get a neural spline flow.

bands = [f"modelMag_{b}" for b in "ugriz"]
gp = GalaxyPosterior(
    targets={"redshift": "z"},
    photometry=bands,
    max_epochs=20,
    progress=False,
    random_state=0,
)
gp.fit(train)
print(gp)
print("flow per group:", gp.flows_)

# %%
# Posterior samples
# -----------------
# ``sample`` returns, for each target, an `astropy.uncertainty.Distribution` with one
# row per galaxy. Here are the posteriors of six test galaxies with their
# spectroscopic redshifts.

post = gp.sample(test, n_samples=500)
z_post = post["redshift"]
z_true = np.asarray(test["z"])
print(z_post.shape, z_post.n_samples)

fig, axes = plt.subplots(2, 3, figsize=(9, 5), sharex=True, layout="constrained")
for ax, i in zip(axes.flat, [0, 1, 2, 3, 4, 5]):
    samples = z_post.distribution[i]
    ax.hist(samples, bins=40, range=(0, 0.4), density=True, color="C0", alpha=0.7)
    ax.axvline(z_true[i], color="C3", ls="--", label="spectroscopic z")
    lo, mid, hi = np.percentile(samples, [16, 50, 84])
    ax.set_title(f"galaxy {i}: z = {mid:.3f} (+{hi - mid:.3f} / -{mid - lo:.3f})", fontsize=8)
    ax.set_yticks([])
axes[0, 0].legend(fontsize=7)
for ax in axes[1]:
    ax.set_xlabel("redshift")
fig.suptitle("Redshift posteriors of real SDSS galaxies")

# %%
# Accuracy and calibration
# ------------------------
# The usual photometric-redshift statistics of the posterior medians: the normalised
# median absolute deviation of :math:`(z_\mathrm{phot} - z)/(1 + z)` and the fraction of
# outliers with :math:`|\Delta z|/(1 + z) > 0.05`. For calibration, the fraction of
# galaxies whose true redshift falls inside the central 68% and 95% credible intervals
# should be close to 0.68 and 0.95.

print(f"sigma_NMAD = {sigma_nmad(z_post, z_true, normalize_redshift=True):.4f}")
print(f"outlier fraction = {outlier_fraction(z_post, z_true, normalize_redshift=True):.3f}")
print("coverage of the 68% and 95% intervals:", np.round(coverage(z_post, z_true, levels=[0.68, 0.95]), 3))

# %%
# Predicted against true
# ----------------------
# ``predict`` summarises the posteriors as new columns (``redshift_p16``,
# ``redshift_p50``, ``redshift_p84``) of a copy of the input table, which still holds the
# true ``z``; :func:`~astro_galpost.visualization.plot_predicted_vs_true` reads both.

predictions = gp.predict(test, n_samples=500)
print(predictions["z", "redshift_p16", "redshift_p50", "redshift_p84"][:5])
fig = plot_predicted_vs_true(predictions, targets=["redshift"])
plt.show()
