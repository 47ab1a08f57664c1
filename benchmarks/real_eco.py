"""Photometry-only posteriors on real ECO and RESOLVE galaxies, against gradient boosting.

ECO (``eco_snr5.fits``, 2,827 galaxies, cz 3000-7500 km/s, so z < 0.025): stellar
mass (SED fit ``logmstar``), log SFR (NUV, ``log10 sfr_nuv``) and the MPA-JHU
fibre fluxes of Hα, [N II] 6584 and [O III] 5007, on a fixed split (seeded
permutation, first ``--n-train`` rows for training, the rest held out).
`GalaxyPosterior` with its default settings is trained on the same rows as
scikit-learn's ``HistGradientBoostingRegressor`` (one per target, on the same
encoder features, in the modelled space: log for lines). Reported per target:
R² of the posterior median (and of the baseline) in modelled space, PIT
Kolmogorov-Smirnov statistic and 68% central-interval coverage.

RESOLVE (``resolve.fits``): M_BH from the stellar velocity dispersion ``vdisp``
(McConnell & Ma 2013) for the 167 galaxies with a measurement, by k-fold
cross-validation: all 167 (``quality=False``) and the ones whose σ passes
`astro_galpost.physics.sigma_quality` (70-420 km/s).

Inputs, chosen before any run: ugriz magnitudes ``umag … zmag`` with their errors
``e_umag …`` (ECO's own photometry; 0 = missing), plus log ``r50`` and ``r90``
(arcsec) as extra scalar inputs (``--no-sizes`` drops them). ECO's ``ext<band>``
columns are not applied (the magnitudes are used as delivered; train and test
come from the same catalogue). These numbers are not comparable with the seed
paper's SDSS-wide R²: ECO is a low-redshift volume (z < 0.025), where redshift
carries little information and line fluxes span a narrower distance range.

Goals (issue 11): R² above gradient boosting for each target, PIT KS <= 0.05
and 68% coverage in 0.63-0.73 for each. The last line printed is one JSON object.

    nice -n 10 python benchmarks/real_eco.py [--seed 0] [--n-train 2000] [--no-sizes]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from astropy.table import Table

from astro_galpost import GalaxyPosterior
from astro_galpost.datasets import shared_data_dir
from astro_galpost.encoders import PhotometryEncoder
from astro_galpost.evaluation import evaluate_samples, model_space_truth
from astro_galpost.physics import add_mbh_column

BANDS = [f"{b}mag" for b in "ugriz"]
ECO_TARGETS = {"log_mstar": "logmstar", "log_sfr": "log_sfr_nuv", "halpha": "h_alpha_flux",
               "nii_6584": "nii_6584_flux", "oiii_5007": "oiii_5007_flux"}


def encoder(sizes: bool) -> PhotometryEncoder:
    extra = {"r50": "log", "r90": "log"} if sizes else {}
    return PhotometryEncoder(BANDS, errors={b: f"e_{b}" for b in BANDS}, extinction=None, extra=extra)


def hgb_r2(train: Table, test: Table, targets: dict, sizes: bool, seed: int) -> dict:
    """R² (modelled space) of one HistGradientBoostingRegressor per target on the encoder features."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.metrics import r2_score

    enc = encoder(sizes).fit(train)
    x_train, x_test = enc.transform(train)[0], enc.transform(test)[0]
    out = {}
    for name, column in targets.items():
        y_train = model_space_truth(train, name, column)
        y_test = model_space_truth(test, name, column)
        ok_train, ok_test = np.isfinite(y_train), np.isfinite(y_test)
        model = HistGradientBoostingRegressor(random_state=seed).fit(x_train[ok_train], y_train[ok_train])
        out[name] = float(r2_score(y_test[ok_test], model.predict(x_test[ok_test])))
    return out


def galpost_metrics(train: Table, test: Table, targets: dict, sizes: bool, seed: int, n_samples: int) -> tuple:
    t0 = time.perf_counter()
    gp = GalaxyPosterior(targets=targets, encoder=encoder(sizes), random_state=seed, progress=False).fit(train)
    fit_seconds = time.perf_counter() - t0
    samples = gp.sample(test, n_samples=n_samples)
    table = evaluate_samples(samples, test, columns=gp.targets_, sbc=False, joint=False, rng=seed)
    rows = {row["target"]: {"n": int(row["n"]), "r2": float(row["r2"]), "pit_ks": float(row["pit_ks"]),
                            "coverage_68": float(row["coverage_68"])} for row in table}
    return rows, fit_seconds


