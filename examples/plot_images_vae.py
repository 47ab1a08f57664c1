"""
Images and the VAE encoder: Figures 3 and 4 on real SDSS galaxies
=================================================================

The seed paper encodes gri cutouts with a convolutional variational autoencoder (VAE)
and feeds the latent means and standard deviations to the posterior network. Its
Figure 3 decodes one galaxy with single latent dimensions shifted ("perturbational
decoding"); its Figure 4 embeds the latent space in 2-d, coloured by a physical
quantity. This example draws both on **real** SDSS gri colour composites of
star-forming galaxies with MPA-JHU gas-phase metallicities (the ``sdss_gri_jpeg_oh``
folder of the shared data, read where it lies via
:func:`~astro_galpost.datasets.shared_data_dir`). Where that folder is absent it falls
back to **mock** galaxies (:func:`~astro_galpost.datasets.mock_catalog_with_images`;
simulated, not real data) rendered as colour composites, and says so.

Everything is small so that the example runs in about a minute on a CPU: 64×64 pixel
inputs, a narrow network, 30 epochs. The measured figures of the image path, on
galaxies that took no part in any choice, come from ``benchmarks/metallicity_images.py``
(see :ref:`images`), not from this example.
"""

import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table

from astro_galpost.datasets import mock_catalog_with_images, shared_data_dir
from astro_galpost.encoders import VAEEncoder
from astro_galpost.images import colour_composites, load_images
from astro_galpost.visualization import (
    embed_latents,
    perturbational_decoding,
    plot_embedding,
    plot_perturbation_grid,
    top_latent_dimensions,
)

# %%
# The galaxies
# ------------
# Images are ``(N, 3, H, W)`` arrays in g, r, i order, one per catalog row;
# :func:`~astro_galpost.images.load_images` reads SkyServer JPEG composites into that
# form (0-1 values). Only the 400 labelled composites are read: the folder's 100
# unlabelled ones are a test split and stay out of everything.

data_dir = shared_data_dir()
folder = None if data_dir is None else data_dir / "sdss_gri_jpeg_oh"
if folder is not None and (folder / "train.csv").is_file():
    table = Table.read(folder / "train.csv", converters={"objID": str})
    images = load_images([folder / "images" / f"{i}.jpg" for i in table["objID"]], size=64)
    source = "real SDSS composites"
else:  # no shared data beside the repository: mock galaxies, rendered like SkyServer composites
    table, flux = mock_catalog_with_images(400, size=64, random_state=0)
    images = colour_composites(flux)
    source = "MOCK galaxies (shared data not found)"
oh = np.asarray(table["oh_p50"], dtype=float)
print(f"{len(images)} {source}: images {images.shape}, 12+log(O/H) from {oh.min():.2f} to {oh.max():.2f}")

show = np.argsort(oh)[np.linspace(0, len(oh) - 1, 6).astype(int)]  # from the lowest to the highest
fig, axes = plt.subplots(1, 6, figsize=(12, 2.5), layout="constrained")
for ax, k in zip(axes, show):
    ax.imshow(np.moveaxis(images[k, ::-1], 0, -1))  # g, r, i shown as blue, green, red
    ax.set_title(f"12+log(O/H) = {oh[k]:.2f}", fontsize=9)
    ax.set_axis_off()
fig.suptitle(source)

# %%
# Training the VAE
# ----------------
# :class:`~astro_galpost.VAEEncoder` scales the composites linearly (they are already
# stretched), trains the VAE on the images alone (no labels), and freezes it.
# ``validation_fraction=0`` trains for a fixed number of epochs rather than stopping on
# a few dozen validation images. For pictures, the KL weight is 1e-3 instead of the
# default 0.1: with 0.1 and this short training, every latent stays close to the prior
# and every galaxy decodes to the same round blob (the features still order galaxies
# by metallicity, but there is nothing to see). A small KL weight gives sharper
# reconstructions and visible changes when one latent is shifted.

