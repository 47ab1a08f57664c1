"""The VAE image encoder and the latent-space interpretability tools."""

import importlib.util
import json

import numpy as np
import pytest
import torch

from astro_galpost import GalaxyPosterior
from astro_galpost.encoders import ENCODERS
from astro_galpost.encoders.vae import GalaxyVAE, VAEEncoder
from astro_galpost.visualization import (
    embed_latents,
    perturbational_decoding,
    plot_embedding,
    plot_perturbation_grid,
    top_latent_dimensions,
)

SIZE = 32


# one torch thread: these tests run many small models, which extra threads only slow down
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blobs(n, size=SIZE, seed=0, noise=0.02):
    """Gaussian blobs of random width, brightness and colour (N, 3, size, size); also their widths."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    sigma = rng.uniform(0.05, 0.2, n) * size
    colour = rng.uniform(0.3, 1.0, (n, 3))
    amp = rng.uniform(0.5, 2.0, n)
    dx, dy = rng.normal(0, 0.03 * size, (2, n))
    r2 = (xx[None] - dx[:, None, None]) ** 2 + (yy[None] - dy[:, None, None]) ** 2
    profile = amp[:, None, None] * np.exp(-0.5 * r2 / sigma[:, None, None] ** 2)
    images = colour[:, :, None, None] * profile[:, None] + noise * rng.standard_normal((n, 3, size, size))
    return images.astype(np.float32), sigma


@pytest.fixture(scope="module")
def vae():
    """A VAE encoder trained briefly on blobs (shared: do not modify)."""
    images, _ = blobs(240, seed=1)
    enc = VAEEncoder(image_size=SIZE, max_epochs=3, batch_size=32, learning_rate=1e-3, random_state=0, progress=False)
    return enc.fit_images(images)


@pytest.fixture
def registered():
    """The VAE is a built-in encoder, registered as 'vae'."""
    assert ENCODERS["vae"] is VAEEncoder


# ----------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [64, 160])
def test_architecture(size):
    net = GalaxyVAE(image_size=size)
    convs = [m for m in net.encoder if isinstance(m, torch.nn.Conv2d)]
    deconvs = [m for m in net.decoder if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 3 and len(deconvs) == 3
    for layer in convs + deconvs:
        assert layer.kernel_size == (4, 4) and layer.stride == (2, 2) and layer.padding == (1, 1)
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert deconvs[-1].out_channels == 3
    assert net.fc_mu.out_features == net.fc_logvar.out_features == 32
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        recon, mu, logvar = net(x)
    assert recon.shape == x.shape
    assert mu.shape == logvar.shape == (2, 32)


def test_bad_sizes():
    with pytest.raises(ValueError, match="multiple of 8"):
        GalaxyVAE(image_size=100)
    net = GalaxyVAE(image_size=32)
    with pytest.raises(ValueError, match="expected images of shape"):
        net.encode(torch.zeros(1, 3, 64, 64))


def test_kl_and_reparameterisation():
    zero = torch.zeros(4, 32)
    assert torch.allclose(GalaxyVAE.kl_divergence(zero, zero), torch.zeros(4))
    mu, logvar = torch.randn(5, 32), torch.randn(5, 32)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)), torch.distributions.Normal(0.0, 1.0)
    ).sum(-1)
    assert torch.allclose(GalaxyVAE.kl_divergence(mu, logvar), expected, atol=1e-5)
    # z = mu + sigma * eps, reproducible with a generator
    mu, logvar = torch.full((20000, 2), 3.0), torch.full((20000, 2), np.log(0.25))
    z = GalaxyVAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), torch.full((2,), 3.0), atol=0.02)
    assert torch.allclose(z.std(0), torch.full((2,), 0.5), atol=0.02)
    z2 = GalaxyVAE.reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert torch.equal(z, z2)


def test_free_bits_penalty():
    mu, logvar = torch.randn(64, 8), torch.randn(64, 8)
    plain = GalaxyVAE.kl_divergence(mu, logvar).mean()
    assert torch.allclose(GalaxyVAE.kl_penalty(mu, logvar, 0.0), plain, atol=1e-5)
    # a dimension below the allowance costs exactly the allowance, and gets no gradient
    quiet = torch.zeros(64, 8, requires_grad=True)
    penalty = GalaxyVAE.kl_penalty(quiet, torch.zeros(64, 8), free_bits=0.25)
    assert penalty.item() == pytest.approx(8 * 0.25)
    penalty.backward()
    assert torch.count_nonzero(quiet.grad) == 0
    # a dimension above it is penalised as usual
    loud = torch.full((64, 8), 2.0, requires_grad=True)
    penalty = GalaxyVAE.kl_penalty(loud, torch.zeros(64, 8), free_bits=0.25)
    assert penalty.item() == pytest.approx(8 * 0.5 * 4.0)
    penalty.backward()
    assert torch.all(loud.grad > 0)


def test_dihedral_group():
    from astro_galpost.encoders.vae import N_DIHEDRAL, dihedral, random_dihedral

    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    views = [dihedral(x, k) for k in range(N_DIHEDRAL)]
    assert torch.equal(views[0], x)
    # eight distinct images, each a permutation of the pixels of every band
    assert len({tuple(v.flatten().tolist()) for v in views}) == N_DIHEDRAL
    for v in views:
        assert torch.equal(v.flatten(-2).sort(-1).values, x.flatten(-2).sort(-1).values)
    with pytest.raises(ValueError):
        dihedral(x, 8)
    # the pixel weights follow their pixels
    out, w = random_dihedral(x, x.clone(), torch.Generator().manual_seed(0))
    assert torch.equal(out, w)
    assert any(torch.equal(out[0], v[0]) for v in views) and any(torch.equal(out[1], v[1]) for v in views)


def test_masked_pixels_ignored_in_loss():
    x, recon = torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)
    recon[..., :4] = 5.0  # wrong only where masked
    weight = torch.ones_like(x)
    weight[..., :4] = 0.0
    assert float(GalaxyVAE.reconstruction_loss(recon, x, weight)) == 0.0
    assert float(GalaxyVAE.reconstruction_loss(recon, x)) == pytest.approx(12.5)


# ----------------------------------------------------------------------------------------
# the encoder
# ----------------------------------------------------------------------------------------
def test_training_reduces_loss(vae):
    h = vae.history_
    assert len(h.train_loss) == len(h.val_loss) == 3
    floor = vae.kl_weight * vae.latent_dim * vae.free_bits  # the least the KL penalty can be
    assert h.train_loss[-1] - floor < 0.8 * (h.train_loss[0] - floor)
    assert h.val_loss[-1] < h.val_loss[0]
    assert h.val_loss[h.best_epoch] == min(h.val_loss)


def test_fixed_schedule_without_validation_split():
    images, _ = blobs(64, seed=3)
    enc = VAEEncoder(image_size=SIZE, max_epochs=4, patience=0, validation_fraction=0.0, batch_size=32,
                     learning_rate=1e-3, random_state=0, progress=False).fit_images(images)
    h = enc.history_
    # every epoch runs (patience 0 would stop after one with a validation split); the last is kept
    assert len(h.train_loss) == 4 and h.best_epoch == 3 and not h.stopped_early
    assert h.val_loss == h.train_loss


def test_transform_features(vae):
    images, _ = blobs(10, seed=2)
    features, usable = vae.transform(np.zeros(10), images)  # anything with len() as the "table"
    assert features.shape == (10, 64) and features.dtype == np.float32
    assert vae.n_features_ == 64 and len(vae.feature_names()) == 64
    assert vae.feature_names()[0] == "vae_mu_0" and vae.feature_names()[32] == "vae_std_0"
    assert usable.all()
    mu, std = vae.encode(images)
    assert (std > 0).all()
    # the features are the latent means and standard deviations, standardised on the training images
    raw = np.concatenate([mu, std], axis=1)
    np.testing.assert_allclose(features, (raw - vae.feature_mean_) / vae.feature_scale_, rtol=1e-4, atol=1e-4)
    train, _ = blobs(240, seed=1)
    z, _ = vae.transform(None, train)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
    assert vae.encode(images[0])[0].shape == (1, 32)  # a single image
    assert vae.reconstruct(images[:3]).shape == (3, 3, SIZE, SIZE)
    assert vae.decode(mu[0]).shape == (3, SIZE, SIZE)


def test_features_do_not_depend_on_orientation(vae):
    images, _ = blobs(5, seed=7)
    images[:, :, :8, :4] += 1.0  # something off-centre, so that the orientation shows
    features, _ = vae.transform(None, images)
    for turned in (np.rot90(images, 1, axes=(2, 3)), images[:, :, ::-1], np.rot90(images[..., ::-1], 3, axes=(2, 3))):
        np.testing.assert_allclose(vae.transform(None, np.ascontiguousarray(turned))[0], features, atol=1e-4)
    # without the averaging, the latents of a turned image differ
    single = VAEEncoder.from_config(vae.get_config(), vae.get_arrays())
    single.average_orientations = False
    a = single.transform(None, images)[0]
    b = single.transform(None, np.ascontiguousarray(np.rot90(images, 1, axes=(2, 3))))[0]
    assert np.abs(a - b).max() > 1e-2


def test_augmentation_is_used_in_training():
    """With augmentation the VAE learns the turned images as well as the originals; without, it does not."""
    images, _ = blobs(200, seed=8)
    images[:, :, 2:10, 2:6] += 1.5  # a bright patch always in one corner
    turned = np.ascontiguousarray(np.rot90(images, 2, axes=(2, 3)))
    errors = {}
    for augment in (False, True):
        enc = VAEEncoder(image_size=SIZE, max_epochs=6, batch_size=32, learning_rate=2e-3, augment=augment,
                         kl_weight=1e-3, random_state=0, progress=False).fit_images(images)
        x, x_turned = enc.preprocess(images), enc.preprocess(turned)
        errors[augment] = [float(np.mean((enc.reconstruct(v) - v) ** 2)) for v in (x, x_turned)]
    # trained on one orientation, the turned images reconstruct clearly worse
    assert errors[False][1] > 1.5 * errors[False][0]
    assert errors[True][1] < 1.2 * errors[True][0]


def test_empty_or_masked_images_unusable(vae):
    images, _ = blobs(3, seed=3)
    images[1] = 0.0
    images[2] = np.nan
    features, usable = vae.transform(None, images)
    assert usable.tolist() == [True, False, False]
    assert np.isfinite(features).all()


def test_frozen_after_fit(vae):
    assert not vae.model_.training
    assert not any(p.requires_grad for p in vae.model_.parameters())


def test_missing_and_miscounted_images(vae):
    with pytest.raises(ValueError, match="needs images"):
        vae.transform(np.zeros(3), None)
    with pytest.raises(ValueError, match="needs images"):
        VAEEncoder().fit(np.zeros(3), None)
    images, _ = blobs(4, seed=4)
    with pytest.raises(ValueError):
        vae.transform(np.zeros(3), images)
    with pytest.raises(RuntimeError, match="not fitted"):
        VAEEncoder().transform(np.zeros(4), images)


def test_from_config_round_trip(vae):
    images, _ = blobs(6, seed=5)
    config = json.loads(json.dumps(vae.get_config()))
    arrays = {k: np.array(v) for k, v in vae.get_arrays().items()}
    assert all(k.startswith(("vae.", "preprocessor.", "features.")) for k in arrays)
    rebuilt = VAEEncoder.from_config(config, arrays)
    assert rebuilt.device == "cpu" and rebuilt.history_.train_loss == vae.history_.train_loss
    np.testing.assert_array_equal(rebuilt.transform(None, images)[0], vae.transform(None, images)[0])
    assert not any(p.requires_grad for p in rebuilt.model_.parameters())


def test_from_config_of_an_older_encoder(vae):
    """An encoder saved before augmentation, orientation averaging and standardisation existed
    (no such parameters or arrays) still gives the raw features it was trained to give."""
    images, _ = blobs(6, seed=5)
    config = json.loads(json.dumps(vae.get_config()))
    for key in ("augment", "average_orientations", "standardize", "free_bits"):
        del config["params"][key]
    config["preprocessor"].pop("fitted_scaling")
    config["preprocessor"]["scaling"] = "arcsinh"
    arrays = {k: np.array(v) for k, v in vae.get_arrays().items() if not k.startswith("features.")}
    old = VAEEncoder.from_config(config, arrays)
    assert not old.augment and not old.average_orientations and not old.standardize and old.free_bits == 0.0
    assert old.preprocessor_.scaling_ == "arcsinh"
    features, _ = old.transform(None, images)
    mu, std = old.encode(images)
    np.testing.assert_array_equal(features, np.concatenate([mu, std], axis=1))


def test_save_load_round_trip(vae, tmp_path):
    from astro_galpost.model.persistence import ModelFormatError

    images, _ = blobs(6, seed=6)
    vae.save(tmp_path / "vae")
    assert {p.name for p in (tmp_path / "vae").iterdir()} == {"config.json", "weights.safetensors"}
    loaded = VAEEncoder.load(tmp_path / "vae")
    np.testing.assert_array_equal(loaded.transform(None, images)[0], vae.transform(None, images)[0])
    np.testing.assert_array_equal(loaded.decode(np.zeros(32)), vae.decode(np.zeros(32)))
    with pytest.raises(FileExistsError):
        vae.save(tmp_path / "vae")
    weights = tmp_path / "vae" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    with pytest.raises(ModelFormatError, match="checksum"):
        VAEEncoder.load(tmp_path / "vae")


def test_params_clone_and_repr(vae, monkeypatch):
    from astro_galpost.utils.registry import Registry

    params = vae.get_params(deep=True)
    assert params["image_size"] == SIZE and params["max_epochs"] == 3 and params["random_state"] == 0
    assert set(params) == set(VAEEncoder().get_params())
    enc = VAEEncoder()
    assert enc.set_params(latent_dim=8, kl_weight=0.5) is enc and (enc.latent_dim, enc.kl_weight) == (8, 0.5)
    with pytest.raises(ValueError, match="'latent_size' is not a parameter of VAEEncoder"):
        enc.set_params(latent_size=8)
    clone = pytest.importorskip("sklearn.base").clone
    assert clone(vae) is vae and vae.is_fitted  # a fitted encoder is used as it is, by clones too
    unfitted = VAEEncoder(**vae.get_params())
    copied = clone(unfitted)
    assert type(copied) is VAEEncoder and copied is not unfitted and not copied.is_fitted
    assert copied.get_params() == vae.get_params()

    def no_registry(*args, **kwargs):
        raise AssertionError("repr looked up a registry")

    for name in ("get", "__getitem__", "__contains__", "load_plugins"):
        monkeypatch.setattr(Registry, name, no_registry, raising=False)
    assert repr(VAEEncoder(latent_dim=8, image_size=64)) == "VAEEncoder(latent_dim=8, image_size=64)"
    assert repr(VAEEncoder(latent_dim="bad")) == "VAEEncoder(latent_dim='bad')"  # repr never validates


@pytest.mark.parametrize("name, value", [
    ("latent_dim", 0), ("image_size", 20), ("image_size", 4), ("scaling", "log"), ("kl_weight", -1.0),
    ("free_bits", float("nan")), ("learning_rate", 0.0), ("batch_size", 0), ("max_epochs", 2.5),
    ("patience", -1), ("validation_fraction", 1.0), ("channels", (8, 16)), ("augment", "yes"),
    ("random_state", "seed"), ("device", "no-such-device"),
])
def test_bad_parameters_named_in_fit(name, value):
    images, _ = blobs(4, seed=5)
    enc = VAEEncoder(**{"image_size": SIZE, "max_epochs": 1, "progress": False, name: value})  # stored, not checked
    with pytest.raises((ValueError, TypeError), match=name):
        enc.fit_images(images)
    assert not enc.is_fitted


def test_fit_with_masked_pixels():
    images, _ = blobs(40, size=64, seed=10)
    images[:, :, :, :16] = np.nan  # a bad strip on the left of every image (resized 64 -> 32)
    enc = VAEEncoder(image_size=SIZE, max_epochs=1, random_state=0, progress=False).fit_images(images)
    assert np.isfinite(enc.history_.train_loss).all()
    weights = enc._pixel_weights(np.isnan(images))
    assert weights.shape == (40, 3, SIZE, SIZE)
    assert (weights[..., :7] == 0).all() and (weights[..., 9:] == 1).all()
    features, usable = enc.transform(None, images)
    assert usable.all() and np.isfinite(features).all()


def test_fit_with_table_checks_count():
    images, _ = blobs(8, seed=7)
    with pytest.raises(ValueError):
        VAEEncoder(image_size=SIZE, max_epochs=1, progress=False).fit(np.zeros(5), images)


# ----------------------------------------------------------------------------------------
# inside GalaxyPosterior
# ----------------------------------------------------------------------------------------
def test_registration(registered):
    assert ENCODERS["vae"] is VAEEncoder


def test_reused_by_two_estimators(vae, registered, mock_table, tiny, tmp_path):
    table = mock_table[:120]
    images, _ = blobs(len(table), seed=8)
    before = {k: v.clone() for k, v in vae.model_.state_dict().items()}

    alone = GalaxyPosterior(photometry=None, encoder=vae, random_state=0, **tiny(["log_mstar"]))
    alone.fit(table, images=images)
    assert alone.n_features_in_ == 64
    post = alone.sample(table[:10], images=images[:10], n_samples=20)
    assert post["log_mstar"].shape == (10,) and post.usable.all()

    both = GalaxyPosterior(encoder=[vae, "photometry"], random_state=0, **tiny(["log_mstar"]))
    both.fit(table, images=images)
    assert both.encoders_[0] is vae and alone.encoders_[0] is vae
    assert both.n_features_in_ == 64 + both.encoders_[1].n_features_
    predicted = both.predict(table[:10], images=images[:10], n_samples=20)
    assert "log_mstar_p50" in predicted.colnames
    for k, v in vae.model_.state_dict().items():  # the shared VAE was not retrained
        assert torch.equal(v, before[k])

    both.save(tmp_path / "gp")
    loaded = GalaxyPosterior.load(tmp_path / "gp")
    assert isinstance(loaded.encoders_[0], VAEEncoder)
    a = both.sample(table[:5], images=images[:5], n_samples=10, random_state=1)
    b = loaded.sample(table[:5], images=images[:5], n_samples=10, random_state=1)
    np.testing.assert_allclose(a["log_mstar"].distribution.value, b["log_mstar"].distribution.value, rtol=1e-5)

    with pytest.raises(ValueError, match="needs images"):
        both.sample(table[:5], n_samples=10)
    with pytest.raises(ValueError, match="needs images"):
        GalaxyPosterior(encoder=[vae, "photometry"], **tiny(["log_mstar"])).fit(table)
    with pytest.raises(ValueError, match="images"):
        both.sample(table[:5], images=images[:4], n_samples=10)


def test_widths_recalibrated_on_the_image_path(vae, mock_table, tiny):
    """Image-only posteriors rescale their widths on each member's own validation rows."""
    from astro_galpost.model.recalibration import SCALE_GRID

    table = mock_table[:150]
    images, _ = blobs(len(table), seed=13)
    kwargs = tiny(["log_mstar"], photometry=None, encoder=vae, n_ensemble=2, validation_fraction=0.25,
                  random_state=0)
    scales = GalaxyPosterior(**kwargs).fit(table, images=images).residual_scales_["log_mstar"]
    # 38 validation rows per member (at least the 30 recalibration needs): a factor from the grid, not 1
    assert scales.shape == (2,) and np.isin(scales, SCALE_GRID.astype(np.float32)).all()
    assert (scales != 1.0).any()
    plain = GalaxyPosterior(**kwargs, recalibrate=False).fit(table, images=images).residual_scales_["log_mstar"]
    np.testing.assert_array_equal(plain, 1.0)


