"""Joint posteriors: conditional imputation of missing labels, chained groups, measurability.

Known answers: a bivariate Gaussian whose second coordinate is missing for 60%
of the rows keeps its correlation; a chained group reproduces a known
conditional; the classifier of a detectable group reweights the chained
values it is conditioned on.
"""

import numpy as np
import pytest
import torch

from astro_galpost import GalaxyPosterior
from astro_galpost.model.network import GroupSpec, PosteriorNetwork
from astro_galpost.model.targets import (
    GROUPS,
    TARGETS,
    Target,
    TargetGroup,
    group_order,
    register_group,
    register_target,
)
from astro_galpost.model.training import split_indices, train_network

TINY_FLOW = {"transforms": 2, "hidden_features": (16, 16)}


def _within_galaxy_corr(samples: np.ndarray) -> float:
    """Mean over galaxies of the correlation of columns 0 and 1 of (S, N, 2) samples."""
    return float(np.mean([np.corrcoef(samples[:, i, 0], samples[:, i, 1])[0, 1] for i in range(samples.shape[1])]))


def _fit(net, x, y, valid, epochs=40):
    train, val = split_indices(len(x), 0.15, np.random.default_rng(1))
    return train_network(net, x, y, valid, train_index=train, val_index=val, max_epochs=epochs,
                         patience=15, batch_size=128, progress=False)


def _bivariate(n, rng, rho=0.8):
    """Features (n, 2); labels whose residuals given the features have correlation ``rho``."""
    x = rng.normal(size=(n, 2)).astype(np.float32)
    e = rng.multivariate_normal([0, 0], [[0.25, 0.25 * rho], [0.25 * rho, 0.25]], size=n)
    y = np.stack([x[:, 0] + e[:, 0], 0.5 * x[:, 1] + e[:, 1]], axis=1)
    return x, (y - y.mean(0)) / y.std(0)


def test_missing_coordinate_keeps_correlation():
    # 60% of the second coordinate missing at random: an unconditional imputation
    # learns about (1 - 0.6) x 0.8; the conditional one keeps 0.8
    rng = np.random.default_rng(0)
    x, y = _bivariate(1500, rng)
    valid = np.ones_like(y, bool)
    valid[:, 1] = rng.random(len(y)) > 0.6
    torch.manual_seed(0)
    net = PosteriorNetwork(2, [GroupSpec("pair", [0, 1], "realnvp", TINY_FLOW)], representation=16, hidden=16)
    _fit(net, x, y, valid)
    samples, _ = net.sample(torch.as_tensor(x[:300]), 300)
    assert _within_galaxy_corr(samples.numpy()) == pytest.approx(0.8, abs=0.05)


def test_impute_changes_only_missing_labels():
    rng = np.random.default_rng(1)
    x, y = _bivariate(200, rng)
    valid = np.ones_like(y, bool)
    valid[::2, 1] = False
    net = PosteriorNetwork(2, [GroupSpec("pair", [0, 1], "realnvp", TINY_FLOW)], representation=16, hidden=16)
    yt = torch.as_tensor(np.where(valid, y, 0.0), dtype=torch.float32)
    new = net.impute(torch.as_tensor(x), yt, torch.as_tensor(valid), n_steps=5)
    assert torch.equal(new[torch.as_tensor(valid)], yt[torch.as_tensor(valid)])
    assert (new[~torch.as_tensor(valid)] != 0).float().mean() > 0.5  # the chains moved


def test_leaf_group_without_labels_is_not_imputed():
    # a chained group that nothing is conditioned on is marginalised exactly: no chain
    net = PosteriorNetwork(2, [GroupSpec("a", [0], "affine1d"), GroupSpec("b", [1], "affine1d", condition_on=[0])],
                           representation=8, hidden=8)
    y = torch.zeros(10, 2)
    valid = torch.ones(10, 2, dtype=torch.bool)
    valid[:, 1] = False
    assert torch.equal(net.impute(torch.randn(10, 2), y, valid), y)


def test_classifier_context_is_imputed():
    # "not measurable" is observed in every row: the values its classifier reads matter
    net = PosteriorNetwork(2, [GroupSpec("a", [0], "affine1d"), GroupSpec("b", [1], "affine1d", condition_on=[0],
                                                                          detect=True)],
                           representation=8, hidden=8)
    y = torch.zeros(10, 2)
    valid = torch.zeros(10, 2, dtype=torch.bool)
    new = net.impute(torch.randn(10, 2), y, valid, n_steps=5)
    assert (new[:, 0] != 0).any() and torch.equal(new[:, 1], y[:, 1])


