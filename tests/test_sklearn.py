"""The estimator, its encoders and the OOD scorer follow scikit-learn's conventions.

`get_params`/`set_params`/`clone` round-trip, ``__init__`` only stores (checks
happen in `fit`), `fit` never fits the encoder objects it is given, encoders
named by registry name are built through one hook (`Encoder.from_estimator`),
and `GalaxyPosterior.sample_members` gives each ensemble member's draws.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone

from astro_galpost import (
    ENCODERS,
    GalaxyPosterior,
    NotFittedError,
    PhotometryEncoder,
    VAEEncoder,
)
from astro_galpost.encoders import register_encoder
from astro_galpost.model.ood import NeighbourDistance
from astro_galpost.model.targets import TARGETS

BANDS = [f"modelMag_{b}" for b in "ugriz"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def ensemble(mock_table, tiny):
    """A tiny fitted two-member ensemble of three targets."""
    gp = GalaxyPosterior(**tiny(["log_mstar", "redshift", "halpha"], n_ensemble=2, random_state=3))
    return gp.fit(mock_table[:300])


# ------------------------------------------------------------------ clone, params, repr
def test_clone_round_trips_the_parameters():
    user = PhotometryEncoder(tuple(BANDS[1:]), errors=None, min_bands=2, extra={"petroR50_r": "log"})
    gp = GalaxyPosterior(targets={"redshift": "z"}, photometry=BANDS, encoder=["photometry", user],
                         flows={"core": "nsf"}, n_ensemble=3, dropout=0.1, random_state=5, max_epochs=7)
    twin = clone(gp)
    assert twin is not gp and twin.encoder[1] is not user
    params, twin_params = gp.get_params(deep=True), twin.get_params(deep=True)
    assert params.keys() == twin_params.keys()
    for name, value in params.items():
        if isinstance(value, list):  # the encoder list holds a (cloned) encoder object
            assert [repr(v) for v in twin_params[name]] == [repr(v) for v in value]
        else:
            assert twin_params[name] == value, name
    assert twin.encoder[1].get_params() == user.get_params()


def test_clone_of_a_fitted_estimator_is_unfitted(ensemble, mock_table):
    twin = clone(ensemble)
    assert twin.get_params() == ensemble.get_params()
    for fitted in ("networks_", "encoders_", "ood_", "targets_"):
        assert hasattr(ensemble, fitted) and not hasattr(twin, fitted), fitted
    with pytest.raises(NotFittedError):
        twin.sample(mock_table[:3], n_samples=5)
    assert ensemble.sample(mock_table[:3], n_samples=5)["redshift"].shape == (3,)


def test_init_only_stores_and_fit_validates(mock_table, tiny):
    gp = GalaxyPosterior(**tiny(["redshift"], n_ensemble=0, dropout=1.5))  # no error yet
    assert gp.n_ensemble == 0 and gp.dropout == 1.5
    with pytest.raises(ValueError, match=r"n_ensemble must be .auto. or a whole number >= 1, got 0"):
        gp.fit(mock_table[:100])
    gp.set_params(n_ensemble=1)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\), got 1.5"):
        gp.fit(mock_table[:100])


def test_repr_with_unknown_names_touches_no_registry():
    gp = GalaxyPosterior(targets=["no_such_target"], encoder=["no_such_encoder"], n_ensemble=4)
    assert repr(gp) == "GalaxyPosterior(targets=['no_such_target'], encoder=['no_such_encoder'], n_ensemble=4)"
    assert "no_such_encoder" not in ENCODERS and "no_such_target" not in TARGETS


# ------------------------------------------------------------------ encoders
def test_user_encoder_object_is_cloned_not_fitted(mock_table, tiny):
    user = PhotometryEncoder(BANDS, min_bands=3)
    gp = GalaxyPosterior(**tiny(["redshift"], encoder=user, random_state=0)).fit(mock_table[:200])
    assert not user.is_fitted
    fitted = gp.encoders_[0]
    assert fitted is not user and fitted.is_fitted and fitted.get_params() == user.get_params()


def _images(n, seed, size=16):
    """Gaussian blobs of random width and brightness in three bands, (n, 3, size, size)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    width = rng.uniform(1.5, 4.0, n)[:, None, None]
    blob = np.exp(-0.5 * (xx**2 + yy**2) / width**2)
    flux = rng.uniform(0.5, 2.0, (n, 3))[:, :, None, None]
    return (flux * blob[:, None] + rng.normal(0, 0.02, (n, 3, size, size))).astype(np.float32)


