"""Post-hoc calibration of the residual flows on held-out galaxies: a width map per group, a shift per lone target.

A flow learns the spread of the residuals (truth − mean head) on the galaxies
the mean head was fitted to, where residuals are smaller than on new galaxies;
with a few hundred labels (metallicity is measured for about a third of
galaxies) the posteriors come out too narrow, while short training leaves them
too wide. As in temperature scaling (Guo et al. 2017) and the recalibration of
Kuleshov et al. (2018), a linear map per group and a shift per one-target group
are fitted after training: a shift ``δ`` and a map ``T`` of the flow's residual
draws ``r`` about the flow's centre ``c``
(`~astro_galpost.model.sampling.flow_centre`, the image of the base
distribution's location; the median for a one-target group),
``y = mean + δ + c + T (r − c)``; for a one-target group ``T`` is a factor ``τ``.

* The shift corrects a bias of the posterior medians of a target that is a group
  of its own (black-hole mass, metallicity): the median, over galaxies, of the
  truth minus the posterior median. The bias is a property of the fitted flow
  that shows as much on the rows it was trained on as on held-out ones, so it
  is measured on the held-out rows and up to three times as many training rows.
  Targets that share a group (the core, the four lines) are not shifted: a
  shift per target moves them against each other and so changes every ratio
  and difference within the group, which the joint posterior may know far
  better than either target. On the mock, shifts of +0.018 standardised units
  on Hα and of 0.007 (or, below a significance threshold, none) on Hβ, each
  right for its own marginal, biased the Balmer decrement of bright galaxies,
  whose posterior is a few hundredths of a dex wide: PIT KS 0.067 (0.086) on
  7,109 test galaxies, 0.011 with the lines unshifted; the core and the lines
  stayed calibrated unshifted (KS ≤ 0.03 on four draws of the mock,
  ``benchmarks/joint_calibration.py``).
* A width factor is the one that brings the coverage of central credible
  intervals of the held-out rows closest to nominal over a grid of levels; the
  rows a network was trained on have too small residuals to set a width. A
  group's map gives each of its targets and each difference of two of them
  (in the catalog's units: log SFR − log M*, the logarithm of a line ratio)
  the factor fitted for it (`fit_width_map`). Neither one factor per group nor
  one per target does that. Factors per target alone change the width of every
  difference by chance: on the mock's early-type galaxies with σ
  (``benchmarks/joint_calibration.py``, ``complete``), Hα's factor of 0.92 and
  Hβ's of 1.07, each right for its own marginal, gave the Balmer decrement PIT
  KS 0.122 on 3,762 test galaxies (one factor for the four lines, 1.00, gave
  0.030). One factor for a group is right for none of its targets where they
  ask for different widths: on real ECO galaxies (``benchmarks/real_eco.py``,
  an ensemble of three) the held-out rows asked for 1.05 for stellar mass, 1.09
  for log SFR and 0.98 for sSFR on one split, and 1.00, 1.09 and 0.97 on
  another; the test galaxies asked for the same order (1.02, 1.04, 0.98 and
  0.98, 1.05, 0.98), and the group's one factor (1.07, 1.05) left sSFR's PIT
  KS at 0.064 and 0.048 and 68% coverage at 0.733 and 0.713. In an ensemble each member validates on its own
  rows, and each group's map is fitted on the held-out rows of all members
  together, each row scored by the member that did not train on it
  (`fit_ensemble_recalibration`): with 300 labelled galaxies a member sees only
  48-60, on which factors fitted alone ranged from 0.84 to 1.25 between the
  five members of one fit (metallicity from real images, inner
  cross-validation of the training galaxies).
* The map acts on the residuals about the flow's centre, which for a chained
  group is the centre given each draw of the values it is conditioned on: it
  scales the group's spread given those values, not the spread they pass on.
  It is therefore fitted on that conditional, drawn given the held-out rows'
  own labels of the groups it is conditioned on; a label a row lacks is taken
  from each of its draws (a posterior given its photometry and the labels of
  the groups before, not given its other labels of the same group, so such a
  row's conditional is a little wider than it should be). Fitted on the whole
  posterior, most of whose width can come from the chained values, the
  coverage hardly moves with the factor and a few hundred rows hardly
  determine it: on the mock, metallicity's factor came out 0.76 with bootstrap
  16th-84th percentiles 0.61-0.95 from 298 validation galaxies, while its
  conditional, given those galaxies' core and lines, asks for 1.09
  (1.03-1.16), at which the conditional's 68% coverage of 2,860 test galaxies
  is 0.673 (0.632 at 1; ``benchmarks/joint_calibration.py --seed 11``). The
  shift of a one-target chained group is still fitted on its whole posterior,
  whose median it corrects.
* A factor is only as precise as the held-out rows it is fitted on:
  `fit_width_factor` also gives its 16th-84th percentiles over bootstrap
  resamples of them, about ±0.85/√N for N rows (±0.05 for 300), which moves a
  68% coverage on new galaxies by about ±0.025 (±0.014 for 1,000 rows). Other
  estimators of the same factor are hardly steadier: on simulated rows
  (``benchmarks/width_factor_noise.py``) the continuous ranked probability
  score's factor scatters by 0.043-0.059 for 300 rows against the coverage
  match's 0.044-0.060, and a Gaussian likelihood's by 0.041 for normal draws
  but 0.085 for Student-t ones, off target when the flow's shape is wrong;
  only more rows are.

The factor acts about the flow's centre, not about the mean head: the mean head
is a least-squares fit that the flow may correct by more than the posterior's
width (LSST-like photo-z, pzflow's Buzzard galaxies: the per-galaxy median
residual scattered by 0.12 standardised units about the mean head, the
posteriors were 0.026 wide). Scaled about the mean head, a wider posterior was
also moved away from the truth: the 68% coverage of 750 held-out galaxies fell
from 0.60 to 0.52 as ``τ`` grew from 1.05 to 1.4, and the best factor left it at
0.60; scaled about the centre it rose to 0.67 at ``τ`` = 1.3, with every level
from 20% to 95% within 0.02 of nominal.

In an ensemble the factor makes each member calibrated on its own; their
equal-weight mixture would then be too wide. For any galaxy the squared error
of the members' mean is their mean squared error less their spread about it,
:math:`(y - \\bar m)^2 = \\langle (y - m_k)^2 \\rangle_k - B`,
:math:`B = \\langle (m_k - \\bar m)^2 \\rangle_k` (the ambiguity decomposition of
Krogh & Vedelsby 1995). Calibrated members have :math:`\\langle (y - m_k)^2
\\rangle \\approx W`, their mean variance, so the mixture's error is
:math:`W - B` while its variance is :math:`W + B`. The decomposition holds for
every linear combination :math:`a^T y` of a galaxy's targets (sSFR, the log
of a line ratio) with the covariance matrices :math:`W` and :math:`B` in place of the
variances, so `narrow_mixture` maps each member's draws about its own mean by
the matrix :math:`C` with :math:`C W C^T = W - 2B`, per galaxy: the mixture's
covariance becomes :math:`W - B` and every combination of the targets, not
only each target, gets the spread of its error (for one target, :math:`C =
\\sqrt{1 - 2B/W}`). Narrowing each target by its own factor would not: where the
members disagree along a combination of targets (each member a little higher in
one and lower in another), that combination keeps most of its excess width
(``tests/test_recalibration.py``: 1.8 times the right variance for the
difference of two targets correlated at 0.9). Real-image metallicity with five
members, each with its own VAE, is the case that showed the need for narrowing:
its mixture had 68% coverage 0.70-0.77 before and 0.65-0.69 after
(``docs/images.rst``).

A shift and a linear map change each galaxy's draws only linearly: their
location, and the spread of each combination of the targets as far as the
fitted factors ask (the map is one factor, which keeps every ratio's shape, when
every combination asks for the same); a chained group (metallicity) is conditioned on the recalibrated
samples of the groups before it, and its shift is fitted after theirs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import kstest, norm

from .network import PosteriorNetwork

__all__ = ["fit_recalibration", "fit_ensemble_recalibration", "fit_width_factor", "fit_width_map", "narrow_mixture",
           "central_coverage_error", "RecalibrationWarning", "LEVELS", "SCALE_GRID", "MIN_MEMBER_FACTOR",
           "N_BOOTSTRAP"]

#: Credibility levels whose central-interval coverage is matched.
LEVELS = np.array([0.2, 0.4, 0.5, 0.6, 0.68, 0.8, 0.9, 0.95])

#: Candidate factors: 0.5-2 in steps of about 1.7%.
SCALE_GRID = np.geomspace(0.5, 2.0, 81)

#: `narrow_mixture` never narrows a member's draws by more than this factor.
MIN_MEMBER_FACTOR = 0.5

#: Bootstrap resamples of the held-out rows behind each factor's interval.
N_BOOTSTRAP = 200


class RecalibrationWarning(UserWarning):
    """A shift or width the recalibration could not fit as the held-out rows ask: too few rows, or a factor at the grid's edge."""


