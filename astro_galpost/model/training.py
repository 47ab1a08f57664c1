"""The one training loop of the package, used by the posterior network's flows and by the VAE.

`fit_module` trains any `torch.nn.Module` from a stream of mini-batch losses:
AdamW (Adam when ``weight_decay=0``), gradient clipping, one early-stopping
rule, one learning-rate policy, a tqdm progress bar and the best weights
restored at the end. `train_network` feeds it the posterior network's batches;
`astro_galpost.encoders.VAEEncoder` feeds it its images.

The stopping rule is *relative*: an epoch improves when its monitored loss is
below ``best - min_delta * |best|``. The losses it watches have no common
scale (a flow's negative log-likelihood of standardised labels is of order
one and may be negative; the VAE's loss scales with the pixel scaling, the
image size and ``kl_weight``), so a threshold in units of the best loss means
the same thing for both; `torch.optim.lr_scheduler.ReduceLROnPlateau`, the
learning-rate policy, judges a plateau the same way (its default relative
threshold of 1e-4).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["TrainingHistory", "fit_module", "train_network", "refine_group_heads", "split_indices"]


@dataclass
class TrainingHistory:
    """Per-epoch losses of one training run.

    ``final_learning_rate`` is the learning rate of the last epoch (after the
    plateau halvings). ``refined`` is filled by `train_network`'s head
    refinement: per target group, how many epochs of its heads' own training
    were kept (0 when none improved on the joint fit).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    final_learning_rate: float | None = None
    refined: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "final_learning_rate": self.final_learning_rate,
            "refined": self.refined,
        }



#: A best loss above this, per target and galaxy, is a diverged fit (`train_network` raises).
DIVERGED_LOSS = 1000.0


