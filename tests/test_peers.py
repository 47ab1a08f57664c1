"""The peer adapters of benchmarks/peers.py recover a known conditional density.

Each peer is fitted on y = 2x + N(0, 0.1²) and must put the median of its draws near
2x, half their central 68% interval near 0.1 and 95% of them within 3σ. Skipped (with the reason) where the optional
``peers`` extra is not installed.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

PEERS_FILE = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("benchmark_peers", PEERS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def linear_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2000, 1))
    y = 2 * x + 0.1 * rng.standard_normal((2000, 1))
    return x, y


@pytest.mark.slow  # 8-18 s per peer on one thread; the peers are an optional extra of the benchmarks
@pytest.mark.parametrize("name, modules", [
    ("flexzboost", ("flexcode", "xgboost")),
    ("pzflow", ("pzflow",)),
    ("sbi", ("sbi",)),
])
def test_peer_recovers_linear_gaussian(peers, linear_data, one_torch_thread, name, modules):
    for module in modules:
        pytest.importorskip(module, reason=f"{module} is not installed (optional extra 'peers')")
    x, y = linear_data
    x_test = np.array([[-0.5], [0.0], [0.5]])
    result = peers.run_peer(name, x, y, x_test, 2000, seed=0)
    assert result["status"] == "ok", result["status"]
    samples = result["samples"]
    assert samples.shape == (3, 2000, 1)
    draws = samples[:, :, 0]
    np.testing.assert_allclose(np.median(draws, axis=1), 2 * x_test[:, 0], atol=0.06)
    # half the central 68% interval (the draws' standard deviation would count a flow's rare far tails)
    width = 0.5 * np.diff(np.percentile(draws, [16, 84], axis=1), axis=0)[0]
    assert np.all((width > 0.07) & (width < 0.15)), width
    assert np.all(np.mean(np.abs(draws - 2 * x_test) < 0.3, axis=1) > 0.95)


def test_sample_from_grid_matches_a_gaussian(peers):
    grid = np.linspace(-5, 5, 2001)
    density = np.exp(-0.5 * ((grid - 1.0) / 0.5) ** 2)[None, :]
    draws = peers.sample_from_grid(density, grid, 20000, np.random.default_rng(1))
    assert draws.shape == (1, 20000)
    assert abs(np.mean(draws) - 1.0) < 0.02
    assert abs(np.std(draws) - 0.5) < 0.02


def test_incomplete_rows_and_unknown_peers_are_refused(peers):
    with pytest.raises(ValueError, match="Y has 1 non-finite"):
        peers.FlexZBoost().fit(np.zeros((3, 1)), np.array([1.0, np.nan, 2.0]))
    with pytest.raises(KeyError, match="unknown peer 'bpz'"):
        peers.peer_status("bpz")
