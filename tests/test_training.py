"""Training loop messages."""

import numpy as np
import torch

from astro_galpost.model.training import train_network


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
