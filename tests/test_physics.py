"""Tests of astro_galpost.physics.lines and .dust: BPT classes, Balmer decrement, A_V and SFR."""

import numpy as np
import pytest
from astropy import units as u
from astropy.cosmology import WMAP9, Planck18
from astropy.table import QTable
from astropy.uncertainty import Distribution

from astro_galpost.physics import (
    FLUX_UNIT,
    HALPHA_WAVELENGTH,
    HBETA_WAVELENGTH,
    LINES,
    av_from_balmer,
    balmer_decrement,
    bpt_class,
    bpt_class_probabilities,
    bpt_line_ratios,
    halpha_luminosity,
    k_lambda,
    kauffmann03,
    kewley01,
    sfr_from_halpha,
    vacuum_to_air,
)
from astro_galpost.physics.lines import _luminosity_distance_cm

CGS = u.erg / u.s / u.cm**2


def fluxes_for(log_n2_ha, log_o3_hb, ha=300.0, hb=100.0):
    """Line fluxes placing a galaxy at a given BPT position."""
    return ha, hb, ha * 10.0**log_n2_ha, hb * 10.0**log_o3_hb


# ----------------------------------------------------------------------------
# BPT
# ----------------------------------------------------------------------------
def test_demarcation_curves():
    assert kauffmann03(-0.5) == pytest.approx(0.61 / -0.55 + 1.3)
    assert kewley01(0.0) == pytest.approx(0.61 / -0.47 + 1.19)
    # beyond the asymptotes the other hyperbola branch is not returned
    assert np.isnan(kauffmann03(0.1)) and np.isnan(kewley01(0.5))


@pytest.mark.parametrize(
    "x, y, expected",
    [
        (-0.5, -0.5, "star-forming"),
        (-0.1, 0.0, "composite"),  # Ka(-0.1) = -2.77 < 0 < Ke(-0.1) = 0.120
        (-0.1, 0.2, "AGN"),  # above Ke(-0.1) = 0.120
        (0.2, 0.8, "AGN"),
        (-1.0, 0.5, "star-forming"),  # Ka(-1) = 0.719
        (-1.0, 0.75, "composite"),  # between Ka(-1) = 0.719 and Ke(-1) = 0.775
        (-1.0, 0.8, "AGN"),
        # branch handling: right of x = 0.05 is never SF although y < 0.61/(x-0.05)+1.3
        (0.1, -2.0, "composite"),
        # right of x = 0.47 is AGN although y < 0.61/(x-0.47)+1.19
        (0.6, -1.0, "AGN"),
        # left of the crossing (x < -1.28) SF has priority below Kauffmann
        (-1.5, 0.89, "star-forming"),
        (np.nan, 0.0, "unclassified"),
    ],
)
def test_bpt_class_known_points(x, y, expected):
    assert bpt_class(x, y) == expected


def test_bpt_class_matches_formulas_on_a_grid():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 1.0, 20000)
    y = rng.uniform(-1.5, 1.5, 20000)
    got = bpt_class(x, y)
    for xi, yi, gi in zip(x[:3000], y[:3000], got[:3000]):
        if xi < 0.05 and yi < 0.61 / (xi - 0.05) + 1.3:
            want = "star-forming"
        elif xi >= 0.47 or yi >= 0.61 / (xi - 0.47) + 1.19:
            want = "AGN"
        else:
            want = "composite"
        assert gi == want
    # all three classes occur, SF only left of 0.05
    assert set(got) == {"star-forming", "composite", "AGN"}
    assert np.all(x[got == "star-forming"] < 0.05)
    assert np.all(got[x >= 0.47] == "AGN")


def test_bpt_seyfert_liner_split():
    labels = bpt_class([0.2, 0.2, -0.5], [0.8, 0.3, -0.5], split_agn=True)
    # Schawinski line at x = 0.2: y = 0.66
    assert labels.tolist() == ["Seyfert", "LINER", "star-forming"]


def test_bpt_class_accepts_dex_quantities():
    x, y = bpt_line_ratios(*fluxes_for(0.2, 0.8))
    assert x.unit == u.dex(u.one)
    assert bpt_class(x, y) == "AGN"
    np.testing.assert_allclose([x.value, y.value], [0.2, 0.8])


