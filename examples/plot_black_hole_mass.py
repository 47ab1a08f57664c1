"""
Black-hole masses from velocity dispersions
===========================================

The seed paper's black-hole masses are not measured: they come from each galaxy's
stellar velocity dispersion σ through an :math:`M_\\bullet`–σ relation
(McConnell & Ma 2013). This example shows the relations that
:mod:`astro_galpost.physics` ships, the aperture correction from an SDSS fibre to the
effective radius, and how the relation's intrinsic scatter turns one σ into a
distribution of masses. It trains nothing.
"""

import astropy.units as u
import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table

from astro_galpost.physics import (
    MBH_SIGMA_RELATIONS,
    SDSS_FIBER_RADIUS,
    add_mbh_column,
    aperture_correct_sigma,
    mbh_from_sigma,
)

# %%
# The relations
# -------------
# All have the form :math:`\log_{10}(M_\bullet/M_\odot) = \alpha + \beta
# \log_{10}(\sigma / 200\,\mathrm{km\,s^{-1}})` with a Gaussian intrinsic scatter in
# :math:`\log M_\bullet`. They differ most at low σ, where few dynamical masses exist.

for name, rel in MBH_SIGMA_RELATIONS.items():
    print(f"{name:20s} alpha = {rel.alpha:.2f}  beta = {rel.beta:.3f}  scatter = {rel.scatter:.2f} dex  ({rel.reference})")

sigma = np.geomspace(60, 400, 100) * u.km / u.s
fig, ax = plt.subplots(figsize=(6, 4.5), layout="constrained")
for name, rel in MBH_SIGMA_RELATIONS.items():
    log_m = mbh_from_sigma(sigma, relation=name).value
    line, = ax.plot(sigma, log_m, label=name)
    if name == "mcconnell_ma_2013":
        ax.fill_between(sigma.value, log_m - rel.scatter, log_m + rel.scatter, color=line.get_color(), alpha=0.15)
ax.set_xscale("log")
ax.set_xticks([60, 100, 200, 300, 400], labels=["60", "100", "200", "300", "400"])
ax.minorticks_off()
ax.set_xlabel(r"$\sigma_e$ [km/s]")
ax.set_ylabel(r"$\log_{10}(M_\bullet / M_\odot)$")
ax.legend(fontsize=8)
ax.set_title("M–σ relations (band: McConnell & Ma 2013 intrinsic scatter)")

# %%
# Units are required
# ------------------
# A bare number is ambiguous (km/s? m/s?), so ``mbh_from_sigma`` wants a Quantity and
# returns a `~astropy.units.Dex` quantity in ``dex(solMass)``; ``.physical`` gives
# solar masses.

log_mbh = mbh_from_sigma(200 * u.km / u.s)
print(log_mbh, "=", log_mbh.physical)
try:
    mbh_from_sigma(200.0)
except TypeError as err:
    print("TypeError:", err)

# %%
# Aperture correction
# -------------------
# The relations were calibrated with σ\ :sub:`e`, the dispersion within one effective
# radius, while SDSS measures σ in a fibre of 1.5 arcsec radius. With
# :math:`\sigma(<R) \propto R^{-0.066}` (Cappellari et al. 2006), a fibre smaller than
# the galaxy measures a slightly *higher* dispersion, and the correction lowers it.

r_eff = np.array([1.0, 2.0, 4.0, 8.0]) * u.arcsec
sigma_fibre = 200 * u.km / u.s
sigma_e = aperture_correct_sigma(sigma_fibre, SDSS_FIBER_RADIUS, r_eff)
for r, s in zip(r_eff, sigma_e):
    print(f"R_e = {r:4.1f}: sigma_e = {s:.1f}, log M_BH = {mbh_from_sigma(s):.2f}")

# %%
# The scatter as a distribution
# -----------------------------
# With ``scatter=True`` the result is an `astropy.uncertainty.Distribution` that draws
# the intrinsic scatter of the relation: the spread of black-hole masses at fixed σ.
# It is much larger than the uncertainty of a good σ measurement, and it is part of
# the label noise a model trained on M–σ masses cannot beat.

dist = mbh_from_sigma([120, 250] * u.km / u.s, scatter=True, n_samples=5000, random_state=0)
fig, ax = plt.subplots(figsize=(6, 3.5), layout="constrained")
for k, s in enumerate([120, 250]):
    samples = dist.distribution[k].value
    ax.hist(samples, bins=60, density=True, alpha=0.6, label=f"σ = {s} km/s")
    print(f"sigma = {s} km/s: log M_BH = {np.mean(samples):.2f} +- {np.std(samples):.2f}")
ax.set_xlabel(r"$\log_{10}(M_\bullet / M_\odot)$")
ax.set_yticks([])
ax.legend()

# %%
# A whole catalog
# ---------------
# ``add_mbh_column`` follows SDSS habits: it finds the dispersion column (``velDisp``,
# ``vdisp``, ``sigma`` or ``sigmaStars``), takes a column without unit to be in km/s,
# and masks the black-hole mass where σ is 0, negative (the -9999 sentinel) or NaN.
# With ``reff_column`` it applies the aperture correction row by row.

catalog = Table({
    "velDisp": [210.0, 0.0, -9999.0, 95.0],
    "petroR50_r": [2.5, 3.0, 1.8, 1.2],
})
add_mbh_column(catalog, reff_column="petroR50_r", scatter_column="log_mbh_scatter")
print(catalog)
plt.show()