def central_coverage_error(pit: np.ndarray, levels: np.ndarray = LEVELS) -> float:
    """Mean squared difference between the coverage of central intervals and their levels.

    Parameters
    ----------
    pit : `~numpy.ndarray`
        PIT values (the posterior CDF at the truth) of a set of galaxies.
    levels : `~numpy.ndarray`
        Credibility levels; the central interval at level ``a`` contains the
        truth when ``|pit - 0.5| <= a / 2``.

    Returns
    -------
    float
    """
    return float(_coverage_error(_covered(pit, levels).mean(axis=0), levels))


def _coverage_error(coverage: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Mean squared difference between coverages (..., L) and their levels (L,), over the last axis."""
    return np.mean((coverage - np.asarray(levels)) ** 2, axis=-1)


def _covered(pit: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """(N, L) float32: whether each galaxy's central interval at each level contains its truth."""
    return (np.abs(np.asarray(pit)[:, None] - 0.5) <= np.asarray(levels)[None, :] / 2).astype(np.float32)


def _best_shift(resid: np.ndarray, offset: np.ndarray, min_rows: int = 1) -> float:
    """The median of ``offset`` (N,) = truth − mean minus each row's median residual draw (S, N).

    Rows with a non-finite draw or offset are left out; NaN where fewer than
    ``min_rows`` rows are left.
    """
    rows = offset - np.median(resid, axis=0)
    rows = rows[np.isfinite(rows)]
    return float(np.median(rows)) if len(rows) >= max(min_rows, 1) else float("nan")


def fit_width_factor(
    resid: np.ndarray,
    centre: np.ndarray,
    offset: np.ndarray,
    *,
    grid: np.ndarray = SCALE_GRID,
    levels: np.ndarray = LEVELS,
    n_bootstrap: int = N_BOOTSTRAP,
    rng: int | np.random.Generator | None = 0,
    name: str = "the held-out rows",
) -> tuple[float, np.ndarray]:
    """The width factor whose draws best cover the truths, and its bootstrap 16th-84th percentiles.

    The factor is the value of ``grid`` whose draws ``centre + τ (resid −
    centre)`` give central intervals whose coverage of ``offset`` is closest to
    ``levels`` (`central_coverage_error`). The same choice made on bootstrap
    resamples of the rows gives its interval: how far the factor would move on
    another draw of as many held-out galaxies. For draws of the right shape it
    spans about ±0.85/√N (±0.05 for 300 rows), as the factor itself scatters
    between draws of the rows (``benchmarks/width_factor_noise.py``), and
    other estimators of it are hardly steadier: a noisy factor needs more
    held-out rows. A factor at either end of ``grid`` is where the choice
    stopped, not necessarily where the rows ask for: where the rows' coverage
    there asks to go further (for normal draws), it warns
    (`RecalibrationWarning`) that the posterior stays too narrow (largest
    factor) or too wide (smallest), with the coverage the rows still get and
    the factor they ask for beyond the grid.

    Parameters
    ----------
    resid, centre : `~numpy.ndarray`
        (S, N) draws of N rows and the centres they are scaled about.
    offset : `~numpy.ndarray`
        (N,) the truths, in the draws' space.
    grid : `~numpy.ndarray`
        Candidate factors.
    levels : `~numpy.ndarray`
        Credibility levels whose coverage is matched.
    n_bootstrap : int
        Resamples of the rows for the interval (0: no interval, NaN).
    rng : int, `~numpy.random.Generator` or None
        Seeds the resamples (it draws nothing else).
    name : str
        What the rows are of (a target, a difference of two), for the warning.

    Returns
    -------
    factor : float
    interval : `~numpy.ndarray`
        (2,) the 16th and 84th percentiles of the factor over the resamples.

    Warns
    -----
    RecalibrationWarning
        Where the factor is the first or last of ``grid`` and the rows ask to
        go further.

    Examples
    --------
    Draws as wide as the errors of 1,200 rows need a factor of 1, found
    within about ±0.02:

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> tau, interval = fit_width_factor(rng.normal(size=(200, 1200)), np.zeros(1), rng.normal(size=1200))
    >>> round(tau, 2), np.round(interval, 2).tolist()
    (1.02, [0.98, 1.04])
    """
    levels = np.asarray(levels)
    # (G, N, L): which rows each factor's intervals cover, level by level
    covered = np.stack([_covered(np.mean(centre + tau * (resid - centre) < offset, axis=0), levels) for tau in grid])
    best = int(np.argmin(_coverage_error(covered.mean(axis=1), levels)))
    factor = float(grid[best])
    if factor in (np.min(grid), np.max(grid)):
        _warn_at_edge(name, factor, factor == np.max(grid), covered[best], levels)
    if n_bootstrap < 1:
        return factor, np.full(2, np.nan)
    n = covered.shape[1]
    weights = np.random.default_rng(rng).multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap) / n
    boot = np.tensordot(weights, covered, axes=([1], [1]))  # (B, G, L) coverages of each resample
    factors = grid[np.argmin(_coverage_error(boot, levels), axis=1)]
    return factor, np.percentile(factors, [16, 84])


