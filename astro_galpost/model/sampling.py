"""Fast sampling of zuko coupling flows (RealNVP / NICE) for many samples per galaxy.

zuko samples a conditional RealNVP by drawing ``z ~ N(0, 1)`` and inverting its
coupling layers one by one; each layer's hyper-network (an MLP) reads
``[x_a, context]``. With a context of shape (N, C) and S samples, zuko expands
the context to (S, N, C), so the first Linear layer of every hyper-network does
``W_c @ context`` S times over for each galaxy; with the paper's 256-d context
that is two thirds of all the arithmetic. :class:`FastCouplingSampler` computes
``W_c @ context + b`` once per galaxy (for all layers in one matrix product)
and, per sample, only ``W_x @ x_a`` (and ``W_s @ s`` for a per-sample part
``s`` of the context, see below), then runs the rest of each hyper-network on
blocks of (samples × galaxies) rows sized to stay in cache.

The arithmetic is zuko's own: the same base draws (``z`` is drawn with one
``normal_`` call of shape ``(*sample_shape, *batch, D)``, as
:class:`~torch.distributions.Normal` does), the inverse layers in reverse order,
the shift/scale interleaving of ``zuko.utils.unpack`` (hyper-network output
``2j`` is the shift and ``2j + 1`` the unconstrained scale of the ``j``-th
transformed feature), the log-scale bound of
:class:`zuko.transforms.MonotonicAffineTransform`
(``log_scale = scale / (1 + |scale / log(slope)|)``) and ``x = (y - shift) /
exp(log_scale)``. So for the same random state the samples equal zuko's up to
float rounding (the matrix products are split differently), which the tests
check.

Supported flows (checked structurally, see :meth:`FastCouplingSampler.supports`):
a :class:`zuko.lazy.Flow` whose transforms are
:class:`zuko.flows.coupling.GeneralCouplingTransform` (any masks) or
context-conditioned :class:`zuko.flows.gaussianization.ElementWiseTransform`
layers with the default ``MonotonicAffineTransform`` and a
:class:`zuko.nn.MLP` hyper-network of Linear layers and element-wise
activations, over a ``DiagNormal`` base. This covers ``zuko.flows.RealNVP`` /
``NICE`` (including ``features=1``, which zuko builds from element-wise layers)
and this package's ``affine1d``. Anything else (NSF, MAF, LayerNorm in the
hyper-network, third-party flows, unconditional flows) goes through zuko's own
``flow(context).sample(shape)`` in :func:`sample_flow`.

Per-sample context. Chained groups condition on sampled values of other groups:
zuko sees a context ``cat([h expanded to (S, N, C), s])`` of shape (S, N, C + K).
Pass ``context=h`` (N, C) and ``sample_context=s`` (S, N, K) instead: the ``h``
part is still computed once per galaxy and only the ``K`` columns per sample.
A full per-sample context (S, N, C) with ``n_samples=None`` is also accepted; it
is then computed per sample, as zuko does, only blocked.

Threads. Nothing here changes torch's thread settings unless asked
(``threads=``). The products are (128 × 128) @ (128 × rows) on blocks of
``chunk_rows`` rows (2048 on CPU, measured best of 1024-8192); on a 2-core
machine shared with other work one thread was measured to beat two by far
(other processes take the second core and the two threads wait for each
other), see ``benchmarks/sampling_throughput.py`` and
:func:`~astro_galpost.utils.threads.choose_threads` (re-exported here), the package's
thread policy, which `~astro_galpost.GalaxyPosterior` applies around sampling.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
from dataclasses import dataclass

import torch
import zuko
from torch import Tensor, nn
from zuko.distributions import DiagNormal, NormalizingFlow
from zuko.flows.coupling import GeneralCouplingTransform
from zuko.flows.gaussianization import ElementWiseTransform
from zuko.lazy import Flow, LazyComposedTransform, UnconditionalDistribution
from zuko.transforms import MonotonicAffineTransform

from ..utils.threads import choose_threads, torch_threads

__all__ = [
    "FAST_SAMPLING",
    "FastCouplingSampler",
    "UnsupportedFlowError",
    "choose_threads",
    "flow_centre",
    "sample_coupling_flow",
    "sample_flow",
]


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


#: Whether :func:`sample_flow` (and so `PosteriorNetwork.sample`) uses the fast
#: sampler for supported flows. Set ``ASTRO_GALPOST_FAST_SAMPLING=0`` in the
#: environment, or assign ``astro_galpost.model.sampling.FAST_SAMPLING = False``, to
#: sample every flow the plain zuko way.
FAST_SAMPLING: bool = _env_flag("ASTRO_GALPOST_FAST_SAMPLING", True)

#: zuko's default minimum slope of MonotonicAffineTransform (1e-3 in zuko 1.x),
#: read from its signature so that it follows zuko.
_DEFAULT_SLOPE: float = inspect.signature(MonotonicAffineTransform).parameters["slope"].default

#: Rows (samples × galaxies) per block on CPU: a (rows × 128) float32 activation
#: is 1 MiB, so a layer's working set stays in L2.
_CPU_CHUNK_ROWS = 2048
#: Rows per block on accelerators (one large launch per layer).
_GPU_CHUNK_ROWS = 1 << 18
#: Bound on the per-galaxy precomputation held at once (bytes).
_PRECOMPUTE_BYTES = 32 << 20

# Activations that act element-wise, so that they may be applied to the
# transposed (features × rows) activations used here.
_ELEMENTWISE = (
    nn.ReLU, nn.ELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.GELU,
    nn.Softplus, nn.CELU, nn.SELU, nn.Mish, nn.Identity, nn.Hardtanh, nn.ReLU6,
)


class UnsupportedFlowError(TypeError):
    """The flow is not a structure :class:`FastCouplingSampler` reproduces, or has no Normal base to draw from."""


# ---------------------------------------------------------------- structure
def _is_linear(m: nn.Module) -> bool:
    if type(m) is zuko.nn.Linear:
        return m.weight.dim() == 2
    return type(m) is nn.Linear


def _same_method(obj, cls, name: str) -> bool:
    return getattr(type(obj), name, None) is getattr(cls, name, None)


@dataclass
class _Layer:
    """One coupling (or element-wise) affine layer, read from zuko's module."""

    idx_a: Tensor            # constant features (read by the hyper-network)
    idx_b: Tensor            # transformed features
    n_b: int
    w_first: Tensor          # (H, in) the first Linear's full weight
    b_first: Tensor | None   # (H,)
    n_a: int                 # columns of w_first that read x_a
    ops: list                # the rest of the hyper-network, in order
    log_slope: float


