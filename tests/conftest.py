"""Shared fixtures: the real SDSS files beside the checkout, skipped when absent."""

from pathlib import Path

import pytest

from astro_galpost.datasets._paths import DATA_ENV, shared_data_dir


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


@pytest.fixture(scope="session")
def mock_table():
    """A small mock catalog with all nine targets (shared by many tests; do not modify)."""
    from astro_galpost.datasets import make_mock_catalog

    return make_mock_catalog(700, random_state=11)


#: Options that make a GalaxyPosterior train in about a second, for behaviour tests.
TINY = dict(
    representation=16,
    hidden=16,
    max_epochs=3,
    batch_size=128,
    progress=False,
    flows={},
)


@pytest.fixture
def tiny():
    """Keyword arguments for a fast, small GalaxyPosterior."""
    return dict(TINY)
