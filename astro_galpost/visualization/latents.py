"""Interpreting the VAE latent space: the seed paper's Figures 3 and 4.

* Figure 3, *perturbational decoding*: regress a physical quantity on the
  latent vectors (`top_latent_dimensions`), keep every latent dimension of one
  galaxy fixed except the few with the largest coefficients, shift those and
  decode (`perturbational_decoding`, `plot_perturbation_grid`).
* Figure 4, *embeddings*: a 2-d UMAP (or PCA) embedding of the latent vectors,
  alone or with photometric features appended, coloured by a physical quantity
  (`embed_latents`, `plot_embedding`).

Examples
--------
>>> import numpy as np
>>> from astro_galpost.visualization import top_latent_dimensions
>>> rng = np.random.default_rng(0)
>>> latents = rng.normal(size=(500, 32))
>>> target = 2.0 * latents[:, 5] - 0.5 * latents[:, 9] + rng.normal(0, 0.1, 500)
>>> top_latent_dimensions(latents, target, k=2).tolist()
[5, 9]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "top_latent_dimensions",
    "perturbational_decoding",
    "plot_perturbation_grid",
    "embed_latents",
    "plot_embedding",
    "latent_regression",
]


def _float_values(values: Any) -> np.ndarray:
    """Plain float values (NaN where masked) of an array, Quantity, Column or Masked array."""
    from ..utils.columns import column_data

    data, mask, _ = column_data(values)
    return np.where(mask, np.nan, data)


def latent_regression(latents: Any, target: Any) -> np.ndarray:
    """Coefficients of the least-squares fit of ``target`` on the standardised latents.

    Each latent dimension is standardised to zero mean and unit variance over
    the rows used (dimensions without variance get coefficient 0), so the
    coefficients measure the change of the target per standard deviation of
    each dimension. Rows with a non-finite target or latent are left out.

    Returns
    -------
    `~numpy.ndarray`
        One coefficient per latent dimension (the intercept is not returned).
    """
    z = np.asarray(latents, dtype=float)
    y = _float_values(target).ravel()
    if z.ndim != 2:
        raise ValueError(f"latents must be a 2-d array (N, D), got shape {z.shape}")
    if len(y) != len(z):
        raise ValueError(f"{len(y)} target values given for {len(z)} latent vectors")
    keep = np.isfinite(y) & np.isfinite(z).all(axis=1)
    if keep.sum() < 2:
        raise ValueError("fewer than two rows have a finite target and latent vector")
    z, y = z[keep], y[keep]
    std = z.std(axis=0)
    varying = std > 0
    zs = (z[:, varying] - z[:, varying].mean(axis=0)) / std[varying]
    design = np.column_stack([np.ones(len(zs)), zs])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    out = np.zeros(z.shape[1])
    out[varying] = coef[1:]
    return out


def top_latent_dimensions(latents: Any, target: Any, k: int = 3) -> np.ndarray:
    """The ``k`` latent dimensions most relevant to ``target``, by linear regression.

    As in the seed paper: the target (e.g. redshift or log SFR, true or
    predicted) is regressed linearly on the latent vectors, standardised per
    dimension (see `latent_regression`), and the ``k`` dimensions with the
    largest absolute coefficient are returned, most relevant first.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Latent means, e.g. from `~astro_galpost.encoders.vae.VAEEncoder.encode`.
    target : array-like, shape (N,)
        The physical quantity; NaN or masked values are left out.
    k : int, optional
        How many dimensions to return.

    Returns
    -------
    `~numpy.ndarray`
        int indices of shape (k,).
    """
    coef = latent_regression(latents, target)
    k = int(k)
    if not 1 <= k <= len(coef):
        raise ValueError(f"k must be between 1 and {len(coef)}, got {k}")
    return np.argsort(-np.abs(coef), kind="stable")[:k]


def perturbational_decoding(
    vae_encoder,
    image_or_latent: Any,
    dims: Sequence[int],
    deltas: Sequence[float] = np.linspace(-2.0, 2.0, 5),
    scale: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Decode one galaxy with single latent dimensions shifted (the seed paper's Figure 3).

    The galaxy's latent mean is kept fixed in every dimension but one: each
    dimension ``d`` in ``dims`` is shifted in turn by every ``delta`` in
    ``deltas`` (times ``scale[d]``) and the latent vector is decoded.

    Parameters
    ----------
    vae_encoder : `~astro_galpost.encoders.vae.VAEEncoder`
        A fitted VAE encoder.
    image_or_latent : array-like
        One image, ``(3, H, W)`` or ``(H, W, 3)`` (encoded to its latent mean),
        or one latent vector of shape ``(latent_dim,)``.
    dims : sequence of int
        Latent dimensions to perturb, e.g. from `top_latent_dimensions`.
    deltas : sequence of float, optional
        Shifts; ``0`` reproduces the unperturbed reconstruction.
    scale : float, sequence of float or None, optional
        Unit of the shifts. `None` (default): raw latent units, i.e. standard
        deviations of the N(0, I) prior. Pass the spread of the latent means
        over a sample, ``latents.std(axis=0)``, to shift in units of the
        sample's own spread, which is more meaningful when the KL weight is
        small and the latent distribution is far from the prior.

    Returns
    -------
    `~numpy.ndarray`
        float32 ``(len(dims), len(deltas), 3, S, S)``: decoded images, in the
        scaled units of the encoder's preprocessor.
    """
    dims = [int(d) for d in np.atleast_1d(dims)]
    deltas = np.asarray(deltas, dtype=float).ravel()
    latent_dim = int(vae_encoder.latent_dim)
    for d in dims:
        if not 0 <= d < latent_dim:
            raise ValueError(f"latent dimension {d} is out of range for a {latent_dim}-d latent space")
    values = np.asarray(image_or_latent, dtype=float)
    if values.ndim == 1:
        if len(values) != latent_dim:
            raise ValueError(f"a latent vector must have {latent_dim} values, got {len(values)}")
        base = values
    elif values.ndim == 3 or (values.ndim == 4 and len(values) == 1):
        mu, _ = vae_encoder.encode(values.reshape((-1,) + values.shape[-3:]).astype(np.float32))
        base = mu[0].astype(float)
    else:
        raise ValueError(
            f"expected one image (3, H, W) or one latent vector ({latent_dim},), got shape {values.shape}"
        )
    if scale is None:
        unit = np.ones(latent_dim)
    else:
        unit = np.broadcast_to(np.asarray(scale, dtype=float), (latent_dim,))
    z = np.repeat(base[None, None, :], len(dims), axis=0).repeat(len(deltas), axis=1)
    for i, d in enumerate(dims):
        z[i, :, d] = base[d] + deltas * unit[d]
    decoded = vae_encoder.decode(z.reshape(-1, latent_dim).astype(np.float32))
    return np.asarray(decoded, dtype=np.float32).reshape((len(dims), len(deltas)) + decoded.shape[1:])


