"""Peer conditional-density estimators behind one interface, for the benchmarks.

Each adapter is a small class with ``fit(X, Y)`` (``X`` the ``(n, n_inputs)``
inputs, ``Y`` the ``(n, n_targets)`` targets, all finite) and
``sample(X, n_samples, seed)`` returning draws shaped
``(n_rows, n_samples, n_targets)``. The libraries are the optional extra
``peers`` (``pip install "astro_galpost[peers]"``); `peer_status` says which
can be imported, and why not.

`FlexZBoost`
    ``flexcode`` with ``xgboost`` regression (Izbicki & Lee 2017), the LSST DESC
    photo-z reference. Univariate: one model per target, so its draws of
    different targets are independent. Hyperparameters are the defaults of the
    DESC RAIL ``FlexZBoost`` stage (``max_basis=35``, cosine basis, xgboost
    ``max_depth=8``, ``reg:squarederror``, otherwise xgboost's defaults; 75% of
    the training rows fit, the other 25% tune). Tuning is RAIL's: flexcode's
    ``tune`` chooses the basis functions, then the bump threshold in
    ``linspace(0.02, 0.35, 20)`` and the sharpening in ``linspace(0.7, 2.1, 15)``
    minimise flexcode's ``cde_loss`` of ``predict`` (on 301 grid points) on the
    tuning rows. (flexcode 0.2.3's own ``tune(..., bump_threshold_grid, sharpen_grid)`` compares the
    tuning targets mapped to [0, 1] with a grid in the targets' units, so for any
    target range but [0, 1] it scores every candidate at the grid's lower edge
    and picks the flattest densities.) Draws are inverse-CDF samples of the
    conditional density on a 1000-point grid.
`PzFlow`
    ``pzflow.Flow`` with the inputs as conditional columns and the targets as
    data columns: one joint flow. Its default bijector (ShiftBounds then
    RollingSplineCoupling), latent and training (100 epochs, batch 1024, Adam
    1e-3, conditions standard-scaled by the flow itself).
`SbiNPE`
    ``sbi.inference.NPE`` trained on ``theta`` = targets and ``x`` = inputs
    (amortised, single round; no prior given, so sbi uses the empirical one),
    with its defaults: masked autoregressive flow (for a single target sbi warns
    that its MAF "is limited to Gaussians", so there, and only there, its neural
    spline flow ``"nsf"``: a rule taken from that warning in a smoke run, before
    the runs reported, not from any score), z-scored ``theta`` and ``x``,
    batch 200, Adam 5e-4, early stopping after 20 epochs without validation
    improvement on 10% of the training rows. Sampling is ``sample_batched``.

None of them can use a row with a missing label: the caller keeps the rows
with every target labelled.
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Any

import numpy as np

# pzflow runs on jax: keep it on the CPU like everything else here
os.environ.setdefault("JAX_PLATFORMS", "cpu")

__all__ = ["PEERS", "FlexZBoost", "PzFlow", "SbiNPE", "make_peer", "parse_peers", "peer_status", "run_peer",
           "sample_from_grid"]


def _as_2d(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-d or 2-d, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has {int(np.sum(~np.isfinite(arr)))} non-finite values; peers need complete rows")
    return arr


def sample_from_grid(density: np.ndarray, grid: np.ndarray, n_samples: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Inverse-CDF draws from densities tabulated on a common grid.

    Parameters
    ----------
    density : `~numpy.ndarray`
        ``(n_rows, n_grid)`` non-negative density values.
    grid : `~numpy.ndarray`
        ``(n_grid,)`` increasing grid.
    n_samples : int
        Draws per row.
    rng : `~numpy.random.Generator`
        Random generator.

    Returns
    -------
    `~numpy.ndarray`
        ``(n_rows, n_samples)`` draws, linear in the CDF between grid points.
    """
    density = np.clip(np.asarray(density, float), 0.0, None)
    steps = 0.5 * (density[:, 1:] + density[:, :-1]) * np.diff(grid)
    cdf = np.concatenate([np.zeros((len(density), 1)), np.cumsum(steps, axis=1)], axis=1)
    total = cdf[:, -1:]
    flat = total[:, 0] <= 0
    cdf = np.where(flat[:, None], np.linspace(0, 1, len(grid))[None, :], cdf / np.where(total > 0, total, 1))
    u = rng.random((len(density), n_samples))
    return np.stack([np.interp(u[i], cdf[i], grid) for i in range(len(density))])


