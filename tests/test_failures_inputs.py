"""Issue 12 items 7-10: bad inputs and parameters give named errors, never silent wrong answers."""

import warnings

import astropy.units as u
import numpy as np
import pytest
import torch
from astropy.table import Table
from sklearn.base import clone

from astro_galpost import GalaxyPosterior, UnusableRowsWarning
from astro_galpost.cli import main
from astro_galpost.encoders import PhotometryEncoder, VAEEncoder
from astro_galpost.io import TableFormatError
from astro_galpost.model.estimator import DegenerateLabelsWarning
from astro_galpost.model.ood import NeighbourDistance
from astro_galpost.physics import mbh_from_sigma

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BANDS = [f"modelMag_{b}" for b in "ugriz"]


@pytest.fixture(scope="module")
def fitted(mock_table, tiny, one_torch_thread):
    return GalaxyPosterior(random_state=0, **tiny(["redshift"])).fit(mock_table[:300])


@pytest.fixture
def tiny_fit(tiny, mock_table):
    """Fit a tiny model with extra parameters on 200 rows."""
    def fit(table=None, **params):
        return GalaxyPosterior(**tiny(["redshift"], **{"max_epochs": 1, **params})).fit(
            mock_table[:200] if table is None else table)

    return fit


# ------------------------------------------------------------- item 7
def test_magnitudes_labelled_jansky_are_refused(fitted, mock_table):
    table = Table(mock_table[300:320], copy=True)
    for band in BANDS:
        table[band].unit = u.Jy
    with pytest.raises(ValueError, match="'modelMag_u' is labelled Jy .* look like magnitudes"):
        fitted.predict(table, n_samples=8)


def test_duplicated_band_is_refused(tiny_fit):
    with pytest.raises(ValueError, match=r"photometry lists the columns \['modelMag_r'\] more than once"):
        tiny_fit(photometry=[*BANDS, "modelMag_r"])


def test_photometry_string_is_refused(tiny_fit):
    with pytest.raises(TypeError, match=r"sequence of column names, e.g. \['modelMag_r'\]"):
        tiny_fit(photometry="modelMag_r")


@pytest.mark.parametrize("n_samples", [2.7, 0, "10", True])
def test_n_samples_must_be_a_whole_number(fitted, mock_table, n_samples):
    with pytest.raises(ValueError, match="n_samples must be a whole number >= 1"):
        fitted.predict(mock_table[300:310], n_samples=n_samples)


@pytest.mark.parametrize(("percentiles", "match"), [([], "at least one"),
                                                    ([50, 120], r"percentiles must lie in \[0, 100\]"),
                                                    ([50, 50], "repeat"),
                                                    ([50, 50.0000001], r"repeat.*p50, p50")])
def test_percentiles_are_checked(fitted, mock_table, percentiles, match):
    with pytest.raises(ValueError, match=match):
        fitted.predict(mock_table[300:310], n_samples=8, percentiles=percentiles)


def test_ood_flag_is_masked_on_unusable_rows(fitted, mock_table):
    table = Table(mock_table[300:320], copy=True)
    for band in BANDS:
        table[band][:3] = np.nan
    with pytest.warns(UnusableRowsWarning):
        out = fitted.predict(table, n_samples=8)
    assert list(np.ma.getmaskarray(out["ood_flag"])) == [True] * 3 + [False] * 17


def test_predict_refuses_to_overwrite_input_columns(fitted, mock_table):
    first = fitted.predict(mock_table[300:310], n_samples=8, random_state=1)
    with pytest.raises(ValueError, match=r"already has the output columns \['redshift_p16', 'redshift_p50', "
                                         r"'redshift_p84', 'ood_score', 'ood_flag'\]"):
        fitted.predict(first, n_samples=8)
    again = fitted.predict(first, n_samples=8, random_state=2, replace_columns=True)
    assert again.colnames == first.colnames
    assert not np.array_equal(again["redshift_p50"], first["redshift_p50"])


