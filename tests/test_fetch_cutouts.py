"""Tests of astro_galpost.sdss.fetch_cutouts: per-galaxy SDSS cutouts, resumable.

Nothing here reaches SDSS except the ``remote_data`` test. The network is replaced at
astroquery's level: ``SDSS.get_images`` (and ``SDSS.query_crossid`` where a field must be
looked up) by a fake that hands out the REAL SDSS frames of field 2820/3/122 from the
shared data folder (``frame-{g,r,i}-002820-3-0122.fits.bz2``, decompressed once per module
and parsed per call with ``HDUList.fromstring`` as astroquery does), and raises what
astroquery raises (``urllib.error.HTTPError`` from astropy's downloader) for the fields
told to fail; one test runs the real ``SDSS.get_images`` and replaces only its download
(``astroquery.utils.commons.get_readable_fileobj``). The fetch / cache / cutout / manifest
logic of the package runs unchanged.

Positions used:

* rf0698, the RESOLVE galaxy at (38.385832, -0.075917), objID 1237666407922335897;
* an extended source at (38.354869, -0.038962), FWHM 6.7 px against the ~3 px PSF of the
  frame, i.e. a galaxy (found by segmenting the r frame; its ID here is made up);
* an SDSS spectroscopic galaxy at z = 0.61 at (38.26535, -0.21845), about 10 px from the
  frame edge (spec-4238-55455-0037 in SDSS_FIXTURE_SOURCES.md; ID made up): ``edge``;
* a position tagged as field 2820/3/122 but about 0.2 deg outside it: ``off_frame``;
* a position tagged as "field 2820/3/123", a field the fake makes fail. (When a test lets
  it recover, the fake serves the 2820/3/122 frames for it, which cover that position:
  only those frames exist in the shared data.)
"""

from __future__ import annotations

import argparse
import shutil
import urllib.error
from email.message import Message
from pathlib import Path

import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

pytest.importorskip("astroquery")
pytest.importorskip("photutils")

from astro_galpost.cli.sdss import add_fetch_cutouts_arguments, run_fetch_cutouts  # noqa: E402
from astro_galpost.sdss import CUTOUTS_MANIFEST_FILENAME, decode_objid, fetch_cutouts  # noqa: E402
from astro_galpost.sdss import retry as sdss_retry  # noqa: E402

SIZE = 64
RUN, CAMCOL, GOOD, BAD = 2820, 3, 122, 123
RF0698_ID = 1237666407922335897
GALAXY2_ID = 9000000000000000002  # made-up IDs: these are not SDSS objIDs
FAIL_ID = 9000000000000000003
OFF_ID = 9000000000000000004
EDGE_ID = 9000000000000000005
RETRIES = 2
IMAGE_URL = ("https://data.sdss.org/sas/dr17/eboss/photoObj/frames/301/{run}/{camcol}/"
             "frame-{band}-{run:06d}-{camcol}-{field:04d}.fits.bz2")


def _catalog(rows=("rf0698", "galaxy2", "fail", "off", "edge")) -> Table:
    known = {
        "rf0698": (RF0698_ID, 38.385832, -0.075917, GOOD),
        "galaxy2": (GALAXY2_ID, 38.354869, -0.038962, GOOD),
        "fail": (FAIL_ID, 38.30, -0.10, BAD),
        "off": (OFF_ID, 38.60, -0.076, GOOD),
        "edge": (EDGE_ID, 38.26535, -0.21845, GOOD),
    }
    values = [known[name] for name in rows]
    return Table({"objID": np.array([v[0] for v in values], dtype=np.uint64),
                  "ra": [v[1] for v in values], "dec": [v[2] for v in values],
                  "run": [RUN] * len(values), "rerun": [301] * len(values),
                  "camcol": [CAMCOL] * len(values), "field": [v[3] for v in values]})


@pytest.fixture(scope="module")
def frame_bytes(sdss_frame_bytes):
    """The real g, r, i frames of 2820/3/122, decompressed (once per session: bz2 takes seconds)."""
    return sdss_frame_bytes