def test_each_ensemble_member_trains_its_own_vae(vae, mock_table, tiny, tmp_path):
    """A VAE that fit trains is bagged: one per member, each with a seed of its own; others are shared."""
    table = mock_table[:80]
    images, _ = blobs(len(table), seed=14)
    enc = VAEEncoder(image_size=SIZE, max_epochs=1, random_state=3, progress=False)
    gp = GalaxyPosterior(encoder=[enc, "photometry"], n_ensemble=3, random_state=0, **tiny(["redshift"]))
    gp.fit(table, images=images)
    members = gp.member_encoders_
    assert len(members) == 3 and members[0] is gp.encoders_
    vaes = [m[0] for m in members]
    assert all(v.is_fitted for v in vaes) and len({id(v) for v in vaes}) == 3 and not enc.is_fitted
    assert vaes[0].random_state == 3 and len({v.random_state for v in vaes}) == 3  # member 0 keeps its seed
    first_layer = [next(iter(v.model_.state_dict().values())) for v in vaes]
    assert not torch.equal(first_layer[0], first_layer[1])
    assert members[1][1] is members[0][1] is members[2][1]  # the photometry encoder's fit is not random

    def member_draws(model, k):
        batch = next(model.sample_members(table[:6], images=images[:6], n_samples=30, random_state=2))
        return batch.samples[k]

    # member 1 samples from its own VAE's features: given member 0's VAE instead, its draws change
    saved_draws = member_draws(gp, 1)
    gp.save(tmp_path / "bagged")
    loaded = GalaxyPosterior.load(tmp_path / "bagged")
    assert [type(m[0]) for m in loaded.member_encoders_] == [VAEEncoder] * 3
    restored = loaded.get_params()["encoder"]  # the VAE as given, unfitted: a clone would train it again
    assert restored[1] == "photometry" and not restored[0].is_fitted
    assert restored[0].get_params() == enc.get_params()
    assert loaded.member_encoders_[1][1] is loaded.member_encoders_[0][1]
    np.testing.assert_allclose(member_draws(loaded, 1), saved_draws, rtol=1e-5)
    gp.member_encoders_[1] = gp.member_encoders_[0]
    assert not np.allclose(member_draws(gp, 1), saved_draws)

    # a VAE given fitted is shared by every member, and one member has one set of encoders
    shared = GalaxyPosterior(encoder=vae, photometry=None, n_ensemble=2, random_state=0, **tiny(["redshift"]))
    assert all(m[0] is vae for m in shared.fit(table, images=images).member_encoders_)
    single = GalaxyPosterior(encoder=enc, photometry=None, n_ensemble=1, random_state=0, **tiny(["redshift"]))
    assert len(single.fit(table, images=images).member_encoders_) == 1


