"""Calibration diagnostics of sampled posteriors.

Inputs follow the conventions of `astro_galpost.evaluation.metrics`: the
samples are an `astropy.uncertainty.Distribution` of shape ``(N,)`` (``S``
samples each) or an ``(N, S)`` array/Quantity; the truth is ``(N,)``; rows with
a masked/non-finite truth or any non-finite/masked sample are ignored; samples
are compared in the truth's unit (the plain values of a logarithmic unit).

Univariate diagnostics
    `pit`, `pit_ks`, `pit_cvm`, `coverage`, `crps`, `sbc_ranks`,
    `calibration_summary`; `calibrated_pass_chance` (how often a calibrated
    posterior meets calibration goals on a finite sample).
Multivariate (joint) diagnostics
    `tarp_coverage` (Lemos et al. 2023) and `hpd_coverage` (Gaussian-whitened
    highest-density ranks).

References
----------
.. [1] Dawid, A. P. 1984, J. R. Stat. Soc. A, 147, 278 (probability integral
   transform).
.. [2] Gneiting, T. & Raftery, A. E. 2007, JASA, 102, 359 (CRPS, energy form).
.. [3] Talts, S. et al. 2018, arXiv:1804.06788 (simulation-based calibration).
.. [4] Lemos, P., Coogan, A., Hezaveh, Y. & Perreault-Levasseur, L. 2023,
   ICML, PMLR 202, 19256, arXiv:2302.03026 (TARP).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
from astropy.uncertainty import Distribution
from scipy import stats

from .arrays import convert, prepare, unpack

__all__ = [
    "SBCResult",
    "TARPResult",
    "UniformityTest",
    "calibrated_pass_chance",
    "calibration_summary",
    "coverage",
    "crps",
    "hpd_coverage",
    "pit",
    "pit_cvm",
    "pit_ks",
    "sbc_ranks",
    "tarp_coverage",
]

#: Default credibility levels of `coverage` and `hpd_coverage`.
DEFAULT_LEVELS = np.linspace(0.05, 0.95, 19)

RNGLike = np.random.Generator | int | None

# numpy < 2 has only ``trapz``
_trapezoid = getattr(np, "trapezoid", None) or np.trapz


class UniformityTest(NamedTuple):
    """Result of a goodness-of-fit test of values against U(0, 1)."""

    statistic: float
    pvalue: float


class SBCResult(NamedTuple):
    """Result of `sbc_ranks`.

    Attributes
    ----------
    ranks : ndarray of int
        Rank of each valid truth among the ``n_ranks`` thinned posterior
        samples, in ``0 .. n_ranks``.
    n_ranks : int
        Number ``L`` of posterior samples used per object.
    histogram : ndarray of int
        Counts of the ranks in ``n_bins`` equal-width bins.
    chi2 : float
        Pearson chi-squared of ``histogram`` against a flat histogram.
    dof : int
        Degrees of freedom, ``n_bins - 1``.
    pvalue : float
        Chi-squared survival probability; small values flag miscalibration.
    """

    ranks: np.ndarray
    n_ranks: int
    histogram: np.ndarray
    chi2: float
    dof: int
    pvalue: float


class TARPResult(NamedTuple):
    """Result of `tarp_coverage`.

    Attributes
    ----------
    alpha : ndarray
        Credibility levels, from 0 to 1.
    ecp : ndarray
        Expected coverage probability at each ``alpha``; equal to ``alpha``
        for a calibrated posterior.
    f : ndarray
        Per-object fraction of samples closer to the reference point than the
        truth (uniform on [0, 1] for a calibrated posterior).
    atc : float
        Signed area :math:`\\int_{0.5}^{1} (\\mathrm{ECP} - \\alpha)\\,d\\alpha`:
        negative for over-confident (too narrow or biased), positive for
        under-confident (too wide) posteriors; 0 when calibrated.
    max_deviation : float
        :math:`\\max_\\alpha |\\mathrm{ECP}(\\alpha) - \\alpha|`, the one-sample
        Kolmogorov–Smirnov statistic of ``f`` against U(0, 1).
    ks_pvalue : float
        KS p-value of ``f`` against U(0, 1).
    """

    alpha: np.ndarray
    ecp: np.ndarray
    f: np.ndarray
    atc: float
    max_deviation: float
    ks_pvalue: float


def _rng(rng: RNGLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _randomized_rank(
    n_below: np.ndarray, n_equal: np.ndarray, gen: np.random.Generator
) -> np.ndarray:
    """Integer rank, drawn uniformly among tied positions (Talts et al. 2018)."""
    return n_below + gen.integers(0, n_equal + 1)


# ----------------------------------------------------------------------------
# PIT and tests of uniformity
# ----------------------------------------------------------------------------
def pit(
    samples: Any, truth: Any, *, randomize: bool = True, rng: RNGLike = None
) -> np.ndarray:
    r"""Probability integral transform of the truths under their posteriors.

    The PIT is the posterior CDF evaluated at the truth, estimated from the
    samples.  For a calibrated posterior it is distributed as U(0, 1).

    With ``randomize=True`` (default) the estimator is the randomised rank

    .. math:: \mathrm{PIT} = \frac{n_< + U\,(n_= + 1)}{S + 1},\qquad U\sim U(0,1),

    where :math:`n_<` (:math:`n_=`) counts the samples below (equal to) the
    truth.  Since the rank of the truth among the :math:`S+1` values is
    uniform on :math:`0..S` for a calibrated posterior, this value is exactly
    U(0, 1) even for finite :math:`S` and with ties (discrete samples).
    With ``randomize=False`` it is the plain fraction below the truth with
    ties counted half, :math:`(n_< + n_=/2)/S`.

    Parameters
    ----------
    samples : `~astropy.uncertainty.Distribution` or array-like
        ``(N,)`` Distribution or ``(N, S)`` samples.
    truth : array-like
        ``(N,)`` true values.
    randomize : bool, optional
        Use the randomised, tie-breaking estimator.
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed for the randomisation.

    Returns
    -------
    ndarray
        ``(N,)`` PIT values in [0, 1]; NaN for ignored rows.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import pit
    >>> samples = np.tile(np.arange(10.0), (2, 1))
    >>> pit(samples, np.array([4.5, np.nan]), randomize=False)
    array([0.5, nan])
    """
    samp, tru, valid, _ = prepare(samples, truth)
    out = np.full(tru.shape, np.nan)
    s, t = samp[valid], tru[valid][:, None]
    n_below = np.sum(s < t, axis=1)
    n_equal = np.sum(s == t, axis=1)
    n_s = s.shape[1]
    if randomize:
        gen = _rng(rng)
        out[valid] = (n_below + gen.random(n_below.shape) * (n_equal + 1)) / (n_s + 1)
    else:
        out[valid] = (n_below + 0.5 * n_equal) / n_s
    return out


def _finite(values: Any) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite values to test")
    return v


def pit_ks(pit_values: Any) -> UniformityTest:
    """Kolmogorov–Smirnov test of PIT values against U(0, 1).

    Parameters
    ----------
    pit_values : array-like
        PIT values, e.g. from `pit`; NaNs are dropped.

    Returns
    -------
    UniformityTest
        ``statistic`` (the KS distance, 0 for perfect uniformity) and
        ``pvalue`` (from `scipy.stats.kstest`).

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import pit_ks
    >>> res = pit_ks(np.linspace(0.0005, 0.9995, 1000))
    >>> round(res.statistic, 4), res.pvalue > 0.99
    (0.0005, True)
    """
    res = stats.kstest(_finite(pit_values), "uniform")
    return UniformityTest(float(res.statistic), float(res.pvalue))


def pit_cvm(pit_values: Any) -> UniformityTest:
    """Cramér–von Mises test of PIT values against U(0, 1).

    Parameters
    ----------
    pit_values : array-like
        PIT values, e.g. from `pit`; NaNs are dropped.

    Returns
    -------
    UniformityTest
        ``statistic`` (the CvM :math:`\\omega^2` statistic) and ``pvalue``
        (from `scipy.stats.cramervonmises`).

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import pit_cvm
    >>> pit_cvm(np.full(100, 0.99)).pvalue < 1e-6
    True
    """
    res = stats.cramervonmises(_finite(pit_values), "uniform")
    return UniformityTest(float(res.statistic), float(res.pvalue))


def calibrated_pass_chance(
    n: int | Any,
    *,
    ks_goal: float | None = 0.05,
    coverage_goal: float | None = 0.05,
    level: float = 0.68,
    repeats: int = 1000,
    rng: RNGLike = None,
) -> float:
    """Chance that perfectly calibrated posteriors meet calibration goals on finite samples.

    A goal such as "PIT KS ≤ 0.05 and 68% coverage within 0.05 of nominal" is
    judged on a finite number of test galaxies, so even a calibrated posterior
    misses it now and then. This draws uniform PIT values (those of a
    calibrated posterior) for each sample size in ``n`` and counts how often
    every one of them meets the goals. A goal missed where this chance is high
    is a fault of the model; one missed where it is low may be the test
    sample's noise. Samples of different sizes are treated as independent.

    Parameters
    ----------
    n : int or sequence of int
        Galaxies in each sample (e.g. the labelled test galaxies of each target).
    ks_goal : float or None, optional
        Largest allowed PIT Kolmogorov-Smirnov statistic (`pit_ks`); `None`: no KS goal.
    coverage_goal : float or None, optional
        Largest allowed distance of the central interval's coverage from
        ``level``; `None`: no coverage goal.
    level : float, optional
        Credibility level of the central interval.
    repeats : int, optional
        Simulated test samples.
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed.

    Returns
    -------
    float
        The fraction of the ``repeats`` in which every sample met every goal;
        a coverage or KS statistic exactly on its goal meets it (63 of 100
        galaxies inside the 68% interval meets a goal of 0.05).

    Examples
    --------
    Five targets of 827 galaxies each, each held to KS ≤ 0.05 and 68% coverage
    0.63-0.73: a calibrated model meets all of it about six times in seven.

    >>> from astro_galpost.evaluation import calibrated_pass_chance
    >>> chance = calibrated_pass_chance([827] * 5, repeats=200, rng=0)
    >>> 0.8 < chance < 0.9
    True
    """
    sizes = np.atleast_1d(np.asarray(n, dtype=int))
    if sizes.ndim != 1 or np.any(sizes < 1):
        raise ValueError(f"n must be one or more positive sample sizes, got {n!r}")
    gen = _rng(rng)

    def meets(size: int) -> bool:
        u = gen.random(size)
        if coverage_goal is not None and not _within_goal(np.mean(np.abs(u - 0.5) < level / 2), level, coverage_goal):
            return False
        return ks_goal is None or _within_goal(pit_ks(u).statistic, 0.0, ks_goal)

    return sum(all(meets(int(size)) for size in sizes) for _ in range(int(repeats))) / int(repeats)


def _within_goal(value: float, nominal: float, goal: float) -> bool:
    """Whether ``|value - nominal| <= goal``, a distance on the goal itself counting as met.

    A coverage is a count over a number of galaxies, ``k / n``, whose distance
    from a level in floating point can exceed a goal it equals (``|0.63 -
    0.68|`` is 0.05000000000000004), so the comparison allows ``1e-9``, far
    below ``1 / n`` for any sample.
    """
    return bool(abs(value - nominal) <= goal + 1e-9)


# ----------------------------------------------------------------------------
# Interval coverage and CRPS
# ----------------------------------------------------------------------------
def coverage(
    samples: Any, truth: Any, levels: Any = DEFAULT_LEVELS
) -> float | np.ndarray:
    """Empirical coverage of central credible intervals.

    For each credibility level ``l`` the interval between the sample
    quantiles ``(1 - l)/2`` and ``(1 + l)/2`` is formed per object and the
    fraction of valid objects whose truth lies inside (inclusive) is returned.
    A calibrated posterior gives coverage ≈ ``levels``; over-confident
    (too narrow) posteriors give less, under-confident (too wide) ones more.

    Parameters
    ----------
    samples : `~astropy.uncertainty.Distribution` or array-like
        ``(N,)`` Distribution or ``(N, S)`` samples.
    truth : array-like
        ``(N,)`` true values.
    levels : float or array-like, optional
        Credibility levels in (0, 1); default ``0.05, 0.10, ..., 0.95``.

    Returns
    -------
    float or ndarray
        Coverage per level (same shape as ``levels``); NaN without valid rows.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import coverage
    >>> samples = np.tile(np.linspace(-1, 1, 101), (4, 1))
    >>> coverage(samples, np.array([0.0, 0.3, 0.7, 2.0]), levels=[0.5, 0.9])
    array([0.5 , 0.75])
    """
    samp, tru, valid, _ = prepare(samples, truth)
    lev = np.asarray(levels, dtype=float)
    if np.any((lev <= 0) | (lev >= 1)):
        raise ValueError("levels must lie strictly between 0 and 1")
    s, t = samp[valid], tru[valid]
    if t.size == 0:
        return np.full(lev.shape, np.nan) if lev.ndim else float("nan")
    flat = lev.ravel()
    q = np.concatenate([(1 - flat) / 2, (1 + flat) / 2])
    quant = np.quantile(s, q, axis=1)  # (2L, N)
    lo, hi = quant[: flat.size], quant[flat.size :]
    cov = np.mean((lo <= t) & (t <= hi), axis=1).reshape(lev.shape)
    return cov if lev.ndim else float(cov)


def crps(
    samples: Any, truth: Any, *, fair: bool = True, average: bool = True
) -> float | np.ndarray:
    r"""Continuous ranked probability score from posterior samples.

    Uses the energy form (Gneiting & Raftery 2007)

    .. math:: \mathrm{CRPS}(F, y) = E|X - y| - \tfrac12 E|X - X'|,

    with both expectations replaced by sample averages.  ``fair=True`` uses
    the unbiased :math:`1/[S(S-1)]` normalisation of the pair term (the
    "fair" CRPS, Ferro 2014), so the estimate is unbiased for the CRPS of the
    distribution the samples come from; ``fair=False`` uses :math:`1/S^2`
    (the CRPS of the empirical distribution).  The pair sum is computed in
    :math:`O(S \log S)` from sorted samples.  Lower is better; the CRPS has
    the truth's unit.

    For a Gaussian :math:`N(\mu, \sigma^2)`,
    :math:`\mathrm{CRPS} = \sigma[z(2\Phi(z) - 1) + 2\varphi(z) - 1/\sqrt\pi]`
    with :math:`z = (y - \mu)/\sigma`.

    Parameters
    ----------
    samples : `~astropy.uncertainty.Distribution` or array-like
        ``(N,)`` Distribution or ``(N, S)`` samples, ``S >= 2``.
    truth : array-like
        ``(N,)`` true values.
    fair : bool, optional
        Unbiased pair-term normalisation.
    average : bool, optional
        Return the mean over valid rows (default) instead of per-object values
        (NaN for ignored rows).

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import crps
    >>> crps(np.array([[0.0, 0.0, 0.0]]), np.array([1.0]))
    1.0
    """
    samp, tru, valid, _ = prepare(samples, truth)
    n_s = samp.shape[1]
    if n_s < 2 and fair:
        raise ValueError("the fair CRPS needs at least two samples per object")
    s = np.sort(samp[valid], axis=1)
    t = tru[valid][:, None]
    term1 = np.mean(np.abs(s - t), axis=1)
    weights = 2.0 * np.arange(1, n_s + 1) - n_s - 1  # sum_ij |x_i - x_j| = 2 sum_i w_i x_(i)
    pair_sum = 2.0 * (s @ weights)
    denom = n_s * (n_s - 1) if fair else n_s**2
    values = term1 - 0.5 * pair_sum / denom
    if average:
        return float(np.mean(values)) if values.size else float("nan")
    out = np.full(tru.shape, np.nan)
    out[valid] = values
    return out


# ----------------------------------------------------------------------------
# Simulation-based calibration
# ----------------------------------------------------------------------------
def sbc_ranks(
    prior_draws: Any,
    posterior_samples: Any | Callable[[np.ndarray], Any],
    *,
    n_ranks: int | None = None,
    n_bins: int | None = None,
    rng: RNGLike = None,
) -> SBCResult:
    r"""Simulation-based calibration rank statistics (Talts et al. 2018).

    For truths :math:`\theta_i` drawn from the prior (or from the mock joint
    distribution the estimator was trained on) and posterior samples of the
    corresponding mock observations, the rank of :math:`\theta_i` among
    :math:`L` posterior samples is uniform on :math:`0..L` if, and only if
    averaged over the prior, the posterior is calibrated.  Ties are broken at
    random.  The ranks are histogrammed in ``n_bins`` equal-width bins and
    compared with a flat histogram by Pearson's :math:`\chi^2` test.

    Parameters
    ----------
    prior_draws : array-like
        ``(N,)`` true parameter values drawn from the prior/mock joint.
    posterior_samples : Distribution, array-like or callable
        ``(N,)`` Distribution or ``(N, S)`` samples of the posteriors, or a
        callable that maps the ``(N,)`` prior draws (as a float array) to such
        samples (e.g. simulate data then run the estimator).
    n_ranks : int, optional
        Number :math:`L` of samples per object.  When ``S > L`` the samples
        are thinned evenly (``samples[:, ::S // L][:, :L]``), which reduces
        autocorrelation of MCMC chains; for independent flow samples thinning
        is harmless.  Defaults to ``S``.  It is lowered, if needed, until
        ``L + 1`` is a multiple of ``n_bins`` so that every bin spans the same
        number of possible ranks.
    n_bins : int, optional
        Histogram bins; default ``clip(N // 5, 2, 20)`` (≥ 5 expected counts
        per bin).
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed for tie breaking.

    Returns
    -------
    SBCResult

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import sbc_ranks
    >>> rng = np.random.default_rng(1)
    >>> theta = rng.normal(size=2000)                  # prior N(0, 1)
    >>> x = theta + rng.normal(size=2000)              # data with unit noise
    >>> post = x[:, None] / 2 + rng.normal(size=(2000, 99)) / np.sqrt(2)
    >>> res = sbc_ranks(theta, post, n_bins=20, rng=rng)
    >>> res.n_ranks, res.dof, res.pvalue > 0.001
    (99, 19, True)
    """
    if callable(posterior_samples):
        posterior_samples = posterior_samples(unpack(prior_draws)[0])
    samp, tru, valid, _ = prepare(posterior_samples, prior_draws)
    s, t = samp[valid], tru[valid]
    n_obj, n_s = s.shape
    if n_obj == 0:
        raise ValueError("no valid objects")
    if n_bins is None:
        n_bins = int(np.clip(n_obj // 5, 2, 20))
    n_bins = int(min(n_bins, n_s + 1))
    if n_bins < 2:
        raise ValueError("need at least two histogram bins (and two samples)")
    big_l = n_s if n_ranks is None else int(min(n_ranks, n_s))
    while (big_l + 1) % n_bins:
        big_l -= 1
    if big_l < 1:
        raise ValueError("too few samples for the requested number of bins")
    step = max(n_s // big_l, 1)
    thinned = s[:, ::step][:, :big_l]
    gen = _rng(rng)
    tc = t[:, None]
    ranks = _randomized_rank(
        np.sum(thinned < tc, axis=1), np.sum(thinned == tc, axis=1), gen
    )
    per_bin = (big_l + 1) // n_bins
    hist = np.bincount(ranks // per_bin, minlength=n_bins)
    expected = n_obj / n_bins
    chi2 = float(np.sum((hist - expected) ** 2) / expected)
    dof = n_bins - 1
    return SBCResult(ranks, big_l, hist, chi2, dof, float(stats.chi2.sf(chi2, dof)))


# ----------------------------------------------------------------------------
# Multivariate calibration
# ----------------------------------------------------------------------------
def _prepare_joint(samples: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    """Joint samples ``(N, S, D)`` and truths ``(N, D)`` of the valid rows."""
    if isinstance(samples, Distribution):
        # Distribution of shape (N, D) with S samples -> (N, D, S) -> (N, S, D)
        samp, _, s_unit = unpack(samples)
        if samp.ndim == 2:  # (N,) Distribution: univariate
            samp = samp[:, :, None]
        else:
            samp = np.moveaxis(samp, -1, 1)
    else:
        samp, _, s_unit = unpack(samples)
        if samp.ndim == 2:
            samp = samp[:, :, None]
    tru, t_mask, t_unit = unpack(truth)
    if tru.ndim == 1:
        tru, t_mask = tru[:, None], t_mask[:, None]
    samp = convert(samp, s_unit, t_unit)
    if samp.ndim != 3 or tru.ndim != 2:
        raise ValueError("samples must be (N, S, D) and truth (N, D)")
    if samp.shape[0] != tru.shape[0] or samp.shape[2] != tru.shape[1]:
        raise ValueError(
            f"incompatible shapes: samples {samp.shape}, truth {tru.shape}"
        )
    valid = (
        ~np.any(t_mask, axis=1)
        & np.all(np.isfinite(tru), axis=1)
        & np.all(np.isfinite(samp), axis=(1, 2))
    )
    return samp[valid], tru[valid]


def _unit_box(samp: np.ndarray, tru: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rescale every dimension to [0, 1] with the min and max of the truths."""
    lo = tru.min(axis=0)
    span = tru.max(axis=0) - lo
    span = np.where(span > 0, span, 1.0)
    return (samp - lo) / span, (tru - lo) / span


def _tarp_references(references: Any, n_obj: int, n_dim: int, gen: np.random.Generator) -> np.ndarray:
    """TARP reference points ``(N, D)``: random in the unit box, or the given array checked."""
    if isinstance(references, str):
        if references != "random":
            raise ValueError("references must be 'random' or an (N, D) array")
        return gen.uniform(0.0, 1.0, size=(n_obj, n_dim))
    refs = np.asarray(references, dtype=float)
    if refs.shape != (n_obj, n_dim):
        raise ValueError(f"references must have shape {(n_obj, n_dim)} (valid rows), got {refs.shape}")
    return refs


def _distances(samp: np.ndarray, tru: np.ndarray, refs: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(N, S)`` of the samples and ``(N,)`` of the truths to the references."""
    if metric == "euclidean":
        return (np.sqrt(np.sum((samp - refs[:, None, :]) ** 2, axis=-1)),
                np.sqrt(np.sum((tru - refs) ** 2, axis=-1)))
    if metric == "manhattan":
        return np.sum(np.abs(samp - refs[:, None, :]), axis=-1), np.sum(np.abs(tru - refs), axis=-1)
    raise ValueError("metric must be 'euclidean' or 'manhattan'")


def _rank_fraction(d_samp: np.ndarray, d_true: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """Fraction of samples closer than the truth, ``(N,)``, ties broken at random."""
    dt = d_true.reshape(-1, 1)
    n_below = np.sum(d_samp < dt, axis=1)
    n_equal = np.sum(d_samp == dt, axis=1)
    return (n_below + gen.random(dt.shape[0]) * (n_equal + 1)) / (d_samp.shape[1] + 1)


def tarp_coverage(
    samples: Any,
    truth: Any,
    *,
    references: Literal["random"] | np.ndarray = "random",
    metric: Literal["euclidean", "manhattan"] = "euclidean",
    normalize: bool = True,
    n_alpha: int = 100,
    rng: RNGLike = None,
) -> TARPResult:
    r"""TARP expected-coverage test of joint posteriors (Lemos et al. 2023).

    For every object a reference point :math:`\theta_r` is drawn; the statistic
    :math:`f_i` is the fraction of posterior samples closer to
    :math:`\theta_r` than the truth.  For a calibrated joint posterior
    :math:`f_i \sim U(0, 1)` and the expected coverage probability
    :math:`\mathrm{ECP}(\alpha) = P(f < \alpha)` equals :math:`\alpha`;
    Lemos et al. show this is necessary and sufficient for calibration when
    the reference distribution is suitably chosen.  Ties in distance are
    broken at random as in `pit`, so :math:`f` is exactly uniform for a
    calibrated posterior with finite :math:`S`.

    Parameters
    ----------
    samples : array-like or `~astropy.uncertainty.Distribution`
        ``(N, S, D)`` array, or a Distribution of shape ``(N, D)`` with ``S``
        samples.  A ``(N, S)`` array or ``(N,)`` Distribution is treated as
        ``D = 1``.
    truth : array-like
        ``(N, D)`` true values (``(N,)`` for ``D = 1``).  Rows with any masked
        or non-finite entry, or non-finite samples, are dropped.
    references : 'random' or ndarray, optional
        ``'random'`` draws one point per object uniformly in the unit
        hypercube of the (normalised) parameter space; an ``(N, D)`` array
        gives them explicitly (in normalised units if ``normalize``).
    metric : {'euclidean', 'manhattan'}, optional
        Distance metric.
    normalize : bool, optional
        Rescale every dimension to [0, 1] using the min and max of the
        truths (as in the reference implementation), so dimensions with
        different units are comparable.
    n_alpha : int, optional
        Number of intervals of the returned :math:`\alpha` grid.
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed (references and tie breaking).

    Returns
    -------
    TARPResult
        ``alpha``, ``ecp``, per-object ``f``, ``atc`` (signed area between
        ECP and the diagonal for :math:`\alpha > 0.5`), ``max_deviation``
        (KS distance) and ``ks_pvalue``.

    Notes
    -----
    The ATC here is the trapezoidal integral
    :math:`\int_{0.5}^{1}(\mathrm{ECP}-\alpha)\,d\alpha`, a bin-independent
    version of the "area to curve" used by the ``sbi`` package; it is ≈ 0
    when calibrated, < 0 for over-confident and > 0 for under-confident
    posteriors.  ``max_deviation`` and ``ks_pvalue`` are a one-sample KS test
    of :math:`f` against U(0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import tarp_coverage
    >>> rng = np.random.default_rng(2)
    >>> mu = rng.normal(size=(1000, 2))
    >>> truth = mu + rng.normal(size=(1000, 2))
    >>> samples = mu[:, None, :] + rng.normal(size=(1000, 200, 2))
    >>> res = tarp_coverage(samples, truth, rng=rng)
    >>> abs(res.atc) < 0.02, res.ks_pvalue > 0.001
    (True, True)
    """
    samp, tru = _prepare_joint(samples, truth)
    if samp.shape[0] == 0:
        raise ValueError("no valid objects")
    gen = _rng(rng)
    if normalize:
        samp, tru = _unit_box(samp, tru)
    refs = _tarp_references(references, samp.shape[0], samp.shape[2], gen)
    d_samp, d_true = _distances(samp, tru, refs, metric)
    f = _rank_fraction(d_samp, d_true, gen)
    alpha = np.linspace(0.0, 1.0, n_alpha + 1)
    ecp = np.searchsorted(np.sort(f), alpha, side="right") / f.size
    upper = alpha >= 0.5
    atc = float(_trapezoid(ecp[upper] - alpha[upper], alpha[upper]))
    ks = stats.kstest(f, "uniform")
    return TARPResult(alpha, ecp, f, atc, float(ks.statistic), float(ks.pvalue))


def hpd_coverage(
    samples: Any,
    truth: Any,
    levels: Any = DEFAULT_LEVELS,
    *,
    return_ranks: bool = False,
    rng: RNGLike = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    r"""Coverage of joint highest-density regions in whitened space.

    Each object's samples are whitened with their own mean and covariance;
    the rank statistic :math:`r_i` is the fraction of samples whose
    Mahalanobis distance is smaller than the truth's (ties broken at random).
    The truth lies in the level-:math:`l` region
    :math:`\{d < d_{(l)}\}` iff :math:`r_i \le l`, so the coverage at level
    :math:`l` is the fraction of :math:`r_i \le l`.  For (near-)Gaussian
    posteriors these regions are the highest-posterior-density regions; for
    strongly non-Gaussian (multi-modal, banana-shaped) posteriors they are
    ellipsoidal credible regions, which are still a valid — if less powerful —
    calibration test.

    Parameters
    ----------
    samples : array-like or `~astropy.uncertainty.Distribution`
        ``(N, S, D)`` samples (see `tarp_coverage`); ``S > D`` is required.
    truth : array-like
        ``(N, D)`` true values.
    levels : array-like, optional
        Credibility levels in (0, 1).
    return_ranks : bool, optional
        Also return the per-object rank statistics :math:`r_i`.
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed for tie breaking.

    Returns
    -------
    coverage : ndarray
        Coverage per level.
    ranks : ndarray
        Only if ``return_ranks``; uniform on [0, 1] when calibrated.

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import hpd_coverage
    >>> rng = np.random.default_rng(3)
    >>> mu = rng.normal(size=(2000, 3))
    >>> truth = mu + rng.normal(size=(2000, 3))
    >>> samples = mu[:, None, :] + rng.normal(size=(2000, 300, 3))
    >>> cov = hpd_coverage(samples, truth, levels=[0.5, 0.9], rng=rng)
    >>> bool(np.all(np.abs(cov - [0.5, 0.9]) < 0.04))
    True
    """
    samp, tru = _prepare_joint(samples, truth)
    _, n_s, n_dim = samp.shape
    if n_s <= n_dim:
        raise ValueError("need more samples than dimensions to whiten")
    lev = np.asarray(levels, dtype=float)
    gen = _rng(rng)
    mean = samp.mean(axis=1, keepdims=True)
    centred = samp - mean
    cov = np.einsum("nsi,nsj->nij", centred, centred) / (n_s - 1)
    chol = np.linalg.cholesky(cov)  # (N, D, D)
    # whitened coordinates: solve L w = x  for samples and truth
    w_samp = np.linalg.solve(chol[:, None, :, :], centred[..., None])[..., 0]
    w_true = np.linalg.solve(chol, (tru - mean[:, 0, :])[..., None])[..., 0]
    ranks = _rank_fraction(np.sum(w_samp**2, axis=-1), np.sum(w_true**2, axis=-1), gen)
    cov_out = np.mean(ranks[:, None] <= lev.ravel()[None, :], axis=0).reshape(lev.shape)
    return (cov_out, ranks) if return_ranks else cov_out


# ----------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------
def calibration_summary(
    samples: Any, truth: Any, *, rng: RNGLike = None
) -> dict[str, float]:
    """The main univariate calibration numbers in one dictionary.

    Parameters
    ----------
    samples : `~astropy.uncertainty.Distribution` or array-like
        ``(N,)`` Distribution or ``(N, S)`` samples.
    truth : array-like
        ``(N,)`` true values.
    rng : `numpy.random.Generator`, int or None, optional
        Random generator or seed for the randomised PIT.

    Returns
    -------
    dict
        ``n`` (valid rows), ``pit_ks`` and ``pit_ks_pvalue`` (`pit_ks`),
        ``pit_cvm`` and ``pit_cvm_pvalue`` (`pit_cvm`), ``coverage_68`` and
        ``coverage_95`` (central-interval coverage at 68 % and 95 %, see
        `coverage`) and ``crps`` (mean fair CRPS, truth's unit).

    Examples
    --------
    >>> import numpy as np
    >>> from astro_galpost.evaluation import calibration_summary
    >>> rng = np.random.default_rng(4)
    >>> mu = rng.normal(size=3000)
    >>> truth = mu + rng.normal(size=3000)
    >>> s = calibration_summary(mu[:, None] + rng.normal(size=(3000, 200)), truth, rng=rng)
    >>> sorted(s)
    ['coverage_68', 'coverage_95', 'crps', 'n', 'pit_cvm', 'pit_cvm_pvalue', 'pit_ks', 'pit_ks_pvalue']
    >>> abs(s["coverage_68"] - 0.68) < 0.03, abs(s["coverage_95"] - 0.95) < 0.02
    (True, True)
    """
    p = pit(samples, truth, rng=rng)
    ks = pit_ks(p)
    cvm = pit_cvm(p)
    cov68, cov95 = coverage(samples, truth, levels=[0.68, 0.95])
    return {
        "n": int(np.sum(np.isfinite(p))),
        "pit_ks": ks.statistic,
        "pit_ks_pvalue": ks.pvalue,
        "pit_cvm": cvm.statistic,
        "pit_cvm_pvalue": cvm.pvalue,
        "coverage_68": float(cov68),
        "coverage_95": float(cov95),
        "crps": crps(samples, truth),
    }
