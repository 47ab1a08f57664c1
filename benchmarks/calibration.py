"""Calibration of the posteriors and the seed paper's Tables 1 and 2, on the mock and on real SDSS data.

Three experiments, each a deep ensemble (K = 5 by default) fitted on a training
split and evaluated on held-out galaxies:

``mock``
    All nine targets of the paper on the project's MOCK catalog
    (`~astro_galpost.datasets.make_mock_catalog`; 6000 train / 5000 test: about a
    third of the mock has a metallicity, and a KS statistic from n galaxies has a
    noise floor near 0.9/sqrt(n), so the test set must be large to resolve 0.05). The
    test galaxies are drawn from the same joint distribution as the training
    set, so the SBC ranks test calibration averaged over that distribution.
``sdss_photoz``
    Redshift from ugriz on the real SDSS Main Galaxy Sample galaxies of the
    shared ``sdss_mgs_photoz_train.csv`` (a random 20% held out).
``eco``
    Stellar mass and the four emission-line fluxes from ugriz on the real ECO
    galaxies of the shared ``eco_snr5.fits`` (20% held out; magnitudes of 0
    are missing). Low redshift (cz 3000-7500 km/s): not comparable with the
    paper's SDSS-wide numbers.

For each it prints the R² of the posterior medians (Table 1 layout, with the
paper's rows for reference), the aleatoric/epistemic decomposition (Table 2
layout; lines in log10, also the paper's log1p space for the mock), the
calibration statistics per target (PIT KS, 68/95% coverage, CRPS, SBC) and
the joint checks (TARP, whitened HPD coverage), then the goals:

* PIT KS <= 0.05 and 68%/95% coverage within ±0.05 of nominal for every
  target on the mock, and for redshift on real SDSS;
* an ensemble whose epistemic spread is smaller than its aleatoric spread.

The last line printed is one JSON object with all figures.

    python benchmarks/calibration.py [--quick] [--only mock,sdss_photoz,eco] [--report folder]
        [--params '{"mock": {"max_epochs": 40}}']

``--quick`` uses fewer galaxies, epochs and samples (a few minutes on 2 cores);
without it the run takes about 7 minutes on 2 CPU cores (1 torch thread).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import make_mock_catalog, shared_data_dir
from astro_galpost.evaluation import (
    evaluate_samples,
    table1,
    table2,
    to_markdown,
    uncertainty_decomposition,
    write_report,
)

BANDS = list("ugriz")
ECO_BANDS = [f"{b}mag" for b in "ugriz"]
ECO_TARGETS = {"log_mstar": "logmstar", "halpha": "h_alpha_flux", "hbeta": "h_beta_flux",
               "nii_6584": "nii_6584_flux", "oiii_5007": "oiii_5007_flux"}

#: Small, fast flows: 6 coupling layers of 64-unit MLPs instead of the paper's 12 of 128.
_FAST_FLOWS = {"core": ("realnvp", {"transforms": 6, "hidden_features": [64, 64]}),
               "metallicity": ("affine1d", {"hidden_features": [64, 64]}),
               "lines": ("realnvp", {"transforms": 6, "hidden_features": [64, 64]})}
_COMMON = {"representation": 64, "hidden": 128, "n_ensemble": 5, "batch_size": 256, "learning_rate": 2e-3,
               "weight_decay": 1e-4, "progress": False}

#: Per experiment: data sizes, sampling and GalaxyPosterior parameters (full run / --quick).
SETTINGS = {
    "mock": {
        "full": {"n_train": 6000, "n_test": 5000, "n_samples": 500, "n_decomp": 200,
                     "params": dict(_COMMON, max_epochs=60, patience=10, flows=_FAST_FLOWS)},
        "quick": {"n_train": 3000, "n_test": 2000, "n_samples": 300, "n_decomp": 100,
                      "params": dict(_COMMON, max_epochs=25, patience=6, flows=_FAST_FLOWS)},
    },
    "sdss_photoz": {
        "full": {"test_fraction": 0.2, "n_samples": 500, "n_decomp": 200,
                     "params": dict(_COMMON, max_epochs=80, patience=12, dropout=0.1)},
        "quick": {"test_fraction": 0.2, "n_samples": 300, "n_decomp": 100,
                      "params": dict(_COMMON, max_epochs=30, patience=6, dropout=0.1)},
    },
    "eco": {
        "full": {"test_fraction": 0.2, "n_samples": 500, "n_decomp": 200,
                     "params": dict(_COMMON, max_epochs=80, patience=12, dropout=0.1,
                                 flows={"core": ("nsf", {"hidden_features": [64, 64]}),
                                        "lines": _FAST_FLOWS["lines"]})},
        "quick": {"test_fraction": 0.2, "n_samples": 300, "n_decomp": 100,
                      "params": dict(_COMMON, max_epochs=30, patience=6, dropout=0.1,
                                  flows={"core": ("nsf", {"hidden_features": [64, 64]}),
                                         "lines": _FAST_FLOWS["lines"]})},
    },
}
LABELS = {"mock": "Photometry + NF (ours, mock)", "sdss_photoz": "Photometry + NF (ours, SDSS MGS)",
          "eco": "Photometry + NF (ours, ECO)"}
#: Targets the calibration goals apply to, per experiment (None: all).
GOAL_TARGETS = {"mock": None, "sdss_photoz": ["redshift"], "eco": []}


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def load(name: str, cfg: dict, seed: int) -> tuple[Table, Table, dict]:
    """Training table, test table and GalaxyPosterior keyword arguments of an experiment."""
    if name == "mock":
        cat = make_mock_catalog(cfg["n_train"] + cfg["n_test"], random_state=seed)
        return cat[: cfg["n_train"]], cat[cfg["n_train"]:], {}
    data = shared_data_dir()
    if data is None:
        raise FileNotFoundError("shared SDSS data not found (set $ASTRO_GALPOST_DATA)")
    if name == "sdss_photoz":
        table = Table.read(data / "sdss_mgs_photoz_train.csv")
        kwargs = {"targets": {"redshift": "zs"}, "photometry": BANDS}
    elif name == "eco":
        table = Table.read(data / "eco_snr5.fits")
        table = table[ECO_BANDS + [f"e_{b}" for b in ECO_BANDS] + list(ECO_TARGETS.values())]
        kwargs = {"targets": ECO_TARGETS, "photometry": ECO_BANDS}
    else:
        raise ValueError(f"unknown experiment {name!r}")
    train, test = _split(len(table), cfg["test_fraction"], seed)
    return table[train], table[test], kwargs


def run(name: str, cfg: dict, seed: int, extra: dict) -> dict:
    t0 = time.perf_counter()
    train, test, kwargs = load(name, cfg, seed)
    params = {**cfg["params"], **kwargs, **extra, "random_state": seed}
    gp = GalaxyPosterior(**params).fit(train)
    fit_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few unusable rows are reported below
        samples = gp.sample(test, n_samples=cfg["n_samples"], batch_size=256)
    metrics = evaluate_samples(samples, test, columns=gp.targets_, rng=seed)
    # the same on the galaxies with every label of a group measured (what each group's flow is trained on)
    metrics_complete = evaluate_samples(samples, test, columns=gp.targets_, rng=seed, joint=False,
                                        complete_groups=True)
    sample_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    decomposition = uncertainty_decomposition(gp, test, n_samples=cfg["n_decomp"])
    decomposition_log1p = (uncertainty_decomposition(gp, test, n_samples=cfg["n_decomp"], line_space="log1p")
                           if any(t in gp.targets_ for t in ECO_TARGETS if t != "log_mstar") else None)
    decomp_seconds = time.perf_counter() - t2
    epochs = [len(h.val_loss) for h in gp.history_]
    return {"name": name, "model": gp, "samples": samples, "test": test, "metrics": metrics,
                "metrics_complete": metrics_complete, "decomposition": decomposition,
                "decomposition_log1p": decomposition_log1p, "n_train": len(train), "n_test": len(test),
                "n_unusable": int((~samples.usable).sum()), "epochs": epochs,
                "seconds": {"fit": fit_seconds, "sample_evaluate": sample_seconds, "decomposition": decomp_seconds},
                "params": {k: v for k, v in params.items() if k != "flows"} | {"flows": gp.flows_}}


def goals(result: dict, key: str = "metrics") -> dict:
    """Which calibration and decomposition goals an experiment meets."""
    metrics = result[key]
    wanted = GOAL_TARGETS[result["name"]]
    out = {}
    for row in metrics:
        name = str(row["target"])
        if wanted is not None and name not in wanted:
            continue
        out[name] = {
            "pit_ks<=0.05": bool(row["pit_ks"] <= 0.05),
            "coverage_68 in 0.63-0.73": bool(abs(row["coverage_68"] - 0.68) <= 0.05),
            "coverage_95 in 0.90-1.00": bool(abs(row["coverage_95"] - 0.95) <= 0.05),
        }
    dec = result["decomposition"]
    out["epistemic<aleatoric"] = {name: bool(dec[name][1] < dec[name][0]) for name in dec.colnames[1:]}
    return out


def _fmt(table: Table) -> str:
    return to_markdown(table, floatfmt=".3f")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer galaxies, epochs and samples")
    parser.add_argument("--only", default="mock,sdss_photoz,eco", help="experiments to run (comma separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", default="{}",
                        help='JSON {experiment: {GalaxyPosterior parameter: value}} overriding the defaults')
    parser.add_argument("--report", type=Path, help="also write Markdown + ECSV tables to this folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what the package's fits read
    torch.set_num_threads(args.threads)
    extra = json.loads(args.params)
    mode = "quick" if args.quick else "full"
    names = [n.strip() for n in args.only.split(",") if n.strip()]

    start = time.perf_counter()
    results = {}
    for name in names:
        cfg = SETTINGS[name][mode]
        try:
            results[name] = run(name, cfg, args.seed, extra.get(name, {}))
        except FileNotFoundError as err:
            print(f"[{name}] skipped: {err}")
            continue
        r = results[name]
        print(f"[{name}] {r['n_train']} train / {r['n_test']} test ({r['n_unusable']} unusable), "
              f"K={len(r['model'].networks_)}, epochs per member {r['epochs']}, "
              f"fit {r['seconds']['fit']:.0f} s, sample+evaluate {r['seconds']['sample_evaluate']:.0f} s, "
              f"decomposition {r['seconds']['decomposition']:.0f} s", flush=True)

    tables: dict[str, Table] = {}
    t1 = table1({LABELS[n]: (r["samples"], r["test"], r["model"].targets_) for n, r in results.items()},
                include_paper=True)
    tables["table1_r2"] = t1
    print("\n## Table 1: R² of the posterior medians (lines in log10; paper rows for reference)\n")
    print(_fmt(t1))
    for name, r in results.items():
        t2 = table2(r["decomposition"], include_total=True)
        tables[f"table2_{name}"] = t2
        print(f"\n## Table 2 ({name}): aleatoric/epistemic spread, RMS over {r['n_test']} test galaxies "
              f"(K={r['decomposition'].meta['n_ensemble']}, lines in log10 dex)\n")
        print(_fmt(t2))
        if r["decomposition_log1p"] is not None:
            t2p = table2(r["decomposition_log1p"], include_paper=True)
            tables[f"table2_{name}_log1p"] = t2p
            print(f"\n## Table 2 ({name}), lines in the paper's log1p space, with the paper's values\n")
            print(_fmt(t2p))
    cols = ["target", "space", "n", "r2", "rmse", "bias", "sigma_nmad", "outlier_fraction", "pit_ks",
            "pit_ks_pvalue", "pit_cvm", "coverage_68", "coverage_95", "crps", "sbc_pvalue"]
    for name, r in results.items():
        tables[f"calibration_{name}"] = r["metrics"]
        print(f"\n## Calibration ({name}; redshift residuals are Δz/(1+z))\n")
        print(_fmt(r["metrics"][cols]))
        differ = [i for i, (a, b) in enumerate(zip(r["metrics"]["n"], r["metrics_complete"]["n"])) if a != b]
        if differ:
            print("\nSame, only on galaxies with every label of the target's group measured "
                  "(the rows each group's flow is trained on):\n")
            print(_fmt(r["metrics_complete"][cols][differ]))
        joint = r["metrics"].meta.get("joint", {})
        for group, j in joint.items():
            print(f"joint {group} ({j['targets']}, n={j['n']}): TARP ATC {j['tarp_atc']:+.3f}, "
                  f"KS {j['tarp_ks']:.3f} (p={j['tarp_ks_pvalue']:.3g}), HPD coverage 68% {j['hpd_68']:.3f}, "
                  f"95% {j['hpd_95']:.3f}")

    print("\n## Goals")
    summary = {"mode": mode, "seed": args.seed, "experiments": {}}
    for name, r in results.items():
        g = goals(r)
        gc = goals(r, "metrics_complete")
        for target, checks in g.items():
            if target == "epistemic<aleatoric":
                missed = [t for t, ok in checks.items() if not ok]
                print(f"[{name}] epistemic < aleatoric for every target: {'met' if not missed else 'NOT met: ' + ', '.join(missed)}")
                continue
            missed = [c for c, ok in checks.items() if not ok]
            text = "all met" if not missed else "NOT met: " + ", ".join(missed)
            if gc[target] != checks:
                missed_c = [c for c, ok in gc[target].items() if not ok]
                text += f"   | complete-group rows: {'all met' if not missed_c else 'NOT met: ' + ', '.join(missed_c)}"
            print(f"[{name}] {target:11s}: {text}")
        m = r["metrics"]
        dec = r["decomposition"]
        summary["experiments"][name] = {
            "n_train": r["n_train"], "n_test": r["n_test"], "n_unusable": r["n_unusable"],
            "epochs": r["epochs"], "seconds": {k: round(v, 1) for k, v in r["seconds"].items()},
            "params": r["params"],
            "targets": {str(row["target"]): {k: (float(row[k]) if k != "n" else int(row[k]))
                                             for k in ("n", "r2", "rmse", "sigma_nmad", "pit_ks", "pit_cvm",
                                                       "coverage_68", "coverage_95", "crps", "sbc_pvalue")}
                        for row in m},
            "targets_complete_groups": {
                str(row["target"]): {k: (float(row[k]) if k != "n" else int(row[k]))
                                     for k in ("n", "bias", "pit_ks", "coverage_68", "coverage_95")}
                for row in r["metrics_complete"]},
            "joint": m.meta.get("joint", {}),
            "sigma_ale": {c: float(dec[c][0].value) for c in dec.colnames[1:]},
            "sigma_epi": {c: float(dec[c][1].value) for c in dec.colnames[1:]},
            "goals": g,
            "goals_complete_groups": gc,
        }
    summary["all_goals_met"] = all(
        ok for e in summary["experiments"].values() for checks in e["goals"].values() for ok in checks.values())
    summary["all_goals_met_complete_groups"] = all(
        ok for e in summary["experiments"].values() for checks in e["goals_complete_groups"].values()
        for ok in checks.values())
    summary["seconds_total"] = round(time.perf_counter() - start, 1)
    if args.report:
        files = write_report(tables, args.report, overwrite=True)
        print(f"\nreport written: {', '.join(str(f) for f in files)}")
    print(f"\ntotal {summary['seconds_total']:.0f} s")
    print(json.dumps(summary, default=str))
    return summary


if __name__ == "__main__":
    main()
