"""Aleatoric/epistemic decomposition of deep ensembles (seed paper Table 2).

The known-answer tests use a fake fitted model whose "networks" return samples
with exactly known per-member means and variances, so the decomposition must
reproduce the analytic values; one integration test checks a real tiny
ensemble against the spread of its own mixture samples.
"""

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.table import Table

from astro_galpost import GalaxyPosterior, NotFittedError
from astro_galpost.evaluation import member_moments, uncertainty_decomposition
from astro_galpost.model.targets import TARGETS

NAMES = {"log_mstar": "lgm_tot_p50", "halpha": "h_alpha_flux"}


class FakeNet:
    """Samples (S, N, T) = mu[rows] + sd[rows] * z[:, rows] in standardised space."""

    def __init__(self, mu, sd, z):
        self.mu, self.sd, self.z = mu, sd, z

    def sample(self, x, n):
        rows = x[:, 0].long().numpy()
        z = self.z[:n, rows] if self.z is not None else torch.randn(n, len(rows), self.mu.shape[1]).numpy()
        return torch.as_tensor(self.mu[rows] + self.sd[rows] * z, dtype=torch.float32), {}


class FakeModel(GalaxyPosterior):
    """A fitted GalaxyPosterior whose networks and encoder are replaced by known answers.

    The decomposition reaches it through the public `GalaxyPosterior.sample_members`.
    """

    def __init__(self, mus, sds, z=None, scale=(0.5, 2.0), offset=(10.0, 2.0), usable=None):
        super().__init__(targets=dict(NAMES), random_state=0, progress=False)
        self.networks_ = [FakeNet(m, s, z) for m, s in zip(mus, sds)]
        self.n_ensemble = len(self.networks_)
        self.targets_ = dict(NAMES)
        self.label_scale_ = np.array(scale)
        self.label_mean_ = np.array(offset)
        self.random_state = 0
        self.device = "cpu"
        self._usable = usable

    def _encode(self, table, images):
        x = np.asarray(table["idx"], dtype=np.float32)[:, None]
        ok = np.ones(len(table), bool) if self._usable is None else self._usable[np.asarray(table["idx"])]
        return [x] * len(self.networks_), ok


def _exact_normal(rng, shape):
    """Draws with exactly zero mean and unit (ddof=1) variance along axis 0."""
    z = rng.normal(size=shape)
    z -= z.mean(axis=0)
    return z / z.std(axis=0, ddof=1)


def _constructed(k=3, n=40, s=64, seed=0):
    rng = np.random.default_rng(seed)
    mus = rng.normal(0, 0.3, (k, n, 2))
    sds = rng.uniform(0.5, 1.5, (k, n, 2))
    z = _exact_normal(rng, (s, n, 2))
    return mus, sds, z, Table({"idx": np.arange(n)})


def test_known_answer_constructed_ensemble():
    mus, sds, z, table = _constructed()
    scale = np.array([0.5, 2.0])
    model = FakeModel(mus, sds, z, scale=scale)
    tab, per = uncertainty_decomposition(model, table, n_samples=64, mc_correction=False, per_galaxy=True,
                                         batch_size=16)
    ale2 = np.mean(sds**2, axis=0) * scale**2          # (N, T)
    epi2 = np.var(mus, axis=0, ddof=0) * scale**2
    assert list(tab["quantity"]) == ["sigma_ale", "sigma_epi", "sigma_tot"]
    assert tab.colnames == ["quantity", "log_mstar", "halpha"]
    for j, name in enumerate(NAMES):
        col = tab[name].to_value(u.dex)
        np.testing.assert_allclose(col[0], np.sqrt(ale2[:, j].mean()), rtol=1e-5)
        np.testing.assert_allclose(col[1], np.sqrt(epi2[:, j].mean()), rtol=1e-5)
        np.testing.assert_allclose(col[2], np.hypot(col[0], col[1]), rtol=1e-12)
        np.testing.assert_allclose(per[f"{name}_sigma_ale"].value, np.sqrt(ale2[:, j]), rtol=1e-5)
        np.testing.assert_allclose(per[f"{name}_sigma_epi"].value, np.sqrt(epi2[:, j]), rtol=1e-4)
    assert tab.meta["n_ensemble"] == 3 and tab.meta["n_galaxies"] == {"log_mstar": 40, "halpha": 40}
    assert tab.meta["space"]["halpha"] == "log10"
    # "mean" averages the per-galaxy sigma instead of the variances
    mean_tab = uncertainty_decomposition(model, table, n_samples=64, mc_correction=False, average="mean")
    np.testing.assert_allclose(mean_tab["log_mstar"][0].value, np.sqrt(ale2[:, 0]).mean(), rtol=1e-5)


def test_member_moments_are_in_model_space():
    mus, sds, z, table = _constructed(k=2, n=10)
    model = FakeModel(mus, sds, z, scale=(0.5, 2.0), offset=(10.0, 2.0))
    means, variances, usable = member_moments(model, table, n_samples=64)
    assert means.shape == variances.shape == (2, 10, 2) and usable.all()
    np.testing.assert_allclose(means, mus * [0.5, 2.0] + [10.0, 2.0], atol=1e-5)
    np.testing.assert_allclose(variances, sds**2 * [0.25, 4.0], rtol=1e-4)


