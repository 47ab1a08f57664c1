import numpy as np
import pytest
import torch

from astro_galpost import GalaxyPosterior
from astro_galpost.model.network import GroupSpec, PosteriorNetwork
from astro_galpost.model.recalibration import (
    SCALE_GRID,
    _best_shift,
    central_coverage_error,
    fit_recalibration,
    fit_width_factor,
    fit_width_map,
    narrow_mixture,
)


def test_coverage_error_is_small_for_uniform_pit_and_large_for_narrow():
    rng = np.random.default_rng(0)
    assert central_coverage_error(rng.uniform(size=20000)) < 1e-4
    # a posterior half as wide as it should be puts the truth in its tails
    z = rng.normal(size=20000)
    from scipy.stats import norm
    assert central_coverage_error(norm.cdf(2 * z)) > 0.01


@pytest.mark.parametrize("true_width", [0.6, 1.0, 1.5])
def test_width_factor_recovers_the_width_ratio(true_width):
    rng = np.random.default_rng(1)
    resid = rng.normal(size=(400, 3000))  # the flow's residual draws: unit width
    offset = rng.normal(scale=true_width, size=3000)  # what the truths need
    assert fit_width_factor(resid, np.zeros(1), offset, n_bootstrap=0)[0] == pytest.approx(true_width, rel=0.05)


def test_width_factor_interval_covers_the_true_factor_as_often_as_it_says():
    # calibrated Gaussian draws need factor 1; its 16th-84th percentile interval
    # over bootstrap resamples of 300 rows should contain 1 in about 68% of draws of the rows
    rng = np.random.default_rng(7)
    inside, half_widths = [], []
    for _ in range(60):
        tau, (low, high) = fit_width_factor(rng.normal(size=(100, 300)), np.zeros(1), rng.normal(size=300),
                                            rng=rng)
        assert low <= tau <= high
        inside.append(low <= 1.0 <= high)
        half_widths.append((high - low) / 2)
    assert 0.5 < np.mean(inside) < 0.85
    # about 0.85 / sqrt(300) = 0.049
    assert 0.03 < np.median(half_widths) < 0.06
    # four times the rows: half the spread
    quarter = [np.diff(fit_width_factor(rng.normal(size=(100, 1200)), np.zeros(1), rng.normal(size=1200),
                                        rng=rng)[1])[0] / 2 for _ in range(10)]
    assert 1.5 < np.median(half_widths) / np.median(quarter) < 2.7


def test_width_factor_without_bootstrap_has_no_interval():
    rng = np.random.default_rng(0)
    tau, interval = fit_width_factor(rng.normal(size=(50, 100)), np.zeros(1), rng.normal(size=100), n_bootstrap=0)
    assert SCALE_GRID[0] <= tau <= SCALE_GRID[-1] and np.all(np.isnan(interval))


def test_width_factor_acts_about_the_flows_centre_not_the_mean_head():
    # the flow moves each posterior far from the mean head (as photo-z flows do):
    # centres scatter by 3, draws about them have unit width, truths need width 1.3
    rng = np.random.default_rng(4)
    centre = rng.normal(scale=3.0, size=3000)
    resid = centre + rng.normal(size=(400, 3000))
    offset = centre + rng.normal(scale=1.3, size=3000)
    tau = fit_width_factor(resid, centre, offset, n_bootstrap=0)[0]
    assert tau == pytest.approx(1.3, rel=0.05)

    def coverage_68(c, t):
        pit = np.mean(c + t * (resid - c) < offset, axis=0)
        return np.mean(np.abs(pit - 0.5) <= 0.34)

    assert coverage_68(centre, tau) == pytest.approx(0.68, abs=0.02)
    # scaled about the mean head (centre 0) a wider posterior also moves away from the truth:
    # no factor reaches nominal coverage
    tau0 = fit_width_factor(resid, np.zeros(1), offset, n_bootstrap=0)[0]
    assert coverage_68(0.0, tau0) < 0.62