def test_second_fit_with_a_user_vae_does_not_reuse_the_first(mock_table, tiny):
    vae = VAEEncoder(latent_dim=4, image_size=16, channels=(4, 8, 8), max_epochs=1, batch_size=16,
                     random_state=0, progress=False)
    gp = GalaxyPosterior(**tiny(["redshift"], encoder=[vae, "photometry"], random_state=0))
    table = mock_table[:80]
    gp.fit(table, images=_images(len(table), seed=1))
    first = gp.encoders_[0]
    first_weights = {k: v.clone() for k, v in first.model_.state_dict().items()}
    gp.fit(table, images=_images(len(table), seed=2))  # other images: a refitted VAE has other weights
    second = gp.encoders_[0]
    assert not vae.is_fitted
    assert second is not first and second is not vae and second.is_fitted
    assert any(not torch.equal(v, first_weights[k]) for k, v in second.model_.state_dict().items())
    # the first fit's VAE was not touched by the second fit
    assert all(torch.equal(v, first_weights[k]) for k, v in first.model_.state_dict().items())


class _HookedEncoder(PhotometryEncoder):
    """A photometry encoder that takes the first three estimator bands and the estimator's seed."""

    name = "hooked_test_encoder"
    estimator_options = ("photometry", "random_state")

    def __init__(self, columns, seed=None):
        super().__init__(columns)
        self.seed = seed

    @classmethod
    def from_estimator(cls, photometry=None, random_state=None):
        return cls(list(photometry)[:3], seed=random_state)


def test_named_encoders_get_their_estimator_options(mock_table, tiny):
    register_encoder(_HookedEncoder)
    try:
        gp = GalaxyPosterior(**tiny(["redshift"], encoder="hooked_test_encoder", random_state=7))
        gp.fit(mock_table[:200])
        assert gp.encoders_[0].columns == BANDS[:3] and gp.encoders_[0].seed == 7
        _HookedEncoder.estimator_options = ("photometry", "no_such_option")
        with pytest.raises(TypeError, match=r"encoder 'hooked_test_encoder' .* \['no_such_option'\]"):
            gp.fit(mock_table[:200])
    finally:
        ENCODERS.unregister("hooked_test_encoder")
        _HookedEncoder.estimator_options = ("photometry", "random_state")


def test_photometry_encoder_needs_photometry(mock_table, tiny):
    gp = GalaxyPosterior(**tiny(["redshift"], photometry=None, encoder="photometry"))
    with pytest.raises(ValueError, match="encoder 'photometry' needs magnitude columns, but photometry=None"):
        gp.fit(mock_table[:100])


