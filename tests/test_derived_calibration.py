"""Calibration of derived quantities and local (per-bin) calibration, with known answers."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM
from astropy.table import Table
from astropy.uncertainty import Distribution
from scipy import stats

from astro_galpost.evaluation import (
    DERIVED_QUANTITIES,
    DerivedQuantity,
    coverage,
    derived_calibration,
    derived_samples,
    derived_truth,
    local_calibration,
)

N, S, SIGMA, RHO = 2000, 300, 0.3, 0.8


def correlated_posteriors(rho_samples: float, seed: int = 0):
    """Gaussian posteriors of (log_sfr, log_mstar) with correlation RHO; truths drawn from
    them; samples drawn with correlation ``rho_samples`` (the same marginals)."""
    rng = np.random.default_rng(seed)
    mean = np.column_stack([rng.normal(0.0, 0.5, N), rng.normal(10.5, 0.4, N)])

    def draw(rho, size):
        cov = SIGMA**2 * np.array([[1.0, rho], [rho, 1.0]])
        return rng.multivariate_normal([0.0, 0.0], cov, size=size)

    truth_draw = mean + draw(RHO, N)
    sample_draw = mean[:, None, :] + draw(rho_samples, (N, S))
    samples = {
        "log_sfr": Distribution(u.Dex(sample_draw[..., 0], u.dex(u.Msun / u.yr))),
        "log_mstar": Distribution(u.Dex(sample_draw[..., 1], u.dex(u.Msun))),
    }
    truth = {"log_sfr": truth_draw[:, 0], "log_mstar": truth_draw[:, 1]}
    return samples, truth


def test_registry_has_the_six_quantities_with_known_values():
    assert set(DERIVED_QUANTITIES) == {
        "log_ssfr", "log_mbh_mstar", "halpha_sfr_offset", "balmer_decrement", "n2", "o3"
    }
    # Flux that gives L(Hα) = 10^41.27 erg/s at z = 0.05: 1 Msun/yr (Kennicutt & Evans 2012), at the
    # distance of the MPA-JHU SFRs' cosmology (H0 = 70, Omega_M = 0.3, flat)
    d_l = FlatLambdaCDM(H0=70.0, Om0=0.3).luminosity_distance(0.05).to_value(u.cm)
    ha_unit = 10**41.27 / (4 * np.pi * d_l**2) / 1e-17
    values = {
        "log_sfr": np.array([-0.5, 0.0]), "log_mstar": np.array([10.5, 11.0]),
        "log_mbh": np.array([8.0, 7.0]), "redshift": np.array([0.05, 0.05]),
        "halpha": np.array([ha_unit, 286.0]), "hbeta": np.array([100.0, -1.0]),
        "nii_6584": np.array([0.1 * ha_unit, 28.6]), "oiii_5007": np.array([100.0, 5.0]),
    }
    expected = {
        "log_ssfr": [-11.0, -11.0], "log_mbh_mstar": [-2.5, -4.0],
        "halpha_sfr_offset": [0.5, np.nan], "balmer_decrement": [ha_unit / 100.0, np.nan],
        "n2": [-1.0, -1.0], "o3": [0.0, np.nan],
    }
    expected["halpha_sfr_offset"][1] = float(
        np.log10(4 * np.pi * d_l**2 * 286e-17) - 41.27
    )
    for name, want in expected.items():
        np.testing.assert_allclose(DERIVED_QUANTITIES[name](values), want, atol=1e-6, err_msg=name)


def test_correct_correlation_passes_and_zeroed_correlation_is_flagged():
    good_samples, truth = correlated_posteriors(RHO)
    bad_samples, _ = correlated_posteriors(0.0)
    # The marginals of both are calibrated: per-target checks cannot tell them apart.
    for samples in (good_samples, bad_samples):
        for name in truth:
            assert coverage(samples[name], truth[name], 0.68) == pytest.approx(0.68, abs=0.03)
    good = derived_calibration(good_samples, truth)
    bad = derived_calibration(bad_samples, truth)
    assert list(good["quantity"]) == ["log_ssfr"]  # the only quantity with both inputs
    assert good["n"][0] == N and good["pit_ks"][0] < 0.05
    assert good["coverage_68"][0] == pytest.approx(0.68, abs=0.03)
    assert good["coverage_95"][0] == pytest.approx(0.95, abs=0.02)
    # Zeroed correlation: sSFR width sqrt(2 σ²) instead of sqrt(2 σ² (1 - ρ)), √5 too wide;
    # the 68 % interval then covers P(|Z| < 0.994 √5) = 0.974.
    expected = 2 * stats.norm.cdf(stats.norm.ppf(0.84) * np.sqrt(5.0)) - 1
    assert bad["coverage_68"][0] == pytest.approx(expected, abs=0.02)
    assert bad["pit_ks"][0] > 0.15 and bad["pit_cvm_pvalue"][0] < 1e-6


def test_undefined_truths_are_ignored_and_counted():
    rng = np.random.default_rng(3)
    n = 400
    ha = rng.uniform(50, 500, n)
    hb = ha / 3.0
    hb[:40] = -2.0  # undetected Hβ measured negative: no Balmer decrement
    truth = Table({"h_alpha_flux": ha, "h_beta_flux": hb})
    noise = 1 + 0.05 * rng.standard_normal((n, 100))
    samples = {"halpha": ha[:, None] * noise, "hbeta": np.abs(ha / 3.0)[:, None] * noise[:, ::-1]}
    res = derived_calibration(samples, truth, ["balmer_decrement"])
    assert res["n"][0] == n - 40 and res["n_undefined_truth"][0] == 40
    np.testing.assert_allclose(derived_truth(truth, "balmer_decrement")[40:], 3.0)
    assert np.all(np.isnan(derived_truth(truth, "balmer_decrement")[:40]))


def test_custom_quantity_and_errors():
    samples, truth = correlated_posteriors(RHO, seed=1)
    total = DerivedQuantity("sum", ("log_sfr", "log_mstar"), np.add, u.dex)
    np.testing.assert_allclose(
        derived_samples(samples, total),
        samples["log_sfr"].distribution.value + samples["log_mstar"].distribution.value,
    )
    assert derived_calibration(samples, truth, [total])["pit_ks"][0] < 0.05
    with pytest.raises(KeyError, match="unknown derived quantity 'ssfr'"):
        derived_calibration(samples, truth, ["ssfr"])
    with pytest.raises(KeyError, match=r"needs samples of \['log_mbh'\]"):
        derived_samples(samples, "log_mbh_mstar")


def narrow_in_one_bin():
    """Calibrated N(μ, 0.2²) posteriors except for the reddest fifth, where they are half
    as wide as they should be."""
    rng = np.random.default_rng(5)
    n = 2500
    colour = rng.uniform(0.2, 1.0, n)
    mean = rng.normal(10.0, 0.5, n)
    width = np.where(colour > np.quantile(colour, 0.8), 0.1, 0.2)
    samples = {"log_mstar": mean[:, None] + width[:, None] * rng.standard_normal((n, 300))}
    truth = Table({"lgm_tot_p50": mean + 0.2 * rng.standard_normal(n), "g_r": colour * u.mag})
    return samples, truth


def test_local_calibration_finds_the_one_narrow_bin():
    samples, truth = narrow_in_one_bin()
    overall = coverage(samples["log_mstar"], truth["lgm_tot_p50"], 0.68)
    assert overall == pytest.approx(0.8 * 0.68 + 0.2 * 0.383, abs=0.03)  # averages out
    res = local_calibration(samples, truth, "g_r")
    assert len(res) == 5 and list(res["bin"]) == [0, 1, 2, 3, 4]
    assert res["lo"].unit == u.mag and res["lo"][0] == truth["g_r"].min() * u.mag
    assert np.all(res["n"] == 500)
    # P(|Z| < 0.994 / 2) = 0.38 in the narrow bin; nominal elsewhere.
    np.testing.assert_allclose(res["coverage_68"][:4], 0.68, atol=0.05)
    assert res["coverage_68"][4] == pytest.approx(0.38, abs=0.05)
    assert res["pit_ks"][4] > 0.1 and np.all(res["pit_ks"][:4] < 0.08)


def test_quantile_bins_are_those_of_each_targets_labelled_galaxies():
    # stellar mass labelled for every galaxy, SFR only where the colour is below its 30th percentile
    rng = np.random.default_rng(5)
    n = 2000
    colour = rng.uniform(0.2, 1.0, n)
    mean = rng.normal([10.0, 0.0], 0.5, (n, 2))
    samples = {"log_mstar": mean[:, :1] + 0.2 * rng.standard_normal((n, 200)),
               "log_sfr": mean[:, 1:] + 0.2 * rng.standard_normal((n, 200))}
    sfr = mean[:, 1] + 0.2 * rng.standard_normal(n)
    blue = colour < np.quantile(colour, 0.3)
    truth = {"log_mstar": mean[:, 0] + 0.2 * rng.standard_normal(n), "log_sfr": np.where(blue, sfr, np.nan)}
    res = local_calibration(samples, truth, colour)
    mstar, sfr_rows = res[res["target"] == "log_mstar"], res[res["target"] == "log_sfr"]
    np.testing.assert_array_equal(mstar["n"], 400)
    np.testing.assert_array_equal(sfr_rows["n"], 120)  # quintiles of the 600 labelled galaxies
    assert sfr_rows["hi"][-1] == pytest.approx(colour[blue].max())
    np.testing.assert_allclose(sfr_rows["coverage_68"], 0.68, atol=0.08)
    # explicit edges are the same for every target
    fixed = local_calibration(samples, truth, colour, bins=[0.2, 0.6, 1.0])
    assert list(fixed["n"]) == [np.sum(colour < 0.6), np.sum(colour >= 0.6), np.sum(blue & (colour < 0.6)),
                                np.sum(blue & (colour >= 0.6))]
    with pytest.raises(ValueError, match="1999 values to bin by for 2000 galaxies of 'log_mstar'"):
        local_calibration(samples, truth, colour[1:])


def test_local_calibration_by_target_edges_and_derived():
    samples, truth = correlated_posteriors(RHO, seed=2)
    res = local_calibration(samples, truth, "log_mstar", bins=[9.0, 10.5, 12.0],
                            targets=["log_sfr", "log_ssfr"])
    assert list(res["target"]) == ["log_sfr", "log_sfr", "log_ssfr", "log_ssfr"]
    t = truth["log_mstar"]
    assert res["n"][0] == np.sum((t >= 9.0) & (t < 10.5))
    assert res["n"][1] == np.sum((t >= 10.5) & (t <= 12.0))
    np.testing.assert_allclose(res["coverage_68"], 0.68, atol=0.05)
    with pytest.raises(KeyError, match="cannot bin by 'colour'"):
        local_calibration(samples, truth, "colour")


def test_works_on_a_fitted_model(mock_table, tiny, one_torch_thread):
    """PosteriorSamples (Distributions in dex and flux units) go straight in."""
    from astro_galpost import GalaxyPosterior

    train, test = mock_table[:500], mock_table[500:]
    post = GalaxyPosterior(random_state=0, **tiny()).fit(train).sample(test, n_samples=50, random_state=1)
    res = derived_calibration(post, test)
    assert list(res["quantity"]) == list(DERIVED_QUANTITIES)
    ha, hb = (np.asarray(test[c], dtype=float) for c in ("h_alpha_flux", "h_beta_flux"))
    labelled = (ha != 0) & (hb != 0)
    row = list(res["quantity"]).index("balmer_decrement")
    assert res["n_undefined_truth"][row] == np.sum(labelled & ((ha < 0) | (hb < 0)))
    mbh = list(res["quantity"]).index("log_mbh_mstar")
    assert res["n"][mbh] == np.sum(np.asarray(test["velDisp"]) > 0)
    local = local_calibration(post, test, "modelMag_r", targets=["log_ssfr"])
    assert np.sum(local["n"]) == len(test) and local["lo"].unit == u.mag


def small_posteriors(n: int = 400, seed: int = 7):
    """Calibrated Gaussian posteriors of stellar mass for ``n`` galaxies: (samples, truths)."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(10.0, 0.5, n)
    samples = {"log_mstar": centre[:, None] + 0.2 * rng.standard_normal((n, 100))}
    return samples, centre + 0.2 * rng.standard_normal(n)