def _warn_at_edge(name: str, factor: float, largest: bool, covered: np.ndarray, levels: np.ndarray) -> None:
    """Warn that ``name``'s factor stopped at the grid's edge, where ``covered`` (N, L) says which rows each level covers.

    For normal draws the factor that covers a level's share of the rows is
    ``factor`` times the ratio of the level's and the coverage's normal
    quantiles; the median over the levels says how far beyond the grid the
    rows ask to go. Where it is not beyond (rows that ask for the edge
    itself), nothing is said.
    """
    coverage = covered.mean(axis=0)
    clipped = np.clip(coverage, 0.5 / len(covered), 1 - 0.5 / len(covered))
    asked = factor * float(np.median(norm.ppf((1 + levels) / 2) / norm.ppf((1 + clipped) / 2)))
    if (asked <= factor) if largest else (asked >= factor):
        return
    level = int(np.argmin(np.abs(levels - 0.68)))
    side, beyond = ("narrow", "above") if largest else ("wide", "below")
    warnings.warn(f"{name}: the width factor stopped at {factor:.2f}, the {'largest' if largest else 'smallest'} of "
                  f"the grid, so the posterior stays too {side}: its central {levels[level]:.0%} intervals cover "
                  f"{coverage[level]:.1%} of the rows, which ask for a factor {beyond} {factor:.2f} (about "
                  f"{asked:.2f} for normal draws); the factor's interval is cut at the edge too",
                  RecalibrationWarning, stacklevel=3)