def test_scaling_keeps_a_one_target_posteriors_median():
    torch.manual_seed(0)
    groups = [GroupSpec("z", [0], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]})]
    net = PosteriorNetwork(3, groups, representation=16, hidden=16).eval()
    x = torch.randn(20, 3)
    with torch.inference_mode():
        torch.manual_seed(1)
        raw, _ = net.sample(x, 4000)
        net.residual_map.mul_(2.0)
        torch.manual_seed(1)
        wide, _ = net.sample(x, 4000)
    # the centre is the raw median up to sampling noise (its standard error is about 0.02 here)
    np.testing.assert_allclose(wide.median(dim=0).values, raw.median(dim=0).values, atol=0.06)
    np.testing.assert_allclose(wide.std(dim=0) / raw.std(dim=0), 2.0, rtol=1e-4)


@pytest.mark.parametrize("true_shift", [-0.2, 0.1])
def test_best_shift_recovers_a_bias(true_shift):
    rng = np.random.default_rng(2)
    resid = rng.normal(size=(400, 3000))
    offset = true_shift + rng.normal(size=3000)
    assert _best_shift(resid, offset) == pytest.approx(true_shift, abs=0.05)


def test_every_shift_is_applied():
    # no significance threshold: one would shift one of two correlated lines and not the
    # other, and bias their ratio
    rng = np.random.default_rng(3)
    resid, offset = rng.normal(size=(200, 300)), 0.02 + rng.normal(size=300)
    assert _best_shift(resid, offset) == pytest.approx(float(np.median(offset - np.median(resid, axis=0))))
    assert _best_shift(resid, offset) != 0.0


def test_only_a_target_alone_in_its_group_is_shifted():
    # a shift per target would move the core's targets against each other (and bias their
    # difference); a one-target group has no such structure to break
    net, x, y, valid = _net_and_data(noise=0.5)
    y = y + 0.3  # every target biased
    shifts, _, _ = fit_recalibration(net, x, y, valid, n_samples=100)
    assert np.all(shifts == 0.0)
    torch.manual_seed(0)
    groups = [GroupSpec("a", [0], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]}),
              GroupSpec("b", [1], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]})]
    lone = PosteriorNetwork(3, groups, representation=16, hidden=16)
    shifts, _, _ = fit_recalibration(lone, x, y, valid, n_samples=100)
    assert np.all(shifts != 0.0)
    np.testing.assert_array_equal(lone.residual_shift.numpy(), shifts)


def test_a_groups_map_gives_each_target_and_their_difference_its_width():
    # the second target's errors ask for a much smaller factor than the first's: one factor
    # for the group would be right for neither, and a factor per target alone would leave
    # their difference's width to chance; the map fits both targets and the difference
    net, x, y, valid = _net_and_data(noise=1.5)
    y[:, 1] *= 0.3
    _, scales, interval = fit_recalibration(net, x, y, valid, n_samples=100)
    with torch.inference_mode():
        draws, _ = net.sample(torch.as_tensor(x), 400)
    alone = [fit_recalibration(net, x, y, valid & (np.arange(2) == k), n_samples=100)[1][k] for k in range(2)]
    np.testing.assert_allclose(scales, alone, rtol=0.035)  # two steps of the grid: other draws
    assert scales[0] > 2 * scales[1]
    assert np.all(interval[0] <= scales) and np.all(scales <= interval[1])
    # each target and the difference: 68% coverage of the rows' truths as the factors were fitted for
    draws, truth = draws.numpy(), y
    for combination in ([1, 0], [0, 1], [1, -1]):
        pit = np.mean(draws @ np.array(combination, np.float32) < truth @ np.array(combination), axis=0)
        assert np.mean(np.abs(pit - 0.5) <= 0.34) == pytest.approx(0.68, abs=0.05)


def test_width_map_is_one_factor_when_every_combination_asks_for_it():
    # draws of two correlated targets, errors 1.5 times as wide in every direction: T = 1.5 I
    rng = np.random.default_rng(1)
    mix = np.array([[1.0, 0.0], [0.8, 0.6]])
    resid = rng.normal(size=(300, 4000, 2)) @ mix.T
    offset = 1.5 * rng.normal(size=(4000, 2)) @ mix.T
    width_map, factors, _ = fit_width_map(resid, np.zeros((1, 1, 2)), offset, scale=np.array([1.0, 2.0]),
                                          n_bootstrap=0)
    np.testing.assert_allclose(factors, 1.5, rtol=0.04)
    np.testing.assert_allclose(width_map, 1.5 * np.eye(2), atol=0.06)


