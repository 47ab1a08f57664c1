"""``galpost demo``: the package's main job on data that ships with it.

1. Photometric-redshift posteriors for real SDSS galaxies (the test sample in
   the ``kcorrect`` package), trained on 80% and evaluated on the other 20%.
2. All nine targets of the seed paper on the mock catalog.

Writes both prediction tables (ECSV, with units) and one PNG figure of
predicted against true values. A rerun replaces the files an earlier demo wrote
there (listed in the folder's ``.galpost_demo.json``); a file of the same name
that the demo did not write is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..io import write_table_atomic
from ..model.estimator import GalaxyPosterior
from ..model.targets import TARGETS
from ..utils.atomic import check_output, write_atomic, write_json_atomic
from ..utils.threads import available_cpus, choose_threads
from . import load_kcorrect_sample, make_mock_catalog

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


#: What the demo runs: (SDSS galaxies or None for all, SDSS max epochs, mock rows, mock test rows, mock max epochs,
#: networks per model). ``--quick`` fits one network where ``n_ensemble="auto"`` would fit three.
_SETTINGS = {True: (3000, 40, 2500, 500, 15, 1), False: (None, 150, 8000, 1000, 60, "auto")}


def _fit_predict(train, test, what: str, n_samples: int = 300, **options):
    """Fit a GalaxyPosterior on ``train``, predict ``test``; returns (predictions, model, one-line account)."""
    t0 = time.perf_counter()
    gp = GalaxyPosterior(**options).fit(train)
    pred = gp.predict(test, n_samples=n_samples)
    epochs = gp.history_[0].best_epoch + 1, len(gp.history_[0].val_loss)
    networks = "1 network" if gp.n_ensemble_ == 1 else f"{gp.n_ensemble_} networks"
    account = (f"{what}: {len(train)} training / {len(test)} test galaxies, {networks}, {epochs[1]} epochs "
               f"(best {epochs[0]}, limit {gp.max_epochs}), {time.perf_counter() - t0:.0f} s")
    return pred, gp, account


def _figure(pred_sdss, pred_mock, accounts: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..visualization.plots import plot_predicted_vs_true

    fig = plt.figure(figsize=(15, 10), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[1, 3])
    plot_predicted_vs_true(pred_sdss, targets=["redshift"], ncols=1, fig=left)
    left.suptitle("real SDSS galaxies (kcorrect sample)")
    plot_predicted_vs_true(pred_mock, ncols=3, fig=right)
    right.suptitle("mock catalog, nine targets")
    fig.suptitle("galpost demo — " + "; ".join(accounts), fontsize=9)
    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), overwrite=True)
    plt.close(fig)


#: The demo's record, in its output folder, of the files it wrote there.
_RECORD = ".galpost_demo.json"
_OUTPUTS = {"sdss": "sdss_redshift_posteriors.ecsv", "mock": "mock_posteriors.ecsv", "figure": "predicted_vs_true.png"}


def _output_paths(out: Path, overwrite: bool) -> dict[str, Path]:
    """The demo's output files, checked before any work: a file of the same name is replaced only if
    an earlier demo wrote it (the folder's record says so) or with ``overwrite``."""
    try:
        ours = set(json.loads((out / _RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        ours = set()
    return {key: check_output(out / name, overwrite=overwrite or name in ours) for key, name in _OUTPUTS.items()}


def run_demo(out: str | Path = "galpost_demo", quick: bool = False, progress: bool = True, random_state: int = 0,
             overwrite: bool = False) -> dict:
    """Run the demo, write its outputs to the folder ``out`` and print what it ran and its wall time.

    Parameters
    ----------
    out : str or path
        Output folder.
    quick : bool, optional
        Fewer galaxies and epochs: 2400 + 2000 training galaxies, at most 40 + 15 epochs,
        one network each (the default at this size would fit three).
    progress : bool, optional
        Show progress bars.
    random_state : int, optional
        Seed of the splits, the mock catalog and the models.
    overwrite : bool, optional
        Replace files of the demo's names in ``out`` that an earlier demo did
        not write (its own are always replaced).

    Returns
    -------
    dict
        Paths of the written files (``sdss``, ``mock``, ``figure``).
    """
    t0 = time.perf_counter()
    out = Path(out)
    paths = _output_paths(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(random_state)
    n_sdss, sdss_epochs, n_mock, n_mock_test, mock_epochs, n_ensemble = _SETTINGS[bool(quick)]
    print(f"galpost demo{' --quick' if quick else ''}: {choose_threads()} torch thread(s), "
          f"{available_cpus()} CPU(s) available")

    # 1. real SDSS galaxies, at the seed paper's z <= 0.3
    sdss = load_kcorrect_sample()
    sdss = sdss[np.asarray(sdss["z"]) <= 0.3]
    order = rng.permutation(len(sdss))[:n_sdss]
    n_test = len(order) // 5
    sdss_test, sdss_train = sdss[order[:n_test]], sdss[order[n_test:]]
    print(f"[1/2] photometric redshifts: {len(sdss_train)} real SDSS galaxies for training, {len(sdss_test)} held out")
    pred_sdss, _, sdss_account = _fit_predict(sdss_train, sdss_test, "SDSS redshift", targets=["redshift"],
                                              max_epochs=sdss_epochs, random_state=random_state,
                                              progress=progress, n_samples=500, n_ensemble=n_ensemble)
    print(_summary(pred_sdss, "redshift", "z"))
    print(f"  {sdss_account}")

    # 2. all nine targets on the mock catalog
    mock = make_mock_catalog(n_mock, random_state=random_state)
    mock_train, mock_test = mock[:-n_mock_test], mock[-n_mock_test:]
    print(f"[2/2] nine targets on the mock catalog: {len(mock_train)} training, {len(mock_test)} held out")
    pred_mock, gp_all, mock_account = _fit_predict(mock_train, mock_test, "mock, nine targets",
                                                   max_epochs=mock_epochs, random_state=random_state,
                                                   progress=progress, n_ensemble=n_ensemble)
    for name in gp_all.targets_:
        print(_summary(pred_mock, name, gp_all.targets_[name]))
    print(f"  {mock_account}")

    write_json_atomic(out / _RECORD, sorted(_OUTPUTS.values()))  # before: a killed demo's files are its own
    write_table_atomic(pred_sdss, paths["sdss"], overwrite=True)
    write_table_atomic(pred_mock, paths["mock"], overwrite=True)
    _figure(pred_sdss, pred_mock, [sdss_account, mock_account], paths["figure"])
    for path in paths.values():
        print(f"wrote {path}")
    print(f"demo finished in {time.perf_counter() - t0:.0f} s wall time")
    return paths
