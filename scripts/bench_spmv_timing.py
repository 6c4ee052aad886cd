"""Why two identical cases of bench_spmv differed (up to 1.28x in one run), and that the fix removes it.

The default (``format="auto"``) and its own format's case are the same arrays through the same compiled
program. This script builds both for one matrix and times them, several trials in one run, two ways:

* ``sequential``: bench_spmv's old scheme. Each case on its own, in ``--rounds`` rounds alternating with SciPy
  (order flipped every other round), one case after the other; the ratio of the two cases' medians of
  per-round ratios to SciPy.
* ``interleaved``: SciPy, the default and the case in every round (single calls), the order cycling through
  the six permutations; the median of the per-round ratios case / default.
* ``interleaved_long_samples``: the same with each sample repeating the call for about ``--sample-ms``
  (bench_spmv's new scheme): a sample then spans many scheduler time slices, so the share of it lost to other
  processes is about the same for the two cases of one round (the calls of a sample are dispatched back to
  back, as bench_spmv's ``inner`` loop does).
* ``interleaved_cpu_clock``: the same rounds with single calls timed by the process's CPU time
  (``time.process_time``), which a wait for a core does not advance (bench_spmv's scheme on CPU). Also
  recorded: each function's median CPU time over its fastest wall time (about 1 when the work is on one
  thread and the clock does not see the waits).

It also records how the single-call times are spread: the fraction of calls slower than 1.5x the fastest
call of the same function (SciPy's included). On a shared machine one call's time is bimodal (about 1x or
2x, as another process does or does not share the core for that call), which is what moves a median of 9
samples, and why a per-round ratio to SciPy does not cancel the load (each call is contended or not on its
own). Result: ``bench/results/sparse-cpu-timing-diagnosis.json``.

Usage:
  python scripts/bench_spmv_timing.py --cases poisson2d_1000:float32,mesh3d_200K:float32 --trials 4
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _t(fn, sync):
    t0 = time.perf_counter()
    sync(fn())
    return time.perf_counter() - t0


def _tc(fn, sync):
    c0 = time.process_time()
    sync(fn())
    return time.process_time() - c0


def _slow_fraction(ts):
    lo = min(ts)
    return sum(t > 1.5 * lo for t in ts) / len(ts)


def _placement(A):
    """(MiB, pointer mod 4 KiB, kB of transparent huge pages in the mapping) of each of A's buffers (Linux)."""
    regions, cur = [], None
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                p = line.split()
                if "-" in p[0] and len(p) >= 5:
                    lo, hi = (int(v, 16) for v in p[0].split("-"))
                    cur = [lo, hi, 0]
                    regions.append(cur)
                elif p[0] == "AnonHugePages:" and cur is not None:
                    cur[2] = int(p[1])
    except OSError:
        return None
    out = []
    for leaf in jax.tree_util.tree_leaves(A):
        ptr = leaf.unsafe_buffer_pointer()
        reg = next((r for r in regions if r[0] <= ptr < r[1]), None)
        out.append([round(leaf.nbytes / 2**20, 1), ptr % 4096, reg[2] if reg else None])
    return out


