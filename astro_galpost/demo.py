"""``galpost demo``: the package's main job on data that ships with it.

1. Photometric-redshift posteriors for real SDSS galaxies (the test sample in
   the ``kcorrect`` package), trained on 80% and evaluated on the other 20%.
2. All nine targets of the seed paper on the mock catalog.

Writes both prediction tables (ECSV, with units) and one PNG figure of
predicted against true values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .datasets import load_kcorrect_sample, make_mock_catalog
from .estimator import GalaxyPosterior
from .io import write_table_atomic
from .targets import TARGETS

__all__ = ["run_demo"]


def _summary(predictions, name: str, column: str) -> str:
    target = TARGETS[name]
    true, ok = target.values_from(predictions[column], column)
    p16, p50, p84 = (np.asarray(getattr(predictions[f"{name}_p{p}"], "unmasked", predictions[f"{name}_p{p}"]).value)
                     for p in (16, 50, 84))
    ok &= np.isfinite(p50)
    t, m = target.to_model(true[ok]), target.to_model(p50[ok])
    r2 = 1 - np.sum((m - t) ** 2) / np.sum((t - t.mean()) ** 2)
    inside = np.mean((true[ok] >= p16[ok]) & (true[ok] <= p84[ok]))
    return f"  {name:12s} N={ok.sum():5d}  R2={r2:6.3f}  68% coverage={inside:5.3f}"


def run_demo(out: str | Path = "galpost_demo", quick: bool = False, progress: bool = True, random_state: int = 0) -> dict:
    """Run the demo and write its outputs to the folder ``out``.

    Returns
    -------
    dict
        Paths of the written files (``sdss``, ``mock``, ``figure``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .visualization import plot_predicted_vs_true

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(random_state)

    # 1. real SDSS galaxies, at the seed paper's z <= 0.3
    sdss = load_kcorrect_sample()
    sdss = sdss[np.asarray(sdss["z"]) <= 0.3]
    order = rng.permutation(len(sdss))
    if quick:
        order = order[:3000]
    n_test = len(order) // 5
    sdss_test, sdss_train = sdss[order[:n_test]], sdss[order[n_test:]]
    print(f"[1/2] photometric redshifts: {len(sdss_train)} real SDSS galaxies for training, {len(sdss_test)} held out")
    gp_z = GalaxyPosterior(targets=["redshift"], max_epochs=40 if quick else 150,
                           random_state=random_state, progress=progress)
    pred_sdss = gp_z.fit(sdss_train).predict(sdss_test, n_samples=500)
    print(_summary(pred_sdss, "redshift", "z"))

    # 2. all nine targets on the mock catalog
    n_mock, n_test = (2500, 500) if quick else (8000, 1000)
    mock = make_mock_catalog(n_mock, random_state=random_state)
    mock_train, mock_test = mock[:-n_test], mock[-n_test:]
    print(f"[2/2] nine targets on the mock catalog: {len(mock_train)} training, {len(mock_test)} held out")
    gp_all = GalaxyPosterior(max_epochs=15 if quick else 60, random_state=random_state, progress=progress)
    pred_mock = gp_all.fit(mock_train).predict(mock_test, n_samples=300)
    for name in gp_all.targets_:
        print(_summary(pred_mock, name, gp_all.targets_[name]))

    paths = {"sdss": out / "sdss_redshift_posteriors.ecsv", "mock": out / "mock_posteriors.ecsv",
             "figure": out / "predicted_vs_true.png"}
    write_table_atomic(pred_sdss, paths["sdss"], overwrite=True)
    write_table_atomic(pred_mock, paths["mock"], overwrite=True)

    fig = plt.figure(figsize=(15, 9), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 3])
    plot_predicted_vs_true(pred_sdss, targets=["redshift"], ncols=1, fig=left)
    left.suptitle("real SDSS (kcorrect sample)")
    plot_predicted_vs_true(pred_mock, ncols=3, fig=right)
    right.suptitle("mock catalog, nine targets")
    write_atomic(paths["figure"], lambda tmp: fig.savefig(tmp, dpi=110, format="png"), overwrite=True)
    plt.close(fig)
    for path in paths.values():
        print(f"wrote {path}")
    return paths
