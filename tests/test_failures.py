"""Issue 12: nothing lost and no silent wrong answer (saving, loading, atomic writes)."""

import json
import os
import stat

import numpy as np
import pytest
import torch
from astropy.table import Table
from safetensors.torch import load_file, save_file

from astro_galpost import GalaxyPosterior, ModelFormatError
from astro_galpost.io import write_table_atomic
from astro_galpost.model.persistence import (
    CONFIG,
    WEIGHTS,
    config_checksum,
    file_sha256,
    is_model_folder,
)
from astro_galpost.utils.atomic import NotOurFolderError, replace_folder, write_atomic


@pytest.fixture(scope="module")
def fitted(mock_table, tiny, one_torch_thread):
    return GalaxyPosterior(random_state=3, **tiny(["log_mstar", "redshift"])).fit(mock_table[:300])


def _rewrite(folder, edit):
    """Edit a saved config and recompute both checksums, as a careless (or hostile) user could."""
    config = json.loads((folder / CONFIG).read_text())
    edit(config)
    config["weights_sha256"] = file_sha256(folder / WEIGHTS)
    config["config_sha256"] = config_checksum(config)
    (folder / CONFIG).write_text(json.dumps(config))


# ------------------------------------------------------------- item 1
def test_overwrite_refuses_a_folder_that_is_not_a_model(fitted, tmp_path):
    papers = tmp_path / "papers"
    papers.mkdir()
    (papers / "thesis.pdf").write_bytes(b"%PDF precious")
    with pytest.raises(NotOurFolderError, match="not a folder written by astro_galpost"):
        fitted.save(papers, overwrite=True)
    assert (papers / "thesis.pdf").read_bytes() == b"%PDF precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["papers"]  # no temporary left behind


def test_overwrite_refuses_a_model_folder_holding_user_files(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(NotOurFolderError, match="notes.txt"):
        fitted.save(tmp_path / "m", overwrite=True)
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"


def test_cli_fit_overwrite_dot_keeps_the_current_folder(mock_table, tmp_path, monkeypatch, capsys):
    from astro_galpost.cli import main

    mock_table[:200].write(tmp_path / "train.ecsv")
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "train.ecsv", ".", "--targets", "redshift", "--overwrite", "--max-epochs", "1",
                 "--no-progress"])
    assert code == 2
    assert "not a folder written by astro_galpost" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "train.ecsv"]


# ------------------------------------------------------------- item 2
def test_interrupted_overwrite_leaves_the_old_model(fitted, tmp_path, monkeypatch):
    fitted.save(tmp_path / "m")
    before = (tmp_path / "m" / WEIGHTS).read_bytes()
    real_rename, real_replace = os.rename, os.replace

    def crash_on_swap(real):
        def rename(src, dst):
            name = os.path.basename(str(src))
            if name.startswith(".m.") and not name.endswith(".old") and os.path.basename(str(dst)) == "m":
                raise KeyboardInterrupt  # killed just as the new model would be renamed into place
            return real(src, dst)
        return rename

    monkeypatch.setattr(os, "rename", crash_on_swap(real_rename))
    monkeypatch.setattr(os, "replace", crash_on_swap(real_replace))
    with pytest.raises(KeyboardInterrupt):
        fitted.save(tmp_path / "m", overwrite=True)
    monkeypatch.undo()
    assert (tmp_path / "m" / WEIGHTS).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    GalaxyPosterior.load(tmp_path / "m")


def test_leftovers_of_killed_saves_are_removed_by_the_next_save(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    (tmp_path / ".m.galpost-0123456789ab.tmp").mkdir()
    (tmp_path / ".m.galpost-0123456789ab.tmp" / WEIGHTS).write_bytes(b"half")
    (tmp_path / ".m.galpost-ba9876543210.old").mkdir()
    (tmp_path / ".m.user.tmp").mkdir()
    (tmp_path / ".m.user.tmp" / "mine.txt").write_text("not ours")
    # a user's backup of a model beside it, named like a leftover, holding only a model's files
    fitted.save(tmp_path / ".m.mybackup.old")
    fitted.save(tmp_path / "m", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".m.mybackup.old", ".m.user.tmp", "m"]


def test_writes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    write_table_atomic(Table({"a": [1, 2]}), tmp_path / "a.ecsv")
    assert "fsync" in events and events.index("fsync") < events.index("replace")


# ------------------------------------------------------------- item 6
def test_edited_config_fails_its_checksum(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG).read_text())
    config["targets"] = {"redshift": "z", "log_mstar": "lgm_tot_p50"}  # renamed targets
    (tmp_path / "m" / CONFIG).write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="config.json does not match its checksum"):
        GalaxyPosterior.load(tmp_path / "m")


