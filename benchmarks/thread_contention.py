"""Thread contention: one fit alone against two identical fits started together, per thread policy.

For each policy, ``--repeat`` times: one fit in a child process alone, then two
identical fits in two child processes started at the same moment. The ratio
is (slower of the two together) / (alone); the goal is at most 2.5, and two
processes on two free cores would give about 1. Policies:

``package``
    the package's automatic choice (``n_threads=None``: `astro_galpost.utils.threads`);
``torch``
    torch's default thread count (one per core), as before the policy.

Both run with ``OMP_NUM_THREADS`` removed from the children's environment, so
that each policy is what a user gets without setting it. The fit is the same
in every child: the nine targets on the mock catalog with the paper's
architecture, a fixed number of epochs (no early stopping). The machine may be
shared with other processes: the load average before each measurement is
printed, and both policies are measured in the same run. Prints a table and,
last, one JSON line.

Usage::

    nice -n 10 python benchmarks/thread_contention.py [--rows 2000] [--epochs 6] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

POLICIES = ("package", "torch")


def child(policy: str, rows: int, epochs: int) -> None:
    """Run one fit and print its wall time and thread count as JSON."""
    import torch

    from astro_galpost import GalaxyPosterior
    from astro_galpost.datasets import make_mock_catalog

    table = make_mock_catalog(rows, random_state=0)
    n_threads = None if policy == "package" else torch.get_num_threads()
    gp = GalaxyPosterior(n_ensemble=1, max_epochs=epochs, patience=10 * epochs, random_state=0, progress=False,
                         recalibrate=False, n_threads=n_threads)
    seen = []
    from astro_galpost.model import estimator

    train = estimator.train_network

    def counting(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return train(*args, **kwargs)

    estimator.train_network = counting
    t0 = time.perf_counter()
    gp.fit(table)
    print(json.dumps({"seconds": time.perf_counter() - t0, "threads": seen[0]}))


def _start(policy: str, args) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    command = [sys.executable, __file__, "--child", policy, "--rows", str(args.rows), "--epochs", str(args.epochs)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise RuntimeError(f"a child fit failed with status {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure(policy: str, args) -> dict:
    """One fit alone, then two together; times in seconds."""
    load_alone = os.getloadavg()[0]
    alone = _result(_start(policy, args))
    load_together = os.getloadavg()[0]
    pair = [_start(policy, args) for _ in range(2)]
    together = [_result(p) for p in pair]
    seconds = [t["seconds"] for t in together]
    return {"policy": policy, "threads": alone["threads"], "alone_s": round(alone["seconds"], 2),
            "together_s": [round(s, 2) for s in seconds], "ratio": round(max(seconds) / alone["seconds"], 2),
            "load_before_alone": round(load_alone, 2), "load_before_together": round(load_together, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="mock galaxies per fit (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per fit (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=1, help="measurements per policy (default: %(default)s)")
    parser.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    parser.add_argument("--child", choices=POLICIES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.rows, args.epochs)
        return
    from astro_galpost.utils.threads import available_cpus

    results = [measure(policy, args) for _ in range(args.repeat) for policy in args.policies]
    print(f"{available_cpus()} CPUs available; {args.rows} mock galaxies, nine targets, {args.epochs} epochs per fit")
    print(f"{'policy':8s} {'threads':>7s} {'alone s':>8s} {'together s':>14s} {'ratio':>6s} {'load before':>12s}")
    for r in results:
        together = "/".join(f"{s:.1f}" for s in r["together_s"])
        print(f"{r['policy']:8s} {r['threads']:7d} {r['alone_s']:8.1f} {together:>14s} {r['ratio']:6.2f} "
              f"{r['load_before_alone']:5.2f}/{r['load_before_together']:5.2f}")
    print(json.dumps({"benchmark": "thread_contention", "cpus": available_cpus(), "rows": args.rows,
                      "epochs": args.epochs, "goal_ratio": 2.5, "results": results}))


if __name__ == "__main__":
    main()
