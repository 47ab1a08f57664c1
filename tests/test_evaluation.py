"""Tests of astro_galpost.evaluation: point metrics and calibration diagnostics.

Every check compares against a case whose answer is known in advance
(analytic or constructed), with tolerances chosen so that a wrong
implementation fails.  All randomness is seeded.
"""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.uncertainty import Distribution
from astropy.utils.masked import Masked
from scipy import stats

from astro_galpost.evaluation import (
    bias,
    calibrated_pass_chance,
    calibration_summary,
    coverage,
    cross_val_samples,
    crps,
    hpd_coverage,
    outlier_fraction,
    pit,
    pit_cvm,
    pit_ks,
    point_metrics,
    r2_score,
    rmse,
    sbc_ranks,
    sigma_nmad,
    tarp_coverage,
)
from astro_galpost.utils.params import ParamsMixin

LEVELS = np.linspace(0.05, 0.95, 19)


def gaussian_case(n=2000, s=200, width=1.0, shift=0.0, seed=0):
    """Posterior N(mu, width^2) for truth ~ N(mu, 1): calibrated when width=1, shift=0."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(10.0, 1.0, n)
    truth = mu + rng.normal(size=n)
    samples = mu[:, None] + shift + width * rng.normal(size=(n, s))
    return samples, truth


def gaussian_crps(mu, sigma, y):
    z = (y - mu) / sigma
    return sigma * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))


# ----------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------
def test_distribution_and_array_agree():
    samples, truth = gaussian_case(n=300, s=50)
    dist = Distribution(samples)
    assert rmse(dist, truth) == rmse(samples, truth)
    np.testing.assert_array_equal(pit(dist, truth, rng=3), pit(samples, truth, rng=3))
    assert crps(dist, truth) == crps(samples, truth)


def test_masked_and_nan_truth_rows_are_ignored():
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.0, 100.0, 100.0])
    t_masked = np.ma.MaskedArray(truth, mask=[False, False, True, False])
    t_nan = truth.copy()
    t_nan[3] = np.nan
    # row 2 masked -> only row 3 is wrong (error 96)
    assert rmse(pred, t_masked) == pytest.approx(96 / np.sqrt(3))
    assert rmse(pred, t_nan) == pytest.approx(97 / np.sqrt(3))
    col = MaskedColumn(truth, mask=[False, False, True, True])
    assert rmse(pred, col) == 0.0
    masked_q = Masked(truth * u.Msun, mask=[False, False, True, True])
    assert rmse(pred * u.Msun, masked_q) == 0.0
    # PIT keeps alignment: NaN for ignored rows
    samples = np.tile(np.linspace(0, 5, 11), (4, 1))
    p = pit(samples, t_masked, randomize=False)
    assert np.isnan(p[2]) and np.all(np.isfinite(p[[0, 1, 3]]))


def test_nonfinite_samples_drop_the_row():
    samples = np.tile(np.arange(5.0), (3, 1))
    samples[1, 2] = np.nan
    p = pit(samples, np.array([2.5, 2.5, 2.5]), randomize=False)
    assert np.isnan(p[1]) and p[0] == pytest.approx(0.6)


def test_units_are_converted_to_the_truth_unit():
    log_mass = np.array([9.0, 10.0, 11.0])
    truth = log_mass * u.dex(u.Msun)
    # samples in linear Msun, 0.1 dex too high
    samples = Distribution(np.tile(10 ** (log_mass + 0.1), (5, 1)).T * u.Msun)
    assert bias(samples, truth) == pytest.approx(0.1)
    # truth as a MaskedColumn with a dex unit
    col = MaskedColumn(log_mass, mask=[False, True, False], unit=u.dex(u.Msun))
    assert bias(samples, col) == pytest.approx(0.1)
    # linear units: grams vs kilograms
    assert bias(np.array([1.0, 2.0]) * u.kg, np.array([900.0, 1900.0]) * u.g) == pytest.approx(0.1e3)
    # threshold given as a dex Quantity for a dex(Msun) truth
    assert outlier_fraction(samples, truth, 0.05 * u.dex) == 1.0
    assert outlier_fraction(samples, truth, 0.2 * u.dex) == 0.0


def test_shape_errors():
    with pytest.raises(ValueError):
        pit(np.zeros(5), np.zeros(5))  # calibration needs samples
    with pytest.raises(ValueError):
        rmse(np.zeros((4, 3)), np.zeros(5))


# ----------------------------------------------------------------------------
# Point metrics
# ----------------------------------------------------------------------------
def test_r2_known_values():
    truth = np.linspace(0.0, 1.0, 50)
    assert r2_score(truth, truth) == 1.0
    # perfect posteriors (all samples at the truth)
    assert r2_score(np.repeat(truth[:, None], 7, axis=1), truth) == 1.0
    assert r2_score(np.full(50, truth.mean()), truth) == pytest.approx(0.0, abs=1e-12)
    # pred = truth + e with e orthogonal -> R2 = 1 - var(e)/var(truth)
    e = np.where(np.arange(50) % 2, 0.1, -0.1)
    expected = 1 - np.sum(e**2) / np.sum((truth - truth.mean()) ** 2)
    assert r2_score(truth + e, truth) == pytest.approx(expected)


def test_rmse_bias_and_point_choice():
    truth = np.zeros(3)
    samples = np.array([[0.0, 1.0, 5.0], [0.0, 1.0, 5.0], [0.0, 1.0, 5.0]])
    assert rmse(samples, truth) == pytest.approx(1.0)  # median 1
    assert bias(samples, truth, point="mean") == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bias(samples, truth, point="mode")


def test_sigma_nmad_equals_sigma_for_gaussian_errors_and_is_robust():
    rng = np.random.default_rng(1)
    truth = rng.uniform(9, 11, 40000)
    pred = truth + 0.5 + rng.normal(0, 0.2, truth.size)  # offset must not matter
    assert sigma_nmad(pred, truth) == pytest.approx(0.2, rel=0.03)
    # 5 % gross outliers: NMAD barely moves, RMSE explodes
    pred[: truth.size // 20] += 50.0
    assert sigma_nmad(pred, truth) == pytest.approx(0.2, rel=0.1)
    assert rmse(pred, truth) > 5


def test_outlier_fraction_constructed():
    z = np.array([0.1, 0.1, 1.0, 1.0, 2.0])
    dz_norm = np.array([0.04, 0.06, -0.049, -0.051, 0.2])  # |dz|/(1+z)
    z_phot = z + dz_norm * (1 + z)
    assert outlier_fraction(z_phot, z, normalize_redshift=True) == pytest.approx(3 / 5)
    assert outlier_fraction(z_phot, z, 0.1, normalize_redshift=True) == pytest.approx(1 / 5)
    # without normalisation raw |dz| is used: 0.044, 0.066, 0.098, 0.102, 0.6
    assert outlier_fraction(z_phot, z, 0.1) == pytest.approx(2 / 5)


def test_point_metrics_redshift():
    rng = np.random.default_rng(2)
    z = rng.uniform(0.05, 2.0, 20000)
    zp = z + 0.02 * (1 + z) * rng.normal(size=z.size)
    zp[:1000] += 1.0  # 5 % catastrophic
    samples = zp[:, None] + np.zeros((1, 3))
    m = point_metrics(samples, z, redshift=True)
    assert m["n"] == z.size
    assert m["outlier_fraction"] == pytest.approx(0.05 + 0.95 * 2 * stats.norm.sf(2.5), abs=0.005)
    assert m["sigma_nmad"] == pytest.approx(0.02, rel=0.08)
    assert m["bias"] == pytest.approx(np.mean((zp - z) / (1 + z)))
    assert set(m) == {"n", "r2", "rmse", "bias", "sigma_nmad", "outlier_fraction"}


# ----------------------------------------------------------------------------
# PIT, KS, CvM, coverage
# ----------------------------------------------------------------------------
def test_calibrated_pit_is_uniform():
    samples, truth = gaussian_case(seed=3)
    p = pit(samples, truth, rng=0)
    ks = pit_ks(p)
    assert ks.statistic < 0.04 and ks.pvalue > 0.01
    assert pit_cvm(p).pvalue > 0.01


@pytest.mark.parametrize("width", [0.5, 2.0])
def test_miscalibrated_pit_fails(width):
    samples, truth = gaussian_case(width=width, seed=4)
    p = pit(samples, truth, rng=0)
    ks = pit_ks(p)
    assert ks.statistic > 0.1 and ks.pvalue < 1e-6
    assert pit_cvm(p).pvalue < 1e-6


def test_biased_pit_fails():
    samples, truth = gaussian_case(shift=0.5, seed=5)
    assert pit_ks(pit(samples, truth, rng=0)).pvalue < 1e-6


def test_randomized_pit_handles_discrete_ties():
    # Poisson posteriors, truth from the same Poisson: heavy ties
    rng = np.random.default_rng(6)
    lam = rng.uniform(1, 4, 3000)
    truth = rng.poisson(lam).astype(float)
    samples = rng.poisson(lam[:, None], size=(3000, 100)).astype(float)
    assert pit_ks(pit(samples, truth, rng=1)).pvalue > 0.01
    # the naive fraction-below is strongly non-uniform here
    naive = np.mean(samples < truth[:, None], axis=1)
    assert pit_ks(naive).pvalue < 1e-6


def test_pit_deterministic_values():
    samples = np.tile(np.arange(10.0), (3, 1))
    p = pit(samples, np.array([-1.0, 4.5, 20.0]), randomize=False)
    np.testing.assert_allclose(p, [0.0, 0.5, 1.0])
    # randomized: truth below all samples -> PIT in [0, 1/11)
    pr = pit(samples, np.array([-1.0, 4.5, 20.0]), rng=0)
    assert 0 <= pr[0] < 1 / 11 and 5 / 11 <= pr[1] < 6 / 11 and pr[2] >= 10 / 11


def test_calibrated_pass_chance_matches_the_known_distributions():
    # coverage only: the count inside the central 68% interval is Binomial(n, 0.68)
    n, repeats = 120, 2000
    inside = np.arange(n + 1)
    ok = np.abs(inside / n - 0.68) <= 0.05
    exact = stats.binom.pmf(inside[ok], n, 0.68).sum()
    got = calibrated_pass_chance(n, ks_goal=None, coverage_goal=0.05, repeats=repeats, rng=1)
    assert abs(got - exact) < 4 * np.sqrt(exact * (1 - exact) / repeats)
    # KS only: the one-sample KS statistic of n uniforms follows scipy's kstwo
    exact = stats.kstwo.cdf(0.1, n)
    got = calibrated_pass_chance(n, ks_goal=0.1, coverage_goal=None, repeats=repeats, rng=2)
    assert abs(got - exact) < 4 * np.sqrt(exact * (1 - exact) / repeats)
    # independent samples: every one must meet the goal, so the chance is the product
    both = calibrated_pass_chance([n, n], ks_goal=0.1, coverage_goal=None, repeats=repeats, rng=3)
    assert abs(both - exact**2) < 4 * np.sqrt(exact**2 * (1 - exact**2) / repeats)
    assert calibrated_pass_chance([5, 50], ks_goal=None, coverage_goal=None, repeats=10, rng=0) == 1.0


@pytest.mark.parametrize("n", [0, [10, -1], [[10]]])
def test_calibrated_pass_chance_refuses_bad_sizes(n):
    with pytest.raises(ValueError, match="n must be"):
        calibrated_pass_chance(n)


def test_coverage_calibrated_narrow_wide():
    samples, truth = gaussian_case(seed=7)
    np.testing.assert_allclose(coverage(samples, truth, LEVELS), LEVELS, atol=0.04)
    narrow, t2 = gaussian_case(width=0.5, seed=8)
    cov_n = coverage(narrow, t2, LEVELS)
    # expected: P(|Z| < 0.5 z_l)
    expected_n = 2 * stats.norm.cdf(0.5 * stats.norm.ppf(0.5 + LEVELS / 2)) - 1
    np.testing.assert_allclose(cov_n, expected_n, atol=0.04)
    assert np.all(cov_n[2:] < LEVELS[2:] - 0.05)
    wide, t3 = gaussian_case(width=2.0, seed=9)
    cov_w = coverage(wide, t3, LEVELS)
    assert np.all(cov_w[1:] > LEVELS[1:] + 0.04)
    assert coverage(wide, t3, 0.68) == pytest.approx(2 * stats.norm.cdf(2) - 1, abs=0.03)


def test_coverage_constructed():
    samples = np.tile(np.linspace(-1, 1, 101), (4, 1))
    cov = coverage(samples, np.array([0.0, 0.3, 0.7, 2.0]), levels=[0.5, 0.9])
    np.testing.assert_allclose(cov, [0.5, 0.75])
    with pytest.raises(ValueError):
        coverage(samples, np.zeros(4), levels=[1.0])


# ----------------------------------------------------------------------------
# CRPS
# ----------------------------------------------------------------------------
def test_crps_standard_normal_at_zero():
    rng = np.random.default_rng(10)
    samples = rng.normal(size=(40, 5000))
    exact = (np.sqrt(2) - 1) / np.sqrt(np.pi)  # = 0.2337
    assert crps(samples, np.zeros(40)) == pytest.approx(exact, rel=0.01)


def test_crps_gaussian_formula_per_object():
    rng = np.random.default_rng(11)
    sigma = np.array([0.5, 1.0, 2.0, 1.0])
    y = np.array([0.0, 1.5, -3.0, 4.0])
    samples = sigma[:, None] * rng.normal(size=(4, 40000))
    per = crps(samples, y, average=False)
    np.testing.assert_allclose(per, gaussian_crps(0.0, sigma, y), rtol=0.02)


def test_crps_exact_small_cases():
    assert crps(np.array([[0.0, 0.0, 0.0]]), np.array([1.0])) == pytest.approx(1.0)
    # two-point distribution {-1, 1} at 0: empirical CRPS = 0.5, fair = 0
    two = np.array([[-1.0, 1.0]])
    assert crps(two, np.array([0.0]), fair=False) == pytest.approx(0.5)
    assert crps(two, np.array([0.0]), fair=True) == pytest.approx(0.0)
    # brute-force pair sum
    rng = np.random.default_rng(12)
    x = rng.normal(size=(3, 17))
    y = rng.normal(size=3)
    brute = np.mean(np.abs(x - y[:, None]), 1) - 0.5 * np.abs(
        x[:, :, None] - x[:, None, :]
    ).sum((1, 2)) / (17 * 16)
    np.testing.assert_allclose(crps(x, y, average=False), brute)


def test_crps_prefers_calibrated_over_too_narrow():
    good, t = gaussian_case(n=1000, seed=13)
    narrow, _ = gaussian_case(n=1000, width=0.2, seed=13)
    assert crps(good, t) < crps(narrow, t)


# ----------------------------------------------------------------------------
# Simulation-based calibration
# ----------------------------------------------------------------------------
def conjugate_sbc(n=2000, s=99, shift=0.0, width=1.0, seed=14):
    """theta ~ N(0,1), x ~ N(theta,1): posterior N(x/2, 1/2)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=n)
    x = theta + rng.normal(size=n)
    post = x[:, None] / 2 + shift + width * rng.normal(size=(n, s)) / np.sqrt(2)
    return theta, post


