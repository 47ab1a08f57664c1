"""Throughput of posterior sampling: zuko's RealNVP sampling vs `astro_galpost.model.sampling`.

Run ``python benchmarks/sampling_throughput.py`` (about 1-3 minutes on 2 CPU
cores). It builds the issue's architecture (4 core targets, 256-d context, 12
coupling layers with 2 × 128 hidden units: ``astro_galpost.model.flows.realnvp(4,
256)``), trains it briefly on synthetic correlated, heteroscedastic residuals
(so that shifts and scales are not trivial), and measures galaxies per second
for 1,000 posterior samples each:

(a) zuko's plain ``flow(context).sample((1000,))``;
(b) ``astro_galpost.model.sampling.FastCouplingSampler`` (per-galaxy context terms
    computed once, blocked per-sample work).

It also measures this machine's fp32 matmul rate and the FLOP floor it implies
for (b), checks that (a) and (b) give the same samples (same seed: max abs
difference; independent seeds: per-dimension KS and a multivariate energy-
distance permutation test), times the full model (`GalaxyPosterior`, core +
metallicity + lines) with the fast sampler off and on, and ends with one JSON
line of the figures.

Rates are wall-clock (galaxies / elapsed seconds, best of the repeats); with
one thread the CPU-time rate (galaxies / process CPU seconds) is printed too:
it is what the code achieves when it has the core to itself, and is less
disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import torch

from astro_galpost.model import sampling
from astro_galpost.model.flows import realnvp
from astro_galpost.model.sampling import FastCouplingSampler


# ----------------------------------------------------------------- helpers
def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    """Best wall time and best CPU time of ``repeats`` calls (seconds)."""
    walls, cpus = [], []
    for _ in range(repeats):
        _sync(device)
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def matmul_rate(shape, device, seconds=1.0):
    """Best fp32 GFLOP/s of (m × k) @ (k × n): (wall clock, process CPU time)."""
    m, k, n = shape
    a = torch.randn(m, k, device=device)
    b = torch.randn(k, n, device=device)
    flop = 2.0 * m * k * n
    reps = max(1, int(2e9 / flop)) if device.type == "cpu" else max(1, int(5e11 / flop))
    for _ in range(2):
        a @ b
    best, best_cpu, t_end = 0.0, 0.0, time.perf_counter() + seconds
    while True:
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, flop * reps / (time.perf_counter() - t0) / 1e9)
        best_cpu = max(best_cpu, flop * reps / max(1e-9, time.process_time() - c0) / 1e9)
        if time.perf_counter() > t_end:
            return best, best_cpu


def flops_per_galaxy(flow, n_samples, n_context, fast=True):
    """Multiply-add FLOPs (2 per MAC) of the hyper-networks for one galaxy and ``n_samples`` samples."""
    total = 0.0
    for t in flow.transform.transforms:
        linears = [m for m in t.hyper if hasattr(m, "weight")]
        n_a = int(t.mask.sum())
        first = linears[0].weight.shape[0]
        per_sample = 2 * first * (n_a if fast else n_a + n_context)
        per_sample += sum(2 * m.weight.shape[0] * m.weight.shape[1] for m in linears[1:])
        total += n_samples * per_sample + (2 * first * n_context if fast else 0)
    return total


def synthetic_residuals(n, n_context, features, generator):
    """Context vectors and correlated, heteroscedastic, skewed residuals that depend on them."""
    latent = torch.randn(n, 8, generator=generator)
    mix = torch.randn(8, n_context, generator=generator) / math.sqrt(8)
    context = torch.nn.functional.silu(latent @ mix) * 2
    chol = torch.tril(torch.randn(features, features, generator=generator) * 0.5) + torch.eye(features)
    width = torch.exp(0.5 * latent[:, :1])  # scale depends on the context
    noise = torch.randn(n, features, generator=generator) @ chol.T
    noise[:, 0] = noise[:, 0] + 0.5 * noise[:, 1] ** 2 - 0.5  # some non-Gaussianity
    return context, width * noise + 0.3 * latent[:, :features]


def train_briefly(flow, steps, n_context, features, device, batch=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    context, y = synthetic_residuals(20000, n_context, features, g)
    context, y = context.to(device), y.to(device)
    opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(y), (batch,), generator=g).to(device)
        loss = -flow(context[idx]).log_prob(y[idx]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    flow.eval()
    return context, losses


def energy_test(a, b, permutations=500, seed=0):
    """Multivariate energy distance between samples a, b (n × d) and its permutation p-value."""
    x = torch.cat([a, b]).double()
    d = torch.cdist(x, x)
    n, m = len(a), len(b)
    g = torch.Generator().manual_seed(seed)
    # indicator columns of the first sample: the observed split, then permutations
    w = torch.zeros(n + m, permutations + 1, dtype=torch.float64)
    w[:n, 0] = 1
    for k in range(permutations):
        w[torch.randperm(n + m, generator=g)[:n], k + 1] = 1
    r = d.sum(1)
    s_xx = (w * (d @ w)).sum(0)          # sum over pairs inside the first sample
    s_xy = w.T @ r - s_xx                # pairs across
    s_yy = r.sum() - 2 * (w.T @ r) + s_xx
    e = 2 * s_xy / (n * m) - s_xx / n**2 - s_yy / m**2
    p = (1 + (e[1:] >= e[0]).sum().item()) / (1 + permutations)
    return e[0].item(), p


def full_model_rates(device, n_galaxies, n_samples, repeats, epochs):
    from astro_galpost import GalaxyPosterior
    from astro_galpost.datasets import make_mock_catalog

    table = make_mock_catalog(1500 + n_galaxies, random_state=3)
    train, test = table[:1500], table[1500:]
    gp = GalaxyPosterior(n_ensemble=1, max_epochs=epochs, progress=False, random_state=0, device=str(device))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp.fit(train)
    fit_s = time.perf_counter() - t0
    results, outputs = {}, {}
    old = sampling.FAST_SAMPLING
    try:
        for flag in (False, True):
            sampling.FAST_SAMPLING = flag

            def run(flag=flag):
                outputs[flag] = gp.sample(test, n_samples=n_samples, random_state=5, batch_size=n_galaxies)

            wall, cpu = timed(run, device, repeats)
            results[flag] = (n_galaxies / wall, n_galaxies / cpu)
    finally:
        sampling.FAST_SAMPLING = old
    def values(flag, k):
        return np.asarray(outputs[flag][k].distribution.value, dtype=float)

    diff = max(
        float(np.nanmax(np.abs(values(True, k) - values(False, k))))
        for k in ("log_mstar", "log_sfr", "redshift", "log_mbh", "metallicity")
    )
    rel_lines = max(
        float(np.nanmax(np.abs(values(True, k) / values(False, k) - 1)))
        for k in ("halpha", "hbeta", "nii_6584", "oiii_5007")
    )
    return results, diff, rel_lines, fit_s, gp.flows_


# -------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU); default 1")
    parser.add_argument("--samples", type=int, default=1000, help="posterior samples per galaxy")
    parser.add_argument("--plain-batches", default="64,256", help="galaxies per call for zuko's sampling")
    parser.add_argument("--fast-batches", default="16,64,256", help="galaxies per call for the fast sampler")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per batch size (fast sampler)")
    parser.add_argument("--plain-repeats", type=int, default=2, help="timed calls per batch size (zuko)")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--full-galaxies", type=int, default=64, help="galaxies for the full-model timing (0: skip)")
    parser.add_argument("--full-epochs", type=int, default=2)
    parser.add_argument("--thread-scan", default="1,2", help="thread counts to time the fast sampler at ('' to skip)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device available")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    S = args.samples
    t_start = time.perf_counter()
    load = load_start = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3

    print(f"# device={device} torch={torch.__version__} threads={threads} cpu_count={os.cpu_count()} "
          f"loadavg(1,5,15 min)={load[0]:.2f},{load[1]:.2f},{load[2]:.2f}")

    # -- model: the architecture, briefly trained
    torch.manual_seed(0)
    n_context, features = 256, 4
    flow = realnvp(features, n_context).to(device)
    t0 = time.perf_counter()
    contexts, losses = train_briefly(flow, args.train_steps, n_context, features, device)
    print(f"# realnvp(4, 256): 12 coupling layers, hidden (128, 128); trained {args.train_steps} steps "
          f"on synthetic residuals in {time.perf_counter() - t0:.1f} s (NLL {losses[0]:.2f} -> {np.mean(losses[-20:]):.2f})")

    # -- matmul rate and FLOP floor (measured again after the timings; best of both)
    gemm = {"big": matmul_rate((2048, 2048, 2048), device), "block": matmul_rate((2048, 128, 128), device)}
    fast_flops = flops_per_galaxy(flow, S, n_context, fast=True)
    plain_flops = flops_per_galaxy(flow, S, n_context, fast=False)

    inference = torch.inference_mode()
    with inference:
        # -- (a) zuko, plain
        plain = {}
        for n in map(int, filter(None, args.plain_batches.split(","))):
            c = contexts[:n]
            flow(c).sample((8,))  # warm-up
            plain[n] = timed(lambda c=c: flow(c).sample((S,)), device, args.plain_repeats)
        # -- (b) fast sampler
        fast = {}
        for n in map(int, filter(None, args.fast_batches.split(","))):
            c = contexts[:n]
            FastCouplingSampler(flow).sample(c, 8)
            fast[n] = timed(lambda c=c: FastCouplingSampler(flow).sample(c, S), device, args.repeats)
        # matmul again (the machine may be shared: take the best of both)
        again = {"big": matmul_rate((2048, 2048, 2048), device, 0.5), "block": matmul_rate((2048, 128, 128), device, 0.5)}
        gemm = {k: tuple(max(x, y) for x, y in zip(gemm[k], again[k])) for k in gemm}
        gemm_big, gemm_block = gemm["big"][0], gemm["block"][0]
        matmul_gflops = max(gemm_big, gemm_block)
        matmul_gflops_cpu = max(gemm["big"][1], gemm["block"][1])
        floor = matmul_gflops * 1e9 / fast_flops
        floor_cpu = matmul_gflops_cpu * 1e9 / fast_flops

        # -- thread scaling of (b) at its best batch
        best_fast_n = max(fast, key=lambda n: n / fast[n][0])
        scan = {}
        if device.type == "cpu" and args.thread_scan:
            scan_n = min(best_fast_n, 64)
            c = contexts[:scan_n]
            for t in map(int, args.thread_scan.split(",")):
                scan[t] = timed(lambda t=t: FastCouplingSampler(flow).sample(c, S, threads=t), device, 2)

        # -- same samples? identical draws, then independent draws
        c = contexts[:4]
        torch.manual_seed(123)
        a = flow(c).sample((S,))
        torch.manual_seed(123)
        b = FastCouplingSampler(flow).sample(c, S)
        max_abs = float((a - b).abs().max())
        scale = float(a.abs().max())
        torch.manual_seed(456)
        b2 = FastCouplingSampler(flow).sample(c, S)
    from scipy import stats

    a_np, b_np = a.cpu().numpy(), b2.cpu().numpy()
    ks = [stats.ks_2samp(a_np[:, g, j], b_np[:, g, j]) for g in range(4) for j in range(features)]
    ks_max = max(k.statistic for k in ks)
    ks_pmin = min(k.pvalue for k in ks)
    energies = [energy_test(a[:, g].cpu(), b2[:, g].cpu(), seed=g) for g in range(4)]
    # a control with teeth: the same test against samples of a *different* galaxy
    control = energy_test(a[:, 0].cpu(), a[:, 1].cpu(), seed=9)

    # -- full model
    full = None
    if args.full_galaxies:
        full = full_model_rates(device, args.full_galaxies, S, max(1, args.repeats - 1), args.full_epochs)

    # ---------------------------------------------------------------- report
    def rate(n, t):
        return n / t

    plain_best_n = max(plain, key=lambda n: rate(n, plain[n][0]))
    plain_rate = rate(plain_best_n, plain[plain_best_n][0])
    fast_rate = rate(best_fast_n, fast[best_fast_n][0])
    cpu_rates = device.type == "cpu" and threads == 1
    print()
    print(f"FLOPs per galaxy per {S} samples: plain {plain_flops / 1e6:.0f} MFLOP, "
          f"fast {fast_flops / 1e6:.0f} MFLOP (context terms once per galaxy)")
    print(f"fp32 matmul (wall): 2048^3 {gemm_big:.0f} GFLOP/s, (2048x128)@(128x128) {gemm_block:.0f} GFLOP/s "
          f"-> floor for (b) = {matmul_gflops:.0f} GFLOP/s / {fast_flops / 1e6:.0f} MFLOP = {floor:.0f} galaxies/s")
    if cpu_rates:
        print(f"fp32 matmul (CPU time): 2048^3 {gemm['big'][1]:.0f}, block {gemm['block'][1]:.0f} GFLOP/s "
              f"-> CPU-time floor {floor_cpu:.0f} galaxies/s")
    print()
    header = f"{'sampler':<28}{'galaxies/call':>14}{'galaxies/s':>12}"
    header += f"{'(CPU-time)':>12}" if cpu_rates else ""
    print(header)
    print("-" * len(header))
    for name, table in (("(a) zuko flow(c).sample", plain), ("(b) FastCouplingSampler", fast)):
        for n, (wall, cpu) in table.items():
            line = f"{name:<28}{n:>14}{rate(n, wall):>12.1f}"
            line += f"{rate(n, cpu):>12.1f}" if cpu_rates else ""
            print(line)
    for t, (wall, _cpu) in scan.items():
        print(f"{'(b) threads=' + str(t):<28}{scan_n:>14}{rate(scan_n, wall):>12.1f}")
    if full:
        results, diff, rel_lines, fit_s, flows = full
        for flag, label in ((False, "full model, plain"), (True, "full model, fast")):
            line = f"{label:<28}{args.full_galaxies:>14}{results[flag][0]:>12.1f}"
            line += f"{results[flag][1]:>12.1f}" if cpu_rates else ""
            print(line)
    print()
    print(f"speedup (b)/(a) = {fast_rate / plain_rate:.2f} (best batches {best_fast_n} vs {plain_best_n}); "
          f"(b)/floor = {fast_rate / floor:.2f}")
    if cpu_rates:
        cpu_fast = max(rate(n, fast[n][1]) for n in fast)
        cpu_plain = max(rate(n, plain[n][1]) for n in plain)
        print(f"CPU-time rates: (a) {cpu_plain:.1f}, (b) {cpu_fast:.1f} galaxies/s, "
              f"speedup {cpu_fast / cpu_plain:.2f}, (b)/CPU-time floor {cpu_fast / floor_cpu:.2f}")
    print(f"same seed: max |(a) - (b)| = {max_abs:.2e} (samples up to {scale:.1f} in size)")
    print(f"independent seeds, 4 galaxies x {features} dims, {S} samples each: KS statistic max {ks_max:.3f}, "
          f"min p {ks_pmin:.3f}; energy-distance permutation p = "
          + ", ".join(f"{p:.2f}" for _, p in energies)
          + f" (control, two different galaxies: p = {control[1]:.3f})")
    if full:
        print(f"full model ({', '.join(f'{k}: {v}' for k, v in flows.items())}; fit {args.full_epochs} epochs "
              f"in {fit_s:.0f} s): fast/plain = {results[True][0] / results[False][0]:.2f}; same random_state: "
              f"max |diff| {diff:.1e} (core, metallicity), max relative diff {rel_lines:.1e} (line fluxes)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"# total {time.perf_counter() - t_start:.0f} s; loadavg at end {load[0]:.2f}")
    # with one thread, wall time well above CPU time means other processes had the core
    disturbed = bool(cpu_rates and matmul_gflops < 0.8 * matmul_gflops_cpu)
    if disturbed:
        print("# WARNING: wall-clock rates were disturbed by other processes (matmul wall rate "
              f"{matmul_gflops:.0f} vs CPU-time rate {matmul_gflops_cpu:.0f} GFLOP/s): the CPU-time figures are "
              "the consistent ones")

    figures = {
        "device": str(device),
        "threads": threads,
        "samples_per_galaxy": S,
        "plain_galaxies_per_s": round(plain_rate, 2),
        "fast_galaxies_per_s": round(fast_rate, 2),
        "plain_best_batch": plain_best_n,
        "fast_best_batch": best_fast_n,
        "speedup": round(fast_rate / plain_rate, 3),
        "matmul_gflops": round(matmul_gflops, 1),
        "matmul_block_gflops": round(gemm_block, 1),
        "fast_mflop_per_galaxy": round(fast_flops / 1e6, 1),
        "plain_mflop_per_galaxy": round(plain_flops / 1e6, 1),
        "floor_galaxies_per_s": round(floor, 1),
        "fraction_of_floor": round(fast_rate / floor, 3),
        "max_abs_diff_same_seed": max_abs,
        "max_abs_sample": scale,
        "ks_max": round(ks_max, 4),
        "ks_min_p": round(ks_pmin, 4),
        "energy_p_min": round(min(p for _, p in energies), 3),
        "energy_p_control": round(control[1], 3),
        "thread_scan_galaxies_per_s": {str(t): round(rate(scan_n, w), 2) for t, (w, _) in scan.items()},
        "loadavg_1min_start_end": [round(load_start[0], 2), round(load[0], 2)],
        "wall_clock_disturbed": disturbed,
    }
    if cpu_rates:
        cpu_plain = max(rate(n, plain[n][1]) for n in plain)
        cpu_fast = max(rate(n, fast[n][1]) for n in fast)
        figures["plain_galaxies_per_cpu_s"] = round(cpu_plain, 2)
        figures["fast_galaxies_per_cpu_s"] = round(cpu_fast, 2)
        figures["speedup_cpu_time"] = round(cpu_fast / cpu_plain, 3)
        figures["matmul_gflops_cpu_time"] = round(matmul_gflops_cpu, 1)
        figures["floor_galaxies_per_cpu_s"] = round(floor_cpu, 1)
        figures["fraction_of_floor_cpu_time"] = round(cpu_fast / floor_cpu, 3)
    if full:
        results, diff, rel_lines, _, _ = full
        figures["full_model_galaxies_per_s_plain"] = round(results[False][0], 2)
        figures["full_model_galaxies_per_s_fast"] = round(results[True][0], 2)
        figures["full_model_speedup"] = round(results[True][0] / results[False][0], 3)
        figures["full_model_max_abs_diff"] = diff
        if cpu_rates:
            figures["full_model_galaxies_per_cpu_s_plain"] = round(results[False][1], 2)
            figures["full_model_galaxies_per_cpu_s_fast"] = round(results[True][1], 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