def _parse_layer(t: nn.Module, features: int) -> _Layer:
    if isinstance(t, GeneralCouplingTransform):
        for name in ("forward", "meta"):
            if not _same_method(t, GeneralCouplingTransform, name):
                raise UnsupportedFlowError(f"{type(t).__name__} overrides {name}()")
        mask = t.mask
        if mask.dim() != 1 or mask.numel() != features:
            raise UnsupportedFlowError("coupling mask does not match the features")
        idx_a = mask.nonzero().squeeze(-1)
        idx_b = (~mask).nonzero().squeeze(-1)
    elif isinstance(t, ElementWiseTransform):
        if not _same_method(t, ElementWiseTransform, "forward"):
            raise UnsupportedFlowError(f"{type(t).__name__} overrides forward()")
        if not hasattr(t, "hyper"):
            raise UnsupportedFlowError("unconditional element-wise layer")
        idx_a = torch.zeros(0, dtype=torch.long, device=t.hyper[0].weight.device)
        idx_b = torch.arange(features, device=t.hyper[0].weight.device)
    else:
        raise UnsupportedFlowError(f"layer {type(t).__name__} is not a coupling or element-wise layer")

    univariate = t.univariate
    if univariate is not MonotonicAffineTransform:
        raise UnsupportedFlowError(f"univariate transform {univariate!r} is not MonotonicAffineTransform")
    if tuple(tuple(s) for s in t.shapes) != ((), ()) or t.total != 2:
        raise UnsupportedFlowError("unexpected parameter shapes")

    hyper = t.hyper
    if not isinstance(hyper, nn.Sequential) or len(hyper) == 0:
        raise UnsupportedFlowError("hyper-network is not a Sequential MLP")
    modules = list(hyper)
    first, rest = modules[0], modules[1:]
    if not _is_linear(first) or not rest or not _is_linear(rest[-1]):
        raise UnsupportedFlowError("hyper-network must start and end with Linear layers")
    ops = []
    for m in rest:
        if _is_linear(m):
            bias = None if m.bias is None else m.bias.unsqueeze(-1)
            ops.append(("linear", m.weight, bias))
        elif type(m) is nn.ReLU:
            ops.append(("relu", None, None))
        elif type(m) in _ELEMENTWISE:
            ops.append(("module", m, None))
        else:
            raise UnsupportedFlowError(f"hyper-network layer {type(m).__name__} is not element-wise")
    n_a, n_b = idx_a.numel(), idx_b.numel()
    if rest[-1].weight.shape[0] != 2 * n_b:
        raise UnsupportedFlowError("hyper-network output does not match 2 parameters per feature")
    if first.weight.shape[1] < n_a:
        raise UnsupportedFlowError("hyper-network input is narrower than the coupling split")
    return _Layer(idx_a, idx_b, n_b, first.weight, first.bias, n_a, ops, math.log(_DEFAULT_SLOPE))