def test_chained_group_reproduces_known_conditional():
    # b | a, x ~ N(x1 + 0.8 (a - x0), 0.6²): the chain a -> b learns slope 0.8 and width 0.6
    rng = np.random.default_rng(2)
    n = 1500
    x = rng.normal(size=(n, 2)).astype(np.float32)
    ea, eb = rng.normal(size=(2, n))
    y = np.stack([x[:, 0] + ea, x[:, 1] + 0.8 * ea + 0.6 * eb], axis=1)
    valid = np.ones_like(y, bool)
    valid[:, 1] = rng.random(n) > 0.5  # a missing leaf: exact marginalisation
    torch.manual_seed(0)
    net = PosteriorNetwork(2, [GroupSpec("a", [0], "affine1d"), GroupSpec("b", [1], "affine1d", condition_on=[0])],
                           representation=16, hidden=16)
    _fit(net, x, y, valid)
    samples, _ = net.sample(torch.as_tensor(x[:200]), 400)
    s = samples.numpy()
    slopes = [np.polyfit(s[:, i, 0], s[:, i, 1], 1)[0] for i in range(200)]
    widths = [np.std(s[:, i, 1] - np.polyval(np.polyfit(s[:, i, 0], s[:, i, 1], 1), s[:, i, 0])) for i in range(200)]
    assert np.median(slopes) == pytest.approx(0.8, abs=0.1)
    assert np.median(widths) == pytest.approx(0.6, abs=0.08)


class _LogitOfLast(torch.nn.Module):
    """A classifier whose logit is ``slope`` times the last context column."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def forward(self, context):
        return self.slope * context[..., -1:]


def test_measurable_classifier_reweights_chained_values():
    # P(measurable | a) = sigmoid(200 a): the measurable group's draws are conditioned on a > 0
    # (all but the 0.3% of p(a | measurable) that lies below 0)
    torch.manual_seed(0)
    groups = [GroupSpec("a", [0], "affine1d"), GroupSpec("m", [1], "affine1d", condition_on=[0], detect=True)]
    net = PosteriorNetwork(1, groups, representation=4, hidden=4).eval()
    given = torch.randn(2000, 3, 1)
    net.detectors["m"] = _LogitOfLast(200.0)
    prob, kept = net._measurable(torch.zeros(3, 4), given, net.groups[1])
    assert torch.allclose(prob, torch.sigmoid(200.0 * given).mean(0).squeeze(-1))
    assert prob.numpy() == pytest.approx(0.5, abs=0.05)
    assert (kept > 0).float().mean() > 0.99
    # a classifier that ignores the chained values keeps every draw paired with its own
    net.detectors["m"] = _LogitOfLast(0.0)
    _, same = net._measurable(torch.zeros(3, 4), given, net.groups[1])
    assert torch.equal(same, given)


def test_groups_are_declared_and_ordered():
    assert GROUPS["metallicity"].condition_on == ("core", "lines")
    assert GROUPS["metallicity"].detect
    assert GROUPS["black_hole"].condition_on == ("core",)
    assert group_order(["metallicity", "lines", "core"]) == ["core", "lines", "metallicity"]
    assert group_order(["metallicity"]) == ["metallicity"]  # absent parents are skipped


def test_plugin_group_declares_its_chain(mock_table):
    register_group(TargetGroup("dust", "affine1d", condition_on=("core",)))
    register_target(Target("av_test", "mag", "av_gas", "dust", description="test dust"))
    try:
        gp = GalaxyPosterior(targets=["log_mstar", "log_sfr", "av_test"])
        specs, flows = gp._group_specs(["av_test", "log_mstar", "log_sfr"])
        assert [s.name for s in specs] == ["core", "dust"]
        assert specs[1].condition_on == [1, 2]
        assert flows == {"core": "realnvp", "dust": "affine1d"}
    finally:
        TARGETS.unregister("av_test")
        GROUPS.unregister("dust")


def test_cyclic_groups_are_refused():
    register_group(TargetGroup("cyc_a", condition_on=("cyc_b",)))
    register_group(TargetGroup("cyc_b", condition_on=("cyc_a",)))
    try:
        with pytest.raises(ValueError, match="cycle"):
            group_order(["cyc_a", "cyc_b"])
    finally:
        GROUPS.unregister("cyc_a")
        GROUPS.unregister("cyc_b")
