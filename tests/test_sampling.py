"""The fast coupling-flow sampler reproduces zuko's sampling (same draws, same math)."""

import copy

import numpy as np
import pytest
import torch
import zuko
from scipy import stats
from torch import nn

from astro_galpost.model import sampling
from astro_galpost.model.flows import affine1d, nsf, realnvp
from astro_galpost.model.network import GroupSpec, PosteriorNetwork
from astro_galpost.model.sampling import (
    FastCouplingSampler,
    UnsupportedFlowError,
    choose_threads,
    sample_coupling_flow,
    sample_flow,
)

ATOL = 1e-4  # float32; observed differences are ~1e-6 (the products are split differently)


def _zuko(flow, context, n_samples, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return flow(context).sample(() if n_samples is None else (n_samples,))


def _fast(flow, context, n_samples, seed, **kwargs):
    torch.manual_seed(seed)
    return FastCouplingSampler(flow).sample(context, n_samples, **kwargs)


def _sharpen(flow, factor=4.0):
    """Scale up the output layers so shifts and log-scales are far from zero (bound active)."""
    with torch.no_grad():
        for t in flow.transform.transforms:
            t.hyper[-1].weight.mul_(factor)
            t.hyper[-1].bias.normal_(0.0, 2.0)
    return flow


@pytest.mark.parametrize("features", [2, 4])
@pytest.mark.parametrize("transforms", [1, 3, 6])
def test_same_samples_as_zuko(features, transforms):
    torch.manual_seed(0)
    flow = _sharpen(realnvp(features, 16, transforms=transforms, hidden_features=(32, 32)))
    context = torch.randn(7, 16)
    a = _zuko(flow, context, 200, seed=1)
    b = _fast(flow, context, 200, seed=1)
    assert b.shape == a.shape == (200, 7, features)
    assert b.dtype == torch.float32
    torch.testing.assert_close(b, a, atol=ATOL, rtol=1e-4)
    # not trivially equal: the flow moves the base draws a lot
    torch.manual_seed(1)
    z = torch.randn(200, 7, features)
    assert (a - z).abs().max() > 1.0


@pytest.mark.parametrize(
    "options",
    [
        {"randmask": True},
        {"hidden_features": (16,)},
        {"hidden_features": (24, 16, 8), "activation": nn.ELU},
        {"hidden_features": (32, 32), "activation": nn.SiLU},
    ],
)
def test_variants_match_zuko(options):
    torch.manual_seed(3)
    flow = _sharpen(zuko.flows.RealNVP(5, 16, transforms=4, **options))
    context = torch.randn(4, 16)
    torch.testing.assert_close(_fast(flow, context, 100, seed=2), _zuko(flow, context, 100, seed=2),
                               atol=ATOL, rtol=1e-4)


@pytest.mark.parametrize("chunk_rows", [1, 7, 100000])
def test_blocking_does_not_change_samples(chunk_rows):
    torch.manual_seed(0)
    flow = realnvp(4, 16, transforms=3, hidden_features=(32, 32))
    context = torch.randn(5, 16)
    ref = _zuko(flow, context, 33, seed=4)
    torch.testing.assert_close(_fast(flow, context, 33, seed=4, chunk_rows=chunk_rows), ref, atol=ATOL, rtol=1e-4)


def test_batch_shapes_and_single_draw():
    torch.manual_seed(0)
    flow = realnvp(3, 16, transforms=3, hidden_features=(32, 32))
    context = torch.randn(2, 3, 16)
    torch.testing.assert_close(_fast(flow, context, 20, seed=5), _zuko(flow, context, 20, seed=5), atol=ATOL, rtol=1e-4)
    assert _fast(flow, context, None, seed=5).shape == (2, 3, 3)
    assert _fast(flow, context, 0, seed=5).shape == (0, 2, 3, 3)
    assert _fast(flow, torch.randn(0, 16), 4, seed=5).shape == (4, 0, 3)
    torch.testing.assert_close(_fast(flow, context, None, seed=5), _zuko(flow, context, None, seed=5),
                               atol=ATOL, rtol=1e-4)


def test_per_sample_context():
    """Chained groups: a (S, N, C) context, whole or split into galaxy and per-sample parts."""
    torch.manual_seed(0)
    flow = _sharpen(realnvp(4, 16, transforms=4, hidden_features=(32, 32)))
    h = torch.randn(6, 12)
    s = torch.randn(50, 6, 4)
    full = torch.cat([h.expand(50, 6, 12), s], dim=-1)
    ref = _zuko(flow, full, None, seed=6)
    assert ref.shape == (50, 6, 4)
    # the whole per-sample context
    torch.testing.assert_close(_fast(flow, full, None, seed=6), ref, atol=ATOL, rtol=1e-4)
    # the galaxy part once per galaxy, the last 4 columns per sample
    torch.testing.assert_close(_fast(flow, h, 50, seed=6, sample_context=s), ref, atol=ATOL, rtol=1e-4)
    with pytest.raises(ValueError, match="context features"):
        FastCouplingSampler(flow).sample(h, 50)


def test_features_1_and_affine1d():
    """features=1 RealNVP is element-wise layers in zuko; affine1d is one. Both match zuko."""
    torch.manual_seed(0)
    flow = realnvp(1, 16, transforms=3, hidden_features=(32, 32))
    assert not any(isinstance(t, zuko.flows.GeneralCouplingTransform) for t in flow.transform.transforms)
    context = torch.randn(5, 16)
    assert FastCouplingSampler.supports(flow)
    ref = _zuko(flow, context, 40, seed=7)
    torch.testing.assert_close(_fast(flow, context, 40, seed=7), ref, atol=ATOL, rtol=1e-4)
    # chained affine1d (the metallicity flow): galaxy context plus sampled core values
    flow = affine1d(1, 16 + 4, hidden_features=(32, 32))
    s = torch.randn(40, 5, 4)
    ref = _zuko(flow, torch.cat([context.expand(40, 5, 16), s], -1), None, seed=8)
    torch.manual_seed(8)
    torch.testing.assert_close(sample_flow(flow, context, 40, sample_context=s), ref, atol=ATOL, rtol=1e-4)


def test_unsupported_flows_fall_back_to_zuko(monkeypatch):
    torch.manual_seed(0)
    context = torch.randn(5, 16)
    unsupported = [
        nsf(2, 16, transforms=2, hidden_features=(16, 16)),
        zuko.flows.MAF(3, 16, transforms=2, hidden_features=(16, 16)),
        zuko.flows.RealNVP(3, 16, transforms=2, hidden_features=(16, 16), normalize=True),  # LayerNorm
    ]

    class Custom(zuko.flows.RealNVP):  # a subclass that changes forward is not trusted
        def forward(self, c=None):
            return super().forward(c)

    unsupported.append(Custom(3, 16, transforms=2, hidden_features=(16, 16)))
    for flow in unsupported:
        assert not FastCouplingSampler.supports(flow)
        with pytest.raises(UnsupportedFlowError):
            FastCouplingSampler(flow)
        torch.manual_seed(9)
        got = sample_flow(flow, context, 30)
        assert torch.equal(got, _zuko(flow, context, 30, seed=9))
    # the flag off: the plain zuko path, bit for bit, also for supported flows
    monkeypatch.setattr(sampling, "FAST_SAMPLING", False)
    flow = realnvp(4, 16, transforms=2, hidden_features=(16, 16))
    torch.manual_seed(9)
    assert torch.equal(sample_flow(flow, context, 30), _zuko(flow, context, 30, seed=9))


def test_inference_mode_float32_float64_and_generator():
    torch.manual_seed(0)
    flow = realnvp(4, 16, transforms=3, hidden_features=(32, 32))
    context = torch.randn(3, 16)
    with torch.inference_mode():
        a = _fast(flow, context, 64, seed=10)
        b = _zuko(flow, context, 64, seed=10)
    assert a.dtype == torch.float32 and not a.requires_grad
    torch.testing.assert_close(a, b, atol=ATOL, rtol=1e-4)
    # outside inference mode the result is an ordinary tensor without a graph
    c = _fast(flow, context, 64, seed=10)
    assert not c.requires_grad and c.grad_fn is None
    c += 1.0
    # float64 flows sample in float64 and agree closely
    flow64 = copy.deepcopy(flow).double()
    d = _fast(flow64, context.double(), 64, seed=10)
    assert d.dtype == torch.float64
    torch.testing.assert_close(d, _zuko(flow64, context.double(), 64, seed=10), atol=1e-10, rtol=1e-10)
    # an explicit generator: reproducible, and leaves the global generator alone
    state = torch.get_rng_state()
    g1 = sample_coupling_flow(flow, context, 64, generator=torch.Generator().manual_seed(3))
    g2 = sample_coupling_flow(flow, context, 64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(g1, g2)
    assert torch.equal(torch.get_rng_state(), state)
    # a thread count for the call only
    before = torch.get_num_threads()
    sample_coupling_flow(flow, context, 8, threads=1)
    assert torch.get_num_threads() == before
    assert 1 <= choose_threads(100) <= choose_threads(10**6)


def test_same_distribution_other_seed():
    """Two-sample check with independent draws (not just identical-draw parity)."""
    torch.manual_seed(0)
    flow = _sharpen(realnvp(2, 16, transforms=4, hidden_features=(32, 32)), factor=2.0)
    context = torch.randn(1, 16)
    a = _zuko(flow, context, 3000, seed=11)[:, 0].numpy()
    b = _fast(flow, context, 3000, seed=12)[:, 0].numpy()
    for j in range(2):
        assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-4


def _network(seed=0):
    torch.manual_seed(seed)
    small = {"transforms": 3, "hidden_features": (32, 32)}
    groups = [
        GroupSpec("core", [0, 1, 2, 3], "realnvp", small),
        GroupSpec("metallicity", [4], "affine1d", {"hidden_features": (32, 32)}, condition_on=[0, 1, 2, 3],
                  detect=True),
        GroupSpec("lines", [5, 6, 7, 8], "realnvp", small),
        GroupSpec("extra", [9, 10], "nsf", {"transforms": 1, "hidden_features": (16, 16)}),
    ]
    return PosteriorNetwork(6, groups, representation=16, hidden=16).eval()


def test_posterior_network_unchanged(monkeypatch):
    net = _network()
    x = torch.randn(9, 6)
    torch.manual_seed(13)
    fast, p_fast = net.sample(x, 100)
    monkeypatch.setattr(sampling, "FAST_SAMPLING", False)
    torch.manual_seed(13)
    plain, p_plain = net.sample(x, 100)
    assert fast.shape == plain.shape == (100, 9, 11)
    torch.testing.assert_close(fast, plain, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(p_fast["metallicity"], p_plain["metallicity"])


def test_galaxy_posterior_unchanged(monkeypatch, mock_table, tiny):
    from astro_galpost import GalaxyPosterior

    gp = GalaxyPosterior(random_state=2, **tiny(max_epochs=1)).fit(mock_table[:200])
    fast = gp.sample(mock_table[600:610], n_samples=50)
    monkeypatch.setattr(sampling, "FAST_SAMPLING", False)
    plain = gp.sample(mock_table[600:610], n_samples=50)
    for name in ("log_mstar", "redshift", "metallicity", "halpha"):
        np.testing.assert_allclose(
            fast[name].distribution.value, plain[name].distribution.value, rtol=1e-4, atol=1e-5
        )
