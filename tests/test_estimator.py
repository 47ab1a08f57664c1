"""Behaviour of GalaxyPosterior: the documented API, target subsets, masked labels, bad input."""


import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, QTable, Table
from astropy.uncertainty import Distribution

from astro_galpost import GalaxyPosterior, NotFittedError, UnusableRowsWarning
from astro_galpost.model.targets import LINE_FLUX_UNIT


def _photoz_table(mock):
    """The mock in the layout of the MGS photo-z file: u g r i z, err_*, zs."""
    t = Table()
    for b in "ugriz":
        t[b] = np.asarray(mock[f"modelMag_{b}"])
        t[f"err_{b}"] = np.asarray(mock[f"modelMagErr_{b}"])
    t["zs"] = np.asarray(mock["z"])
    return t


def test_readme_api(mock_table, tiny):
    table = _photoz_table(mock_table)
    train, test = table[:600], table[600:]
    gp = GalaxyPosterior(photometry=["u", "g", "r", "i", "z"], random_state=0, **tiny({"redshift": "zs"}))
    assert gp.fit(train) is gp
    post = gp.sample(test, n_samples=200)
    assert isinstance(post["redshift"], Distribution)
    assert post["redshift"].shape == (len(test),)
    assert post["redshift"].n_samples == 200
    assert post["redshift"].unit == u.dimensionless_unscaled
    out = gp.predict(test)
    assert isinstance(out, QTable)
    assert out.colnames[: len(test.colnames)] == test.colnames
    for p in ("p16", "p50", "p84"):
        assert f"redshift_{p}" in out.colnames
    assert np.all(out["redshift_p16"] <= out["redshift_p50"])
    assert np.all(out["redshift_p50"] <= out["redshift_p84"])
    assert gp.flows_ == {"core": "nsf"}  # one target cannot couple


def test_all_nine_targets_with_units(mock_table, tiny):
    gp = GalaxyPosterior(random_state=1, **tiny()).fit(mock_table[:600])
    post = gp.sample(mock_table[600:650], n_samples=50)
    assert post["log_mstar"].unit == u.dex(u.Msun)
    assert post["log_sfr"].unit == u.dex(u.Msun / u.yr)
    assert post["log_mbh"].unit == u.dex(u.Msun)
    assert post["redshift"].unit == u.dimensionless_unscaled
    assert post["metallicity"].unit == u.dimensionless_unscaled
    for line in ("halpha", "hbeta", "nii_6584", "oiii_5007"):
        assert post[line].unit == LINE_FLUX_UNIT
        assert np.all(np.isfinite(post[line].distribution.value))
    assert set(post.probabilities) == {"metallicity"}
    assert gp.flows_ == {"core": "realnvp", "black_hole": "affine1d", "lines": "realnvp", "metallicity": "affine1d"}
    assert [g.name for g in gp.groups_] == ["core", "black_hole", "lines", "metallicity"]
    out = gp.predict(mock_table[600:650], n_samples=50)
    assert out["log_mstar_p50"].unit == u.dex(u.Msun)
    assert out["halpha_p84"].unit == LINE_FLUX_UNIT
    prob = np.asarray(out["metallicity_prob"])
    assert np.all((prob >= 0) & (prob <= 1))


def test_metallicity_is_chained_on_core(mock_table, tiny):
    gp = GalaxyPosterior(random_state=2, **tiny(["log_mstar", "redshift", "metallicity"])).fit(mock_table)
    core, metal = gp.groups_
    assert metal.name == "metallicity" and metal.condition_on == core.targets and metal.detect
    alone = GalaxyPosterior(random_state=2, **tiny(["metallicity"])).fit(mock_table)
    assert alone.groups_[0].condition_on == []


@pytest.mark.parametrize("targets", [["redshift"], ["halpha", "hbeta", "nii_6584", "oiii_5007"], ["metallicity"]])
def test_target_subsets(mock_table, tiny, targets):
    gp = GalaxyPosterior(random_state=0, **tiny(targets)).fit(mock_table[:600])
    post = gp.sample(mock_table[600:620], n_samples=20)
    assert list(post) == targets