def test_log_ratios_of_flux_quantities_are_taken_as_logs():
    """``np.log10(n2 / ha)`` of flux Quantities is a dimensionless Quantity: a log already, not converted to dex again."""
    ha, hb = np.array([300.0, 100.0, 100.0]) * FLUX_UNIT, np.array([100.0, 30.0, 30.0]) * FLUX_UNIT
    n2, o3 = np.array([30.0, 200.0, 60.0]) * FLUX_UNIT, np.array([30.0, 300.0, 60.0]) * FLUX_UNIT
    x, y = np.log10(n2 / ha), np.log10(o3 / hb)  # -1.0, 0.30, -0.22 and -0.52, 1.0, 0.30
    assert x.unit == u.dimensionless_unscaled
    assert bpt_class(x, y).tolist() == ["star-forming", "AGN", "composite"]
    assert bpt_class(x, y).tolist() == bpt_class(x.value, y.value).tolist()
    np.testing.assert_allclose(kauffmann03(x), kauffmann03(x.value))
    np.testing.assert_allclose(kewley01(x), kewley01(x.value))
    # dex Quantities are still converted: 1 dex(%) is 10 % = 0.1, log10 -1
    assert bpt_class(u.Dex([1.0], u.dex(u.percent)), [-1.0]).tolist() == ["star-forming"]
    np.testing.assert_allclose(kewley01(u.Dex([1.0], u.dex(u.percent))), kewley01(-1.0))


def test_probabilities_tight_posterior_sf():
    rng = np.random.default_rng(1)
    n, s = 5, 400
    ha, hb, n2, o3 = fluxes_for(-0.5, -0.5)
    noise = lambda v: Distribution(v * (1 + 0.02 * rng.normal(size=(n, s))))  # noqa: E731
    t = bpt_class_probabilities(noise(ha), noise(hb), noise(n2), noise(o3))
    assert isinstance(t, QTable) and len(t) == n
    np.testing.assert_allclose(t["star-forming"], 1.0)
    np.testing.assert_allclose(t["composite"] + t["AGN"], 0.0)
    assert np.all(t["n_valid"] == s) and np.all(t["n_invalid"] == 0)


def test_probabilities_are_sample_fractions_and_exclude_bad_samples():
    # 6 joint samples: 3 SF, 2 AGN, 1 composite; plus 2 with non-positive flux
    pts = [(-0.5, -0.5)] * 3 + [(0.2, 0.8)] * 2 + [(-0.1, 0.0)]
    cols = np.array([fluxes_for(x, y) for x, y in pts]).T  # (4, 6)
    bad = np.array([[300.0, 300.0], [0.0, 100.0], [30.0, 30.0], [30.0, -5.0]])
    cols = np.concatenate([cols, bad], axis=1)
    dists = [Distribution(c[None, :] * FLUX_UNIT) for c in cols]
    t = bpt_class_probabilities(*dists, split_agn=True)
    assert t["n_valid"][0] == 6 and t["n_invalid"][0] == 2
    assert t["star-forming"][0] == pytest.approx(0.5)
    assert t["AGN"][0] == pytest.approx(1 / 3)
    assert t["composite"][0] == pytest.approx(1 / 6)
    assert t["Seyfert"][0] + t["LINER"][0] == pytest.approx(t["AGN"][0])


def test_probabilities_units_and_no_valid_samples():
    ha, hb, n2, o3 = fluxes_for(0.2, 0.8)
    # same fluxes in W/m2 for two of the lines give identical classes
    to_si = lambda f: (f * FLUX_UNIT).to(u.W / u.m**2)  # noqa: E731
    t = bpt_class_probabilities(np.array([ha, -1.0]), to_si(np.array([hb, hb])), n2, to_si(o3))
    assert t["AGN"][0] == 1.0
    assert t["n_valid"].tolist() == [1, 0]
    assert np.isnan(t["AGN"][1])


def test_probabilities_of_scalar_inputs_give_one_row():
    t = bpt_class_probabilities(*fluxes_for(-0.5, -0.5))
    assert len(t) == 1 and t["star-forming"][0] == 1.0 and t["n_valid"][0] == 1