def fit_width_map(
    resid: np.ndarray,
    centre: np.ndarray,
    offset: np.ndarray,
    scale: np.ndarray | None = None,
    *,
    min_rows: int = 30,
    grid: np.ndarray = SCALE_GRID,
    n_bootstrap: int = N_BOOTSTRAP,
    rng: int | np.random.Generator | None = 0,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The linear map of a group's residual draws that gives each target and each difference of two their width.

    A width factor (`fit_width_factor`) is fitted for each target and for
    each difference of two targets in the catalog's units (``scale`` converts
    standardised units to them: log SFR − log M*, the logarithm of a line
    ratio), on the rows where its targets are labelled. The map ``T`` is the
    one that multiplies the variance of each of these combinations by its
    factor squared for the rows' mean covariance ``Σ`` of the draws about their
    centres: with the covariance ``M`` those variances fix, ``T Σ T^T = M``
    and ``T`` is the symmetric map between them (the optimal transport map
    between two Gaussians), whose factors along the principal directions of
    ``Σ^{-1/2} M Σ^{-1/2}`` are kept within ``grid``. Where keeping them
    changes the width of a target or a difference by more than a step of
    ``grid`` (a factor of 1.65 asked for, 1.34 given), the map is not used.
    One factor for all of a
    group's targets would be right for none where they ask for different
    widths, and a factor per target alone would change the width of their
    differences by chance: this map does neither. A combination with fewer
    than ``min_rows`` labelled rows keeps the factors of its targets (its
    covariance scales by their product); a target with fewer keeps factor 1.
    For one target ``T`` is its factor.

    The map mixes the targets of rows whose draws are not shaped like the
    mean covariance, and moves each combination by the mixed-in part of the
    others' offset from the centre: where a combination is known far better
    than its targets (the Balmer decrement of weak lines, whose posterior is
    a few hundredths of a dex wide inside line posteriors ten times wider)
    that is a bias. The held-out rows decide: the map is used only if the
    largest PIT KS statistic of the combinations is lower with it than with
    one factor for the group, fitted on the rows of all its targets
    together; otherwise every target gets that factor and ``T`` is that
    factor times the identity.

    Parameters
    ----------
    resid, centre : `~numpy.ndarray`
        (S, N, D) draws of N rows and the centres they are scaled about.
    offset : `~numpy.ndarray`
        (N, D) the truths in the draws' space, NaN where a row lacks a target.
    scale : `~numpy.ndarray`, optional
        (D,) the catalog-unit size of each standardised unit (default 1).
    min_rows : int
        The fewest labelled rows a combination's factor is fitted on.
    grid : `~numpy.ndarray`
        Candidate factors, and the bounds of the map's principal factors.
    n_bootstrap : int
        Resamples of the rows behind each target's interval.
    rng : int, `~numpy.random.Generator` or None
        Seeds the resamples.
    names : sequence of str, optional
        (D,) the targets' names, for the warnings (default ``target 0``, ...).

    Returns
    -------
    width_map : `~numpy.ndarray`
        (D, D) the map ``T``, applied as ``centre + T (resid − centre)``.
    factors : `~numpy.ndarray`
        (D,) each target's factor as ``T`` gives it, ``sqrt(diag(T Σ T^T) /
        diag Σ)``: the one fitted for it, or 1 where it was not fitted, to
        within a step of ``grid`` (and round-off).
    interval : `~numpy.ndarray`
        (2, D) each target's factor's bootstrap 16th-84th percentiles (NaN
        where it was not fitted).

    Examples
    --------
    Two targets whose draws are as wide as their errors, except the second,
    whose errors are twice as wide: the map doubles the second target's spread
    and leaves the first's, and their difference gets the width of its errors:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> resid = rng.normal(size=(200, 3000, 2))
    >>> offset = rng.normal(size=(3000, 2)) * [1, 2]
    >>> width_map, factors, _ = fit_width_map(resid, np.zeros((1, 1, 2)), offset, n_bootstrap=0)
    >>> np.round(factors, 1).tolist(), np.round(width_map, 1).tolist()
    ([1.0, 2.0], [[1.0, 0.0], [0.0, 2.0]])
    """
    rng = np.random.default_rng(rng)
    dim = resid.shape[-1]
    centre = np.broadcast_to(centre, resid.shape)
    labelled = np.isfinite(offset)
    offset = np.where(labelled, offset, 0.0)  # a combination is fitted only on rows where its targets are labelled
    combinations = _combinations(labelled, np.ones(dim) if scale is None else np.asarray(scale, float), min_rows)
    fitted = [i for i in range(dim) if labelled[:, i].sum() >= min_rows]
    factors, interval = np.ones(dim), np.full((2, dim), np.nan)
    if not fitted:
        return np.eye(dim), factors, interval
    names = [f"target {i}" for i in range(dim)] if names is None else list(names)

    def factor(direction: np.ndarray, rows: np.ndarray, bootstrap: int = 0) -> tuple[float, np.ndarray]:
        name = " − ".join(names[i] for i in np.flatnonzero(direction))
        return fit_width_factor(resid[:, rows] @ direction, centre[:, rows] @ direction, offset[rows] @ direction,
                                grid=grid, n_bootstrap=bootstrap, rng=rng, name=name)

    # one factor for the group, fitted on the held-out rows of all its targets together
    shared, shared_interval = fit_width_factor(np.concatenate([resid[:, labelled[:, i], i] for i in fitted], axis=1),
                                               np.concatenate([centre[:, labelled[:, i], i] for i in fitted], axis=1),
                                               np.concatenate([offset[labelled[:, i], i] for i in fitted]),
                                               grid=grid, n_bootstrap=n_bootstrap, rng=rng,
                                               name=", ".join(names[i] for i in fitted) + (" together" if dim > 1 else ""))
    factors[fitted], interval[:, fitted] = shared, np.asarray(shared_interval)[:, None]
    if dim == 1:
        return np.diag(factors), factors, interval
    own, own_interval = np.ones(dim), np.full((2, dim), np.nan)
    for i in fitted:
        own[i], own_interval[:, i] = factor(np.eye(dim)[i], labelled[:, i], n_bootstrap)
    asked = [(np.eye(dim)[i], own[i]) for i in range(dim)] + [
        (direction, factor(direction, rows)[0]) for direction, rows in combinations if np.count_nonzero(direction) == 2]
    spread = resid - centre
    covariance = np.einsum("snt,snu->tu", spread - spread.mean(0), spread - spread.mean(0)) / np.prod(spread.shape[:2])
    width_map = _transport_map(covariance, _mapped_covariance(covariance, own, asked[dim:]), grid)
    # a map whose principal factors were kept within the grid may no longer give the combinations their factors;
    # the map mixes the targets, and where that moves a combination the rows know better than its targets
    # (a line ratio) one factor for the group is the better choice: the held-out rows say which
    if not _gives_factors(covariance, width_map, asked, grid) or _largest_ks(
            resid, centre, offset, combinations, width_map) >= _largest_ks(
            resid, centre, offset, combinations, np.diag(factors)):
        return np.diag(factors), factors, interval
    return width_map, _map_factors(covariance, width_map, np.eye(dim)), own_interval


def _map_factors(covariance: np.ndarray, width_map: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The factor ``sqrt(a^T T Σ T^T a / a^T Σ a)`` by which ``T`` scales the spread of each row ``a`` of ``directions``."""
    mapped = width_map @ covariance @ width_map.T
    return np.sqrt(np.einsum("kt,tu,ku->k", directions, mapped, directions)
                   / np.einsum("kt,tu,ku->k", directions, covariance, directions))


