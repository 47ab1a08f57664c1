"""Photometric-redshift posteriors on LSST-like simulated galaxies, against pzflow on the same rows.

The galaxies are pzflow's example catalogue (``pzflow.examples.get_galaxy_data``:
100,000 simulated Buzzard galaxies, LSST ugrizy magnitudes and the true redshift,
0 < z < 2.3; no magnitude errors and no Galactic extinction, so the photometry
encoder finds neither and uses magnitudes and colours alone). One fixed split: a
permutation seeded by ``--seed``, its first ``--n-train`` rows train (20,000),
the next ``--n-test`` test (10,000); ``--quick`` takes 5,000 and 2,000.

`GalaxyPosterior` (redshift only, package defaults) and the conditional pzflow
flow of ``benchmarks/peers.py`` (library defaults; inputs the six magnitudes and
five adjacent colours) are fitted on the same training rows and draw as many
samples for the same test rows. Reported per method: posterior-median R²,
σ_NMAD of Δz/(1+z), outlier rates |Δz|/(1+z) > 0.15 (the LSST convention) and
> 0.05, PIT Kolmogorov–Smirnov statistic, 68% and 95% central-interval coverage
and fit time; then per quintile of i magnitude and of true redshift the 68%
coverage, the PIT KS and the mean Δz/(1+z) of the posterior medians (bias).
Nothing is chosen on the test rows. The last line printed is one JSON object.

    python benchmarks/photoz_lsst.py [--quick] [--n-train 20000] [--n-test 10000] [--no-pzflow]

The galaxies come with pzflow, so it must be installed (the ``peers`` extra) even with
``--no-pzflow``, which only skips fitting the pzflow peer.

One torch thread and one jax/XLA thread on the CPU (set here unless the
environment already sets them).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import argparse  # noqa: E402 - the thread settings above come before any numerical library
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402

from astro_galpost import GalaxyPosterior  # noqa: E402
from astro_galpost.evaluation import (  # noqa: E402
    bias,
    calibration_summary,
    local_calibration,
    outlier_fraction,
    point_metrics,
)

BANDS = ["u", "g", "r", "i", "z", "y"]
LSST_OUTLIER = 0.15
QUICK_SIZES = (5_000, 2_000)


def load_split(n_train: int, n_test: int, seed: int) -> tuple[Table, Table]:
    """The first ``n_train`` and next ``n_test`` rows of a seeded permutation of pzflow's galaxies."""
    from pzflow.examples import get_galaxy_data

    table = Table.from_pandas(get_galaxy_data())
    if n_train + n_test > len(table):
        raise ValueError(f"--n-train + --n-test = {n_train + n_test} exceeds the {len(table)} galaxies")
    order = np.random.default_rng(seed).permutation(len(table))
    return table[order[:n_train]], table[order[n_train:n_train + n_test]]


def features(table: Table) -> np.ndarray:
    """The peer's inputs: the six magnitudes and the five adjacent colours."""
    mags = np.column_stack([np.asarray(table[b], float) for b in BANDS])
    return np.column_stack([mags, mags[:, :-1] - mags[:, 1:]])


def evaluate(samples: np.ndarray, truth: np.ndarray) -> dict:
    """Point and calibration metrics of ``(N, S)`` redshift draws."""
    metrics = point_metrics(samples, truth, redshift=True)
    calib = calibration_summary(samples, truth, rng=np.random.default_rng(0))
    return {"r2": metrics["r2"], "sigma_nmad": metrics["sigma_nmad"],
            "outlier_015": outlier_fraction(samples, truth, threshold=LSST_OUTLIER, normalize_redshift=True),
            "outlier_005": outlier_fraction(samples, truth, normalize_redshift=True),
            "bias": bias(samples, truth, normalize_redshift=True),
            "pit_ks": calib["pit_ks"], "coverage_68": calib["coverage_68"], "coverage_95": calib["coverage_95"]}