def test_distributions_must_share_sample_count():
    a = Distribution(np.ones((2, 10)))
    b = Distribution(np.ones((2, 11)))
    with pytest.raises(ValueError, match="samples"):
        balmer_decrement(a, b)


# ----------------------------------------------------------------------------
# Attenuation curves and A_V
# ----------------------------------------------------------------------------
def test_k_lambda_literature_values():
    # Cardelli et al. (1989), R_V = 3.1: k(Hb) = 3.61, k(Ha) = 2.53
    assert k_lambda(HBETA_WAVELENGTH, "cardelli1989") == pytest.approx(3.61, abs=0.01)
    assert k_lambda(HALPHA_WAVELENGTH, "cardelli1989") == pytest.approx(2.53, abs=0.01)
    # Calzetti et al. (2000): k(Hb) = 4.60, k(Ha) = 3.33 (E(B-V) = 1.97 log(dec/2.86))
    assert k_lambda(HBETA_WAVELENGTH) == pytest.approx(4.60, abs=0.01)
    assert k_lambda(HALPHA_WAVELENGTH) == pytest.approx(3.33, abs=0.01)
    diff = k_lambda(HBETA_WAVELENGTH) - k_lambda(HALPHA_WAVELENGTH)
    assert 2.5 / diff == pytest.approx(1.97, abs=0.01)
    # k(V) = R_V for both curves (A_V / E(B-V) = R_V)
    assert k_lambda(0.55 * u.micron) == pytest.approx(4.05, abs=0.01)
    assert k_lambda(0.55 * u.micron, "cardelli1989") == pytest.approx(3.1, abs=0.01)
    # CCM B band: A_B/A_V = 1.324 for R_V = 3.1 -> k(B) = 4.10
    assert k_lambda(0.44 * u.micron, "cardelli1989") == pytest.approx(4.10, abs=0.03)
    # the two published Calzetti pieces meet at 0.63 micron up to a known ~0.025 jump
    k = k_lambda([0.6299, 0.6301] * u.micron)
    assert 0.02 < k[1] - k[0] < 0.03
    with pytest.raises(ValueError):
        k_lambda(3.0 * u.micron)
    with pytest.raises(ValueError):
        k_lambda(0.5 * u.micron, "smc")


def test_k_lambda_ranges():
    """Outside a curve's range: an error naming it, or the end value with clip=True."""
    with pytest.raises(ValueError, match="0.12-2.2 micron"):
        k_lambda(0.1 * u.micron)
    np.testing.assert_allclose(k_lambda([0.05, 0.12, 2.2, 5.0] * u.micron, clip=True),
                               k_lambda([0.12, 0.12, 2.2, 2.2] * u.micron))
    with pytest.raises(ValueError, match="Cardelli"):
        k_lambda(0.05 * u.micron, "cardelli1989")
    # dust_extinction's CCM89 is defined for 2 <= R_V <= 6
    with pytest.raises(ValueError, match="r_v = 7.0"):
        k_lambda(0.5 * u.micron, "cardelli1989", 7.0)


def test_air_wavelengths_of_the_line_table():
    """Morton (2000) vacuum-to-air, as specutils implements it, and air Halpha/Hbeta."""
    specutils_wcs = pytest.importorskip("specutils.utils.wcs_utils")
    vac = np.array([line.wavelength for line in LINES.values()]) * u.AA
    np.testing.assert_allclose(vacuum_to_air(vac).to_value(u.AA),
                               specutils_wcs.vac_to_air(vac, method="Morton2000").to_value(u.AA),
                               rtol=1e-9)
    # the NIST air wavelengths used before the table (6562.819 and 4861.333) within 0.03 A
    assert HALPHA_WAVELENGTH.to_value(u.AA) == pytest.approx(6562.819, abs=0.03)
    assert HBETA_WAVELENGTH.to_value(u.AA) == pytest.approx(4861.333, abs=0.03)
    assert LINES["halpha"].air_wavelength == pytest.approx(HALPHA_WAVELENGTH.to_value(u.AA))


@pytest.mark.parametrize("curve", ["calzetti2000", "cardelli1989"])
def test_intrinsic_decrement_gives_zero_av(curve):
    av = av_from_balmer(np.array([286.0, 572.0]), np.array([100.0, 200.0]), curve=curve)
    assert av.unit == u.mag
    np.testing.assert_allclose(av.value, 0.0, atol=1e-12)


