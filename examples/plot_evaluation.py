"""
Evaluating posteriors: accuracy, calibration and the BPT diagram
=================================================================

Fit a small `~astro_galpost.GalaxyPosterior` on the project's MOCK catalog
(simulated SDSS-like galaxies, not real data), then look at its posteriors the
ways the seed paper does: predicted against true values (Figure 2), the joint
posterior of one galaxy (Figure 5), and two calibration plots, the histogram
of probability integral transform (PIT) values and the coverage of central
credible intervals. Finally, the emission-line posteriors are placed on the
[N II] BPT diagram, each galaxy coloured by its probability of being an AGN.

The model here is deliberately small, a single network trained for a few
epochs, so that the example runs in well under a minute on a laptop; see
``benchmarks/calibration.py`` for a properly trained deep ensemble and its
numbers.
"""

# %%
# A small model on the mock catalog
# ---------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import make_mock_catalog
from astro_galpost.evaluation import (
    coverage,
    evaluate_samples,
    model_space_samples,
    model_space_truth,
    pit,
)
from astro_galpost.visualization import (
    plot_bpt,
    plot_corner,
    plot_coverage,
    plot_pit_histogram,
    plot_predicted_vs_true,
)

torch.set_num_threads(1)
catalog = make_mock_catalog(1800, random_state=0)
train, test = catalog[:1500], catalog[1500:]
model = GalaxyPosterior(representation=32, hidden=64, max_epochs=12, batch_size=128, learning_rate=2e-3,
                        flows={"core": ("realnvp", {"transforms": 4, "hidden_features": [32, 32]}),
                               "lines": ("realnvp", {"transforms": 4, "hidden_features": [32, 32]})},
                        n_ensemble=1, progress=False, random_state=0)
model.fit(train)
samples = model.sample(test, n_samples=300)

# %%
# Predicted against true values
# -----------------------------
# Posterior medians with their 16-84% intervals; lines are in log10 flux.
predictions = model.predict(test, n_samples=300)
fig = plot_predicted_vs_true(predictions)

# %%
# The joint posterior of one galaxy
# ---------------------------------
# Stellar mass, SFR and redshift are correlated through the colours (Figure 5a);
# the red dashed lines are the true values.
fig = plot_corner(samples, 0, ["log_mstar", "log_sfr", "redshift"], truths=test, columns=model.targets_)

# %%
# Calibration: PIT histograms and interval coverage
# -------------------------------------------------
# A calibrated posterior has a flat PIT histogram and coverage on the diagonal.
names = list(model.targets_)
truth = {n: model_space_truth(test, n, model.targets_[n]) for n in names}
draws = {n: model_space_samples(samples[n], n) for n in names}
fig = plot_pit_histogram({n: pit(draws[n], truth[n], rng=0) for n in names})
levels = np.linspace(0.05, 0.95, 19)
fig = plot_coverage(levels, {n: coverage(draws[n], truth[n], levels) for n in ["log_mstar", "redshift", "halpha"]},
                    n=len(test))
metrics = evaluate_samples(samples, test, columns=model.targets_)
summary = metrics["target", "n", "r2", "pit_ks", "coverage_68", "coverage_95"]
summary.round(3)  # in place
summary.pprint(max_width=-1)

# %%
# The BPT diagram of the line posteriors
# --------------------------------------
# Posterior medians of the line ratios, coloured by P(AGN), with the 68/95%
# contours of two galaxies; grey crosses are the true ratios.
fig = plot_bpt(samples, contours=[0, 1], truths=test)
plt.show()