def test_sbc_uniform_for_correct_posterior():
    theta, post = conjugate_sbc()
    res = sbc_ranks(theta, post, n_bins=20, rng=0)
    assert res.n_ranks == 99 and res.dof == 19
    assert res.histogram.sum() == 2000 and res.ranks.max() <= 99
    assert res.pvalue > 0.01


@pytest.mark.parametrize("shift, width", [(0.3, 1.0), (0.0, 0.6), (0.0, 1.6)])
def test_sbc_detects_miscalibration(shift, width):
    theta, post = conjugate_sbc(shift=shift, width=width, seed=15)
    assert sbc_ranks(theta, post, n_bins=20, rng=0).pvalue < 1e-6


def test_sbc_thinning_bins_and_callable():
    theta, post = conjugate_sbc(n=500, s=1000, seed=16)
    res = sbc_ranks(theta, post, n_ranks=100, n_bins=10, rng=0)
    assert res.n_ranks == 99  # L + 1 must be a multiple of n_bins
    assert res.histogram.size == 10
    rng = np.random.default_rng(17)

    def sampler(th):
        x = th + rng.normal(size=th.size)
        return x[:, None] / 2 + rng.normal(size=(th.size, 49)) / np.sqrt(2)

    res2 = sbc_ranks(theta, sampler, n_bins=10, rng=1)
    assert res2.n_ranks == 49 and res2.pvalue > 0.01