def test_cli_evaluate_without_target_columns_fails(fitted, mock_table, tmp_path, capsys):
    fitted.save(tmp_path / "m")
    unlabelled = Table(mock_table[300:340], copy=True)
    unlabelled.remove_column("z")
    unlabelled.write(tmp_path / "unlabelled.ecsv")
    assert main(["evaluate", str(tmp_path / "m"), str(tmp_path / "unlabelled.ecsv"), "--n-samples", "8",
                 "--no-progress"]) == 2
    assert "none of the target columns ['z']" in capsys.readouterr().err


# ------------------------------------------------------------- item 8
@pytest.mark.parametrize(("params", "match"), [
    ({"n_ensemble": 0}, "n_ensemble must be 'auto' or a whole number >= 1, got 0"),
    ({"validation_fraction": 1.0}, r"validation_fraction must be a number in \[0, 1\), got 1.0"),
    ({"max_epochs": -1}, "max_epochs must be a whole number >= 1, got -1"),
    ({"batch_size": 0}, "batch_size must be a whole number >= 1, got 0"),
    ({"dropout": 1.5}, r"dropout must be a number in \[0, 1\)"),
    ({"learning_rate": 0}, "learning_rate must be a number"),
    ({"hidden": 2.5}, "hidden must be a whole number"),
])
def test_parameters_that_cannot_work_fail_at_fit(tiny_fit, params, match):
    with pytest.raises(ValueError, match=match):
        tiny_fit(**params)


def test_too_large_validation_fraction_for_the_rows(tiny_fit, mock_table):
    with pytest.raises(ValueError, match="validation_fraction=0.9 leaves 1 of 10 usable rows"):
        tiny_fit(mock_table[:10], validation_fraction=0.9)