def test_width_map_fits_a_difference_the_targets_alone_get_wrong():
    # each target's draws are as wide as its errors, but the errors are uncorrelated where the
    # draws are correlated at 0.5: the difference's errors are 1.4 times wider than its draws.
    # A factor per target (here 1) leaves that; the map widens the difference alone
    rng = np.random.default_rng(2)
    resid = rng.normal(size=(300, 4000, 2)) @ np.array([[1.0, 0.0], [0.5, np.sqrt(1 - 0.25)]]).T
    offset = rng.normal(size=(4000, 2))
    width_map, factors, _ = fit_width_map(resid, np.zeros((1, 1, 2)), offset, n_bootstrap=0)
    np.testing.assert_allclose(factors, 1.0, atol=0.04)

    def coverage(draws, a):
        pit = np.mean(draws @ a < offset @ a, axis=0)
        return np.mean(np.abs(pit - 0.5) <= 0.34)

    difference = np.array([1.0, -1.0])
    assert coverage(resid, difference) < 0.56
    mapped = resid @ width_map.T
    for a in ([1.0, 0.0], [0.0, 1.0], difference):
        assert coverage(mapped, np.array(a)) == pytest.approx(0.68, abs=0.03)


def test_width_map_fits_the_differences_of_the_targets_labelled_often_enough():
    # three targets, the second labelled for 20 rows: the first and third and their difference
    # (draws correlated at 0.5, errors uncorrelated) still get their widths
    rng = np.random.default_rng(4)
    mix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, np.sqrt(0.75)]])
    resid = rng.normal(size=(300, 4000, 3)) @ mix.T
    offset = rng.normal(size=(4000, 3))
    offset[20:, 1] = np.nan
    width_map, factors, _ = fit_width_map(resid, np.zeros((1, 1, 3)), offset, n_bootstrap=0)
    assert factors[1] == pytest.approx(1.0, abs=1e-9) and width_map[1, 1] == pytest.approx(1.0, abs=0.02)
    difference = np.array([1.0, 0.0, -1.0])
    pit = np.mean((resid @ width_map.T) @ difference < np.nan_to_num(offset) @ difference, axis=0)
    assert np.mean(np.abs(pit - 0.5) <= 0.34) == pytest.approx(0.68, abs=0.03)


def test_width_map_keeps_a_factor_for_a_target_labelled_too_rarely():
    # the pair's difference has too few rows: its covariance scales by the targets' factors
    rng = np.random.default_rng(3)
    resid = rng.normal(size=(200, 2000, 2)) @ np.array([[1.0, 0.0], [0.5, 0.8]]).T
    offset = 1.2 * rng.normal(size=(2000, 2)) @ np.array([[1.0, 0.0], [0.5, 0.8]]).T
    offset[20:, 1] = np.nan
    width_map, factors, interval = fit_width_map(resid, np.zeros((1, 1, 2)), offset, n_bootstrap=20)
    assert factors[1] == 1.0 and np.all(np.isnan(interval[:, 1]))
    assert factors[0] == pytest.approx(1.2, rel=0.05)
    np.testing.assert_allclose(width_map, np.diag(factors), atol=1e-8)


def _net_and_data(n=600, noise=0.5, seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = np.stack([x[:, 0] + noise * rng.normal(size=n), x[:, 1] - x[:, 0] + noise * rng.normal(size=n)], axis=1)
    groups = [GroupSpec("core", [0, 1], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]})]
    net = PosteriorNetwork(3, groups, representation=16, hidden=16)
    return net, x, y.astype(np.float32), np.ones_like(y, dtype=bool)


def test_fit_recalibration_sets_the_buffer_and_widens_an_untrained_narrow_flow():
    net, x, y, valid = _net_and_data(noise=3.0)
    # an untrained flow has unit-width residuals; the truths scatter three times more
    _, scales, _ = fit_recalibration(net, x, y, valid, n_samples=100)
    assert np.all(scales == net.residual_scale.numpy())
    assert np.all(scales > 1.5)
    with torch.inference_mode():
        wide, _ = net.sample(torch.as_tensor(x[:50]), 200)
        net.residual_map.copy_(torch.eye(2))
        raw, _ = net.sample(torch.as_tensor(x[:50]), 200)
    ratio = wide.std(dim=0).mean(dim=0) / raw.std(dim=0).mean(dim=0)
    np.testing.assert_allclose(ratio.numpy(), scales, rtol=0.2)


