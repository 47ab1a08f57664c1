"""Photometric-redshift posteriors on real SDSS Main Galaxy Sample galaxies, against a baseline.

Trains `GalaxyPosterior` (redshift only, ugriz photometry) on the shared file
``sdss_mgs_photoz_train.csv`` and, side by side on the same rows, scikit-learn's
``HistGradientBoostingRegressor``; reports on held-out galaxies (k-fold
cross-validation by default, or a separate test file with ``--test``):
posterior-median R², RMSE, σ_NMAD of Δz/(1+z), outlier rate (|Δz|/(1+z) > 0.05),
PIT Kolmogorov–Smirnov statistic and the coverage of the 68% and 95% central
intervals, plus fit time. The last line printed is one JSON object. `GalaxyPosterior` fits
with the package's thread count (one, unless ``OMP_NUM_THREADS`` says otherwise).

Goals (issue 2): R² ≥ 0.88, σ_NMAD ≤ 0.013, PIT KS ≤ 0.05, 68% coverage in
0.63–0.73, 95% in 0.92–0.97, fit in under 2 minutes on 2 CPU cores.

    python benchmarks/photoz_sdss.py [--folds 5] [--test unseen.csv] [--params '{"n_ensemble": 5}']
        [--peers flexzboost,pzflow,sbi]

``--peers`` also fits peer methods (``benchmarks/peers.py``, the optional extra
``peers``) on exactly the same training rows of every split, from the same nine
features as the baseline (ugriz and the four adjacent colours), draws as many samples
for the same test rows, and prints one table row per method with the same metrics; a
peer that is not installed or fails is a row saying so. Their hyperparameters are
the libraries' defaults, fixed in advance (see ``benchmarks/peers.py``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import shared_data_dir
from astro_galpost.evaluation import calibration_summary, point_metrics

BANDS = ["u", "g", "r", "i", "z"]
FEATURES = BANDS + ["u_g", "g_r", "r_i", "i_z"]
# a 3-member deep ensemble (each member validating on different rows) with light dropout:
# in 5-fold cross-validation it beat a single network in R², σ_NMAD and PIT KS
DEFAULT_PARAMS = {"n_ensemble": 3, "dropout": 0.1}
GOALS = {"r2": (">=", 0.88), "sigma_nmad": ("<=", 0.013), "pit_ks": ("<=", 0.05),
         "coverage_68": ("in", (0.63, 0.73)), "coverage_95": ("in", (0.92, 0.97)), "fit_seconds": ("<=", 120)}


def evaluate(samples: np.ndarray, truth: np.ndarray) -> dict:
    metrics = point_metrics(samples, truth, redshift=True)
    calib = calibration_summary(samples, truth, rng=np.random.default_rng(0))
    return {"r2": metrics["r2"], "rmse": float(np.sqrt(np.mean((np.median(samples, 1) - truth) ** 2))),
            "sigma_nmad": metrics["sigma_nmad"], "outlier_fraction": metrics["outlier_fraction"],
            "pit_ks": calib["pit_ks"], "coverage_68": calib["coverage_68"], "coverage_95": calib["coverage_95"]}


def point_only(pred: np.ndarray, truth: np.ndarray) -> dict:
    # a point estimate is a posterior with one sample: calibration does not apply
    metrics = point_metrics(pred[:, None], truth, redshift=True)
    return {"r2": metrics["r2"], "rmse": float(np.sqrt(np.mean((pred - truth) ** 2))),
            "sigma_nmad": metrics["sigma_nmad"], "outlier_fraction": metrics["outlier_fraction"]}


def run_galpost(train: Table, test: Table, params: dict, n_samples: int) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    gp = GalaxyPosterior(targets={"redshift": "zs"}, photometry=BANDS, progress=False, **params).fit(train)
    fit_seconds = time.perf_counter() - t0
    samples = gp.sample(test, n_samples=n_samples)["redshift"].distribution.value
    return samples, fit_seconds


def features(table: Table) -> np.ndarray:
    """The nine inputs of the baseline and the peers: ugriz and the four adjacent colours."""
    return np.column_stack([np.asarray(table[c], float) for c in FEATURES])


def run_baseline(train: Table, test: Table, seed: int) -> tuple[np.ndarray, float]:
    from sklearn.ensemble import HistGradientBoostingRegressor

    t0 = time.perf_counter()
    model = HistGradientBoostingRegressor(random_state=seed).fit(features(train), np.asarray(train["zs"], float))
    return model.predict(features(test)), time.perf_counter() - t0


def run_peers(names: list[str], train: Table, test: Table, n_samples: int, seed: int,
              done: dict[str, list]) -> None:
    """Fit and sample each peer on one split, appending its result to ``done[name]``.

    A peer that was unavailable or failed on an earlier split is not run again.
    """
    from peers import run_peer  # benchmarks/peers.py, beside this script

    for name in names:
        folds = done.setdefault(name, [])
        if folds and folds[-1]["status"] != "ok":
            continue
        folds.append(run_peer(name, features(train), np.asarray(train["zs"], float), features(test),
                              n_samples, seed))
        print(f"  {name}: {folds[-1]['status']}"
              + (f", fit {folds[-1]['fit_seconds']:.1f} s" if folds[-1]["status"] == "ok" else ""), flush=True)


def summarise_peer(folds: list[dict], truth: np.ndarray) -> dict:
    """The same metrics as for GalaxyPosterior over all splits, or the peer's status."""
    failed = [f["status"] for f in folds if f["status"] != "ok"]
    if failed:
        return {"status": failed[0]}
    out = evaluate(np.concatenate([f["samples"][:, :, 0] for f in folds]), truth)
    out.update(status="ok", fit_seconds=float(np.mean([f["fit_seconds"] for f in folds])),
               sample_seconds=float(np.mean([f["sample_seconds"] for f in folds])))
    return out


