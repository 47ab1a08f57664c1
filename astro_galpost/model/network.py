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

from collections.abc import Collection
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn

from .flows import build_flow
from .sampling import flow_centre, sample_flow

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
        # per-label shift and each group's linear map of the flow residuals (a block of residual_map),
        # set after training by `astro_galpost.model.recalibration.fit_recalibration` (0 and the
        # identity = as trained); residual_scale is each target's width factor the map gives it
        self.register_buffer("residual_shift", torch.zeros(n_labels))
        self.register_buffer("residual_scale", torch.ones(n_labels))
        self.register_buffer("residual_map", torch.eye(n_labels))
        # each factor's bootstrap 16th-84th percentiles, see `fit_width_factor` (0: not fitted; saved
        # weights must be finite)
        self.register_buffer("residual_scale_interval", torch.zeros(2, n_labels))
        self.means = nn.ModuleDict()
        self.flows = nn.ModuleDict()
        self.detectors = nn.ModuleDict()
        for g in groups:
            dim = len(g.targets)
            self.means[g.name] = _mlp([representation, 128, dim])
            self.flows[g.name] = build_flow(g.flow, dim, representation + len(g.condition_on), **g.flow_options)
            if g.detect:
                self.detectors[g.name] = _mlp([representation + len(g.condition_on), 64, 1])

    def represent(self, x: Tensor) -> Tensor:
        """The shared representation of features ``x`` (N, F) → (N, representation)."""
        return self.trunk(x)

    def _context(self, h: Tensor, y: Tensor, g: GroupSpec) -> Tensor:
        """A group's context: the representation and the values of the targets it is chained on."""
        return h if not g.condition_on else torch.cat([h, y[..., g.condition_on]], dim=-1)

    def _needed(self, valid: Tensor) -> dict[str, Tensor]:
        """Per group, (N,) whether a row's values of it matter.

        They do where the row has a label of the group, or where a group chained
        on it is evaluated: one with a label in the row, or one with a
        classifier, whose observation ("not measurable" too) every row has. A
        group with no label in a row and nothing evaluated on it (M_BH without
        σ) is marginalised exactly by leaving its factor out of the row's
        likelihood.
        """
        needed: dict[str, Tensor] = {}
        for g in reversed(self.groups):
            need = valid[:, g.targets].any(dim=1)
            for child in self.groups:
                if child.name in needed and set(g.targets) & set(child.condition_on):
                    need = need | needed[child.name] | child.detect
            needed[g.name] = need
        return needed

    def _log_density(self, h: Tensor, y: Tensor, valid: Tensor, means: dict[str, Tensor],
                     needed: dict[str, Tensor]) -> Tensor:
        """(N,) log-density of each row's labels: the flows of the groups ``needed``, and the classifiers."""
        total = h.new_zeros(h.shape[0])
        for g in self.groups:
            context = self._context(h, y, g)
            logp = self.flows[g.name](context).log_prob(y[:, g.targets] - means[g.name])
            total = total + torch.where(needed[g.name], logp, 0.0)
            if g.detect:
                logit = self.detectors[g.name](context).squeeze(-1)
                total = total - nn.functional.binary_cross_entropy_with_logits(
                    logit, valid[:, g.targets].any(dim=1).float(), reduction="none")
        return total

    def head_parameters(self, name: str) -> list[nn.Parameter]:
        """The parameters of group ``name``'s own heads: its mean MLP, its flow and its classifier."""
        heads = [self.means[name], self.flows[name]] + ([self.detectors[name]] if name in self.detectors else [])
        return [p for head in heads for p in head.parameters()]

    def loss(
        self, x: Tensor, y: Tensor, valid: Tensor, groups: Collection[str] | None = None
    ) -> tuple[Tensor, dict[str, float]]:
        """Training loss for a batch (of the groups named in ``groups``; default all).

        ``y`` holds standardised labels where ``valid`` and, where not, the
        current imputation of the missing label (see :meth:`impute`). Per group:
        masked MSE of the mean head on every available label; negative
        log-likelihood of the residual flow on every row with at least one of
        the group's labels; binary cross-entropy of the classifier on every row.
        Chained groups are conditioned on the values of the groups they are
        chained on: true labels where measured, imputed ones elsewhere.
        """
        h = self.represent(x)
        total = x.new_zeros(())
        parts: dict[str, float] = {}
        for g in self.groups:
            if groups is not None and g.name not in groups:
                continue
            yg, mg = y[:, g.targets], valid[:, g.targets]
            mean = self.means[g.name](h)
            weight = mg.float()
            mse = ((mean - yg) ** 2 * weight).sum() / weight.sum().clamp(min=1.0)
            context = self._context(h, y, g)
            rows = mg.any(dim=1)
            nll = x.new_zeros(())
            if rows.any():
                nll = -self.flows[g.name](context[rows]).log_prob(yg[rows] - mean[rows].detach()).mean() / len(g.targets)
            total = total + mse + nll
            parts[f"{g.name}_mse"] = float(mse.detach())
            parts[f"{g.name}_nll"] = float(nll.detach())
            if g.detect:
                logit = self.detectors[g.name](context).squeeze(-1)
                bce = nn.functional.binary_cross_entropy_with_logits(logit, rows.float())
                total = total + bce
                parts[f"{g.name}_bce"] = float(bce.detach())
        return total, parts

    @torch.no_grad()
    def impute(self, x: Tensor, y: Tensor, valid: Tensor, n_steps: int = 2) -> Tensor:
        """Advance the imputation of missing labels by ``n_steps`` Metropolis steps; return the new ``y``.

        Each row's missing labels (those whose values matter, see
        :meth:`_needed`) form a Markov chain whose stationary distribution is
        their conditional given everything observed for the galaxy: its
        representation, its other labels in the same group and the labels of
        the groups chained on them, ``p(y_mis | y_obs, x)``. The chain state is
        kept in ``y`` between epochs (persistent chains, as in Monte Carlo EM):
        a random-walk proposal on the missing entries, with a step of the
        spread of the group's residuals in the batch, is accepted with the
        ratio of the model's joint densities (Metropolis et al. 1953). Observed
        labels never change.
        """
        needed = self._needed(valid)
        update = torch.zeros_like(valid)
        for g in self.groups:
            update[:, g.targets] = ~valid[:, g.targets] & needed[g.name][:, None]
        rows = update.any(dim=1)
        if not rows.any():
            return y
        h = self.represent(x)
        means = {g.name: self.means[g.name](h) for g in self.groups}
        step = self._step_sizes(y, valid, means)
        h, yr, vr, ur = h[rows], y[rows], valid[rows], update[rows]
        means = {k: m[rows] for k, m in means.items()}
        needed = {k: n[rows] for k, n in needed.items()}
        current = self._log_density(h, yr, vr, means, needed)
        for _ in range(n_steps):
            proposal = torch.where(ur, yr + step * torch.randn_like(yr), yr)
            new = self._log_density(h, proposal, vr, means, needed)
            accept = torch.rand_like(new).log() < new - current
            yr = torch.where(accept[:, None], proposal, yr)
            current = torch.where(accept, new, current)
        y = y.clone()
        y[rows] = yr
        return y

    def _step_sizes(self, y: Tensor, valid: Tensor, means: dict[str, Tensor]) -> Tensor:
        """Per label, the random-walk step: the spread of the observed residuals (0.5 when none)."""
        step = y.new_full((y.shape[1],), 0.5)
        for g in self.groups:
            for k, j in enumerate(g.targets):
                ok = valid[:, j]
                if int(ok.sum()) > 2:
                    step[j] = (y[ok, j] - means[g.name][ok, k]).std().clamp(min=1e-3)
        return step

    @torch.inference_mode()
    def sample(self, x: Tensor, n_samples: int, residuals: bool = False, given: Tensor | None = None) -> tuple:
        """Draw ``n_samples`` joint samples for each row of ``x``.

        A group's samples are ``mean + shift + c + T (r − c)``: ``r`` the
        flow's residual draws, ``c`` the flow's centre (`flow_centre`, per
        galaxy, or per draw for a chained group), ``shift`` and the map ``T``
        the recalibration buffers (0 and the identity before
        `fit_recalibration`; ``T`` is the group's block of ``residual_map``). Scaling
        about the flow's centre, not about the mean head, widens or narrows a
        posterior in place: the flow may put it far from the mean head. A
        group whose distribution has no centre (not a zuko normalizing flow
        over a Normal base, e.g. a mixture) is scaled about its mean head.

        With ``given``, (N, n_labels) standardised values (NaN where unknown), a
        chained group is conditioned on ``given``'s values of the groups it is
        conditioned on instead of on their draws, and on the draws where a value
        is NaN: where all are known its draws follow p(y_g | x, y_before), the
        conditional whose spread about the flow's centre the factor scales.

        Returns
        -------
        samples : Tensor
            (n_samples, N, n_labels) standardised model-space samples; columns of
            targets not in any group stay zero.
        detect : dict of Tensor
            Per group with a classifier, the probability (N,) that it is measurable.
        draws : dict of tuple
            Only with ``residuals``: per group ``(mean, r, c)``, the mean head
            (N, D), the raw residual draws (S, N, D) and the centres,
            broadcastable to them.
        """
        h = self.represent(x)
        out = x.new_zeros((n_samples, x.shape[0], len(self.residual_scale)))
        detect: dict[str, Tensor] = {}
        draws: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        for g in self.groups:
            mean = self.means[g.name](h)
            chained = _chained_values(out, given, g.condition_on)
            if g.detect:
                detect[g.name], chained = self._measurable(h, chained, g)
            # sample_flow: per-galaxy context work once for zuko RealNVP/affine flows
            # (same draws as zuko), zuko's own sampling for any other flow
            resid = sample_flow(self.flows[g.name], h, n_samples, sample_context=chained)
            index = torch.as_tensor(g.targets, device=resid.device)
            width_map = self.residual_map[index[:, None], index[None, :]]
            centre = None
            if residuals or not torch.equal(width_map, torch.eye(len(index), dtype=width_map.dtype, device=resid.device)):
                centre = flow_centre(self.flows[g.name], h, len(g.targets), None if chained is None else n_samples,
                                     sample_context=chained)
            if centre is None:  # not needed, or a distribution without a centre: scaled about the mean head
                centre = resid.new_zeros(())
            out[..., g.targets] = mean + self.residual_shift[g.targets] + centre + (resid - centre) @ width_map.mT
            draws[g.name] = (mean, resid, centre)
        return (out, detect, draws) if residuals else (out, detect)

    def _measurable(self, h: Tensor, given: Tensor | None, g: GroupSpec) -> tuple[Tensor, Tensor | None]:
        """P(measurable | x) (N,) and the chained values to condition the group's flow on.

        The flow describes p(y | given, x, measurable). The draws ``s`` of the
        chained values follow p(given | x); reweighted by the classifier's
        probability ``p_s`` they follow p(given | x, measurable). The maximal
        coupling of the two (Thorisson 2000) keeps draw ``s`` with probability
        ``min(1, p_s / mean p)`` and otherwise replaces it by a draw chosen with
        weights ``max(0, p_s - mean p)``: the result follows p(given | x,
        measurable) exactly, so the group's samples follow p(y | x, measurable),
        and as many draws as possible stay paired with their own chained values
        (all of them for a galaxy whose measurability does not depend on them;
        a fraction ``mean min(1, p_s / mean p)`` in general, against
        ``mean p / max p`` for keeping with probability ``p_s / max p``).
        """
        if given is None:
            return torch.sigmoid(self.detectors[g.name](h).squeeze(-1)), None
        context = torch.cat([h.expand(given.shape[0], *h.shape), given], dim=-1)
        p = torch.sigmoid(self.detectors[g.name](context).squeeze(-1))  # (S, N)
        index = _coupling_index(p)
        given = torch.gather(given, 0, index[..., None].expand_as(given))
        return p.mean(dim=0), given


def _coupling_index(p: Tensor) -> Tensor:
    """(S, N) draw indices of the maximal coupling of uniform weights with weights ``p`` (S, N): draw
    ``s`` stays itself with probability ``min(1, p_s / mean p)``, else becomes one chosen with weights
    ``max(0, p_t - mean p)``, so that index ``t`` comes out with probability ``p_t / sum p``."""
    mean = p.mean(dim=0)
    keep = torch.rand_like(p) * mean < p
    excess = (p - mean).clamp(min=0.0).T + 1e-30  # (N, S): the tiny term for galaxies with no excess
    other = torch.multinomial(excess, p.shape[0], replacement=True).T
    return torch.where(keep, torch.arange(p.shape[0], device=p.device)[:, None], other)


def _chained_values(out: Tensor, given: Tensor | None, columns: list[int]) -> Tensor | None:
    """(S, N, len(columns)) values a chained group is conditioned on: ``given``'s where known, else the draws in ``out``."""
    if not columns:
        return None
    if given is None:
        return out[..., columns]
    known = given[:, columns]
    return torch.where(torch.isnan(known), out[..., columns], known)
