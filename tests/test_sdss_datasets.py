"""Tests of astro_galpost.sdss and astro_galpost.cli.sdss: SQL, resumable SkyServer paging, catalogue reading.

Nothing here reaches SDSS except the ``remote_data`` test. SkyServer is replaced at
astroquery's HTTP layer (``SDSS._request``) by a fake that answers the SQL it is sent
(``TOP n`` and the ``specObjID > last`` keyset clause) with CSV text in SkyServer's
format (a ``#Table1`` line, then the header), so astroquery's own parsing runs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sqlite3
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import requests
from astropy.table import MaskedColumn, Table
from astropy.utils.exceptions import AstropyUserWarning

from astro_galpost.cli.sdss import add_fetch_arguments, run_fetch
from astro_galpost.model.targets import LINE_FLUX_UNIT, TARGETS
from astro_galpost.sdss import (
    CATALOG_FILENAME,
    DEFAULT_COLUMNS,
    MANIFEST_FILENAME,
    build_query,
    fetch_catalog,
    join_catalogs,
    read_catalog,
)
from astro_galpost.sdss import fetch as sdss_fetch
from astro_galpost.sdss import query as sdss_query
from astro_galpost.sdss import retry as sdss_retry
from astro_galpost.sdss.files import PART_SUFFIX
from astro_galpost.utils.atomic import write_atomic

TWO63 = 2**63
COLUMNS = [sdss_query._select_alias(expr) for expr in DEFAULT_COLUMNS]
LINES = ("h_alpha", "h_beta", "nii_6584", "oiii_5007")


# --------------------------------------------------------------------------------------
# a fake SkyServer
# --------------------------------------------------------------------------------------

def _galaxies(n: int, seed: int = 3) -> list[dict]:
    """Rows of the default query with realistic values, IDs straddling 2**63."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        row = {
            "objID": 1237648720138732503 + 977 * k,
            # DR8+ specObjIDs of plates above ~8192 exceed 2**63
            "specObjID": TWO63 - 5 * 2**40 + k * 2**40,
            "ra": rng.uniform(0, 360), "dec": rng.uniform(-10, 70),
            "z": rng.uniform(0.01, 0.3), "zErr": rng.uniform(1e-5, 3e-4),
            "plate": 266 + k, "mjd": 51630 + k, "fiberID": 1 + k,
            "velDisp": rng.uniform(60, 300), "velDispErr": rng.uniform(5, 20),
            "v_disp": rng.uniform(80, 300), "v_disp_err": rng.uniform(3, 15),
            "sn_median": rng.uniform(12, 40),
            "petroMag_r": rng.uniform(14, 17.7),
            "petroR50_r": rng.uniform(1, 5), "petroR90_r": rng.uniform(5, 12),
            "lgm_tot_p50": rng.uniform(9, 11.5), "sfr_tot_p50": rng.uniform(-2, 1),
            "oh_p50": rng.uniform(8.5, 9.2), "bptclass": int(rng.integers(-1, 6)),
            "reliable": 1,
        }
        for b in "ugriz":
            row[f"modelMag_{b}"] = rng.uniform(14, 20)
            row[f"modelMagErr_{b}"] = rng.uniform(0.005, 0.2)
            row[f"extinction_{b}"] = rng.uniform(0.01, 0.3)
            row[f"fiberMag_{b}"] = row[f"modelMag_{b}"] + rng.uniform(0.5, 2.0)
        for line in LINES:
            row[f"{line}_flux"] = rng.uniform(5, 500)
            row[f"{line}_flux_err"] = rng.uniform(1, 5)
        rows.append(row)
    # SDSS's ways of saying "not measured"
    missing = {1: {"velDisp": 0.0, "velDispErr": 0.0, "v_disp": 0.0, "v_disp_err": 0.0},
               2: {"lgm_tot_p50": -9999.0, "sfr_tot_p50": -9999.0, "oh_p50": -9999.0},
               4: {"h_alpha_flux": 0.0, "h_alpha_flux_err": -1.0},
               7: {"oiii_5007_flux": 0.0, "oiii_5007_flux_err": 0.0},
               8: {"modelMag_u": -9999.0, "modelMagErr_u": -9999.0}}
    for k, values in missing.items():
        if k < n:
            rows[k].update(values)
    return rows


def _fmt(value) -> str:
    return str(value) if isinstance(value, int) else format(value, ".8g")