def test_too_few_labelled_rows_keep_factor_one():
    net, x, y, valid = _net_and_data(noise=3.0)
    valid[10:, 1] = False
    shifts, scales, interval = fit_recalibration(net, x, y, valid, n_samples=50, min_rows=30)
    assert scales[1] == 1.0 and shifts[1] == 0.0 and scales[0] > 1.5
    assert np.all(np.isnan(interval[:, 1])) and interval[0, 0] <= scales[0] <= interval[1, 0]


def test_estimator_recalibrates_by_default_and_can_be_told_not_to(mock_table, tiny):
    kwargs = tiny(["log_mstar", "redshift"], n_ensemble=2, random_state=0)
    on = GalaxyPosterior(**kwargs).fit(mock_table[:500])
    off = GalaxyPosterior(recalibrate=False, **kwargs).fit(mock_table[:500])
    assert set(on.residual_scales_) == {"log_mstar", "redshift"}
    assert all(v.shape == (2,) for v in on.residual_scales_.values())
    assert all(np.all(v == 1.0) for v in off.residual_scales_.values())
    assert any(np.any(v != 1.0) for v in on.residual_scales_.values())
    values = np.concatenate(list(on.residual_scales_.values()))
    assert np.all((values >= SCALE_GRID[0]) & (values <= SCALE_GRID[-1]))
    # each factor lies in its bootstrap interval; none without a recalibration
    for name, (low, high) in on.residual_scale_intervals_.items():
        assert low <= on.residual_scales_[name][0] <= high
    assert all(np.all(np.isnan(v)) for v in off.residual_scale_intervals_.values())


def test_factor_intervals_survive_save_and_load(mock_table, tiny, tmp_path):
    gp = GalaxyPosterior(**tiny(["log_mstar", "redshift"], random_state=0)).fit(mock_table[:400])
    gp.save(tmp_path / "model")
    loaded = GalaxyPosterior.load(tmp_path / "model")
    for name, interval in gp.residual_scale_intervals_.items():
        assert np.all(np.isfinite(interval))
        np.testing.assert_array_equal(loaded.residual_scale_intervals_[name], interval)


def test_ensemble_factors_are_shared_and_set_by_every_members_held_out_rows():
    from astro_galpost.model.recalibration import fit_ensemble_recalibration

    wide = _net_and_data(noise=1.0, seed=0)
    narrow = _net_and_data(noise=0.1, seed=1)
    alone = [fit_recalibration(*_net_and_data(noise=noise, seed=seed)[:4], n_samples=100)[1]
             for noise, seed in ((1.0, 0), (0.1, 1))]
    nets = [wide[0], narrow[0]]
    shifts, scales, _ = fit_ensemble_recalibration(nets, [wide[1:] + (None,), narrow[1:] + (None,)],
                                                   n_samples=100)
    assert shifts.shape == (2, 2) and scales.shape == (2,)
    for net in nets:
        np.testing.assert_array_equal(net.residual_scale.numpy(), scales)
    # between the factors each member's rows ask for alone
    assert np.all(scales > np.minimum(*alone)) and np.all(scales < np.maximum(*alone))