@pytest.mark.parametrize("curve, r_v", [("calzetti2000", None), ("cardelli1989", None), ("cardelli1989", 5.0)])
def test_known_attenuation_round_trips(curve, r_v):
    a_v = np.array([0.3, 1.2, 2.5])
    rv = {"calzetti2000": 4.05, "cardelli1989": 3.1}[curve] if r_v is None else r_v
    k_ha = k_lambda(HALPHA_WAVELENGTH, curve, rv)
    k_hb = k_lambda(HBETA_WAVELENGTH, curve, rv)
    ha = 286.0 * 10 ** (-0.4 * a_v * k_ha / rv)
    hb = 100.0 * 10 ** (-0.4 * a_v * k_hb / rv)
    np.testing.assert_allclose(av_from_balmer(ha, hb, curve=curve, r_v=r_v).value, a_v)


def test_av_numbers_and_options():
    # a decrement of 2.86 * 10**0.5: A_V = 0.5 * 2.5 * R_V / (k_Hb - k_Ha)
    dec = 2.86 * 10**0.5
    assert av_from_balmer(dec, 1.0).value == pytest.approx(3.98, abs=0.01)
    assert av_from_balmer(dec, 1.0, curve="cardelli1989").value == pytest.approx(3.61, abs=0.01)
    # AGN-like intrinsic ratio
    assert av_from_balmer(3.1, 1.0, intrinsic_ratio=3.1).value == pytest.approx(0.0)
    below = av_from_balmer(np.array([2.5, 4.0]), np.array([1.0, 1.0]))
    assert below.value[0] < 0
    clipped = av_from_balmer(np.array([2.5, 4.0]), np.array([1.0, 1.0]), clip_negative=True)
    np.testing.assert_allclose(clipped.value, [0.0, below.value[1]])
    # non-positive or missing flux -> NaN
    bad = av_from_balmer(np.array([-1.0, 300.0, 300.0]), np.ma.MaskedArray([100.0, 0.0, 100.0], mask=[0, 0, 1]))
    assert np.all(np.isnan(bad.value))


def test_correlation_is_preserved_sample_by_sample():
    rng = np.random.default_rng(2)
    hb_s = rng.normal(100.0, 20.0, (3, 1000))
    ratio = np.array([[2.86], [3.5], [5.0]])
    ha_corr = Distribution(ratio * hb_s * FLUX_UNIT)
    hb = Distribution(hb_s * FLUX_UNIT)
    dec = balmer_decrement(ha_corr, hb)
    assert isinstance(dec, Distribution) and dec.n_samples == 1000
    assert dec.unit == u.dimensionless_unscaled
    np.testing.assert_allclose(dec.pdf_std().value, 0.0, atol=1e-12)
    np.testing.assert_allclose(dec.pdf_median().value, ratio[:, 0])
    av = av_from_balmer(ha_corr, hb)
    np.testing.assert_allclose(av.pdf_std().value, 0.0, atol=1e-10)
    assert av.pdf_median()[0].value == pytest.approx(0.0, abs=1e-10)
    # the same marginals with the pairing broken give a wide decrement
    ha_shuffled = Distribution(ratio * rng.permuted(hb_s, axis=1) * FLUX_UNIT)
    assert np.all(balmer_decrement(ha_shuffled, hb).pdf_std().value > 0.3)


def test_point_inputs_broadcast_against_distributions():
    hb = Distribution(np.full((2, 50), 100.0))
    dec = balmer_decrement(np.array([286.0, 400.0]) * FLUX_UNIT, hb)
    assert isinstance(dec, Distribution) and dec.shape == (2,)
    np.testing.assert_allclose(dec.pdf_mean().value, [2.86, 4.0])


# ----------------------------------------------------------------------------
# SFR
# ----------------------------------------------------------------------------
def flux_for_luminosity(log_l, z, cosmo=Planck18):
    d = cosmo.luminosity_distance(z).to_value(u.cm)
    return 10.0**log_l / (4 * np.pi * d**2) * u.erg / u.s / u.cm**2


