import warnings

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table

from astro_galpost.encoders import ENCODERS, PhotometryEncoder
from astro_galpost.encoders.photometry import find_error_column, read_magnitude_errors, read_magnitudes


def _table(n=200, bands="ugriz", seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(15, 18, n)
    t = Table()
    for i, b in enumerate(bands):
        t[b] = base - 0.3 * i + rng.normal(0, 0.05, n)
        t[f"err_{b}"] = rng.uniform(0.01, 0.05, n)
    return t


def test_registered():
    assert ENCODERS["photometry"] is PhotometryEncoder


@pytest.mark.parametrize(
    "column, names, expected",
    [
        ("modelMag_g", ["modelMag_g", "modelMagErr_g"], "modelMagErr_g"),
        ("g", ["g", "err_g"], "err_g"),
        ("gmag", ["gmag", "gmag_err"], "gmag_err"),
        ("umag", ["umag", "e_umag"], "e_umag"),
        ("g", ["g"], None),
    ],
)
def test_error_columns_found(column, names, expected):
    assert find_error_column(column, names) == expected


def test_features_shape_and_standardisation():
    t = _table()
    enc = PhotometryEncoder(list("ugriz")).fit(t)
    x, usable = enc.transform(t)
    # 5 magnitudes + 4 colours + 5 log errors + 5 missing flags
    assert x.shape == (len(t), 19) == (len(t), enc.n_features_)
    assert usable.all()
    assert np.allclose(x[:, :14].mean(0), 0, atol=1e-5)
    assert len(enc.feature_names()) == 19


def test_lsst_bands_work():
    t = _table(bands="ugrizy")
    x, _ = PhotometryEncoder(list("ugrizy")).fit(t).transform(t)
    assert x.shape[1] == 6 + 5 + 6 + 6


def test_missing_band_is_imputed_and_flagged():
    t = _table()
    enc = PhotometryEncoder(list("ugriz")).fit(t)
    test = t[:3].copy()
    test["u"] = MaskedColumn(test["u"], mask=[True, False, False])
    test["g"][1] = np.nan
    x, usable = enc.transform(test)
    assert usable.all() and np.isfinite(x).all()
    flags = x[:, -5:] * enc.feature_scale_[-5:] + enc.feature_mean_[-5:]
    assert flags[0].tolist() == [1, 0, 0, 0, 0]
    assert flags[1].tolist() == [0, 1, 0, 0, 0]
    # the imputed u is g plus the training median u-g
    raw_u = x[0, 0] * enc.feature_scale_[0] + enc.feature_mean_[0]
    assert raw_u == pytest.approx(test["g"][0] + np.median(t["u"] - t["g"]), abs=1e-4)


def test_rows_with_too_few_bands_are_unusable():
    t = _table()
    enc = PhotometryEncoder(list("ugriz")).fit(t)
    test = t[:2].copy()
    for b in "ugri":
        test[b][0] = -9999.0
    x, usable = enc.transform(test)
    assert usable.tolist() == [False, True]
    assert np.isfinite(x).all()


def test_missing_column_is_named():
    enc = PhotometryEncoder(["u", "g", "nope"])
    with pytest.raises(KeyError, match="nope"):
        enc.fit(_table())


def test_magnitudes_from_quantities():
    t = QTable({"r": [1.0, 10.0, -1.0] * u.nanomaggy, "g": [20.0, 21.0, 22.0] * u.ABmag,
                "i": [3631e-9, 1.0, 1.0] * u.Jy})
    assert read_magnitudes(t, "r")[:2] == pytest.approx([22.5, 20.0])
    assert np.isnan(read_magnitudes(t, "r")[2])
    assert read_magnitudes(t, "g") == pytest.approx([20.0, 21.0, 22.0])
    assert read_magnitudes(t, "i")[0] == pytest.approx(22.5)


def test_wrong_unit_named():
    t = QTable({"r": [1.0] * u.km})
    with pytest.raises(u.UnitConversionError, match="'r'"):
        read_magnitudes(t, "r")


def test_magnitude_units_converted_or_refused():
    t = QTable({"mmag": [20000.0] * u.mmag, "jy": [0.0] * u.mag(u.Jy), "st": [20.0] * u.STmag,
                "bol": [20.0] * u.M_bol, "inst": [20.0] * u.mag(u.ct / u.s), "dex": [1.0] * u.dex})
    assert read_magnitudes(t, "mmag") == pytest.approx([20.0])
    assert read_magnitudes(t, "jy") == pytest.approx([2.5 * np.log10(3631.0)])  # 1 Jy is AB 8.90
    for name in ("st", "bol", "inst", "dex"):
        with pytest.raises(u.UnitConversionError, match=f"'{name}'.*not AB"):
            read_magnitudes(t, name)


def test_error_units_converted_or_refused():
    """Errors in mmag are converted; a flux error is sigma_f / f times 2.5 / ln 10."""
    t = QTable({"e_mag": [0.05] * u.mag, "e_mmag": [50.0] * u.mmag, "e_plain": [0.05],
                "e_flux": [1.0] * u.nanomaggy, "e_jy": [3631e-9] * u.Jy, "e_time": [1.0] * u.s})
    for name in ("e_mag", "e_mmag", "e_plain"):
        assert read_magnitude_errors(t, name, np.array([20.0])) == pytest.approx([0.05])
    # a 100 nanomaggy source (AB 17.5) with a 1 nanomaggy error: 1% in flux, 0.010857 mag
    for name in ("e_flux", "e_jy"):
        assert read_magnitude_errors(t, name, np.array([17.5])) == pytest.approx([0.0108574], rel=1e-5)
    with pytest.raises(u.UnitConversionError, match="'e_time'"):
        read_magnitude_errors(t, "e_time", np.array([20.0]))


def test_encoder_reads_error_units():
    """The same errors in mag and in mmag, or fluxes with flux errors, give the same features."""
    t = _table()
    q = QTable(t)
    for b in "ugriz":
        q[f"err_{b}"] = t[f"err_{b}"] * 1000 * u.mmag
    enc = PhotometryEncoder(list("ugriz")).fit(t)
    np.testing.assert_allclose(enc.transform(q)[0], enc.transform(t)[0], atol=1e-5)
    fluxes = QTable()
    for b in "ugriz":
        flux = 10 ** (-0.4 * (t[b] - 22.5))
        fluxes[b] = flux * u.nanomaggy
        fluxes[f"err_{b}"] = flux * t[f"err_{b}"] / (2.5 / np.log(10)) * u.nanomaggy
    np.testing.assert_allclose(enc.transform(fluxes)[0], enc.transform(t)[0], atol=1e-4)


def test_non_numeric_inputs_named():
    t = _table()
    t["err_r"] = ["x"] * len(t)
    with pytest.raises(TypeError, match="err_r"):
        PhotometryEncoder(list("ugriz")).fit(t)


def test_config_round_trip():
    t = _table()
    enc = PhotometryEncoder(list("ugriz")).fit(t)
    again = PhotometryEncoder.from_config(enc.get_config(), enc.get_arrays())
    np.testing.assert_array_equal(enc.transform(t)[0], again.transform(t)[0])


# -- Galactic extinction (SDSS CAS convention) and extra scalar inputs ------------------
CAS = [f"modelMag_{b}" for b in "ugriz"]


@pytest.fixture(scope="module")
def kcorrect_rows():
    from astro_galpost.datasets import load_kcorrect_sample

    return load_kcorrect_sample(deredden=True)[:400]


def test_cas_magnitudes_dereddened_like_dered_columns(kcorrect_rows):
    """modelMag_<b> - extinction_<b> on real SDSS rows gives the features of CAS dered_<b>."""
    t = kcorrect_rows
    enc = PhotometryEncoder(CAS).fit(t)
    assert enc.extinction_columns_ == [f"extinction_{b}" for b in "ugriz"]
    dered = t.copy()
    for b in "ugriz":
        dered[f"modelMag_{b}"] = dered[f"dered_{b}"]
        del dered[f"extinction_{b}"]
    plain = PhotometryEncoder(CAS, extinction=None).fit(dered)
    np.testing.assert_allclose(enc.transform(t)[0], plain.transform(dered)[0], atol=1e-5)
    # raw magnitude feature is the corrected one: u is 0.1-0.3 mag brighter than modelMag_u
    raw_u = enc.transform(t)[0][:, 0] * enc.feature_scale_[0] + enc.feature_mean_[0]
    np.testing.assert_allclose(raw_u, np.asarray(t["dered_u"]), atol=1e-4)


def test_cas_fluxes_dereddened_like_magnitudes(kcorrect_rows):
    """CAS modelFlux_<b> (nanomaggies) is as uncorrected as modelMag_<b>: same extinction, same features."""
    t = kcorrect_rows
    fluxes = Table({f"modelFlux_{b}": 10 ** (-0.4 * (np.asarray(t[f"modelMag_{b}"]) - 22.5)) for b in "ugriz"})
    for b in "ugriz":
        fluxes[f"modelFlux_{b}"].unit = u.nanomaggy
        fluxes[f"extinction_{b}"] = t[f"extinction_{b}"]
    enc = PhotometryEncoder([f"modelFlux_{b}" for b in "ugriz"], errors=None).fit(fluxes)
    assert enc.extinction_columns_ == [f"extinction_{b}" for b in "ugriz"]
    mags = PhotometryEncoder(CAS, errors=None).fit(t)
    np.testing.assert_allclose(enc.transform(fluxes)[0], mags.transform(t)[0], atol=1e-4)


def test_saved_encoder_refuses_table_without_extinction(kcorrect_rows):
    enc = PhotometryEncoder(CAS).fit(kcorrect_rows)
    again = PhotometryEncoder.from_config(enc.get_config(), enc.get_arrays())
    np.testing.assert_array_equal(enc.transform(kcorrect_rows)[0], again.transform(kcorrect_rows)[0])
    stripped = kcorrect_rows.copy()
    del stripped["extinction_g"]
    with pytest.raises(KeyError, match="extinction_g"):
        again.transform(stripped)


def test_model_without_extinction_refuses_uncorrected_table(kcorrect_rows):
    corrected = kcorrect_rows.copy()
    for b in "ugriz":
        corrected[f"modelMag_{b}"] = corrected[f"dered_{b}"]
        del corrected[f"extinction_{b}"]
    enc = PhotometryEncoder(CAS).fit(corrected)
    assert enc.extinction_columns_ == [None] * 5
    with pytest.raises(ValueError, match="extinction_u"):
        enc.transform(kcorrect_rows)


def test_partial_extinction_columns_named(kcorrect_rows):
    t = kcorrect_rows.copy()
    del t["extinction_z"]
    with pytest.raises(ValueError, match="modelMag_z"):
        PhotometryEncoder(CAS).fit(t)


def test_extinction_in_wrong_unit_named(kcorrect_rows):
    t = kcorrect_rows.copy()
    t["extinction_r"].unit = u.km
    with pytest.raises(u.UnitConversionError, match="extinction_r"):
        PhotometryEncoder(CAS).fit(t)


def test_extra_scalar_inputs():
    t = _table()
    t["r50"] = np.linspace(1, 10, len(t)) * u.arcsec
    t["r50"][0] = np.nan
    t["mu"] = np.linspace(20, 23, len(t))
    enc = PhotometryEncoder(list("ugriz"), extra=["r50", "mu"]).fit(t)
    assert enc.extra_scales_ == ["log", "linear"]
    assert enc.feature_names()[-2:] == ["log_r50", "mu"]
    x, _ = enc.transform(t)
    raw = x[:, -2:] * enc.feature_scale_[-2:] + enc.feature_mean_[-2:]
    np.testing.assert_allclose(raw[1:, 0], np.log10(t["r50"][1:].value), atol=1e-5)
    assert raw[0, 0] == pytest.approx(np.median(np.log10(t["r50"][1:].value)), abs=1e-5)
    np.testing.assert_allclose(raw[:, 1], t["mu"], atol=1e-4)
    again = PhotometryEncoder.from_config(enc.get_config(), enc.get_arrays())
    np.testing.assert_array_equal(x, again.transform(t)[0])
    with pytest.raises(KeyError, match="'mu'"):
        enc.transform(t[[c for c in t.colnames if c != "mu"]])


def test_extra_inputs_keep_their_training_unit():
    """An extra input is read in its training column's unit; one without it, or in no convertible unit, is
    refused by name (a size trained in kpc and given in pc moved its feature from 1.2 to 3,700 standard
    deviations; plain arcmin numbers for an arcsec column, from 1.4 to -9.5)."""
    t = _table()
    t["r50_kpc"] = np.linspace(1, 5, len(t)) * u.kpc
    t["r50"] = np.linspace(1, 10, len(t)) * u.arcsec
    t["mu"] = np.linspace(20, 23, len(t))
    enc = PhotometryEncoder(list("ugriz"), extra=["r50_kpc", "r50", "mu"]).fit(t)
    assert enc.extra_units_ == ["kpc", "arcsec", None]
    x = enc.transform(t)[0]
    other = t.copy()
    other["r50_kpc"] = other["r50_kpc"].to(u.pc)
    other["r50"] = other["r50"].to(u.arcmin)
    np.testing.assert_allclose(enc.transform(other)[0], x, atol=1e-5)
    again = PhotometryEncoder.from_config(enc.get_config(), enc.get_arrays())
    np.testing.assert_allclose(again.transform(other)[0], x, atol=1e-5)
    plain = t.copy()
    plain["r50"] = plain["r50"].quantity.to_value(u.arcmin)
    with pytest.raises(ValueError, match="'r50' has no unit; the model was trained on it in arcsec"):
        enc.transform(plain)
    wrong = t.copy()
    wrong["r50_kpc"] = wrong["r50_kpc"].value * u.s
    with pytest.raises(u.UnitConversionError, match="'r50_kpc' has unit s"):
        enc.transform(wrong)
    unitful = t.copy()
    unitful["mu"].unit = u.mag / u.arcsec**2
    with pytest.raises(u.UnitConversionError, match="'mu' has unit .* without a unit"):
        enc.transform(unitful)
    # a model saved before the units were recorded reads as it did
    legacy = {k: v for k, v in enc.get_config().items() if k != "extra_units_"}
    np.testing.assert_allclose(PhotometryEncoder.from_config(legacy, enc.get_arrays()).transform(t)[0], x)


def test_input_columns_name_everything_read(kcorrect_rows):
    t = kcorrect_rows.copy()
    t["petroR50_r"] = np.full(len(t), 2.0) * u.arcsec
    enc = PhotometryEncoder(CAS, extra=["petroR50_r"]).fit(t)
    expected = [*CAS, *(f"modelMagErr_{b}" for b in "ugriz"), *(f"extinction_{b}" for b in "ugriz"), "petroR50_r"]
    assert enc.input_columns == expected
    np.testing.assert_array_equal(enc.transform(t[expected])[0], enc.transform(t)[0])


def test_built_from_the_estimator_photometry_and_cloned():
    from sklearn.base import clone

    enc = PhotometryEncoder.from_estimator(photometry=("modelMag_g", "modelMag_r"))
    assert enc.columns == ["modelMag_g", "modelMag_r"] and not enc.is_fitted
    for empty in (None, ()):
        with pytest.raises(ValueError, match="encoder 'photometry' needs magnitude columns"):
            PhotometryEncoder.from_estimator(photometry=empty)
    user = PhotometryEncoder(("u", "g", "r"), errors=None, min_bands=2, extra={"size": "log"})
    twin = clone(user)
    assert twin is not user and twin.get_params() == user.get_params() and twin.columns == ("u", "g", "r")


def test_values_that_are_not_magnitudes_warn():
    """Fluxes or coordinates without a unit lie outside 0-40 mag: taken as missing, with a warning;
    catalogue sentinels (-9999, 0, 99) are missing without one."""
    t = Table({"r": np.r_[np.full(90, 18.0), np.full(10, 150.0)], "g": np.r_[np.full(90, 19.0), np.full(10, -9999.0)]})
    with pytest.warns(UserWarning, match=r"'r': 10 of 100 values \(e.g. 150\) lie outside 0-40 mag"):
        r = read_magnitudes(t, "r")
    assert np.isnan(r[90:]).all() and (r[:90] == 18.0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(read_magnitudes(t, "g")[90:]).all()