# ------------------------------------------------------------------ OOD scorer
def _brute_force_scores(reference, x, k, quantile):
    """Mean distance to the k nearest reference points, over the leave-one-out quantile."""
    def mean_knn(points, exclude_self):
        d = np.sqrt(((points[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
        d = np.sort(d, axis=1)[:, int(exclude_self):k + int(exclude_self)]
        return d.mean(axis=1)

    threshold = np.quantile(mean_knn(reference, True), quantile)
    return mean_knn(x, False) / threshold


def test_neighbour_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(300, 6)).astype(np.float32)
    x = (rng.normal(size=(50, 6)) * 2).astype(np.float32)
    ood = NeighbourDistance(k=5, quantile=0.9).fit(reference)
    np.testing.assert_allclose(ood.score(x), _brute_force_scores(reference.astype(float), x, 5, 0.9), rtol=1e-5)
    again = NeighbourDistance.from_config(ood.get_config(), ood.get_arrays())
    np.testing.assert_array_equal(again.score(x), ood.score(x))
    assert clone(ood).get_params() == ood.get_params() and not hasattr(clone(ood), "threshold_")


def test_neighbour_distance_counts_repeated_rows_once():
    """A training table repeated 12 times made every row its own neighbour at distance 0: the
    threshold fell to 1e-7 and every new galaxy was flagged."""
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(100, 4)).astype(np.float32)
    once = NeighbourDistance(k=5, quantile=0.99).fit(reference)
    repeated = NeighbourDistance(k=5, quantile=0.99).fit(np.tile(reference, (12, 1)))
    assert repeated.threshold_ == pytest.approx(once.threshold_)
    new = rng.normal(size=(2000, 4)).astype(np.float32)
    assert np.mean(repeated.score(new) > 1) < 0.05
    with pytest.raises(ValueError, match="two distinct"):
        NeighbourDistance().fit(np.ones((10, 4)))


@pytest.mark.parametrize(("params", "message"), [
    ({"k": 0}, r"k must be a whole number >= 1, got 0"),
    ({"quantile": 1.5}, r"quantile must be a number in \(0, 1\], got 1.5"),
    ({"max_reference": 1}, r"max_reference must be a whole number >= 2, got 1"),
])
def test_neighbour_distance_validates_in_fit(params, message):
    ood = NeighbourDistance(**params)  # stores only
    with pytest.raises(ValueError, match=message):
        ood.fit(np.zeros((10, 2)))


# ------------------------------------------------------------------ per-member sampling
def test_sample_members_shapes_and_spaces(ensemble, mock_table):
    table = mock_table[600:650]
    batches = list(ensemble.sample_members(table, n_samples=30, batch_size=20, random_state=1))
    assert [b.rows for b in batches] == [slice(0, 20), slice(20, 40), slice(40, 50)]
    assert [b.samples.shape for b in batches] == [(2, 20, 30, 3), (2, 20, 30, 3), (2, 10, 30, 3)]
    catalog = np.concatenate([b.samples for b in batches], axis=1)
    model = np.concatenate([b.samples for b in ensemble.sample_members(table, n_samples=30, batch_size=20,
                                                                       random_state=1, space="model")], axis=1)
    for j, name in enumerate(ensemble.targets_):
        np.testing.assert_allclose(catalog[..., j], TARGETS[name].from_model(model[..., j]), rtol=1e-12)
    # the two members are different networks: their posterior means differ
    means = model.mean(axis=2)
    assert np.abs(means[0] - means[1]).mean() > 1e-3


def test_sample_members_is_reproducible_in_chunks(ensemble, mock_table):
    table = mock_table[600:664]
    whole = np.concatenate([b.samples for b in ensemble.sample_members(table, n_samples=8, batch_size=16)], axis=1)
    chunks = [b.samples for start in (0, 32) for b in ensemble.sample_members(
        table[start:start + 32], n_samples=8, batch_size=16, row_offset=start)]
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    other = np.concatenate([b.samples for b in ensemble.sample_members(table, n_samples=8, batch_size=16,
                                                                       random_state=99)], axis=1)
    assert not np.array_equal(other, whole)


def test_sample_members_checks_its_arguments(ensemble, mock_table, tiny):
    with pytest.raises(ValueError, match="space must be 'catalog' or 'model', got 'dex'"):
        ensemble.sample_members(mock_table[:5], space="dex")
    with pytest.raises(ValueError, match="n_samples must be a whole number >= 1, got 0"):
        ensemble.sample_members(mock_table[:5], n_samples=0)
    with pytest.raises(NotFittedError):
        GalaxyPosterior(**tiny(["redshift"])).sample_members(mock_table[:5])


def test_vae_named_by_the_estimator_takes_its_seed_device_and_progress():
    from astro_galpost import VAEEncoder

    assert set(VAEEncoder.estimator_options) == {"random_state", "device", "progress"}
    gp = GalaxyPosterior(encoder="vae", photometry=None, random_state=3, progress=False)
    options = {name: getattr(gp, name) for name in VAEEncoder.estimator_options}
    vae = VAEEncoder.from_estimator(**options)
    assert (vae.random_state, vae.device, vae.progress) == (3, "cpu", False)
    assert not vae.is_fitted


def test_every_encoder_has_scikit_learn_params():
    from astro_galpost.encoders import ENCODERS

    for name in ENCODERS:
        encoder = ENCODERS.get(name)() if name != "photometry" else ENCODERS.get(name)(["a", "b"])
        assert clone(encoder).get_params() == encoder.get_params(), name