# ----------------------------------------------------------------------------
# Multivariate: TARP and HPD coverage
# ----------------------------------------------------------------------------
def joint_case(n=2000, s=200, d=3, shift=0.0, width=1.0, seed=18):
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 1.0]])[:d, :d]
    chol = np.linalg.cholesky(cov)
    mu = rng.normal(size=(n, d)) * [1.0, 2.0, 0.5][:d]
    truth = mu + rng.normal(size=(n, d)) @ chol.T
    samples = mu[:, None, :] + shift + width * rng.normal(size=(n, s, d)) @ chol.T
    return samples, truth


def test_tarp_passes_for_correct_posterior():
    samples, truth = joint_case()
    res = tarp_coverage(samples, truth, rng=0)
    assert res.alpha[0] == 0 and res.alpha[-1] == 1 and res.ecp[-1] == 1
    assert abs(res.atc) < 0.02
    assert res.max_deviation < 0.04 and res.ks_pvalue > 0.01
    np.testing.assert_allclose(res.ecp, res.alpha, atol=0.04)


@pytest.mark.parametrize(
    "shift, width, atc_sign", [(0.8, 1.0, 0), (0.0, 0.5, -1), (0.0, 2.0, 1)]
)
def test_tarp_fails_for_biased_or_miscalibrated(shift, width, atc_sign):
    samples, truth = joint_case(shift=shift, width=width, seed=19)
    res = tarp_coverage(samples, truth, rng=0)
    assert res.ks_pvalue < 1e-6 and res.max_deviation > 0.08
    if atc_sign:
        assert np.sign(res.atc) == atc_sign and abs(res.atc) > 0.02