def test_local_calibration_leaves_catalogue_sentinels_out():
    samples, mass = small_posteriors()
    mag = np.random.default_rng(8).uniform(14.0, 17.7, len(mass))
    mag[:30], mag[30:40], mag[40:50] = -9999.0, -999.0, -99.0  # SDSS "not measured"
    truth = Table({"lgm_tot_p50": mass, "modelMag_r": mag * u.mag})
    res = local_calibration(samples, truth, "modelMag_r")
    np.testing.assert_array_equal(res["n"], 70)  # quintiles of the 350 measured galaxies
    assert res["lo"][0] == mag[50:].min() * u.mag and res["hi"][-1] == mag[50:].max() * u.mag
    wide = local_calibration(samples, truth, mag, bins=[-1e4, 0.0, 20.0])
    assert list(wide["n"]) == [0, 350]


def test_local_calibration_bins_in_the_unit_of_by():
    samples, mass = small_posteriors()
    size = np.linspace(1.0, 2.0, len(mass)) * u.kpc
    res = local_calibration(samples, {"log_mstar": mass}, size, bins=[1000.0, 1500.0, 2000.0] * u.pc)
    assert list(res["n"]) == [200, 200] and res["lo"].unit == u.kpc
    np.testing.assert_allclose(res["hi"].to_value(u.kpc), [1.5, 2.0])
    with pytest.raises(u.UnitConversionError, match="bins are in 'mag'.*'kpc'"):
        local_calibration(samples, {"log_mstar": mass}, size, bins=[14, 15] * u.mag)
    with pytest.raises(u.UnitConversionError, match="bins are in 'mag'.*'no unit'"):
        local_calibration(samples, {"log_mstar": mass}, size.value, bins=[14, 15] * u.mag)


def test_local_calibration_by_a_target_has_its_unit():
    samples, mass = small_posteriors()
    plain = local_calibration(samples, {"log_mstar": mass}, "log_mstar", bins=[9.0, 10.0, 11.0])
    assert plain["lo"].unit == u.dex(u.Msun) and plain["hi"].unit == u.dex(u.Msun)
    assert list(plain["n"]) == [np.sum((mass >= 9) & (mass < 10)), np.sum((mass >= 10) & (mass <= 11))]
    np.testing.assert_allclose(plain["hi"].value, [10.0, 11.0])
    for bins in ([9.0, 10.0, 11.0] * u.dex(u.Msun), [1e9, 1e10, 1e11] * u.Msun):
        res = local_calibration(samples, {"log_mstar": mass}, "log_mstar", bins=bins)
        assert list(res["n"]) == list(plain["n"])
    with pytest.raises(u.UnitConversionError, match="bins are in 'mag'"):
        local_calibration(samples, {"log_mstar": mass}, "log_mstar", bins=[14, 15] * u.mag)
