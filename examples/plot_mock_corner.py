"""
The joint posterior of all nine targets (mock catalog)
======================================================

Trains the full model of the seed paper — stellar mass, star-formation rate, redshift,
black-hole mass and metallicity, plus the Hα, Hβ, [N II] 6584 and [O III] 5007 fluxes —
on the built-in **mock** catalog (simulated SDSS-like galaxies, see
:func:`~astro_galpost.datasets.make_mock_catalog`; not real data), then shows one
galaxy's joint posterior as corner plots, as in the paper's Figure 5.

The model is small and trained for only 20 epochs so that the example runs in
seconds; the posteriors of a converged model are narrower.
"""

import matplotlib.pyplot as plt
import numpy as np

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import make_mock_catalog
from astro_galpost.visualization import plot_corner

# %%
# A mock catalog with SDSS column names
# -------------------------------------
# The mock carries the SDSS CAS / MPA-JHU column names (``modelMag_r``,
# ``lgm_tot_p50``, ``sfr_tot_p50``, ``z``, ``oh_p50``, ``velDisp``, ``log_mbh``,
# ``h_alpha_flux`` …) and their "not measured" sentinels (-9999), so it is read exactly
# like a real export. Its ``meta`` says that it is a mock.

table = make_mock_catalog(3000, random_state=1)
print(table.meta["description"])
train, test = table[:2500], table[2500:]

# %%
# Training all nine targets
# -------------------------
# With no ``targets`` argument the model infers all nine, from the SDSS model
# magnitudes ``modelMag_u`` … ``modelMag_z`` and their errors. The targets fall into
# three groups: the four core properties share a RealNVP flow, metallicity has a
# one-dimensional flow conditioned on the core properties (the chain rule of the
# paper) plus a classifier of whether it is measurable, and the four lines share a
# second RealNVP flow. Fewer, smaller coupling layers than the paper's 12 keep the
# example fast.

small = ("realnvp", {"transforms": 4, "hidden_features": (64, 64)})
gp = GalaxyPosterior(
    flows={"core": small, "lines": small},
    max_epochs=20,
    progress=False,
    random_state=0,
)
gp.fit(train)
print("targets:", list(gp.targets_))
print("flow per group:", gp.flows_)

# %%
# Joint samples
# -------------
# Every target's `~astropy.uncertainty.Distribution` comes from the same joint draws:
# sample *j* of stellar mass goes with sample *j* of SFR and redshift, so correlations
# between them are preserved. Targets with logarithmic units are `~astropy.units.Dex`
# distributions; ``.physical`` converts them.

post = gp.sample(test, n_samples=2000)
i = int(np.flatnonzero(np.asarray(test["bptclass"]) == 1)[0])  # a star-forming galaxy
mass = post["log_mstar"][i]
print("log M* of galaxy", i, ":", mass.pdf_percentiles([16, 50, 84]))
print("M* of galaxy", i, "(median):", mass.pdf_median().physical)
print("P(metallicity measurable):", post.probabilities["metallicity"][i].round(2))

# %%
# Core properties (the paper's Figure 5a)
# ---------------------------------------
# :func:`~astro_galpost.visualization.plot_corner` draws the marginal posteriors with
# their 16–84% interval and the joint contours, with the true values of the mock in red.

fig = plot_corner(post, i, targets=["log_mstar", "log_sfr", "redshift"], truths=test)
fig.subplots_adjust(top=0.88)
fig.suptitle(f"Mock galaxy {i}: stellar mass, SFR and redshift")

# %%
# Emission lines (the paper's Figure 5b)
# --------------------------------------
# Fluxes are modelled, and drawn, in log10 of 1e-17 erg/s/cm² (asinh-softened for faint lines).

fig = plot_corner(post, i, targets=["halpha", "hbeta", "nii_6584", "oiii_5007"], truths=test)
fig.subplots_adjust(top=0.9)
fig.suptitle(f"Mock galaxy {i}: emission-line fluxes")

# %%
# How strongly are the lines correlated in the posterior? The Balmer lines move
# together, as the paper finds.

logs = np.log10([post[name].distribution[i].value for name in ("halpha", "hbeta", "nii_6584", "oiii_5007")])
print(np.round(np.corrcoef(logs), 2))
plt.show()