def split_indices(
    n: int, validation_fraction: float, rng: np.random.Generator, fold: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation row indices; at least one row on each side when possible.

    ``fold`` k takes the k-th consecutive window of the same permutation as the
    validation set, so ensemble members validate on different rows and the
    ensemble as a whole learns from every row.
    """
    order = rng.permutation(n)
    n_val = int(round(validation_fraction * n))
    if validation_fraction > 0 and n > 1:
        n_val = min(max(n_val, 1), n - 1)
    val = np.take(order, np.arange(fold * n_val, (fold + 1) * n_val), mode="wrap")
    train = np.setdiff1d(order, val)
    return train, np.sort(val)


def _train_epoch(module, optimiser, batch_losses, clip_norm: float) -> float:
    """One pass over ``batch_losses()``: a step per yielded ``(loss, rows)``; the row-weighted mean loss."""
    module.train()
    total, count = 0.0, 0
    for loss, rows in batch_losses():
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip_norm)
        optimiser.step()
        total += float(loss.detach()) * rows
        count += rows
    return total / max(count, 1)


def fit_module(
    module: torch.nn.Module,
    batch_losses: Callable[[], Iterable[tuple[torch.Tensor, int]]],
    val_loss: Callable[[], float] | None = None,
    *,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.0,
    max_epochs: int = 300,
    patience: int = 25,
    min_delta: float = 1e-4,
    early_stopping: bool = True,
    reduce_lr_on_plateau: bool = True,
    clip_norm: float = 10.0,
    progress: bool = True,
    description: str = "training",
    parameters: Iterable[torch.nn.Parameter] | None = None,
    keep_start: bool = False,
) -> TrainingHistory:
    """Train ``module`` epoch by epoch; the one loop of the package.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network; its parameters (or ``parameters``) are optimised with
        `torch.optim.AdamW` (identical to Adam when ``weight_decay=0``).
    batch_losses : callable
        Called once per epoch (with the module in training mode); yields
        ``(loss, rows)`` per mini-batch, a scalar loss tensor with its graph and
        the number of rows it averages over. One optimiser step (gradients
        clipped to norm ``clip_norm``) follows each yield, before the next
        batch is drawn. It owns the shuffling and any augmentation.
    val_loss : callable, optional
        Called after each epoch (module in eval mode, no gradients): the
        validation loss. Without it the epoch's mean training loss is monitored.
    learning_rate, weight_decay : float, optional
        AdamW settings.
    max_epochs : int, optional
        Most epochs.
    patience : int, optional
        Epochs without improvement before stopping; the learning rate halves
        after ``max(1, patience // 3)`` of them when ``reduce_lr_on_plateau``.
    min_delta : float, optional
        Relative improvement that counts: below ``best - min_delta * |best|``
        (see the module's docstring for why relative).
    early_stopping : bool, optional
        Stop after ``patience`` epochs without improvement and restore the
        best weights. ``False`` is a fixed schedule: every epoch runs and the
        last weights are kept.
    reduce_lr_on_plateau : bool, optional
        Halve the learning rate on a plateau of the monitored loss
        (`~torch.optim.lr_scheduler.ReduceLROnPlateau`); ``False`` keeps it constant.
    clip_norm : float, optional
        Largest gradient norm.
    progress : bool, optional
        Show a progress bar (and say "stopped early at epoch N (best N′)").
    description : str, optional
        Label of the bar and of messages.
    parameters : iterable of `torch.nn.Parameter`, optional
        Only these are optimised (default: all of ``module``'s).
    keep_start : bool, optional
        Measure the monitored loss before the first epoch and keep the
        starting weights unless an epoch improves on them (for continuing the
        training of a fitted module; ``best_epoch`` is then -1 when none did).

    Returns
    -------
    `TrainingHistory`

    Raises
    ------
    FloatingPointError
        The monitored loss became NaN or infinite.
    """
    params = list(module.parameters() if parameters is None else parameters)
    optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=max(1, patience // 3))
                 if reduce_lr_on_plateau else None)
    history = TrainingHistory()
    best, best_state, waited = math.inf, copy.deepcopy(module.state_dict()), 0
    if keep_start:
        module.eval()
        with torch.no_grad():
            best = float(val_loss()) if val_loss is not None else math.inf
        history.best_epoch = -1
    bar = tqdm(range(max_epochs), desc=description, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        history.train_loss.append(_train_epoch(module, optimiser, batch_losses, clip_norm))
        module.eval()
        with torch.no_grad():
            val = float(val_loss()) if val_loss is not None else history.train_loss[-1]
        history.val_loss.append(val)
        if not math.isfinite(val):
            raise FloatingPointError(f"{description}: the validation loss became {val} at epoch {epoch}; "
                                     "try a smaller learning_rate")
        if scheduler is not None:
            scheduler.step(val)
        if not early_stopping or not math.isfinite(best) or val < best - min_delta * abs(best):
            best, waited, history.best_epoch = val, 0, epoch
            if early_stopping:
                best_state = copy.deepcopy(module.state_dict())
        else:
            waited += 1
        bar.set_postfix(train=f"{history.train_loss[-1]:.4g}", val=f"{val:.4g}", best=f"{best:.4g}")
        if early_stopping and waited >= patience:
            history.stopped_early = True
            _say_stopped_early(bar, description, epoch, history.best_epoch, progress)
            break
    bar.close()
    if early_stopping:
        module.load_state_dict(best_state)
    module.eval()
    history.final_learning_rate = float(optimiser.param_groups[0]["lr"])
    return history


def _say_stopped_early(bar, description: str, epoch: int, best_epoch: int, progress: bool) -> None:
    """Put "stopped early at epoch N (best N′)" (1-based) on the bar and, when shown, on its own line."""
    message = f"{description}: stopped early at epoch {epoch + 1} (best {best_epoch + 1})"
    bar.set_description(message)
    if progress:
        tqdm.write(message)


def _impute(net, x, y, valid, rows) -> None:
    """Advance ``net``'s imputation of the missing labels of ``rows`` in place (if it imputes)."""
    if hasattr(net, "impute") and not bool(valid[rows].all()):
        y[rows] = net.impute(x[rows], y[rows], valid[rows])


def _loss(net, x, y, valid, groups: tuple[str, ...] | None) -> torch.Tensor:
    """``net``'s loss on a batch, of the named groups only when ``groups`` is given."""
    return net.loss(x, y, valid)[0] if groups is None else net.loss(x, y, valid, groups)[0]


def _batched_loss(net, x, y, valid, batch_size: int, groups: tuple[str, ...] | None = None) -> float:
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        _impute(net, x, y, valid, sl)
        loss = _loss(net, x[sl], y[sl], valid[sl], groups)
        total += float(loss) * len(x[sl])
        count += len(x[sl])
    return total / max(count, 1)


def train_network(
    net: torch.nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    *,
    val_index: np.ndarray,
    train_index: np.ndarray,
    batch_size: int = 256,
    max_epochs: int = 300,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 25,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    description: str = "training",
    refine_heads: bool = True,
) -> TrainingHistory:
    """Train ``net`` (which must have ``loss(x, y, valid)``) with `fit_module` and keep its best state.

    A network with ``impute(x, y, valid)`` fills missing labels: the imputed
    values live in the label arrays (missing entries start at 0, the
    standardised mean) and each visit of a row advances them (see
    `astro_galpost.model.network.PosteriorNetwork.impute`).

    Stops when the validation loss (the training loss when ``val_index`` is
    empty) has not improved for ``patience`` epochs (saying "stopped early at
    epoch N (best N′)" when ``progress``) and restores the weights of the best
    epoch. The learning rate is halved when the loss stalls for
    ``patience // 3`` epochs. ``seed`` seeds the order of the batches.

    With ``refine_heads``, validation rows and more than one target group
    (a network with ``groups``, ``head_parameters(name)`` and ``loss(x, y,
    valid, groups)``), each group's heads are then trained alone, the shared
    representation and the other groups frozen, and early-stopped on the
    group's own validation loss, keeping the joint fit's heads unless that
    improves (`refine_group_heads`), at the learning rate the joint fit ended
    with.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    as_t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    y = np.where(valid, y, 0.0)
    xt, yt, vt = as_t(x[train_index]), as_t(y[train_index]), as_t(valid[train_index], torch.bool)
    xv, yv, vv = as_t(x[val_index]), as_t(y[val_index]), as_t(valid[val_index], torch.bool)

    def batch_losses(groups: tuple[str, ...] | None = None):
        def losses():
            order = torch.randperm(len(xt), generator=gen).to(device)
            for start in range(0, len(xt), batch_size):
                batch = order[start:start + batch_size]
                _impute(net, xt, yt, vt, batch)
                yield _loss(net, xt[batch], yt[batch], vt[batch], groups), len(batch)
        return losses

    def val_loss(groups: tuple[str, ...] | None = None):
        return (lambda: _batched_loss(net, xv, yv, vv, 4096, groups)) if len(xv) else None

    net.to(device)
    options = dict(learning_rate=learning_rate, weight_decay=weight_decay, max_epochs=max_epochs, patience=patience,
                   progress=progress)
    history = fit_module(net, batch_losses(), val_loss(), description=description, **options)
    _check_converged(history, y.shape[1], description)
    if refine_heads and len(xv) and len(getattr(net, "groups", ())) > 1:
        # the refinement continues the optimisation: at the learning rate the joint fit ended with
        options["learning_rate"] = history.final_learning_rate
        history.refined = refine_group_heads(net, batch_losses, val_loss, description=description, **options)
    return history


def _check_converged(history: TrainingHistory, n_targets: int, description: str) -> None:
    """Refuse a fit whose best loss is that of no posterior: above `DIVERGED_LOSS` per target and galaxy.

    The loss is the negative log-likelihood of standardised labels, about 1.4
    per target for a standard normal; a learning rate far too large can keep
    it finite yet of order 1e24 (predictions of 1e22), which no early stopping
    notices.
    """
    best = history.val_loss[history.best_epoch] if history.val_loss else math.nan
    if best > DIVERGED_LOSS * max(n_targets, 1):
        raise FloatingPointError(
            f"{description}: the loss of the best epoch is {best:.3g} per galaxy, over {DIVERGED_LOSS:g} per target: "
            "the training diverged; try a smaller learning_rate"
        )


def refine_group_heads(net, batch_losses, val_loss, description: str = "training", **options) -> dict[str, int]:
    """Train each target group's heads alone on the frozen representation; return the epochs kept per group.

    The joint fit stops where the *sum* of the groups' validation losses is
    lowest, a compromise between groups that stop improving at different
    epochs. Given the representation the groups' heads are independent (a
    chained group is conditioned on label values, not on another group's
    heads), so each group's mean MLP, flow and classifier are trained further
    on their own loss, with every other parameter frozen, and early-stopped on
    the group's own validation loss; the joint fit's heads are kept unless an
    epoch improves on them. The missing-label imputation continues as in the
    joint fit. `train_network` passes the learning rate the joint fit ended
    with (after its plateau halvings), as the refinement continues a
    converged optimisation; restarting at the initial learning rate, 8-16
    times larger, did worse (on a draw of the mock that no benchmark uses,
    seed 11, metallicity's PIT KS went from 0.045 after the joint fit to 0.059
    after a refinement at 10⁻³ and 0.049 at the final rate; on seed 12 every
    target's KS was at most 0.029 at the final rate).

    Parameters
    ----------
    net : `~astro_galpost.model.network.PosteriorNetwork`
        The jointly fitted network (changed in place).
    batch_losses, val_loss : callable
        ``batch_losses(groups)`` and ``val_loss(groups)`` give `fit_module`'s
        arguments for the groups named in ``groups``.
    description : str
        Label of the progress bars (followed by the group's name).
    **options
        `fit_module` settings (learning rate, patience, ...).

    Returns
    -------
    dict
        Per group, the epochs of its own training that were kept (0: none).
    """
    trainable = [p for p in net.parameters() if p.requires_grad]
    refined = {}
    try:
        for g in net.groups:
            heads = net.head_parameters(g.name)
            own = {id(p) for p in heads}
            for p in trainable:
                p.requires_grad_(id(p) in own)
            history = fit_module(net, batch_losses((g.name,)), val_loss((g.name,)), parameters=heads,
                                 keep_start=True, description=f"{description}: {g.name} heads", **options)
            refined[g.name] = history.best_epoch + 1
    finally:
        for p in trainable:
            p.requires_grad_(True)
    return refined