@pytest.fixture()
def real_frames(frame_bytes):
    """Fresh HDULists of those frames, parsed as astroquery does (``HDUList.fromstring``)."""
    return {band: fits.HDUList.fromstring(data) for band, data in frame_bytes.items()}


class FakeSDSS:
    """Stands in for astroquery's network: ``SDSS.get_images`` and ``SDSS.query_crossid``.

    ``fail`` maps a field number to what asking for it raises: an exception instance, or
    a list of them used one per call (the last one repeats). ``serve`` maps field numbers to
    the field whose real frames are returned (only 2820/3/122 exists in the shared data).
    """

    def __init__(self, frame_bytes, fail=None, serve=None, crossid=None):
        self.frames = frame_bytes
        self.fail = dict(fail or {})
        self.serve = {GOOD: GOOD, **(serve or {})}
        self.crossid_rows = crossid
        self.calls: list[tuple[int, int, int, str]] = []
        self.crossid_calls = 0

    def get_images(self, *, coordinates=None, radius=None, matches=None, run=None, rerun=301,
                   camcol=None, field=None, band="g", timeout=None, cache=True,
                   get_query_payload=False, data_release=17, show_progress=True):
        assert coordinates is None, "fetch_cutouts must download by field"
        if matches is None:
            matches = Table({"run": [run], "rerun": [rerun], "camcol": [camcol], "field": [field]})
        out = []
        for row in matches:
            for b in band:  # astroquery loops over the characters of band too
                key = (int(row["run"]), int(row["camcol"]), int(row["field"]), b)
                self.calls.append(key)
                failure = self.fail.get(key[2])
                if isinstance(failure, list):
                    failure = failure.pop(0) if len(failure) > 1 else failure[0]
                if failure is not None:
                    raise failure
                source = self.serve.get(key[2])
                if source != GOOD or key[:2] != (RUN, CAMCOL):
                    raise _http_error(404, "Not Found", key)
                # a new HDUList per call from the same bytes, as astroquery's get_fits() does
                out.append(fits.HDUList.fromstring(self.frames[b]))
        return out

    def query_crossid(self, coordinates, *, radius=None, photoobj_fields=None, data_release=17,
                      timeout=None, cache=True, **kwargs):
        self.crossid_calls += 1
        assert {"run", "camcol", "field"} <= set(photoobj_fields)
        return None if self.crossid_rows is None else Table(rows=self.crossid_rows,
                                                            names=["ra", "dec", "run", "rerun",
                                                                   "camcol", "field"])

    def install(self, monkeypatch):
        from astroquery.sdss import SDSS

        monkeypatch.setattr(SDSS, "get_images", self.get_images)
        monkeypatch.setattr(SDSS, "query_crossid", self.query_crossid)
        monkeypatch.setattr(sdss_retry, "_sleep", lambda seconds: None)  # no real waiting
        return self


def _http_error(code: int, reason: str, key) -> urllib.error.HTTPError:
    """What astropy's downloader (under astroquery's FileContainer) raises."""
    url = IMAGE_URL.format(run=key[0], camcol=key[1], field=key[2], band=key[3])
    return urllib.error.HTTPError(url, code, reason, Message(), None)


def _unavailable():
    return _http_error(503, "Service Unavailable", (RUN, CAMCOL, BAD, "g"))


def _manifest(out: Path) -> Table:
    return Table.read(out / CUTOUTS_MANIFEST_FILENAME, format="ascii.ecsv")


def _status(manifest: Table) -> dict[int, str]:
    return {int(i): str(s) for i, s in zip(manifest["objID"], manifest["status"])}


def _partial_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".part")]


def _light_centre(image: np.ndarray) -> np.ndarray:
    """Centroid (x, y) of the central 15x15 pixels of a cutout plane."""
    from photutils.centroids import centroid_2dg

    n = image.shape[-1]
    lo = n // 2 - 7
    return np.asarray(centroid_2dg(np.nan_to_num(image[lo:lo + 15, lo:lo + 15]))) + lo


