import numpy as np
import torch

from astro_galpost.model.network import GroupSpec, PosteriorNetwork


def _net():
    torch.manual_seed(0)
    groups = [
        GroupSpec("core", [0, 1], flow="realnvp", flow_options={"transforms": 2, "hidden_features": [16]}),
        GroupSpec("metallicity", [2], flow="affine1d", flow_options={"hidden_features": [16]},
                  condition_on=[0, 1], detect=True),
    ]
    return PosteriorNetwork(4, groups, representation=8, hidden=16)


def _batch(n=64):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g)


def _flow_grad(net, group):
    return sum(float(p.grad.abs().sum()) for p in net.flows[group].parameters() if p.grad is not None)


def test_rows_with_a_missing_label_still_train_the_group_flow():
    net = _net()
    x, y = _batch()
    valid = torch.ones_like(y, dtype=torch.bool)
    valid[:, 1] = False  # the second core label is missing everywhere (e.g. no σ measured)
    loss, parts = net.loss(x, y, valid)
    loss.backward()
    assert np.isfinite(parts["core_nll"]) and parts["core_nll"] != 0.0
    assert _flow_grad(net, "core") > 0
    # the chained group is trained too, with the missing conditioning value imputed
    assert _flow_grad(net, "metallicity") > 0


def test_rows_without_any_label_of_a_group_do_not_train_its_flow():
    net = _net()
    x, y = _batch()
    valid = torch.ones_like(y, dtype=torch.bool)
    valid[:, 2] = False
    loss, parts = net.loss(x, y, valid)
    loss.backward()
    assert parts["metallicity_nll"] == 0.0 and _flow_grad(net, "metallicity") == 0.0


def test_imputation_does_not_leak_into_the_labels_and_validation_loss_is_repeatable():
    net = _net().eval()
    x, y = _batch()
    y0 = y.clone()
    valid = torch.rand(y.shape, generator=torch.Generator().manual_seed(2)) > 0.3
    a, _ = net.loss(x, y, valid)
    b, _ = net.loss(x, y, valid)
    assert torch.equal(y, y0)
    assert float(a.detach()) == float(b.detach())
    # complete labels need no imputation: the loss does not depend on the RNG at all
    net.train()
    full = torch.ones_like(valid)
    torch.manual_seed(5)
    c, _ = net.loss(x, y, full)
    torch.manual_seed(6)
    d, _ = net.loss(x, y, full)
    assert float(c.detach()) == float(d.detach())


def test_measurable_coupling_keeps_draws_paired_and_hits_the_weights():
    """The metallicity group's chained core draws are resampled toward measurable galaxies by the
    maximal coupling: every draw index t comes out with probability p_t / sum p, and a draw keeps
    its own values with probability min(1, p_s / mean p) (all of them when p does not vary)."""
    from astro_galpost.model.network import _coupling_index

    torch.manual_seed(0)
    p = torch.tensor([0.9, 0.9, 0.1, 0.1, 0.5])[:, None].expand(5, 40_000)  # (S, N): N repeats
    index = _coupling_index(p)
    counts = torch.stack([(index == t).float().mean() for t in range(5)])
    np.testing.assert_allclose(counts.numpy(), (p[:, 0] / p[:, 0].sum()).numpy(), atol=0.003)
    kept = (index == torch.arange(5)[:, None]).float().mean(dim=1)
    np.testing.assert_allclose(kept.numpy(), [1, 1, 0.2, 0.2, 1], atol=0.01)
    assert kept.mean() > p[:, 0].mean() / p[:, 0].max() + 0.1  # more pairs than keeping with p / max p
    flat = torch.full((7, 3), 0.3)
    assert torch.equal(_coupling_index(flat), torch.arange(7)[:, None].expand(7, 3))
