"""Issue 12 items 4 and 5: two writers of one output, and CSV resume."""

import pytest
from astropy.table import Table
from test_streaming import CHUNK, run, setup, write_catalog  # noqa: F401 - setup is a fixture

from astro_galpost.atomic import OutputLockedError, output_lock

pytestmark = [pytest.mark.filterwarnings("ignore:The unit 'dex:astropy.utils.exceptions.AstropyUserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]


def test_a_second_writer_of_one_output_stops(setup, tmp_path):
    source = write_catalog(setup, "parquet")
    out = tmp_path / "out.parquet"
    with output_lock(out):  # another run is writing it
        with pytest.raises(OutputLockedError, match="another process is writing"):
            run(setup, source, out, random_state=1)
    assert not out.exists()
    assert run(setup, source, out).complete  # the lock went with its holder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_csv_resume_when_every_chunk_was_written(setup, tmp_path):
    source = write_catalog(setup, "csv")
    clean = run(setup, source, tmp_path / "clean.csv")
    out = tmp_path / "out.csv"
    partial = run(setup, source, out, max_chunks=clean.n_chunks)  # stopped before the final rename
    assert not partial.complete and not out.exists()
    resumed = run(setup, source, out)
    assert resumed.complete and resumed.resumed_rows == clean.n_rows
    assert out.read_bytes() == (tmp_path / "clean.csv").read_bytes()


def test_csv_resume_with_a_blank_line_does_not_duplicate_rows(setup, tmp_path):
    lines = write_catalog(setup, "csv").read_text().splitlines(keepends=True)
    source = tmp_path / "blank.csv"
    source.write_text("".join(lines[:10] + ["\n"] + lines[10:]))
    run(setup, source, tmp_path / "clean.csv")
    out = tmp_path / "out.csv"
    run(setup, source, out, max_chunks=1)
    resumed = run(setup, source, out)
    assert resumed.resumed_rows == CHUNK and resumed.n_rows == len(setup["catalog"])
    got, clean = Table.read(out), Table.read(tmp_path / "clean.csv")
    assert len(got) == len(clean) == len(setup["catalog"])
    assert list(got["specObjID"] if "specObjID" in got.colnames else got[got.colnames[0]]) == \
        list(clean["specObjID"] if "specObjID" in clean.colnames else clean[clean.colnames[0]])
