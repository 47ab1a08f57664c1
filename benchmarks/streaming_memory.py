"""Peak memory and speed of ``galpost predict`` (streaming) against catalog length.

Generates Parquet catalogs of the requested lengths by replicating a mock
catalog with numpy noise, fits (or loads) a small model, then runs
``galpost predict`` once per catalog in a fresh process, measuring that
process's peak resident memory (``os.wait4``'s ``ru_maxrss``) and its speed.
Streaming inference should need the same memory for every length: the goal is
a ratio of peak memories below 1.2.

Usage::

    python benchmarks/streaming_memory.py --rows 100000 1000000 --n-samples 100

The last line printed is a JSON object: ``peak_rss_mb_<rows>``,
``rows_per_s_<rows>`` (the CLI's own rate, without start-up) and
``wall_s_<rows>`` per catalog, and ``ratio`` (largest over smallest peak).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def label(n: int) -> str:
    """100000 → '1e5', 200000 → '2e5', 12345 → '12345'."""
    mantissa, exponent = f"{n:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}" if "." not in mantissa else str(n)


def make_catalog(path: Path, n_rows: int, base, *, chunk: int = 100_000, seed: int = 0) -> None:
    """Write ``n_rows`` rows resampled from ``base`` with magnitude noise, chunk by chunk."""
    from astropy.table import QTable

    from astro_galpost.io import open_chunked_writer

    rng = np.random.default_rng(seed)
    writer = open_chunked_writer(path)
    mags = [c for c in base.colnames if c.startswith("modelMag_")]
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        rows = base[rng.integers(0, len(base), n)]
        table = QTable(rows, copy=False)
        table["objID"] = np.arange(start, start + n, dtype=np.int64)
        for name in mags:
            err = np.asarray(getattr(table[f"modelMagErr_{name[-1]}"], "value", table[f"modelMagErr_{name[-1]}"]))
            table[name] = table[name] + rng.normal(0.0, 1.0, n) * err * table[name].unit
        table["ra"] = rng.uniform(0, 360, n) * table["ra"].unit
        writer.write(table)
        writer.checkpoint()
    writer.close(overwrite=True)


def fit_model(path: Path, seed: int = 0) -> None:
    from astro_galpost import GalaxyPosterior
    from astro_galpost.datasets import make_mock_catalog

    train = make_mock_catalog(3000, random_state=seed + 1)
    gp = GalaxyPosterior(n_ensemble=1, representation=64, hidden=64, max_epochs=5, progress=False, random_state=seed)
    gp.fit(train)
    gp.save(path, overwrite=True)


def run_predict(model: Path, catalog: Path, output: Path, args) -> dict:
    cmd = [sys.executable, "-m", "astro_galpost.cli", "predict", str(model), str(catalog), str(output),
           "--n-samples", str(args.n_samples), "--seed", "0", "--batch-size", str(args.batch_size),
           "--no-progress", "--overwrite", "--no-resume"]
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"galpost predict failed ({code}):\n{err[-3000:]}")
    match = re.search(r"\(([\d.]+) galaxies/s", out)
    return {"peak_rss_mb": usage.ru_maxrss / 1024.0,  # Linux reports KiB
            "wall_s": wall, "rows_per_s": float(match.group(1)) if match else float("nan"), "stdout": out.strip()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="catalog lengths")
    parser.add_argument("--n-samples", type=int, default=100, help="posterior samples per galaxy")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--chunk-size", type=int, default=None, help="default: the CLI's (16 x batch size)")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the predict process")
    parser.add_argument("--model", type=Path, default=None, help="saved model to use (default: fit a small one)")
    parser.add_argument("--workdir", type=Path, default=None, help="where catalogs go (default: a temp folder)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from astropy.table import QTable

    from astro_galpost.datasets import make_mock_catalog

    tmp = tempfile.TemporaryDirectory(prefix="galpost-bench-") if args.workdir is None else None
    workdir = Path(tmp.name) if tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model is None:
        model = workdir / "model"
        t0 = time.perf_counter()
        fit_model(model)
        print(f"fitted a small model (9 targets) in {time.perf_counter() - t0:.1f} s", flush=True)
    base = QTable(make_mock_catalog(5000, random_state=7))
    base.meta = {}

    results = {}
    for n in args.rows:
        catalog = workdir / f"catalog_{label(n)}.parquet"
        t0 = time.perf_counter()
        if not catalog.exists():
            make_catalog(catalog, n, base)
        size = catalog.stat().st_size / 1e6
        print(f"catalog of {n} rows: {size:.0f} MB (made in {time.perf_counter() - t0:.1f} s)", flush=True)
        results[n] = run_predict(model, catalog, workdir / f"out_{label(n)}.parquet", args)
        print(f"  {results[n]['stdout']}", flush=True)
        (workdir / f"out_{label(n)}.parquet").unlink()

    print(f"\n{'rows':>10} {'peak RSS (MB)':>14} {'wall (s)':>9} {'rows/s (CLI)':>13}")
    for n, r in results.items():
        print(f"{n:>10} {r['peak_rss_mb']:>14.0f} {r['wall_s']:>9.1f} {r['rows_per_s']:>13.0f}")
    summary: dict = {"n_samples": args.n_samples, "batch_size": args.batch_size,
                     "chunk_size": args.chunk_size or 16 * args.batch_size, "threads": args.threads}
    for n, r in results.items():
        summary[f"peak_rss_mb_{label(n)}"] = round(r["peak_rss_mb"], 1)
    for n, r in results.items():
        summary[f"rows_per_s_{label(n)}"] = round(r["rows_per_s"], 1)
        summary[f"wall_s_{label(n)}"] = round(r["wall_s"], 1)
    peaks = [r["peak_rss_mb"] for r in results.values()]
    summary["ratio"] = round(max(peaks) / min(peaks), 3)
    print(json.dumps(summary))
    if tmp:
        tmp.cleanup()
    return summary


if __name__ == "__main__":
    main()
