"""
Images and the VAE encoder (mock images)
========================================

The seed paper encodes gri cutouts with a convolutional variational autoencoder (VAE)
and feeds the latent means and standard deviations, together with the photometry, to
the posterior network. This example does the same on **mock** images: Sérsic bulges and
discs rendered from the mock catalog with an SDSS-like PSF and noise
(:func:`~astro_galpost.datasets.mock_catalog_with_images`; simulated, not real data).

Everything is tiny — 32×32 pixel stamps, a 16-dimensional latent space, 8 epochs of
VAE training — so that the example runs in well under a minute. With so small a VAE,
images do not improve on the photometry here (the printout at the end shows both); the
paper uses 160×160 cutouts and a 32-dimensional latent space trained to convergence on a
GPU.
"""

import matplotlib.pyplot as plt
import numpy as np
from astropy.visualization import make_lupton_rgb

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import mock_catalog_with_images
from astro_galpost.encoders import VAEEncoder
from astro_galpost.evaluation import evaluate_samples

# %%
# Mock gri images
# ---------------
# Images are ``(N, 3, H, W)`` arrays in g, r, i order, one per catalog row. Here they
# are in nanomaggies, with sky noise. (See :func:`~astro_galpost.images.as_image_array`
# for every other form images can be given in: channel-last arrays, NDData, FITS
# cubes, files.)

table, images = mock_catalog_with_images(1500, size=32, random_state=0)
print(images.shape, images.dtype)
train, test = slice(0, 1200), slice(1200, 1500)


def show_rgb(ax, gri, title=""):
    """An arcsinh (Lupton et al. 2004) colour composite: i red, r green, g blue."""
    g, r, i = gri
    ax.imshow(make_lupton_rgb(i, r, g, stretch=0.5, Q=8), origin="lower")
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


fig, axes = plt.subplots(1, 6, figsize=(9, 1.9), layout="constrained")
for ax, k in zip(axes, range(6)):
    show_rgb(ax, images[k], f"z = {table['z'][k]:.3f}\nlog M* = {table['lgm_tot_p50'][k]:.1f}")

# %%
# Training the VAE
# ----------------
# :class:`~astro_galpost.VAEEncoder` scales the stamps with an
# :class:`~astro_galpost.images.ImagePreprocessor` (resizing and a per-band arcsinh
# stretch learned from the training images), trains the VAE on them, and freezes it.
# ``fit_images`` needs only the images, not the catalog.

# The KL weight must suit the images: these mock galaxies fill a small part of each
# stamp, so the mean-squared reconstruction error is small, and the default weight
# (0.1, chosen on SDSS colour composites that span the galaxy) collapses the latents onto
# the prior. ``active_units_`` counts the latent means that vary across galaxies.
vae = VAEEncoder(image_size=32, latent_dim=16, max_epochs=8, learning_rate=1e-3, kl_weight=1e-3,
                 progress=False, random_state=0)
vae.fit_images(images[train])
print("VAE validation loss per epoch:", np.round(vae.history_.val_loss, 4))
latents, _ = vae.encode(images[train])
print("latent dimensions whose mean varies across galaxies (variance > 0.01):",
      int(np.sum(latents.var(axis=0) > 0.01)), "of", vae.latent_dim)

# %%
# Reconstructions
# ---------------
# Inputs as the network sees them (after scaling) and their reconstructions from the
# latent means. A VAE this small keeps a galaxy's size, brightness and rough shape, and
# little else.

seen = vae.preprocess(images[test][:6])
rebuilt = vae.reconstruct(images[test][:6])
fig, axes = plt.subplots(2, 6, figsize=(9, 3.4), layout="constrained")
lo, hi = np.percentile(seen, [1, 99.5])
for k in range(6):
    for row, stamp in enumerate([seen[k], rebuilt[k]]):
        rgb = np.clip((np.moveaxis(stamp[::-1], 0, -1) - lo) / (hi - lo), 0, 1)
        axes[row, k].imshow(rgb, origin="lower")
        axes[row, k].set_axis_off()
axes[0, 0].set_title("input (scaled)", fontsize=8, loc="left")
axes[1, 0].set_title("reconstruction", fontsize=8, loc="left")

# %%
# What the latents encode (the paper's Figure 3)
# ----------------------------------------------
# Regress the redshift on the latent means, take the three most predictive
# dimensions, and decode one galaxy with each of them shifted in turn (in units of the
# spread of that dimension over the training galaxies).

from astro_galpost.interpret import (  # noqa: E402
    embed_latents,
    perturbational_decoding,
    plot_embedding,
    plot_perturbation_grid,
    top_latent_dimensions,
)

dims = top_latent_dimensions(latents, np.asarray(table["z"][train]), k=3)
deltas = np.linspace(-2.0, 2.0, 5)
grid = perturbational_decoding(vae, latents[0], dims, deltas, scale=latents.std(axis=0))
plot_perturbation_grid(grid, dims, deltas, target_name="redshift")

# %%
# The latent space (the paper's Figure 4)
# ---------------------------------------
# A 2-D embedding of the latent means (UMAP when ``umap-learn`` is installed, PCA
# otherwise), coloured by stellar mass.

embedding = embed_latents(latents, random_state=0)
plot_embedding(embedding, np.asarray(table["lgm_tot_p50"][train]), label="log M* [dex(M☉)]")

# %%
# Images plus photometry
# ----------------------
# The fitted VAE is passed as an encoder next to ``"photometry"``; its features (16
# latent means and 16 standard deviations) are concatenated with the photometric ones.
# ``fit``, ``sample`` and ``predict`` then need ``images=`` with one image per row.

gp = GalaxyPosterior(targets=["log_mstar", "redshift"], encoder=[vae, "photometry"],
                     max_epochs=20, progress=False, random_state=0)
gp.fit(table[train], images=images[train])
post = gp.sample(table[test], images=images[test], n_samples=300)

photometry_only = GalaxyPosterior(targets=["log_mstar", "redshift"], max_epochs=20, progress=False, random_state=0)
photometry_only.fit(table[train])
post_phot = photometry_only.sample(table[test], n_samples=300)

for label, samples in [("images + photometry", post), ("photometry only", post_phot)]:
    scores = evaluate_samples(samples, table[test])
    print(f"{label:20s}", "  ".join(f"{row['target']}: R2 = {row['r2']:.2f}" for row in scores))
plt.show()
