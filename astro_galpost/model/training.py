"""Mini-batch training with a validation split, early stopping and a progress bar."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["TrainingHistory", "train_network", "split_indices"]


@dataclass
class TrainingHistory:
    """Per-epoch losses of one training run."""

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def to_dict(self) -> dict:
        return {
            "train_loss": self.train_loss,
            "val_loss": self.val_loss,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }


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


def _impute(net, x, y, valid, rows) -> None:
    """Advance ``net``'s imputation of the missing labels of ``rows`` in place (if it imputes)."""
    if hasattr(net, "impute") and not bool(valid[rows].all()):
        y[rows] = net.impute(x[rows], y[rows], valid[rows])


def _batched_loss(net, x, y, valid, batch_size: int) -> float:
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        _impute(net, x, y, valid, sl)
        loss, _ = net.loss(x[sl], y[sl], valid[sl])
        total += float(loss) * len(x[sl])
        count += len(x[sl])
    return total / max(count, 1)


def _say_stopped_early(bar, description: str, epoch: int, best_epoch: int, progress: bool) -> None:
    """Put "stopped early at epoch N (best N′)" (1-based) on the bar and, when shown, on its own line."""
    message = f"{description}: stopped early at epoch {epoch + 1} (best {best_epoch + 1})"
    bar.set_description(message)
    if progress:
        tqdm.write(message)


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
) -> TrainingHistory:
    """Train ``net`` (which must have ``loss(x, y, valid)``) and keep its best state.

    A network with ``impute(x, y, valid)`` fills missing labels: the imputed
    values live in the label arrays (missing entries start at 0, the
    standardised mean) and each visit of a row advances them (see
    `astro_galpost.model.network.PosteriorNetwork.impute`).

    Stops when the validation loss has not improved for ``patience`` epochs
    (saying "stopped early at epoch N (best N′)" when ``progress``) and
    restores the weights of the best epoch. The learning rate is halved when
    the validation loss stalls for ``patience // 3`` epochs.
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    as_t = lambda a, dt=torch.float32: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    y = np.where(valid, y, 0.0)
    xt, yt, vt = as_t(x[train_index]), as_t(y[train_index]), as_t(valid[train_index], torch.bool)
    xv, yv, vv = as_t(x[val_index]), as_t(y[val_index]), as_t(valid[val_index], torch.bool)

    net.to(device)
    optimiser = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimiser, factor=0.5, patience=max(1, patience // 3))
    history = TrainingHistory()
    best, best_state, waited = math.inf, copy.deepcopy(net.state_dict()), 0
    n = len(xt)
    bar = tqdm(range(max_epochs), desc=description, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        net.train()
        order = torch.randperm(n, generator=gen).to(device)
        running = 0.0
        for start in range(0, n, batch_size):
            batch = order[start:start + batch_size]
            _impute(net, xt, yt, vt, batch)
            loss, _ = net.loss(xt[batch], yt[batch], vt[batch])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            optimiser.step()
            running += float(loss.detach()) * len(batch)
        history.train_loss.append(running / max(n, 1))

        net.eval()
        with torch.no_grad():
            val = _batched_loss(net, xv, yv, vv, 4096) if len(xv) else history.train_loss[-1]
        history.val_loss.append(val)
        scheduler.step(val)
        if val < best - 1e-4:
            best, waited, history.best_epoch = val, 0, epoch
            best_state = copy.deepcopy(net.state_dict())
        else:
            waited += 1
        bar.set_postfix(train=f"{history.train_loss[-1]:.3f}", val=f"{val:.3f}", best=f"{best:.3f}")
        if not math.isfinite(val):
            raise FloatingPointError(
                f"{description}: the validation loss became {val} at epoch {epoch}; "
                "try a smaller learning_rate"
            )
        if waited >= patience:
            history.stopped_early = True
            _say_stopped_early(bar, description, epoch, history.best_epoch, progress)
            break
    bar.close()
    net.load_state_dict(best_state)
    net.eval()
    return history
