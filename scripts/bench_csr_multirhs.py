"""CSR times a dense matrix (several right-hand sides) against dense ``W @ X``, before and after the fix.

The tsprune benchmark found ``jaxlab.sparse``'s CSR product non-monotone in sparsity: a magnitude-pruned
512 x 128 kernel times 32 x 96 = 3072 columns was 1.67x faster than dense at s = 0.9 but 0.17x at s = 0.95.
The cause is the CSR product's switch between its two XLA forms: unrolled over the position in a row when the
padding ``rows x longest row / nnz`` is at most 2, else a ``segment_sum``. Pruning to 0.95 makes the rows
uneven enough (2.2x padding) to cross the switch, and with several right-hand sides the segment_sum is a
scatter-add of (nnz, k) rows, many times slower than the gathers of the unrolled form. With several
right-hand sides the product now stays unrolled up to 8x padding and rows of 128 entries
(``jaxlab.sparse._csr.csr_unrolled``).

This script times, interleaved in each round (order flipped every other round): dense, CSR with the rule
in the code (``csr``), and CSR with the old rule forced (``csr_old_rule``), for magnitude-pruned Gaussian
kernels; each call by wall time and by the process's CPU time (XLA's dense product may use both cores, which
the CPU time adds up; the wait for a core on a loaded machine does not count in it). Each product is checked against dense first. Result: ``bench/results/sparse-cpu-csr-multirhs.json``.

Usage:
  python scripts/bench_csr_multirhs.py                       # 512x128 and 128x512, s 0.9/0.95/0.99, k 96/3072
  python scripts/bench_csr_multirhs.py --shapes 512x128 --sparsities 0.95 --columns 3072 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def pruned(shape, s, seed=0):
    """A Gaussian matrix with its smallest-magnitude fraction ``s`` of entries set to zero."""
    w = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return np.where(np.abs(w) >= np.quantile(np.abs(w), s), w, 0).astype(np.float32)


def _compile_csr(A, x, old_rule):
    from jaxlab.sparse import _csr

    saved = _csr._UNROLL_MAX_WIDTH_MULTI, _csr._UNROLL_MAX_WASTE_MULTI
    if old_rule:
        _csr._UNROLL_MAX_WIDTH_MULTI, _csr._UNROLL_MAX_WASTE_MULTI = _csr._UNROLL_MAX_WIDTH, _csr._UNROLL_MAX_WASTE
    try:  # the rule is read at trace time, so it is fixed in the compiled program
        return jax.jit(lambda a, v: a @ v).lower(A, x).compile()
    finally:
        _csr._UNROLL_MAX_WIDTH_MULTI, _csr._UNROLL_MAX_WASTE_MULTI = saved


def bench(shape, s, k, rounds):
    import scipy.sparse as sp

    import jaxlab.sparse as jsparse
    from jaxlab.sparse._csr import csr_unrolled

    w = pruned(shape, s)
    A = jsparse.from_scipy(sp.csr_matrix(w), format="csr")
    D = jnp.asarray(w)
    x = jax.random.normal(jax.random.key(k), (shape[1], k), jnp.float32)
    ref = np.asarray(D @ x)
    fns = {"dense": (jax.jit(lambda a, v: a @ v).lower(D, x).compile(), D),
           "csr": (_compile_csr(A, x, False), A), "csr_old_rule": (_compile_csr(A, x, True), A)}
    err = {}
    for name, (f, a) in fns.items():
        err[name] = float(np.max(np.abs(np.asarray(f(a, x)) - ref)) / np.max(np.abs(ref)))
        if err[name] > 1e-4:
            raise AssertionError(f"{name}: {shape} s={s} k={k} differs from dense by {err[name]:.1e}")
    ts = {name: [] for name in fns}
    cpu = {name: [] for name in fns}
    order = list(fns)
    for r in range(rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            f, a = fns[name]
            c0, t0 = time.process_time(), time.perf_counter()
            jax.block_until_ready(f(a, x))
            ts[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = {name: statistics.median(v) for name, v in ts.items()}
    cmed = {name: statistics.median(v) for name, v in cpu.items()}
    m, nnz, width = shape[0], A.nnz, A.meta.max_row_length
    rec = dict(shape=list(shape), sparsity=s, columns=k, nnz=nnz, max_row=width, padding=width * m / max(nnz, 1),
               unrolled_new_rule=csr_unrolled(m, nnz, width, True),
               unrolled_old_rule=csr_unrolled(m, nnz, width, False),
               rel_error=err, rounds=rounds, loadavg=os.getloadavg(),
               **{f"{name}_ms": v * 1e3 for name, v in med.items()},
               csr_speedup_over_dense=med["dense"] / med["csr"],
               csr_old_rule_speedup_over_dense=med["dense"] / med["csr_old_rule"],
               **{f"{name}_cpu_ms": v * 1e3 for name, v in cmed.items()},
               csr_speedup_over_dense_cpu=cmed["dense"] / cmed["csr"],
               old_rule_over_new_rule_cpu=cmed["csr_old_rule"] / cmed["csr"])
    print(f"{shape[0]}x{shape[1]} s={s} k={k:5d} max row {width:3d} padding {rec['padding']:.2f}: dense "
          f"{med['dense'] * 1e3:8.3f} ms, csr {med['csr'] * 1e3:8.3f} ms ({rec['csr_speedup_over_dense']:.2f}x "
          f"dense), old rule {med['csr_old_rule'] * 1e3:8.3f} ms ({rec['csr_old_rule_speedup_over_dense']:.2f}x); "
          f"CPU time: csr {rec['csr_speedup_over_dense_cpu']:.2f}x dense, old rule / new "
          f"{rec['old_rule_over_new_rule_cpu']:.1f}x",
          flush=True)
    return rec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shapes", default="512x128,128x512")
    ap.add_argument("--sparsities", default="0.9,0.95,0.99")
    ap.add_argument("--columns", default="96,3072", help="right-hand sides (tsprune: batch x 96 tokens)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", default="bench/results/sparse-cpu-csr-multirhs.json")
    args = ap.parse_args(argv)
    from jaxlab.core import save_benchmark

    load = os.getloadavg()
    records = [bench(tuple(int(v) for v in sh.split("x")), float(s), int(k), args.rounds)
               for sh in args.shapes.split(",") for s in args.sparsities.split(",") for k in args.columns.split(",")]
    path = save_benchmark("sparse-csr-multirhs", records, path=args.json, command=" ".join(sys.argv),
                          loadavg_start=load, loadavg_end=os.getloadavg(), timing="interleaved, medians of wall and of process CPU time")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
