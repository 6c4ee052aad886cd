"""Which n of k > n tangents the projection keeps: per-sample cosines to the gradient, float32.

For each n, k > n and sampler, ``--samples`` sets of k tangents (``fwdgrad.sample_tangents``, float32) and
the gradient ``g = ones(n)``: the cosine of ``g`` and the estimate for the plain mean and for the projection
with each selection (``first_n``, ``max``, ``min``, ``pivoted``). Since the k tangents span R^n, every
selection gives ``g`` in exact arithmetic (cosine 1); what differs is float32 rounding (a nearly dependent
kept subset: its ridged Gram solve shortens the estimate) and, for Rademacher tangents, exactly dependent
kept subsets (the first n sign vectors repeat with sizable probability for small n). Per cell it records
each estimator's mean and minimum cosine and, for the projections, the number of samples whose cosine is
below the mean's. A zero estimate counts as cosine 0 (with ``g = ones``, the Rademacher tangents
``+-(1, -1)`` of n = 2 have ``d = 0``: a kept subset of only those gives 0).

Usage: PYTHONPATH=. python scripts/bench_fwdgrad_selection.py [--dims 2,4,8,16 --ks 16,64,256 --samples 200]
       Writes bench/results/fwdgrad/selection-<backend>.json (``--json`` to choose).
       ``--time 16:256,128:256 --samples 1000`` times the coefficients instead (first_n against pivoted, the
       median of ``--repeats`` calls after a warm-up): bench/results/fwdgrad/selection-time-<backend>.json.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import fwdgrad
from jaxlab.core import after, save_benchmark

SELECTIONS = ("first_n", "max", "min", "pivoted")


def cosines(n: int, k: int, sampler: str, samples: int, seed: int) -> np.ndarray:
    """(samples, 1 + len(SELECTIONS)) cosines: the mean, then the projection with each selection."""
    g = jnp.ones(n, jnp.float32)
    params = jnp.zeros(n, jnp.float32)

    def one(key):
        V = fwdgrad.sample_tangents(key, params, k, sampler=sampler)
        d, gram = V @ g, V @ V.T
        ests = [(d / k) @ V]
        for s in SELECTIONS:  # each solve waits for the previous one: batched LAPACK calls side by side
            # deadlock XLA CPU's 2-thread pool (jaxlib 0.10.2)
            c = fwdgrad.aggregation_coefficients(d, "projection", gram=after(gram, ests[-1]), leaf_sizes=[n],
                                                 selection=s)
            ests.append(c @ V)
        e = jnp.stack(ests)
        norm = jnp.linalg.norm(e, axis=1) * jnp.linalg.norm(g)
        return jnp.where(norm > 0, e @ g / jnp.where(norm > 0, norm, 1.0), 0.0)  # a zero estimate: cosine 0

    keys = jax.random.split(jax.random.key(seed), samples)
    return np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)


def time_coefficients(n: int, k: int, batch: int, selection: str, repeats: int) -> dict:
    """Median seconds of the jitted, vmapped projection coefficients of ``batch`` random (k, n) tangent sets."""
    rng = np.random.default_rng(0)
    V = rng.standard_normal((batch, k, n)).astype(np.float32)
    d, gram = V @ np.ones(n, np.float32), V @ V.transpose(0, 2, 1)
    f = jax.jit(jax.vmap(lambda d, g: fwdgrad.aggregation_coefficients(d, "projection", gram=g, leaf_sizes=[n],
                                                                      selection=selection)))
    jax.block_until_ready(f(d, gram))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(d, gram))
        times.append(time.perf_counter() - t0)
    return {"n": n, "k": k, "batch": batch, "selection": selection, "median_s": float(np.median(times)),
            "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--dims", default="2,4,8,16")
    ap.add_argument("--ks", default="16,64,256")
    ap.add_argument("--samplers", default="normal,rademacher")
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--time", default=None, help="n:k[,n:k...]: time the coefficients instead (batch --samples)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.time:
        load_before = os.getloadavg()
        recs = [time_coefficients(int(c.split(":")[0]), int(c.split(":")[1]), args.samples, s, args.repeats)
                for c in args.time.split(",") for s in ("first_n", "pivoted")]
        for r in recs:
            print(r)
        path = save_benchmark("fwdgrad_selection_time", recs,
                              args.json or f"bench/results/fwdgrad/selection-time-{jax.default_backend()}.json",
                              command=f"PYTHONPATH=. python scripts/bench_fwdgrad_selection.py --time {args.time} "
                                      f"--samples {args.samples} --repeats {args.repeats}",
                              load_average_before=load_before, load_average_after=os.getloadavg())
        print(f"wrote {path}")
        return
    dims, ks = [int(x) for x in args.dims.split(",")], [int(x) for x in args.ks.split(",")]
    load_before = os.getloadavg()
    start = time.perf_counter()
    records = []
    for sampler in args.samplers.split(","):
        for n in dims:
            for k in ks:
                if k <= n:
                    continue
                cos = cosines(n, k, sampler, args.samples, args.seed)
                rec = {"sampler": sampler, "n": n, "k": k, "samples": args.samples,
                       "mean_cosine_mean": float(cos[:, 0].mean()), "mean_cosine_min": float(cos[:, 0].min())}
                for j, s in enumerate(SELECTIONS, 1):
                    rec[f"{s}_cosine_mean"] = float(cos[:, j].mean())
                    rec[f"{s}_cosine_min"] = float(cos[:, j].min())
                    rec[f"{s}_samples_below_mean"] = int(np.sum(cos[:, j] < cos[:, 0] - 1e-6))
                records.append(rec)
                print(f"{sampler:10s} n={n:3d} k={k:4d}  min cos: mean {rec['mean_cosine_min']:.4f}  " +
                      "  ".join(f"{s} {rec[f'{s}_cosine_min']:.6f} ({rec[f'{s}_samples_below_mean']} < mean)"
                                for s in SELECTIONS))
    summary = {s: {"min_cosine": min(r[f"{s}_cosine_min"] for r in records),
                   "samples_below_mean": sum(r[f"{s}_samples_below_mean"] for r in records)} for s in SELECTIONS}
    path = save_benchmark("fwdgrad_selection", records,
                          args.json or f"bench/results/fwdgrad/selection-{jax.default_backend()}.json",
                          command="PYTHONPATH=. python scripts/bench_fwdgrad_selection.py " + " ".join(
                              f"--{a} {getattr(args, a)}" for a in ("dims", "ks", "samplers", "samples", "seed")),
                          load_average_before=load_before, load_average_after=os.getloadavg(),
                          wall_s=time.perf_counter() - start, summary=summary)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