def test_mc_correction_removes_sampling_noise_of_identical_members():
    rng = np.random.default_rng(1)
    n, k, s = 300, 5, 100
    mu = rng.normal(0, 1, (n, 2))
    sd = np.ones((n, 2))
    model = FakeModel([mu] * k, [sd] * k, z=None, scale=(1.0, 1.0), offset=(0.0, 0.0))
    table = Table({"idx": np.arange(n)})
    torch.manual_seed(0)
    raw = uncertainty_decomposition(model, table, n_samples=s, mc_correction=False)
    fixed = uncertainty_decomposition(model, table, n_samples=s, mc_correction=True)
    expected_noise = np.sqrt((k - 1) / k / s)  # sigma_ale = 1
    assert raw["log_mstar"][1].value == pytest.approx(expected_noise, rel=0.1)
    assert fixed["log_mstar"][1].value < 0.3 * expected_noise
    assert fixed["log_mstar"][0].value == pytest.approx(1.0, rel=0.03)


def test_unusable_rows_and_labelled_only():
    mus, sds, z, table = _constructed(k=2, n=20)
    usable = np.arange(20) % 4 != 0
    model = FakeModel(mus, sds, z, usable=usable)
    table["lgm_tot_p50"] = np.where(np.arange(20) < 10, 10.0, -9999.0)  # half without labels
    table["h_alpha_flux"] = np.full(20, 50.0)
    tab, per = uncertainty_decomposition(model, table, n_samples=64, per_galaxy=True, labelled_only=True)
    assert np.all(np.isnan(per["log_mstar_sigma_ale"][~usable]))
    assert list(per["usable"]) == list(usable)
    assert tab.meta["n_galaxies"] == {"log_mstar": int(usable[:10].sum()), "halpha": int(usable.sum())}
    sub = uncertainty_decomposition(model, table, n_samples=64, targets=["halpha"])
    assert sub.colnames == ["quantity", "halpha"]


def test_log1p_line_space_matches_paper_convention():
    rng = np.random.default_rng(2)
    n, s = 30, 64
    mu = np.column_stack([np.zeros(n), np.full(n, 1.5)])  # halpha ~ 10**(2*1.5 + 2) = 1e5
    sd = np.full((n, 2), 0.005)
    z = _exact_normal(rng, (s, n, 2))
    model = FakeModel([mu, mu], [sd, sd], z)
    table = Table({"idx": np.arange(n)})
    log10 = uncertainty_decomposition(model, table, n_samples=s, line_space="log10")
    log1p = uncertainty_decomposition(model, table, n_samples=s, line_space="log1p")
    assert log10["halpha"][0].value == pytest.approx(0.01, rel=1e-4)
    assert log1p["halpha"][0].value == pytest.approx(np.log(10) * 0.01, rel=1e-3)
    assert log1p["halpha"].unit == u.dimensionless_unscaled
    assert log1p.meta["space"]["halpha"] == "log1p"
    # non-line targets do not change
    assert log1p["log_mstar"][0] == log10["log_mstar"][0]


def test_needs_a_fitted_ensemble(mock_table):
    with pytest.raises(NotFittedError):
        uncertainty_decomposition(GalaxyPosterior(), mock_table[:10])
    mus, sds, z, table = _constructed(k=1, n=5)
    with pytest.raises(ValueError, match="n_ensemble >= 2"):
        uncertainty_decomposition(FakeModel(mus, sds, z), table)
    mus, sds, z, table = _constructed(k=2, n=5)
    with pytest.raises(ValueError, match="average"):
        uncertainty_decomposition(FakeModel(mus, sds, z), table, average="max")
    with pytest.raises(ValueError, match="not modelled"):
        uncertainty_decomposition(FakeModel(mus, sds, z), table, targets=["redshift"])


def test_real_ensemble_total_matches_mixture_spread(mock_table, tiny):
    torch.set_num_threads(1)
    gp = GalaxyPosterior(n_ensemble=2, random_state=3, **tiny(["log_mstar", "redshift", "halpha", "hbeta"]))
    gp.fit(mock_table[:400])
    test = mock_table[600:700]
    tab, per = uncertainty_decomposition(gp, test, n_samples=300, per_galaxy=True, mc_correction=False)
    mix = gp.sample(test, n_samples=600)
    for name in ("log_mstar", "redshift", "halpha"):
        values = mix[name].distribution.value
        if name == "halpha":
            values = TARGETS[name].to_model(values)
        mixture_rms = np.sqrt(np.mean(np.var(values, axis=1)))
        assert tab[name][2].value == pytest.approx(mixture_rms, rel=0.06), name
        assert np.all(np.isfinite(per[f"{name}_sigma_tot"]))
    assert tab["log_mstar"].unit == u.dex and tab["redshift"].unit == u.dimensionless_unscaled
