import json

import numpy as np
import pytest

from astro_galpost import GalaxyPosterior, ModelFormatError
from astro_galpost.model.persistence import CONFIG, WEIGHTS, config_checksum


@pytest.fixture(scope="module")
def fitted(mock_table, tiny):
    options = tiny(["log_mstar", "redshift", "metallicity", "halpha", "hbeta"], n_ensemble=2, random_state=3)
    return GalaxyPosterior(**options).fit(mock_table[:500])


def test_round_trip_gives_identical_samples(fitted, mock_table, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = GalaxyPosterior.load(tmp_path / "model")
    test = mock_table[500:540]
    a = fitted.sample(test, n_samples=64, random_state=7)
    b = loaded.sample(test, n_samples=64, random_state=7)
    for name in a:
        np.testing.assert_array_equal(a[name].distribution, b[name].distribution)
    np.testing.assert_array_equal(a.probabilities["metallicity"], b.probabilities["metallicity"])
    assert loaded.targets_ == fitted.targets_
    assert loaded.flows_ == fitted.flows_
    assert [h.val_loss for h in loaded.history_] == [h.val_loss for h in fitted.history_]


def test_loaded_parameters_rebuild_the_estimator(mock_table, tiny, tmp_path):
    """An encoder object and a SeedSequence come back as what was given, so a clone refits alike."""
    from sklearn.base import clone

    from astro_galpost.encoders import PhotometryEncoder

    gri = PhotometryEncoder(["modelMag_g", "modelMag_r", "modelMag_i"], errors=None)
    options = tiny(["redshift"], photometry=None, encoder=gri, random_state=np.random.SeedSequence(11))
    model = GalaxyPosterior(**options).fit(mock_table[:200])
    model.save(tmp_path / "model")
    loaded = GalaxyPosterior.load(tmp_path / "model")
    encoder = loaded.get_params()["encoder"]
    assert isinstance(encoder, PhotometryEncoder) and not encoder.is_fitted
    assert encoder.get_params() == gri.get_params()
    assert loaded.get_params(deep=False)["photometry"] is None
    assert loaded.random_state.entropy == 11
    refit = clone(loaded).fit(mock_table[:200])
    assert refit.encoders_[0].columns == ["modelMag_g", "modelMag_r", "modelMag_i"]
    assert GalaxyPosterior.load(tmp_path / "model").get_params()["encoder"] is not encoder


def test_saved_files_are_json_and_safetensors(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    assert config["package"] == "astro_galpost"
    assert "package_version" in config and len(config["weights_sha256"]) == 64
    assert config["encoders"][0]["name"] == "photometry"
    assert (tmp_path / "m" / WEIGHTS).read_bytes()[:8]  # safetensors header length
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [CONFIG, WEIGHTS]


def test_no_overwrite_without_asking(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    with pytest.raises(FileExistsError):
        fitted.save(tmp_path / "m")
    fitted.save(tmp_path / "m", overwrite=True)


def test_corrupted_weights(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match="checksum"):
        GalaxyPosterior.load(tmp_path / "m")


def test_newer_format_rejected(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    config["format_version"] = 99
    (tmp_path / "m" / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="upgrade"):
        GalaxyPosterior.load(tmp_path / "m")


@pytest.mark.parametrize("version, match", [
    (2, "classifiers read the representation alone.*refit"),  # M_BH inside the core flow, no chaining
    (3, "mean head.*refit"),  # widths scaled about the mean head, not about the flow's centre
])
def test_older_formats_rejected(fitted, tmp_path, version, match):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    config["format_version"] = version
    config["config_sha256"] = config_checksum(config)
    (tmp_path / "m" / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match=match):
        GalaxyPosterior.load(tmp_path / "m")


def test_config_without_an_entry_is_a_format_error(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    del config["params"]
    config["config_sha256"] = config_checksum(config)  # edited by hand, checksum recomputed
    (tmp_path / "m" / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="not a complete saved model: its config has no entry 'params'"):
        GalaxyPosterior.load(tmp_path / "m")


def test_changed_target_space_rejected(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    assert config["target_spaces"]["halpha"] == {"space": "asinh", "softening": 2.0}
    assert config["target_spaces"]["log_mstar"] == {"space": "linear", "softening": None}
    # a model saved when the line was modelled in strict log10 must not be read as asinh
    config["target_spaces"]["halpha"] = {"space": "log10", "softening": None}
    config["config_sha256"] = config_checksum(config)  # as if saved so by an older installation
    (tmp_path / "m" / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="halpha.*refit"):
        GalaxyPosterior.load(tmp_path / "m")


def test_broken_config(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    (tmp_path / "m" / CONFIG).write_text("{not json")
    with pytest.raises(ModelFormatError, match="JSON"):
        GalaxyPosterior.load(tmp_path / "m")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no saved model"):
        GalaxyPosterior.load(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / CONFIG).write_text("{}")
    with pytest.raises(FileNotFoundError, match=WEIGHTS):
        GalaxyPosterior.load(tmp_path / "half")


def test_save_before_fit(tmp_path):
    from astro_galpost import NotFittedError

    with pytest.raises(NotFittedError):
        GalaxyPosterior().save(tmp_path / "m")


def _saved_without(fitted, directory, buffer: str, edit=lambda name, tensor: tensor):
    """Save ``fitted`` to ``directory`` as a model saved before ``buffer`` existed (checksums rewritten); load it."""
    from safetensors.torch import load_file, save_file

    from astro_galpost.model.envelope import file_sha256

    fitted.save(directory)
    weights = load_file(directory / WEIGHTS)
    old = {k: edit(k, v) for k, v in weights.items() if not k.endswith(buffer)}
    assert len(old) == len(weights) - 2  # one per member
    save_file(old, directory / WEIGHTS)
    config = json.loads((directory / CONFIG).read_text())
    config["weights_sha256"] = file_sha256(directory / WEIGHTS)
    config["config_sha256"] = config_checksum(config)
    (directory / CONFIG).write_text(json.dumps(config))
    return GalaxyPosterior.load(directory)


def test_a_model_saved_before_the_factor_intervals_loads_without_them(fitted, tmp_path):
    loaded = _saved_without(fitted, tmp_path / "m", "residual_scale_interval")
    assert all(np.all(np.isnan(v)) for v in loaded.residual_scale_intervals_.values())
    assert all(np.all(np.isfinite(v)) for v in fitted.residual_scale_intervals_.values())
    for name, scale in fitted.residual_scales_.items():
        np.testing.assert_array_equal(loaded.residual_scales_[name], scale)


def test_a_model_saved_before_the_width_maps_samples_with_its_factors(fitted, tmp_path):
    # such a model scaled each group's residuals by its one factor: its map is the diagonal of its factors
    loaded = _saved_without(fitted, tmp_path / "m", "residual_map",
                            lambda name, tensor: tensor.fill_(1.5) if name.endswith("residual_scale") else tensor)
    for net in loaded.networks_:
        np.testing.assert_array_equal(net.residual_map.numpy(), 1.5 * np.eye(len(net.residual_map)))
