"""How many torch threads the package's own calls use.

torch starts with one intra-op thread per core of the machine. On a machine
whose cores are shared with other busy processes (or a container given fewer
CPUs than the host has), those threads wait for each other and training slows
down many times over. Measured (``benchmarks/thread_contention.py`` on this project's 2-core
machine shared with other jobs, load average 2-10, a nine-target fit of 2,000
mock galaxies for 6 epochs, two runs): with one thread, 4.6 s / 5.0 s alone
and 5.5 s / 9.8 s for the slower of two fits started together (ratios 1.19 /
1.97); with torch's default two threads, 98.5 s / 255 s alone and 682 s /
526 s together (ratios 6.92 / 2.06).
``benchmarks/sampling_throughput.py`` found the same for sampling. So the
automatic choice is one thread.

The policy (:func:`choose_threads`):

1. an explicit count (``n_threads`` of `~astro_galpost.GalaxyPosterior`,
   ``galpost … --threads``, or :func:`default_threads`), else
2. ``OMP_NUM_THREADS`` when it is set, else
3. :data:`AUTO_THREADS` (1, the measured best on a shared machine),

never more than :func:`available_cpus`: the CPUs this process may run on
(``os.sched_getaffinity``) and its cgroup CPU quota (v2 ``cpu.max``, v1
``cpu.cfs_quota_us``). :func:`torch_threads` applies the count only inside the
package's own calls and restores the caller's ``torch.get_num_threads()``.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["AUTO_THREADS", "available_cpus", "cgroup_cpu_limit", "choose_threads", "default_threads",
           "torch_threads"]

#: Threads used when nothing asks for a count: the measured best on a shared 2-core machine.
AUTO_THREADS = 1

#: Jobs smaller than this many rows (samples × galaxies) always run on one thread.
_SMALL_JOB_ROWS = 16384

#: Count set by :func:`default_threads` (the command line's ``--threads``); None when unset.
_DEFAULT: list[int | None] = [None]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_cgroup_v2(root: Path) -> Path:
    """Folder of this process's cgroup v2 (from ``/proc/self/cgroup``), else ``root``."""
    text = _read(Path("/proc/self/cgroup")) or ""
    for line in text.splitlines():
        if line.startswith("0::"):
            own = root / line[3:].lstrip("/")
            if (own / "cpu.max").is_file():
                return own
    return root


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    Reads cgroup v2 ``cpu.max`` (``"<quota> <period>"`` or ``"max <period>"``)
    or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``:
    no limit).

    Parameters
    ----------
    root : path-like, optional
        Mount point of the cgroup file system.

    Returns
    -------
    float or None
    """
    root = Path(root)
    text = _read(_own_cgroup_v2(root) / "cpu.max")
    if text:
        quota, _, period = text.partition(" ")
        if quota == "max" or not period:
            return None
        return int(quota) / int(period)
    for folder in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        quota, period = _read(root / folder / "cpu.cfs_quota_us"), _read(root / folder / "cpu.cfs_period_us")
        if quota and period:
            return None if int(quota) <= 0 else int(quota) / int(period)
    return None


def available_cpus() -> int:
    """CPUs this process may use: its CPU affinity, bounded by its cgroup quota (at least 1)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        n = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, math.floor(limit))
    return max(1, n)


def _check(n_threads, what: str = "n_threads") -> int | None:
    if n_threads is None:
        return None
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, str)) or not str(n_threads).isdigit() \
            or int(n_threads) < 1:
        raise ValueError(f"{what} must be a positive integer or None, got {n_threads!r}")
    return int(n_threads)


def choose_threads(n_rows: int | None = None, n_threads: int | None = None) -> int:
    """Intra-op thread count for one of the package's torch calls (see the module's policy).

    Parameters
    ----------
    n_rows : int, optional
        Rows (samples × galaxies) of a sampling job; jobs under 16,384 rows get
        one thread unless ``n_threads`` says otherwise.
    n_threads : int, optional
        Explicit count; None for the automatic policy.

    Returns
    -------
    int
        Between 1 and `available_cpus`.

    Examples
    --------
    >>> from astro_galpost.utils.threads import available_cpus, choose_threads
    >>> choose_threads(n_threads=10_000) == available_cpus()
    True
    """
    n = _check(n_threads)
    if n is None:
        n = _DEFAULT[0]
    if n is None and n_rows is not None and n_rows < _SMALL_JOB_ROWS:
        n = 1
    if n is None:
        n = _check(os.environ.get("OMP_NUM_THREADS", "").strip() or None, "OMP_NUM_THREADS")
    if n is None:
        n = AUTO_THREADS
    return min(n, available_cpus())


@contextlib.contextmanager
def torch_threads(n_threads: int | None = None) -> Iterator[int]:
    """Run a block with ``choose_threads(n_threads=n_threads)`` torch threads, then restore the caller's.

    Yields
    ------
    int
        The thread count in use inside the block.

    Examples
    --------
    >>> import torch
    >>> from astro_galpost.utils.threads import torch_threads
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1) as n:
    ...     n == torch.get_num_threads() == 1
    True
    >>> torch.get_num_threads() == before
    True
    """
    import torch  # here, not at the top: the CLI's --help and --version need no torch

    n = choose_threads(n_threads=n_threads)
    old = torch.get_num_threads()
    if n != old:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


@contextlib.contextmanager
def default_threads(n_threads: int | None) -> Iterator[None]:
    """Make ``n_threads`` the count of every automatic choice inside the block (``galpost --threads``).

    None leaves the automatic policy as it is.
    """
    old = _DEFAULT[0]
    _DEFAULT[0] = _check(n_threads) if n_threads is not None else old
    try:
        yield
    finally:
        _DEFAULT[0] = old
