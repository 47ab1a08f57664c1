"""Tests of astro_galpost.physics.msigma: M-sigma black-hole masses and aperture corrections."""

import numpy as np
import pytest
from astropy import units as u
from astropy.table import Column, MaskedColumn, QTable, Table
from astropy.uncertainty import Distribution
from astropy.utils.masked import Masked

from astro_galpost.physics import (
    CAPPELLARI_2006_EXPONENT,
    JORGENSEN_1995_EXPONENT,
    MBH_SIGMA_RELATIONS,
    MSigmaRelation,
    add_mbh_column,
    aperture_correct_sigma,
    mbh_from_sigma,
    sigma_quality,
)

KMS = u.km / u.s


# --------------------------------------------------------------------------- mbh_from_sigma
def test_pivot_gives_intercept_exactly():
    out = mbh_from_sigma(200 * KMS)
    assert out.unit == u.dex(u.Msun)
    assert out.value == pytest.approx(8.32, abs=1e-12)
    # the logarithmic quantity converts back to a physical mass
    assert out.physical.to_value(u.Msun) == pytest.approx(10 ** 8.32, rel=1e-10)


def test_slope_mcconnell_ma():
    out = mbh_from_sigma([100, 200, 400] * KMS)
    np.testing.assert_allclose(np.diff(out.value), 5.64 * np.log10(2.0), rtol=1e-12)


@pytest.mark.parametrize("name, alpha, beta, eps", [
    ("mcconnell_ma_2013", 8.32, 5.64, 0.38),
    ("kormendy_ho_2013", 8.49, 4.377, 0.29),
    ("gultekin_2009", 8.12, 4.24, 0.44),
    ("van_den_bosch_2016", 8.32, 5.35, 0.49),
])
def test_published_relations(name, alpha, beta, eps):
    rel = MBH_SIGMA_RELATIONS[name]
    assert (rel.alpha, rel.beta, rel.scatter) == (alpha, beta, eps)
    out = mbh_from_sigma([200, 100] * KMS, relation=name)
    np.testing.assert_allclose(out.value, [alpha, alpha - beta * np.log10(2)], rtol=1e-12)


def test_custom_relation_and_unknown_name():
    rel = MSigmaRelation(8.0, 4.0, 0.3, "toy")
    assert mbh_from_sigma(20 * KMS, relation=rel).value == pytest.approx(4.0)
    with pytest.raises(ValueError, match="unknown M-sigma relation 'tremaine'"):
        mbh_from_sigma(200 * KMS, relation="tremaine")


def test_velocity_units_are_converted():
    np.testing.assert_allclose(mbh_from_sigma(2.0e5 * u.m / u.s).value, 8.32, rtol=1e-12)
    np.testing.assert_allclose(mbh_from_sigma([150, 250] * KMS).value,
                               mbh_from_sigma([1.5e5, 2.5e5] * u.m / u.s).value, rtol=1e-12)


def test_scatter_distribution():
    dist = mbh_from_sigma([150, 200, 250] * KMS, scatter=True, n_samples=20000, random_state=3)
    assert isinstance(dist, Distribution)
    assert dist.shape == (3,)
    assert dist.n_samples == 20000
    assert dist.unit == u.dex(u.Msun)
    np.testing.assert_allclose(dist.pdf_std().value, 0.38, atol=0.01)
    np.testing.assert_allclose(dist.pdf_mean().value, mbh_from_sigma([150, 200, 250] * KMS).value,
                               atol=0.01)
    again = mbh_from_sigma([150, 200, 250] * KMS, scatter=True, n_samples=20000, random_state=3)
    np.testing.assert_array_equal(dist.distribution.value, again.distribution.value)
    other = mbh_from_sigma(200 * KMS, relation="van_den_bosch_2016", scatter=True,
                           n_samples=20000, random_state=np.random.default_rng(0))
    assert other.pdf_std().value == pytest.approx(0.49, abs=0.01)


def test_distribution_input_propagates():
    rng = np.random.default_rng(1)
    sig = Distribution(rng.normal(200, 10, size=(2, 5000)) * KMS)
    out = mbh_from_sigma(sig)
    assert isinstance(out, Distribution)
    assert out.pdf_median().value == pytest.approx([8.32, 8.32], abs=0.01)
    # d logM = 5.64 * d sigma / (sigma ln 10)
    assert out.pdf_std().value == pytest.approx(5.64 * 10 / 200 / np.log(10), rel=0.05)
    with_scatter = mbh_from_sigma(sig, scatter=True, random_state=2)
    expected = np.hypot(0.38, 5.64 * 10 / 200 / np.log(10))
    assert with_scatter.pdf_std().value == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize("bad", [200.0, np.array([200.0, 150.0]), [200, 150], 200])