vae = VAEEncoder(image_size=64, channels=(16, 32, 64), max_epochs=30, learning_rate=1e-3, kl_weight=1e-3,
                 validation_fraction=0.0, random_state=0, progress=False)
vae.fit_images(images)
print("VAE training loss per epoch:", np.round(vae.history_.train_loss, 4))
latents, _ = vae.encode(images)
print("latent dimensions whose mean varies across galaxies (variance > 0.01):",
      int(np.sum(latents.var(axis=0) > 0.01)), "of", vae.latent_dim)

# %%
# Reconstructions
# ---------------
# Inputs as the network sees them and their reconstructions from the latent means. A
# VAE trained on a few hundred galaxies keeps a galaxy's size, brightness, colour and
# rough shape, and little else: no spiral arms, no neighbours.

seen, rebuilt = vae.preprocess(images[show]), vae.reconstruct(images[show])
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4), layout="constrained")
lo, hi = np.percentile(seen, [1, 99.5])
for k in range(6):
    for row, stamp in enumerate([seen[k], rebuilt[k]]):
        axes[row, k].imshow(np.clip((np.moveaxis(stamp[::-1], 0, -1) - lo) / (hi - lo), 0, 1))
        axes[row, k].set_axis_off()
axes[0, 0].set_title("input (scaled)", fontsize=9, loc="left")
axes[1, 0].set_title("reconstruction", fontsize=9, loc="left")

# %%
# What the latents encode (the paper's Figure 3)
# ----------------------------------------------
# Regress the metallicity on the latent means, take the three most predictive
# dimensions, and decode one galaxy of median metallicity with each of them shifted in
# turn, in units of the spread of that dimension over the galaxies. What changes is the
# size and the central brightness of the galaxy: a VAE trained on 400 galaxies for a
# minute learns those, not colour gradients or spiral arms (the paper trained on far
# more galaxies, on a GPU).

dims = top_latent_dimensions(latents, oh, k=3)
deltas = np.linspace(-3.0, 3.0, 5)
median_galaxy = int(np.argsort(oh)[len(oh) // 2])
grid = perturbational_decoding(vae, latents[median_galaxy], dims, deltas, scale=latents.std(axis=0))
plot_perturbation_grid(grid, dims, deltas, target_name=f"12+log(O/H), {source}",
                       fig=plt.figure(figsize=(11, 7)))

# %%
# The latent space (the paper's Figure 4)
# ---------------------------------------
# A 2-D embedding of the latent means (UMAP when ``umap-learn`` is installed, PCA
# otherwise), coloured by metallicity. A gradient along the embedding (the metal-poor
# galaxies gather at one end) means that the VAE has learned, without labels, features
# that order galaxies by metallicity.

embedding = embed_latents(latents, random_state=0)
fig, ax = plt.subplots(figsize=(7, 5.6), layout="constrained")
plot_embedding(embedding, oh, label="12+log(O/H)", ax=ax, s=14)
ax.set_title(f"VAE latent space, {source}")

# %%
# The encoder in a posterior
# --------------------------
# The fitted, frozen VAE is passed to :class:`~astro_galpost.GalaxyPosterior` as an
# encoder (``photometry=None``: images only) and reused as it is; any number of
# estimators can share it. ``fit``, ``sample`` and ``predict`` then need ``images=``;
# :meth:`~astro_galpost.GalaxyPosterior.few_labelled_images` sets the rest for a few
# hundred labelled galaxies::
#
#     gp = GalaxyPosterior.few_labelled_images({"metallicity": "oh_p50"}, vae=vae)
#     gp.fit(table[train], images=images[train])
#     post = gp.sample(table[test], images=images[test])
#
# (the VAE above was trained on all 400 galaxies for the figures; for a fair test train
# it on the training galaxies only, as ``benchmarks/metallicity_images.py`` does).
plt.show()