def per_quintile(samples: np.ndarray, truth: np.ndarray, by: np.ndarray) -> list[dict]:
    """68% coverage and PIT KS (`local_calibration`) and median bias in each quintile of ``by``."""
    edges = np.quantile(by, np.linspace(0.0, 1.0, 6))
    local = local_calibration({"redshift": samples}, {"redshift": truth}, by, bins=edges)
    index = np.clip(np.searchsorted(edges, by, side="right") - 1, 0, len(edges) - 2)
    rows = []
    for row in local:
        sel = index == row["bin"]
        rows.append({"lo": float(row["lo"]), "hi": float(row["hi"]), "n": int(row["n"]),
                     "coverage_68": float(row["coverage_68"]), "pit_ks": float(row["pit_ks"]),
                     "bias": bias(samples[sel], truth[sel], normalize_redshift=True)})
    return rows


def run_galpost(train: Table, test: Table, n_samples: int, seed: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    gp = GalaxyPosterior(targets={"redshift": "redshift"}, photometry=BANDS, random_state=seed,
                         progress=False, n_threads=1).fit(train)
    fit_seconds = time.perf_counter() - t0
    return gp.sample(test, n_samples=n_samples)["redshift"].distribution.value, fit_seconds


def run_pzflow(train: Table, test: Table, n_samples: int, seed: int) -> dict:
    from peers import run_peer  # benchmarks/peers.py, beside this script

    out = run_peer("pzflow", features(train), np.asarray(train["redshift"], float), features(test),
                   n_samples, seed)
    if out["status"] == "ok":
        out["samples"] = out["samples"][:, :, 0]
    return out


def print_report(methods: dict[str, dict], n_test: int) -> None:
    keys = ("r2", "sigma_nmad", "outlier_015", "outlier_005", "bias", "pit_ks", "coverage_68", "coverage_95",
            "fit_seconds")
    print(f"\nPhotometric redshift, {n_test} held-out LSST-like galaxies")
    print(f"{'method':10s} " + " ".join(f"{k:>12s}" for k in keys))
    for name, m in methods.items():
        if m.get("status", "ok") != "ok":
            print(f"{name:10s} {m['status']}")
            continue
        print(f"{name:10s} " + " ".join(f"{m[k]:12.4f}" for k in keys))
    for by in ("i_mag", "redshift"):
        print(f"\nper quintile of {by}: 68% coverage / PIT KS / mean Δz/(1+z) of the medians")
        for name, m in methods.items():
            for row in m.get("quintiles", {}).get(by, []):
                print(f"{name:10s} {row['lo']:7.3f}-{row['hi']:7.3f}  n={row['n']:5d}  "
                      f"cov68 {row['coverage_68']:.3f}  KS {row['pit_ks']:.3f}  bias {row['bias']:+.4f}")


def summarise(samples: np.ndarray, test: Table, fit_seconds: float) -> dict:
    truth = np.asarray(test["redshift"], float)
    out = evaluate(samples, truth)
    out["fit_seconds"] = fit_seconds
    out["quintiles"] = {"i_mag": per_quintile(samples, truth, np.asarray(test["i"], float)),
                        "redshift": per_quintile(samples, truth, truth)}
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-train", type=int, default=20_000)
    parser.add_argument("--n-test", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZES[0]} training, {QUICK_SIZES[1]} test rows")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-pzflow", action="store_true", help="skip the pzflow peer")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    n_train, n_test = QUICK_SIZES if args.quick else (args.n_train, args.n_test)
    train, test = load_split(n_train, n_test, args.seed)

    samples, fit_seconds = run_galpost(train, test, args.n_samples, args.seed)
    print(f"GalaxyPosterior: {n_train} train, {n_test} test, fit {fit_seconds:.1f} s", flush=True)
    methods = {"galpost": summarise(samples, test, fit_seconds)}
    if not args.no_pzflow:
        peer = run_pzflow(train, test, args.n_samples, args.seed)
        print(f"pzflow: {peer['status']}", flush=True)
        methods["pzflow"] = (summarise(peer["samples"], test, peer["fit_seconds"]) if peer["status"] == "ok"
                             else {"status": peer["status"]})
    print_report(methods, n_test)
    result = {"n_train": n_train, "n_test": n_test, "seed": args.seed, "n_samples": args.n_samples,
              "methods": methods}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
