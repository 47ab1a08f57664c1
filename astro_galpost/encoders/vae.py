"""A convolutional variational autoencoder of gri cutouts, as an image encoder.

The seed paper (section 2.2) trains a VAE on 3-channel 160×160 gri cutouts:
three convolutional layers (kernel 4, stride 2, padding 1), fully connected
layers to a 32-d latent mean and log-variance, the reparameterisation trick and
a decoder of transposed convolutions; the loss is the mean squared
reconstruction error plus the KL divergence to a standard normal prior,
minimised with Adam at a learning rate of 1e-4. After convergence the encoder
is frozen and its 32 latent means and 32 standard deviations become features
of the posterior network.

`VAEEncoder` does exactly that as an `~astro_galpost.encoders.Encoder`: its
:meth:`~VAEEncoder.fit` trains the VAE as a stage of its own (it is not
trained jointly with the flows), and a fitted encoder can be saved on its own
and reused by several `~astro_galpost.GalaxyPosterior` estimators.

Three additions, each of which can be switched off, make the latents more
useful when labelled galaxies are few: training images are shown in random
orientations (the eight rotations and reflections of the square, under which
a galaxy's properties do not change), the features are averaged over those
eight orientations, and they are standardised over the training images.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..model.envelope import load_encoder, save_encoder
from ..model.training import TrainingHistory, fit_module, split_indices
from ..utils.params import check_float, check_int
from .base import Encoder

__all__ = ["GalaxyVAE", "VAEEncoder"]

#: Clamp of the log-variance, so that exp(logvar) never overflows or vanishes.
_LOGVAR_RANGE = (-30.0, 20.0)


def _images_api():
    """The `astro_galpost.images` subpackage, imported on first use (no import cycle with the registry)."""
    from .. import images

    return images


class GalaxyVAE(nn.Module):
    """The convolutional VAE of the seed paper.

    Encoder: three ``Conv2d`` layers (kernel 4, stride 2, padding 1; each halves
    the image) with LeakyReLU activations, flattened, then two linear heads to
    the latent mean and log-variance. Decoder: a linear layer back to the last
    convolutional feature map, then three ``ConvTranspose2d`` layers (kernel 4,
    stride 2, padding 1; each doubles it) back to ``3 × image_size × image_size``.
    The output layer is linear, as the (arcsinh-scaled) pixels are unbounded.

    Parameters
    ----------
    image_size : int, optional
        Side of the square input in pixels; a multiple of 8.
    latent_dim : int, optional
        Dimension of the latent space.
    channels : tuple of 3 int, optional
        Output channels of the three convolutional layers.
    in_channels : int, optional
        Bands of the input (3 for gri).
    """

    def __init__(
        self,
        image_size: int = 160,
        latent_dim: int = 32,
        channels: tuple[int, int, int] = (32, 64, 128),
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        image_size, latent_dim = int(image_size), int(latent_dim)
        if image_size < 8 or image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {image_size}")
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
        channels = tuple(int(c) for c in channels)
        if len(channels) != 3:
            raise ValueError(f"channels must give 3 layer widths, got {channels}")
        self.image_size, self.latent_dim = image_size, latent_dim
        self.channels, self.in_channels = channels, int(in_channels)
        c1, c2, c3 = channels
        side = image_size // 8
        self.feature_shape = (c3, side, side)
        n_flat = c3 * side * side

        def conv(a, b):
            return nn.Conv2d(a, b, kernel_size=4, stride=2, padding=1)

        def deconv(a, b):
            return nn.ConvTranspose2d(a, b, kernel_size=4, stride=2, padding=1)

        self.encoder = nn.Sequential(
            conv(in_channels, c1), nn.LeakyReLU(0.2),
            conv(c1, c2), nn.LeakyReLU(0.2),
            conv(c2, c3), nn.LeakyReLU(0.2),
            nn.Flatten(),
        )
        self.fc_mu = nn.Linear(n_flat, latent_dim)
        self.fc_logvar = nn.Linear(n_flat, latent_dim)
        self.fc_decode = nn.Linear(latent_dim, n_flat)
        self.decoder = nn.Sequential(
            nn.Unflatten(1, self.feature_shape), nn.LeakyReLU(0.2),
            deconv(c3, c2), nn.LeakyReLU(0.2),
            deconv(c2, c1), nn.LeakyReLU(0.2),
            deconv(c1, in_channels),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance of images ``x`` (N, C, S, S)."""
        if x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"expected images of shape (N, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}"
            )
        h = self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h).clamp(*_LOGVAR_RANGE)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """A draw ``z = mu + exp(logvar / 2) * eps`` with ``eps ~ N(0, I)``.

        ``generator`` (a CPU generator) makes the draw reproducible on any device.
        """
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images (N, C, S, S) from latent vectors ``z`` (N, latent_dim)."""
        return self.decoder(self.fc_decode(z))

    def forward(
        self, x: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, latent mean and log-variance; decodes a draw (or the mean if not ``sample``)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if sample else mu
        return self.decode(z), mu, logvar

    @staticmethod
    def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(N(mu, exp(logvar)) || N(0, I)) per row, summed over latent dimensions."""
        return 0.5 * torch.sum(mu.square() + logvar.exp() - 1.0 - logvar, dim=-1)

    @staticmethod
    def kl_penalty(mu: torch.Tensor, logvar: torch.Tensor, free_bits: float = 0.0) -> torch.Tensor:
        """The KL term of the loss: per latent dimension, the batch-mean KL but at least ``free_bits`` nats.

        With ``free_bits > 0`` ("free bits", Kingma et al. 2016) a dimension may carry that
        much information about its image without penalty, so the latents cannot all collapse
        onto the prior when the reconstruction term is small (a small galaxy in a large,
        mostly empty cutout). ``free_bits=0`` is the plain KL averaged over the batch.
        """
        per_dim = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).mean(dim=0)
        return per_dim.clamp(min=float(free_bits)).sum()

    @staticmethod
    def reconstruction_loss(
        recon: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Mean squared error over pixels; with ``weight`` (same shape, in [0, 1]) a weighted mean,
        so that masked pixels (weight 0) are ignored."""
        squared = (recon - x).square()
        if weight is None:
            return squared.mean()
        return (squared * weight).sum() / weight.sum().clamp_min(1.0)

    def loss(
        self,
        x: torch.Tensor,
        weight: torch.Tensor | None = None,
        kl_weight: float = 1.0,
        sample: bool = True,
        generator: torch.Generator | None = None,
        free_bits: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``reconstruction + kl_weight × KL penalty`` (see `kl_penalty`), the reconstruction
        term and the plain KL averaged over the batch."""
        recon, mu, logvar = self(x, sample=sample, generator=generator)
        rec = self.reconstruction_loss(recon, x, weight)
        kl = self.kl_divergence(mu, logvar).mean()
        return rec + kl_weight * self.kl_penalty(mu, logvar, free_bits), rec, kl


def _seed_from(random_state) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**62))
    return int(np.random.SeedSequence(random_state).generate_state(1, np.uint64)[0] % (2**62))