def print_methods(methods: dict[str, dict]) -> None:
    """One row per method; a method without calibration (a point estimate) shows n/a."""
    keys = ("r2", "rmse", "sigma_nmad", "outlier_fraction", "pit_ks", "coverage_68", "coverage_95", "fit_seconds")
    print(f"\n{'method':14s} " + " ".join(f"{k:>16s}" for k in keys))
    for name, m in methods.items():
        if m.get("status", "ok") != "ok":
            print(f"{name:14s} {m['status']}")
            continue
        print(f"{name:14s} " + " ".join(f"{m[k]:16.4f}" if k in m else f"{'n/a':>16s}" for k in keys))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, help="training file (default: the shared sdss_mgs_photoz_train.csv)")
    parser.add_argument("--test", type=Path, help="separate test file; default: k-fold cross-validation")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (default: %(default)s)")
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default=json.dumps(DEFAULT_PARAMS),
                        help="JSON of GalaxyPosterior parameters (default: %(default)s)")
    parser.add_argument("--peers", default="",
                        help="comma-separated peer methods to run on the same rows: flexzboost, pzflow, sbi")
    args = parser.parse_args(argv)
    peer_names = []
    if args.peers:
        from peers import parse_peers  # benchmarks/peers.py, beside this script

        try:
            peer_names = parse_peers(args.peers)
        except ValueError as err:
            parser.error(str(err))

    train_path = args.train or (shared_data_dir() or Path("missing")) / "sdss_mgs_photoz_train.csv"
    if not train_path.is_file():
        raise SystemExit(f"training file {train_path} not found (set $ASTRO_GALPOST_DATA or pass --train)")
    table = Table.read(train_path)
    params = {"random_state": args.seed, **json.loads(args.params)}
    if args.test:
        splits = [(table, Table.read(args.test))]
    else:
        order = np.random.default_rng(args.seed).permutation(len(table))
        folds = np.array_split(order, args.folds)
        splits = [(table[np.concatenate(folds[:k] + folds[k + 1:])], table[folds[k]]) for k in range(args.folds)]

    samples, preds, truths, fit_times, base_times, peer_folds = [], [], [], [], [], {}
    for k, (train, test) in enumerate(splits):
        s, fit_seconds = run_galpost(train, test, params, args.n_samples)
        p, base_seconds = run_baseline(train, test, args.seed)
        samples.append(s)
        preds.append(p)
        truths.append(np.asarray(test["zs"], float))
        fit_times.append(fit_seconds)
        base_times.append(base_seconds)
        print(f"split {k + 1}/{len(splits)}: {len(train)} train, {len(test)} test, fit {fit_seconds:.1f} s", flush=True)
        if peer_names:
            run_peers(peer_names, train, test, args.n_samples, args.seed, peer_folds)

    truth = np.concatenate(truths)
    ours = evaluate(np.concatenate(samples), truth)
    ours["fit_seconds"] = float(np.mean(fit_times))
    base = point_only(np.concatenate(preds), truth)
    base["fit_seconds"] = float(np.mean(base_times))

    print(f"\nPhotometric redshift, {len(truth)} held-out SDSS MGS galaxies "
          f"({'test file' if args.test else f'{len(splits)}-fold cross-validation'})")
    print(f"{'metric':18s} {'galpost':>10s} {'HGB baseline':>13s} {'galpost/HGB':>12s}  goal")
    for key in ("r2", "rmse", "sigma_nmad", "outlier_fraction", "pit_ks", "coverage_68", "coverage_95", "fit_seconds"):
        b = base.get(key)
        ratio = f"{ours[key] / b:12.3f}" if b else f"{'':12s}"
        goal = GOALS.get(key)
        goal_text = ""
        if goal:
            op, value = goal
            ok = (ours[key] >= value if op == ">=" else ours[key] <= value if op == "<=" else value[0] <= ours[key] <= value[1])
            goal_text = f"{op} {value}  {'met' if ok else 'NOT met'}"
        b_text = f"{b:13.4f}" if b is not None else f"{'n/a':>13s}"
        print(f"{key:18s} {ours[key]:10.4f} {b_text} {ratio}  {goal_text}")
    result = {"n_test": int(len(truth)), "splits": len(splits), "params": params,
              "galpost": ours, "baseline_hgb": base}
    if peer_names:
        peer_results = {name: summarise_peer(peer_folds[name], truth) for name in peer_names}
        print_methods({"galpost": ours, "HGB baseline": base, **peer_results})
        result["peers"] = peer_results
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
