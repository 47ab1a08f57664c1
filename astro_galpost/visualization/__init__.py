"""Figures: predicted against true, corner plots, PIT and coverage, BPT, and the VAE's latent space.

``plots`` holds the figures of predictions and their calibration; ``latents`` the
interpretation of VAE latents (the seed paper's Figures 3 and 4).
"""

from .latents import (
    embed_latents,
    latent_regression,
    perturbational_decoding,
    plot_embedding,
    plot_perturbation_grid,
    top_latent_dimensions,
)
from .plots import axis_label, plot_bpt, plot_corner, plot_coverage, plot_pit_histogram, plot_predicted_vs_true

__all__ = [
    "axis_label",
    "plot_bpt",
    "plot_corner",
    "plot_coverage",
    "plot_pit_histogram",
    "plot_predicted_vs_true",
    "top_latent_dimensions",
    "perturbational_decoding",
    "plot_perturbation_grid",
    "embed_latents",
    "plot_embedding",
    "latent_regression",
]
