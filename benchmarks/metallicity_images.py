"""Metallicity from real SDSS gri images, and images + photometry against photometry on the mock.

1. Real data (``sdss_gri_jpeg_oh/``): 400 SkyServer gri composites with MPA-JHU
   ``oh_p50`` and 100 unlabelled ones. The VAE is trained on the images of the
   training split plus the unlabelled ones (it needs no labels), the image-only
   metallicity posterior on the training split; both are evaluated on held-out
   labelled galaxies (k-fold). Baseline on the same rows: PCA of 32×32
   thumbnails + ``HistGradientBoostingRegressor``. Two image-only posteriors
   are reported: the paper's (VAE latents alone, ``encoder=vae``) and the VAE
   latents plus classical light statistics (``encoder=[vae, "image_stats"]``:
   fluxes, colours, sizes, concentration, ellipticity, asymmetry).
2. Mock catalog with images: all nine targets from photometry alone and from
   images + photometry (the seed paper's Table 1 rows), with the VAE alone and
   with the VAE plus the light statistics.
3. VAE training and encoding throughput on this machine.

The last line printed is one JSON object with the figures.

    python benchmarks/metallicity_images.py [--quick] [--threads N] [--parts real,mock,throughput]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from astro_galpost import GalaxyPosterior, VAEEncoder
from astro_galpost.datasets import mock_catalog_with_images, shared_data_dir
from astro_galpost.evaluation import calibration_summary, point_metrics
from astro_galpost.images import load_images
from astro_galpost.targets import TARGETS


# a few hundred labelled galaxies: a small, regularised network, and small batches
# (the default 256 would leave one optimisation step per epoch)
REAL_PARAMS = {"representation": 64, "hidden": 64, "dropout": 0.2, "weight_decay": 1e-3, "batch_size": 32}
IMAGE_ROWS = {"VAE": "vae", "VAE+stats": "vae+image_stats"}


def real_images(args) -> dict:
    folder = (shared_data_dir() or Path("missing")) / "sdss_gri_jpeg_oh"
    if not folder.is_dir():
        print(f"skipping the real-image benchmark: {folder} not found")
        return {}
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingRegressor

    labels = Table.read(folder / "train.csv", converters={"objID": str})
    labelled = [folder / "images" / f"{i}.jpg" for i in labels["objID"]]
    names = {p.name for p in labelled}
    unlabelled = sorted(p for p in (folder / "images").glob("*.jpg") if p.name not in names)
    images = load_images(labelled)
    extra = load_images(unlabelled)
    thumbs = load_images(labelled, size=32).reshape(len(labelled), -1)
    oh = np.asarray(labels["oh_p50"], dtype=float)

    order = np.random.default_rng(args.seed).permutation(len(labels))
    folds = np.array_split(order, args.folds)
    samples, base_pred, truth = {key: [] for key in IMAGE_ROWS}, [], []
    t_fit = []
    for k in range(args.folds):
        test = folds[k]
        train = np.concatenate(folds[:k] + folds[k + 1:])
        t0 = time.perf_counter()
        vae = VAEEncoder(**{"image_size": args.size, "max_epochs": args.vae_epochs, "learning_rate": 1e-3,
                            "random_state": args.seed, "progress": False, **args.vae_params})
        vae.fit_images(np.concatenate([images[train], extra]))
        for key, encoder in (("VAE", vae), ("VAE+stats", [vae, "image_stats"])):
            gp = GalaxyPosterior(**{"targets": {"metallicity": "oh_p50"}, "photometry": None, "encoder": encoder,
                                    "n_ensemble": args.n_ensemble, "random_state": args.seed, "progress": False,
                                    **REAL_PARAMS, **args.params})
            gp.fit(labels[train], images=images[train])
            if key == "VAE":
                t_fit.append(time.perf_counter() - t0)
            post = gp.sample(labels[test], images=images[test], n_samples=1000)
            samples[key].append(post["metallicity"].distribution.value)
        pca = PCA(n_components=20, random_state=args.seed).fit(thumbs[train])
        hgb = HistGradientBoostingRegressor(random_state=args.seed).fit(pca.transform(thumbs[train]), oh[train])
        base_pred.append(hgb.predict(pca.transform(thumbs[test])))
        truth.append(oh[test])
        print(f"real images fold {k + 1}/{args.folds}: fit {t_fit[-1]:.0f} s", flush=True)
    truth = np.concatenate(truth)
    ours = {}
    for key in IMAGE_ROWS:
        s = np.concatenate(samples[key])
        ours[key] = {**point_metrics(s, truth), **calibration_summary(s, truth, rng=np.random.default_rng(0))}
    base = point_metrics(np.concatenate(base_pred)[:, None], truth)
    print(f"\nMetallicity from real SDSS gri composites: {len(truth)} held-out galaxies, {args.folds}-fold")
    print(f"{'metric':14s} {'VAE + flow':>11s} {'VAE+stats + flow':>17s} {'PCA + HGB':>10s}")
    for key in ("r2", "rmse", "bias", "sigma_nmad"):
        print(f"{key:14s} {ours['VAE'][key]:11.4f} {ours['VAE+stats'][key]:17.4f} {base[key]:10.4f}")
    for key in ("pit_ks", "coverage_68", "coverage_95"):
        print(f"{key:14s} {ours['VAE'][key]:11.4f} {ours['VAE+stats'][key]:17.4f} {'n/a':>10s}")
    for key, label in (("VAE", "VAE"), ("VAE+stats", "VAE + image_stats")):
        r2, cov = ours[key]["r2"], ours[key]["coverage_68"]
        print(f"goal ({label}): R2 above the baseline's ({'met' if r2 > base['r2'] else 'NOT met'}), "
              f"68% coverage in 0.63-0.73 ({'met' if 0.63 <= cov <= 0.73 else 'NOT met'})")
    keys = ("r2", "rmse", "pit_ks", "coverage_68", "coverage_95")
    return {"n_test": int(len(truth)), "galpost": {k: float(ours["VAE"][k]) for k in keys},
            "galpost_vae_image_stats": {k: float(ours["VAE+stats"][k]) for k in keys},
            "baseline_pca_hgb": {k: float(base[k]) for k in ("r2", "rmse")},
            "fit_seconds": float(np.mean(t_fit))}


def mock_table1(args) -> dict:
    table, images = mock_catalog_with_images(args.n_mock, size=64, random_state=args.seed)
    n_test = args.n_mock // 5
    train, test = slice(None, -n_test), slice(-n_test, None)
    rows = {}
    # the mock galaxies fill a small part of each stamp: without free bits every latent
    # collapses onto the prior at the default kl_weight (see VAEEncoder's free_bits)
    vae = VAEEncoder(image_size=args.size, max_epochs=args.vae_epochs, learning_rate=1e-3, free_bits=0.25,
                     random_state=args.seed, progress=False).fit_images(images[train])
    runs = (("Photometry + NF", "photometry"), ("Images + photometry + NF", [vae, "photometry"]),
            ("Images+stats + phot. + NF", [vae, "image_stats", "photometry"]))
    for label, encoder in runs:
        gp = GalaxyPosterior(encoder=encoder, max_epochs=args.epochs, random_state=args.seed, progress=False)
        gp.fit(table[train], images=images[train])
        post = gp.sample(table[test], images=images[test], n_samples=300)
        rows[label] = {}
        for name, column in gp.targets_.items():
            target = TARGETS[name]
            true, ok = target.read(table[test], column)
            s = target.to_model(post[name].distribution.value)
            rows[label][name] = float(point_metrics(s[ok], target.to_model(true[ok]))["r2"])
    print(f"\nMock catalog ({args.n_mock - n_test} train / {n_test} test), R² of the posterior median "
          "(the seed paper's Table 1 layout; lines in log10)")
    names = list(next(iter(rows.values())))
    print(f"{'input':26s} " + " ".join(f"{n:>10s}" for n in names))
    for label, r2 in rows.items():
        print(f"{label:26s} " + " ".join(f"{r2[n]:10.3f}" for n in names))
    gain = {n: rows["Images + photometry + NF"][n] - rows["Photometry + NF"][n] for n in names}
    gain_stats = {n: rows["Images+stats + phot. + NF"][n] - rows["Photometry + NF"][n] for n in names}
    print("images − photometry only:  " + " ".join(f"{gain[n]:+10.3f}" for n in names))
    print("img+stats − photometry:    " + " ".join(f"{gain_stats[n]:+10.3f}" for n in names))
    return {"table1_r2": rows, "image_gain": gain, "image_stats_gain": gain_stats}


def throughput(args) -> dict:
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (512, 3, 64, 64)).astype(np.float32)
    vae = VAEEncoder(image_size=args.size, max_epochs=2, patience=5, progress=False, random_state=0)
    t0 = time.perf_counter()
    vae.fit_images(images)
    train_rate = len(vae.history_.train_loss) * len(images) * (1 - vae.validation_fraction) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    vae.encode(images)
    encode_rate = len(images) / (time.perf_counter() - t0)
    print(f"\nVAE at {args.size}×{args.size} px on this machine: training ≈ {train_rate:.0f} images/s "
          f"(incl. validation passes), encoding {encode_rate:.0f} images/s")
    return {"vae_train_images_per_s": train_rate, "vae_encode_images_per_s": encode_rate, "image_size": args.size}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer folds, epochs and mock galaxies")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=64, help="VAE image size (the paper used 160)")
    parser.add_argument("--params", type=json.loads, default={}, help="JSON of GalaxyPosterior parameters (real data)")
    parser.add_argument("--vae-params", type=json.loads, default={}, help="JSON of VAEEncoder parameters (real data)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--parts", default="real,mock,throughput",
                        help="comma-separated parts to run (default: real,mock,throughput)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.folds = 2 if args.quick else 4
    args.vae_epochs = 40 if args.quick else 100  # early stopping usually ends it sooner
    args.epochs = 30 if args.quick else 100
    args.n_mock = 3000 if args.quick else 5000
    args.n_ensemble = 3  # a deep ensemble: better calibrated on a few hundred galaxies, and cheap

    parts = {p.strip() for p in args.parts.split(",")}
    unknown = parts - {"real", "mock", "throughput"}
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    result = {"quick": args.quick}
    for name, run in (("real", real_images), ("mock", mock_table1), ("throughput", throughput)):
        if name in parts:
            result[name] = run(args)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
