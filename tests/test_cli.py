import subprocess
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
    for command in ([], ["demo"], ["fit"], ["predict"], ["fetch-sdss"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--help"])
        assert exit_.value.code == 0
        assert "usage: galpost" in capsys.readouterr().out


def test_fit_then_predict(train_file, mock_table, tmp_path, capsys):
    model = tmp_path / "model"
    assert main(["fit", str(train_file), str(model), "--targets", "redshift", "log_mstar=lgm_tot_p50",
                 "--max-epochs", "2", "--no-progress"]) == 0
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


def test_errors_are_reported_with_exit_code(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "no_model"), str(tmp_path / "x.fits"), str(tmp_path / "o.fits")]) == 2
    assert "no saved model" in capsys.readouterr().err


def test_fetch_dry_run_prints_sql(capsys):
    assert main(["fetch-sdss", "--n", "10", "--dry-run"]) == 0
    assert "SELECT" in capsys.readouterr().out.upper()


def test_console_script_installed():
    result = subprocess.run([sys.executable, "-m", "astro_galpost.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "astro_galpost" in result.stdout


def test_demo_quick(tmp_path):
    from astro_galpost.demo import run_demo

    paths = run_demo(tmp_path / "demo", quick=True, progress=False)
    assert paths["figure"].stat().st_size > 10_000
    assert len(QTable.read(paths["sdss"])) == 600
    mock = QTable.read(paths["mock"])
    assert {f"{t}_p50" for t in ("log_mstar", "halpha", "metallicity")} <= set(mock.colnames)
