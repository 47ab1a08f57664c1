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


def test_fit_module_keep_start_keeps_the_starting_weights_unless_an_epoch_beats_them():
    seen = []
    # the starting weights score 1.0; no epoch beats them
    net, val_loss = _scripted([1.0, 2.0, 1.5, 1.2], seen)
    history = fit_module(net, _one_row_batches(net), val_loss, learning_rate=0.1, max_epochs=3, patience=3,
                         keep_start=True, progress=False)
    assert history.best_epoch == -1 and net.w.item() == seen[0] == 0.0 and len(history.val_loss) == 3
    # the second epoch does
    seen = []
    net, val_loss = _scripted([1.0, 2.0, 0.5, 1.2], seen)
    history = fit_module(net, _one_row_batches(net), val_loss, learning_rate=0.1, max_epochs=3, patience=3,
                         keep_start=True, progress=False)
    assert history.best_epoch == 1 and net.w.item() == seen[2] != 0.0


def test_fit_module_optimises_only_the_parameters_given():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    before = [p.detach().clone() for p in net.parameters()]
    x = torch.randn(32, 3)

    def batch_losses():
        yield net(x).square().mean(), 32

    fit_module(net, batch_losses, None, max_epochs=3, early_stopping=False, progress=False,
               parameters=net[1].parameters())
    after = list(net.parameters())
    assert all(torch.equal(a, b) for a, b in zip(after[:2], before[:2]))
    assert not torch.equal(after[2], before[2])


def _two_groups(seed):
    from astro_galpost.model.network import GroupSpec, PosteriorNetwork

    torch.manual_seed(seed)
    groups = [GroupSpec("core", [0, 1], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]}),
              GroupSpec("lines", [2], flow="affine1d", flow_options={"hidden_features": [16]})]
    return PosteriorNetwork(3, groups, representation=16, hidden=16)


def test_head_refinement_leaves_the_representation_and_lowers_each_groups_validation_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    y = np.column_stack([x[:, 0], x[:, 1] * x[:, 0], np.sin(2 * x[:, 2])]) + 0.3 * rng.normal(size=(400, 3))
    y = y.astype(np.float32)
    valid = np.ones_like(y, bool)
    valid[::3, 2] = False  # a missing line: the imputation goes on during the refinement
    kwargs = dict(train_index=np.arange(300), val_index=np.arange(300, 400), batch_size=64, max_epochs=15,
                  patience=5, seed=1, progress=False)
    joint, refined = _two_groups(0), _two_groups(0)
    history_joint = train_network(joint, x, y, valid, refine_heads=False, **kwargs)
    history = train_network(refined, x, y, valid, refine_heads=True, **kwargs)
    assert history_joint.refined == {} and set(history.refined) == {"core", "lines"}
    assert history.val_loss == history_joint.val_loss  # the joint fit is the same
    for a, b in zip(joint.trunk.parameters(), refined.trunk.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert all(p.requires_grad for p in refined.parameters())
    xv, yv, vv = (torch.as_tensor(a[300:]) for a in (x, np.where(valid, y, 0.0).astype(np.float32), valid))
    with torch.no_grad():
        for name in ("core",):  # lines' loss depends on the imputed values, which differ between the two
            assert refined.loss(xv, yv, vv, (name,))[0] <= joint.loss(xv, yv, vv, (name,))[0] + 1e-6
    assert any(history.refined.values())


def test_head_refinement_is_skipped_for_one_group_or_no_validation_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    y = x[:, :2].copy()
    from astro_galpost.model.network import GroupSpec, PosteriorNetwork

    net = PosteriorNetwork(3, [GroupSpec("core", [0, 1], flow="realnvp",
                                         flow_options={"transforms": 2, "hidden_features": [8]})], 8, 8)
    h = train_network(net, x, y, np.ones_like(y, bool), train_index=np.arange(80), val_index=np.arange(80, 100),
                      max_epochs=2, progress=False)
    assert h.refined == {}
    y3 = np.column_stack([y, x[:, 2]]).astype(np.float32)
    h = train_network(_two_groups(0), x, y3, np.ones_like(y3, bool), train_index=np.arange(100),
                      val_index=np.arange(0), max_epochs=2, progress=False)
    assert h.refined == {}