def test_tarp_accepts_distribution_and_explicit_references():
    samples, truth = joint_case(n=300, s=50, seed=20)
    dist = Distribution(np.moveaxis(samples, 1, -1))  # shape (N, D), S samples
    refs = np.random.default_rng(0).uniform(size=(300, 3))
    a = tarp_coverage(samples, truth, references=refs, rng=1)
    b = tarp_coverage(dist, truth, references=refs, rng=1)
    np.testing.assert_array_equal(a.f, b.f)
    with pytest.raises(ValueError):
        tarp_coverage(samples, truth, references=refs[:10])


def test_hpd_coverage_calibrated_and_narrow():
    samples, truth = joint_case(seed=21)
    cov, ranks = hpd_coverage(samples, truth, LEVELS, return_ranks=True, rng=0)
    np.testing.assert_allclose(cov, LEVELS, atol=0.04)
    assert pit_ks(ranks).pvalue > 0.01
    narrow, t2 = joint_case(width=0.5, seed=22)
    assert np.all(hpd_coverage(narrow, t2, LEVELS, rng=0)[2:] < LEVELS[2:] - 0.1)
    wide, t3 = joint_case(width=2.0, seed=23)
    assert np.all(hpd_coverage(wide, t3, LEVELS, rng=0)[1:] > LEVELS[1:] + 0.04)