def test_a_distribution_without_a_centre_is_scaled_about_its_mean_head():
    import zuko

    from astro_galpost.model.flows import FLOWS, register_flow
    from astro_galpost.model.sampling import flow_centre

    gmm = zuko.flows.GMM(1, 16, components=2)
    assert flow_centre(gmm, torch.randn(4, 16), 1) is None
    assert "test_gmm" not in FLOWS
    register_flow("test_gmm", lambda features, context, **kw: zuko.flows.GMM(features, context, components=2))
    try:
        torch.manual_seed(0)
        groups = [GroupSpec("z", [0], flow="test_gmm")]
        net = PosteriorNetwork(3, groups, representation=16, hidden=16).eval()
        x = torch.randn(10, 3)
        with torch.inference_mode():
            mean = net.means["z"](net.represent(x))
            torch.manual_seed(1)
            raw, _ = net.sample(x, 50)
            net.residual_map.mul_(2.0)
            torch.manual_seed(1)
            wide, _ = net.sample(x, 50)
        np.testing.assert_allclose(wide - mean, 2 * (raw - mean), rtol=1e-5, atol=1e-6)
        # and the recalibration fits such a group too
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(200, 3)).astype(np.float32)
        ys = (xs[:, :1] + 3 * rng.normal(size=(200, 1))).astype(np.float32)
        _, scales, _ = fit_recalibration(net, xs, ys, np.ones_like(ys, dtype=bool), n_samples=50)
        assert scales[0] > 1.0
    finally:
        FLOWS.unregister("test_gmm")


def _calibrated_members(k=5, n=4000, s=400, spread=0.6, seed=0):
    """Truths and draws of ``k`` members, each calibrated on its own, that disagree by ``spread``.

    Galaxy ``i`` has truth ``y ~ N(f, 1)``; member ``j`` is centred on ``f + e_j``
    (``e_j ~ N(0, spread²)``) with width ``√(1 + spread²)``, so each member's PIT
    is uniform, while the mixture of the ``k`` members is too wide.
    """
    rng = np.random.default_rng(seed)
    f = rng.normal(size=n)
    y = f + rng.normal(size=n)
    centres = f + spread * rng.normal(size=(k, n))
    width = np.hypot(1.0, spread)
    draws = [torch.as_tensor(c[None, :, None] + width * rng.normal(size=(s, n, 1)), dtype=torch.float32)
             for c in centres]
    return y, draws


def _coverage_68(y, draws):
    lo, hi = np.percentile(draws[..., 0], [16, 84], axis=0)
    return float(np.mean((y > lo) & (y < hi)))


def test_each_member_is_calibrated_and_the_narrowed_mixture_is_too():
    y, draws = _calibrated_members()
    assert abs(_coverage_68(y, draws[0].numpy()) - 0.68) < 0.025
    raw = torch.cat(draws).numpy()
    narrowed = torch.cat(narrow_mixture(draws)).numpy()
    assert _coverage_68(y, raw) > 0.74
    assert abs(_coverage_68(y, narrowed) - 0.68) < 0.025
    # the members' means are kept
    np.testing.assert_allclose(narrowed.reshape(5, 400, -1).mean(1), raw.reshape(5, 400, -1).mean(1), atol=1e-5)


def test_narrowing_gives_the_mixture_variance_w_minus_b_and_keeps_a_floor():
    g = torch.Generator().manual_seed(1)
    # W = 1; galaxy 0: B = 0.09 in the first target; galaxy 1: B = 1 (more than W / 2) in the second
    means = torch.tensor([[[-0.3, 0.0], [0.0, -1.0]], [[0.3, 0.0], [0.0, 1.0]]])
    draws = [m + torch.randn(50000, 2, 2, generator=g) for m in means]
    out = torch.cat(narrow_mixture(draws)).var(0)
    assert abs(out[0, 0].item() - (1 - 0.09)) < 0.02
    # c is floored at 1/2: variance W / 4 + B
    assert abs(out[1, 1].item() - (0.25 + 1.0)) < 0.03
    # a target on which the members agree keeps its width
    assert abs(out[0, 1].item() - 1.0) < 0.02 and abs(out[1, 0].item() - 1.0) < 0.02