def test_missing_labels_in_one_group_still_train_the_others(mock_table, tiny):
    t = mock_table[:400].copy()
    t["h_alpha_flux"][:300] = -9999.0  # most galaxies lack Hα
    gp = GalaxyPosterior(random_state=0, **tiny(["log_mstar", "halpha"])).fit(t)
    assert gp.n_train_ == 400
    # trains and predicts both targets even though 3/4 of the rows have no Hα
    out = gp.predict(t[:10], n_samples=20)
    assert np.isfinite(np.asarray(out["halpha_p50"].unmasked.value)).all()


def test_same_seed_same_result(mock_table, tiny):
    a = GalaxyPosterior(random_state=5, **tiny(["redshift"])).fit(mock_table[:300])
    b = GalaxyPosterior(random_state=5, **tiny(["redshift"])).fit(mock_table[:300])
    sa = a.sample(mock_table[300:320], n_samples=30)["redshift"].distribution
    sb = b.sample(mock_table[300:320], n_samples=30)["redshift"].distribution
    np.testing.assert_array_equal(sa, sb)
    c = GalaxyPosterior(random_state=6, **tiny(["redshift"])).fit(mock_table[:300])
    assert not np.array_equal(sa, c.sample(mock_table[300:320], n_samples=30)["redshift"].distribution)


def test_ensemble_draws_from_the_mixture(mock_table, tiny):
    gp = GalaxyPosterior(n_ensemble=3, random_state=0, **tiny(["redshift"])).fit(mock_table[:300])
    assert len(gp.networks_) == 3 and len(gp.history_) == 3
    post = gp.sample(mock_table[300:310], n_samples=31)
    assert post["redshift"].n_samples == 31


def test_auto_ensemble_counts_labelled_rows(mock_table, tiny, monkeypatch, tmp_path):
    assert GalaxyPosterior().n_ensemble == "auto"
    gp = GalaxyPosterior(random_state=0, **tiny(["log_mstar"])).fit(mock_table[:300])
    assert gp.n_ensemble_ == 3 == len(gp.networks_)  # 300 labelled rows < 5,000
    assert gp.n_ensemble == "auto"  # the parameter is left as given
    gp.save(tmp_path / "m")
    assert GalaxyPosterior.load(tmp_path / "m").n_ensemble_ == 3

    monkeypatch.setitem(GalaxyPosterior.AUTO_ENSEMBLE, "below_rows", 200)
    table = mock_table[:300].copy()
    table["lgm_tot_p50"][:150] = np.nan  # 150 labelled rows: below the threshold
    assert GalaxyPosterior(random_state=0, **tiny(["log_mstar"])).fit(table).n_ensemble_ == 3
    labelled = GalaxyPosterior(random_state=0, **tiny(["log_mstar"])).fit(mock_table[:300])
    assert labelled.n_ensemble_ == 1 == len(labelled.networks_)
    assert GalaxyPosterior(n_ensemble=2, random_state=0, **tiny(["log_mstar"])).fit(mock_table[:300]).n_ensemble_ == 2


def test_training_stops_early_and_keeps_history(mock_table, tiny):
    options = tiny(["log_mstar"], max_epochs=200, patience=2, learning_rate=3e-2)
    gp = GalaxyPosterior(random_state=0, **options).fit(mock_table[:300])
    history = gp.history_[0]
    assert history.stopped_early and len(history.val_loss) < 200
    assert history.best_epoch == int(np.argmin(history.val_loss))


# ---------------------------------------------------------------- bad input
def test_sample_before_fit():
    with pytest.raises(NotFittedError, match="fit"):
        GalaxyPosterior().sample(Table({"a": [1.0]}))


def test_empty_table(mock_table, tiny):
    with pytest.raises(ValueError, match="empty"):
        GalaxyPosterior(**tiny()).fit(mock_table[:0])


def test_missing_photometry_column(mock_table, tiny):
    with pytest.raises(KeyError, match="modelMag_y"):
        GalaxyPosterior(photometry=["modelMag_r", "modelMag_y"], **tiny(["redshift"])).fit(mock_table)


def test_missing_target_column(mock_table, tiny):
    with pytest.raises(KeyError, match="zspec"):
        GalaxyPosterior(**tiny({"redshift": "zspec"})).fit(mock_table)


def test_unknown_target(tiny):
    with pytest.raises(KeyError, match="unknown target 'mass'"):
        GalaxyPosterior(**tiny(["mass"])).fit(Table({"a": [1.0]}))