def test_sfr_kennicutt2012_and_1998():
    z = np.array([0.02, 0.1, 0.3])
    log_l = np.array([40.0, 41.27, 42.5])
    flux = flux_for_luminosity(log_l, z)
    sfr = sfr_from_halpha(flux, z)
    assert sfr.unit == u.dex(u.Msun / u.yr)
    np.testing.assert_allclose(sfr.value, log_l - 41.27, atol=1e-9)
    lin = sfr_from_halpha(flux, z, calibration="kennicutt1998", log=False)
    assert lin.unit == u.Msun / u.yr
    np.testing.assert_allclose(lin.value, 7.9e-42 * 10**log_l, rtol=1e-9)
    # plain arrays are in 1e-17 erg/s/cm2
    plain = flux.to_value(CGS) / 1e-17
    np.testing.assert_allclose(sfr_from_halpha(plain, z).value, sfr.value)
    # a different cosmology changes the distance, hence the SFR
    other = sfr_from_halpha(flux, z, cosmology=WMAP9).value
    d_ratio = WMAP9.luminosity_distance(z) / Planck18.luminosity_distance(z)
    np.testing.assert_allclose(other - sfr.value, 2 * np.log10(d_ratio.value), atol=1e-9)
    with pytest.raises(ValueError):
        sfr_from_halpha(flux, z, calibration="madau")


def test_sfr_dust_correction():
    flux = flux_for_luminosity(41.27, 0.1)
    av = 1.5 * u.mag
    for curve, rv in [("calzetti2000", 4.05), ("cardelli1989", 3.1)]:
        sfr = sfr_from_halpha(flux, 0.1, av=av, curve=curve).value
        a_ha = 1.5 * k_lambda(HALPHA_WAVELENGTH, curve) / rv
        assert sfr == pytest.approx(0.4 * a_ha, abs=1e-9)
    # Calzetti: A_Ha / A_V = 3.33 / 4.05 = 0.82
    assert sfr_from_halpha(flux, 0.1, av=1.0).value == pytest.approx(0.4 * 0.821, abs=0.002)


def test_sfr_sample_by_sample_with_distributions():
    rng = np.random.default_rng(3)
    n, s = 4, 300
    z = Distribution(rng.uniform(0.05, 0.2, (n, s)))
    log_l = rng.normal(41.0, 0.3, (n, s))
    d = Planck18.luminosity_distance(z.distribution).to_value(u.cm)
    flux = Distribution(10**log_l / (4 * np.pi * d**2) * CGS)
    # flux and redshift samples belong together: SFR samples reproduce log L exactly
    sfr = sfr_from_halpha(flux, z)
    assert isinstance(sfr, Distribution) and sfr.n_samples == s
    np.testing.assert_allclose(sfr.distribution.value, log_l - 41.27, atol=1e-9)
    # with Balmer A_V samples from the same draws
    hb = Distribution(np.full((n, s), 1.0))
    ha = Distribution(np.full((n, s), 2.86 * 10**0.2))
    av = av_from_balmer(ha, hb)
    sfr_corr = sfr_from_halpha(flux, z, av=av)
    shift = 0.4 * av.distribution.value * k_lambda(HALPHA_WAVELENGTH) / 4.05
    np.testing.assert_allclose(sfr_corr.distribution.value - sfr.distribution.value, shift)


def test_sfr_nan_for_bad_samples():
    sfr = sfr_from_halpha(np.array([-1.0, 0.0, 10.0, 10.0]), np.array([0.1, 0.1, 0.0, -0.01]))
    assert np.all(np.isnan(sfr.value))


def test_halpha_luminosity_and_interpolated_distances():
    lum = halpha_luminosity(100.0 * FLUX_UNIT, 0.1)
    expected = 4 * np.pi * Planck18.luminosity_distance(0.1) ** 2 * 100e-17 * CGS
    assert lum.to_value(u.erg / u.s) == pytest.approx(expected.to_value(u.erg / u.s), rel=1e-10)
    # large arrays use an interpolated distance: check its accuracy
    z = np.random.default_rng(4).uniform(0.001, 3.0, 10000)
    exact = Planck18.luminosity_distance(z[:500]).to_value(u.cm)
    np.testing.assert_allclose(_luminosity_distance_cm(z, Planck18)[:500], exact, rtol=1e-6)
