"""Joint calibration: targets, derived quantities and per-bin coverage, with missing labels.

The product of `~astro_galpost.GalaxyPosterior` is the *joint* posterior: sSFR, a
Balmer decrement, line ratios or the Hα SFR against the SFR label are calibrated only
if the draws keep the right correlations. On the mock catalog
(`~astro_galpost.datasets.make_mock_catalog`: σ, hence M_BH, measured only where SDSS
measures it, undetected lines, MPA-JHU label noise), this script fits the default
model (one network at the full size, three at ``--quick``'s 2,500 rows) and reports on held-out galaxies:

* per target: PIT KS statistic and 68%/95% central-interval coverage, and the width
  factor fitted on the held-out rows with its bootstrap 16th-84th percentiles
  (``GalaxyPosterior.residual_scale_intervals_``);
* per derived quantity (`~astro_galpost.evaluation.DERIVED_QUANTITIES`: sSFR,
  log M_BH − log M*, Hα SFR − SFR, Balmer decrement, N2, O3): the same statistics;
* per quintile of r magnitude, redshift and g − r colour: 68% coverage of every target;
* the within-galaxy correlation of (log SFR, log Hα) against the correlation of the
  test-set errors.

Experiments (each a fit on its own training rows, all evaluated on the same test rows):

``default``     the default single model on the mock as generated;
``ensemble``    a deep ensemble (``--ensemble K`` members, 0 to skip) on the same rows;
``complete``    the default model on the training galaxies that have a measured σ,
                evaluated on the test galaxies that have one (the same population);
``stress``      the same galaxies with 60% of M_BH and 30% of each line flux removed
                completely at random, evaluated likewise: the learned mean
                within-galaxy correlation of (log M_BH, log M*) must stay within 0.05
                of ``complete``'s.

``imputation_time_per_epoch_ratio`` in the verdict is the stress fit's seconds per
joint epoch over the complete fit's, each with its head refinement's time included
(``refine_heads``, see ``docs/training.rst``): an upper bound on the per-epoch cost of
imputing the removed labels.

Goals (issue 15): every target and each derived quantity KS ≤ 0.05 and 68% coverage
within ±0.05 of nominal with the default single model; every quintile's 68% coverage
within ±0.07; the stress correlation within 0.05 of the complete one. Hyperparameters
are the package defaults, fixed in advance; the test galaxies take part in no choice.

The goals are judged on finite test samples, so each verdict comes with
``chance_if_calibrated``: how often a perfectly calibrated posterior would meet it at
the same numbers of galaxies (`~astro_galpost.evaluation.calibrated_pass_chance`).
With 2,000 test galaxies that chance is about 0.2 for the quintile goal (a quintile of
the ~700 metallicity galaxies holds 140, whose 68% coverage scatters by ±0.04); the
full run therefore holds out 8,000 test galaxies, where it is above 0.99.

    python benchmarks/joint_calibration.py [--quick] [--threads 1] [--ensemble 3] [--seed 0]
        [--only default,ensemble,complete,stress] [--peers flexzboost,pzflow,sbi]

``--peers`` fits peer methods (``benchmarks/peers.py``, the optional extra ``peers``,
library defaults fixed in advance) on the ``default`` experiment's training rows that
have all three core targets (log M*, log SFR, redshift) labelled -- the peers cannot
learn from a row with a missing label -- from dereddened ugriz magnitudes and the four
adjacent colours, and evaluates them on the same test rows: PIT KS and coverage of each
core target and of sSFR = log SFR − log M*. FlexZBoost is univariate: its targets are
drawn independently, so its sSFR calibration is what independence gives.

The last line printed is one JSON object with all figures.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
import torch
from astropy.table import Table

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import make_mock_catalog
from astro_galpost.evaluation import (
    calibrated_pass_chance,
    coverage,
    derived_calibration,
    local_calibration,
    model_space_samples,
    model_space_truth,
    pit,
    pit_ks,
    to_markdown,
)

SETTINGS = {
    "full": {"n_train": 6000, "n_test": 8000, "n_samples": 500, "params": {}},
    "quick": {"n_train": 2500, "n_test": 1000, "n_samples": 300, "params": {"max_epochs": 40}},
}
CORE_TARGETS = ("log_mstar", "log_sfr", "redshift")
LINE_COLUMNS = ("h_alpha_flux", "h_beta_flux", "nii_6584_flux", "oiii_5007_flux")
KS_GOAL, COVERAGE_GOAL, BIN_GOAL, CORR_GOAL = 0.05, 0.05, 0.07, 0.05


def remove_at_random(table: Table, rng: np.random.Generator) -> Table:
    """A copy with 60% of log_mbh and 30% of each line flux set missing, completely at random."""
    out = table.copy()
    out["log_mbh"] = np.where(rng.random(len(out)) < 0.6, np.nan, np.asarray(out["log_mbh"], float))
    for col in LINE_COLUMNS:
        out[col] = np.where(rng.random(len(out)) < 0.3, np.nan, np.asarray(out[col], float))
    return out


def within_correlation(post, a: str, b: str) -> float:
    """Mean over galaxies of the correlation of two targets' draws (model space)."""
    sa, sb = model_space_samples(post[a], a), model_space_samples(post[b], b)
    ok = np.all(np.isfinite(sa), 1) & np.all(np.isfinite(sb), 1)
    sa, sb = sa[ok] - sa[ok].mean(1, keepdims=True), sb[ok] - sb[ok].mean(1, keepdims=True)
    return float(np.mean((sa * sb).mean(1) / (sa.std(1) * sb.std(1))))