def _to_rgb(grid: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.5)) -> np.ndarray:
    """gri images (..., 3, S, S) as RGB (..., S, S, 3) in [0, 1].

    i → red, r → green, g → blue. Each band is normalised between two
    percentiles taken over the whole grid, so colour changes between panels
    stay visible (the pixels are already arcsinh-scaled, so no further
    stretch is applied).
    """
    grid = np.asarray(grid, dtype=float)
    rgb = np.moveaxis(grid[..., ::-1, :, :], -3, -1)  # (g, r, i) -> (i, r, g) as (R, G, B)
    flat = rgb.reshape(-1, 3)
    lo = np.nanpercentile(flat, percentiles[0], axis=0)
    hi = np.nanpercentile(flat, percentiles[1], axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((rgb - lo) / span, 0.0, 1.0)


def plot_perturbation_grid(
    grid: np.ndarray,
    dims: Sequence[int],
    deltas: Sequence[float],
    target_name: str | None = None,
    *,
    fig=None,
):
    """Show the output of `perturbational_decoding` as a grid of RGB images.

    One row per latent dimension, one column per shift; gri is shown as
    (B, G, R) with a shared per-band normalisation (see the seed paper's Figure 3).

    Parameters
    ----------
    grid : `~numpy.ndarray`
        ``(len(dims), len(deltas), 3, S, S)`` decoded images.
    dims, deltas : sequence
        The perturbed dimensions and the shifts, for the labels.
    target_name : str, optional
        The quantity the dimensions were chosen for, for the title.
    fig : `~matplotlib.figure.Figure`, optional
        Figure to draw into (cleared); a new one by default.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    grid = np.asarray(grid)
    dims, deltas = list(np.atleast_1d(dims)), list(np.atleast_1d(deltas))
    if grid.ndim != 5 or grid.shape[:2] != (len(dims), len(deltas)) or grid.shape[2] != 3:
        raise ValueError(
            f"grid must have shape ({len(dims)}, {len(deltas)}, 3, S, S) for the dims and deltas given, "
            f"got {grid.shape}"
        )
    rows, cols = grid.shape[:2]
    if fig is None:
        fig = plt.figure(figsize=(1.6 * cols + 0.6, 1.6 * rows + 0.6))
    else:
        fig.clear()
    axes = fig.subplots(rows, cols, squeeze=False)
    rgb = _to_rgb(grid)
    for i in range(rows):
        for j in range(cols):
            ax = axes[i, j]
            ax.imshow(rgb[i, j], origin="lower", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"Δ = {float(deltas[j]):+.2g}", fontsize="small")
            if j == 0:
                ax.set_ylabel(f"latent {int(dims[i])}")
    if target_name:
        fig.suptitle(f"Perturbational decoding: {target_name}")
    return fig


def embed_latents(
    latents: Any,
    method: str = "auto",
    random_state: int | None = 0,
    n_components: int = 2,
    standardize: bool = True,
    **kwargs,
) -> np.ndarray:
    """A low-dimensional embedding of latent (or latent + photometry) features.

    Parameters
    ----------
    latents : array-like, shape (N, D)
        Features to embed, e.g. the latent means, or them concatenated with
        photometric features (the seed paper's Figure 4b, d).
    method : {"auto", "umap", "pca"}, optional
        ``"umap"`` needs the optional ``umap-learn`` package; ``"auto"`` uses it
        when it is installed and PCA (`sklearn.decomposition.PCA`) otherwise.
    random_state : int or None, optional
        Seed of UMAP (PCA is deterministic).
    n_components : int, optional
        Output dimensions.
    standardize : bool, optional
        Scale every feature to unit variance first (so that latent and
        photometric features weigh alike).
    **kwargs
        Passed to ``umap.UMAP``.

    Returns
    -------
    `~numpy.ndarray`
        ``(N, n_components)``; the PCA axes have a deterministic sign (the
        largest loading of each component is positive).
    """
    x = np.asarray(latents, dtype=float)
    if x.ndim != 2:
        raise ValueError(f"latents must be a 2-d array (N, D), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("latents contain NaN or infinite values")
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
    x = x - x.mean(axis=0)
    if standardize:
        std = x.std(axis=0)
        x = x / np.where(std > 0, std, 1.0)
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ImportError("method='umap' needs the umap-learn package: pip install umap-learn") from None
        else:
            reducer = umap.UMAP(n_components=n_components, random_state=random_state, **kwargs)
            return np.asarray(reducer.fit_transform(x), dtype=float)
    if not 1 <= n_components <= min(x.shape):
        raise ValueError(f"n_components must be between 1 and {min(x.shape)}, got {n_components}")
    from sklearn.decomposition import PCA

    components = PCA(n_components=n_components, svd_solver="full").fit(x).components_
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    components = components * np.where(signs == 0, 1.0, signs)[:, None]
    return x @ components.T


def plot_embedding(
    embedding: np.ndarray,
    values: Any,
    label: str = "",
    *,
    ax=None,
    cmap: str = "viridis",
    s: float = 4.0,
    **kwargs,
):
    """Scatter a 2-d embedding coloured by a quantity (the seed paper's Figure 4).

    Parameters
    ----------
    embedding : `~numpy.ndarray`
        ``(N, 2)``, from `embed_latents`.
    values : array-like
        ``(N,)`` colour values (NaN or masked ones are drawn in grey).
    label : str, optional
        Colour-bar label, e.g. ``"log M* [Msun]"``.
    ax : `~matplotlib.axes.Axes`, optional
        Axes to draw on; a new figure by default.

    Returns
    -------
    `~matplotlib.figure.Figure`
    """
    import matplotlib.pyplot as plt

    emb = np.asarray(embedding, dtype=float)
    if emb.ndim != 2 or emb.shape[1] < 2:
        raise ValueError(f"embedding must have shape (N, 2), got {emb.shape}")
    c = _float_values(values).ravel()
    if len(c) != len(emb):
        raise ValueError(f"{len(c)} values given for {len(emb)} embedded points")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.0, 4.2))
    else:
        fig = ax.figure
    bad = ~np.isfinite(c)
    if bad.any():
        ax.scatter(emb[bad, 0], emb[bad, 1], s=s, c="0.8", lw=0, label="no value")
    sc = ax.scatter(emb[~bad, 0], emb[~bad, 1], c=c[~bad], s=s, cmap=cmap, lw=0, **kwargs)
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_xlabel("embedding 1")
    ax.set_ylabel("embedding 2")
    return fig