def test_unitless_input_is_rejected(bad):
    with pytest.raises(TypeError, match="plain number is ambiguous.*km/s"):
        mbh_from_sigma(bad)


def test_non_velocity_unit_is_rejected():
    with pytest.raises(u.UnitTypeError, match="unit 'km', which is not a velocity"):
        mbh_from_sigma(200 * u.km)
    with pytest.raises(u.UnitTypeError, match="not a velocity"):
        mbh_from_sigma(200 * u.AA)
    with pytest.raises(u.UnitTypeError, match="dimensionless unit, which is not a velocity"):
        mbh_from_sigma(200 * u.dimensionless_unscaled)


@pytest.mark.parametrize("bad, message", [
    (0 * KMS, "strictly positive"),
    (-9999 * KMS, "strictly positive.*-9999"),
    ([200, -5] * KMS, "1 value"),
    (np.nan * KMS, "NaN"),
    (np.inf * KMS, "infinite"),
])
def test_bad_values_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        mbh_from_sigma(bad)


def test_bad_n_samples():
    for n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n_samples"):
            mbh_from_sigma(200 * KMS, scatter=True, n_samples=n)


def test_masked_input_propagates():
    sig = Masked([200.0, -9999.0, np.nan, 100.0] * KMS, mask=[False, True, True, False])
    out = mbh_from_sigma(sig)
    assert isinstance(out, Masked)
    np.testing.assert_array_equal(out.mask, [False, True, True, False])
    np.testing.assert_allclose(out.unmasked.value[[0, 3]], [8.32, 8.32 - 5.64 * np.log10(2)])
    # an unmasked bad value is still an error
    with pytest.raises(ValueError, match="strictly positive"):
        mbh_from_sigma(Masked([200.0, -1.0] * KMS, mask=[False, False]))
    # with scatter, masked entries give NaN samples
    dist = mbh_from_sigma(sig, scatter=True, n_samples=10, random_state=0)
    assert np.isnan(dist.distribution.value[1]).all()
    assert np.isfinite(dist.distribution.value[0]).all()


def test_table_columns_as_input():
    col = MaskedColumn([200.0, 0.0], mask=[False, True], unit="km/s")
    out = mbh_from_sigma(col)
    np.testing.assert_array_equal(out.mask, [False, True])
    assert mbh_from_sigma(Column([200.0], unit="km/s")).value[0] == pytest.approx(8.32)
    with pytest.raises(TypeError, match="column without a unit"):
        mbh_from_sigma(Column([200.0]))


# --------------------------------------------------------------------------- aperture
def test_aperture_correction_formula():
    sig = 200 * KMS
    # aperture equal to R_e: unchanged
    assert aperture_correct_sigma(sig, 2 * u.arcsec, 2 * u.arcsec).value == pytest.approx(200)
    # Cappellari et al. (2006): sigma_R / sigma_e = (R/R_e)^-0.066
    out = aperture_correct_sigma(sig, 1.5 * u.arcsec, 6 * u.arcsec)
    assert out.unit == KMS
    assert out.value == pytest.approx(200 * (1.5 / 6) ** 0.066)
    assert out < sig  # a fibre smaller than R_e sees a larger dispersion than sigma_e
    jorg = aperture_correct_sigma(sig, 1.5 * u.arcsec, 6 * u.arcsec,
                                  exponent=JORGENSEN_1995_EXPONENT)
    assert jorg.value == pytest.approx(200 * 0.25 ** 0.04)
    assert CAPPELLARI_2006_EXPONENT == -0.066
    # lengths work, and units of sigma are kept
    assert aperture_correct_sigma(2e5 * u.m / u.s, 1 * u.kpc, 1000 * u.pc).unit == u.m / u.s
    # arrays broadcast
    arr = aperture_correct_sigma([100, 200] * KMS, 1.5 * u.arcsec, [3, 6] * u.arcsec)
    np.testing.assert_allclose(arr.value, [100 * 0.5 ** 0.066, 200 * 0.25 ** 0.066])


