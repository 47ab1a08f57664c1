import re
import runpy
import sys

import numpy as np
import pytest
from astropy.table import QTable

from astro_galpost.cli import main


@pytest.fixture
def train_file(mock_table, tmp_path):
    path = tmp_path / "train.ecsv"
    mock_table[:300].write(path)
    return path


def test_help_for_every_command(capsys):
    for command in ([], ["demo"], ["fit"], ["predict"], ["evaluate"], ["fetch-sdss"], ["fetch-cutouts"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "usage: galpost" in capsys.readouterr().out


def test_fit_then_predict(train_file, mock_table, tmp_path, capsys, tiny_by_default):
    model = tmp_path / "model"
    assert main(["fit", str(train_file), str(model), "--targets", "redshift", "log_mstar=lgm_tot_p50",
                 "--max-epochs", "2", "--no-progress"]) == 0
    assert "(3 networks)" in capsys.readouterr().out  # n_ensemble="auto" below 5,000 labelled rows
    test = tmp_path / "test.ecsv"
    mock_table[300:320].write(test)
    before = test.read_bytes()
    out = tmp_path / "out.ecsv"
    assert main(["predict", str(model), str(test), str(out), "--n-samples", "20", "--no-progress"]) == 0
    result = QTable.read(out)
    assert len(result) == 20 and "log_mstar_p50" in result.colnames
    assert str(result["log_mstar_p50"].unit) == "dex(solMass)"
    assert test.read_bytes() == before  # input never modified
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp files left
    # a second predict refuses to overwrite
    assert main(["predict", str(model), str(test), str(out), "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err


def test_n_ensemble_is_auto_or_a_whole_number(train_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", str(train_file), str(tmp_path / "model"), "--n-ensemble", "three"])
    assert exit_.value.code == 2 and "expected 'auto' or a whole number, got 'three'" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def test_errors_are_reported_with_exit_code(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "no_model"), str(tmp_path / "x.fits"), str(tmp_path / "o.fits")]) == 2
    assert "no saved model" in capsys.readouterr().err


def test_fetch_dry_run_prints_sql(capsys):
    assert main(["fetch-sdss", "--n", "10", "--dry-run"]) == 0
    assert "SELECT" in capsys.readouterr().out.upper()


def test_python_m_runs_the_command(monkeypatch, capsys):
    """``python -m astro_galpost.cli --version`` (run in this process: a new one would spend 2 s importing)."""
    monkeypatch.setattr(sys, "argv", ["galpost", "--version"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("astro_galpost.cli", run_name="__main__")
    assert exit_.value.code == 0 and "astro_galpost" in capsys.readouterr().out


def _check_demo(paths, printed, limit):
    assert "2400 training / 600 test galaxies" in printed and f"limit {limit})" in printed
    assert re.search(r"demo finished in \d+ s wall time", printed)
    assert paths["figure"].stat().st_size > 10_000
    assert len(QTable.read(paths["sdss"])) == 600
    mock = QTable.read(paths["mock"])
    assert {f"{t}_p50" for t in ("log_mstar", "halpha", "metallicity")} <= set(mock.colnames)


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys):
    from astro_galpost.datasets.demo import run_demo

    paths = run_demo(tmp_path / "demo", quick=True, progress=False)
    _check_demo(paths, capsys.readouterr().out, limit=40)


def test_demo_quick_with_tiny_models(tmp_path, capsys, tiny, tiny_by_default):
    """The demo's steps and outputs, with tiny models (`test_demo_quick` runs it as it is); a rerun
    replaces the files the first one wrote."""
    from astro_galpost.datasets.demo import run_demo

    paths = run_demo(tmp_path / "demo", quick=True, progress=False)
    _check_demo(paths, capsys.readouterr().out, limit=tiny()["max_epochs"])
    first = paths["figure"].stat().st_mtime_ns
    assert run_demo(tmp_path / "demo", quick=True, progress=False) == paths
    assert paths["figure"].stat().st_mtime_ns > first


def test_help_for_predict_and_evaluate(capsys):
    for command, flags in ((["predict"], ["--chunk-size", "--samples", "--no-resume", "--dask", "--columns"]),
                           (["evaluate"], ["--report", "--n-samples"])):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        out = capsys.readouterr().out
        assert "usage: galpost" in out and all(flag in out for flag in flags)


@pytest.fixture(scope="module")
def saved_model(mock_table, tiny, one_torch_thread, tmp_path_factory):
    from astro_galpost import GalaxyPosterior

    path = tmp_path_factory.mktemp("cli") / "model"
    gp = GalaxyPosterior(random_state=0, **tiny(["redshift", "log_mstar", "halpha"])).fit(mock_table[:300])
    gp.save(path)
    return path


def test_predict_streams_resumes_and_evaluate_reports(saved_model, mock_table, tmp_path, capsys):
    import h5py

    from astro_galpost import GalaxyPosterior

    catalog = tmp_path / "catalog.parquet"
    mock_table[300:500].write(catalog)
    out, samples = tmp_path / "out.parquet", tmp_path / "samples.h5"
    args = ["predict", str(saved_model), str(catalog), str(out), "--chunk-size", "128", "--batch-size", "64",
            "--n-samples", "10", "--seed", "4", "--no-progress"]
    assert main([*args, "--samples", str(samples)]) == 0
    assert "200 galaxies" in capsys.readouterr().out
    result = QTable.read(out)
    gp = GalaxyPosterior.load(saved_model)
    expected = gp.predict(QTable.read(catalog), n_samples=10, random_state=4, batch_size=64)
    assert np.array_equal(result["halpha_p50"].value, expected["halpha_p50"].value)
    with h5py.File(samples) as f:
        assert f["samples"].shape == (200, 10, 3)
    # an existing output needs --overwrite; --no-resume starts over
    assert main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--no-resume"]) == 0

    labelled = tmp_path / "labelled.ecsv"
    mock_table[500:650].write(labelled)
    report = tmp_path / "report.ecsv"
    assert main(["evaluate", str(saved_model), str(labelled), "--n-samples", "30", "--report", str(report),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "coverage_68" in printed and "log10(1e-17 erg / (s cm2))" in printed
    table = QTable.read(report)
    assert list(table["target"]) == ["redshift", "log_mstar", "halpha"]
    assert (table["n"] > 100).all() and np.isfinite(table["crps"]).all()
    assert 0 <= table["coverage_95"][0] <= 1
    markdown = tmp_path / "report.md"
    assert main(["evaluate", str(saved_model), str(labelled), "--n-samples", "5", "--report", str(markdown),
                 "--no-progress"]) == 0
    assert markdown.read_text().startswith("| target | space | n |")
    assert main(["evaluate", str(saved_model), str(labelled), "--report", str(markdown)]) == 2
    assert "exists" in capsys.readouterr().err


def test_predict_and_evaluate_errors(saved_model, tmp_path, capsys):
    import shutil

    saved_model = shutil.copytree(saved_model, tmp_path / "model")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    assert main(["predict", str(saved_model), str(bad), str(tmp_path / "o.parquet")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["predict", str(saved_model), str(tmp_path / "missing.fits"), str(tmp_path / "o.fits")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(saved_model), str(bad), str(tmp_path / "o.txt")]) == 2
    assert "suffix" in capsys.readouterr().err
    assert main(["evaluate", str(saved_model), str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err
    weights = saved_model / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)  # corrupt the model
    assert main(["predict", str(saved_model), str(bad), str(tmp_path / "o.parquet")]) == 2
    assert "checksum" in capsys.readouterr().err
    assert main(["evaluate", str(saved_model), str(bad)]) == 2
    assert "checksum" in capsys.readouterr().err
    assert not (tmp_path / "o.parquet").exists()


def test_inputs_are_never_outputs_and_outputs_are_checked_before_any_work(saved_model, mock_table, tmp_path,
                                                                          capsys, monkeypatch):
    """--samples, --report and --dask once wrote over the input; folders or foreign files at the output
    name failed only after the whole run."""
    import shutil

    from astro_galpost import GalaxyPosterior

    catalog = tmp_path / "catalog.parquet"
    mock_table[300:340].write(catalog)
    labelled = tmp_path / "labelled.ecsv"
    mock_table[340:380].write(labelled)
    before = catalog.read_bytes(), labelled.read_bytes()
    predict = ["predict", str(saved_model), str(catalog)]

    def refused(argv, message):
        assert main([*argv, "--no-progress"]) == 2
        assert message in capsys.readouterr().err

    refused([*predict, str(tmp_path / "o.parquet"), "--samples", str(catalog), "--overwrite"],
            "is the input")
    refused([*predict, str(tmp_path / "o.parquet"), "--samples", str(tmp_path / "o.parquet")],
            "must differ from the output")
    refused(["evaluate", str(saved_model), str(labelled), "--report", str(labelled), "--overwrite"],
            "is the input")
    refused(["evaluate", str(saved_model), str(labelled), "--report", str(saved_model / "r.md")],
            "is inside the input")
    refused([*predict, str(catalog), "--dask", "local", "--overwrite"], "is the input")
    assert (catalog.read_bytes(), labelled.read_bytes()) == before

    folder = tmp_path / "folder.parquet"
    folder.mkdir()
    (folder / "mine.txt").write_text("a user's file")
    refused([*predict, str(folder), "--overwrite"], "is a folder")
    refused([*predict, str(tmp_path / "o.parquet"), "--samples", str(folder), "--overwrite"], "is a folder")
    refused(["evaluate", str(saved_model), str(labelled), "--report", str(folder), "--overwrite"],
            "is a folder")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # nothing begun

    # fit: a model folder holding a user's file, or a parent that is a file, is refused before training
    monkeypatch.setattr(GalaxyPosterior, "fit", lambda *a, **k: pytest.fail("trained before checking"))
    copy = shutil.copytree(saved_model, tmp_path / "model_copy")
    (copy / "notes.txt").write_text("mine")
    refused(["fit", str(labelled), str(copy), "--overwrite"], "did not write (notes.txt)")
    (tmp_path / "mine.txt").write_text("x")
    refused(["fit", str(labelled), str(tmp_path / "mine.txt" / "model")], "is a file, not a folder")
    assert (copy / "notes.txt").read_text() == "mine"


def test_demo_replaces_only_its_own_files(tmp_path, capsys):
    from astro_galpost.datasets.demo import run_demo

    out = tmp_path / "demo"
    out.mkdir()
    (out / "predicted_vs_true.png").write_text("a user's figure")
    with pytest.raises(FileExistsError, match="predicted_vs_true.png exists"):
        run_demo(out, quick=True, progress=False)
    assert (out / "predicted_vs_true.png").read_text() == "a user's figure"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 2
    assert "pass overwrite=True (--overwrite)" in capsys.readouterr().err


def test_numeric_options_checked_by_name(train_file, tmp_path, capsys):
    for argv, message in ((["fit", str(train_file), str(tmp_path / "m"), "--seed", "-1"],
                           "argument --seed: must be at least 0, got -1"),
                          (["predict", "m", "t.fits", "o.fits", "--chunk-size", "0"],
                           "argument --chunk-size: must be at least 1, got 0"),
                          (["evaluate", "m", "t.fits", "--n-samples", "1"],
                           "argument --n-samples: must be at least 2, got 1"),
                          (["fit", str(train_file), str(tmp_path / "m"), "--max-epochs", "ten"],
                           "argument --max-epochs: expected a whole number, got 'ten'")):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_warnings_are_one_line(saved_model, mock_table, tmp_path, capsys):
    labelled = tmp_path / "few.ecsv"
    table = mock_table[600:620].copy()
    table["z"][3:] = np.nan
    table.write(labelled)
    assert main(["evaluate", str(saved_model), str(labelled), "--n-samples", "5", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "galpost: UserWarning: only 3 of 20 rows have a usable redshift label" in err
    assert ".py:" not in err