def test_unfitted_vae_trained_by_estimator(mock_table, tiny):
    table = mock_table[:60]
    images, _ = blobs(len(table), seed=11)
    enc = VAEEncoder(image_size=SIZE, max_epochs=1, random_state=0, progress=False)
    gp = GalaxyPosterior(encoder=[enc, "photometry"], random_state=0, **tiny(["redshift"]))
    gp.fit(table, images=images)
    # the estimator fits a copy, so a second fit does not reuse the first fitted VAE
    assert not enc.is_fitted and gp.encoders_[0] is not enc and gp.encoders_[0].is_fitted
    assert not any(p.requires_grad for p in gp.encoders_[0].model_.parameters())


def test_nddata_list_input(vae):
    from astropy.nddata import NDData

    images, _ = blobs(3, seed=12)
    as_list = [NDData(im) for im in images]
    np.testing.assert_array_equal(vae.transform(None, as_list)[0], vae.transform(None, images)[0])


# ----------------------------------------------------------------------------------------
# interpretability
# ----------------------------------------------------------------------------------------
def test_top_latent_dimensions_finds_planted_dimension():
    rng = np.random.default_rng(0)
    latents = rng.normal(size=(400, 32))
    target = rng.normal(size=400)
    latents[:, 5] = target + rng.normal(0, 0.3, 400)
    latents[:, 17] *= 50.0  # large raw scale but unrelated: standardisation must ignore it
    top = top_latent_dimensions(latents, target, k=3)
    assert top.shape == (3,) and top[0] == 5
    target_nan = target.copy()
    target_nan[:10] = np.nan
    assert top_latent_dimensions(latents, target_nan, k=1)[0] == 5
    with pytest.raises(ValueError):
        top_latent_dimensions(latents, target[:10])