def error_correlation(post, test: Table, a: str, b: str) -> float:
    """Correlation over galaxies of the errors of the posterior medians of two targets."""
    ea = model_space_truth(test, a) - np.median(model_space_samples(post[a], a), 1)
    eb = model_space_truth(test, b) - np.median(model_space_samples(post[b], b), 1)
    ok = np.isfinite(ea) & np.isfinite(eb)
    return float(np.corrcoef(ea[ok], eb[ok])[0, 1])


def target_table(post, test: Table) -> Table:
    rows = []
    for name in post:
        s, t = model_space_samples(post[name], name), model_space_truth(test, name)
        ok = np.isfinite(t) & np.all(np.isfinite(s), 1)
        cov = coverage(s[ok], t[ok], levels=[0.68, 0.95])
        rows.append((name, int(ok.sum()), pit_ks(pit(s[ok], t[ok], rng=0)).statistic, cov[0], cov[1]))
    return Table(rows=rows, names=["quantity", "n", "pit_ks", "coverage_68", "coverage_95"])


def bin_table(post, test: Table) -> Table:
    """Per quintile of r, redshift and g − r: the lowest, highest and worst 68% coverage of each target.

    The quintiles are those of each target's labelled test galaxies (`local_calibration`);
    ``n_per_bin`` is the smallest number of galaxies in one of them.
    """
    colour = np.asarray(test["modelMag_g"], float) - np.asarray(test["modelMag_r"], float)
    rows = []
    for label, by in (("r mag", "modelMag_r"), ("redshift", "redshift"), ("g-r", colour)):
        local = local_calibration(post, test, by, bins=5)
        for name in post:
            mine = local["target"] == name
            cov = np.asarray(local["coverage_68"][mine], float)
            worst = cov[int(np.nanargmax(np.abs(cov - 0.68)))]
            rows.append((label, name, int(np.min(local["n"][mine])), float(np.nanmin(cov)), float(np.nanmax(cov)),
                         float(worst)))
    return Table(rows=rows, names=["binned by", "target", "n_per_bin", "min_coverage_68", "max_coverage_68",
                                   "worst"])


def evaluate(post, test: Table) -> dict:
    targets = target_table(post, test)
    derived = derived_calibration(post, test)
    bins = bin_table(post, test)
    return {
        "targets": targets, "derived": derived, "bins": bins,
        "corr_sfr_halpha_within": within_correlation(post, "log_sfr", "halpha"),
        "corr_sfr_halpha_errors": error_correlation(post, test, "log_sfr", "halpha"),
        "corr_mbh_mstar_within": within_correlation(post, "log_mbh", "log_mstar"),
    }


def fit_and_evaluate(name: str, train: Table, test: Table, cfg: dict, seed: int, extra: dict) -> dict:
    t0 = time.perf_counter()
    gp = GalaxyPosterior(random_state=seed, progress=False, **{**cfg["params"], **extra}).fit(train)
    fit_s = time.perf_counter() - t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = gp.sample(test, n_samples=cfg["n_samples"])
    result = evaluate(post, test)
    names = result["targets"]["quantity"]
    result["targets"]["width_factor"] = [float(gp.residual_scales_[n][0]) for n in names]
    for k, percentile in enumerate(("factor_16", "factor_84")):
        result["targets"][percentile] = [float(gp.residual_scale_intervals_[n][k]) for n in names]
    epochs = [len(h.train_loss) for h in gp.history_]
    result.update(fit_seconds=fit_s, n_train=len(train), epochs=epochs,
                  seconds_per_epoch=fit_s / max(sum(epochs), 1))
    result["refined"] = [h.refined for h in gp.history_]
    print(f"\n## {name}: {len(train)} training galaxies, {len(test)} test galaxies, "
          f"fit {fit_s:.0f} s ({result['seconds_per_epoch']:.2f} s per joint epoch, the head refinement's "
          f"time included; joint epochs {epochs}, refinement epochs kept {result['refined']})")
    print(to_markdown(result["targets"], title=f"{name}: targets"))
    print(to_markdown(result["derived"], title=f"{name}: derived quantities"))
    print(to_markdown(result["bins"], title=f"{name}: 68% coverage per quintile"))
    print(f"within-galaxy corr(log SFR, log Hα) {result['corr_sfr_halpha_within']:.3f}; "
          f"corr of the test-set errors {result['corr_sfr_halpha_errors']:.3f}; "
          f"within-galaxy corr(log M_BH, log M*) {result['corr_mbh_mstar_within']:.3f}")
    return result


