"""The torch network of the seed paper's section 2.3.

Features → shared MLP → a representation (256-d by default). For each target
group, a mean MLP predicts the group's targets and a conditional flow models the
residuals (truth − mean) given the representation, and, for chained groups such
as metallicity, given other groups' target values: true values in training,
sampled ones at inference (the chain rule p(core, O/H | x) = p(core | x) p(O/H | core, x)).
A group may carry a classifier of whether its targets are measurable at all.

Everything here works on standardised model-space values; units and catalog
spaces are the estimator's business.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .flows import build_flow
from .sampling import sample_flow

__all__ = ["GroupSpec", "PosteriorNetwork"]


@dataclass
class GroupSpec:
    """One jointly modelled set of targets.

    Parameters
    ----------
    name : str
        Group name (``"core"``, ``"metallicity"``, ``"lines"``, ...).
    targets : list of int
        Columns of the label matrix that belong to the group.
    flow : str
        Registered flow name for the residuals.
    flow_options : dict
        Keyword options of the flow factory.
    condition_on : list of int
        Label columns (of earlier groups) the flow is conditioned on.
    detect : bool
        Whether to train a classifier of "has a measurable label" for the group.
    """

    name: str
    targets: list[int]
    flow: str = "realnvp"
    flow_options: dict = field(default_factory=dict)
    condition_on: list[int] = field(default_factory=list)
    detect: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(sizes: list[int], activation=nn.SiLU, final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_activation:
            layers.append(activation())
    return nn.Sequential(*layers)


class PosteriorNetwork(nn.Module):
    """Shared trunk plus, per group, a mean head, a residual flow and an optional classifier.

    Parameters
    ----------
    n_features : int
        Input feature count.
    groups : list of GroupSpec
        Target groups, in sampling order (conditioning groups first).
    representation : int
        Size of the shared representation (256 in the paper).
    hidden : int
        Width of the trunk's hidden layers.
    dropout : float
        Dropout in the trunk (regularises small training sets).
    """

    def __init__(
        self,
        n_features: int,
        groups: list[GroupSpec],
        representation: int = 256,
        hidden: int = 256,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.groups = groups
        self.trunk = nn.Sequential(
            nn.Linear(n_features, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.SiLU(), nn.Dropout(dropout),
            nn.Linear(hidden, representation), nn.SiLU(),
        )
        n_labels = 1 + max(max(g.targets) for g in groups)
        # per-label factor on the flow residuals, set after training by
        # `astro_galpost.recalibration.fit_residual_scales` (1 = as trained)
        self.register_buffer("residual_scale", torch.ones(n_labels))
        self.means = nn.ModuleDict()
        self.flows = nn.ModuleDict()
        self.detectors = nn.ModuleDict()
        for g in groups:
            dim = len(g.targets)
            self.means[g.name] = _mlp([representation, 128, dim])
            self.flows[g.name] = build_flow(g.flow, dim, representation + len(g.condition_on), **g.flow_options)
            if g.detect:
                self.detectors[g.name] = _mlp([representation, 64, 1])

    def represent(self, x: Tensor) -> Tensor:
        """The shared representation of features ``x`` (N, F) → (N, representation)."""
        return self.trunk(x)

    def loss(self, x: Tensor, y: Tensor, valid: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss for a batch.

        ``y`` holds standardised labels (any value where invalid) and ``valid``
        says which are usable. Per group: masked MSE of the mean head on every
        available label; negative log-likelihood of the residual flow on every
        row with at least one of the group's labels; binary cross-entropy of the
        classifier on every row.

        A label missing from a row (a black-hole mass without a measured σ, a
        conditioning value of a chained group) is filled with a draw from the
        network's own flow, without gradient, before the flow's likelihood is
        taken. Dropping such rows instead would train each flow on the galaxies
        with complete labels only, which are not a fair sample (σ is measured in
        the more massive galaxies), and bias the posteriors of the others.
        """
        h = self.represent(x)
        filled = y.clone()  # labels with the missing ones imputed, the context of chained groups
        total = x.new_zeros(())
        parts: dict[str, float] = {}
        for g in self.groups:
            idx = g.targets
            yg, mg = y[:, idx], valid[:, idx]
            mean = self.means[g.name](h)
            weight = mg.float()
            mse = ((mean - yg) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)
            context = h if not g.condition_on else torch.cat([h, filled[:, g.condition_on]], dim=-1)
            flow = self.flows[g.name]
            resid = torch.where(mg, yg - mean.detach(), self._impute(flow, context, ~mg.all(dim=1), mg))
            filled[:, idx] = mean.detach() + resid
            rows = mg.any(dim=1)
            nll = x.new_zeros(())
            if rows.any():
                nll = -flow(context[rows]).log_prob(resid[rows]).mean() / len(idx)
            total = total + mse + nll
            parts[f"{g.name}_mse"] = float(mse.detach())
            parts[f"{g.name}_nll"] = float(nll.detach())
            if g.detect:
                logit = self.detectors[g.name](h).squeeze(-1)
                bce = nn.functional.binary_cross_entropy_with_logits(logit, mg.any(dim=1).float())
                total = total + bce
                parts[f"{g.name}_bce"] = float(bce.detach())
        return total, parts

    def _impute(self, flow, context: Tensor, rows: Tensor, mask: Tensor) -> Tensor:
        """Residual draws (N, dim) for ``rows`` (zeros elsewhere); the same draws at every evaluation."""
        out = torch.zeros(mask.shape, dtype=context.dtype, device=context.device)
        if not rows.any():
            return out
        with torch.no_grad(), contextlib.ExitStack() as stack:
            if not self.training:
                # a validation loss that does not move between epochs by chance
                stack.enter_context(torch.random.fork_rng(devices=[context.device] if context.is_cuda else []))
                torch.manual_seed(0)
            out[rows] = flow(context[rows].detach()).sample()
        return out

    @torch.inference_mode()
    def sample(self, x: Tensor, n_samples: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Draw ``n_samples`` joint samples for each row of ``x``.

        Returns
        -------
        samples : Tensor
            (n_samples, N, n_labels) standardised model-space samples; columns of
            targets not in any group stay zero.
        detect : dict of Tensor
            Per group with a classifier, the probability (N,) that it is measurable.
        """
        h = self.represent(x)
        out = x.new_zeros((n_samples, x.shape[0], len(self.residual_scale)))
        detect: dict[str, Tensor] = {}
        for g in self.groups:
            mean = self.means[g.name](h)
            # sample_flow: per-galaxy context work once for zuko RealNVP/affine flows
            # (same draws as zuko), zuko's own sampling for any other flow
            if g.condition_on:
                resid = sample_flow(self.flows[g.name], h, n_samples, sample_context=out[..., g.condition_on])
            else:
                resid = sample_flow(self.flows[g.name], h, n_samples)
            out[..., g.targets] = mean + resid * self.residual_scale[g.targets]
            if g.detect:
                detect[g.name] = torch.sigmoid(self.detectors[g.name](h).squeeze(-1))
        return out, detect