def eco(args) -> dict:
    table = Table.read(shared_data_dir() / "eco_snr5.fits")
    sfr = np.asarray(table["sfr_nuv"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["log_sfr_nuv"] = np.where(sfr > 0, np.log10(sfr), np.nan)
    order = np.random.default_rng(args.seed).permutation(len(table))
    train, test = table[order[:args.n_train]], table[order[args.n_train:]]
    ours, fit_seconds = galpost_metrics(train, test, ECO_TARGETS, args.sizes, args.seed, args.n_samples)
    base = hgb_r2(train, test, ECO_TARGETS, args.sizes, args.seed)
    print(f"\nECO: {len(train)} train, {len(test)} test (seed {args.seed}), fit {fit_seconds:.0f} s, "
          f"inputs ugriz + errors{' + log r50, r90' if args.sizes else ''}")
    print(f"{'target':10s} {'n':>5s} {'R2 galpost':>10s} {'R2 HGB':>8s} {'PIT KS':>7s} {'cov68':>6s}  goals")
    for name, m in ours.items():
        goals = [m["r2"] > base[name], m["pit_ks"] <= 0.05, 0.63 <= m["coverage_68"] <= 0.73]
        text = ", ".join(f"{g}: {'met' if ok else 'NOT met'}" for g, ok in zip(("R2>HGB", "KS", "cov"), goals))
        print(f"{name:10s} {m['n']:5d} {m['r2']:10.3f} {base[name]:8.3f} {m['pit_ks']:7.3f} "
              f"{m['coverage_68']:6.3f}  {text}")
        m["r2_hgb"] = base[name]
    return {"n_train": len(train), "n_test": len(test), "fit_seconds": fit_seconds, "targets": ours}


def resolve_mbh(args) -> dict:
    table = Table.read(shared_data_dir() / "resolve.fits")
    table = table[np.asarray(table["vdisp"], float) > 0]
    results = {}
    for label, quality in (("all_167", False), ("sigma_70_420", True)):
        t = add_mbh_column(table.copy(), sigma_column="vdisp", quality=quality)
        t = t[~t["log_mbh"].mask]
        folds = np.array_split(np.random.default_rng(args.seed).permutation(len(t)), args.folds)
        samples, truths, base_pred = [], [], []
        from sklearn.ensemble import HistGradientBoostingRegressor

        for k in range(args.folds):
            train = t[np.concatenate(folds[:k] + folds[k + 1:])]
            test = t[folds[k]]
            gp = GalaxyPosterior(targets=["log_mbh"], encoder=encoder(args.sizes), random_state=args.seed,
                                 progress=False).fit(train)
            samples.append(gp.sample(test, n_samples=args.n_samples)["log_mbh"].distribution.value)
            truths.append(np.asarray(test["log_mbh"], float))
            enc = encoder(args.sizes).fit(train)
            hgb = HistGradientBoostingRegressor(random_state=args.seed, min_samples_leaf=5)
            hgb.fit(enc.transform(train)[0], np.asarray(train["log_mbh"], float))
            base_pred.append(hgb.predict(enc.transform(test)[0]))
        row = evaluate_samples({"log_mbh": np.concatenate(samples)}, {"log_mbh": np.concatenate(truths)},
                               sbc=False, joint=False, rng=args.seed)[0]
        truth, pred = np.concatenate(truths), np.concatenate(base_pred)
        r2_hgb = 1 - np.sum((pred - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)
        results[label] = {"n": len(t), "r2": float(row["r2"]), "r2_hgb": float(r2_hgb),
                          "pit_ks": float(row["pit_ks"]), "coverage_68": float(row["coverage_68"])}
    print(f"\nRESOLVE M_BH (McConnell & Ma 2013 from vdisp), {args.folds}-fold cross-validation")
    print(f"{'sample':14s} {'n':>4s} {'R2 galpost':>10s} {'R2 HGB':>8s} {'PIT KS':>7s} {'cov68':>6s}")
    for label, m in results.items():
        print(f"{label:14s} {m['n']:4d} {m['r2']:10.3f} {m['r2_hgb']:8.3f} {m['pit_ks']:7.3f} {m['coverage_68']:6.3f}")
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--folds", type=int, default=5, help="RESOLVE M_BH cross-validation folds")
    parser.add_argument("--no-sizes", dest="sizes", action="store_false", help="ugriz only, no r50/r90")
    parser.add_argument("--skip-resolve", action="store_true")
    args = parser.parse_args(argv)
    if shared_data_dir() is None:
        raise SystemExit("shared SDSS data not found (set $ASTRO_GALPOST_DATA or place it at ../shared/data)")
    import torch

    torch.set_num_threads(1)
    result = {"seed": args.seed, "sizes": args.sizes, "eco": eco(args)}
    if not args.skip_resolve:
        result["resolve_mbh"] = resolve_mbh(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
