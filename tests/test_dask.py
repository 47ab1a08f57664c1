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
