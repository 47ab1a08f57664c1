"""The one training loop: its messages, stopping rule and kept weights."""

import numpy as np
import pytest
import torch

from astro_galpost.model.training import fit_module, train_network


class _Constant(torch.nn.Module):
    """A one-parameter model whose loss is (w - y)²; with learning rate 0 it never improves."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def loss(self, x, y, valid):
        return ((self.w - y[:, 0]) ** 2).mean(), None


def test_early_stop_is_announced(capsys):
    x, y = np.zeros((40, 1), np.float32), np.ones((40, 1), np.float32)
    history = train_network(_Constant(), x, y, np.ones_like(y, bool), train_index=np.arange(30),
                            val_index=np.arange(30, 40), max_epochs=50, patience=4, learning_rate=0.0,
                            weight_decay=0.0, progress=True, description="fit")
    assert history.stopped_early and len(history.val_loss) == 5 and history.best_epoch == 0
    assert "fit: stopped early at epoch 5 (best 1)" in capsys.readouterr().out


def test_no_message_without_progress(capsys):
    x, y = np.zeros((40, 1), np.float32), np.ones((40, 1), np.float32)
    train_network(_Constant(), x, y, np.ones_like(y, bool), train_index=np.arange(30), val_index=np.arange(30, 40),
                  max_epochs=50, patience=2, learning_rate=0.0, progress=False)
    assert "stopped early" not in capsys.readouterr().out


def _scripted(values, seen):
    """A validation loss that returns ``values`` in turn and records the weight it was computed at."""
    it = iter(values)

    def val_loss():
        seen.append(net.w.item())
        return next(it)

    net = _Constant()
    return net, val_loss


def _one_row_batches(net):
    def batch_losses():
        yield (net.w - 1.0).square().sum(), 1
    return batch_losses


def test_fit_module_restores_best_or_keeps_last():
    seen = []
    net, val_loss = _scripted([3.0, 2.0, 2.5, 2.6, 2.7], seen)
    history = fit_module(net, _one_row_batches(net), val_loss, learning_rate=0.1, max_epochs=5, patience=3,
                         progress=False)
    assert history.best_epoch == 1 and history.stopped_early and len(history.val_loss) == 5
    assert net.w.item() == seen[1] != seen[-1]  # the best epoch's weights are back
    seen = []
    net, val_loss = _scripted([3.0, 2.0, 2.5, 2.6, 2.7], seen)
    history = fit_module(net, _one_row_batches(net), val_loss, learning_rate=0.1, max_epochs=5, patience=0,
                         early_stopping=False, progress=False)
    assert history.best_epoch == 4 and not history.stopped_early and len(history.val_loss) == 5
    assert net.w.item() == seen[-1]  # a fixed schedule keeps the last weights


@pytest.mark.parametrize("scale", [100.0, -100.0, 0.01])
def test_fit_module_improvement_is_relative(scale):
    """An improvement counts when it exceeds 1e-4 x |best|, whatever the scale of the loss."""
    def run(values):
        net, val_loss = _scripted(values, [])
        return fit_module(net, _one_row_batches(net), val_loss, learning_rate=0.0, max_epochs=len(values),
                          patience=2, progress=False)

    small = run([scale, scale - 5e-5 * abs(scale), scale - 9e-5 * abs(scale), scale])
    assert small.best_epoch == 0 and small.stopped_early and len(small.val_loss) == 3
    enough = run([scale, scale - 2e-4 * abs(scale), scale, scale])
    assert enough.best_epoch == 1 and enough.stopped_early and len(enough.val_loss) == 4


def test_fit_module_names_a_diverged_run():
    net, val_loss = _scripted([1.0, float("nan")], [])
    with pytest.raises(FloatingPointError, match="vae-ish: the validation loss became nan at epoch 1"):
        fit_module(net, _one_row_batches(net), val_loss, max_epochs=5, progress=False, description="vae-ish")


def test_adamw_without_weight_decay_is_adam():
    """What lets the VAE train through fit_module (AdamW) with the updates Adam gave it."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 2), torch.nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    opt_a = torch.optim.Adam(a.parameters(), lr=1e-2)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.0)
    x = torch.randn(16, 4)
    for _ in range(5):
        for net, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