def test_narrowing_gives_every_linear_combination_the_variance_w_minus_b():
    g = torch.Generator().manual_seed(3)
    # correlated members (W: unit variances, correlation 0.9) that disagree along the difference of the targets
    within = torch.tensor([[1.0, 0.9], [0.9, 1.0]])
    root = torch.linalg.cholesky(within)
    offsets = torch.tensor([[-0.15, 0.15], [0.0, 0.0], [0.15, -0.15]])
    draws = [m + torch.randn(50000, 1, 2, generator=g) @ root.T for m in offsets]
    between = offsets.T @ offsets / 3
    mixture = torch.cat(narrow_mixture(draws))[:, 0, :]
    for a in ([1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [1.0, 1.0]):
        a = torch.tensor(a)
        right = float(a @ (within - between) @ a)
        assert abs((mixture @ a).var().item() / right - 1) < 0.03
    # a factor per target gets each target right but leaves the difference's variance nearly twice too large
    c = torch.sqrt(1 - 2 * torch.diag(between) / torch.diag(within))
    per_target = torch.cat([m + c * (d[:, 0, :] - m) for m, d in zip(offsets, draws)])
    a = torch.tensor([1.0, -1.0])
    assert (per_target @ a).var().item() / float(a @ (within - between) @ a) > 1.7


@pytest.mark.parametrize(("per_member", "least"), [(20, 0.96), (200, 0.99)])
def test_identical_members_are_hardly_narrowed(per_member, least):
    g = torch.Generator().manual_seed(2)
    draws = [torch.randn(per_member, 20000, 1, generator=g) for _ in range(5)]
    # the spread of the members' means is all Monte Carlo noise, which is removed (but for its positive part)
    ratio = torch.cat(narrow_mixture(draws)).var(0).mean() / torch.cat(draws).var(0).mean()
    assert least < ratio <= 1.0
    single = [torch.randn(1, 3, 1, generator=g) for _ in range(2)]
    assert all(a is b for a, b in zip(narrow_mixture(single), single))
    assert narrow_mixture(draws[:1])[0] is draws[0]
    # members whose draws never vary (targets of no group) are returned as they are
    constant = [torch.zeros(10, 3, 2), torch.ones(10, 3, 2)]
    assert all(a is b for a, b in zip(narrow_mixture(constant), constant))


def test_a_recalibrated_ensemble_samples_the_narrowed_mixture(mock_table, tiny, monkeypatch):
    import astro_galpost.model.estimator as estimator

    calls = []

    def spy(draws):
        calls.append([d.shape for d in draws])
        return [torch.zeros_like(d) for d in draws]  # a mark that shows in the samples

    monkeypatch.setattr(estimator, "narrow_mixture", spy)
    kwargs = tiny(["redshift"], random_state=0, max_epochs=2)
    table = mock_table[500:520]
    for recalibrate, n_ensemble, narrowed in ((False, 3, False), (True, 1, False), (True, 3, True)):
        calls.clear()
        gp = GalaxyPosterior(recalibrate=recalibrate, n_ensemble=n_ensemble, **kwargs).fit(mock_table[:500])
        draws = np.asarray(gp.sample(table, n_samples=30, random_state=1)["redshift"].distribution)
        assert bool(calls) is narrowed
        assert bool(np.all(draws == gp.label_mean_[0])) is narrowed
    # each member's own posterior (of the last, recalibrated ensemble) is never narrowed
    assert not any(np.all(b.samples == gp.label_mean_[0]) for b in gp.sample_members(table, n_samples=10))


def _chained_rows(n, rng, conditional_width):
    """Features (n, 2); labels a (spread 1 given the features) and b = a + noise of ``conditional_width``."""
    x = rng.normal(size=(n, 2)).astype(np.float32)
    a = x[:, 0] + rng.normal(size=n)
    return x, np.stack([a, a + conditional_width * rng.normal(size=n)], axis=1).astype(np.float32)


def test_a_chained_groups_factor_is_fitted_on_its_conditional():
    # b is chained on a; most of b's posterior spread is a's, which b's factor does not
    # scale. New galaxies' b scatters 1.5 times as far about a as the training rows' did:
    # fitted on b's conditional given the held-out rows' own a, the factor finds 1.5 and
    # is well determined; fitted on b's whole posterior it would hardly be
    from astro_galpost.model.recalibration import _group_draws
    from astro_galpost.model.training import split_indices, train_network

    rng = np.random.default_rng(0)
    x, y = _chained_rows(2000, rng, 0.2)
    torch.manual_seed(0)
    groups = [GroupSpec("a", [0], "affine1d"), GroupSpec("b", [1], "affine1d", condition_on=[0])]
    net = PosteriorNetwork(2, groups, representation=16, hidden=16)
    train, val = split_indices(len(x), 0.15, np.random.default_rng(1))
    train_network(net, x, y, np.ones_like(y, bool), train_index=train, val_index=val, max_epochs=30,
                  patience=10, batch_size=128, progress=False)
    x, y = _chained_rows(1000, rng, 0.3)
    valid = np.ones_like(y, bool)
    _, scales, interval = fit_recalibration(net, x, y, valid, n_samples=200)
    assert scales[0] == pytest.approx(1.0, abs=0.1)
    assert scales[1] == pytest.approx(1.5, abs=0.12)
    assert (interval[1, 1] - interval[0, 1]) / 2 < 0.08
    # given each galaxy's own a, b's draws spread by the recalibrated conditional width (0.3), not by a's
    with torch.inference_mode():
        given, _ = net.sample(torch.as_tensor(x[:200]), 300, given=torch.as_tensor(y[:200]))
        whole, _ = net.sample(torch.as_tensor(x[:200]), 300)
    assert float(given[..., 1].std(dim=0).mean()) == pytest.approx(0.3, rel=0.15)
    assert float(whole[..., 1].std(dim=0).mean()) == pytest.approx(np.sqrt(1 + 0.3**2), rel=0.15)
    # an unknown (NaN) value is taken from the draws: b's draws spread as without it
    unknown = torch.as_tensor(y[:200]).clone()
    unknown[:, 0] = float("nan")
    with torch.inference_mode():
        drawn, _ = net.sample(torch.as_tensor(x[:200]), 300, given=unknown)
    assert float(drawn[..., 1].std(dim=0).mean()) == pytest.approx(float(whole[..., 1].std(dim=0).mean()), rel=0.05)
    # the same rows fix the factor of b's whole posterior far less precisely
    resid, centre, offset = _group_draws(net, net.groups[1], x, y, 200)
    _, whole_interval = fit_width_factor(resid[..., 0], centre[..., 0], offset[:, 0] - float(net.residual_shift[1]))
    assert (whole_interval[1] - whole_interval[0]) > 2 * (interval[1, 1] - interval[0, 1])


def test_width_map_gives_way_to_one_factor_where_the_held_out_rows_prefer_it(monkeypatch):
    # a map mixes a group's targets; where that moves a combination the rows know far better than
    # its targets (the Balmer decrement of weak lines) the held-out rows' largest PIT KS is higher
    # with the map, and the group gets one factor, fitted on all its targets' rows together
    from astro_galpost.model import recalibration

    rng = np.random.default_rng(2)
    resid = rng.normal(size=(300, 4000, 2)) @ np.array([[1.0, 0.0], [0.5, np.sqrt(1 - 0.25)]]).T
    offset = rng.normal(size=(4000, 2)) * [1.0, 1.3]
    width_map, factors, interval = fit_width_map(resid, np.zeros((1, 1, 2)), offset, n_bootstrap=20)
    assert width_map[0, 1] != 0 and factors[0] != factors[1]
    # the same rows, with the map's largest KS made no better than one factor's
    monkeypatch.setattr(recalibration, "_largest_ks", lambda *args: 0.1)
    width_map, factors, interval = fit_width_map(resid, np.zeros((1, 1, 2)), offset, n_bootstrap=20)
    shared = fit_width_factor(resid.transpose(0, 2, 1).reshape(300, -1), np.zeros(1), offset.T.reshape(-1),
                              n_bootstrap=0)[0]
    np.testing.assert_array_equal(width_map, shared * np.eye(2))
    assert np.all(factors == shared) and np.all(interval[:, 0] == interval[:, 1])


def test_width_map_reports_the_factors_it_really_gives():
    # three correlated targets whose errors ask, along one principal direction of the whitened
    # draws, for a factor beyond the grid (about 2.6): a map whose principal factors are kept
    # within the grid gives the first target 1.35 where its rows ask for 1.55. The stored factors
    # are those the returned map gives, and such a map is not chosen
    rng = np.random.default_rng(0)
    sigma = np.array([[1.0, -0.556, -0.87], [-0.556, 1.0, 0.798], [-0.87, 0.798, 1.0]])
    truth = np.array([[2.52, -0.754, -1.138], [-0.754, 1.032, 0.733], [-1.138, 0.733, 0.857]])
    resid = rng.normal(size=(100, 1500, 3)) @ np.linalg.cholesky(sigma).T
    offset = rng.normal(size=(1500, 3)) @ np.linalg.cholesky(truth).T
    width_map, factors, _ = fit_width_map(resid, np.zeros((1, 1, 3)), offset, n_bootstrap=0)
    given = (resid @ width_map.T).reshape(-1, 3).std(0) / resid.reshape(-1, 3).std(0)
    np.testing.assert_allclose(factors, given, rtol=1e-3)
    own = fit_width_factor(resid[..., 0], np.zeros(1), offset[:, 0], n_bootstrap=0)[0]
    assert own > 1.5 and (width_map[0, 1] == 0 or factors[0] == pytest.approx(own, rel=0.02))


def test_a_member_without_labels_of_a_lone_target_keeps_shift_zero():
    # the second member has no labels of the one-target group: its shift stays 0 (not NaN, which
    # would make every draw of the target NaN), with a warning that names the target and member
    from astro_galpost.model.recalibration import RecalibrationWarning, fit_ensemble_recalibration

    torch.manual_seed(0)
    groups = [GroupSpec("a", [0], "affine1d", {"hidden_features": [8]})]
    nets = [PosteriorNetwork(3, groups, representation=8, hidden=8) for _ in range(2)]
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(200, 3)).astype(np.float32) for _ in range(2)]
    y = [(rng.normal(size=(200, 1)) + 0.5).astype(np.float32) for _ in range(2)]
    valid = [np.ones((200, 1), bool), np.zeros((200, 1), bool)]
    with pytest.warns(RecalibrationWarning, match="mass: ensemble member 1 has 0 labelled row"):
        shifts, _, _ = fit_ensemble_recalibration(nets, [(x[k], y[k], valid[k], None) for k in range(2)],
                                                  n_samples=50, names=["mass"])
    assert shifts[1, 0] == 0.0 and np.isfinite(shifts[0, 0]) and shifts[0, 0] != 0.0
    with torch.inference_mode():
        assert torch.isfinite(nets[1].sample(torch.as_tensor(x[1][:5]), 10)[0]).all()