class FlexZBoost:
    """FlexCode with xgboost regression, one target at a time (see the module docstring).

    Parameters
    ----------
    max_basis : int, optional
        Largest number of cosine basis functions.
    train_fraction : float, optional
        Fraction of the training rows the regressions are fitted on; the rest
        tune the bump threshold and sharpening.
    n_grid : int, optional
        Grid points of the conditional density the draws are taken from.
    tune_grid : int, optional
        Grid points of the densities scored while tuning (RAIL's 301).
    seed : int, optional
        Seed of the fit/tune split and of xgboost.
    """

    name = "FlexZBoost"
    joint = False

    def __init__(self, max_basis: int = 35, train_fraction: float = 0.75, n_grid: int = 1000, tune_grid: int = 301,
                 seed: int = 0):
        self.max_basis, self.train_fraction, self.seed = max_basis, train_fraction, seed
        self.n_grid, self.tune_grid = n_grid, tune_grid
        self.models_: list = []

    def _fit_one(self, x_fit, z_fit, x_tune, z_tune):
        import flexcode
        from flexcode.regression_models import XGBoost

        params = {"max_depth": 8, "objective": "reg:squarederror", "n_jobs": 1, "random_state": self.seed}
        model = flexcode.FlexCodeModel(XGBoost, max_basis=self.max_basis, basis_system="cosine",
                                       regression_params=params)
        # flexcode wraps xgboost in scikit-learn's MultiOutputRegressor with n_jobs=-1 and
        # offers no argument for it: one process, as for every other method here
        model.model.models.set_params(n_jobs=1)
        model.fit(x_fit, z_fit)
        model.tune(x_tune, z_tune)  # the basis functions only (see the module docstring)
        for attribute, grid in (("bump_threshold", np.linspace(0.02, 0.35, 20)),
                                ("sharpen_alpha", np.linspace(0.7, 2.1, 15))):
            setattr(model, attribute, min(grid, key=lambda value: self._tune_loss(model, attribute, value,
                                                                                   x_tune, z_tune)))
        return model

    def _tune_loss(self, model, attribute: str, value: float, x_tune, z_tune) -> float:
        from flexcode.loss_functions import cde_loss

        setattr(model, attribute, value)
        density, grid = model.predict(x_tune, n_grid=self.tune_grid)
        return cde_loss(density, grid, z_tune)

    def fit(self, X, Y) -> FlexZBoost:
        """Fit one FlexCode model per column of ``Y``; tune each on held-back training rows."""
        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        order = np.random.default_rng(self.seed).permutation(len(X))
        n_fit = round(self.train_fraction * len(X))
        fit, tune = order[:n_fit], order[n_fit:]
        self.models_ = [self._fit_one(X[fit], Y[fit, j], X[tune], Y[tune, j]) for j in range(Y.shape[1])]
        return self

    def sample(self, X, n_samples: int, seed: int = 0) -> np.ndarray:
        """Independent draws of each target from its conditional density."""
        X = _as_2d(X, "X")
        rng = np.random.default_rng(seed)
        draws = []
        for model in self.models_:
            density, grid = model.predict(X, n_grid=self.n_grid)
            draws.append(sample_from_grid(density, np.ravel(grid), n_samples, rng))
        return np.stack(draws, axis=-1)