def _as_batch(images: Any) -> Any:
    """Give a single image (3, H, W) or (H, W, 3) array a leading axis of one."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        return images[None]
    return images


#: Number of elements of the dihedral group D4 (4 rotations by 90 degrees, each optionally mirrored).
N_DIHEDRAL = 8


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Element ``k`` (0-7) of the dihedral group D4 applied to images ``x`` (N, C, S, S).

    ``k % 4`` quarter turns, mirrored left-right first when ``k >= 4``;
    ``k = 0`` is the identity. A galaxy's orientation on the sky carries no
    information about its physical properties, so these eight images of one
    galaxy are equally valid views of it.
    """
    k = int(k)
    if not 0 <= k < N_DIHEDRAL:
        raise ValueError(f"k must be in 0..{N_DIHEDRAL - 1}, got {k}")
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1)) if k % 4 else x


def random_dihedral(
    x: torch.Tensor, weight: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A random D4 element per image of ``x`` (and the same one to its pixel ``weight``)."""
    ks = torch.randint(0, N_DIHEDRAL, (len(x),), generator=generator)
    out = x.clone()
    wout = None if weight is None else weight.clone()
    for k in range(1, N_DIHEDRAL):
        rows = (ks == k).nonzero().flatten().to(x.device)
        if len(rows):
            out[rows] = dihedral(x[rows], k)
            if wout is not None:
                wout[rows] = dihedral(weight[rows], k)
    return out, wout


class VAEEncoder(Encoder):
    """Features of gri cutouts from a convolutional VAE: 32 latent means and 32 standard deviations.

    :meth:`fit` scales the images with an `~astro_galpost.images.ImagePreprocessor`,
    trains a `GalaxyVAE` with Adam on a random train/validation split (through
    `astro_galpost.model.training.fit_module`, the package's one training
    loop, with AdamW and no weight decay), stops early when the validation loss
    stops improving, restores the best weights and freezes the network.
    :meth:`transform` then returns, per image, the posterior means ``mu`` and
    standard deviations ``exp(logvar / 2)`` of the latent variables,
    concatenated (``2 × latent_dim`` features).

    Parameters
    ----------
    latent_dim : int, optional
        Latent dimensions (32 in the paper).
    image_size : int, optional
        Side in pixels the cutouts are scaled to (a multiple of 8; 160 in the paper).
    scaling : str, optional
        Pixel scaling of the `~astro_galpost.images.ImagePreprocessor`. The
        default ``"auto"`` stretches calibrated fluxes (FITS cutouts) with an
        arcsinh and only centres and rescales colour composites (JPEG/PNG,
        already stretched). On the 400 SDSS gri JPEGs of the benchmark, a second
        arcsinh stretch of the composites roughly halved the metallicity R² of
        a ridge regression on the latents.
    kl_weight : float, optional
        Weight of the KL term relative to the reconstruction term. The
        reconstruction term is a *mean* over pixels (as the paper states),
        whereas the KL is a *sum* over the latent dimensions, so ``kl_weight=1``
        corresponds to a Gaussian pixel likelihood whose variance is about
        ``3 × S² / 2`` times larger than usual, and small weights let the
        reconstruction dominate. Measurements: on synthetic 64×64 blob images
        (1,000 images, 12 epochs, arcsinh scaling) ``1.0`` left all 32
        dimensions collapsed onto the prior, ``1e-3`` kept 31 active. On the
        400 real SDSS gri JPEG composites of ``benchmarks/metallicity_images.py``
        (2-fold split with another seed than the benchmark's; VAE at 64 px,
        40 epochs at learning rate 1e-3; image-only metallicity posterior with
        the benchmark's small network, 3-member ensemble), the R² was 0.28 with
        ``1e-3``, 0.50 with ``1e-2``, 0.61 with ``0.1`` and 0.60 with ``1.0``
        (PCA + gradient boosting baseline: 0.48): a more regular latent space
        serves a posterior network fitted on a few hundred galaxies far better.
        On the mock catalog with images (images + photometry, 1,200 training
        galaxies, one seed, the benchmark's quick settings) ``0.1`` instead of
        ``1e-3`` changed the R² of mass, redshift and metallicity by -0.03,
        -0.02 and -0.11 and of the emission lines by +0.00 to +0.02. The default is ``0.1``; use ``1.0`` for the literal
        objective of the paper, smaller values for sharper reconstructions.
    free_bits : float, optional
        Nats of KL per latent dimension that go unpenalised ("free bits",
        Kingma et al. 2016; see `GalaxyVAE.kl_penalty`); ``0`` (the default)
        is the plain objective. Use it when the galaxies fill a small part of
        each cutout: the reconstruction term is then small, and on the mock
        stamps (64 px) every latent collapsed onto the prior at
        ``kl_weight=0.1`` (no latent mean varied across galaxies) and images +
        photometry did worse than photometry alone; with ``0.25``, 29 of 32
        latents stayed active and images + photometry beat photometry for
        stellar mass, redshift and black-hole mass. On the real SDSS
        composites, which span the galaxy, ``0.25`` lowered the image-only
        metallicity R² from 0.63 to 0.51 (quick benchmark), hence the default.
    learning_rate : float, optional
        Adam learning rate (1e-4 in the paper), kept constant.
    batch_size : int, optional
        Images per optimisation step, and per encoding batch.
    max_epochs : int, optional
        Most passes over the training images (all of them with
        ``validation_fraction=0``).
    patience : int, optional
        Epochs without improvement of the validation loss before stopping.
    validation_fraction : float, optional
        Fraction of images held out for early stopping. ``0`` trains on every
        image for exactly ``max_epochs`` epochs and keeps the last weights (a
        fixed schedule): with a few hundred images a 10% validation set is a
        few dozen galaxies, too few to decide when to stop (see
        ``benchmarks/metallicity_images.py``, which uses 30 epochs).
    channels : tuple of 3 int, optional
        Widths of the three convolutional layers.
    ignore_masked : bool, optional
        Leave masked pixels out of the reconstruction loss.
    augment : bool, optional
        Show each training image in a random one of its eight orientations
        (rotations by 90° and their mirror images, the dihedral group D4) at
        every step. A galaxy's orientation on the sky carries no physical
        information, so this multiplies the training set at no cost in realism.
    average_orientations : bool, optional
        Encode every image in its eight orientations and average the latent
        means and standard deviations, so that the features do not depend on
        how the galaxy lies in the cutout (eight encoder passes per image).
        :meth:`reconstruct` always uses the image as given.
    standardize : bool, optional
        Centre and scale each feature by its mean and standard deviation over
        the training images (learned after training and saved with the
        encoder). The raw latents depend on the pixel scaling and on
        ``kl_weight`` (the standard deviations can be tiny and nearly constant),
        which a posterior network fitted on a few hundred galaxies copes with
        badly; :meth:`encode` still gives the raw values.
    random_state : int, Generator or None, optional
        Seed of the split, initialisation, batching and latent draws.
    device : str, optional
        Torch device to train and encode on; a loaded encoder is on the CPU.
    progress : bool, optional
        Show a progress bar over epochs.

    Attributes
    ----------
    model_ : `GalaxyVAE`
        The trained, frozen network.
    preprocessor_ : `~astro_galpost.images.ImagePreprocessor`
        The fitted image scaling.
    history_ : `~astro_galpost.model.training.TrainingHistory`
        Train and validation loss per epoch.
    n_features_ : int
        ``2 * latent_dim``.
    feature_mean_, feature_scale_ : `~numpy.ndarray` or None
        The standardisation of the features (None without ``standardize``).

    Notes
    -----
    The training images are held in memory after scaling, as float32
    ``(N, 3, S, S)``: about 0.3 MB per 160×160 image (3 GB for 10,000).

    Examples
    --------
    >>> vae = VAEEncoder(image_size=64, max_epochs=20).fit_images(images)  # doctest: +SKIP
    >>> features, usable = vae.transform(table, images)  # doctest: +SKIP
    >>> gp = GalaxyPosterior(encoder=[vae, "photometry"]).fit(table, images=images)  # doctest: +SKIP
    """

    name = "vae"
    requires_images = True
    #: ``GalaxyPosterior(encoder="vae")`` trains the VAE on the estimator's device, seed and progress setting.
    estimator_options = ("random_state", "device", "progress")

    def __init__(
        self,
        latent_dim: int = 32,
        image_size: int = 160,
        scaling: str = "auto",
        kl_weight: float = 0.1,
        free_bits: float = 0.0,
        learning_rate: float = 1e-4,
        batch_size: int = 64,
        max_epochs: int = 100,
        patience: int = 10,
        validation_fraction: float = 0.1,
        channels: tuple[int, int, int] = (32, 64, 128),
        ignore_masked: bool = True,
        augment: bool = True,
        average_orientations: bool = True,
        standardize: bool = True,
        random_state: int | np.random.Generator | None = None,
        device: str = "cpu",
        progress: bool = True,
    ) -> None:
        self.latent_dim = latent_dim
        self.image_size = image_size
        self.scaling = scaling
        self.kl_weight = kl_weight
        self.free_bits = free_bits
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.channels = channels
        self.ignore_masked = ignore_masked
        self.augment = augment
        self.average_orientations = average_orientations
        self.standardize = standardize
        self.random_state = random_state
        self.device = device
        self.progress = progress

    # ------------------------------------------------------------- helpers
    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("this VAEEncoder is not fitted: call fit(table, images) or fit_images(images) first")

    @staticmethod
    def _read(images: Any, n_rows: int | None) -> tuple[np.ndarray, np.ndarray]:
        if images is None:
            raise ValueError(
                "the 'vae' encoder needs images: pass images=... (one gri cutout per table row: "
                "an (N, 3, H, W) array, a list of NDData/CCDData or FITS cube paths)"
            )
        array, mask = _images_api().as_image_array(_as_batch(images), n_rows=n_rows)
        return array, np.asarray(mask, dtype=bool)

    def _torch_device(self) -> torch.device:
        return torch.device(self.device)

    def _preprocess(self, array: np.ndarray, mask: np.ndarray) -> np.ndarray:
        x = np.asarray(self.preprocessor_.transform(array, mask), dtype=np.float32)
        return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)

    def _pixel_weights(self, mask: np.ndarray) -> np.ndarray | None:
        """Weights (N, 3, S, S) in [0, 1] of the scaled pixels: 0 where masked.

        The mask is brought to ``S × S`` the way the preprocessor moves the
        pixels (its ``transform_mask`` when it has one, else its geometry step);
        failing both, it is resampled by area averaging (the fraction of
        unmasked input pixels in each output pixel).
        """
        if not self.ignore_masked or not mask.any():
            return None
        size = int(self.image_size)
        pre = self.preprocessor_
        transform_mask = getattr(pre, "transform_mask", None)
        if transform_mask is not None:
            return (~np.asarray(transform_mask(mask), dtype=bool)).astype(np.float32)
        geometry = getattr(pre, "_geometry", None)  # astro_galpost.images internals, same package
        if geometry is not None:
            out = []
            for s in range(0, len(mask), 256):
                _, bad = geometry(np.zeros(mask[s:s + 256].shape, np.float32), mask[s:s + 256])
                out.append(~np.asarray(bad, dtype=bool))
            return np.concatenate(out).astype(np.float32)
        valid = torch.from_numpy(~mask).float()
        if valid.shape[-2:] != (size, size):
            valid = F.interpolate(valid, size=(size, size), mode="area")
        return valid.numpy()

    # ------------------------------------------------------------- fitting
    def _validate_params(self) -> None:
        """Check every constructor parameter; errors name the parameter and its allowed values."""
        image_size = check_int("image_size", self.image_size, 8)
        if image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 (three halvings), got {self.image_size!r}")
        for name in ("latent_dim", "batch_size", "max_epochs"):
            check_int(name, getattr(self, name), 1)
        check_int("patience", self.patience, 0)
        if self.scaling not in _images_api().SCALINGS:
            raise ValueError(f"scaling must be one of {', '.join(_images_api().SCALINGS)}; got {self.scaling!r}")
        check_float("kl_weight", self.kl_weight)
        check_float("free_bits", self.free_bits)
        check_float("learning_rate", self.learning_rate, low_open=True)
        check_float("validation_fraction", self.validation_fraction, 0.0, 1.0, high_open=True)
        channels = self.channels if isinstance(self.channels, (tuple, list)) else ()
        if len(channels) != 3 or not all(isinstance(c, numbers.Integral) and c >= 1 for c in channels):
            raise ValueError(f"channels must be 3 whole numbers >= 1 (the layer widths), got {self.channels!r}")
        for name in ("ignore_masked", "augment", "average_orientations", "standardize", "progress"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if not (self.random_state is None or isinstance(self.random_state, (numbers.Integral, np.random.Generator))):
            raise TypeError(f"random_state must be None, an int or a numpy Generator, got {self.random_state!r}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r}") from err

    def fit(self, table: Any, images: Any = None) -> VAEEncoder:
        """Train the VAE on ``images`` (one per row of ``table``); returns self.

        The table is only used to check the number of images; see :meth:`fit_images`.

        Raises
        ------
        ValueError, TypeError
            A constructor parameter is invalid (the message names it), or the
            images are missing, miscounted or all empty.
        """
        self._validate_params()
        return self._fit_arrays(*self._read(images, None if table is None else len(table)))

    def fit_images(self, images: Any) -> VAEEncoder:
        """Train the VAE on ``images`` alone (no catalog needed); returns self."""
        self._validate_params()
        return self._fit_arrays(*self._read(images, None))

    def _fit_arrays(self, array: np.ndarray, mask: np.ndarray) -> VAEEncoder:
        """Fit the preprocessor, train the VAE and the feature standardisation on the usable images."""
        usable = _images_api().usable_images(array, mask)
        if not usable.any():
            raise ValueError("no training image has an unmasked, non-empty pixel: nothing to train the VAE on")
        array, mask = array[usable], mask[usable]
        self.preprocessor_ = _images_api().ImagePreprocessor(size=int(self.image_size), scaling=self.scaling).fit(array, mask)
        x = np.concatenate(
            [self._preprocess(array[s:s + 256], mask[s:s + 256]) for s in range(0, len(array), 256)], axis=0
        )
        weights = self._pixel_weights(mask)
        del array, mask
        x = torch.from_numpy(x)
        self.model_, self.history_ = self._train(x, None if weights is None else torch.from_numpy(weights))
        self.feature_mean_ = self.feature_scale_ = None
        if self.standardize:
            mu, std = self._encode_scaled(x)
            features = np.concatenate([mu, std], axis=1).astype(np.float64)
            self.feature_mean_ = features.mean(axis=0)
            spread = features.std(axis=0)
            self.feature_scale_ = np.where(spread > 1e-12, spread, 1.0)
        self.n_train_images_ = len(x)
        self.n_features_ = 2 * int(self.latent_dim)
        return self

    def _train(self, x: torch.Tensor, w: torch.Tensor | None) -> tuple[GalaxyVAE, TrainingHistory]:
        """A `GalaxyVAE` trained by `~astro_galpost.model.training.fit_module` on scaled images ``x``.

        AdamW without weight decay (Adam, as in the paper) at a constant
        learning rate. With validation images, early stopping on their loss,
        whose latent draws are the same every epoch so that epochs compare
        fairly; without (``validation_fraction=0``), a fixed schedule that
        keeps the last weights.
        """
        seed = _seed_from(self.random_state)
        train_index, val_index = split_indices(len(x), float(self.validation_fraction), np.random.default_rng(seed))
        device = self._torch_device()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GalaxyVAE(int(self.image_size), int(self.latent_dim), tuple(self.channels)).to(device)
        gen, bs, train_t = torch.Generator().manual_seed(seed), int(self.batch_size), torch.from_numpy(train_index)

        def loss(index: torch.Tensor, generator: torch.Generator, augment: bool = False) -> torch.Tensor:
            xb = x[index].to(device, non_blocking=True)
            wb = None if w is None else w[index].to(device, non_blocking=True)
            if augment:
                xb, wb = random_dihedral(xb, wb, generator)
            return model.loss(xb, wb, float(self.kl_weight), generator=generator, free_bits=float(self.free_bits))[0]

        def batch_losses():
            order = train_t[torch.randperm(len(train_t), generator=gen)]
            for start in range(0, len(order), bs):
                index = order[start:start + bs]
                yield loss(index, gen, bool(self.augment)), len(index)

        def val_loss() -> float:
            val_gen = torch.Generator().manual_seed(seed + 1)  # the same latent draws every epoch
            batches = [torch.from_numpy(val_index[s:s + bs]) for s in range(0, len(val_index), bs)]
            return sum(float(loss(idx, val_gen)) * len(idx) for idx in batches) / len(val_index)

        history = fit_module(
            model, batch_losses, val_loss if len(val_index) else None, learning_rate=float(self.learning_rate),
            weight_decay=0.0, max_epochs=int(self.max_epochs), patience=int(self.patience),
            early_stopping=bool(len(val_index)), reduce_lr_on_plateau=False, progress=bool(self.progress),
            description="VAE",
        )
        return self._freeze(model), history

    @staticmethod
    def _freeze(model: GalaxyVAE) -> GalaxyVAE:
        model.eval()
        model.requires_grad_(False)
        return model

    # ------------------------------------------------------------ encoding
    def _encode_arrays(
        self, array: np.ndarray, mask: np.ndarray, average: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and standard deviations; averaged over the 8 orientations when ``average``
        (default: the ``average_orientations`` parameter)."""
        mus, stds = [], []
        chunk = max(int(self.batch_size), 1) * 4
        for s in range(0, len(array), chunk):
            x = torch.from_numpy(self._preprocess(array[s:s + chunk], mask[s:s + chunk]))
            mu, std = self._encode_scaled(x, average)
            mus.append(mu)
            stds.append(std)
        if not mus:
            empty = np.zeros((0, int(self.latent_dim)), np.float32)
            return empty, empty.copy()
        return np.concatenate(mus), np.concatenate(stds)

    def _encode_scaled(self, x: torch.Tensor, average: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and standard deviations of preprocessed images ``x`` (N, 3, S, S), batch by batch."""
        device = self._torch_device()
        model = self.model_.to(device)
        views = range(N_DIHEDRAL) if (self.average_orientations if average is None else average) else (0,)
        bs = max(int(self.batch_size), 1)
        mus, stds = [], []
        with torch.inference_mode():
            for b in range(0, len(x), bs):
                xb = x[b:b + bs].to(device)
                mu_sum, std_sum = 0.0, 0.0
                for k in views:
                    mu, logvar = model.encode(dihedral(xb, k))
                    mu_sum = mu_sum + mu.float()
                    std_sum = std_sum + torch.exp(0.5 * logvar).float()
                mus.append((mu_sum / len(views)).cpu().numpy())
                stds.append((std_sum / len(views)).cpu().numpy())
        if not mus:
            empty = np.zeros((0, int(self.latent_dim)), np.float32)
            return empty, empty.copy()
        return np.concatenate(mus), np.concatenate(stds)

    def transform(self, table: Any, images: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and standard deviations, (N, 2 × latent_dim) float32, and usable rows.

        With ``standardize`` (the default) each feature is centred and scaled
        by its mean and standard deviation over the VAE's training images, so
        that the posterior network sees inputs of order unity whatever the
        pixel scaling; :meth:`encode` gives the raw latent values.
        A row is not usable when its image is entirely masked or empty (all
        zero or non-finite); its features are still finite.
        """
        self._check_fitted()
        array, mask = self._read(images, None if table is None else len(table))
        usable = _images_api().usable_images(array, mask)
        mu, std = self._encode_arrays(array, mask)
        features = np.concatenate([mu, std], axis=1).astype(np.float64)
        if getattr(self, "feature_mean_", None) is not None:
            features = (features - self.feature_mean_) / self.feature_scale_
        return np.nan_to_num(features.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), usable

    def encode(self, images: Any) -> tuple[np.ndarray, np.ndarray]:
        """Latent means and standard deviations of ``images``, two (N, latent_dim) arrays."""
        self._check_fitted()
        return self._encode_arrays(*self._read(images, None))

    def preprocess(self, images: Any) -> np.ndarray:
        """``images`` as the network sees them: scaled, float32 (N, 3, S, S)."""
        self._check_fitted()
        return self._preprocess(*self._read(images, None))

    def decode(self, latents: Any) -> np.ndarray:
        """Decoded images (N, 3, S, S), in the scaled units of :meth:`preprocess`, from latents (N, latent_dim)."""
        self._check_fitted()
        z = np.asarray(latents, dtype=np.float32)
        single = z.ndim == 1
        z = np.atleast_2d(z)
        if z.ndim != 2 or z.shape[1] != int(self.latent_dim):
            raise ValueError(f"latents must have shape (N, {self.latent_dim}), got {np.shape(latents)}")
        device = self._torch_device()
        model = self.model_.to(device)
        out, bs = [], max(int(self.batch_size), 1)
        with torch.inference_mode():
            for b in range(0, len(z), bs):
                batch = torch.from_numpy(np.ascontiguousarray(z[b:b + bs])).to(device)
                out.append(model.decode(batch).float().cpu().numpy())
        images = np.concatenate(out) if out else np.zeros((0, 3, self.image_size, self.image_size), np.float32)
        return images[0] if single else images

    def reconstruct(self, images: Any) -> np.ndarray:
        """Images decoded from their latent means, (N, 3, S, S) in scaled units."""
        self._check_fitted()
        mu, _ = self._encode_arrays(*self._read(images, None), average=False)
        return self.decode(mu)

    def feature_names(self) -> list[str]:
        d = int(self.latent_dim)
        return [f"vae_mu_{i}" for i in range(d)] + [f"vae_std_{i}" for i in range(d)]

    # --------------------------------------------------------- persistence
    def get_config(self) -> dict:
        self._check_fitted()
        params = self.get_params(deep=False)
        seed = params["random_state"]
        params["random_state"] = int(seed) if isinstance(seed, (int, np.integer)) else None
        params["channels"] = [int(c) for c in params["channels"]]
        return {
            "params": params,
            "preprocessor": self.preprocessor_.get_config(),
            "n_features_": int(self.n_features_),
            "n_train_images_": int(self.n_train_images_),
            "history": self.history_.to_dict(),
        }

    def get_arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        arrays = {
            f"vae.{k}": v.detach().to("cpu").contiguous().numpy()
            for k, v in self.model_.state_dict().items()
        }
        for k, v in self.preprocessor_.get_arrays().items():
            arrays[f"preprocessor.{k}"] = np.ascontiguousarray(v)
        if getattr(self, "feature_mean_", None) is not None:
            arrays["features.mean"] = np.asarray(self.feature_mean_, dtype=np.float64)
            arrays["features.scale"] = np.asarray(self.feature_scale_, dtype=np.float64)
        return arrays

    @classmethod
    def from_config(cls, config: dict, arrays: dict[str, np.ndarray]) -> VAEEncoder:
        """Rebuild a fitted encoder (on the CPU) from :meth:`get_config` and :meth:`get_arrays`."""
        params = dict(config["params"])
        params["channels"] = tuple(params["channels"])
        params["device"] = "cpu"
        # encoders saved before these options existed were trained and encode without them
        params.setdefault("free_bits", 0.0)
        params.setdefault("augment", False)
        params.setdefault("average_orientations", False)
        params.setdefault("standardize", "features.mean" in arrays)
        enc = cls(**params)
        pre_arrays = {k[len("preprocessor."):]: v for k, v in arrays.items() if k.startswith("preprocessor.")}
        enc.preprocessor_ = _images_api().ImagePreprocessor.from_config(config["preprocessor"], pre_arrays)
        model = GalaxyVAE(int(enc.image_size), int(enc.latent_dim), enc.channels)
        state = {k[len("vae."):]: torch.as_tensor(np.array(v)) for k, v in arrays.items() if k.startswith("vae.")}
        model.load_state_dict(state, strict=True)
        enc.model_ = cls._freeze(model)
        enc.history_ = TrainingHistory(**config.get("history", {}))
        enc.n_train_images_ = int(config.get("n_train_images_", 0))
        enc.n_features_ = int(config["n_features_"])
        enc.feature_mean_ = enc.feature_scale_ = None
        if "features.mean" in arrays:
            enc.feature_mean_ = np.asarray(arrays["features.mean"], dtype=np.float64)
            enc.feature_scale_ = np.asarray(arrays["features.scale"], dtype=np.float64)
        return enc

    def save(self, path, overwrite: bool = False) -> Path:
        """Write the fitted encoder to the folder ``path`` (``config.json`` + ``weights.safetensors``).

        Same envelope as `~astro_galpost.GalaxyPosterior.save`
        (`astro_galpost.model.persistence.save_encoder`): no pickled code, SHA-256
        checksums of the config and the weights, and an atomic write.
        """
        self._check_fitted()
        return save_encoder(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, device: str = "cpu") -> VAEEncoder:
        """Read an encoder written by :meth:`save`, onto ``device``."""
        enc = load_encoder(path, cls)
        enc.device = device
        enc.model_.to(torch.device(device))
        return enc