def skyserver_csv(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    """CSV text as SkyServer's SQL search returns it (format=csv)."""
    lines = ["#Table1", ",".join(columns)]
    lines += [",".join(_fmt(row[c]) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def _response(status: int, text: str, url: str, headers: dict | None = None):
    response = requests.Response()
    response.status_code = status
    response._content = text.encode()
    response.encoding = "utf-8"
    response.url = url
    response.reason = {200: "OK", 400: "Bad Request", 429: "Too Many Requests",
                       503: "Service Unavailable"}.get(status, "")
    response.headers.update(headers or {})
    return response


class FakeSkyServer:
    """Answers astroquery's GET requests from a list of rows, honouring TOP and paging.

    ``failures`` maps a page's ``after`` key (None for the first page) to a list of
    failures served before that page succeeds: an exception instance to raise, or
    ``(status, headers)`` for an HTTP error response.
    """

    def __init__(self, rows: list[dict]):
        self.rows = sorted(rows, key=lambda r: r["specObjID"])
        self.failures: dict[int | None, list] = {}
        self.calls: list[tuple[int | None, int | None]] = []
        self.sql: list[str] = []

    def _request(self, method, url, params=None, timeout=None, cache=None, **kwargs):
        assert method == "GET" and "dr17" in url
        assert params["format"] == "csv"
        sql = params["cmd"]
        self.sql.append(sql)
        top = re.search(r"\bTOP (\d+)", sql)
        after = re.search(r"s\.specObjID > (\d+)", sql)
        top = int(top.group(1)) if top else None
        after = int(after.group(1)) if after else None
        self.calls.append((after, top))
        pending = self.failures.get(after)
        if pending:
            failure = pending.pop(0)
            if isinstance(failure, BaseException):
                raise failure
            status, headers = failure
            return _response(status, "<html>busy</html>", url, headers)
        rows = [r for r in self.rows if after is None or r["specObjID"] > after]
        return _response(200, skyserver_csv(rows[:top]), url)


@pytest.fixture
def skyserver(monkeypatch):
    """Install a fake SkyServer behind astroquery and record the waits instead of sleeping."""
    from astroquery.sdss import SDSS

    server = FakeSkyServer(_galaxies(23))
    monkeypatch.setattr(SDSS, "_request", server._request)
    server.sleeps = []
    monkeypatch.setattr(sdss_retry, "_sleep", server.sleeps.append)
    return server


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part") or p.name.startswith(".")]


# --------------------------------------------------------------------------------------
# build_query
# --------------------------------------------------------------------------------------

def test_build_query_selects_the_main_galaxy_sample():
    sql = build_query(1000)
    assert sql.startswith("SELECT TOP 1000\n")
    for clause in ("FROM SpecObj AS s",
                   "JOIN PhotoObj AS p ON p.objID = s.bestObjID",
                   "JOIN galSpecInfo AS i ON i.specObjID = s.specObjID",
                   "JOIN galSpecExtra AS e ON e.specObjID = s.specObjID",
                   "JOIN galSpecLine AS l ON l.specObjID = s.specObjID",
                   "s.class = 'GALAXY'", "s.zWarning = 0", "s.z > 0.0", "s.z <= 0.3",
                   "(s.legacy_target1 & (64 | 128 | 256)) > 0",
                   "p.petroMag_r - p.extinction_r < 17.77",
                   "ORDER BY s.specObjID"):
        assert clause in sql
    # the redshift comes from SpecObj: PhotoObj's z is the z-band magnitude
    assert "s.z AS z" in sql and "p.z " not in sql and "p.z," not in sql
    assert "*" not in sql and ";" not in sql and sql.count("(") == sql.count(")")
    for name in ("objID", "specObjID", "ra", "dec", "z", "velDisp", "velDispErr",
                 "lgm_tot_p50", "sfr_tot_p50", "oh_p50", "bptclass", "petroR50_r",
                 "petroR90_r", *(f"{p}_{b}" for p in ("modelMag", "modelMagErr", "extinction")
                                 for b in "ugriz"),
                 *(f"{line}_flux{e}" for line in LINES for e in ("", "_err"))):
        assert name in COLUMNS
    assert len(set(COLUMNS)) == len(COLUMNS)
    # every registered target's default column is fetched (log_mbh is derived)
    for name in ("log_mstar", "log_sfr", "redshift", "metallicity", "halpha", "hbeta",
                 "nii_6584", "oiii_5007"):
        assert TARGETS[name].column in COLUMNS


def test_build_query_paging_and_options():
    assert "TOP" not in build_query()
    assert build_query(top=7).startswith("SELECT TOP 7\n")
    sql = build_query(50, after=TWO63 + 5)
    assert f"AND s.specObjID > {TWO63 + 5}\nORDER BY s.specObjID" in sql
    sql = build_query(50, after=12, page_key="objID")
    assert "AND p.objID > 12\n" in sql and sql.endswith("ORDER BY p.objID")
    sql = build_query(z_max=0.1, r_max=None, target_bits=None, reliable_only=True,
                      dereddened=False)
    assert "s.z <= 0.1" in sql and "legacy_target1" not in sql and "petroMag_r -" not in sql
    assert "i.reliable = 1" in sql
    assert "p.petroMag_r < 17.5" in build_query(r_max=17.5, dereddened=False)
    sql = build_query(columns=["s.z AS z"], extra_columns=["p.petroMag_g"])
    assert sql.startswith("SELECT\n    s.specObjID,\n    s.z AS z,\n    p.petroMag_g\nFROM")
    for bad in (dict(n=0), dict(n=5, top=6), dict(after=-1), dict(page_key="ra"),
                dict(z_max=0.0), dict(columns=["s.z; DROP TABLE x"]),
                dict(columns=["s.z", "p.z AS z"]), dict(r_max=float("nan"))):
        with pytest.raises(ValueError):
            build_query(**bad)


def test_compact_sql_is_short_enough_for_a_get_request():
    import urllib.parse

    sql = sdss_query.compact_sql(build_query(50_000, after=TWO63 + 5))
    assert "\n" not in sql and "  " not in sql and "s.class = 'GALAXY' AND" in sql
    assert len(urllib.parse.urlencode({"cmd": sql, "format": "csv"})) < 1500
    assert sdss_query.compact_sql("a  b 'x  y'  c\n") == "a b 'x  y' c"


def _sqlite_db() -> sqlite3.Connection:
    """A miniature CAS with the tables and columns the query uses."""
    db = sqlite3.connect(":memory:")
    mags = ", ".join(f"{p}_{b} REAL" for p in ("modelMag", "modelMagErr", "extinction", "fiberMag")
                     for b in "ugriz")
    lines = ", ".join(f"{line}_flux{e} REAL" for line in LINES for e in ("", "_err"))
    db.executescript(f"""
        CREATE TABLE SpecObj (specObjID INTEGER PRIMARY KEY, bestObjID INTEGER, ra REAL,
            dec REAL, z REAL, zErr REAL, zWarning INTEGER, class TEXT, legacy_target1 INTEGER,
            plate INTEGER, mjd INTEGER, fiberID INTEGER, velDisp REAL, velDispErr REAL);
        CREATE TABLE PhotoObj (objID INTEGER PRIMARY KEY, ra REAL, dec REAL, z REAL, {mags},
            petroMag_r REAL, petroR50_r REAL, petroR90_r REAL);
        CREATE TABLE galSpecInfo (specObjID INTEGER PRIMARY KEY, z REAL, reliable INTEGER,
            v_disp REAL, v_disp_err REAL, sn_median REAL);
        CREATE TABLE galSpecExtra (specObjID INTEGER PRIMARY KEY, lgm_tot_p50 REAL,
            sfr_tot_p50 REAL, oh_p50 REAL, bptclass INTEGER);
        CREATE TABLE galSpecLine (specObjID INTEGER PRIMARY KEY, {lines});
    """)
    # (specObjID, class, zWarning, z, legacy_target1, petroMag_r, extinction_r, has lines)
    spectra = [
        (101, "GALAXY", 0, 0.05, 64, 16.0, 0.1, True),     # selected
        (102, "GALAXY", 0, 0.30, 128, 17.0, 0.1, True),    # GALAXY_BIG, z = z_max: selected
        (103, "GALAXY", 0, 0.10, 256 | 1, 15.0, 0.1, True),  # GALAXY_BRIGHT_CORE: selected
        (104, "STAR", 0, 0.0001, 64, 16.0, 0.1, True),
        (105, "GALAXY", 4, 0.05, 64, 16.0, 0.1, True),     # zWarning set
        (106, "GALAXY", 0, 0.31, 64, 16.0, 0.1, True),     # beyond z_max
        (107, "GALAXY", 0, 0.05, 0, 16.0, 0.1, True),      # not an MGS target (e.g. BOSS)
        (108, "GALAXY", 0, 0.05, 64, 17.85, 0.2, True),    # 17.65 after extinction: selected
        (109, "GALAXY", 0, 0.05, 64, 17.80, 0.01, True),   # too faint
        (110, "GALAXY", 0, 0.05, 64, 16.0, 0.1, False),    # no MPA-JHU row
        (111, "GALAXY", 0, 0.12, 64 | 32, 14.0, 0.1, True),  # selected
        (112, "GALAXY", 0, 0.005, 64, 14.0, 0.1, True),    # below z_min: peculiar velocities
        (113, "GALAXY", 0, 0.05, 64, 14.0, 0.1, True),     # galSpecInfo reliable = 0
    ]
    for spec, cls, zwarn, z, bits, petro, ext, lines_ok in spectra:
        obj = 10 * spec
        db.execute("INSERT INTO SpecObj VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (spec, obj, 1.0, 2.0, z, 1e-4, zwarn, cls, bits, 266, 51630, 1, 150.0, 9.0))
        # PhotoObj.z is the z-band magnitude (15.5), a trap for an unqualified "z"
        photo = (obj, 1.0, 2.0, 15.5, *([17.0] * 5), *([0.02] * 5), 0.3, 0.2, ext, 0.1, 0.05,
                 *([17.5] * 5), petro, 2.0, 6.0)
        db.execute(f"INSERT INTO PhotoObj VALUES ({','.join('?' * len(photo))})", photo)
        db.execute("INSERT INTO galSpecInfo VALUES (?,?,?,?,?,?)",
                   (spec, z, int(spec != 113), 150.0, 9.0, 20.0))
        db.execute("INSERT INTO galSpecExtra VALUES (?,?,?,?,?)", (spec, 10.5, 0.1, 8.9, 1))
        if lines_ok:
            db.execute(f"INSERT INTO galSpecLine VALUES ({','.join('?' * 9)})",
                       (spec, *([100.0, 3.0] * 4)))
    return db


def _run_sqlite(db: sqlite3.Connection, sql: str) -> Table:
    top = re.match(r"SELECT TOP (\d+)\n", sql)
    if top:  # T-SQL TOP n is SQLite's LIMIT n
        sql = "SELECT\n" + sql[top.end():] + f"\nLIMIT {top.group(1)}"
    cursor = db.execute(sql)
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    return Table(rows=rows, names=names) if rows else Table(names=names)


def test_query_semantics_on_a_miniature_cas():
    """The SQL runs in a real SQL engine and selects exactly the MGS rows."""
    db = _sqlite_db()
    result = _run_sqlite(db, build_query())
    assert result.colnames == COLUMNS
    assert list(result["specObjID"]) == [101, 102, 103, 108, 111]
    assert np.all(result["z"] < 1)  # SpecObj's redshift, not PhotoObj's z magnitude
    assert list(_run_sqlite(db, build_query(2))["specObjID"]) == [101, 102]
    assert list(_run_sqlite(db, build_query(2, after=102))["specObjID"]) == [103, 108]
    assert list(_run_sqlite(db, build_query(after=108))["specObjID"]) == [111]
    assert len(_run_sqlite(db, build_query(after=111))) == 0
    assert list(_run_sqlite(db, build_query(z_max=0.1))["specObjID"]) == [101, 103, 108]
    assert 109 in _run_sqlite(db, build_query(r_max=17.9, dereddened=False))["specObjID"]
    everything = _run_sqlite(db, build_query(z_min=0.0, reliable_only=False))["specObjID"]
    assert {112, 113} <= set(everything)
    # paging by objID works too (objID = 10 * specObjID here)
    assert list(_run_sqlite(db, build_query(2, after=1020, page_key="objID"))["objID"]) == [
        1030, 1080]


# --------------------------------------------------------------------------------------
# read_catalog on real SkyServer exports
# --------------------------------------------------------------------------------------

def _raw_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_read_real_galspecline(shared_data):
    path = shared_data / "skyserver_samples" / "galspecline.csv"
    raw = _raw_rows(path)
    cat = read_catalog(path)
    assert len(cat) == len(raw) == 999
    assert cat["specObjID"].dtype == np.uint64
    assert [str(v) for v in cat["specObjID"]] == [r["specObjID"] for r in raw]
    assert "log_mbh" not in cat.colnames  # no velocity dispersion in galSpecLine
    for line in LINES:
        flux, err = cat[f"{line}_flux"], cat[f"{line}_flux_err"]
        assert flux.unit == LINE_FLUX_UNIT and err.unit == LINE_FLUX_UNIT
        no_fit = np.array([float(r[f"{line}_flux_err"]) <= 0 for r in raw])
        assert no_fit.sum() > 30  # the export really has failed fits
        np.testing.assert_array_equal(flux.mask, no_fit)
        np.testing.assert_array_equal(err.mask, no_fit)
        good = ~no_fit
        np.testing.assert_allclose(np.asarray(flux)[good],
                                   [float(r[f"{line}_flux"]) for r, g in zip(raw, good) if g])
    assert cat["sigma_balmer"].unit == u.km / u.s
    # the target registry reads the fluxes through their unit
    values, valid = TARGETS["halpha"].read(cat)
    # negative fluxes (undetected lines) are measurements; failed fits (flux 0) are not
    assert valid.sum() > 900 and np.all(values[valid] != 0) and np.any(values[valid] < 0)
    assert not np.any(valid & np.asarray(cat["h_alpha_flux"].mask))


def test_read_real_specphoto_uint64_ids(shared_data):
    path = shared_data / "skyserver_samples" / "specphoto.csv"
    raw = _raw_rows(path)
    cat = read_catalog(path)
    assert cat["specObjID"].dtype == np.uint64 and cat["plateID"].dtype == np.uint64
    assert cat["objID"].dtype == np.uint64
    ids = [int(r["specObjID"]) for r in raw]
    assert sum(i >= TWO63 for i in ids) > 100  # many IDs above 2**63 ...
    assert [int(v) for v in cat["specObjID"]] == ids  # ... all intact
    assert [int(v) for v in cat["plateID"]] == [int(r["plateID"]) for r in raw]
    assert cat["ra"].unit == u.deg and cat["dec"].unit == u.deg
    for b in "ugriz":
        assert cat[f"modelMag_{b}"].unit == u.mag and cat[f"extinction_{b}"].unit == u.mag
    assert cat["z"].unit is None
    np.testing.assert_allclose(cat["z"], [float(r["z"]) for r in raw])
    sentinel = np.array([float(r["mRrCc_r"]) == -9999 for r in raw])
    assert sentinel.sum() == 4
    np.testing.assert_array_equal(cat["mRrCc_r"].mask, sentinel)


def test_join_real_galspecline_specphoto(shared_data):
    folder = shared_data / "skyserver_samples"
    joined = join_catalogs(folder / "galspecline.csv", folder / "specphoto.csv")
    assert len(joined) == 350  # a few IDs repeat in the exports
    assert len(np.unique(joined["specObjID"])) == 331
    assert joined["specObjID"].dtype == np.uint64
    assert joined["h_alpha_flux"].unit == LINE_FLUX_UNIT and joined["ra"].unit == u.deg
    with pytest.raises(KeyError, match="nope"):
        join_catalogs(folder / "galspecline.csv", folder / "specphoto.csv", key="nope")


def test_join_leaves_rows_without_a_spectrum_unmatched(shared_data):
    """galaxytag's specObjID is 0 ("no spectrum") for 983 of 999 galaxies: 0 never matches 0."""
    tag = read_catalog(shared_data / "skyserver_samples" / "galaxytag.csv")
    none = tag["specObjID"].mask
    assert none.sum() == 983
    with pytest.warns(AstropyUserWarning, match="983 of 999 rows of the (left|right) table have no specObjID"):
        inner = join_catalogs(tag, tag)
    assert len(inner) == 16 and not np.ma.getmaskarray(inner["specObjID"]).any()
    with pytest.warns(AstropyUserWarning, match="no specObjID"):
        left = join_catalogs(tag, tag[:500], join_type="left")
    assert len(left) == 999 and np.ma.getmaskarray(left["specObjID"]).sum() == 983
    assert left["specObjID"].dtype == np.uint64
    ids = sorted(int(v) for v in left["specObjID"][~left["specObjID"].mask])
    assert ids == sorted(int(v) for v in tag["specObjID"][~none])
    assert len(join_catalogs(tag, tag, key="objID")) == 999
    with pytest.warns(AstropyUserWarning, match="no specObjID or ra"):  # a second, unmasked key
        assert len(join_catalogs(tag, tag, key=["specObjID", "ra"])) == 16


# --------------------------------------------------------------------------------------
# read_catalog: other layouts
# --------------------------------------------------------------------------------------

def test_read_skyserver_csv_with_table_line(tmp_path):
    rows = _galaxies(10)
    path = tmp_path / "result.csv"
    text = skyserver_csv(rows)
    path.write_text(text.replace(_fmt(rows[3]["oh_p50"]), "", 1))  # an empty field
    assert path.read_text().startswith("#Table1\n")
    cat = read_catalog(path)
    assert len(cat) == 10
    assert [int(v) for v in cat["specObjID"]] == [r["specObjID"] for r in rows]
    assert int(cat["specObjID"].max()) > TWO63
    assert cat["oh_p50"].mask[3] and cat["oh_p50"].mask[2] and cat["lgm_tot_p50"].mask[2]
    assert cat["velDisp"].mask[1] and cat["velDispErr"].mask[1]
    assert cat["modelMag_u"].mask[8] and cat["modelMagErr_u"].mask[8]
    assert cat["h_alpha_flux"].mask[4] and cat["oiii_5007_flux"].mask[7]
    assert cat["velDisp"].unit == u.km / u.s
    # log_mbh from galSpecInfo v_disp (McConnell & Ma 2013), masked where v_disp is
    mbh = cat["log_mbh"]
    assert mbh.mask[1] and mbh.mask.sum() == 1 and cat["log_mbh_reason"][1] == "not measured"
    sigma = np.array([r["v_disp"] for r in rows])[~mbh.mask]
    np.testing.assert_allclose(np.asarray(mbh)[~mbh.mask], 8.32 + 5.64 * np.log10(sigma / 200),
                               rtol=1e-6)
    # header only: SkyServer's answer when nothing matches
    empty = tmp_path / "empty.csv"
    empty.write_text("#Table1\n" + ",".join(COLUMNS) + "\n")
    assert len(read_catalog(empty)) == 0
    html = tmp_path / "error.csv"
    html.write_text("<html><body>Server Error</body></html>\n")
    with pytest.raises(ValueError, match="not a CSV table"):
        read_catalog(html)


def test_log_mbh_is_readable_by_the_target_registry():
    cat = read_catalog(Table({"velDisp": [150.0, 0.0, 250.0]}))
    values, valid = TARGETS["log_mbh"].read(cat)
    assert valid.tolist() == [True, False, True]
    np.testing.assert_allclose(values[valid], 8.32 + 5.64 * np.log10([0.75, 1.25]))


def test_read_astroml_specgals_layout():
    """astroML's SDSSspecgalsDR8 columns (fetch_sdss_specgals) are CAS names already."""
    n = 4
    t = Table()
    for name in ("ra", "dec"):
        t[name] = np.array([10.0, 20.0, 30.0, 40.0])
    t["mjd"] = np.array([51630] * n, dtype=np.int32)
    t["plate"] = np.array([266] * n, dtype=np.int16)
    t["fiberID"] = np.array([1, 2, 3, 4], dtype=np.int16)
    for name, values in (("z", [0.05, 0.1, 0.2, 0.25]), ("zErr", [1e-4] * n),
                         ("rChi2", [1.0] * n), ("velDisp", [150.0, 0.0, 250.0, 90.0]),
                         ("velDispErr", [8.0, 0.0, 9.0, 7.0]), ("extinction_r", [0.1] * n),
                         ("petroMag_r", [16.0] * n), ("psfMag_r", [18.0] * n),
                         ("psfMagErr_r", [0.02] * n)):
        t[name] = np.array(values, dtype=np.float32)
    for b in "ugriz":
        t[f"modelMag_{b}"] = np.array([17.0, 16.5, -9999.0, 18.0], dtype=np.float32)
        t[f"modelMagErr_{b}"] = np.array([0.02] * n, dtype=np.float32)
    t["petroR50_r"] = t["petroR90_r"] = np.array([2.0] * n, dtype=np.float32)
    for line in ("nii_6584", "h_alpha", "oiii_5007", "h_beta", "h_delta"):
        t[f"{line}_flux"] = np.array([50.0, 0.0, 30.0, 20.0], dtype=np.float32)
        t[f"{line}_flux_err"] = np.array([2.0, -1.0, 2.0, 1.0], dtype=np.float32)
    t["d4000"] = t["d4000_err"] = np.array([1.5] * n, dtype=np.float32)
    t["bptclass"] = np.array([1, -1, 4, 2], dtype=np.int16)
    t["lgm_tot_p50"] = np.array([10.5, -9999.0, 11.0, 9.5], dtype=np.float32)
    t["sfr_tot_p50"] = np.array([0.1, -99.0, -1.0, 0.3], dtype=np.float32)
    t["objID"] = np.array([1237648720138732503 + k for k in range(n)], dtype=np.int64)
    # an ID above 2**63 stored in a signed 64-bit column comes back negative
    ids = np.array([TWO63 + 3, 299489677444933632, 299489677444933633, 2**64 - 1],
                   dtype=np.uint64)
    t["specObjID"] = ids.view(np.int64)
    before = t.copy()
    cat = read_catalog(t)
    assert np.all(t == before) and "log_mbh" not in t.colnames  # input untouched
    np.testing.assert_array_equal(cat["specObjID"], ids)
    assert cat["objID"].dtype == np.uint64
    assert cat["modelMag_u"].unit == u.mag and cat["modelMag_u"].mask[2]
    assert cat["psfMag_r"].unit == u.mag and cat["petroR50_r"].unit == u.arcsec
    assert cat["velDisp"].mask.tolist() == [False, True, False, False]
    assert cat["log_mbh"].mask.tolist() == [False, True, False, False]
    assert cat["lgm_tot_p50"].mask.tolist() == [False, True, False, False]
    # -99 is a sentinel; log SFR = -1 is a real value
    assert cat["sfr_tot_p50"].mask.tolist() == [False, True, False, False]
    assert cat["h_delta_flux"].mask.tolist() == [False, True, False, False]
    assert cat["bptclass"].tolist() == [1, -1, 4, 2]
    values, valid = TARGETS["log_mstar"].read(cat)
    assert valid.tolist() == [True, False, True, True]


def test_read_catalog_normalises_names():
    mpa = Table({"SPECOBJID": np.array([TWO63 + 1, 7], dtype=np.uint64), "Z": [0.1, 0.2],
                 "H_ALPHA_FLUX": [10.0, 20.0], "H_ALPHA_FLUX_ERR": [1.0, 0.0],
                 "LGM_TOT_P50": [10.0, 11.0], "OTHER": [1, 2]})
    cat = read_catalog(mpa)
    assert cat.colnames == ["specObjID", "z", "h_alpha_flux", "h_alpha_flux_err",
                            "lgm_tot_p50", "OTHER"]
    assert cat["h_alpha_flux"].mask.tolist() == [False, True]
    # SkyServer's PhotoObj shorthands: u g r i z are model magnitudes, z is a magnitude
    shorthand = Table({b: [17.0] for b in "ugriz"} | {f"err_{b}": [0.1] for b in "ugriz"}
                      | {"redshift": [0.07], "objid": ["1237648720138732503"]})
    cat = read_catalog(shorthand)
    assert cat["z"][0] == pytest.approx(0.07) and cat["modelMag_z"][0] == 17.0
    assert cat["modelMagErr_r"].unit == u.mag and cat["objID"].dtype == np.uint64
    # both spellings present: ambiguous, nothing renamed
    with pytest.warns(AstropyUserWarning, match="exists too"):
        cat = read_catalog(Table({"z": [0.1], "Z": [0.2]}))
    assert cat.colnames == ["z", "Z"]
    # fluxes in cgs units are converted to the package's unit
    cgs = Table({"h_beta_flux": [2e-16, 3e-16], "h_beta_flux_err": [1e-17, 1e-17]})
    cgs["h_beta_flux"].unit = cgs["h_beta_flux_err"].unit = u.erg / u.s / u.cm**2
    cat = read_catalog(cgs)
    assert cat["h_beta_flux"].unit == LINE_FLUX_UNIT
    np.testing.assert_allclose(cat["h_beta_flux"], [20.0, 30.0])


@pytest.mark.parametrize("suffix", [".fits", ".ecsv", ".parquet"])
def test_read_catalog_file_formats(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    rows = _galaxies(6)
    raw = Table(rows=[[r[c] for c in COLUMNS] for r in rows], names=COLUMNS)
    raw["specObjID"] = np.array([r["specObjID"] for r in rows], dtype=np.uint64)
    path = tmp_path / f"cat{suffix}"
    raw.write(path)
    cat = read_catalog(path)
    assert [int(v) for v in cat["specObjID"]] == [r["specObjID"] for r in rows]
    assert cat["velDisp"].mask.tolist() == [False, True, False, False, False, False]
    assert cat["log_mbh"].mask[1] and cat["lgm_tot_p50"].mask[2] and cat["h_alpha_flux"].mask[4]
    # a normalised catalogue survives a write/read cycle (masked floats become NaN in FITS)
    cat.remove_column("log_mbh")
    again = tmp_path / f"again{suffix}"
    cat.write(again)
    back = read_catalog(again)
    assert back["specObjID"].dtype == np.uint64
    np.testing.assert_array_equal(back["lgm_tot_p50"].mask, cat["lgm_tot_p50"].mask)
    np.testing.assert_array_equal(back["log_mbh"].mask, back["velDisp"].mask)
    assert back["ra"].unit == u.deg and back["h_alpha_flux"].unit == LINE_FLUX_UNIT


# --------------------------------------------------------------------------------------
# fetch_catalog against the fake SkyServer
# --------------------------------------------------------------------------------------

def test_fetch_catalog_pages_and_concatenates(skyserver, tmp_path):
    cat = fetch_catalog(tmp_path, n=None, page_size=10, progress=False, pause=0.5)
    # 23 rows in pages of 10: the third page is short, so the sample is exhausted
    assert skyserver.calls == [(None, 10), (skyserver.rows[9]["specObjID"], 10),
                               (skyserver.rows[19]["specObjID"], 10)]
    assert skyserver.sleeps == [0.5, 0.5]  # polite pause between pages only
    expected = [r["specObjID"] for r in skyserver.rows]
    assert [int(v) for v in cat["specObjID"]] == expected
    assert cat["specObjID"].dtype == np.uint64 and int(cat["specObjID"].max()) > TWO63
    assert cat["z"].max() <= 0.3 and cat["ra"].unit == u.deg
    assert cat["h_alpha_flux"].unit == LINE_FLUX_UNIT and cat["h_alpha_flux"].mask[4]
    assert cat["log_mbh"].mask.tolist() == [k == 1 for k in range(23)]
    pages = sorted(p.name for p in (tmp_path / "pages").iterdir())
    assert pages == ["page-00001.ecsv", "page-00002.ecsv", "page-00003.ecsv"]
    manifest = json.loads((tmp_path / MANIFEST_FILENAME).read_text())
    assert manifest["exhausted"] and manifest["rows"] == 23
    assert manifest["last_key"] == expected[-1] > TWO63  # exact in JSON
    assert (tmp_path / CATALOG_FILENAME).is_file() and not _leftovers(tmp_path)
    raw = Table.read(tmp_path / CATALOG_FILENAME)
    assert raw["specObjID"].dtype == np.uint64 and len(raw) == 23
    # everything is on disk: a second call asks SkyServer nothing
    skyserver.calls.clear()
    again = fetch_catalog(tmp_path, n=None, page_size=10, progress=False)
    assert skyserver.calls == [] and len(again) == 23


def test_fetch_catalog_resumes_after_a_failure(skyserver, tmp_path):
    last_of_page2 = skyserver.rows[11]["specObjID"]
    skyserver.failures[last_of_page2] = [requests.ConnectionError("connection refused")] * 3
    with pytest.warns(AstropyUserWarning, match="retry"):
        with pytest.raises(requests.ConnectionError):
            fetch_catalog(tmp_path, n=20, page_size=6, retries=2, backoff=1.0, jitter=0.0,
                          pause=0, progress=False)
    # pages 1-2 were kept; page 3 was tried three times with exponential backoff
    assert skyserver.calls == [(None, 6), (skyserver.rows[5]["specObjID"], 6),
                               (last_of_page2, 6), (last_of_page2, 6), (last_of_page2, 6)]
    assert skyserver.sleeps == [1.0, 2.0]
    manifest = json.loads((tmp_path / MANIFEST_FILENAME).read_text())
    assert [p["rows"] for p in manifest["pages"]] == [6, 6]
    assert manifest["last_key"] == last_of_page2 and not manifest["exhausted"]
    assert sorted(p.name for p in (tmp_path / "pages").iterdir()) == [
        "page-00001.ecsv", "page-00002.ecsv"]
    assert not (tmp_path / CATALOG_FILENAME).exists() and not _leftovers(tmp_path)

    # the network is back: only pages 3 and 4 are requested
    skyserver.calls.clear()
    cat = fetch_catalog(tmp_path, n=20, page_size=6, pause=0, progress=False)
    assert skyserver.calls == [(last_of_page2, 6), (skyserver.rows[17]["specObjID"], 2)]
    assert [int(v) for v in cat["specObjID"]] == [r["specObjID"] for r in skyserver.rows[:20]]
    assert not _leftovers(tmp_path)
    # asking for more later continues from the last key
    skyserver.calls.clear()
    cat = fetch_catalog(tmp_path, n=30, page_size=6, pause=0, progress=False)
    assert skyserver.calls == [(skyserver.rows[19]["specObjID"], 6)]
    assert len(cat) == 23


def test_fetch_catalog_retries_http_errors_with_backoff(skyserver, tmp_path):
    skyserver.failures[None] = [(503, {}), (429, {"Retry-After": "30"}), (502, {})]
    with pytest.warns(AstropyUserWarning, match="HTTPError"):
        cat = fetch_catalog(tmp_path, n=5, page_size=5, retries=4, backoff=2.0, jitter=0.0,
                            progress=False)
    assert len(cat) == 5 and len(skyserver.calls) == 4
    assert skyserver.sleeps == [2.0, 30.0, 8.0]  # Retry-After is honoured
    # with jitter the waits only grow, by at most the jitter fraction
    skyserver.sleeps.clear()
    skyserver.failures[None] = [(503, {}), (503, {})]
    with pytest.warns(AstropyUserWarning):
        fetch_catalog(tmp_path / "b", n=5, page_size=5, backoff=2.0, jitter=0.1,
                      progress=False)
    assert 2.0 <= skyserver.sleeps[0] <= 2.2 and 4.0 <= skyserver.sleeps[1] <= 4.4


def test_fetch_catalog_does_not_retry_permanent_errors(skyserver, tmp_path):
    skyserver.failures[None] = [(400, {})]
    with pytest.raises(requests.HTTPError, match="400"):
        fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    assert len(skyserver.calls) == 1 and skyserver.sleeps == []


def test_fetch_catalog_keeps_pages_when_interrupted(skyserver, tmp_path, monkeypatch):
    # Ctrl-C while page 2 is being written: page 1 survives, no temporary file is left
    original = sdss_fetch.write_table
    written = []

    def interrupted_write(table, path, fmt):
        if path.name == "page-00002.ecsv":
            def boom(tmp):
                tmp.write_text("half a page")
                raise KeyboardInterrupt
            write_atomic(path, boom, overwrite=True, suffix=PART_SUFFIX)
        original(table, path, fmt)
        written.append(path.name)

    monkeypatch.setattr(sdss_fetch, "write_table", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        fetch_catalog(tmp_path, n=10, page_size=5, pause=0, progress=False)
    assert written == ["page-00001.ecsv"] and not _leftovers(tmp_path)
    assert not (tmp_path / "pages" / "page-00002.ecsv").exists()
    monkeypatch.setattr(sdss_fetch, "write_table", original)
    skyserver.calls.clear()
    cat = fetch_catalog(tmp_path, n=10, page_size=5, pause=0, progress=False)
    assert skyserver.calls == [(skyserver.rows[4]["specObjID"], 5)] and len(cat) == 10


def test_fetch_catalog_removes_its_leftovers_and_nothing_else(skyserver, tmp_path):
    """Temporary files of a killed writer go; a user's files of similar names stay."""
    fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    ours = [tmp_path / "pages" / ".page-00002.ecsv.ab12cd_4.part", tmp_path / ".manifest.json.zx12ab34.json"]
    users = [tmp_path / ".bigfile.iso.part", tmp_path / ".manifest.json.bak", tmp_path / "pages" / ".notes.part"]
    for path in ours + users:
        path.write_text("x")
    fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    assert not any(p.exists() for p in ours) and all(p.exists() for p in users)


def test_fetch_catalog_adopts_a_page_written_but_not_recorded(skyserver, tmp_path, monkeypatch):
    # killed between writing page 2 and recording it: page 2 is not fetched again
    original = sdss_fetch._write_manifest

    def dying_manifest(path, manifest):
        if len(manifest["pages"]) == 2:
            raise SystemExit("killed")
        original(path, manifest)

    monkeypatch.setattr(sdss_fetch, "_write_manifest", dying_manifest)
    with pytest.raises(SystemExit):
        fetch_catalog(tmp_path, n=15, page_size=5, pause=0, progress=False)
    monkeypatch.setattr(sdss_fetch, "_write_manifest", original)
    assert (tmp_path / "pages" / "page-00002.ecsv").is_file()
    skyserver.calls.clear()
    cat = fetch_catalog(tmp_path, n=15, page_size=5, pause=0, progress=False)
    assert skyserver.calls == [(skyserver.rows[9]["specObjID"], 5)]
    assert [int(v) for v in cat["specObjID"]] == [r["specObjID"] for r in skyserver.rows[:15]]


def test_fetch_catalog_refuses_a_folder_of_another_query(skyserver, tmp_path):
    fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    with pytest.raises(ValueError, match="different query"):
        fetch_catalog(tmp_path, n=5, page_size=5, progress=False, z_max=0.2)
    with pytest.raises(ValueError, match="different query"):
        fetch_catalog(tmp_path, n=5, page_size=5, progress=False, data_release=16)
    (tmp_path / "pages" / "page-00001.ecsv").unlink()
    with pytest.raises(ValueError, match="missing"):
        fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    (tmp_path / MANIFEST_FILENAME).unlink()
    (tmp_path / "pages" / "page-00009.ecsv").write_text("stale")
    with pytest.raises(ValueError, match="cannot be trusted"):
        fetch_catalog(tmp_path, n=5, page_size=5, progress=False)
    with pytest.raises(TypeError, match="after"):
        fetch_catalog(tmp_path / "x", after=5, progress=False)


def test_fetch_catalog_with_a_custom_query_function(tmp_path):
    rows = _galaxies(7)
    seen = []

    def query(sql, data_release):
        seen.append(data_release)
        after = re.search(r"s\.specObjID > (\d+)", sql)
        top = int(re.search(r"TOP (\d+)", sql).group(1))
        chosen = [r for r in rows if not after or r["specObjID"] > int(after.group(1))][:top]
        if not chosen:
            return None  # astroquery's answer to an empty result
        table = Table(rows=[[r[c] for c in COLUMNS] for r in chosen], names=COLUMNS)
        table["specObjID"] = [str(r["specObjID"]) for r in chosen]  # any ID spelling
        return table[::-1]  # and any order

    cat = fetch_catalog(tmp_path, n=None, page_size=7, query_func=query, data_release=16,
                        progress=False, pause=0, page_format="fits")
    assert seen == [16, 16] and len(cat) == 7  # a full page, then an empty one
    assert [int(v) for v in cat["specObjID"]] == [r["specObjID"] for r in rows]
    assert (tmp_path / "pages" / "page-00001.fits").is_file()
    # a resumed run may choose another page format: recorded pages are read as written
    again = fetch_catalog(tmp_path, n=None, page_size=7, query_func=query, data_release=16,
                          progress=False, page_format="ecsv")
    assert seen == [16, 16] and len(again) == 7


# --------------------------------------------------------------------------------------
# the retry schedule (urllib3's Retry), on constructed errors
# --------------------------------------------------------------------------------------

def _http_error(status: int, headers: dict | None = None) -> requests.HTTPError:
    """What astroquery raises for an HTTP error answer (``raise_for_status``)."""
    response = _response(status, "<html>busy</html>", "https://skyserver.sdss.org/x", headers)
    return requests.HTTPError(f"{status} Server Error", response=response)


class _Flaky:
    """A request failing with each of ``failures`` in turn, then answering "done"."""

    def __init__(self, failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_retry_schedule_backoff_and_retry_after(monkeypatch):
    import email.utils
    import urllib.error
    from datetime import datetime, timedelta, timezone
    from email.message import Message

    sleeps = []
    monkeypatch.setattr(sdss_retry, "_sleep", sleeps.append)
    later = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=100), usegmt=True)
    dated = Message()
    dated["Retry-After"] = later
    query = _Flaky([
        _http_error(503),                                  # retry 1: backoff
        _http_error(429, {"Retry-After": "30"}),           # retry 2: the server asks 30 s > 4 s
        requests.ConnectionError("connection reset"),      # retry 3: 8 s
        _http_error(502, {"Retry-After": "1"}),            # retry 4: 16 s capped at 10; 1 s is shorter
        urllib.error.HTTPError("https://data.sdss.org/x", 503, "Service Unavailable", dated, None),
        _http_error(503, {"Retry-After": "soon"}),         # an invalid header is ignored
    ])
    with pytest.warns(AstropyUserWarning) as caught:
        result = sdss_retry.call_with_retries(query, retries=6, backoff=2.0, max_backoff=10.0,
                                              jitter=0.0, what="test request")
    assert result == "done" and query.calls == 7
    assert len(caught) == 6 and str(caught[0].message).endswith("retry 1/6 in 2.0 s")
    assert sleeps[:4] == [2.0, 30.0, 8.0, 10.0] and sleeps[5] == 10.0
    assert 95.0 <= sleeps[4] <= 100.0  # an HTTP-date Retry-After, parsed by urllib3


def test_retry_schedule_gives_up(monkeypatch):
    sleeps = []
    monkeypatch.setattr(sdss_retry, "_sleep", sleeps.append)
    errors = [_http_error(503) for _ in range(3)]
    query = _Flaky(errors)
    with pytest.warns(AstropyUserWarning) as caught, pytest.raises(requests.HTTPError) as raised:
        sdss_retry.call_with_retries(query, retries=2, backoff=1.5, max_backoff=60.0, jitter=0.0,
                                     what="test request")
    assert raised.value is errors[2] and query.calls == 3 and sleeps == [1.5, 3.0]
    assert [str(w.message).rsplit("; ", 1)[1] for w in caught] == ["retry 1/2 in 1.5 s", "retry 2/2 in 3.0 s"]
    # a permanent error (404, an SQL error) is raised at once
    sleeps.clear()
    for error in (_http_error(404), ValueError("Incorrect syntax near 'FROM'")):
        query = _Flaky([error])
        with pytest.raises(type(error)):
            sdss_retry.call_with_retries(query, retries=4, backoff=1.0, max_backoff=60.0, jitter=0.0,
                                         what="test request")
        assert query.calls == 1 and sleeps == []


def test_backoff_time_is_urllib3_from_the_second_retry():
    policy = sdss_retry.retry_policy(retries=5, backoff=1.5, max_backoff=5.0)
    waits, urllib3_waits = [], []
    for _ in range(4):
        policy = policy.increment(url="x", error=requests.ConnectionError("down"))
        waits.append(sdss_retry.backoff_time(policy))
        urllib3_waits.append(policy.get_backoff_time())
    assert waits == [1.5, 3.0, 5.0, 5.0]  # 1.5 * 2**(k-1), capped at backoff_max
    assert urllib3_waits[0] == 0 and waits[1:] == urllib3_waits[1:]  # urllib3 retries the first at once
    assert policy.total == 1 and policy.is_retry("GET", 503) and not policy.is_retry("GET", 404)


# --------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------

def _parse(*argv: str) -> argparse.Namespace:
    return add_fetch_arguments(argparse.ArgumentParser()).parse_args(list(argv))


def test_cli_dry_run_prints_sql(capsys, monkeypatch):
    from astroquery.sdss import SDSS

    def no_network(*args, **kwargs):
        raise AssertionError("--dry-run must not query SkyServer")

    monkeypatch.setattr(SDSS, "_request", no_network)
    args = _parse("--n", "1000", "--page-size", "400", "--dry-run")
    assert args.out == Path("sdss_mgs") and args.data_release == 17
    assert run_fetch(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("SELECT TOP 400\n") and "JOIN galSpecLine AS l" in out
    assert "s.z <= 0.3" in out and "later pages add" in out


def test_cli_fetch(skyserver, tmp_path, capsys):
    out_dir = tmp_path / "mgs"
    args = _parse("--n", "8", "--page-size", "5", "--out", str(out_dir), "--z-max", "0.3")
    assert run_fetch(args) == 0
    captured = capsys.readouterr()
    assert "8 galaxies written" in captured.out and "SDSS MGS" in captured.err  # progress bar
    assert len(Table.read(out_dir / CATALOG_FILENAME)) == 8
    # an unrecoverable failure is reported, with the resume hint, as exit code 1
    skyserver.failures[skyserver.rows[7]["specObjID"]] = [requests.ConnectionError("down")] * 2
    args = _parse("--n", "12", "--page-size", "5", "--out", str(out_dir), "--no-progress",
                  "--retries", "1")
    with pytest.warns(AstropyUserWarning):
        assert run_fetch(args) == 1
    err = capsys.readouterr().err
    assert "ConnectionError" in err and "resume" in err
    # an input error: exit status 2, one line, and no resume hint for a folder of no pages
    args = _parse("--n", "12", "--out", str(tmp_path / "other"), "--page-size", "0", "--no-progress")
    assert run_fetch(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("galpost fetch-sdss: error:") and "resume" not in err and len(err.splitlines()) == 1


# --------------------------------------------------------------------------------------
# live
# --------------------------------------------------------------------------------------

@pytest.mark.remote_data
def test_live_skyserver_tiny_fetch(tmp_path):
    cat = fetch_catalog(tmp_path, n=5, page_size=3, progress=False, retries=2)
    assert len(cat) == 5
    assert cat["specObjID"].dtype == np.uint64
    assert np.all((cat["z"] > 0) & (cat["z"] <= 0.3))
    assert np.all(np.diff(cat["specObjID"].astype(float)) > 0)
    for name in COLUMNS:
        assert name in cat.colnames
    assert "log_mbh" in cat.colnames and isinstance(cat["log_mbh"], MaskedColumn)


def test_query_defaults_cut_low_redshift_and_unreliable_rows():
    sql = build_query()
    assert "s.z > 0.01" in sql and "i.reliable = 1" in sql
    for column in ("p.fiberMag_r", "p.petroR50_r", "p.petroR90_r", "i.v_disp", "i.sn_median"):
        assert column in sql
    sql = build_query(z_min=0.0, reliable_only=False)
    assert "s.z > 0.0" in sql and "i.reliable" not in sql.split("WHERE")[1]


@pytest.mark.filterwarnings("ignore:ID column:astropy.utils.exceptions.AstropyUserWarning")
def test_duplicated_z_header_resolved_from_its_position(shared_data, tmp_path):
    """A real SkyServer export whose header says z twice (redshift, then the z magnitude)."""
    lines = (shared_data / "sdss_dr14_skyserver_10k.csv").read_text().splitlines()[:200]
    header = lines[0].split(",")
    assert header[3:8] == list("ugriz") and header[14] == "redshift"
    real = Table.read("\n".join(lines), format="ascii.csv")
    # put the redshift first, named as CAS names it: "specobjid,z,...,u,g,r,i,z"
    order = [14] + [k for k in range(len(header)) if k != 14]
    path = tmp_path / "dup.csv"
    new_header = ",".join("z" if k == 14 else header[k] for k in order)
    rows = [",".join(row.split(",")[k] for k in order) for row in lines[1:]]
    path.write_text("\n".join([new_header, *rows]) + "\n")
    cat = read_catalog(path)
    np.testing.assert_allclose(np.asarray(cat["z"]), real["redshift"])
    np.testing.assert_allclose(np.asarray(cat["modelMag_z"]), real["z"])
    assert "z_1" not in cat.colnames
    # SQL Server names are case-insensitive: an upper-case header clashes the same way
    path.write_text("\n".join([new_header.upper().replace("SPECOBJID", "specObjID"), *rows]) + "\n")
    upper = read_catalog(path)
    np.testing.assert_allclose(np.asarray(upper["z"]), real["redshift"])
    np.testing.assert_allclose(np.asarray(upper["modelMag_z"]), real["z"])


def test_duplicated_z_header_without_a_band_run_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("specObjID,z,u,g,z,r,i\n1,0.1,18,17,16,15.5,15.2\n")
    with pytest.raises(ValueError, match="'z' more than once"):
        read_catalog(path)
    table = Table({"z": [0.1], "u": [18.0], "g": [17.0], "r": [16.0], "i": [15.5], "z_1": [15.2]})
    with pytest.raises(ValueError, match="z_1"):
        read_catalog(table)
