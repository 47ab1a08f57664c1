import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from astro_galpost import TARGETS, Target, register_target
from astro_galpost.model.targets import LINE_FLUX_UNIT

EXPECTED = {
    "log_mstar": (u.dex(u.Msun), "lgm_tot_p50", "core", "linear"),
    "log_sfr": (u.dex(u.Msun / u.yr), "sfr_tot_p50", "core", "linear"),
    "redshift": (u.dimensionless_unscaled, "z", "core", "linear"),
    "log_mbh": (u.dex(u.Msun), "log_mbh", "black_hole", "linear"),  # chained on the core since format 3
    "metallicity": (u.dimensionless_unscaled, "oh_p50", "metallicity", "linear"),
    "halpha": (LINE_FLUX_UNIT, "h_alpha_flux", "lines", "asinh"),
    "hbeta": (LINE_FLUX_UNIT, "h_beta_flux", "lines", "asinh"),
    "nii_6584": (LINE_FLUX_UNIT, "nii_6584_flux", "lines", "asinh"),
    "oiii_5007": (LINE_FLUX_UNIT, "oiii_5007_flux", "lines", "asinh"),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_builtin_targets(name):
    unit, column, group, space = EXPECTED[name]
    target = TARGETS[name]
    assert target.unit == unit
    assert target.column == column
    assert target.group == group
    assert target.space == space


def test_line_flux_unit_is_sdss():
    assert LINE_FLUX_UNIT.to(u.erg / u.s / u.cm**2) == pytest.approx(1e-17)


def test_sentinels_nan_and_masks_are_missing():
    col = MaskedColumn([10.5, -9999.0, np.nan, 11.0, -99.0], mask=[False, False, False, True, False])
    values, valid = TARGETS["log_mstar"].values_from(col)
    assert valid.tolist() == [True, False, False, False, False]
    assert values[0] == 10.5 and np.isnan(values[1:]).all()


def test_log_sfr_minus_one_is_a_value_not_a_sentinel():
    values, valid = TARGETS["log_sfr"].values_from(np.array([-1.0, -9999.0]))
    assert valid.tolist() == [True, False]


def test_line_fluxes_modelled_in_softened_log10_negative_kept_zero_missing():
    target = TARGETS["halpha"]
    # galSpecLine: a negative flux is a measurement of an undetected line, exactly 0 means "not fitted"
    values, valid = target.values_from(np.array([100.0, -3.0, 0.0, -9999.0]))
    assert valid.tolist() == [True, True, False, False]
    model = target.to_model(values[:2])
    assert model[0] == pytest.approx(2.0, abs=1e-3)  # log10 for a bright line
    assert np.isfinite(model[1]) and model[1] < np.log10(target.softening)
    assert target.from_model(model) == pytest.approx(values[:2])


def test_asinh_space_is_log10_above_the_softening_and_monotonic():
    t = Target("flux_dummy", u.Jy, "f", "g", space="asinh", softening=0.5)
    x = np.array([-50.0, -1.0, 0.0, 0.1, 3.5, 10.0, 1e3, 1e6])
    y = t.to_model(x)
    assert np.all(np.diff(y) > 0)
    assert y[2] == pytest.approx(np.log10(0.5))
    bright = x > 7 * 0.5
    assert np.abs(y[bright] - np.log10(x[bright])).max() < 0.01
    assert np.abs(y[3:5] - np.log10(x[3:5])).max() > 0.01  # faint fluxes are softened
    assert t.from_model(y) == pytest.approx(x, rel=1e-9, abs=1e-9)


def test_log10_space_still_rejects_nonpositive():
    t = Target("flux_dummy", u.Jy, "f", "g", space="log10")
    values, valid = t.values_from(np.array([10.0, -3.0, 0.0]))
    assert valid.tolist() == [True, False, False]
    assert t.to_model(values[:1]) == pytest.approx([1.0])


def test_softening_must_be_positive():
    with pytest.raises(ValueError, match="softening"):
        Target("x", u.one, "x", "g", space="asinh", softening=0.0)


def test_quantity_columns_are_converted():
    flux = (np.array([1e-16, 2e-16]) * u.erg / u.s / u.cm**2)
    values, valid = TARGETS["halpha"].values_from(flux)
    assert values == pytest.approx([10.0, 20.0])
    mass = u.Dex([10.0, 11.0], u.dex(u.Msun))
    values, _ = TARGETS["log_mstar"].values_from(mass)
    assert values == pytest.approx([10.0, 11.0])


def test_wrong_unit_is_an_error_naming_the_column():
    t = QTable({"h_alpha_flux": [1.0, 2.0] * u.km / u.s})
    with pytest.raises(u.UnitConversionError, match="h_alpha_flux"):
        TARGETS["halpha"].read(t)


def test_column_of_two_values_per_row_named():
    t = Table({"z": np.ones((4, 2))})
    with pytest.raises(ValueError, match=r"'redshift'.*'z' has shape \(4, 2\)"):
        TARGETS["redshift"].read(t)


def test_log_unit_on_a_plain_number_target_explained():
    """12 + log(O/H) labelled dex: never read as 10**8.9 (out of range, so silently missing)."""
    for unit in (u.dex, u.dex(u.dimensionless_unscaled)):
        t = QTable({"oh_p50": u.Dex([8.9, 9.0], unit)})
        with pytest.raises(u.UnitConversionError, match="plain number.*drop the unit"):
            TARGETS["metallicity"].read(t)
    t = Table({"oh_p50": [8.9, 9.0]})
    t["oh_p50"].unit = "dex"
    with pytest.raises(u.UnitConversionError, match="'oh_p50' has unit dex"):
        TARGETS["metallicity"].read(t)


def test_missing_column_is_an_error_naming_it():
    with pytest.raises(KeyError, match="lgm_tot_p50"):
        TARGETS["log_mstar"].read(Table({"x": [1.0]}))


def test_log_mbh_derived_from_velocity_dispersion():
    t = Table({"velDisp": [200.0, 0.0, 100.0]})
    values, valid = TARGETS["log_mbh"].read(t)
    assert valid.tolist() == [True, False, True]
    assert values[0] == pytest.approx(8.32)
    assert values[2] == pytest.approx(8.32 + 5.64 * np.log10(0.5))
    assert t.colnames == ["velDisp"]  # reading never modifies the user's table


def test_distribution_has_units():
    samples = np.random.default_rng(0).normal(10, 0.1, (3, 50))
    d = TARGETS["log_mstar"].distribution(samples)
    assert d.shape == (3,) and d.n_samples == 50
    assert d.unit == u.dex(u.Msun)
    flux = TARGETS["halpha"].distribution(np.ones((2, 5)))
    assert flux.unit == LINE_FLUX_UNIT


def test_register_target_and_duplicates():
    t = Target("test_dummy", u.km / u.s, "vdisp_dummy", "kinematics")
    try:
        register_target(t)
        assert TARGETS["test_dummy"] is t
        with pytest.raises(ValueError, match="already registered"):
            register_target(t)
    finally:
        TARGETS.unregister("test_dummy")


def test_unknown_target_lists_registered():
    with pytest.raises(KeyError, match="log_mstar"):
        TARGETS["stellar_mass"]


def test_bad_space_rejected():
    with pytest.raises(ValueError, match="space"):
        Target("x", u.one, "x", "g", space="ln")