def peer_inputs(table: Table) -> np.ndarray:
    """Dereddened ugriz model magnitudes and the four adjacent colours."""
    mags = np.column_stack([np.asarray(table[f"modelMag_{b}"], float) - np.asarray(table[f"extinction_{b}"], float)
                            for b in "ugriz"])
    return np.column_stack([mags, -np.diff(mags, axis=1)])


def run_peers(names: list[str], train: Table, test: Table, cfg: dict, seed: int) -> dict:
    """Fit each peer on the training rows with every core target labelled; evaluate on ``test``."""
    from peers import run_peer  # benchmarks/peers.py, beside this script

    x, y = peer_inputs(train), np.column_stack([model_space_truth(train, n) for n in CORE_TARGETS])
    keep = np.all(np.isfinite(x), 1) & np.all(np.isfinite(y), 1)
    print(f"\n## peers: {int(keep.sum())} of {len(train)} training galaxies have all of {', '.join(CORE_TARGETS)} "
          f"labelled (the peers cannot use a row with a missing label); {len(test)} test galaxies")
    results = {}
    for name in names:
        run = run_peer(name, x[keep], y[keep], peer_inputs(test), cfg["n_samples"], seed)
        results[name] = {"status": run["status"], "n_train": int(keep.sum())}
        if run["status"] != "ok":
            print(f"\n### {name}: {run['status']}")
            continue
        post = {n: run["samples"][:, :, j] for j, n in enumerate(CORE_TARGETS)}
        results[name].update(targets=target_table(post, test), derived=derived_calibration(post, test, ["log_ssfr"]),
                             fit_seconds=run["fit_seconds"], sample_seconds=run["sample_seconds"])
        print(f"\n### {name}: fit {run['fit_seconds']:.0f} s, sampling {run['sample_seconds']:.0f} s")
        print(to_markdown(results[name]["targets"], title=f"{name}: targets"))
        print(to_markdown(results[name]["derived"], title=f"{name}: derived quantities"))
    return results