def test_quantity_in_wrong_unit(mock_table, tiny):
    t = QTable(mock_table[:200])
    t["h_alpha_flux"] = np.asarray(mock_table["h_alpha_flux"][:200]) * u.km / u.s
    with pytest.raises(u.UnitConversionError, match="h_alpha_flux"):
        GalaxyPosterior(**tiny(["halpha"])).fit(t)


def test_target_without_any_label(mock_table, tiny):
    t = mock_table[:100].copy()
    t["oh_p50"] = -9999.0
    with pytest.raises(ValueError, match="metallicity"):
        GalaxyPosterior(**tiny(["metallicity"])).fit(t)


def test_sdss_z_clash_is_explained(tiny):
    t = Table({b: np.random.default_rng(0).uniform(15, 18, 50) for b in "ugriz"})
    with pytest.raises(ValueError, match="z-band magnitude"):
        GalaxyPosterior(photometry=list("ugriz"), **tiny(["redshift"])).fit(t)


def test_image_count_must_match(mock_table, tiny):
    with pytest.raises(ValueError, match="3 images given for a table of 100 rows"):
        GalaxyPosterior(**tiny(["redshift"])).fit(mock_table[:100], images=np.zeros((3, 3, 8, 8)))


def test_unusable_rows_are_masked_with_one_warning(mock_table, tiny):
    gp = GalaxyPosterior(random_state=0, **tiny(["redshift", "log_mstar"])).fit(mock_table[:300])
    test = mock_table[300:310].copy()
    for b in "ugri":
        test[f"modelMag_{b}"] = MaskedColumn(test[f"modelMag_{b}"], mask=[True, True] + [False] * 8)
    with pytest.warns(UnusableRowsWarning, match="2 of 10 rows") as record:
        out = gp.predict(test, n_samples=20)
    assert len([w for w in record if issubclass(w.category, UnusableRowsWarning)]) == 1
    assert out["redshift_p50"].mask.tolist() == [True, True] + [False] * 8
    with pytest.warns(UnusableRowsWarning):
        post = gp.sample(test, n_samples=20)
    assert np.isnan(post["log_mstar"].distribution[:2].value).all()
    assert post.usable.tolist() == [False, False] + [True] * 8


def test_unknown_flow_group(mock_table, tiny):
    with pytest.raises(ValueError, match="lines"):
        GalaxyPosterior(**tiny(["redshift"], flows={"lines": "realnvp"})).fit(mock_table[:100])


def test_n_samples_must_be_positive(mock_table, tiny):
    gp = GalaxyPosterior(**tiny(["redshift"])).fit(mock_table[:100])
    with pytest.raises(ValueError, match="n_samples"):
        gp.sample(mock_table[:5], n_samples=0)


def test_out_of_distribution_flag(mock_table, tiny):
    """Galaxies far outside the training photometry get flagged; training-like ones mostly not."""
    low_z = mock_table[np.asarray(mock_table["z"]) < 0.12]
    gp = GalaxyPosterior(random_state=0, **tiny(["redshift"])).fit(low_z[:300])
    inside = gp.predict(low_z[300:], n_samples=20)
    assert np.mean(inside["ood_flag"]) < 0.1
    far = mock_table[300:320].copy()
    for b in "ugriz":  # 4 mag fainter and much redder than anything in training
        far[f"modelMag_{b}"] = np.asarray(far[f"modelMag_{b}"]) + 4 + 0.5 * "ugriz".index(b)
    out = gp.predict(far, n_samples=20)
    assert np.all(out["ood_flag"]) and np.all(np.asarray(out["ood_score"].unmasked) > 1)


def test_chunks_with_row_offset_reproduce_one_call(mock_table, tiny):
    gp = GalaxyPosterior(random_state=0, **tiny(["redshift", "log_mstar"])).fit(mock_table[:300])
    test = mock_table[300:340]
    whole = gp.predict(test, n_samples=30, batch_size=10)
    first = gp.predict(test[:20], n_samples=30, batch_size=10)
    second = gp.predict(test[20:], n_samples=30, batch_size=10, row_offset=20)
    for name in ("redshift_p50", "log_mstar_p84"):
        np.testing.assert_array_equal(np.concatenate([first[name].value, second[name].value]), whole[name].value)