def _parse_flow(flow: nn.Module) -> tuple[list[_Layer], Tensor, Tensor]:
    if not isinstance(flow, Flow) or not _same_method(flow, Flow, "forward"):
        raise UnsupportedFlowError(f"{type(flow).__name__} is not a plain zuko Flow")
    transform = flow.transform
    if isinstance(transform, LazyComposedTransform):
        if not _same_method(transform, LazyComposedTransform, "forward"):
            raise UnsupportedFlowError("custom composed transform")
        transforms = list(transform.transforms)
    else:
        transforms = [transform]
    base = flow.base
    if not isinstance(base, UnconditionalDistribution) or not _same_method(base, UnconditionalDistribution, "forward"):
        raise UnsupportedFlowError("base is not an unconditional distribution")
    dist = base()
    if type(dist) is not DiagNormal or dist.reinterpreted_batch_ndims != 1:
        raise UnsupportedFlowError("base is not a DiagNormal")
    loc, scale = dist.base_dist.loc, dist.base_dist.scale
    if loc.dim() != 1:
        raise UnsupportedFlowError("base is not a vector DiagNormal")
    layers = [_parse_layer(t, loc.shape[0]) for t in transforms]
    n_context = {layer.w_first.shape[1] - layer.n_a for layer in layers}
    if len(n_context) != 1 or 0 in n_context:
        raise UnsupportedFlowError("layers disagree on the context size, or the flow is unconditional")
    return layers, loc, scale