# ----------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------
def test_calibration_summary_values():
    samples, truth = gaussian_case(seed=24)
    s = calibration_summary(Distribution(samples), truth, rng=0)
    assert set(s) == {
        "n",
        "pit_ks",
        "pit_ks_pvalue",
        "pit_cvm",
        "pit_cvm_pvalue",
        "coverage_68",
        "coverage_95",
        "crps",
    }
    assert s["n"] == 2000
    assert s["pit_ks_pvalue"] > 0.01
    assert s["coverage_68"] == pytest.approx(0.68, abs=0.035)
    assert s["coverage_95"] == pytest.approx(0.95, abs=0.02)
    # expected CRPS of a calibrated N(mu, 1) posterior averaged over y ~ N(mu, 1)
    # is 1/sqrt(pi); check the analytic value by quadrature too
    z = np.linspace(-8, 8, 20001)
    integrand = gaussian_crps(0, 1, z) * stats.norm.pdf(z)
    assert np.sum(integrand) * (z[1] - z[0]) == pytest.approx(1 / np.sqrt(np.pi), rel=1e-6)
    assert s["crps"] == pytest.approx(1 / np.sqrt(np.pi), rel=0.05)
    narrow, t2 = gaussian_case(width=0.5, seed=25)
    s2 = calibration_summary(narrow, t2, rng=0)
    assert s2["pit_ks_pvalue"] < 1e-6 and s2["coverage_68"] < 0.5