def test_no_held_out_rows_warns_that_nothing_is_recalibrated(tiny_fit):
    with pytest.warns(UserWarning, match="validation_fraction=0 .*recalibrate and refine_heads"):
        model = tiny_fit(validation_fraction=0.0)
    np.testing.assert_array_equal(model.residual_scales_["redshift"], 1.0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu(tiny_fit, train_file_for_cli, capsys):
    with pytest.raises(ValueError, match="torch finds no CUDA GPU"):
        tiny_fit(device="cuda")
    gp = tiny_fit()
    gp.save(train_file_for_cli.parent / "saved")
    with pytest.raises(ValueError, match="torch finds no CUDA GPU"):
        GalaxyPosterior.load(train_file_for_cli.parent / "saved", device="cuda")
    code = main(["fit", str(train_file_for_cli), str(train_file_for_cli.parent / "m"), "--targets", "redshift",
                 "--device", "cuda", "--max-epochs", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU" in err and "Traceback" not in err


@pytest.fixture
def train_file_for_cli(mock_table, tmp_path):
    path = tmp_path / "train.ecsv"
    mock_table[:100].write(path)
    return path


def test_constant_label_warns(tiny_fit, mock_table):
    table = Table(mock_table[:200], copy=True)
    table["z"] = 0.1
    with pytest.warns(DegenerateLabelsWarning, match="every usable value of column 'z' equals 0.1"):
        tiny_fit(table)


def test_single_label_is_refused(tiny_fit, mock_table):
    table = Table(mock_table[:200], copy=True)
    table["z"][1:] = np.nan
    with pytest.raises(ValueError, match=r"'z' has 1 usable value\(s\) in the training table \(finite, in -0.01..10\)"):
        tiny_fit(table)


# ------------------------------------------------------------- item 9
@pytest.mark.parametrize("sigma", [1e10 * u.km / u.s, 1e-4 * u.m / u.s, [200, 4e5] * u.km / u.s])
def test_unphysical_dispersions_are_refused(sigma):
    with pytest.raises(ValueError, match="between 1 m/s and the speed of light"):
        mbh_from_sigma(sigma)


# ------------------------------------------------------------- item 10 (readers)
def test_latin1_catalog_names_file_and_line(tmp_path):
    from astro_galpost.sdss import read_catalog

    path = tmp_path / "export.csv"
    path.write_bytes("specObjID,z\n1,0.1\n2,café\n".encode("latin-1"))
    with pytest.raises(TableFormatError, match=r"export.csv, line 3: not UTF-8 text"):
        read_catalog(path)


# ------------------------------------------------------------- scikit-learn citizen
def test_get_set_params_and_clone():
    vae = VAEEncoder(latent_dim=4)
    gp = GalaxyPosterior(targets=["redshift"], encoder=vae, max_epochs=2)
    params = gp.get_params(deep=True)
    assert params["max_epochs"] == 2 and params["encoder__latent_dim"] == 4
    assert "encoder__latent_dim" not in gp.get_params(deep=False)
    assert gp.set_params(max_epochs=5, encoder__latent_dim=8) is gp
    assert gp.max_epochs == 5 and vae.latent_dim == 8
    with pytest.raises(ValueError, match="'max_epoch' is not a parameter of GalaxyPosterior"):
        gp.set_params(max_epoch=3)
    twin = clone(gp)
    assert twin is not gp and twin.encoder is not vae and twin.get_params()["encoder__latent_dim"] == 8
    assert clone(NeighbourDistance(k=3)).k == 3
    assert NeighbourDistance(k=3).set_params(k=5).k == 5


def test_repr_touches_no_registry():
    gp = GalaxyPosterior(targets=["not_a_registered_target"], max_epochs=3)
    assert repr(gp) == "GalaxyPosterior(targets=['not_a_registered_target'], max_epochs=3)"


def test_unfitted_encoder_objects_are_copied_at_fit(tiny_fit, mock_table):
    encoder = PhotometryEncoder(BANDS)
    gp = tiny_fit(encoder=encoder)
    assert not encoder.is_fitted and gp.encoders_[0] is not encoder and gp.encoders_[0].is_fitted
    fitted_encoder = PhotometryEncoder(BANDS).fit(mock_table[:200])
    assert tiny_fit(encoder=fitted_encoder).encoders_[0] is fitted_encoder  # reused as documented


def test_labels_of_rows_with_unusable_inputs_do_not_count(tiny, mock_table):
    """Three metallicity labels, all on rows without photometry: nothing to learn from (it once fitted
    a NaN label mean and predicted NaN for every galaxy)."""
    table = Table(mock_table[:200], copy=True)
    table["oh_p50"][:3], table["oh_p50"][3:] = [8.6, 8.7, 8.8], np.nan
    for band in BANDS:
        table[band][:3] = np.nan
    with pytest.raises(ValueError, match="'oh_p50' has 0 usable value.* in the rows whose inputs are usable"):
        GalaxyPosterior(**tiny(["redshift", "metallicity"], max_epochs=1)).fit(table)


def test_too_few_held_out_labels_warn_that_widths_are_not_recalibrated(tiny, mock_table):
    table = Table(mock_table[:300], copy=True)
    table["oh_p50"][40:] = np.nan  # 40 metallicities: about 6 held out
    with pytest.warns(UserWarning, match=r"metallicity group has \d labelled held-out row\(s\), fewer than the 30"):
        model = GalaxyPosterior(**tiny(["redshift", "metallicity"], max_epochs=1, n_ensemble=1)).fit(table)
    assert model.residual_scales_["metallicity"][0] == 1.0


def test_too_few_draws_for_an_ensemble_warn(tiny, mock_table):
    model = GalaxyPosterior(**tiny(["redshift"], max_epochs=1, n_ensemble=3, random_state=0)).fit(mock_table[:200])
    with pytest.warns(UserWarning, match="n_samples=2 for an ensemble of 3.*only the first 2 member"):
        model.sample(mock_table[200:205], n_samples=2)
    with pytest.warns(UserWarning, match="n_samples=5 for an ensemble of 3.*not narrowed"):
        model.sample(mock_table[200:205], n_samples=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.sample(mock_table[200:205], n_samples=6)
