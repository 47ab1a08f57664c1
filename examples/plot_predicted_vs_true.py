"""
Predicted against true values for every target (mock catalog)
=============================================================

The seed paper's Figure 2 for a quick model: posterior medians with their 16–84%
intervals against the true values, one panel per target, with the coefficient of
determination :math:`R^2` of each. The galaxies come from the built-in **mock** catalog
(simulated, not real data; :func:`~astro_galpost.datasets.make_mock_catalog`), whose
labels are exact, so the scatter is the model's alone.

It also shows how ``predict`` handles galaxies whose label is missing: the mock, like
the MPA-JHU catalogs, has no metallicity for galaxies that are not confidently
star-forming (``oh_p50 = -9999``). Such galaxies still train the other targets, and
still get a metallicity posterior, plus the probability that a metallicity would be
measurable at all.
"""

import matplotlib.pyplot as plt
import numpy as np

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import make_mock_catalog
from astro_galpost.evaluation import evaluate_samples
from astro_galpost.visualization import plot_predicted_vs_true

table = make_mock_catalog(3000, random_state=2)
train, test = table[:2500], table[2500:]
print("galaxies with a measured metallicity:", int(np.sum(np.asarray(train["oh_p50"]) > 0)), "of", len(train))

small = ("realnvp", {"transforms": 4, "hidden_features": (64, 64)})
gp = GalaxyPosterior(flows={"core": small, "lines": small}, max_epochs=20, progress=False, random_state=0)
gp.fit(train)

# %%
# Posterior summaries
# -------------------
# ``predict`` returns a copy of the table with ``<target>_p16``, ``_p50`` and ``_p84``
# columns in each target's unit, the probability that the metallicity is measurable
# (``metallicity_prob``) and an out-of-distribution score.

predictions = gp.predict(test, n_samples=300)
new = [c for c in predictions.colnames if c not in test.colnames]
print(new)
print(predictions["lgm_tot_p50", "log_mstar_p16", "log_mstar_p50", "log_mstar_p84"][:3])

# %%
# One panel per target
# --------------------
# Emission-line fluxes are shown in log10, the space they are modelled in. The true
# values are read from each target's catalog column in the same table (galaxies
# without a label are left out of their panel).

fig = plot_predicted_vs_true(predictions)
fig.suptitle("Mock catalog: posterior median (16–84%) against truth")

# %%
# The same numbers from the samples
# ---------------------------------
# :func:`~astro_galpost.evaluation.evaluate_samples` compares posterior samples with
# the labels of a table, one row per target. It reads the labels the way training
# does, so catalog sentinels such as -9999 count as missing, and it works in the
# modelled space (log10 for line fluxes). (The lower-level metric functions such as
# :func:`~astro_galpost.evaluation.r2_score` take plain arrays and know nothing of
# sentinels: give them :func:`~astro_galpost.evaluation.model_space_truth`.)

post = gp.sample(test, n_samples=300)
scores = evaluate_samples(post, test, columns=gp.targets_, levels=(0.68, 0.95))
for column in ("r2", "sigma_nmad", "coverage_68", "coverage_95"):
    scores[column].info.format = ".3f"
scores["target", "space", "n", "r2", "sigma_nmad", "coverage_68", "coverage_95"].pprint(max_width=120)

# %%
# Is the metallicity classifier right? Galaxies that have a measured metallicity
# should get a high ``metallicity_prob``.

measured = np.asarray(test["oh_p50"]) > 0
prob = np.asarray(predictions["metallicity_prob"].unmasked.value)
fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
bins = np.linspace(0, 1, 21)
ax.hist(prob[measured], bins=bins, alpha=0.6, label="metallicity measured")
ax.hist(prob[~measured], bins=bins, alpha=0.6, label="not measured")
ax.set_xlabel("predicted probability that the metallicity is measurable")
ax.set_ylabel("galaxies")
ax.legend()
print(f"accuracy at p > 0.5: {np.mean((prob > 0.5) == measured):.2f}")
plt.show()