def test_best_shift_leaves_out_rows_with_a_nan_draw():
    rng = np.random.default_rng(0)
    resid, offset = rng.normal(size=(200, 500)), rng.normal(size=500) + 0.3
    nan = resid.copy()
    nan[7, 3] = np.nan
    assert _best_shift(nan, offset) == _best_shift(np.delete(resid, 3, axis=1), np.delete(offset, 3))
    assert np.isnan(_best_shift(resid[:, :10], offset[:10], min_rows=30))


@pytest.mark.parametrize(("true_width", "edge", "side", "asked"), [(2.5, 2.0, "narrow", 2.5), (0.3, 0.5, "wide", 0.3)])
def test_a_width_factor_at_the_grid_edge_warns(true_width, edge, side, asked):
    # the truths ask for a factor beyond the grid: the factor stops at its edge and says so,
    # with how far the rows ask to go
    from astro_galpost.model.recalibration import RecalibrationWarning

    rng = np.random.default_rng(0)
    with pytest.warns(RecalibrationWarning, match=f"Hα: .* stays too {side}") as caught:
        factor, interval = fit_width_factor(rng.normal(size=(200, 1000)), np.zeros(1),
                                            true_width * rng.normal(size=1000), n_bootstrap=20, name="Hα")
    assert factor == edge and np.all(interval == edge)
    estimate = float(str(caught[0].message).split("about ")[1].split(" ")[0])
    assert estimate == pytest.approx(asked, rel=0.1)


def test_identical_members_are_narrowed_more_the_more_targets_vary():
    # the noise of B narrows members that agree, by the amounts narrow_mixture's docstring gives:
    # about 2.5% of each target's variance with 20 draws per member for one target, 5% for nine
    g = torch.Generator().manual_seed(0)
    for targets, per_member, low, high in ((1, 20, 0.97, 0.985), (9, 20, 0.94, 0.96), (9, 200, 0.993, 0.997)):
        draws = [torch.randn(per_member, 1000, targets, generator=g) for _ in range(3)]
        ratio = (torch.cat(narrow_mixture(draws)).var(0).mean() / torch.cat(draws).var(0).mean()).item()
        assert low < ratio < high, (targets, per_member, ratio)