def print_comparison(methods: dict[str, dict]) -> None:
    """One row per method: PIT KS and 68% coverage of the core targets and of sSFR."""
    names = (*CORE_TARGETS, "log_ssfr")
    print("\n## Side by side (same test rows): PIT KS / 68% coverage\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for method, r in methods.items():
        if r.get("status", "ok") != "ok":
            print(f"| {method} | {r['status']} |" + " |" * (len(names) - 1))
            continue
        rows = {**calibration_rows(r["targets"]), **calibration_rows(r["derived"])}
        cells = [f"{rows[n]['pit_ks']:.3f} / {rows[n]['coverage_68']:.3f}" if n in rows else "n/a" for n in names]
        print(f"| {method} | " + " | ".join(cells) + " |")
    if "flexzboost" in methods:
        print("\nFlexZBoost draws each target independently: its sSFR row is what independence gives.")


def pass_chances(result: dict, repeats: int = 1000, seed: int = 0) -> dict:
    """Chance that a perfectly calibrated posterior meets each goal at this result's sample sizes.

    `~astro_galpost.evaluation.calibrated_pass_chance` for the targets, the derived
    quantities and the quintiles (treated as independent) at their numbers of galaxies.
    """
    t, d, b = result["targets"], result["derived"], result["bins"]
    calibrated = dict(ks_goal=KS_GOAL, coverage_goal=COVERAGE_GOAL, repeats=repeats, rng=seed)
    return {"targets": calibrated_pass_chance(list(t["n"]), **calibrated),
            "derived": calibrated_pass_chance([n for n in d["n"] if n > 0], **calibrated),
            "quintiles_coverage_68": calibrated_pass_chance([n for n in b["n_per_bin"] for _ in range(5)],
                                                            ks_goal=None, coverage_goal=BIN_GOAL,
                                                            repeats=repeats, rng=seed)}


def goals(result: dict) -> dict:
    t, d, b = result["targets"], result["derived"], result["bins"]
    dks = np.asarray(d["pit_ks"], float)
    dcov = np.asarray(d["coverage_68"], float)
    return {
        "targets_ks": bool(np.all(np.asarray(t["pit_ks"]) <= KS_GOAL)),
        "targets_coverage_68": bool(np.all(np.abs(np.asarray(t["coverage_68"]) - 0.68) <= COVERAGE_GOAL)),
        "derived_ks": bool(np.all(dks[np.isfinite(dks)] <= KS_GOAL)),
        "derived_coverage_68": bool(np.all(np.abs(dcov[np.isfinite(dcov)] - 0.68) <= COVERAGE_GOAL)),
        "quintiles_coverage_68": bool(np.all(np.abs(np.asarray(b["worst"]) - 0.68) <= BIN_GOAL)),
        "chance_if_calibrated": pass_chances(result),
    }


def calibration_rows(table: Table) -> dict:
    """``{quantity: {pit_ks, coverage_68, coverage_95[, width factor and its 16th/84th percentiles]}}``."""
    columns = [c for c in ("pit_ks", "coverage_68", "coverage_95", "width_factor", "factor_16", "factor_84")
               if c in table.colnames]
    return {str(r["quantity"]): {c: round(float(r[c]), 4) for c in columns} for r in table}


def summary(result: dict) -> dict:
    out = {k: v for k, v in result.items() if not isinstance(v, Table)}
    for key in ("targets", "derived"):
        if key in result:
            out[key] = calibration_rows(result[key])
    if "bins" in result:
        out["worst_quintile_coverage_68"] = {f"{r['binned by']}|{r['target']}": round(float(r["worst"]), 3)
                                             for r in result["bins"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer galaxies and epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--ensemble", type=int, default=3, help="members of the ensemble experiment (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="default,ensemble,complete,stress")
    parser.add_argument("--peers", default="",
                        help="comma-separated peer methods fitted on the default experiment's rows: "
                             "flexzboost, pzflow, sbi")
    args = parser.parse_args()
    peer_names = []
    if args.peers:
        from peers import parse_peers  # benchmarks/peers.py, beside this script

        try:
            peer_names = parse_peers(args.peers)
        except ValueError as err:
            parser.error(str(err))
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what the package's fits read
    torch.set_num_threads(args.threads)
    cfg = SETTINGS["quick" if args.quick else "full"]
    cat = make_mock_catalog(cfg["n_train"] + cfg["n_test"], random_state=args.seed)
    train, test = cat[: cfg["n_train"]], cat[cfg["n_train"]:]
    has_sigma = np.isfinite(model_space_truth(train, "log_mbh"))
    print(f"# Joint calibration on the mock: {len(train)} training / {len(test)} test galaxies, seed {args.seed}, "
          f"{args.threads} torch thread(s); M_BH measured for {has_sigma.mean():.0%} of the training galaxies")
    wanted = args.only.split(",")
    results = {}
    if "default" in wanted:
        results["default"] = fit_and_evaluate("default", train, test, cfg, args.seed, {})
    # σ is measured in early-type spectra only: the complete and stress models learn from those
    # galaxies, so they are judged on test galaxies of the same population
    test_sigma = test[np.isfinite(model_space_truth(test, "log_mbh"))]
    if "complete" in wanted:
        results["complete"] = fit_and_evaluate("complete", train[has_sigma], test_sigma, cfg, args.seed, {})
    if "stress" in wanted:
        stressed = remove_at_random(train[has_sigma], np.random.default_rng(args.seed + 1))
        results["stress"] = fit_and_evaluate("stress", stressed, test_sigma, cfg, args.seed, {})
    if "ensemble" in wanted and args.ensemble > 0:
        results["ensemble"] = fit_and_evaluate(f"ensemble of {args.ensemble}", train, test, cfg, args.seed,
                                               {"n_ensemble": args.ensemble})

    peer_results = run_peers(peer_names, train, test, cfg, args.seed) if peer_names else {}
    if peer_results:
        galpost = {"galpost default": results["default"]} if "default" in results else {}
        print_comparison({**galpost, **peer_results})

    verdict = {name: goals(r) for name, r in results.items()}
    if "complete" in results and "stress" in results:
        gap = abs(results["stress"]["corr_mbh_mstar_within"] - results["complete"]["corr_mbh_mstar_within"])
        verdict["stress_correlation_gap"] = round(gap, 4)
        verdict["stress_correlation_goal"] = bool(gap <= CORR_GOAL)
        ratio = results["stress"]["seconds_per_epoch"] / results["complete"]["seconds_per_epoch"]
        verdict["imputation_time_per_epoch_ratio"] = round(ratio, 2)
    print("\n## Goals")
    for name, v in verdict.items():
        print(f"- {name}: {v}")
    print(json.dumps({"benchmark": "joint_calibration", "quick": args.quick, "threads": args.threads,
                      "seed": args.seed, "n_train": len(train), "n_test": len(test),
                      "results": {k: summary(r) for k, r in results.items()}, "goals": verdict,
                      **({"peers": {k: summary(r) for k, r in peer_results.items()}} if peer_results else {})},
                     default=float))


if __name__ == "__main__":
    main()