def test_perturbational_decoding(vae):
    images, _ = blobs(1, seed=9)
    deltas = np.linspace(-2, 2, 5)
    grid = perturbational_decoding(vae, images[0], dims=[3, 7], deltas=deltas)
    assert grid.shape == (2, 5, 3, SIZE, SIZE) and grid.dtype == np.float32
    mu, _ = vae.encode(images)
    np.testing.assert_allclose(grid[0, 2], vae.decode(mu)[0], rtol=1e-5, atol=1e-5)  # delta 0
    from_latent = perturbational_decoding(vae, mu[0], dims=[3, 7], deltas=deltas, scale=np.ones(32))
    np.testing.assert_allclose(from_latent, grid, rtol=1e-5, atol=1e-5)
    assert not np.allclose(grid[0, 0], grid[0, -1])
    with pytest.raises(ValueError):
        perturbational_decoding(vae, mu[0], dims=[40])

    fig = plot_perturbation_grid(grid, [3, 7], deltas, "log SFR")
    assert len(fig.axes) == 10
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_embedding_pca_path():
    rng = np.random.default_rng(1)
    latents = rng.normal(size=(200, 32)) * np.linspace(3, 0.1, 32)
    a = embed_latents(latents, method="pca")
    b = embed_latents(latents.copy(), method="pca")
    assert a.shape == (200, 2)
    np.testing.assert_array_equal(a, b)
    # principal axes are uncorrelated
    assert abs(np.corrcoef(a.T)[0, 1]) < 1e-8
    if importlib.util.find_spec("umap") is None:  # (not imported when present: numba takes a second)
        with pytest.raises(ImportError, match="umap-learn"):
            embed_latents(latents, method="umap")
        np.testing.assert_array_equal(embed_latents(latents, method="auto"), a)

    fig = plot_embedding(a, latents[:, 0], "latent 0")
    assert len(fig.axes) == 2  # the scatter and its colour bar
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_few_labelled_images_is_the_documented_image_path(mock_table, tiny):
    gp = GalaxyPosterior.few_labelled_images({"metallicity": "oh_p50"}, random_state=4, progress=False)
    params = gp.get_params()
    assert {k: params[k] for k in GalaxyPosterior.FEW_IMAGES} == GalaxyPosterior.FEW_IMAGES
    assert params["photometry"] is None and params["targets"] == {"metallicity": "oh_p50"}
    vae, stats = params["encoder"]
    assert stats == "image_stats" and isinstance(vae, VAEEncoder) and not vae.is_fitted
    vae_params = vae.get_params()
    assert {k: vae_params[k] for k in GalaxyPosterior.FEW_IMAGES_VAE} == GalaxyPosterior.FEW_IMAGES_VAE
    assert vae_params["random_state"] == 4 and vae_params["progress"] is False  # seeded like the estimator
    # the settings can be replaced; photometry adds its encoder; another image encoder replaces the VAE
    other = VAEEncoder(image_size=SIZE, max_epochs=1, random_state=0, progress=False)
    gp = GalaxyPosterior.few_labelled_images(["redshift"], light_statistics=False, vae=other,
                                             photometry=[f"modelMag_{b}" for b in "ugriz"], n_ensemble=2,
                                             **{k: v for k, v in tiny(["redshift"]).items() if k != "targets"})
    assert gp.encoder == [other, "photometry"] and gp.n_ensemble == 2 and gp.validation_fraction == 0.2
    table = mock_table[:80]
    images, _ = blobs(len(table), seed=15)
    gp.fit(table, images=images)
    assert [type(e).__name__ for e in gp.encoders_] == ["VAEEncoder", "PhotometryEncoder"]
    assert gp.member_encoders_[1][0] is not gp.member_encoders_[0][0]  # each member its own VAE