def _gives_factors(covariance: np.ndarray, width_map: np.ndarray, asked: list, grid: np.ndarray) -> bool:
    """Whether ``T`` gives each combination ``a`` of ``asked``, ``(a, f)``, its factor ``f`` to within a step of ``grid``."""
    directions, factors = np.stack([a for a, _ in asked]), np.array([f for _, f in asked])
    step = np.max(np.diff(np.log(np.sort(grid)))) if len(grid) > 1 else 0.0
    return bool(np.all(np.abs(np.log(_map_factors(covariance, width_map, directions) / factors)) <= step + 1e-9))


def _mapped_covariance(covariance: np.ndarray, factors: np.ndarray, pairs: list) -> np.ndarray:
    """The covariance ``M`` whose targets have ``factors`` and whose pair combinations ``a`` have factor ``f``: ``(a, f)``.

    Each target's variance is multiplied by its factor squared; a pair's
    ``a^T M a = f² a^T Σ a`` fixes the pair's covariance, and a pair without a
    factor keeps the product of its targets' factors.
    """
    target = covariance * np.outer(factors, factors)
    for direction, factor in pairs:
        i, j = np.flatnonzero(direction)
        combined = factor**2 * (direction @ covariance @ direction)
        target[i, j] = target[j, i] = (combined - direction[i] ** 2 * target[i, i] - direction[j] ** 2 * target[j, j]) / (
            2 * direction[i] * direction[j])
    return target


