"""Conditional normalizing flows for the residuals of each target group, built on zuko.

A flow factory takes the number of features (targets in the group), the size of
the context (the 256-d representation, plus conditioning targets for chained
groups) and keyword options, and returns a zuko `~zuko.lazy.LazyDistribution`:
calling it with a context gives a distribution with ``log_prob`` and ``sample``.

The seed paper's flows are RealNVP (affine coupling). They were to be written
with ``flowtorch``, but its last release (0.8, 2022) asserts ``context is None``
in every bijector, so it cannot make conditional flows, and it has no coupling
layer; zuko's coupling transforms are the maintained equivalent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import zuko
from zuko.distributions import DiagNormal
from zuko.flows.gaussianization import ElementWiseTransform
from zuko.lazy import Flow, LazyDistribution, UnconditionalDistribution

from ..utils.registry import Registry

__all__ = ["FLOWS", "register_flow", "build_flow", "realnvp", "affine1d", "nsf"]

FlowFactory = Callable[..., LazyDistribution]

#: Registry of flow factories: ``FLOWS["realnvp"](features, context)``.
FLOWS: Registry[FlowFactory] = Registry("flow", "astro_galpost.flows")


def register_flow(name: str, factory: FlowFactory | None = None, *, overwrite: bool = False):
    """Register a flow factory ``factory(features, context, **options)``; usable as a decorator."""
    return FLOWS.register(name, factory, overwrite=overwrite)


def _standard_normal(features: int) -> UnconditionalDistribution:
    return UnconditionalDistribution(
        DiagNormal, torch.zeros(features), torch.ones(features), buffer=True
    )


@register_flow("realnvp")
def realnvp(
    features: int,
    context: int,
    transforms: int = 12,
    hidden_features: tuple[int, ...] = (128, 128),
    **kwargs,
) -> LazyDistribution:
    """Conditional RealNVP: ``transforms`` affine coupling layers with alternating masks.

    Each coupling layer's MLP reads the unchanged half of the features and the
    context and outputs a shift and log-scale for the other half (Dinh et al.
    2017). With a single feature zuko replaces coupling by an element-wise
    affine transform conditioned on the context alone, i.e. a Gaussian.
    """
    return zuko.flows.RealNVP(
        features, context, transforms=transforms, hidden_features=tuple(hidden_features), **kwargs
    )


@register_flow("affine1d")
def affine1d(
    features: int,
    context: int,
    hidden_features: tuple[int, ...] = (128, 128),
    **kwargs,
) -> LazyDistribution:
    """Conditional affine flow: a Gaussian whose mean and scale are MLPs of the context.

    This is the seed paper's one-dimensional flow for metallicity residuals.
    """
    transform = ElementWiseTransform(features, context, hidden_features=tuple(hidden_features), **kwargs)
    return Flow([transform], _standard_normal(features))


@register_flow("nsf")
def nsf(
    features: int,
    context: int,
    transforms: int = 3,
    bins: int = 8,
    hidden_features: tuple[int, ...] = (128, 128),
    **kwargs,
) -> LazyDistribution:
    """Conditional neural spline flow (monotonic rational-quadratic splines, Durkan et al. 2019).

    Used for single-target groups, where coupling has nothing to couple and a
    Gaussian cannot represent skewed or heavy-tailed residuals.
    """
    return zuko.flows.NSF(
        features, context, transforms=transforms, bins=bins, hidden_features=tuple(hidden_features), **kwargs
    )


def build_flow(name: str, features: int, context: int, **options) -> LazyDistribution:
    """Build the flow registered as ``name``; errors name the flow and its options."""
    factory = FLOWS.get(name)
    try:
        return factory(features, context, **options)
    except TypeError as err:
        raise TypeError(f"flow {name!r} rejected its options {options}: {err}") from err
