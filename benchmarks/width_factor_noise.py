"""How precisely N held-out rows fix a width factor, for three estimators of it.

`~astro_galpost.model.recalibration.fit_width_factor` chooses the factor ``τ``
on a flow's residual draws whose central intervals best match their nominal
coverage on the held-out rows, and gives its bootstrap 16th-84th percentiles.
This script measures, on simulated rows whose true factor is known (1), how much
that choice scatters from one draw of N rows to another, next to two other
estimators of the same factor:

``coverage``  the package's: coverage of central intervals at eight levels;
``crps``      the factor of the same grid with the lowest mean continuous ranked
              probability score of the draws (a proper score);
``gaussian``  the Gaussian maximum-likelihood scale, √⟨(truth / draw spread)²⟩.

Cases: ``gaussian`` (draws and truths normal), ``hetero`` (normal with a width
that differs from row to row by 0.5 dex-e), ``student4`` (draws and truths
Student-t with 4 degrees of freedom) and ``mismatch`` (normal draws, truths
Student-t scaled to the same variance: the flow has the wrong shape). For each
case and N the table gives the mean and standard deviation of each estimator
over repeated draws of the rows, the median half-width of the package's
bootstrap interval, and the spread of the 68% coverage that the package's
factor then gives on new rows. The last line printed is one JSON object.

    python benchmarks/width_factor_noise.py [--quick] [--repeats 100] [--seed 0]

Nothing here is fitted to data: it is the noise of the estimators alone.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy import stats

from astro_galpost.model.recalibration import SCALE_GRID, fit_width_factor

CASES = ("gaussian", "hetero", "student4", "mismatch")


def draw_rows(case: str, n: int, n_draws: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(S, N) residual draws and (N,) truths whose true factor is 1 (for the mismatched shape: in variance)."""
    if case == "gaussian":
        return rng.normal(size=(n_draws, n)), rng.normal(size=n)
    if case == "hetero":
        width = np.exp(rng.normal(0.0, 0.5, size=n))
        return width * rng.normal(size=(n_draws, n)), width * rng.normal(size=n)
    if case == "student4":
        return rng.standard_t(4, size=(n_draws, n)), rng.standard_t(4, size=n)
    if case == "mismatch":
        return rng.normal(size=(n_draws, n)), rng.standard_t(4, size=n) / np.sqrt(2.0)
    raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")


def crps_factor(resid: np.ndarray, truth: np.ndarray) -> float:
    """The factor of ``SCALE_GRID`` with the lowest mean CRPS, E|τr − y| − ½ τ E|r − r′|."""
    sorted_draws = np.sort(resid, axis=0)
    s = len(resid)
    weights = (2 * np.arange(1, s + 1) - s - 1)[:, None]
    spread = 2 * np.sum(weights * sorted_draws, axis=0) / s**2  # E|r − r′| per row
    scores = [np.mean(np.mean(np.abs(tau * resid - truth), axis=0) - 0.5 * tau * spread) for tau in SCALE_GRID]
    return float(SCALE_GRID[int(np.argmin(scores))])


def gaussian_factor(resid: np.ndarray, truth: np.ndarray) -> float:
    """The Gaussian maximum-likelihood factor on each row's draw spread."""
    return float(np.sqrt(np.mean((truth / resid.std(axis=0)) ** 2)))


def coverage_68(case: str, tau: float, rng: np.random.Generator, n: int = 20000, n_draws: int = 200) -> float:
    """68% central coverage on ``n`` new rows of draws scaled by ``tau``."""
    resid, truth = draw_rows(case, n, n_draws, rng)
    pit = np.mean(tau * resid < truth, axis=0)
    return float(np.mean(np.abs(pit - 0.5) <= 0.34))


def run_case(case: str, n: int, repeats: int, n_draws: int, rng: np.random.Generator) -> dict:
    found = {"coverage": [], "crps": [], "gaussian": []}
    half_widths, coverages = [], []
    for _ in range(repeats):
        resid, truth = draw_rows(case, n, n_draws, rng)
        tau, interval = fit_width_factor(resid, np.zeros(1), truth, rng=rng)
        found["coverage"].append(tau)
        found["crps"].append(crps_factor(resid, truth))
        found["gaussian"].append(gaussian_factor(resid, truth))
        half_widths.append((interval[1] - interval[0]) / 2)
        coverages.append(coverage_68(case, tau, rng, n=4000))
    row = {f"{name}_{stat}": float(f(values)) for name, values in found.items()
           for stat, f in (("mean", np.mean), ("sd", np.std))}
    row.update(bootstrap_half_width=float(np.median(half_widths)), coverage_68_mean=float(np.mean(coverages)),
               coverage_68_sd=float(np.std(coverages)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and row counts")
    parser.add_argument("--repeats", type=int, default=100, help="draws of the held-out rows per case and N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sizes, repeats, n_draws = ((300,), 20, 100) if args.quick else ((100, 300, 1000), args.repeats, 200)
    results = {}
    print(f"# Width-factor noise: true factor 1, {repeats} draws of the rows, {n_draws} draws per row\n")
    print("| case | N | coverage τ | crps τ | gaussian τ | bootstrap ± | 68% coverage on new rows |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in CASES:
        for n in sizes:
            r = results[f"{case}|{n}"] = run_case(case, n, repeats, n_draws, rng)
            cells = [f"{r[f'{k}_mean']:.3f} ± {r[f'{k}_sd']:.3f}" for k in ("coverage", "crps", "gaussian")]
            print(f"| {case} | {n} | " + " | ".join(cells)
                  + f" | {r['bootstrap_half_width']:.3f} | {r['coverage_68_mean']:.3f} ± {r['coverage_68_sd']:.3f} |")
    print("\n± after a factor: its standard deviation over the draws of the rows; bootstrap ±: the median "
          "half-width of fit_width_factor's 16th-84th percentile interval.")
    print(f"For reference, 0.85/√N: {', '.join(f'{0.85 / np.sqrt(n):.3f} (N={n})' for n in sizes)}; "
          f"a Student-t(4) 68% interval ±{stats.t(4).ppf(0.84):.2f} against ±1 for a normal one.")
    print(json.dumps({"benchmark": "width_factor_noise", "seed": args.seed, "repeats": repeats,
                      "n_draws": n_draws, "results": results}))


if __name__ == "__main__":
    main()