def test_aperture_correction_errors():
    with pytest.raises(u.UnitTypeError, match="both must be angles or both lengths"):
        aperture_correct_sigma(200 * KMS, 1.5 * u.arcsec, 3 * u.kpc)
    with pytest.raises(TypeError, match="r_eff must be an astropy Quantity"):
        aperture_correct_sigma(200 * KMS, 1.5 * u.arcsec, 3.0)
    with pytest.raises(TypeError, match="sigma must be an astropy Quantity"):
        aperture_correct_sigma(200.0, 1.5 * u.arcsec, 3 * u.arcsec)
    with pytest.raises(ValueError, match="r_eff must be strictly positive"):
        aperture_correct_sigma(200 * KMS, 1.5 * u.arcsec, -9999 * u.arcsec)


# --------------------------------------------------------------------------- add_mbh_column
def test_add_mbh_column_sentinels_masked():
    t = Table({"vdisp": [200.0, 0.0, -9999.0, np.nan, 100.0]})
    out = add_mbh_column(t)
    assert out is t
    col = t["log_mbh"]
    assert isinstance(col, MaskedColumn)
    assert col.unit == u.dex(u.Msun)
    np.testing.assert_array_equal(col.mask, [False, True, True, True, False])
    np.testing.assert_allclose(col.data.data[[0, 4]], [8.32, 8.32 - 5.64 * np.log10(2)])


def test_add_mbh_column_masked_input_and_units():
    t = Table()
    t["velDisp"] = MaskedColumn([2.0e5, 1.0e5, 5.0e4], mask=[False, True, False], unit="m/s")
    t["vdisp"] = [1.0, 1.0, 1.0]  # lower priority: velDisp is used
    add_mbh_column(t, relation="gultekin_2009", quality=False)  # 50 km/s: below SDSS resolution
    np.testing.assert_array_equal(t["log_mbh"].mask, [False, True, False])
    assert t["log_mbh"][0] == pytest.approx(8.12)
    assert t["log_mbh"][2] == pytest.approx(8.12 + 4.24 * np.log10(0.25))


def test_add_mbh_column_detection_order_and_errors():
    t = Table({"sigmaStars": [150.0], "sigma": [200.0]})
    add_mbh_column(t)
    assert t["log_mbh"][0] == pytest.approx(8.32)  # "sigma" precedes "sigmaStars"
    with pytest.raises(ValueError, match="already exists"):
        add_mbh_column(t)
    add_mbh_column(t, sigma_column="sigmaStars", overwrite=True)
    assert t["log_mbh"][0] < 8.32
    with pytest.raises(KeyError, match="v_disp, velDisp, vdisp, sigma, sigmaStars"):
        add_mbh_column(Table({"ra": [1.0]}))
    with pytest.raises(KeyError, match="'nope' not in table"):
        add_mbh_column(Table({"vdisp": [1.0]}), sigma_column="nope")
    with pytest.raises(u.UnitTypeError, match="column 'vdisp' has unit"):
        add_mbh_column(Table({"vdisp": [1.0] * u.kpc}))
    with pytest.raises(TypeError, match="astropy Table"):
        add_mbh_column({"vdisp": [200.0]})


def test_add_mbh_column_aperture_and_scatter():
    t = Table({"velDisp": [200.0, 200.0, 200.0], "petroR50_r": [6.0, -9999.0, 1.5]})
    add_mbh_column(t, reff_column="petroR50_r", scatter_column="log_mbh_scatter")
    expected = 8.32 + 5.64 * np.log10((1.5 / 6.0) ** 0.066)
    assert t["log_mbh"][0] == pytest.approx(expected)
    assert t["log_mbh"].mask[1]  # no size: no aperture correction possible
    assert t["log_mbh"][2] == pytest.approx(8.32)  # fibre radius equals R_e
    np.testing.assert_array_equal(t["log_mbh_scatter"].mask, [False, True, False])
    assert t["log_mbh_scatter"][0] == pytest.approx(0.38)


def test_add_mbh_column_qtable():
    q = QTable({"vdisp": [200.0, 0.0] * KMS})
    add_mbh_column(q)
    assert isinstance(q["log_mbh"], Masked)
    assert q["log_mbh"].unit == u.dex(u.Msun)
    np.testing.assert_array_equal(q["log_mbh"].mask, [False, True])


# --------------------------------------------------------------------------- real data
def test_resolve_catalogue(shared_data):
    """RESOLVE: ``vdisp`` is 0 where not measured; 167 galaxies have a measurement."""
    t = Table.read(shared_data / "resolve.fits")
    add_mbh_column(t, quality=False)  # auto-detects "vdisp", unitless -> km/s; no sigma cuts
    vdisp = np.asarray(t["vdisp"], dtype=float)
    measured = vdisp > 0
    assert measured.sum() == 167
    assert (~t["log_mbh"].mask).sum() == 167
    np.testing.assert_array_equal(t["log_mbh"].mask, ~measured)
    np.testing.assert_allclose(t["log_mbh"].data.data[measured],
                               8.32 + 5.64 * np.log10(vdisp[measured] / 200.0), rtol=1e-12)
    # RESOLVE is a dwarf-dominated volume-limited survey: low dispersions, small black holes
    logm = t["log_mbh"].compressed()
    assert 3 < np.median(logm) < 8
    assert logm.max() < 10.5


