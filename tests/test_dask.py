"""`astro_galpost.io.predict_dask` on a real multi-process LocalCluster gives the in-process result."""

import warnings

import numpy as np
import pytest
import torch
from astropy.table import QTable

from astro_galpost import UnusableRowsWarning

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

N_SAMPLES, SEED, BATCH = 12, 7, 64


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes, created once for this module."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def setup(mock_table, tiny_posterior, tmp_path_factory):
    root = tmp_path_factory.mktemp("dask")
    gp = tiny_posterior
    gp.save(root / "model")
    catalog = QTable(mock_table[300:], copy=True)
    catalog.meta = {}
    catalog["modelMag_r"][50:60] = np.nan  # with modelMag_u/g/i also missing: unusable
    for band in "ugi":
        catalog[f"modelMag_{band}"][50:60] = np.nan
    catalog.write(root / "catalog.parquet")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the workers
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnusableRowsWarning)
            ref = gp.predict(catalog, n_samples=N_SAMPLES, random_state=SEED, batch_size=BATCH)
    finally:
        torch.set_num_threads(threads)
    assert ref["ood_score"].mask[50:60].all()
    return {"root": root, "model": root / "model", "gp": gp, "catalog": catalog, "ref": ref}


def assert_matches(ref, frame):
    predicted = ref.colnames[ref.colnames.index("redshift_p16"):-1]  # the new columns but ood_flag
    assert predicted and set(predicted) <= set(frame.columns)
    for name in predicted:
        col = ref[name]
        expected = np.where(col.mask, np.nan, np.asarray(col.unmasked.value))
        assert np.array_equal(expected, frame[name].to_numpy(), equal_nan=True), name
    assert np.array_equal(np.asarray(ref["ood_flag"]), frame["ood_flag"].to_numpy())


def test_parquet_path_equals_local_predict(client, setup):
    from astro_galpost.io import frame_to_table, predict_dask

    result = predict_dask(setup["model"], setup["root"] / "catalog.parquet", n_samples=N_SAMPLES,
                          random_state=SEED, batch_size=BATCH, client=client, columns=["objID", "ra"])
    frame = result.compute()
    assert list(frame.columns[:2]) == ["objID", "ra"] and len(frame) == len(setup["ref"])
    assert_matches(setup["ref"], frame)
    assert frame.attrs["units"]["log_mstar_p50"] == "dex(solMass)"
    table = frame_to_table(frame)
    assert table["log_mstar_p50"].unit == setup["ref"]["log_mstar_p50"].unit
    assert np.array_equal(table["log_mstar_p50"].mask, setup["ref"]["log_mstar_p50"].mask)
    loads = client.run(lambda: __import__("astro_galpost.io.dask", fromlist=["_LOADS"])._LOADS["count"])
    assert all(n <= 1 for n in loads.values())  # each worker loaded the model at most once


def test_unaligned_partitions_are_regrouped(client, setup):
    from astro_galpost.io import predict_dask

    frame = setup["catalog"].to_pandas()
    ddf = dd.from_pandas(frame, npartitions=3)  # 134/133/133 rows: not multiples of 64
    result = predict_dask(setup["gp"], ddf, n_samples=N_SAMPLES, random_state=SEED, batch_size=BATCH,
                          client=client)
    assert result.npartitions == 3  # regrouped into partitions of 192 rows
    out = result.compute()
    assert (out.index.to_numpy() == frame.index.to_numpy()).all()
    assert_matches(setup["ref"], out)
    loads = client.run(lambda: __import__("astro_galpost.io.dask", fromlist=["_LOADS"])._LOADS["count"])
    assert all(n <= 2 for n in loads.values())  # one per model (two models in this module)


def test_cli_dask_scheduler_address(client, setup, tmp_path):
    from astro_galpost.cli import main

    out = tmp_path / "out.parquet"
    address = client.scheduler.address
    assert main(["predict", str(setup["model"]), str(setup["root"] / "catalog.parquet"), str(out),
                 "--dask", address, "--n-samples", str(N_SAMPLES), "--seed", str(SEED),
                 "--batch-size", str(BATCH), "--no-progress"]) == 0
    got = QTable.read(out)
    ref = setup["ref"]
    assert got["log_mstar_p50"].unit == ref["log_mstar_p50"].unit
    assert np.array_equal(got["log_mstar_p50"].mask, ref["log_mstar_p50"].mask)
    keep = ~ref["log_mstar_p50"].mask
    assert np.array_equal(got["log_mstar_p50"].unmasked.value[keep], ref["log_mstar_p50"].unmasked.value[keep])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]


def test_hats_catalog_needs_lsdb(setup, tmp_path):
    from astro_galpost.io import read_catalog

    hats = tmp_path / "hats"
    hats.mkdir()
    (hats / "properties").write_text("dataproduct_type=object\n")
    try:
        import lsdb  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="lsdb"):
            read_catalog(hats)
    else:  # pragma: no cover - only where lsdb is installed
        pytest.skip("lsdb is installed; reading a real HATS catalog is not tested here")


