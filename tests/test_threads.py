"""The thread policy: CPUs from affinity and cgroup quota, OMP_NUM_THREADS, restoring the caller's setting."""

import pytest
import torch

from astro_galpost import GalaxyPosterior
from astro_galpost.utils import threads
from astro_galpost.utils.threads import (
    available_cpus,
    cgroup_cpu_limit,
    choose_threads,
    default_threads,
    torch_threads,
)


@pytest.fixture
def four_cpus(monkeypatch):
    """A process allowed on 4 CPUs, no quota, no OMP_NUM_THREADS."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


@pytest.mark.parametrize("text, expected", [("150000 100000", 1.5), ("max 100000", None), ("200000 100000", 2.0)])
def test_cgroup_v2_quota(tmp_path, text, expected):
    (tmp_path / "cpu.max").write_text(text + "\n")
    assert cgroup_cpu_limit(tmp_path) == expected


@pytest.mark.parametrize("quota, expected", [("50000", 0.5), ("-1", None), ("300000", 3.0)])
def test_cgroup_v1_quota(tmp_path, quota, expected):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(tmp_path) == expected


def test_no_cgroup_files_means_no_limit(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None


@pytest.mark.parametrize("limit, expected", [(None, 4), (2.5, 2), (0.5, 1), (8.0, 4)])
def test_available_cpus_is_affinity_bounded_by_quota(four_cpus, monkeypatch, limit, expected):
    monkeypatch.setattr(threads, "cgroup_cpu_limit", lambda: limit)
    assert available_cpus() == expected


def test_policy(four_cpus, monkeypatch):
    assert choose_threads() == threads.AUTO_THREADS == 1
    assert choose_threads(n_threads=3) == 3
    assert choose_threads(n_threads=64) == 4  # never more than the CPUs
    assert choose_threads(n_rows=100, n_threads=2) == 2  # explicit beats the small-job rule
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert choose_threads() == 3
    assert choose_threads(n_rows=100) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert choose_threads() == 4
    with default_threads(2):
        assert choose_threads() == 2
        with default_threads(None):  # None keeps the outer choice
            assert choose_threads() == 2
    assert choose_threads() == 4


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_bad_counts_name_the_parameter(bad):
    with pytest.raises(ValueError, match="n_threads"):
        choose_threads(n_threads=bad)


def test_bad_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        choose_threads()


def test_torch_threads_restores_the_callers_setting(four_cpus, restore_torch_threads):
    torch.set_num_threads(3)
    with torch_threads() as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 3
    with pytest.raises(RuntimeError, match="boom"), torch_threads(2):
        assert torch.get_num_threads() == 2
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 3


def test_estimator_uses_its_count_inside_fit_and_sample(four_cpus, restore_torch_threads, monkeypatch, mock_table,
                                                        tiny):
    from astro_galpost.model import estimator
    from astro_galpost.model.network import PosteriorNetwork

    seen = []
    train = estimator.train_network

    def spy_train(*args, **kwargs):
        seen.append(("fit", torch.get_num_threads()))
        return train(*args, **kwargs)

    sample = PosteriorNetwork.sample

    def spy_sample(self, *args, **kwargs):
        seen.append(("sample", torch.get_num_threads()))
        return sample(self, *args, **kwargs)

    monkeypatch.setattr(estimator, "train_network", spy_train)
    monkeypatch.setattr(PosteriorNetwork, "sample", spy_sample)
    torch.set_num_threads(3)
    gp = GalaxyPosterior(random_state=0, n_threads=2, **tiny(["redshift"])).fit(mock_table[:300])
    assert torch.get_num_threads() == 3
    gp.predict(mock_table[300:350], n_samples=20)
    assert set(seen) == {("fit", 2), ("sample", 2)}
    seen.clear()
    gp.n_threads = None  # automatic: one thread
    gp.sample(mock_table[300:350], n_samples=20)
    assert torch.get_num_threads() == 3
    assert set(seen) == {("sample", 1)}
    gp.n_threads = 0
    with pytest.raises(ValueError, match="n_threads"):
        gp.sample(mock_table[300:310], n_samples=5)


def test_cli_threads_option():
    from astro_galpost.cli.main import _parser

    commands = (["demo"], ["fit", "t.ecsv", "m"], ["predict", "m", "t.ecsv", "o.ecsv"], ["evaluate", "m", "t.ecsv"])
    for command in commands:
        assert _parser().parse_args([*command, "--threads", "2"]).threads == 2
        assert _parser().parse_args(command).threads is None