def factors(S, X, dtype, chosen, rounds):
    """Arrays or program? The default's arrays A0 and program P0 against a second build A1 and compilation P1,
    all four pairings, and XLA-made copies of A0 and A1 through P0, in the same rounds (the order rotated and reversed), timed by CPU time: median per-round
    ratio to A0/P0."""
    import jaxlab.sparse as jsparse

    A0, A1 = jsparse.from_scipy(S, "auto", dtype=dtype), jsparse.from_scipy(S, chosen, dtype=dtype)
    P0 = jax.jit(lambda A, v: jsparse.spmv(A, v)).lower(A0, X).compile()
    P1 = jax.jit(lambda A, v: jsparse.spmv(A, v)).lower(A1, X).compile()
    fresh = jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a + jnp.zeros((), a.dtype), t))
    A0c, A1c = fresh(A0), fresh(A1)  # XLA-made copies, at other addresses
    cases = {"A0/P0": (P0, A0), "A1/P0": (P0, A1), "A0/P1": (P1, A0), "A1/P1": (P1, A1),
             "A0copy/P0": (P0, A0c), "A1copy/P0": (P0, A1c)}
    keys = list(cases)
    ts = {k: [] for k in keys}
    for f, a in cases.values():
        jax.block_until_ready(f(a, X))
    for r in range(4 * rounds):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order if (r // len(keys)) % 2 == 0 else order[::-1]:
            f, a = cases[k]
            ts[k].append(_tc(lambda: f(a, X), jax.block_until_ready))
    ratio = {k: statistics.median(a / b for a, b in zip(ts[k], ts["A0/P0"])) for k in keys}
    return dict(ratio_to_A0_P0=ratio, placement={k: _placement(a) for k, a in
                                                 (("A0", A0), ("A1", A1), ("A0copy", A0c), ("A1copy", A1c))},
                median_cpu_ms={k: statistics.median(v) * 1e3 for k, v in ts.items()}, rounds=4 * rounds)


def diagnose(name, dtype, trials, rounds, sample_s):
    import jaxlab.sparse as jsparse

    S = jsparse.peer_matrix(name, dtype=dtype)
    x = np.random.default_rng(1).standard_normal(S.shape[1]).astype(dtype)
    X = jnp.asarray(x)
    chosen = jsparse.choose_format(jsparse.row_stats(S.indptr))
    jit_spmv = jax.jit(lambda A, v: jsparse.spmv(A, v))
    fns, texts = {}, {}
    for label, fmt in (("auto", "auto"), ("same", chosen)):
        A = jsparse.from_scipy(S, fmt, dtype=dtype)
        fc = jit_spmv.lower(A, X).compile()
        fns[label] = functools.partial(fc, A, X)
        texts[label] = "\n".join(line for line in fc.as_text().splitlines() if not line.startswith("HloModule"))
        err = np.linalg.norm(np.asarray(fns[label]()) - S @ x) / np.linalg.norm(S @ x)
        assert err < (1e-5 if dtype == np.float32 else 1e-12), (label, err)
    sp = lambda: S @ x  # noqa: E731
    block, nosync = jax.block_until_ready, (lambda y: y)
    out = []
    for trial in range(trials):
        seq, calls = {}, {"scipy": [], "auto": [], "same": []}
        for label in ("auto", "same"):  # the old scheme
            ratios = []
            for r in range(rounds):
                pair = [("scipy", sp, nosync), (label, fns[label], block)]
                t = {k: _t(f, s) for k, f, s in (pair if r % 2 == 0 else pair[::-1])}
                ratios.append(t[label] / t["scipy"])
                calls["scipy"].append(t["scipy"])
                calls[label].append(t[label])
            seq[label] = statistics.median(ratios)
        trio = [("scipy", sp, nosync), ("auto", fns["auto"], block), ("same", fns["same"], block)]
        orders = list(itertools.permutations(range(3)))
        to_auto = []
        for r in range(3 * rounds):  # the new scheme
            t = {}
            for i in orders[r % 6]:
                k, f, s = trio[i]
                t[k] = _t(f, s)
                calls[k].append(t[k])
            to_auto.append(t["same"] / t["auto"])
        inner = {k: max(1, int(np.ceil(sample_s / min(_t(f, s) for _ in range(3))))) for k, f, s in trio}
        to_auto_b = []
        for r in range(3 * rounds):  # the new scheme with samples of about sample_s each
            t = {}
            for i in orders[r % 6]:
                k, f, s = trio[i]
                t[k] = _t(lambda f=f, n=inner[k]: [f() for _ in range(n)][-1], s) / inner[k]
            to_auto_b.append(t["same"] / t["auto"])
        to_auto_c, cpu = [], {"scipy": [], "auto": [], "same": []}
        for r in range(3 * rounds):  # bench_spmv's scheme: the same rounds, timed by the process's CPU time
            t = {}
            for i in orders[r % 6]:
                k, f, s = trio[i]
                c0 = time.process_time()
                s(f())
                t[k] = time.process_time() - c0
                cpu[k].append(t[k])
            to_auto_c.append(t["same"] / t["auto"])
        rec = dict(matrix=name, dtype=np.dtype(dtype).name, format=chosen, trial=trial,
                   interleaved_cpu_clock_same_over_auto=statistics.median(to_auto_c),
                   median_cpu_ms={k: statistics.median(v) * 1e3 for k, v in cpu.items()},
                   median_cpu_over_fastest_wall={k: statistics.median(cpu[k]) / min(calls[k]) for k in cpu},
                   sequential_same_over_auto=seq["same"] / seq["auto"],
                   interleaved_same_over_auto=statistics.median(to_auto),
                   interleaved_long_samples_same_over_auto=statistics.median(to_auto_b),
                   calls_per_long_sample=inner,
                   slow_call_fraction={k: _slow_fraction(v) for k, v in calls.items()},
                   median_call_ms={k: statistics.median(v) * 1e3 for k, v in calls.items()},
                   min_call_ms={k: min(v) * 1e3 for k, v in calls.items()},
                   loadavg=os.getloadavg())
        print(f"{name} {rec['dtype']} ({chosen}) trial {trial}: same / auto sequential "
              f"{rec['sequential_same_over_auto']:.3f}, interleaved {rec['interleaved_same_over_auto']:.3f}, "
              f"interleaved {sample_s * 1e3:.0f} ms samples {rec['interleaved_long_samples_same_over_auto']:.3f}, "
              f"interleaved CPU clock {rec['interleaved_cpu_clock_same_over_auto']:.3f}; "
              f"calls > 1.5x fastest: " + ", ".join(f"{k} {v:.0%}" for k, v in rec["slow_call_fraction"].items())
              + f"; load {rec['loadavg'][0]:.1f}", flush=True)
        out.append(rec)
    fac = factors(S, X, dtype, chosen, rounds)
    print(f"{name} {np.dtype(dtype).name}: arrays or program, per-round ratio to the default's arrays and program: "
          + ", ".join(f"{k} {v:.3f}" for k, v in fac["ratio_to_A0_P0"].items())
          + f"; buffers (MiB, ptr mod 4K, THP kB): {fac['placement']}", flush=True)
    for rec in out:
        rec["same_program"] = texts["auto"] == texts["same"]
        rec["factors"] = fac
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", default="poisson2d_1000:float32,mesh3d_200K:float32")
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=9, help="rounds per case in the old scheme (x3 in the new)")
    ap.add_argument("--sample-ms", type=float, default=20.0)
    ap.add_argument("--json", default="bench/results/sparse-cpu-timing-diagnosis.json")
    args = ap.parse_args(argv)
    cases = [c.split(":") for c in args.cases.split(",")]
    if any(d == "float64" for _, d in cases):
        jax.config.update("jax_enable_x64", True)
    from jaxlab.core import save_benchmark

    load = os.getloadavg()
    records = []
    for name, d in cases:
        records += diagnose(name, np.dtype(d).type, args.trials, args.rounds, args.sample_ms / 1e3)
    seq = [r["sequential_same_over_auto"] for r in records]
    inter = [r["interleaved_same_over_auto"] for r in records]
    longs = [r["interleaved_long_samples_same_over_auto"] for r in records]
    cpus = [r["interleaved_cpu_clock_same_over_auto"] for r in records]
    print(f"identical cases, same / auto: sequential {min(seq):.3f}-{max(seq):.3f}, "
          f"interleaved {min(inter):.3f}-{max(inter):.3f}, interleaved with {args.sample_ms:.0f} ms samples "
          f"{min(longs):.3f}-{max(longs):.3f}, interleaved CPU clock {min(cpus):.3f}-{max(cpus):.3f}")
    path = save_benchmark("sparse-timing", records, path=args.json, command=" ".join(sys.argv),
                          loadavg_start=load, loadavg_end=os.getloadavg(),
                          sequential_range=[min(seq), max(seq)], interleaved_range=[min(inter), max(inter)],
                          interleaved_long_samples_range=[min(longs), max(longs)],
                          interleaved_cpu_clock_range=[min(cpus), max(cpus)], sample_ms=args.sample_ms)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
