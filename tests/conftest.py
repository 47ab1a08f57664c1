"""Shared fixtures: the real SDSS files (skipped when absent), a mock catalog, small fast models."""

import bz2
import functools
import gc
import inspect
import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from astro_galpost.datasets._paths import DATA_ENV, shared_data_dir

# Collection imports torch, astropy and the test modules: millions of objects, none garbage, which
# automatic collections would scan again and again (seconds in all). Collect once it is done instead.
gc.disable()


def pytest_collection_finish(session):
    """Freeze the objects alive after collection (the imported libraries) out of the garbage collector.

    They are never garbage, and ``predict_catalog`` runs a full collection every few chunks:
    without this each of those scans them all again (0.2 s with torch and astropy loaded).
    Automatic collection, off during collection, is turned back on.
    """
    gc.collect()
    gc.freeze()
    gc.enable()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After each test file (its fixtures torn down), freeze what is left too: the libraries it imported.

    Automatic full collections then scan only what the next file makes, not every object the
    session has imported so far (seconds over the suite).
    """
    yield
    if nextitem is None or nextitem.path != item.path:
        gc.collect()
        gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def no_disk_flush():
    """``os.fsync`` does nothing in the tests (the package still calls it; what it does cannot be tested).

    The atomic writes flush every file and folder they write to disk: hundreds of flushes in
    the suite, seconds of waiting on the disk for temporary files. ``test_failures`` checks
    that the flush comes before the rename.
    """
    import os

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "fsync", lambda fd: None)
        yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module with one torch thread, restoring the setting afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the shared real SDSS data; skips the test when it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip(f"shared SDSS data not found (set ${DATA_ENV} or place it at ../shared/data)")
    return path


#: The SDSS field whose real g, r, i frames are in the shared data (``sdss_frames/frame-{band}-<field>.fits.bz2``).
SDSS_FIELD = "002820-3-0122"


@pytest.fixture(scope="session")
def sdss_frame_bytes(shared_data) -> dict:
    """``{band: FITS bytes}``: the real g, r, i frames of `SDSS_FIELD`, decompressed once per session.

    Several modules cut these frames, and bzip2 takes a second or more per frame. Skips when they are absent.
    """
    paths = {band: shared_data / "sdss_frames" / f"frame-{band}-{SDSS_FIELD}.fits.bz2" for band in "gri"}
    for path in paths.values():
        if not path.exists():
            pytest.skip(f"{path.name} not found in the shared data")
    with ThreadPoolExecutor(3) as pool:  # bz2 releases the GIL
        return dict(zip(paths, pool.map(lambda path: bz2.decompress(path.read_bytes()), paths.values())))


@pytest.fixture(scope="session")
def sdss_frame_hdus(sdss_frame_bytes) -> dict:
    """``{band: PrimaryHDU}`` of those frames, as read from their files (shared: do not modify)."""
    from astropy.io import fits

    def read(data: bytes):
        with fits.open(io.BytesIO(data)) as hdul:
            return fits.PrimaryHDU(np.asarray(hdul[0].data), header=hdul[0].header)

    return {band: read(data) for band, data in sdss_frame_bytes.items()}


@pytest.fixture(scope="session")
def mock_table():
    """A small mock catalog with all nine targets (shared by many tests; do not modify)."""
    from astro_galpost.datasets import make_mock_catalog

    return make_mock_catalog(700, random_state=11)


#: Options that make a GalaxyPosterior train in well under a second, for behaviour tests (not accuracy).
TINY = dict(representation=16, hidden=16, max_epochs=3, batch_size=128, progress=False)

#: Small options of each built-in flow (the defaults have 12 coupling layers or 3 splines of 128 x 128).
SMALL_FLOW_OPTIONS = {
    "realnvp": {"transforms": 2, "hidden_features": (16, 16)},
    "nsf": {"transforms": 1, "bins": 4, "hidden_features": (16, 16)},
    "affine1d": {"hidden_features": (16, 16)},
}


def small_flows(targets) -> dict:
    """Per group of ``targets``, the flow it would get by default, with `SMALL_FLOW_OPTIONS`.

    Unregistered targets (for tests of the error) and plugin flows are left out.
    """
    from astro_galpost.model import GROUPS, TARGETS, TargetGroup

    counts = Counter(TARGETS[name].group for name in targets if name in TARGETS)
    flows = {}
    for group, n in counts.items():
        flow = (GROUPS[group] if group in GROUPS else TargetGroup(group)).flow
        if flow == "realnvp" and n == 1:
            flow = "nsf"  # as GalaxyPosterior: coupling needs two dimensions
        if flow in SMALL_FLOW_OPTIONS:
            flows[group] = (flow, dict(SMALL_FLOW_OPTIONS[flow]))
    return flows


def tiny_options(targets=None, **overrides) -> dict:
    """Keyword arguments of a small, fast GalaxyPosterior of ``targets`` (default: GalaxyPosterior's nine).

    ``overrides`` are further keyword arguments, replacing the tiny ones.
    """
    from astro_galpost import GalaxyPosterior

    default = inspect.signature(GalaxyPosterior).parameters["targets"].default
    flows = small_flows(default if targets is None else targets)
    return {**({} if targets is None else {"targets": targets}), **TINY, "flows": flows, **overrides}


@pytest.fixture(scope="session")
def tiny():
    """``tiny(targets, **overrides)``: keyword arguments of a small, fast GalaxyPosterior, targets included."""
    return tiny_options


@pytest.fixture
def tiny_by_default(monkeypatch):
    """Make every GalaxyPosterior of the test tiny (`tiny_options`), whatever it is given.

    For code that builds its own models (the demo, the command line, the README's snippet).
    """
    from astro_galpost import GalaxyPosterior

    init = GalaxyPosterior.__init__

    @functools.wraps(init)
    def tiny_init(self, *args, **kwargs):
        options = tiny_options(args[0] if args else kwargs.get("targets"))
        options.pop("targets", None)
        init(self, *args, **{**kwargs, **options})

    monkeypatch.setattr(GalaxyPosterior, "__init__", tiny_init)


@pytest.fixture(scope="session")
def tiny_posterior(mock_table):
    """A small GalaxyPosterior of redshift, stellar mass and metallicity fitted on 300 mock galaxies.

    Shared by the whole session: tests must not modify it.
    """
    from astro_galpost import GalaxyPosterior

    options = tiny_options(["redshift", "log_mstar", "metallicity"], random_state=0)
    return GalaxyPosterior(**options).fit(mock_table[:300])


def pytest_xdist_auto_num_workers(config):
    """Workers for ``-n auto``: the CPUs this process may use, at most 4 (each worker imports torch)."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, 4))