def _combinations(labelled: np.ndarray, scale: np.ndarray, min_rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each target, then each difference of two (catalog units), with at least ``min_rows`` rows: (direction, rows)."""
    dim = labelled.shape[1]
    out = [(np.eye(dim)[i], labelled[:, i]) for i in range(dim)]
    for i in range(dim):
        for j in range(i + 1, dim):
            direction = np.zeros(dim)
            direction[[i, j]] = scale[i], -scale[j]
            out.append((direction, labelled[:, i] & labelled[:, j]))
    return [(direction, rows) for direction, rows in out if rows.sum() >= min_rows]


def _largest_ks(resid: np.ndarray, centre: np.ndarray, offset: np.ndarray, combinations: list,
                width_map: np.ndarray) -> float:
    """The largest PIT KS statistic of ``combinations`` of the rows' truths under ``centre + T (resid − centre)``."""
    draws = centre + (resid - centre) @ width_map.T
    return max(kstest(np.mean(draws[:, rows] @ direction < offset[rows] @ direction, axis=0), "uniform").statistic
               for direction, rows in combinations)


def _transport_map(covariance: np.ndarray, target: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The symmetric ``T`` with ``T Σ T^T = M``, its principal factors kept within ``grid``'s range."""
    root, inverse_root = _square_roots(covariance)
    factors, directions = np.linalg.eigh(inverse_root @ target @ inverse_root)
    whitened = directions @ np.diag(np.clip(factors, grid.min() ** 2, grid.max() ** 2)) @ directions.T
    # T = Σ^{-1/2} (Σ^{1/2} M Σ^{1/2})^{1/2} Σ^{-1/2}, with M = Σ^{1/2} K Σ^{1/2} from the clipped whitened target K
    middle = root @ root @ whitened @ root @ root
    return inverse_root @ _square_roots(0.5 * (middle + middle.T))[0] @ inverse_root


def _square_roots(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The symmetric square root of a symmetric matrix and its inverse, its eigenvalues floored just above 0."""
    values, vectors = np.linalg.eigh(matrix)
    values = np.clip(values, np.finfo(float).eps * max(values.max(), 1e-300), None)
    return vectors @ np.diag(np.sqrt(values)) @ vectors.T, vectors @ np.diag(1 / np.sqrt(values)) @ vectors.T


def fit_recalibration(
    net: PosteriorNetwork,
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray,
    held_out: np.ndarray | None = None,
    n_samples: int = 200,
    min_rows: int = 30,
    rng: int | np.random.Generator | None = 0,
    label_scale: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit and set ``net.residual_shift`` (one-target groups) and each group's map; return shifts, factors, intervals.

    Groups are taken in sampling order, so the shift of a chained group
    (metallicity) is fitted with samples of the already calibrated groups it is
    conditioned on; its map is fitted on its conditional given the rows'
    labels of those groups (see the module's description).

    Parameters
    ----------
    net : `~astro_galpost.model.network.PosteriorNetwork`
        A trained network (its ``residual_shift``, ``residual_map`` and
        ``residual_scale`` buffers are overwritten).
    x : `~numpy.ndarray`
        (N, F) features.
    y, valid : `~numpy.ndarray`
        (N, n_labels) standardised labels and whether each is usable.
    held_out : `~numpy.ndarray`, optional
        (N,) bool, the rows the network was not trained on, which alone set the
        widths; all rows set the shifts. Default: every row is held out.
    n_samples : int
        Samples per galaxy for the PIT values.
    min_rows : int
        A target with fewer labelled held-out rows keeps shift 0 and factor 1.
    rng : int, `~numpy.random.Generator` or None
        Seeds the bootstrap of the factors' intervals (`fit_width_factor`).
    label_scale, names : optional
        As in `fit_ensemble_recalibration`.

    Returns
    -------
    shift, scale : `~numpy.ndarray`
        (n_labels,) the shifts (standardised units; 0 for a target that shares its
        group with others) and each target's width factor (`fit_width_map`).
    scale_interval : `~numpy.ndarray`
        (2, n_labels) each factor's bootstrap 16th-84th percentiles (NaN where
        it was not fitted).
    """
    shifts, scales, interval = fit_ensemble_recalibration([net], [(x, y, valid, held_out)], n_samples, min_rows, rng,
                                                          label_scale, names)
    return shifts[0], scales, interval


@torch.inference_mode()
def fit_ensemble_recalibration(
    nets: Sequence[PosteriorNetwork],
    rows: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]],
    n_samples: int = 200,
    min_rows: int = 30,
    rng: int | np.random.Generator | None = 0,
    label_scale: np.ndarray | None = None,
    names: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit each member's shifts (of one-target groups) and one width map per group shared by the members; set them.

    Each member is scored on its own rows (``rows[m]`` for ``nets[m]``), and
    each group's map (`fit_width_map`) is fitted on the held-out rows of all
    members together: an
    ensemble whose members validate on different fifths of a few hundred
    galaxies then sets its widths on all of those rows instead of 60 per member.
    With one member this is `fit_recalibration`.

    Parameters
    ----------
    nets : sequence of `~astro_galpost.model.network.PosteriorNetwork`
        Trained networks with the same groups (their ``residual_shift``,
        ``residual_map`` and ``residual_scale`` buffers are overwritten).
    rows : sequence of tuple
        Per network, ``(x, y, valid, held_out)`` as in `fit_recalibration`.
    n_samples : int
        Samples per galaxy for the PIT values.
    min_rows : int
        A target with fewer labelled held-out rows over all members keeps shift 0
        and factor 1 in every member; a member with fewer labelled rows (with
        finite draws) of a one-target group keeps its shift 0.
    rng : int, `~numpy.random.Generator` or None
        Seeds the bootstrap of the factors' intervals (`fit_width_factor`); it
        draws nothing that the factors depend on.
    label_scale : `~numpy.ndarray`, optional
        (n_labels,) the catalog-unit size of each standardised unit, which
        makes the differences whose widths a map fits those of the catalog's
        units (default 1).
    names : sequence of str, optional
        (n_labels,) the targets' names, for the warnings (default ``label 0``, ...).

    Returns
    -------
    shifts : `~numpy.ndarray`
        (n_members, n_labels) the shifts (standardised units) now in the networks;
        0 for a target that shares its group with others.
    scale : `~numpy.ndarray`
        (n_labels,) each target's width factor, now in every network's
        ``residual_scale`` (the map of its group gives it this factor).
    scale_interval : `~numpy.ndarray`
        (2, n_labels) each factor's bootstrap 16th-84th percentiles over the
        held-out rows (NaN where it was not fitted), now in every network's
        ``residual_scale_interval`` (0 where it was not fitted).

    Warns
    -----
    RecalibrationWarning
        For a group with too few labelled held-out rows, a member with too few
        labelled rows for its shift, and a factor at the edge of the grid.
    """
    rng = np.random.default_rng(rng)
    names = [f"label {j}" for j in range(len(nets[0].residual_scale))] if names is None else list(names)
    interval = np.full((2, len(nets[0].residual_scale)), np.nan)
    rows = [(x, y, valid, np.ones(len(x), bool) if held_out is None else np.asarray(held_out, bool))
            for x, y, valid, held_out in rows]
    for net in nets:
        net.eval()
        net.residual_shift.fill_(0.0)
        net.residual_scale.fill_(1.0)
        net.residual_map.copy_(torch.eye(len(net.residual_map)))
        net.residual_scale_interval.fill_(0.0)
    for g in nets[0].groups:
        # per member: samples of the earlier groups recalibrated, this group's raw residuals and centres,
        # needed for a shift (one-target groups) or, for a group that is not chained, for its width
        draws = [_group_draws(net, g, x, y, n_samples) if len(g.targets) == 1 or not g.condition_on else None
                 for net, (x, y, _, _) in zip(nets, rows)]
        labelled = [sum(int((valid[:, j] & held_out).sum()) for _, _, valid, held_out in rows) for j in g.targets]
        if max(labelled) < min_rows:
            warnings.warn(f"the {g.name} group has {max(labelled)} labelled held-out row(s), fewer than the "
                          f"{min_rows} its recalibration needs: its widths stay the network's own (more labelled "
                          "galaxies, or a larger validation_fraction, would recalibrate it)", RecalibrationWarning,
                          stacklevel=5)
            continue
        if len(g.targets) == 1:  # a shift per target would move a group's targets against each other
            _set_shifts(nets, rows, draws, g.targets[0], names[g.targets[0]], min_rows)
        resid, centre, offset = _held_out_draws(nets, rows, g, draws, n_samples)
        scale = None if label_scale is None else np.asarray(label_scale)[g.targets]
        width_map, factors, interval[:, g.targets] = fit_width_map(resid, centre, offset, scale, min_rows=min_rows,
                                                                   rng=rng, names=[names[j] for j in g.targets])
        for net in nets:
            _set_width_map(net, g.targets, width_map, factors, interval[:, g.targets])
    shifts = np.stack([net.residual_shift.cpu().numpy() for net in nets])
    return shifts, nets[0].residual_scale.cpu().numpy().copy(), interval


def _set_shifts(nets: Sequence[PosteriorNetwork], rows: list, draws: list, target: int, name: str, min_rows: int) -> None:
    """Set each member's shift of a one-target group's ``target``; 0, with a warning, where it has too few rows for one."""
    for member, (net, (_, _, valid, _), draw) in enumerate(zip(nets, rows, draws)):
        labelled = valid[:, target]
        shift = _best_shift(draw[0][:, labelled, 0], draw[2][labelled, 0], min_rows)
        if np.isnan(shift):
            warnings.warn(f"{name}: ensemble member {member} has {int(labelled.sum())} labelled row(s), fewer than "
                          f"the {min_rows} with finite draws its shift needs: its shift stays 0", RecalibrationWarning,
                          stacklevel=6)
            shift = 0.0
        net.residual_shift[target] = shift


def _held_out_draws(nets: Sequence[PosteriorNetwork], rows: list, group, draws: list,
                    n_samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The held-out rows of all members together: residual draws (S, N, D), their centres and truth − mean − shift.

    Each row is drawn by the member that did not train on it; a truth is NaN
    where the row lacks that target. A chained group's width scales its spread
    given the values it is conditioned on, so its rows are drawn from that
    conditional, given the rows' own labels of those groups; another group's
    are its ``draws`` (`_group_draws`) on the held-out rows.
    """
    resid, centre, offset = [], [], []
    for net, (x, y, valid, held_out), draw in zip(nets, rows, draws):
        if group.condition_on:
            draw = _group_draws(net, group, x[held_out], np.where(valid, y, np.nan)[held_out], n_samples,
                                conditional=True)
        else:
            draw = tuple(d[..., held_out, :] for d in draw[:2]) + (draw[2][held_out],)
        resid.append(draw[0])
        centre.append(np.broadcast_to(draw[1], draw[0].shape))
        offset.append(np.where(valid[held_out][:, group.targets],
                               draw[2] - net.residual_shift[group.targets].cpu().numpy(), np.nan))
    return np.concatenate(resid, axis=1), np.concatenate(centre, axis=1), np.concatenate(offset)


def _set_width_map(net: PosteriorNetwork, targets: list, width_map: np.ndarray, factors: np.ndarray,
                   interval: np.ndarray) -> None:
    """Write a group's map, its targets' factors and their intervals (NaN as 0) into ``net``'s buffers."""
    index = torch.as_tensor(targets)
    net.residual_map[index[:, None], index[None, :]] = torch.as_tensor(width_map, dtype=net.residual_map.dtype)
    net.residual_scale[index] = torch.as_tensor(factors, dtype=net.residual_scale.dtype)
    net.residual_scale_interval[:, index] = torch.as_tensor(np.nan_to_num(interval),
                                                            dtype=net.residual_scale_interval.dtype)


def _group_draws(net: PosteriorNetwork, group, x: np.ndarray, y: np.ndarray, n_samples: int,
                 conditional: bool = False):
    """Residual draws (S, N, D) of ``group`` about its mean head, their centres (S, N, D) and truth − mean (N, D).

    With ``conditional``, a chained group is conditioned on the rows' labels
    ``y`` of the groups it is conditioned on instead of on their draws, and on
    the draws where a label is NaN.
    """
    device = net.residual_scale.device
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)
    given = torch.as_tensor(y, dtype=torch.float32, device=device) if conditional else None
    _, _, draws = net.sample(xt, n_samples, residuals=True, given=given)
    mean, resid, centre = (t.cpu().numpy() for t in draws[group.name])
    return resid, np.broadcast_to(centre, resid.shape), y[:, group.targets] - mean


@torch.inference_mode()
def narrow_mixture(draws: Sequence[torch.Tensor], min_factor: float = MIN_MEMBER_FACTOR) -> list[torch.Tensor]:
    """Narrow each calibrated ensemble member's draws about its mean so that their mixture is calibrated.

    Per galaxy, with member means :math:`m_k`, the members' mean covariance
    :math:`W` of the targets and the covariance of the means :math:`B =
    \\langle (m_k - \\bar m)(m_k - \\bar m)^T \\rangle_k`, each member's draws
    become :math:`m_k + C\\,(d - m_k)` with :math:`C W C^T = W - 2B`: the
    mixture's covariance :math:`C W C^T + B` is then :math:`W - B`, the
    expected squared error of its mean in every linear combination of the
    targets when each member is calibrated (Krogh & Vedelsby 1995; see the
    module's description). ``B`` is estimated from the draws' means less their
    Monte Carlo noise. In the coordinates where :math:`W` is the identity,
    :math:`C` scales each principal direction of :math:`I - 2 W^{-1/2} B
    W^{-1/2}` by the square root of its eigenvalue, kept in ``[min_factor²,
    1]``: where the members disagree by more than their widths the draws are
    not collapsed onto the means, and a direction is never widened. For one
    target this is :math:`c = \\sqrt{1 - 2B/W}`. Targets whose draws never vary
    (columns of no group) are left as they are. The estimate is noisy with few
    draws per member, and its noise narrows members that agree, the more the
    more targets vary (each direction of noise that would widen is cut at 1):
    on average each target loses, of its variance, 2-2.5% with 20 draws per
    member and 0.2-0.3% with 200 for one target, 3-3.5% and 0.3% for three,
    and 5% and 0.5% for nine (three or five members of identical normal
    draws, 2,000 galaxies). For the nine targets of a full model, ask for a
    few hundred draws per member.

    Parameters
    ----------
    draws : sequence of `~torch.Tensor`
        Per member, ``(S_k, N, T)`` draws in one linear space (all members the
        same ``N`` and ``T``). With one member, or fewer than two draws of a
        member, they are returned unchanged.
    min_factor : float
        The smallest factor of any direction.

    Returns
    -------
    list of `~torch.Tensor`
        The narrowed draws, member by member.

    References
    ----------
    Krogh, A. & Vedelsby, J. 1995, Neural Network Ensembles, Cross Validation,
    and Active Learning, NIPS 7, 231.

    Examples
    --------
    Two members of unit width whose means differ by 1 (``W = 1``, ``B = 0.25``):
    each member's variance is halved (``c² = 1 - 2B/W = 0.5``), and the
    mixture's variance goes from ``W + B = 1.25`` to ``W - B = 0.75``:

    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a, b = torch.randn(20000, 1, 1, generator=g) - 0.5, torch.randn(20000, 1, 1, generator=g) + 0.5
    >>> round(torch.cat([a, b]).var().item(), 1), round(torch.cat(narrow_mixture([a, b])).var().item(), 2)
    (1.3, 0.75)
    """
    sizes = [len(d) for d in draws]
    if len(draws) < 2 or min(sizes) < 2:
        return list(draws)
    k = len(draws)
    varies = torch.nonzero(torch.stack([d.var(0) for d in draws]).amax(dim=(0, 1)) > 0).squeeze(-1)
    if not len(varies):
        return list(draws)
    means = torch.stack([d.mean(0) for d in draws])  # (K, N, T)
    # covariances (N, T', T') over the targets that vary, in double precision for the eigendecompositions
    # (on the CPU for Apple's MPS, which has no float64)
    work = torch.device("cpu") if means.device.type == "mps" else means.device
    spreads = [(d - m)[..., varies].to(work, torch.float64) for d, m in zip(draws, means)]
    covariances = [torch.einsum("snt,snu->ntu", x, x) / (s - 1) for x, s in zip(spreads, sizes)]
    within = torch.stack(covariances).mean(0)
    # each mean carries Monte Carlo noise W_k / S_k, which widens their spread by (K - 1)/K of its average
    noise = torch.stack([c / s for c, s in zip(covariances, sizes)]).mean(0) * (k - 1) / k
    offsets = (means - means.mean(0))[..., varies].to(work, torch.float64)
    between = torch.einsum("knt,knu->ntu", offsets, offsets) / k - noise
    maps = _narrowing_maps(within, between, min_factor)
    out = []
    for d, m, x in zip(draws, means, spreads):
        d = d.clone()
        d[..., varies] = m[..., varies] + torch.einsum("snu,ntu->snt", x, maps).to(d.device, d.dtype)
        out.append(d)
    return out


def _narrowing_maps(within: torch.Tensor, between: torch.Tensor, min_factor: float) -> torch.Tensor:
    """(N, T, T) maps ``C`` with ``C W C^T = W - 2B``, each direction's factor kept in ``[min_factor, 1]``."""
    values, vectors = torch.linalg.eigh(within)
    values = values.clamp(min=torch.finfo(values.dtype).eps * values.amax(-1, keepdim=True).clamp(min=1e-300))
    root = vectors @ torch.diag_embed(values.sqrt()) @ vectors.mT
    inverse_root = vectors @ torch.diag_embed(values.rsqrt()) @ vectors.mT
    target = torch.eye(within.shape[-1], dtype=within.dtype, device=within.device) - 2 * inverse_root @ between @ inverse_root
    factors, directions = torch.linalg.eigh(0.5 * (target + target.mT))
    factors = factors.clamp(min=min_factor**2, max=1.0).sqrt()
    return root @ directions @ torch.diag_embed(factors) @ directions.mT @ inverse_root