# ----------------------------------------------------------------------------
# Cross-validated samples
# ----------------------------------------------------------------------------
class _RowsSeen(ParamsMixin):
    """A stand-in estimator whose draws say which rows its fit saw: -1 for a seen row, else the row's id."""

    unit = u.dex(u.Msun)

    def fit(self, table):
        self.seen_ = set(table["id"].tolist())
        return self

    def sample(self, table, n_samples):
        ids = np.array([-1.0 if i in self.seen_ else float(i) for i in table["id"]])
        return {"log_mstar": Distribution(np.repeat(ids[:, None], n_samples, axis=1) * self.unit)}


def test_cross_val_samples_draws_each_row_from_a_fit_without_it():
    table = Table({"id": np.arange(23)})
    estimator = _RowsSeen()
    samples = cross_val_samples(estimator, table, n_folds=4, n_samples=3, random_state=1)
    draws = samples["log_mstar"].distribution
    assert draws.unit == u.dex(u.Msun) and samples["log_mstar"].shape == (23,)
    # every row drawn exactly once, by the fold's model that did not see it, in the table's order
    np.testing.assert_array_equal(draws.value, np.repeat(np.arange(23.0)[:, None], 3, axis=1))
    assert not hasattr(estimator, "seen_")  # the estimator given is cloned, never fitted


@pytest.mark.parametrize("n_folds", [1, 24, 2.5, True])
def test_cross_val_samples_refuses_bad_folds(n_folds):
    with pytest.raises(ValueError, match="n_folds must be an integer from 2 to the number of rows"):
        cross_val_samples(_RowsSeen(), Table({"id": np.arange(23)}), n_folds=n_folds)


@pytest.mark.parametrize(("n", "goal"), [(100, 0.05), (25, 0.08)])
def test_calibrated_pass_chance_counts_a_coverage_on_the_goal_as_met(n, goal):
    # 63 of 100 (15 of 25) galaxies inside the 68% interval are 0.05 (0.08) from it, which meets
    # the goal; in floating point |0.63 - 0.68| is 0.05000000000000004
    inside = np.arange(n + 1)
    exact = stats.binom.pmf(inside[np.abs(inside - 0.68 * n) <= goal * n + 1e-6], n, 0.68).sum()
    repeats = 20000
    got = calibrated_pass_chance(n, ks_goal=None, coverage_goal=goal, repeats=repeats, rng=1)
    assert abs(got - exact) < 4 * np.sqrt(exact * (1 - exact) / repeats)
