import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from astro_galpost import TARGETS, Target, register_target
from astro_galpost.model.targets import LINE_FLUX_UNIT, LabelWarning

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
    with pytest.warns(LabelWarning, match=r"2 of 3 values lie outside the valid range \[-inf, inf\] and positive"):
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


# --------------------------------------------------------------------------- labels that are not what they seem
def _label_warnings(target, values, name="col"):
    """``(valid, messages)`` of reading ``values`` as ``target``, recording every warning."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, valid = TARGETS[target].values_from(values, name)
    return valid, [str(w.message) for w in caught if issubclass(w.category, LabelWarning)]


def test_out_of_range_values_are_missing_with_a_warning():
    """A linear SFR of 10 Msun/yr read as log SFR = 10 is out of [-8, 5]: dropped, and said so (not silently)."""
    valid, messages = _label_warnings("log_sfr", np.array([1.0, 10.0, 0.5, -9999.0]), "sfr_nuv")
    assert valid.tolist() == [True, False, True, False]
    assert len(messages) == 1  # the sentinel -9999 is missing, not out of range
    assert messages[0].startswith("target 'log_sfr': 1 of 3 values of column 'sfr_nuv' lie outside the valid "
                                  "range [-8, 5] (dex(solMass / yr)); they are treated as missing")


def _lognormal(median, n=500, seed=0):
    return median * np.exp(np.random.default_rng(seed).normal(0.0, 2.0, n))


def test_linear_sfr_given_as_log_warns_with_the_fix():
    """Linear SFRs (lognormal, median 0.4 Msun/yr, as ECO's sfr_nuv) in a unitless log SFR column."""
    _, messages = _label_warnings("log_sfr", _lognormal(0.4), "sfr_nuv")
    linear = [m for m in messages if "look linear" in m]
    assert len(linear) == 1
    assert "target 'log_sfr': column 'sfr_nuv' has no unit" in linear[0]
    assert "col.unit = 'solMass / yr'" in linear[0] and "take its log10" in linear[0]


def test_linear_masses_given_as_log_warn():
    _, messages = _label_warnings("log_mstar", _lognormal(3e10), "mass")
    assert any("look linear" in m for m in messages)
    assert any("500 of 500 values of column 'mass' lie outside the valid range [0, 14]" in m for m in messages)


@pytest.mark.parametrize("name, values", [
    ("log_mstar", 10.0 + np.random.default_rng(1).normal(0.0, 0.6, 500)),  # log M*
    ("log_sfr", np.log10(_lognormal(0.4))),  # log10 of the linear SFRs above: has negatives
    ("log_sfr", np.abs(np.random.default_rng(2).normal(0.0, 0.5, 500)) + 1e-3),  # all-positive log SFRs
    ("log_mbh", 8.0 + np.random.default_rng(3).gamma(1.0, 0.4, 500)),  # right-skewed log, its log10 too
])
def test_log_columns_do_not_look_linear(name, values):
    valid, messages = _label_warnings(name, values)
    assert valid.all() and messages == []


def test_linear_look_needs_a_unitless_column():
    """With a unit the values are converted, so nothing is guessed."""
    _, messages = _label_warnings("log_sfr", _lognormal(0.4) * u.Msun / u.yr)
    assert messages == []


def test_real_log_and_linear_columns(shared_data):
    """ECO: logmstar and log10(sfr_nuv) are logs; sfr_nuv (Msun/yr) and 10**logmstar are linear."""
    eco = Table.read(shared_data / "eco_snr5.fits")
    logm, sfr = np.asarray(eco["logmstar"], float), np.asarray(eco["sfr_nuv"], float)
    for name, values, linear in (("log_mstar", logm, False), ("log_sfr", np.log10(sfr), False),
                                 ("log_sfr", sfr, True), ("log_mstar", 10**logm, True)):
        _, messages = _label_warnings(name, values)
        assert any("look linear" in m for m in messages) == linear, (name, linear)


def test_flux_in_erg_given_unitless_warns():
    """1e-15 erg/s/cm² given as a plain number would be 1e-32 erg/s/cm² in the package's 1e-17 unit."""
    valid, messages = _label_warnings("halpha", np.array([1e-15, 5e-16, 2e-15]), "ha")
    assert valid.all() and len(messages) == 1
    assert "target 'halpha': column 'ha' has no unit and a median |value| of 1e-15" in messages[0]
    assert "1e-17 erg / (s cm2) (SDSS's unit)" in messages[0] and "col.unit" in messages[0]
    # fluxes in 1e-17 erg/s/cm², faint ones and negative (undetected) ones included, are fine
    assert _label_warnings("halpha", np.array([100.0, 0.5, -3.0]))[1] == []
    assert _label_warnings("halpha", [1e-15, 5e-16] * u.erg / u.s / u.cm**2)[1] == []


def test_failed_line_fits_are_missing():
    """galSpecLine's failed fits (|flux| 1e7-7e8 x 1e-17, errors ~1e8) are outside the lines' range."""
    flux = np.array([120.0, -3.0, 4.4e4, 7.26e8, -3.5e8, 9.6e6])
    valid, messages = _label_warnings("halpha", flux, "h_alpha_flux")
    assert valid.tolist() == [True, True, True, False, False, False]
    assert len(messages) == 1 and "3 of 6 values of column 'h_alpha_flux' lie outside" in messages[0]


def test_real_line_fluxes_keep_measurements_drop_failed_fits(shared_data):
    """ECO's S/N > 5 fluxes (up to 4.4e4) are all kept; galSpecLine's failed fits (> 9e6) are dropped."""
    eco = Table.read(shared_data / "eco_snr5.fits")
    for name in ("halpha", "hbeta", "nii_6584", "oiii_5007"):
        valid, messages = _label_warnings(name, eco[TARGETS[name].column])
        assert valid.all() and messages == []
    lines = Table.read(shared_data / "skyserver_samples" / "galspecline.csv")
    flux = np.asarray(lines["h_alpha_flux"], float)
    valid, messages = _label_warnings("halpha", flux)
    failed = np.abs(flux) > 1e6
    assert failed.sum() == 4 and not np.any(valid & failed) and len(messages) == 1


@pytest.mark.parametrize("name, unit", [("halpha", "1E-17 erg/cm^2/s"), ("log_mstar", "log(Msun)"),
                                        ("log_sfr", "dex(Msun/yr)")])
def test_unrecognised_fits_unit_names_target_column_and_unit(name, unit, tmp_path):
    """A FITS TUNIT astropy cannot parse is read as an UnrecognizedUnit; reading labels says what is wrong."""
    import warnings

    from astropy.io import fits

    column = TARGETS[name].column
    fits.BinTableHDU.from_columns([fits.Column(name=column, format="D", unit=unit, array=np.array([1.0]))]
                                  ).writeto(tmp_path / "t.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", u.UnitsWarning)
        table = Table.read(tmp_path / "t.fits")
    assert isinstance(table[column].unit, u.UnrecognizedUnit)
    with pytest.raises(u.UnitConversionError) as err:
        TARGETS[name].read(table)
    message = str(err.value)
    assert f"target {name!r}: column {column!r} has unit {unit!r}, which astropy does not recognise" in message
    assert f"expected {TARGETS[name].unit}" in message


def test_convert_is_the_one_unit_check():
    """Target.convert: plain values pass, units convert, a dex unit on a plain-number target is refused."""
    np.testing.assert_allclose(TARGETS["log_mstar"].convert(np.array([1e10]), u.Msun), [10.0])
    np.testing.assert_allclose(TARGETS["metallicity"].convert(np.array([8.9]), None), [8.9])
    with pytest.raises(u.UnitConversionError, match="target 'metallicity': column 'oh' has unit dex"):
        TARGETS["metallicity"].convert(np.array([8.9]), u.dex(u.one), "oh")
