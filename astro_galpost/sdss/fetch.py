"""Downloading the Main Galaxy Sample catalogue from SkyServer, page by page and resumably.

:func:`fetch_catalog` pages through SkyServer with `astroquery.sdss` (keyset
paging on the query of :func:`~astro_galpost.sdss.build_query`), saving every
page atomically and recording it in a manifest, so that an interrupted
download resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table, vstack
from astropy.utils.exceptions import AstropyWarning

from ..utils.atomic import write_json_atomic
from .catalog import ID_COLUMNS, read_catalog, to_uint64
from .files import clean_partial_files, write_table
from .query import build_query, check_count, compact_sql
from .retry import call_with_retries, polite_pause

__all__ = ["CATALOG_FILENAME", "MANIFEST_FILENAME", "fetch_catalog"]

#: Name of the concatenated catalogue written by :func:`fetch_catalog`.
CATALOG_FILENAME = "sdss_catalog.fits"

#: Name of the download state file written by :func:`fetch_catalog`.
MANIFEST_FILENAME = "manifest.json"

_MANIFEST_VERSION = 1
_PAGE_FORMATS = {"ecsv": "ascii.ecsv", "fits": "fits"}


def _skyserver_query(sql: str, data_release: int, *, timeout: float = 600.0) -> Table | None:
    """Run ``sql`` on SkyServer through `astroquery.sdss.SDSS` (no astroquery cache).

    The cache is off because :func:`fetch_catalog` keeps its own copy of every page.
    """
    from astroquery.sdss import SDSS

    with warnings.catch_warnings():
        # astroquery reads IDs above 2**63 as text, then converts them to uint64
        # itself: the parser's overflow warning is expected on every page
        warnings.filterwarnings("ignore", message=r".*OverflowError converting to IntType",
                                category=AstropyWarning)
        return SDSS.query_sql(compact_sql(sql), data_release=data_release, timeout=timeout,
                              cache=False)


def _page_table(result: Table | None, page_key: str) -> Table:
    """Check a page returned by the query function and make its key column uint64."""
    if result is None:
        return Table()
    table = Table(result, copy=False)
    if len(table) == 0:
        return table
    names = {name.lower(): name for name in table.colnames}
    if page_key.lower() not in names:
        raise ValueError(f"query result has no {page_key!r} column to page by "
                         f"(columns: {', '.join(table.colnames)})")
    if names[page_key.lower()] != page_key:
        table.rename_column(names[page_key.lower()], page_key)
    for name in ID_COLUMNS:
        if name in table.colnames:
            table[name] = to_uint64(table[name], name)
    if np.ma.getmaskarray(table[page_key]).any():
        raise ValueError(f"query result has rows without {page_key}")
    keys = np.asarray(table[page_key])
    if np.any(keys[1:] <= keys[:-1]):
        # SkyServer honours ORDER BY; a custom transport might not: sort to keep
        # the "last key" of the page meaningful
        table.sort(page_key)
        keys = np.asarray(table[page_key])
        if np.any(keys[1:] == keys[:-1]):
            raise ValueError(f"{page_key} is not unique in the query result; page by "
                             "specObjID instead")
    return table




def _read_page(path: Path) -> Table:
    """Read a page file in the format its suffix names (runs may differ in format)."""
    return Table.read(path, format=_PAGE_FORMATS[path.suffix.lstrip(".")])


def _signature(data_release: int, page_key: str, query_options: dict[str, Any]) -> dict:
    """What must not change between runs sharing one download folder."""
    return {"data_release": int(data_release), "page_key": page_key,
            "query": build_query(page_key=page_key, **query_options)}


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(path, manifest, indent=1)


def _open_manifest(out: Path, signature: dict[str, Any]) -> dict[str, Any]:
    """The download state of ``out``: read and checked against ``signature``, or new (and written)."""
    path = out / MANIFEST_FILENAME
    if path.exists():
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if manifest.get("version") != _MANIFEST_VERSION:
            raise ValueError(f"{path} was written by an incompatible version")
        changed = [k for k, v in signature.items() if manifest.get(k) != v]
        if changed:
            raise ValueError(
                f"{out} holds a download of a different query ({', '.join(changed)} "
                "differ); use another out_dir or delete this one")
        for page in manifest["pages"]:
            if not (out / page["file"]).is_file():
                raise ValueError(f"page {page['file']} recorded in {path} is missing; "
                                 "restore it or delete the folder to start again")
        return manifest
    if any((out / "pages").glob("page-*")):
        raise ValueError(f"{out / 'pages'} holds pages but {path} is missing, so "
                         "they cannot be trusted; delete them or use another out_dir")
    manifest = {"version": _MANIFEST_VERSION, **signature, "pages": [], "last_key": None,
                "rows": 0, "exhausted": False}
    _write_manifest(path, manifest)
    return manifest


@dataclass
class _Download:
    """One resumable download: its folder, its state and how a page is asked for."""

    out: Path
    manifest: dict[str, Any]
    page_key: str
    page_format: str
    query: Callable[[str], Table | None]
    retry: dict[str, float]
    pause: float
    query_options: dict[str, Any]

    def run(self, n: int | None, page_size: int, progress: bool) -> None:
        """Fetch and record pages until ``n`` rows are on disk or SkyServer has no more."""
        from tqdm.auto import tqdm

        state = self.manifest
        with tqdm(total=n, initial=min(state["rows"], n or state["rows"]), unit="gal",
                  desc="SDSS MGS", disable=not progress, dynamic_ncols=True) as bar:
            while not state["exhausted"] and (n is None or state["rows"] < n):
                table, name = self._next_page(n, page_size)
                if len(table) == 0:
                    state["exhausted"] = True
                    _write_manifest(self.out / MANIFEST_FILENAME, state)
                    break
                self._record(table, name)
                bar.update(len(table) if n is None else min(len(table), n - bar.n))

    def _next_page(self, n: int | None, page_size: int) -> tuple[Table, str]:
        """The next page and its file name: adopted from disk, or downloaded and written."""
        index = len(self.manifest["pages"]) + 1
        name = f"page-{index:05d}.{self.page_format}"
        path = self.out / "pages" / name
        if path.is_file():
            return self._adopt(path), name
        want = page_size if n is None else min(page_size, n - self.manifest["rows"])
        sql = build_query(want, after=self.manifest["last_key"], page_key=self.page_key,
                          **self.query_options)
        if self.manifest["pages"]:
            polite_pause(self.pause)
        result = call_with_retries(lambda: self.query(sql), what=f"SkyServer page {index}",
                                   **self.retry)
        table = _page_table(result, self.page_key)
        if len(table) < want:
            self.manifest["exhausted"] = True  # SkyServer has no more rows
        if len(table):
            write_table(table, path, _PAGE_FORMATS[self.page_format])
        return table, name

    def _adopt(self, path: Path) -> Table:
        """A page written by a run that stopped before recording it.

        The file is complete (atomic write); it must continue the recorded pages.
        """
        table = _page_table(_read_page(path), self.page_key)
        last = self.manifest["last_key"]
        if len(table) and last is not None and int(table[self.page_key][0]) <= last:
            raise ValueError(f"{path} does not follow the recorded pages; delete it")
        return table

    def _record(self, table: Table, name: str) -> None:
        keys = np.asarray(table[self.page_key])
        self.manifest["pages"].append({"file": f"pages/{name}", "rows": len(table),
                                       "first_key": int(keys[0]), "last_key": int(keys[-1])})
        self.manifest["last_key"] = int(keys[-1])
        self.manifest["rows"] += len(table)
        _write_manifest(self.out / MANIFEST_FILENAME, self.manifest)

    def catalog(self, n: int | None, data_release: int) -> Table:
        """Concatenate the recorded pages, write the catalogue file and return it read back."""
        if not self.manifest["pages"]:
            raise ValueError("the SkyServer query selected no galaxies")
        pages = [_page_table(_read_page(self.out / page["file"]), self.page_key)
                 for page in self.manifest["pages"]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # metadata conflicts between pages
            catalog = vstack(pages, join_type="outer", metadata_conflicts="silent")
        if n is not None and len(catalog) > n:
            catalog = catalog[:n]
        catalog.meta.update({"DR": int(data_release), "SOURCE": "SDSS SkyServer",
                             "PAGEKEY": self.page_key})
        final = self.out / CATALOG_FILENAME
        write_table(catalog, final, "fits")
        return read_catalog(final)


def _check_options(page_size: int, n: int | None, retries: int, page_format: str,
                   query_options: dict[str, Any]) -> tuple[int, int | None]:
    page_size = check_count(page_size, "page_size")
    n = check_count(n, "n")
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries!r}")
    if page_format not in _PAGE_FORMATS:
        raise ValueError(f"page_format must be one of {sorted(_PAGE_FORMATS)}, got {page_format!r}")
    for bad in ("n", "top", "after", "page_key"):
        if bad in query_options:
            raise TypeError(f"fetch_catalog() sets {bad!r} of the query itself")
    return page_size, n


def fetch_catalog(
    out_dir: str | os.PathLike,
    n: int | None = 250_000,
    *,
    page_size: int = 50_000,
    data_release: int = 17,
    retries: int = 4,
    backoff: float = 5.0,
    max_backoff: float = 300.0,
    jitter: float = 0.1,
    pause: float = 1.0,
    timeout: float = 600.0,
    progress: bool = True,
    query_func: Callable[[str, int], Table | None] | None = None,
    page_key: str = "specObjID",
    page_format: str = "ecsv",
    **query_options: Any,
) -> Table:
    """Download the Main Galaxy Sample catalogue from SkyServer, resumably.

    The sample of :func:`~astro_galpost.sdss.build_query` is fetched in pages of ``page_size`` rows
    ordered by ``page_key``. Each page is written atomically to
    ``out_dir/pages/page-00001.ecsv`` … and recorded, with the last key fetched,
    in ``out_dir/manifest.json`` (also written atomically). A later call with the
    same ``out_dir`` reads that state and only asks SkyServer for the rows after
    the last recorded key: pages already on disk are never fetched again, and an
    interruption (network failure, Ctrl-C, a killed process) loses at most the
    page being downloaded. The pages are finally concatenated into
    ``out_dir/sdss_catalog.fits`` (raw CAS columns, written atomically), which
    is returned normalised by :func:`~astro_galpost.sdss.read_catalog`.

    Parameters
    ----------
    out_dir : path-like
        Download folder (created if needed). Reuse it to resume.
    n : int or None, optional
        Number of galaxies wanted (default 250,000, the seed paper's sample);
        `None` fetches every matching galaxy.
    page_size : int, optional
        Rows per SkyServer request (default 50,000: below SkyServer's row limit
        and its query time-out for this query).
    data_release : int, optional
        SDSS data release (default 17).
    retries : int, optional
        Retries per page after transient failures (connection errors,
        time-outs, HTTP 429 and 5xx); other errors (e.g. an SQL error) are raised
        at once. Default 4.
    backoff, max_backoff : float, optional
        The k-th retry waits ``min(max_backoff, backoff * 2**k)`` seconds, or longer
        if the server sends ``Retry-After``.
    jitter : float, optional
        Waits are stretched by a random fraction up to ``jitter`` so that
        parallel clients do not retry in step.
    pause : float, optional
        Seconds to wait between successful pages, to be polite to SkyServer.
    timeout : float, optional
        Seconds allowed for each SkyServer request (default query function only).
    progress : bool, optional
        Show a `tqdm` progress bar.
    query_func : callable, optional
        ``query_func(sql, data_release) -> Table or None`` replacing the default
        `astroquery.sdss.SDSS.query_sql` transport (e.g. for CasJobs).
    page_key : {"specObjID", "objID"}, optional
        Keyset-paging column, see :func:`~astro_galpost.sdss.build_query`.
    page_format : {"ecsv", "fits"}, optional
        File format of the pages.
    **query_options
        Passed to :func:`~astro_galpost.sdss.build_query` (``z_max``, ``r_max``, ``columns``,
        ``extra_columns``, ``reliable_only`` …).

    Returns
    -------
    catalog : `~astropy.table.Table`
        At most ``n`` galaxies, ordered by ``page_key``, as :func:`~astro_galpost.sdss.read_catalog`
        returns them.

    Raises
    ------
    ValueError
        If ``out_dir`` holds a download of a different query (other options,
        data release or paging key), or a recorded page is missing, or the query
        selected nothing.
    Exception
        The last error of a page whose retries ran out; everything fetched
        before it stays on disk and the next call resumes from there.

    Notes
    -----
    Two processes must not share one ``out_dir`` at the same time.

    Examples
    --------
    >>> from astro_galpost.sdss import fetch_catalog
    >>> catalog = fetch_catalog("sdss_mgs", n=1000, page_size=500)  # doctest: +REMOTE_DATA +SKIP
    """
    page_size, n = _check_options(page_size, n, retries, page_format, query_options)
    out = Path(out_dir)
    (out / "pages").mkdir(parents=True, exist_ok=True)
    signature = _signature(data_release, page_key, query_options)  # validates the options
    manifest = _open_manifest(out, signature)  # refuses a folder holding another download
    clean_partial_files(out, out / "pages", names=(MANIFEST_FILENAME,))
    if query_func is None:
        def query_func(sql: str, release: int) -> Table | None:
            return _skyserver_query(sql, release, timeout=timeout)

    download = _Download(
        out, manifest, page_key, page_format, query=lambda sql: query_func(sql, data_release),
        retry={"retries": retries, "backoff": backoff, "max_backoff": max_backoff, "jitter": jitter},
        pause=pause, query_options=query_options)
    download.run(n, page_size, progress)
    return download.catalog(n, data_release)