@pytest.fixture(scope="module")
def first_run(frame_bytes, tmp_path_factory):
    """One run over the five galaxies, field 123 answering HTTP 503 throughout."""
    out = tmp_path_factory.mktemp("cutouts") / "run"
    fake = FakeSDSS(frame_bytes, fail={BAD: _unavailable()})
    with pytest.MonkeyPatch.context() as mp:
        fake.install(mp)  # first: importing astroquery installs its own warning logger
        with pytest.warns(AstropyUserWarning, match="retry") as caught:
            manifest = fetch_cutouts(_catalog(), out, size=SIZE, retries=RETRIES, progress=False)
    return out, manifest, fake, caught


# --------------------------------------------------------------------------------------
# one run
# --------------------------------------------------------------------------------------

class TestFirstRun:
    def test_statuses_and_recorded_failure(self, first_run):
        out, manifest, _, _ = first_run
        assert _status(manifest) == {RF0698_ID: "ok", GALAXY2_ID: "ok", FAIL_ID: "failed",
                                     OFF_ID: "off_frame", EDGE_ID: "edge"}
        failed = manifest[manifest["objID"] == FAIL_ID][0]
        assert "503" in failed["error"] and "2820/3/123" in failed["error"]
        assert failed["file"] == ""
        off = manifest[manifest["objID"] == OFF_ID][0]
        assert "not on the frames" in off["error"] and off["file"] == ""
        # the file on disk says the same as the returned table
        on_disk = _manifest(out)
        assert _status(on_disk) == _status(manifest)
        assert on_disk["objID"].dtype == np.uint64
        assert list(on_disk["run"]) == [RUN] * 5 and list(on_disk["camcol"]) == [CAMCOL] * 5
        assert on_disk.meta["size"] == str(SIZE) and on_disk.meta["bands"] == "g,r,i"
        assert not _partial_files(out)

    def test_one_file_per_good_galaxy(self, first_run):
        out, manifest, _, _ = first_run
        files = sorted(p.name for p in (out / "cutouts").iterdir())
        assert files == sorted(f"{i}.fits" for i in (RF0698_ID, GALAXY2_ID, EDGE_ID))
        for row in manifest:
            if row["status"] in ("ok", "edge"):
                assert (out / row["file"]).is_file()

    @pytest.mark.parametrize("objid", [RF0698_ID, GALAXY2_ID])
    def test_cutout_file_centred(self, first_run, objid):
        out, manifest, _, _ = first_run
        with fits.open(out / "cutouts" / f"{objid}.fits") as hdul:
            cube, mask, header = hdul[0].data, hdul["MASK"].data, hdul[0].header
            assert cube.shape == (3, SIZE, SIZE) and cube.dtype.kind == "f"
            assert mask.shape == (3, SIZE, SIZE) and not mask.any() and np.isfinite(cube).all()
            row = manifest[manifest["objID"] == objid][0]
            assert header["OBJID"] == objid
            assert header["RA"] == pytest.approx(row["ra"]) and header["DEC"] == pytest.approx(row["dec"])
            assert header["BANDS"] == "g,r,i"
            assert [header[f"BAND{k}"] for k in (1, 2, 3)] == ["g", "r", "i"]
            field = (header["RUN"], header["RERUN"], header["CAMCOL"], header["FIELD"])
            assert field == (RUN, 301, CAMCOL, GOOD)
            assert header["DR"] == 17 and header["BUNIT"] == "nanomaggy"
            assert not header["EDGE"] and not header["CENFAIL"] and header["SHIFT"] < 1.5
            centre = (SIZE - 1) / 2
            assert abs(header["X_CEN"] - centre) <= 0.5 and abs(header["Y_CEN"] - centre) <= 0.5
            # the galaxy's light is centred in every band (within 1 px of the cutout centre)
            for plane in cube:
                np.testing.assert_allclose(_light_centre(plane), [centre, centre], atol=1.0)
                core = plane[SIZE // 2 - 3:SIZE // 2 + 3, SIZE // 2 - 3:SIZE // 2 + 3]
                assert core.mean() > 10 * np.abs(np.median(plane))  # bright above the sky
            # the WCS written with the cutout puts the refined centre where the header says
            wcs = WCS(header).celestial
            sky = wcs.pixel_to_world(header["X_CEN"], header["Y_CEN"])
            assert sky.separation(SkyCoord(header["RA_CEN"], header["DEC_CEN"], unit="deg")).arcsec < 0.01
            catalogue = SkyCoord(header["RA"], header["DEC"], unit="deg")
            assert sky.separation(catalogue).arcsec < 1.5 * 0.396

    def test_edge_galaxy(self, first_run):
        out, _, _, _ = first_run
        with fits.open(out / "cutouts" / f"{EDGE_ID}.fits") as hdul:
            cube, mask, header = hdul[0].data, hdul["MASK"].data.astype(bool), hdul[0].header
        assert header["EDGE"] and 0 < header["FRACMASK"] < 1
        assert mask.any() and not mask.all()
        assert np.isnan(cube[mask]).all() and np.isfinite(cube[~mask]).all()

    def test_each_frame_downloaded_once(self, first_run):
        out, _, fake, caught = first_run
        good = [c for c in fake.calls if c[2] == GOOD]
        assert sorted(good) == sorted((RUN, CAMCOL, GOOD, b) for b in "gri")  # once per band
        # the failing field: g tried 1 + RETRIES times, then the field is given up
        assert [c for c in fake.calls if c[2] == BAD] == [(RUN, CAMCOL, BAD, "g")] * (1 + RETRIES)
        retries = [w for w in caught if "retry" in str(w.message)]
        assert len(retries) == RETRIES and "503" in str(retries[0].message)
        # frames cached as SDSS serves them (bzip2), nothing else in the cache
        cached = sorted(p.name for p in (out / "frames").iterdir())
        assert cached == [f"frame-{b}-002820-3-0122.fits.bz2" for b in "gir"]
        for name in cached:
            assert (out / "frames" / name).read_bytes()[:3] == b"BZh"


# --------------------------------------------------------------------------------------
# resuming
# --------------------------------------------------------------------------------------

def _copy(first_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(first_run[0], out)
    return out


def test_rerun_requests_only_the_failed(first_run, frame_bytes, tmp_path, monkeypatch):
    out = _copy(first_run, tmp_path)
    done = {i: (out / "cutouts" / f"{i}.fits").stat().st_mtime_ns for i in (RF0698_ID, GALAXY2_ID)}
    # field 123 answers now (with the only real frames there are: a transport stand-in)
    fake = FakeSDSS(frame_bytes, serve={BAD: GOOD}).install(monkeypatch)
    manifest = fetch_cutouts(_catalog(), out, size=SIZE, retries=RETRIES, progress=False,
                             compress_frames=False)  # cached as plain FITS: faster to write
    assert sorted(fake.calls) == sorted((RUN, CAMCOL, BAD, b) for b in "gri")
    assert (out / "frames" / "frame-r-002820-3-0123.fits").is_file()
    assert _status(manifest) == {RF0698_ID: "ok", GALAXY2_ID: "ok", FAIL_ID: "ok",
                                 OFF_ID: "off_frame", EDGE_ID: "edge"}
    assert manifest[manifest["objID"] == FAIL_ID][0]["error"] == ""
    assert (out / "cutouts" / f"{FAIL_ID}.fits").is_file()
    for objid, mtime in done.items():  # finished cutouts were not rewritten
        assert (out / "cutouts" / f"{objid}.fits").stat().st_mtime_ns == mtime
    # a third run has nothing to do
    fake.calls.clear()
    again = fetch_cutouts(_catalog(), out, size=SIZE, progress=False)
    assert fake.calls == [] and _status(again) == _status(manifest)


def test_missing_cutout_redone_from_cached_frames(first_run, frame_bytes, tmp_path, monkeypatch):
    out = _copy(first_run, tmp_path)
    (out / "cutouts" / f"{GALAXY2_ID}.fits").unlink()
    fake = FakeSDSS(frame_bytes, fail={GOOD: RuntimeError("no download expected")}).install(monkeypatch)
    manifest = fetch_cutouts(_catalog(), out, size=SIZE, progress=False, retry_failed=False)
    assert fake.calls == []  # the frames came from out/frames
    status = _status(manifest)
    assert status[GALAXY2_ID] == "ok" and status[FAIL_ID] == "failed"  # not retried on request
    with fits.open(out / "cutouts" / f"{GALAXY2_ID}.fits") as hdul:
        assert hdul[0].data.shape == (3, SIZE, SIZE)


def test_cutout_written_before_the_manifest_is_kept(first_run, frame_bytes, tmp_path, monkeypatch):
    out = _copy(first_run, tmp_path)
    # as if the process died after writing the cutout but before recording it
    manifest = _manifest(out)
    manifest["status"][manifest["objID"] == RF0698_ID] = "pending"
    manifest.write(out / CUTOUTS_MANIFEST_FILENAME, format="ascii.ecsv", overwrite=True)
    fake = FakeSDSS(frame_bytes, fail={GOOD: RuntimeError("no download expected")}).install(monkeypatch)
    result = fetch_cutouts(_catalog(), out, size=SIZE, progress=False, retry_failed=False)
    assert fake.calls == []
    row = result[result["objID"] == RF0698_ID][0]
    assert row["status"] == "ok" and row["file"] == f"cutouts/{RF0698_ID}.fits"
    assert row["x_cutout"] == pytest.approx(first_run[1][0]["x_cutout"])


def test_other_options_refused(first_run):
    with pytest.raises(ValueError, match="other options"):
        fetch_cutouts(_catalog(), first_run[0], size=32, progress=False)
    with pytest.raises(ValueError, match="other options"):
        fetch_cutouts(_catalog(), first_run[0], size=SIZE, bands="gr", progress=False)


# --------------------------------------------------------------------------------------
# interruptions
# --------------------------------------------------------------------------------------

def test_interrupted_in_second_field(frame_bytes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    catalog = _catalog(("rf0698", "galaxy2", "fail"))  # field 122 first, then 123
    fake = FakeSDSS(frame_bytes, fail={BAD: KeyboardInterrupt()}).install(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        fetch_cutouts(catalog, out, size=SIZE, progress=False, compress_frames=False)
    assert not _partial_files(out)
    assert _status(_manifest(out)) == {RF0698_ID: "ok", GALAXY2_ID: "ok", FAIL_ID: "pending"}
    assert sorted(p.name for p in (out / "cutouts").iterdir()) == [f"{RF0698_ID}.fits", f"{GALAXY2_ID}.fits"]
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        f"frame-{b}-002820-3-0122.fits" for b in "gir"]  # plain FITS when asked
    # resume: field 122 is neither downloaded nor cut again
    fake.calls.clear()
    fake.fail.clear()
    fake.serve[BAD] = GOOD
    manifest = fetch_cutouts(catalog, out, size=SIZE, progress=False, compress_frames=False)
    assert sorted(fake.calls) == sorted((RUN, CAMCOL, BAD, b) for b in "gri")
    assert set(_status(manifest).values()) == {"ok"}


def test_interrupted_while_writing_a_cutout(frame_bytes, tmp_path, monkeypatch):
    out = tmp_path / "run"
    catalog = _catalog(("rf0698", "galaxy2"))
    fake = FakeSDSS(frame_bytes).install(monkeypatch)
    original = fits.HDUList.writeto
    written = []

    def writeto(self, fileobj, *args, **kwargs):
        if isinstance(fileobj, str | Path) and Path(fileobj).parent.name == "cutouts":
            written.append(fileobj)
            if len(written) == 2:  # the second cutout: half a file, then Ctrl-C
                Path(fileobj).write_bytes(b"SIMPLE  =                    T" + b" " * 1000)
                raise KeyboardInterrupt
        return original(self, fileobj, *args, **kwargs)

    monkeypatch.setattr(fits.HDUList, "writeto", writeto)
    with pytest.raises(KeyboardInterrupt):
        fetch_cutouts(catalog, out, size=SIZE, progress=False, keep_frames=False)
    assert Path(written[1]).name.endswith(".part")  # it was writing a temporary file
    assert not _partial_files(out)
    assert [p.name for p in (out / "cutouts").iterdir()] == [f"{RF0698_ID}.fits"]
    assert _status(_manifest(out)) == {RF0698_ID: "ok", GALAXY2_ID: "pending"}
    assert not (out / "frames").exists()  # keep_frames=False
    monkeypatch.setattr(fits.HDUList, "writeto", original)
    fake.calls.clear()
    manifest = fetch_cutouts(catalog, out, size=SIZE, progress=False, keep_frames=False)
    assert set(_status(manifest).values()) == {"ok"}
    assert len(fake.calls) == 3  # field 122 again (its frames were not kept), once per band


# --------------------------------------------------------------------------------------
# finding the field
# --------------------------------------------------------------------------------------

def test_decode_objid():
    fields = decode_objid(RF0698_ID)  # rf0698 is primary in Stripe 82 run 4874
    assert (fields["run"], fields["rerun"], fields["camcol"], fields["field"]) == (4874, 301, 3, 677)
    assert fields["sky_version"] == 2 and fields["obj"] == 153
    assert decode_objid(str(RF0698_ID)) == fields
    for bad in (0, -5, 2**63 + 1, 7, 1.2376664e18):
        with pytest.raises(ValueError):
            decode_objid(bad)


def test_field_from_objid_or_crossid(frame_bytes, tmp_path, monkeypatch):
    rf0698 = (38.385832, -0.075917)
    crossid = [(38.3858319, -0.0759171, RUN, 301, CAMCOL, GOOD)]  # SkyServer's answer
    fake = FakeSDSS(frame_bytes, crossid=crossid).install(monkeypatch)
    catalog = Table({
        "name": ["rf0698", "rf0698_objid", "nowhere"],
        "objID": MaskedColumn(np.array([0, RF0698_ID, 0], dtype=np.uint64), mask=[True, False, True]),
        "RA": [rf0698[0], rf0698[0], 10.0], "DEC": [rf0698[1], rf0698[1], 10.0],
    })
    manifest = fetch_cutouts(catalog, tmp_path / "run", size=32, id_column="name",
                             progress=False, keep_frames=False)
    rows = {str(r["name"]): r for r in manifest}
    # no run/camcol/field: looked up by position (one batched cross-match call)
    assert fake.crossid_calls == 1
    assert rows["rf0698"]["status"] == "ok"
    assert (rows["rf0698"]["run"], rows["rf0698"]["camcol"], rows["rf0698"]["field"]) == (RUN, CAMCOL, GOOD)
    assert (tmp_path / "run" / "cutouts" / "rf0698.fits").is_file()
    # decoded from the objID: its primary field 4874/3/677, which (here) is not served: 404,
    # a permanent error, so no retries
    assert (rows["rf0698_objid"]["run"], rows["rf0698_objid"]["field"]) == (4874, 677)
    assert rows["rf0698_objid"]["status"] == "failed" and "404" in rows["rf0698_objid"]["error"]
    assert [c for c in fake.calls if c[0] == 4874] == [(4874, 3, 677, "g")]
    assert rows["nowhere"]["status"] == "failed"
    assert "no SDSS photometric object" in rows["nowhere"]["error"]


def test_default_transport_through_astroquery(frame_bytes, tmp_path, monkeypatch):
    """The real ``SDSS.get_images`` runs; only its download (astroquery's own
    monkeypatch point ``commons.get_readable_fileobj``) is served from the shared frames."""
    import contextlib
    import io

    from astroquery.utils import commons

    served = {IMAGE_URL.format(run=RUN, camcol=CAMCOL, field=GOOD, band=b): b for b in "gri"}
    files = frame_bytes  # astropy's downloader hands out the .bz2 decompressed
    requested = []

    @contextlib.contextmanager
    def get_readable_fileobj(url, *, encoding=None, cache=True, **kwargs):
        requested.append((url, encoding, cache))
        if url not in served:
            raise urllib.error.HTTPError(url, 404, "Not Found", Message(), None)
        yield io.BytesIO(files[served[url]])

    monkeypatch.setattr(commons, "get_readable_fileobj", get_readable_fileobj)
    manifest = fetch_cutouts(_catalog(("rf0698", "fail")), tmp_path, size=32, progress=False,
                             keep_frames=False)
    assert _status(manifest) == {RF0698_ID: "ok", FAIL_ID: "failed"}
    assert "404" in manifest["error"][1]
    # one request per frame, straight to the DR17 file (no SkyServer query first), no
    # astroquery cache (fetch_cutouts keeps its own); the 404 is not retried
    assert requested == [(url, "binary", False) for url in served] + [
        (IMAGE_URL.format(run=RUN, camcol=CAMCOL, field=BAD, band="g"), "binary", False)]


def test_frames_with_loaded_tables_are_cached(real_frames, tmp_path):
    def get_frames(*, band, **kwargs):
        hdul = real_frames[band]
        for hdu in hdul:
            hdu.data  # noqa: B018 - loads the tables too, on read-only memory
        return hdul

    manifest = fetch_cutouts(_catalog(("rf0698",)), tmp_path, size=32, get_frames=get_frames,
                             compress_frames=False, progress=False)
    assert manifest["status"][0] == "ok"
    with fits.open(tmp_path / "frames" / "frame-i-002820-3-0122.fits") as cached:
        assert len(cached) == len(real_frames["i"]) == 4
        np.testing.assert_array_equal(cached[0].data, real_frames["i"][0].data)
        np.testing.assert_array_equal(cached[2].data["ALLSKY"], real_frames["i"][2].data["ALLSKY"])
        assert cached[3].data["FIELD"][0] == GOOD  # the astrometry table came along


def test_without_background_subtraction_and_in_another_band_order(real_frames, tmp_path):
    """subtract_background=False once failed every galaxy (a NaN in the header); planes in i, r, g
    order load back as g, r, i."""
    from astro_galpost.images import load_images

    def get_frames(*, band, **kwargs):
        return real_frames[band]

    plain = fetch_cutouts(_catalog(("rf0698",)), tmp_path / "plain", size=32, get_frames=get_frames,
                          subtract_background=False, progress=False)
    assert plain["status"][0] == "ok"
    path = tmp_path / "plain" / "cutouts" / f"{RF0698_ID}.fits"
    assert fits.getheader(path)["BKG_G"] is None  # FITS's undefined value: nothing removed
    reordered = fetch_cutouts(_catalog(("rf0698",)), tmp_path / "irg", size=32, bands="irg",
                              reference_band="g", get_frames=get_frames, subtract_background=False,
                              progress=False)
    assert reordered["status"][0] == "ok"
    np.testing.assert_allclose(load_images([tmp_path / "irg" / "cutouts" / f"{RF0698_ID}.fits"]),
                               load_images([path]))


def test_get_frames_injection_and_wrong_frame(real_frames, tmp_path):
    asked = []

    def get_frames(*, run, rerun, camcol, field, band, data_release):
        asked.append((run, rerun, camcol, field, band, data_release))
        return real_frames["r"]  # whatever band is asked for: a broken transport

    manifest = fetch_cutouts(_catalog(("rf0698",)), tmp_path, size=32, data_release=16,
                             get_frames=get_frames, progress=False)
    assert asked == [(RUN, 301, CAMCOL, GOOD, "g", 16)]
    assert manifest["status"][0] == "failed"
    assert "FILTER = 'r'" in manifest["error"][0] and not any((tmp_path / "frames").iterdir())


def test_shared_frame_cache_keeps_fresh_temporary_files(tmp_path):
    import os
    import time

    cache = tmp_path / "shared_frames"
    cache.mkdir()
    fresh = cache / ".frame-g-000001-1-0001.fits.bz2.k2x_9abc.part"
    stale = cache / ".frame-g-000002-1-0001.fits.bz2.q7w1e5rt.part"
    users = cache / ".my_download.part"  # not of the form of the package's temporary names
    for path in (fresh, stale, users):
        path.write_bytes(b"partial")
    old = time.time() - 7200
    for path in (stale, users):
        os.utime(path, (old, old))

    def get_frames(**kwargs):
        raise LookupError("no such frame")

    manifest = fetch_cutouts(_catalog(("rf0698",)), tmp_path / "run", frame_cache=cache,
                             get_frames=get_frames, progress=False)
    assert fresh.exists() and not stale.exists()  # another process may be writing `fresh`
    assert users.exists()
    assert manifest["status"][0] == "failed" and "LookupError: no such frame" in manifest["error"][0]


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no 'objID' column"):
        fetch_cutouts(Table({"ra": [1.0], "dec": [2.0]}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="not unique"):
        fetch_cutouts(Table({"objID": [1, 1], "ra": [1.0, 2.0], "dec": [2.0, 3.0]}), tmp_path)
    with pytest.raises(ValueError, match="bands"):
        fetch_cutouts(_catalog(), tmp_path, bands="gry")
    with pytest.raises(ValueError, match="size"):
        fetch_cutouts(_catalog(), tmp_path, size=2)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------

def test_cli(frame_bytes, tmp_path, monkeypatch, capsys):
    catalog = tmp_path / "galaxies.ecsv"
    _catalog(("rf0698", "galaxy2", "fail")).write(catalog)
    fake = FakeSDSS(frame_bytes, fail={BAD: _http_error(404, "Not Found", (RUN, CAMCOL, BAD, "g"))})
    fake.install(monkeypatch)
    parser = add_fetch_cutouts_arguments(argparse.ArgumentParser())
    out = tmp_path / "cut"
    args = parser.parse_args([str(catalog), "--out", str(out), "--size", "48", "--bands", "g,r,i",
                              "--no-keep-frames", "--no-progress"])
    assert run_fetch_cutouts(args) == 1  # one galaxy failed
    captured = capsys.readouterr()
    assert "3 galaxies: 2 ok, 1 failed" in captured.out and "again" in captured.err
    with fits.open(out / "cutouts" / f"{RF0698_ID}.fits") as hdul:
        assert hdul[0].data.shape == (3, 48, 48)
    fake.fail.clear()
    fake.serve[BAD] = GOOD
    assert run_fetch_cutouts(args) == 0
    assert "3 galaxies: 3 ok" in capsys.readouterr().out
    bad = parser.parse_args([str(catalog), "--out", str(out), "--size", "32", "--no-progress"])
    assert run_fetch_cutouts(bad) == 2  # an input error
    err = capsys.readouterr().err
    assert "galpost fetch-cutouts: error:" in err and "other options" in err
    assert run_fetch_cutouts(parser.parse_args([str(tmp_path), "--out", str(out), "--no-progress"])) == 2
    assert "is a folder, not a file" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# live
# --------------------------------------------------------------------------------------

@pytest.mark.remote_data
def test_live_rf0698(tmp_path):
    manifest = fetch_cutouts(_catalog(("rf0698",)), tmp_path, size=32, progress=False, retries=2)
    assert list(manifest["status"]) == ["ok"], list(manifest["error"])
    with fits.open(tmp_path / manifest["file"][0]) as hdul:
        assert hdul[0].data.shape == (3, 32, 32)
        assert abs(hdul[0].header["X_CEN"] - 15.5) <= 0.5
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == [
        f"frame-{b}-002820-3-0122.fits.bz2" for b in "gir"]