# ------------------------------------------------ audit 2: dataset folders, CLI output, lock, replace-columns
def test_parquet_dataset_folder_keeps_every_row(client, setup, tmp_path):
    """dask fuses the files of a dataset when one column is read: lengths taken that way lost rows."""
    from astro_galpost.io import predict_dask

    folder = tmp_path / "dataset"
    folder.mkdir()
    frame = setup["catalog"].to_pandas()
    for k in range(4):  # 4 files of 100 rows
        frame.iloc[100 * k:100 * (k + 1)].to_parquet(folder / f"part.{k}.parquet")
    out = predict_dask(setup["model"], folder, n_samples=N_SAMPLES, random_state=SEED, batch_size=BATCH,
                       client=client).compute()
    assert len(out) == len(setup["ref"]) == 400
    assert list(out["objID"]) == list(frame["objID"])
    assert_matches(setup["ref"], out)


def dask_catalog(setup, root):
    """The catalog with a description, table meta, a bytes column and an integer column masked in one row."""
    from astropy.table import MaskedColumn

    catalog = QTable(setup["catalog"], copy=True)
    catalog = catalog[["objID", "ra"] + [c for c in catalog.colnames if c.startswith(("modelMag", "extinction"))]]
    catalog["ra"].info.description = "Right ascension"
    catalog["tag"] = np.array([f"b{i % 7}".encode() for i in range(len(catalog))], dtype="S")
    catalog["mint"] = MaskedColumn(np.arange(len(catalog), dtype=np.int32), mask=np.arange(len(catalog)) == 5)
    catalog.meta = {"origin": "test"}
    path = root / "described.parquet"
    catalog.write(path)
    return catalog, path


def cli_args(setup, source, out, *extra):
    return ["predict", str(setup["model"]), str(source), str(out), "--n-samples", str(N_SAMPLES), "--seed",
            str(SEED), "--batch-size", str(BATCH), "--no-progress", *extra]


@pytest.mark.filterwarnings("ignore::astro_galpost.UnusableRowsWarning")
def test_cli_dask_output_equals_serial_output(client, setup, tmp_path):
    """Units, descriptions, masks, bytes and meta of the carried and output columns, as the serial command."""
    from astro_galpost.cli import main

    _, source = dask_catalog(setup, tmp_path)
    serial, dask_out = tmp_path / "serial.parquet", tmp_path / "dask.parquet"
    assert main(cli_args(setup, source, serial)) == 0
    assert main(cli_args(setup, source, dask_out, "--dask", client.scheduler.address)) == 0
    a, b = QTable.read(serial), QTable.read(dask_out)
    assert a.colnames == b.colnames and "mint.mask" not in b.colnames
    assert a.meta == b.meta == {"origin": "test"}
    for name in a.colnames:
        x, y = a[name], b[name]
        assert type(x) is type(y) and x.dtype == y.dtype, name
        assert getattr(x, "unit", None) == getattr(y, "unit", None), name
        assert x.info.description == y.info.description, name
        assert np.array_equal(np.ma.getmaskarray(x), np.ma.getmaskarray(y)), name
        keep = ~np.ma.getmaskarray(x)
        xv, yv = (np.asarray(getattr(getattr(c, "unmasked", c), "value", getattr(c, "unmasked", c))) for c in (x, y))
        assert np.array_equal(xv[keep], yv[keep], equal_nan=xv.dtype.kind == "f"), name
    assert b["ra"].info.description == "Right ascension" and b["tag"].dtype.kind == "S"
    assert list(np.flatnonzero(b["mint"].mask)) == [5]


@pytest.mark.filterwarnings("ignore::astro_galpost.UnusableRowsWarning")
def test_cli_dask_holds_the_output_lock_and_replaces_columns(client, setup, tmp_path, capsys):
    from astro_galpost.cli import main
    from astro_galpost.utils.atomic import output_lock

    _, source = dask_catalog(setup, tmp_path)
    out = tmp_path / "out.parquet"
    address = client.scheduler.address
    with output_lock(out):  # as a running `galpost predict` holds it
        assert main(cli_args(setup, source, out, "--dask", address)) == 2
    assert "another process is writing" in capsys.readouterr().err and not out.exists()
    clash = tmp_path / "clash.parquet"
    predicted = QTable.read(source)
    predicted["redshift_p50"] = np.full(len(predicted), 9.0)
    predicted.write(clash)
    assert main(cli_args(setup, clash, out, "--dask", address)) == 2
    assert "--replace-columns" in capsys.readouterr().err
    assert main(cli_args(setup, clash, out, "--dask", address, "--replace-columns")) == 0
    got = QTable.read(out)
    assert got.colnames.count("redshift_p50") == 1
    ref = setup["ref"]["redshift_p50"]
    assert np.array_equal(got["redshift_p50"].mask, ref.mask)
    assert np.array_equal(got["redshift_p50"].unmasked.value[~ref.mask], ref.unmasked.value[~ref.mask])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clash.parquet", "described.parquet", "out.parquet"]