# --------------------------------------------------------------------------- sigma quality
def test_sigma_quality_reasons_and_masked_masses():
    t = Table({"velDisp": [200.0, 0.0, 40.0, 850.0, 150.0, 180.0],
               "velDispErr": [10.0, 0.0, 5.0, 90.0, 80.0, 9.0],
               "sn_median": [20.0, 20.0, 20.0, 20.0, 20.0, 4.0]})
    assert sigma_quality(t, "velDisp").tolist() == [
        "", "not measured", "below resolution", "above limit", "large error", "low S/N"]
    add_mbh_column(t)
    assert t["log_mbh"].mask.tolist() == [False, True, True, True, True, True]
    assert t["log_mbh_reason"][3] == "above limit"
    # 850 km/s would have given an unphysical 1e11.9 Msun
    assert 8.32 + 5.64 * np.log10(850 / 200) > 11.8


def test_sigma_quality_on_real_resolve(shared_data):
    """The 167 RESOLVE dispersions: the ones below 70 km/s are masked with a reason."""
    t = Table.read(shared_data / "resolve.fits")
    t = t[np.asarray(t["vdisp"]) > 0]
    assert len(t) == 167
    reason = sigma_quality(t, "vdisp")
    sigma = np.asarray(t["vdisp"])
    np.testing.assert_array_equal(reason == "below resolution", sigma < 70)
    np.testing.assert_array_equal(reason == "above limit", sigma > 420)
    assert set(reason) <= {"", "below resolution", "above limit"}
    out = add_mbh_column(t, sigma_column="vdisp")
    assert int((~out["log_mbh"].mask).sum()) == int(((sigma >= 70) & (sigma <= 420)).sum())
    assert np.all(out["log_mbh"][~out["log_mbh"].mask] < 10.0)


def test_sigma_in_wrong_unit_named():
    with pytest.raises(u.UnitTypeError, match="'velDisp'"):
        sigma_quality(Table({"velDisp": [200.0] * u.kpc}), "velDisp")


@pytest.mark.parametrize("quality", [True, False])
def test_missing_sigma_error_masks_the_propagated_mass(quality):
    """An error of -9999 or NaN is unknown, not a 122-dex spread: those masses are masked, and said why."""
    t = Table({"velDisp": [200.0, 200.0, 200.0], "velDispErr": [10.0, -9999.0, np.nan]})
    if quality:
        add_mbh_column(t, quality=True, propagate_scatter=True, random_state=0, scatter_column="s")
        assert t["log_mbh_reason"].tolist() == ["", "no error", "no error"]
    else:
        with pytest.warns(UserWarning, match="2 rows of 'velDisp' have no error .* in 'velDispErr'"):
            add_mbh_column(t, quality=False, propagate_scatter=True, random_state=0, scatter_column="s")
    assert t["log_mbh"].mask.tolist() == [False, True, True]
    assert t["s"].mask.tolist() == [False, True, True]
    assert t["s"][0] == pytest.approx(np.hypot(0.38, 5.64 * 10.0 / (200.0 * np.log(10))))


def test_missing_sigma_error_without_propagation():
    """The mean relation needs no error: the mass stays, its unknown spread is masked."""
    t = Table({"velDisp": [200.0, 200.0], "velDispErr": [10.0, -9999.0]})
    add_mbh_column(t, quality=False, scatter_column="s")
    assert t["log_mbh"].mask.tolist() == [False, False]
    assert t["log_mbh"][1] == pytest.approx(8.32)
    assert t["s"].mask.tolist() == [False, True]


def test_propagated_scatter_has_the_relation_width():
    t = Table({"velDisp": np.full(4000, 200.0), "velDispErr": np.full(4000, 20.0)})
    add_mbh_column(t, propagate_scatter=True, random_state=1, scatter_column="s")
    expected = np.hypot(0.38, 5.64 * 20.0 / (200.0 * np.log(10)))
    assert t["s"][0] == pytest.approx(expected)
    assert np.std(t["log_mbh"]) == pytest.approx(expected, rel=0.05)
    assert np.mean(t["log_mbh"]) == pytest.approx(8.32, abs=0.03)
