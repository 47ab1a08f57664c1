"""Streaming inference (`astro_galpost.io.streaming`) and chunked table I/O (`astro_galpost.io`)."""

import gc
import json
import warnings
import weakref

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, QTable, Table
from astropy.utils.masked import Masked

from astro_galpost import GalaxyPosterior, UnusableRowsWarning
from astro_galpost.io import (
    TableFormatError,
    iter_table_chunks,
    model_checksum,
    open_chunked_writer,
    predict_catalog,
)
from astro_galpost.utils.atomic import OutputLockedError, output_lock

# astropy warns that FITS cannot store dex units natively (they round-trip through its metadata)
pytestmark = [pytest.mark.filterwarnings("ignore:The unit 'dex:astropy.utils.exceptions.AstropyUserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

N_SAMPLES, SEED, BATCH, CHUNK = 16, 3, 64, 128
WRITE = {"hdf5": dict(path="data", serialize_meta=True)}
SUFFIX = {"parquet": "parquet", "fits": "fits", "hdf5": "h5", "ecsv": "ecsv", "csv": "csv"}


@pytest.fixture(scope="module")
def setup(mock_table, tiny_posterior, tmp_path_factory):
    """A small fitted model, its folder, a catalog with unusable rows in one chunk, and the reference."""
    root = tmp_path_factory.mktemp("streaming")
    gp = tiny_posterior
    gp.save(root / "model")
    catalog = QTable(mock_table[300:], copy=True)
    catalog.meta = {}
    for band in "ugriz":  # rows 200..209 (in chunk 1 of 128 rows) have no usable photometry
        catalog[f"modelMag_{band}"][200:210] = np.nan * u.mag
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusableRowsWarning)
        ref = gp.predict(catalog, n_samples=N_SAMPLES, random_state=SEED, batch_size=BATCH)
    assert ref["log_mstar_p50"].mask[200:210].all() and not ref["log_mstar_p50"].mask[:200].any()
    return {"root": root, "gp": gp, "model": root / "model", "catalog": catalog, "ref": ref}


def write_catalog(setup, fmt):
    path = setup["root"] / f"catalog.{SUFFIX[fmt]}"
    if not path.exists():
        setup["catalog"].write(path, **WRITE.get(fmt, {}))
    return path


def values(col):
    data = getattr(col, "unmasked", col)
    data = np.asarray(getattr(data, "value", data))
    if data.dtype.kind == "S":
        data = np.char.decode(data)
    return data, np.ma.getmaskarray(col) if hasattr(col, "mask") else np.zeros(len(col), bool)


def assert_same(expected, got, columns=None, masks=True):
    columns = columns or expected.colnames
    assert [c for c in got.colnames if c in columns] == list(columns)
    for name in columns:
        (a, ma), (b, mb) = values(expected[name]), values(got[name])
        if masks:
            np.testing.assert_array_equal(ma, mb, err_msg=name)
        assert getattr(expected[name], "unit", None) == getattr(got[name], "unit", None) or not masks, name
        keep = ~ma
        if a.dtype.kind in "fc":
            assert np.array_equal(a[keep], b[keep], equal_nan=True), name
        else:
            assert (a[keep] == b[keep]).all(), name


def run(setup, input_path, output_path, **kwargs):
    options = dict(chunk_size=CHUNK, batch_size=BATCH, n_samples=N_SAMPLES, random_state=SEED, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusableRowsWarning)
        return predict_catalog(kwargs.pop("model", setup["model"]), input_path, output_path, **{**options, **kwargs})


@pytest.mark.parametrize("fmt", ["parquet", "fits", "hdf5", "ecsv", "csv"])
def test_each_format_reproduces_whole_catalog_predict(setup, fmt, tmp_path):
    source = write_catalog(setup, fmt)
    before = source.read_bytes()
    out = tmp_path / f"out.{SUFFIX[fmt]}"
    result = run(setup, source, out)
    assert result.complete and result.n_rows == len(setup["catalog"]) and result.n_chunks == 4
    assert result.n_unusable == 10
    assert source.read_bytes() == before  # the input is never modified
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary files left
    got = QTable.read(out, **({"path": "data"} if fmt == "hdf5" else {}))
    ref = setup["ref"]
    if fmt == "csv":  # CSV keeps neither units nor masks: compare the values of usable rows
        predicted = [c for c in ref.colnames if c.endswith(("_p16", "_p50", "_p84", "_prob"))]
        assert_same(ref[~ref["ood_score"].mask], got[~ref["ood_score"].mask], predicted, masks=False)
        return
    if fmt == "fits":  # FITS has no masked booleans: ood_flag is False (its fill value) on unusable rows
        assert not got["ood_flag"][ref["ood_flag"].mask].any()
        ref = ref[[c for c in ref.colnames if c != "ood_flag"]]
    assert_same(ref, got)
    if fmt == "fits":
        with fits.open(out) as hdul:
            hdul.verify("exception")
            assert hdul[1].header["NAXIS2"] == len(ref)


def test_resume_after_interruption_is_identical(setup, tmp_path, monkeypatch):
    source = write_catalog(setup, "fits")
    clean = tmp_path / "clean.ecsv"
    run(setup, source, clean)

    out = tmp_path / "resumed.ecsv"
    partial = run(setup, source, out, max_chunks=2)
    assert not partial.complete and partial.n_rows == 2 * CHUNK and not out.exists()
    state = json.loads((tmp_path / ".resumed.ecsv.progress.json").read_text())
    assert state["rows"] == 2 * CHUNK and state["identity"]["model_checksum"] == model_checksum(setup["model"])

    # a crash inside the next chunk leaves the completed chunks in place
    gp = GalaxyPosterior.load(setup["model"])
    original, calls = gp.predict, []

    def failing(*args, **kwargs):
        calls.append(kwargs["row_offset"])
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return original(*args, **kwargs)

    monkeypatch.setattr(gp, "predict", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(setup, source, out, model=gp)
    assert calls == [2 * CHUNK, 3 * CHUNK] and not out.exists()

    done = run(setup, source, out)
    assert done.complete and done.resumed_rows == 3 * CHUNK and done.n_rows == len(setup["catalog"])
    assert out.read_bytes() == clean.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.ecsv", "resumed.ecsv"]


def test_resume_parquet_with_samples_and_stale_progress(setup, tmp_path):
    source = write_catalog(setup, "parquet")
    out, samples = tmp_path / "out.parquet", tmp_path / "samples.h5"
    run(setup, source, out, samples_path=samples, max_chunks=1)
    # different settings: the stale progress is ignored and the run starts over
    with pytest.warns(UserWarning, match="ignoring the progress"):
        run(setup, source, out, samples_path=samples, random_state=SEED + 1, max_chunks=2)
    with pytest.warns(UserWarning, match="ignoring the progress"):  # samples_dtype changed the settings again
        result = run(setup, source, out, samples_path=samples, random_state=SEED + 1, samples_dtype="float32")
    assert result.resumed_rows == 0 and result.complete
    partial = run(setup, source, tmp_path / "again.parquet", samples_path=tmp_path / "again.h5", max_chunks=3)
    assert partial.n_rows == 3 * CHUNK
    result = run(setup, source, tmp_path / "again.parquet", samples_path=tmp_path / "again.h5")
    assert result.resumed_rows == 3 * CHUNK
    assert_same(setup["ref"], QTable.read(tmp_path / "again.parquet"))

    import h5py

    with h5py.File(tmp_path / "again.h5") as f:
        stored, usable = f["samples"][()], f["usable"][()]
        assert list(f["samples"].attrs["targets"]) == ["redshift", "log_mstar", "metallicity"]
        assert f["samples"].attrs["units"][1] == "dex(solMass)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusableRowsWarning)
        post = setup["gp"].sample(setup["catalog"], n_samples=N_SAMPLES, random_state=SEED, batch_size=BATCH)
    expected = np.stack([np.asarray(d.distribution.value) for d in post.values()], axis=-1)
    assert stored.shape == (len(setup["catalog"]), N_SAMPLES, 3)
    assert np.array_equal(stored, expected, equal_nan=True)
    assert np.array_equal(usable, post.usable)


def test_samples_as_parquet_columns_and_column_subset(setup, tmp_path):
    source = write_catalog(setup, "hdf5")
    out, samples = tmp_path / "out.fits", tmp_path / "samples.parquet"
    run(setup, source, out, samples_path=samples, columns=["objID", "ra"], chunk_size=256)
    got = QTable.read(out)
    assert got.colnames[:2] == ["objID", "ra"] and "modelMag_r" not in got.colnames
    # FITS has no masked booleans: ood_flag compared with its fill value on unusable rows
    assert_same(setup["ref"], got, ["objID", "ra", "log_mstar_p50", "metallicity_prob", "ood_score"])
    assert (np.asarray(got["ood_flag"]) == setup["ref"]["ood_flag"].filled()).all()
    table = QTable.read(samples)
    assert table["log_mstar"].shape == (len(setup["catalog"]), N_SAMPLES)
    assert table["log_mstar"].unit == u.dex(u.Msun)


def test_chunk_results_are_freed_as_the_run_goes(setup, tmp_path, monkeypatch):
    """Each chunk's prediction (astropy tables, which form reference cycles) is freed before the next chunk's.

    Not left to a later full garbage collection, which is rare in a process with many objects.
    """
    gp = GalaxyPosterior.load(setup["model"])
    predict, results = gp.predict, []

    def tracked(*args, **kwargs):
        alive = [i for i, ref in enumerate(results) if ref() is not None]
        assert not alive, f"the results of chunks {alive} are still in memory at chunk {len(results)}"
        result = predict(*args, **kwargs)
        results.append(weakref.ref(result))
        return result

    monkeypatch.setattr(gp, "predict", tracked)
    gc.collect()
    gc.disable()  # no automatic collection: only predict_catalog's own frees them
    try:
        done = run(setup, write_catalog(setup, "parquet"), tmp_path / "out.parquet", model=gp)
    finally:
        gc.enable()
    assert done.n_chunks == len(results) == 4


def test_errors(setup, tmp_path):
    source = write_catalog(setup, "parquet")
    existing = tmp_path / "exists.parquet"
    existing.write_bytes(b"x")
    with pytest.raises(FileExistsError, match="overwrite"):
        run(setup, source, existing)
    with pytest.raises(ValueError, match="multiple of batch_size"):
        run(setup, source, tmp_path / "o.parquet", chunk_size=100)
    with pytest.raises(FileNotFoundError):
        run(setup, tmp_path / "missing.parquet", tmp_path / "o.parquet")
    with pytest.raises(TableFormatError, match="suffix"):
        run(setup, source, tmp_path / "o.txt")
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(TableFormatError, match="cannot read"):
        run(setup, bad, tmp_path / "o.parquet")
    with pytest.raises(ValueError, match="is the input .*never modified"):
        run(setup, source, source, overwrite=True)
    with pytest.raises(KeyError, match="not in"):
        run(setup, source, tmp_path / "o.parquet", columns=["nope"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet", "exists.parquet"]


def test_chunked_io_roundtrip_keeps_units_masks_and_strings(tmp_path):
    t = QTable()
    n = 50
    t["name"] = [f"g{i}" for i in range(n)]
    t["i"] = MaskedColumn(np.arange(n), mask=np.arange(n) % 7 == 0)
    t["m"] = Masked(u.Dex(np.linspace(9, 11, n), u.dex(u.Msun)), mask=np.arange(n) >= 40)
    t["f"] = np.arange(n) * u.mag
    for suffix in ("parquet", "fits", "h5", "ecsv"):
        source = tmp_path / f"in.{suffix}"
        t.write(source, **({"path": "data", "serialize_meta": True} if suffix == "h5" else {}))
        chunks = list(iter_table_chunks(source, 16, start=3))
        assert [len(c) for c in chunks] == [16, 16, 15]
        out = tmp_path / f"out.{suffix}"
        writer = open_chunked_writer(out)
        for i, chunk in enumerate(chunks):
            writer.write(chunk)
            state = writer.checkpoint()
            if i == 0:  # continue in a new writer, as after an interruption
                writer.abort()
                writer = open_chunked_writer(out, state=state)
        writer.close()
        assert_same(t[3:], QTable.read(out))


def test_csv_chunks_keep_one_type_per_column(shared_data, tmp_path):
    """pandas types each CSV chunk apart: real SDSS IDs above 2**63 came out uint64 in some chunks and
    int64 in others, and the writer wrapped them negative; a string column all missing in one chunk
    came out float."""
    source = shared_data / "skyserver_samples" / "specphoto.csv"
    truth = [int(line.split(",")[0]) for line in source.read_text().splitlines()[1:] if line.strip()]
    header = source.read_text().splitlines()[0].split(",")
    assert header[0] == "specObjID" and sum(i >= 2**63 for i in truth) > 100
    chunks = list(iter_table_chunks(source, 5, columns=["specObjID", "z"]))
    assert {c["specObjID"].dtype for c in chunks} == {np.dtype(np.uint64)}
    for suffix in ("parquet", "h5", "fits", "csv"):
        out = tmp_path / f"ids.{suffix}"
        writer = open_chunked_writer(out)
        for chunk in chunks:
            writer.write(chunk)
        writer.close()
        got = np.concatenate([np.asarray(c["specObjID"]) for c in iter_table_chunks(out, 1000)])
        assert [int(v) for v in got] == truth, suffix
    strings = tmp_path / "s.csv"
    strings.write_text("id,name,x\n1,abc,.5\n2,de,1.5\n3,,2.5\n4,,3.5\n")
    parts = list(iter_table_chunks(strings, 2))
    assert [c["name"].dtype.kind for c in parts] == ["U", "U"]
    assert all(isinstance(c["name"], MaskedColumn) for c in parts) and parts[1]["name"].mask.all()


def test_parquet_nulls_are_nan_or_masked_in_every_chunk(tmp_path):
    """A null float is NaN, never 0.0; an integer column with a null anywhere is masked in every chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"z": pa.array([0.1, None, 0.3, 0.4]), "n": pa.array([1, 2, 3, None])}), path)
    chunks = list(iter_table_chunks(path, 2))
    np.testing.assert_array_equal(np.concatenate([np.asarray(c["z"]) for c in chunks]), [0.1, np.nan, 0.3, 0.4])
    assert all(isinstance(c["n"], MaskedColumn) for c in chunks)
    assert [list(c["n"].mask) for c in chunks] == [[False, False], [False, True]]
    out = tmp_path / "out.fits"
    writer = open_chunked_writer(out)
    for chunk in chunks:
        writer.write(chunk)
    writer.close()
    assert list(Table.read(out)["n"].mask) == [False, False, False, True]


# ------------------------------------------------ issue 12 items 4 and 5: two writers, CSV resume
def test_a_second_writer_of_one_output_stops(setup, tmp_path):
    source = write_catalog(setup, "parquet")
    out = tmp_path / "out.parquet"
    with output_lock(out), pytest.raises(OutputLockedError, match="another process is writing"):
        run(setup, source, out, random_state=1)  # while another run is writing it
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
    assert list(got["objID"]) == list(clean["objID"]) == list(setup["catalog"]["objID"])  # no row twice


def test_write_table_atomic_passes_an_hdf5_dataset_path(tmp_path):
    from astro_galpost.io import write_table_atomic

    write_table_atomic(Table({"a": [1, 2]}), tmp_path / "t.h5", path="posteriors", serialize_meta=True)
    assert list(Table.read(tmp_path / "t.h5", path="posteriors")["a"]) == [1, 2]


# ------------------------------------------------ audit 2: CSV integers, ECSV masks, Parquet types, multi-line CSV
def test_csv_integer_column_with_an_empty_field_stays_exact(tmp_path):
    """One empty field made pandas read 19-digit IDs as float64, rounding them; they stay exact and masked."""
    pytest.importorskip("pandas")
    n = 10
    ids = [1237648720693755918 + i for i in range(n)]
    big = [2**63 + 7 * i for i in range(n)]
    lines = ["id,big,x"] + [f"{a},{b},{i}.0" for i, (a, b) in enumerate(zip(ids, big))]
    lines[4] = f",{big[3]},"  # data row 3: id and x missing
    lines[8] = f"{ids[7]},,7.0"  # data row 7: big missing (in the second chunk)
    source = tmp_path / "ids.csv"
    source.write_text("\n".join(lines) + "\n")
    chunks = list(iter_table_chunks(source, 4))
    assert [c["id"].dtype for c in chunks] == [np.dtype(np.int64)] * 3
    assert [c["big"].dtype for c in chunks] == [np.dtype(np.uint64)] * 3
    assert all(isinstance(c["id"], MaskedColumn) and isinstance(c["big"], MaskedColumn) for c in chunks)
    got = np.ma.concatenate([c["id"] for c in chunks])
    assert list(np.flatnonzero(got.mask)) == [3]
    assert [int(v) for v in got.data[~got.mask]] == [v for i, v in enumerate(ids) if i != 3]
    got = np.ma.concatenate([c["big"] for c in chunks])
    assert list(np.flatnonzero(got.mask)) == [7]
    assert [int(v) for v in got.data[~got.mask]] == [v for i, v in enumerate(big) if i != 7]
    assert chunks[0]["x"].dtype == np.float64  # written "1.0": a float, whole or not
    assert np.isnan(chunks[0]["x"][3])


def test_ecsv_column_masked_after_the_first_chunk_is_masked_in_every_chunk(tmp_path):
    """An ECSV column whose first missing value is after the first chunk made Parquet/HDF5/FITS output fail."""
    n = 300
    t = Table()
    t["id"] = np.arange(n)
    t["flag"] = MaskedColumn(np.arange(n, dtype=np.int32), mask=np.arange(n) == 200)
    t["flag"].info.description = "a flag"
    source = tmp_path / "in.ecsv"
    t.write(source)
    chunks = list(iter_table_chunks(source, 128))
    assert all(isinstance(c["flag"], MaskedColumn) for c in chunks)
    assert all(c["flag"].info.description == "a flag" for c in chunks)
    assert not isinstance(chunks[0]["id"], MaskedColumn)
    formats = ["parquet", "fits", "ecsv"] + (["h5"] if _has("h5py") else [])
    for suffix in formats:
        out = tmp_path / f"out.{suffix}"
        writer = open_chunked_writer(out)
        for chunk in chunks:
            writer.write(chunk)
        writer.close()
        got = Table.read(out, **({"path": "data"} if suffix == "h5" else {}))
        assert list(np.flatnonzero(np.ma.getmaskarray(got["flag"]))) == [200], suffix
        assert list(np.asarray(got["flag"])[:200]) == list(range(200)), suffix


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_parquet_categoricals_are_read_and_odd_types_refused_up_front(setup, tmp_path, capsys):
    """pandas' categorical, datetime and list columns failed after the first chunk with an Arrow traceback."""
    pd = pytest.importorskip("pandas")
    from astro_galpost.cli import main

    frame = setup["catalog"][["objID"] + [c for c in setup["catalog"].colnames
                                          if c.startswith(("modelMag", "extinction"))]].to_pandas()
    frame["cat"] = pd.Categorical(["a", "bb"] * (len(frame) // 2))
    frame.to_parquet(tmp_path / "cat.parquet")
    chunks = list(iter_table_chunks(tmp_path / "cat.parquet", CHUNK))
    assert all(c["cat"].dtype.kind == "U" for c in chunks)
    assert list(np.concatenate([np.asarray(c["cat"]) for c in chunks])[:3]) == ["a", "bb", "a"]
    for name, values in {"ts": pd.date_range("2020", periods=len(frame), freq="h"),
                         "lst": [[1, 2]] * len(frame)}.items():
        odd = frame.drop(columns="cat").assign(**{name: values})
        path = tmp_path / f"{name}.parquet"
        odd.to_parquet(path)
        with pytest.raises(TableFormatError, match=f"column '{name}' .* cannot be read"):
            next(iter_table_chunks(path, CHUNK))
        assert len(next(iter_table_chunks(path, CHUNK, columns=["objID"]))) == CHUNK  # left out: fine
        out = tmp_path / f"{name}_out.parquet"
        assert main(["predict", str(setup["model"]), str(path), str(out), "--n-samples", "4",
                     "--batch-size", str(BATCH), "--no-progress"]) == 2
        assert f"column '{name}'" in capsys.readouterr().err and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.parquet", "lst.parquet", "ts.parquet"]


def test_csv_multiline_values_are_refused(tmp_path):
    """A quoted line break made a resumed run (rows skipped by lines) duplicate rows: refused, naming the row."""
    pytest.importorskip("pandas")
    source = tmp_path / "multi.csv"
    source.write_text('id,note\n1,plain\n2,"line1\nline2"\n3,plain\n')
    with pytest.raises(TableFormatError, match="'note' field of data row 2 holds a line break"):
        next(iter_table_chunks(source, 2))