def test_short_label_mean_is_rejected_even_with_a_valid_checksum(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    _rewrite(tmp_path / "m", lambda c: c.update(label_mean=c["label_mean"][:1]))
    with pytest.raises(ModelFormatError, match="label_mean must hold 2 finite values"):
        GalaxyPosterior.load(tmp_path / "m")


def test_nan_weights_are_rejected_even_with_a_valid_checksum(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    tensors = load_file(tmp_path / "m" / WEIGHTS)
    name = next(k for k, v in tensors.items() if k.startswith("network0") and v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, tmp_path / "m" / WEIGHTS)
    _rewrite(tmp_path / "m", lambda c: None)
    with pytest.raises(ModelFormatError, match="non-finite"):
        GalaxyPosterior.load(tmp_path / "m")


def test_generator_seed_survives_save_and_load(fitted, mock_table, tmp_path):
    gp = GalaxyPosterior(**{**fitted.get_params(), "random_state": np.random.default_rng(5)})
    for name in ("targets_", "member_encoders_", "ood_", "label_mean_", "label_scale_", "groups_", "flows_",
                 "networks_", "history_", "n_features_in_", "n_train_", "recalibrated_"):
        setattr(gp, name, getattr(fitted, name))
    gp.save(tmp_path / "m")
    loaded = GalaxyPosterior.load(tmp_path / "m")
    a = gp.sample(mock_table[300:320], n_samples=16)["redshift"].distribution
    b = loaded.sample(mock_table[300:320], n_samples=16)["redshift"].distribution
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- item 10 (outputs)
def test_saved_model_follows_the_umask(fitted, tmp_path):
    old = os.umask(0o022)
    try:
        fitted.save(tmp_path / "m")
        write_atomic(tmp_path / "t.txt", lambda tmp: tmp.write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "m" / WEIGHTS).stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "t.txt").stat().st_mode) == 0o644


def test_replace_folder_recognises_its_own_folders(tmp_path):
    with replace_folder(tmp_path / "m", is_ours=lambda p: (p / "mark").is_file()) as tmp:
        (tmp / "mark").write_text("1")
    with replace_folder(tmp_path / "m", overwrite=True, is_ours=lambda p: (p / "mark").is_file()) as tmp:
        (tmp / "mark").write_text("2")
    assert (tmp_path / "m" / "mark").read_text() == "2"
    assert not is_model_folder(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


# ------------------------------------------------------------- fits that fail or diverge
def test_a_failed_refit_leaves_an_unfitted_model(mock_table, tiny, one_torch_thread):
    """A refit that fails must not leave the old networks under the new targets' names (log_sfr_p50 held
    the redshifts of the first fit, with no warning)."""
    from astro_galpost import NotFittedError

    gp = GalaxyPosterior(random_state=0, **tiny(["redshift", "log_mstar"])).fit(mock_table[:200])
    no_sfr = mock_table[:200].copy()
    no_sfr["sfr_tot_p50"] = np.nan
    gp.set_params(targets=["log_sfr"], flows=tiny(["log_sfr"])["flows"])
    with pytest.raises(ValueError, match="log_sfr"):
        gp.fit(no_sfr)
    assert not hasattr(gp, "targets_") and not hasattr(gp, "networks_")
    with pytest.raises(NotFittedError):
        gp.predict(mock_table[:5])


def test_a_diverged_fit_is_refused_not_kept(mock_table, tiny, one_torch_thread):
    """learning_rate=3 kept the loss finite but of order 1e24 (medians of 1e22): refused, and the model is
    left unfitted, so it can be neither used nor saved."""
    from astro_galpost import NotFittedError

    gp = GalaxyPosterior(random_state=0, **tiny(["redshift"], learning_rate=3.0, max_epochs=8))
    with pytest.raises(FloatingPointError, match="diverged|became"):
        gp.fit(mock_table[:300])
    with pytest.raises(NotFittedError):
        gp.save("never-written")
    assert not os.path.exists("never-written")


def test_a_fitted_encoder_is_kept_by_clone(mock_table, tiny, one_torch_thread):
    """A fitted encoder given to the estimator is used as it is; its clones (cross_val_samples' folds) too."""
    from sklearn.base import clone

    from astro_galpost.encoders import PhotometryEncoder

    enc = PhotometryEncoder([f"modelMag_{b}" for b in "ugriz"]).fit(mock_table[:200])
    gp = GalaxyPosterior(encoder=[enc], **tiny(["redshift"]))
    assert clone(gp).encoder[0] is enc
    fresh = PhotometryEncoder([f"modelMag_{b}" for b in "ugriz"])
    twin = clone(fresh)
    assert twin is not fresh and not twin.is_fitted and twin.get_params() == fresh.get_params()


def test_pandas_tables_and_numpy_parameters(mock_table, tiny, one_torch_thread, tmp_path):
    """A DataFrame is a table, as docs/training.rst says; array-like parameters and a torch.device save."""
    pytest.importorskip("pandas")
    frame = mock_table[:200][["modelMag_u", "modelMag_g", "modelMag_r", "modelMag_i", "modelMag_z", "z"]].to_pandas()
    options = tiny(["redshift"])
    gp = GalaxyPosterior(**{**options, "targets": np.array(["redshift"]), "device": torch.device("cpu")})
    gp.fit(frame)
    gp.save(tmp_path / "m")
    loaded = GalaxyPosterior.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(frame[:5], n_samples=20, random_state=1)["redshift_p50"],
                                  gp.predict(frame[:5], n_samples=20, random_state=1)["redshift_p50"])


def test_parameters_set_after_a_fit_do_not_change_its_predictions(mock_table, tiny, one_torch_thread, tmp_path):
    """Whether an ensemble's mixture is narrowed is decided when it is fitted (set_params(recalibrate=False)
    after the fit widened its 68% intervals by 2.5%) and saved with it."""
    gp = GalaxyPosterior(random_state=0, n_ensemble=2, **tiny(["redshift"])).fit(mock_table[:300])
    before = gp.predict(mock_table[300:330], n_samples=50, random_state=1)
    gp.set_params(recalibrate=False, validation_fraction=0)
    after = gp.predict(mock_table[300:330], n_samples=50, random_state=1)
    np.testing.assert_array_equal(after["redshift_p84"], before["redshift_p84"])
    gp.save(tmp_path / "m")
    loaded = GalaxyPosterior.load(tmp_path / "m").predict(mock_table[300:330], n_samples=50, random_state=1)
    np.testing.assert_array_equal(loaded["redshift_p84"], before["redshift_p84"])