# ------------------------------------------------------------------ sampler
class FastCouplingSampler:
    """Samples a zuko RealNVP/NICE flow with per-galaxy context work done once.

    Parameters
    ----------
    flow : zuko.lazy.Flow
        A conditional ``zuko.flows.RealNVP`` / ``NICE`` (or any `~zuko.lazy.Flow`
        of the supported structure, see the module docstring). Raises
        `UnsupportedFlowError` for anything else.

    Notes
    -----
    The sampler keeps references to the flow's parameter tensors and reads them
    at every `sample` call, so in-place updates (optimiser steps,
    ``load_state_dict``) are seen; build a new sampler if modules are replaced.
    :func:`sample_flow` builds one per call (well under a millisecond).

    Examples
    --------
    >>> import torch, zuko
    >>> flow = zuko.flows.RealNVP(4, 16, transforms=3)
    >>> FastCouplingSampler.supports(flow)
    True
    >>> FastCouplingSampler(flow).sample(torch.randn(5, 16), 100).shape
    torch.Size([100, 5, 4])
    """

    def __init__(self, flow: nn.Module) -> None:
        layers, loc, scale = _parse_flow(flow)
        self.flow = flow
        self.layers = layers
        self.loc, self.scale = loc, scale
        self.features = loc.shape[0]
        self.n_context = layers[0].w_first.shape[1] - layers[0].n_a
        self.hidden = [layer.w_first.shape[0] for layer in layers]

    @staticmethod
    def supports(flow: nn.Module) -> bool:
        """Whether ``flow`` has the structure this sampler reproduces."""
        try:
            _parse_flow(flow)
        except UnsupportedFlowError:
            return False
        return True

    # The first Linear's columns are [x_a | galaxy context | per-sample context].
    def _weights(self, n_shared: int):
        w_shared, b_shared, w_sample = [], [], []
        for layer in self.layers:
            w = layer.w_first
            w_shared.append(w[:, layer.n_a:layer.n_a + n_shared])
            b = layer.b_first if layer.b_first is not None else w.new_zeros(w.shape[0])
            b_shared.append(b)
            # per-sample columns: x_a then the per-sample context
            w_sample.append(torch.cat([w[:, :layer.n_a], w[:, layer.n_a + n_shared:]], dim=1))
        return torch.cat(w_shared, 0), torch.cat(b_shared, 0), w_sample

    @staticmethod
    def _rest(layer: _Layer, h: Tensor) -> Tensor:
        """The hyper-network after its first Linear, on transposed (features × rows) ``h``."""
        for kind, a, b in layer.ops:
            if kind == "linear":
                h = torch.mm(a, h) if b is None else torch.addmm(b, a, h)
            elif kind == "relu":
                h = h.relu_()
            else:
                h = a(h)
        return h

    @staticmethod
    def _invert(layer: _Layer, x_b: Tensor, phi: Tensor) -> Tensor:
        # zuko.utils.unpack of phi.unflatten(-1, (-1, 2)): even rows shift, odd rows scale
        shift, scale = phi[0::2], phi[1::2]
        log_scale = scale / (1 + abs(scale / layer.log_slope))
        return (x_b - shift) / log_scale.exp()

    def sample(
        self,
        context: Tensor,
        n_samples: int | None = None,
        *,
        sample_context: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        chunk_rows: int | None = None,
        threads: int | None = None,
    ) -> Tensor:
        """Draw samples as ``flow(context).sample((n_samples,))`` would.

        Parameters
        ----------
        context : Tensor
            ``(*batch, C)`` context, typically ``(N, C)``: one row per galaxy. Its part of
            each first layer is computed once per row.
        n_samples : int or None
            Samples per row; `None` for a single draw per row (zuko's
            ``.sample()``), e.g. when ``context`` is already per sample.
        sample_context : Tensor, optional
            ``(n_samples, *batch, K)`` per-sample context appended after ``context``:
            the result is distributed as
            ``flow(cat([context expanded, sample_context], -1)).sample()``.
        generator : torch.Generator, optional
            Generator for the base draws; default torch's global one (then the
            draws are exactly zuko's).
        noise : Tensor, optional
            Standard-normal base draws of the result's shape to use instead of
            fresh ones (zeros give the flow's centre, see :func:`flow_centre`).
        chunk_rows : int, optional
            Rows (samples × rows of ``context``) per block; default 2048 on CPU.
        threads : int, optional
            Temporarily use this many intra-op threads (see :func:`choose_threads`).

        Returns
        -------
        Tensor
            ``(n_samples, *batch, D)``, or ``(*batch, D)`` when ``n_samples`` is None.
        """
        n_shared, n_sample_ctx = self._context_sizes(context, sample_context)
        batch = context.shape[:-1]
        sample_shape = torch.Size(() if n_samples is None else (int(n_samples),))
        n = 1 if n_samples is None else int(n_samples)
        rows = math.prod(batch)
        if chunk_rows is None:
            chunk_rows = _CPU_CHUNK_ROWS if self.loc.device.type == "cpu" else _GPU_CHUNK_ROWS

        with torch.no_grad(), (contextlib.nullcontext() if threads is None else torch_threads(threads)):
            z = self._base_draws(sample_shape + batch + (self.features,), generator, noise)
            if n == 0 or rows == 0:
                return z
            sc = None
            if sample_context is not None:
                sc = sample_context.expand(sample_shape + batch + (n_sample_ctx,)).reshape(n, rows, n_sample_ctx)
            # z is inverted in place, viewed as (samples, galaxies, D)
            self._invert_rows(z.view(n, rows, self.features), context.reshape(rows, n_shared), sc, chunk_rows)
        return z

    def _context_sizes(self, context: Tensor, sample_context: Tensor | None) -> tuple[int, int]:
        """Check the context widths against the flow's; return the galaxy and per-sample widths."""
        if context.shape[-1] == 0 and sample_context is None:
            raise UnsupportedFlowError("empty context")
        n_shared = context.shape[-1]
        n_sample_ctx = 0 if sample_context is None else sample_context.shape[-1]
        if n_shared + n_sample_ctx != self.n_context:
            raise ValueError(
                f"the flow expects {self.n_context} context features, got {n_shared} + {n_sample_ctx}"
            )
        return n_shared, n_sample_ctx

    def _base_draws(self, shape: torch.Size, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        """Base draws of ``shape`` as ``Normal.rsample``: ``loc + eps * scale``, ``eps`` drawn or given."""
        device, dtype = self.loc.device, self.loc.dtype
        if noise is None:
            eps = torch.empty(shape, dtype=dtype, device=device)
            eps.normal_(generator=generator)
        else:
            eps = noise.to(dtype=dtype, device=device).expand(shape).clone()
        return eps.mul_(self.scale).add_(self.loc)

    def _invert_rows(self, out: Tensor, ctx: Tensor, sc: Tensor | None, chunk_rows: int) -> None:
        """Invert all layers in place on ``out`` (S, N, D), given ``ctx`` (N, C) and ``sc`` (S, N, K) or None."""
        n, rows = out.shape[0], out.shape[1]
        n_sample_ctx = 0 if sc is None else sc.shape[-1]
        w_shared, b_shared, w_sample = self._weights(ctx.shape[1])
        per_sample = [layer.n_a + n_sample_ctx > 0 for layer in self.layers]

        # blocks: galaxies (rows of context) in super-blocks for the precomputation,
        # then (samples × galaxies) blocks of about chunk_rows rows
        block = max(1, _PRECOMPUTE_BYTES // max(1, w_shared.shape[0] * out.element_size()))
        for r0 in range(0, rows, block):
            r1 = min(rows, r0 + block)
            pre_l, phi_gal = self._precompute(ctx[r0:r1], w_shared, b_shared, per_sample)
            g_block = max(1, min(r1 - r0, chunk_rows // n))
            s_block = max(1, min(n, chunk_rows // g_block))
            for g0 in range(r0, r1, g_block):
                g1 = min(r1, g0 + g_block)
                for s0 in range(0, n, s_block):
                    s1 = min(n, s0 + s_block)
                    self._invert_block(out, sc, slice(s0, s1), slice(g0, g1), slice(g0 - r0, g1 - r0),
                                       pre_l, phi_gal, w_sample)

    def _precompute(
        self, ctx: Tensor, w_shared: Tensor, b_shared: Tensor, per_sample: list[bool]
    ) -> tuple[list[Tensor], list[Tensor | None]]:
        """Each layer's galaxy-context part (H, g), and the hyper-network output of layers without per-sample input."""
        # every layer's context part, once per galaxy: (sum H, g) transposed
        pre = torch.addmm(b_shared.unsqueeze(-1), w_shared, ctx.t())
        pre_l, start = [], 0
        for h in self.hidden:
            pre_l.append(pre[start:start + h])
            start += h
        # layers with no per-sample input: the whole hyper-network per galaxy
        phi_gal = [
            None if per_sample[i] else self._rest(self.layers[i], pre_l[i].clone())
            for i in range(len(self.layers))
        ]
        return pre_l, phi_gal

    def _invert_block(
        self,
        out: Tensor,
        sc: Tensor | None,
        samples: slice,
        galaxies: slice,
        local: slice,
        pre_l: list[Tensor],
        phi_gal: list[Tensor | None],
        w_sample: list[Tensor],
    ) -> None:
        """Invert all layers in place on ``out[samples, galaxies]`` (``local``: the galaxies within the super-block)."""
        ns, ng = samples.stop - samples.start, galaxies.stop - galaxies.start
        # transposed block: (D, ng * ns), samples fastest (so that the
        # per-galaxy term broadcasts along contiguous runs)
        xt = out.new_empty(self.features, ng * ns)
        xt.view(self.features, ng, ns).copy_(out[samples, galaxies].permute(2, 1, 0))
        st = None
        if sc is not None:
            st = sc[samples, galaxies].permute(2, 1, 0).reshape(sc.shape[-1], ng * ns)
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if phi_gal[i] is None:
                phi = self._per_sample_params(layer, w_sample[i], xt, st, pre_l[i][:, local], ng, ns)
            else:
                phi = phi_gal[i][:, local].unsqueeze(-1).expand(-1, ng, ns)
                phi = phi.reshape(-1, ng * ns)
            x_b = xt.index_select(0, layer.idx_b)
            xt.index_copy_(0, layer.idx_b, self._invert(layer, x_b, phi))
        out[samples, galaxies] = xt.view(self.features, ng, ns).permute(2, 1, 0)

    def _per_sample_params(
        self, layer: _Layer, w: Tensor, xt: Tensor, st: Tensor | None, pre: Tensor, ng: int, ns: int
    ) -> Tensor:
        """The hyper-network output on a (D, ng * ns) block: per-sample columns ``w`` plus the galaxy part ``pre``."""
        inp = xt.index_select(0, layer.idx_a) if layer.n_a else None
        if st is not None:
            inp = st if inp is None else torch.cat([inp, st], 0)
        h = torch.mm(w, inp)
        h.view(-1, ng, ns).add_(pre.unsqueeze(-1))
        return self._rest(layer, h)


def sample_coupling_flow(
    flow: nn.Module,
    context: Tensor,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    *,
    sample_context: Tensor | None = None,
    chunk_rows: int | None = None,
    threads: int | None = None,
) -> Tensor:
    """Sample a supported zuko coupling flow fast; see `FastCouplingSampler.sample`.

    Raises `UnsupportedFlowError` for flows it does not reproduce; use
    :func:`sample_flow` for a version that falls back to zuko.
    """
    return FastCouplingSampler(flow).sample(
        context, n_samples, sample_context=sample_context, generator=generator,
        chunk_rows=chunk_rows, threads=threads,
    )


def _plain_sample(
    flow: nn.Module,
    context: Tensor,
    n_samples: int | None,
    sample_context: Tensor | None,
    generator: torch.Generator | None,
    noise: Tensor | None = None,
) -> Tensor:
    shape = torch.Size(() if n_samples is None else (int(n_samples),))
    if sample_context is not None:
        full = shape + context.shape[:-1]
        context = torch.cat([context.expand(full + context.shape[-1:]), sample_context.expand(full + sample_context.shape[-1:])], dim=-1)
        shape = torch.Size(())
    dist = flow(context)
    if generator is None and noise is None:
        return dist.sample(shape)
    # a generator or given base draws: draw from the base ourselves where the flow is a zuko NormalizingFlow
    base = dist.base if isinstance(dist, NormalizingFlow) else None
    normal = getattr(base, "base_dist", None)
    if not isinstance(normal, torch.distributions.Normal):
        raise UnsupportedFlowError(
            f"a generator or base draws can only be used with zuko flows over a Normal base, not {type(flow).__name__}")
    with torch.no_grad():
        if noise is None:
            noise = torch.empty(shape + base.batch_shape + base.event_shape, dtype=normal.loc.dtype, device=normal.loc.device)
            noise.normal_(generator=generator)
        return dist.transform.inv(normal.loc + noise * normal.scale)


def sample_flow(
    flow: nn.Module,
    context: Tensor,
    n_samples: int | None = None,
    *,
    sample_context: Tensor | None = None,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """Sample any flow of this package: fast where supported, zuko's way otherwise.

    Equivalent to ``flow(context).sample((n_samples,))`` (or, with
    ``sample_context``, to ``flow(cat([context expanded to (n_samples, ...),
    sample_context], -1)).sample()``). Uses :class:`FastCouplingSampler` when
    :data:`FAST_SAMPLING` is true and the flow's structure is supported, with the
    same base draws as zuko; falls back to zuko's own sampling for every other
    flow (NSF, third-party flows, ...). ``noise``, standard-normal base draws
    of the result's shape, replaces fresh draws (zuko flows over a Normal base).
    """
    if FAST_SAMPLING and context is not None and context.shape[-1] > 0:
        try:
            sampler = FastCouplingSampler(flow)
        except UnsupportedFlowError:
            sampler = None
        if sampler is not None:
            return sampler.sample(context, n_samples, sample_context=sample_context, generator=generator, noise=noise)
    return _plain_sample(flow, context, n_samples, sample_context, generator, noise)


def flow_centre(
    flow: nn.Module,
    context: Tensor,
    features: int,
    n_samples: int | None = None,
    *,
    sample_context: Tensor | None = None,
) -> Tensor | None:
    """The flow's centre per row: the image of its base distribution's location.

    For a one-dimensional flow (a monotone map of a Normal) this is the median
    of the flow's distribution; for several dimensions a central point of it.
    The recalibration widens or narrows a posterior about this point
    (`astro_galpost.model.recalibration`). Arguments as in :func:`sample_flow`;
    ``features`` is the flow's dimension. Returns ``(*context.shape[:-1],
    features)``, or ``(n_samples, *context.shape[:-1], features)`` when
    ``n_samples`` is given (with a ``sample_context``, one centre per sample);
    `None` for a distribution that is not a zuko normalizing flow over a
    Normal base (a mixture, a third-party distribution), which has no such point.

    Examples
    --------
    >>> import torch, zuko
    >>> flow = zuko.flows.RealNVP(1, 8, transforms=2)
    >>> context = torch.randn(3, 8)
    >>> centre = flow_centre(flow, context, 1)
    >>> draws = sample_flow(flow, context, 20000)
    >>> bool(torch.allclose(centre, draws.median(dim=0).values, atol=0.05))
    True
    """
    shape = (() if n_samples is None else (int(n_samples),)) + tuple(context.shape[:-1]) + (features,)
    zeros = torch.zeros(shape, dtype=context.dtype, device=context.device)
    try:
        return sample_flow(flow, context, n_samples, sample_context=sample_context, noise=zeros)
    except UnsupportedFlowError:
        return None