class PzFlow:
    """A conditional pzflow ``Flow``: targets given inputs (see the module docstring).

    Parameters
    ----------
    epochs : int, optional
        Training epochs (pzflow's default).
    seed : int, optional
        Seed of the bijector's initial parameters and of the batching.
    """

    name = "pzflow"
    joint = True

    def __init__(self, epochs: int = 100, seed: int = 0):
        self.epochs, self.seed = epochs, seed
        self.flow_ = None

    @staticmethod
    def _frame(X, Y=None):
        import pandas as pd

        cols = {f"x{i}": X[:, i] for i in range(X.shape[1])}
        if Y is not None:
            cols.update({f"y{j}": Y[:, j] for j in range(Y.shape[1])})
        return pd.DataFrame(cols)

    def fit(self, X, Y) -> PzFlow:
        """Train the flow with pzflow's default bijector and training settings."""
        from pzflow import Flow

        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        self.flow_ = Flow(data_columns=[f"y{j}" for j in range(Y.shape[1])],
                          conditional_columns=[f"x{i}" for i in range(X.shape[1])], seed=self.seed)
        self.losses_ = self.flow_.train(self._frame(X, Y), epochs=self.epochs, seed=self.seed)
        return self

    def sample(self, X, n_samples: int, seed: int = 0, chunk_draws: int = 500_000) -> np.ndarray:
        """Joint draws, ``chunk_draws`` at a time (pzflow repeats each condition per draw)."""
        X = _as_2d(X, "X")
        rows = max(1, chunk_draws // n_samples)
        out = []
        for k, start in enumerate(range(0, len(X), rows)):
            frame = self._frame(X[start:start + rows])
            s = self.flow_.sample(n_samples, conditions=frame, save_conditions=False, seed=seed + k)
            out.append(s.to_numpy().reshape(len(frame), n_samples, -1))
        return np.concatenate(out)


class _NoTracker:
    """An sbi ``Tracker`` that records nothing (sbi's default writes TensorBoard logs to ./sbi-logs)."""

    log_dir = None

    def log_metric(self, name, value, step=None):
        pass

    def log_metrics(self, metrics, step=None):
        pass

    def log_params(self, params):
        pass

    def add_figure(self, name, figure, step=None):
        pass

    def flush(self):
        pass


class SbiNPE:
    """Amortised neural posterior estimation with sbi (see the module docstring).

    Parameters
    ----------
    density_estimator : str, optional
        sbi's density estimator; default ``"maf"`` (sbi's default) for several
        targets and ``"nsf"`` for one, where sbi's MAF is a Gaussian.
    seed : int, optional
        Torch seed of the initialisation, the validation split and the batching.
    """

    name = "sbi NPE"
    joint = True

    def __init__(self, density_estimator: str | None = None, seed: int = 0):
        self.density_estimator, self.seed = density_estimator, seed
        self.posterior_ = None

    def fit(self, X, Y) -> SbiNPE:
        """Train NPE on ``theta = Y``, ``x = X`` with sbi's default training settings."""
        import torch
        from sbi.inference import NPE

        X, Y = _as_2d(X, "X"), _as_2d(Y, "Y")
        torch.manual_seed(self.seed)
        estimator_kind = self.density_estimator or ("nsf" if Y.shape[1] == 1 else "maf")
        inference = NPE(density_estimator=estimator_kind, tracker=_NoTracker(), show_progress_bars=False)
        inference.append_simulations(torch.as_tensor(Y, dtype=torch.float32), torch.as_tensor(X, dtype=torch.float32))
        estimator = inference.train()
        self.epochs_ = inference.epoch
        self.posterior_ = inference.build_posterior(estimator)
        return self

    def sample(self, X, n_samples: int, seed: int = 0) -> np.ndarray:
        """Draws for every row at once with ``sample_batched``."""
        import torch

        X = _as_2d(X, "X")
        torch.manual_seed(seed)
        with torch.no_grad():
            s = self.posterior_.sample_batched((n_samples,), x=torch.as_tensor(X, dtype=torch.float32),
                                               show_progress_bars=False)
        return np.moveaxis(s.numpy().astype(float), 0, 1)


#: Adapter classes by the names ``--peers`` takes, with the modules each needs.
PEERS = {
    "flexzboost": (FlexZBoost, ("flexcode", "xgboost")),
    "pzflow": (PzFlow, ("pzflow", "jax")),
    "sbi": (SbiNPE, ("sbi",)),
}


def peer_status(name: str) -> str | None:
    """``None`` if peer ``name`` can be used, else why not ("not installed: ...")."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    for module in PEERS[name][1]:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - an installed but broken library is reported, not raised
            return f"not installed: {module} ({type(err).__name__}: {err})"
    return None


def parse_peers(text: str) -> list[str]:
    """The peer names of a comma-separated ``--peers`` value; raises on an unknown name."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown} in --peers; known: {', '.join(PEERS)}")
    return names


def make_peer(name: str, seed: int = 0):
    """A new adapter for peer ``name`` (a key of `PEERS`)."""
    if name not in PEERS:
        raise KeyError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    return PEERS[name][0](seed=seed)


def run_peer(name: str, X_train, Y_train, X_test, n_samples: int, seed: int = 0) -> dict:
    """Fit and sample one peer; never raises for the peer's own failure.

    Returns
    -------
    dict
        ``status`` ("ok", "not installed: ..." or "failed: ..."), and when ok
        ``samples`` ``(n_test, n_samples, n_targets)``, ``fit_seconds`` and
        ``sample_seconds``.
    """
    status = peer_status(name)
    if status is not None:
        return {"status": status}
    try:
        peer = make_peer(name, seed)
        t0 = time.perf_counter()
        peer.fit(X_train, Y_train)
        t1 = time.perf_counter()
        samples = peer.sample(X_test, n_samples, seed)
        t2 = time.perf_counter()
    except Exception as err:  # noqa: BLE001 - a peer that fails becomes a table row, not a crash
        return {"status": f"failed: {type(err).__name__}: {err}"}
    return {"status": "ok", "samples": samples, "fit_seconds": t1 - t0, "sample_seconds": t2 - t1}
