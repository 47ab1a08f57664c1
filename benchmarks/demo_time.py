"""Wall time of ``galpost demo --quick`` and ``galpost demo``, as a new user runs them.

Each runs in a child process with the package's default thread policy
(``OMP_NUM_THREADS`` removed from its environment) and progress bars off. The
wall time, the child's CPU time (user + system: about the wall time on idle
cores, since the demo trains on one thread) and the load average before each
run are printed, as a table and, last, one JSON line. Goals: ``--quick``
within 60 s and the full demo within 300 s on two idle cores.

Usage::

    nice -n 10 python benchmarks/demo_time.py [--modes quick full] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"quick": 60.0, "full": 300.0}


def run(mode: str, out: Path) -> dict:
    """Run one demo; returns its wall and CPU seconds and the load average before it."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [sys.executable, "-m", "astro_galpost.cli", "demo", "--no-progress", "--out", str(out / mode)]
    if mode == "quick":
        command.append("--quick")
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise RuntimeError(f"galpost demo ({mode}) failed:\n{result.stderr[-2000:]}")
    printed = [line for line in result.stdout.splitlines() if "wall time" in line]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"mode": mode, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "load_before": round(load, 2),
            "goal_s": GOALS[mode], "demo_says": printed[-1] if printed else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="+", choices=tuple(GOALS), default=list(GOALS))
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        results = [run(mode, out) for mode in args.modes]
    print(f"{'mode':6s} {'wall s':>7s} {'CPU s':>7s} {'goal s':>7s} {'load before':>12s}")
    for r in results:
        print(f"{r['mode']:6s} {r['wall_s']:7.1f} {r['cpu_s']:7.1f} {r['goal_s']:7.0f} {r['load_before']:12.2f}")
    print(json.dumps({"benchmark": "demo_time", "cpus": len(os.sched_getaffinity(0)), "results": results}))


if __name__ == "__main__":
    main()
