"""Where GMRES(30) spends its time per iteration, ours against SciPy's, on one problem (CPU).

    OPENBLAS_NUM_THREADS=1 python scripts/bench_gmres_parts.py [--problem convdiff_300] [--iters 60] [--repeats 5]

Each part is timed the way the solver runs it: our matvec inside one jitted ``fori_loop`` of ``iters`` steps
(no dispatch per step), SciPy's as the same NumPy/BLAS calls its ``gmres`` makes (``S @ x``; its modified
Gram-Schmidt: ``col + 1`` dots and axpys for ``col = 0..29``, averaged over a cycle). Reported per iteration:
- ``full``: the whole solver, ``iters`` iterations with ``rtol = 0``;
- ``matvec``: ``A @ x`` (ours: the default format; SciPy: CSR);
- ``not_matvec``: ``full - matvec`` (orthogonalisation, Givens rotations, loop; for SciPy also split into
  ``ortho``, its MGS sweep, and ``rest``);
- ``ours_whole``: our solver with the layout of session 10 (one product with two columns over the whole
  ``(restart + 1) x n`` basis: ``gmres_loop(row_block=None, column_block=None, split_products=False)``);
  ``ours`` is the default layout (on the CPU: column blocks of ``--column-block`` columns, leading blocks of
  ``--row-block`` rows, split products).
Each part is reported as wall time (``*_ms_per_iter``) and as this process's CPU time (``*_cpu_ms_per_iter``),
which a shared, loaded host perturbs less (for one-threaded parts).
All figures are medians of ``repeats`` interleaved runs in one process: the ratios are the figures to quote.
Result: bench/results/krylov-cpu-gmres-parts.json (session 11: krylov-cpu-gmres-parts-s11b.json).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from jax import lax  # noqa: E402

import jaxlab.sparse as jsparse  # noqa: E402
from jaxlab import krylov  # noqa: E402
from jaxlab.core import save_benchmark  # noqa: E402
from jaxlab.krylov import _gmres, _solve  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from bench_krylov import problem  # noqa: E402


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problem", default="convdiff_300")
    ap.add_argument("--iters", type=int, default=60, help="iterations per timed run (a multiple of 30)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--row-block", default="auto", help="gmres_loop's row_block for the ours runs")
    ap.add_argument("--column-block", default="auto", help="gmres_loop's column_block for the ours runs")
    ap.add_argument("--json", default="bench/results/krylov-cpu-gmres-parts.json")
    args = ap.parse_args()
    rows_arg = args.row_block if args.row_block == "auto" else int(args.row_block)
    cols_arg = args.column_block if args.column_block == "auto" else int(args.column_block)
    ours_layout = {"row_block": rows_arg, "column_block": cols_arg}
    whole_layout = {"row_block": None, "column_block": None, "split_products": False}
    loadavg_start = list(os.getloadavg())
    m, iters = 30, args.iters
    S, _ = problem(args.problem)
    n = S.shape[0]
    rng = np.random.default_rng(0)
    b = rng.standard_normal(n)
    A = jsparse.from_scipy(S)
    bj = jnp.asarray(b)
    V = jnp.asarray(np.linalg.qr(rng.standard_normal((n, m + 1)))[0].T.copy())  # (m + 1, n) orthonormal rows
    Vnp = np.asarray(V)

    count = [0]
    spla.gmres(S, b, rtol=1e-8, restart=m, maxiter=20 * n, callback_type="pr_norm",
               callback=lambda *_: count.__setitem__(0, count[0] + 1))
    @jax.jit
    def matvecs(A, x):
        return lax.fori_loop(0, iters, lambda i, x: A @ x * 0.25, x)

    def solve_with(layout, rtol=0.0, maxiter=iters):
        """krylov.solve compiled ahead of time with gmres_loop's layout options set (the caches cleared
        first, so that no trace of the other variant is reused)."""
        orig = _solve.gmres_loop
        _solve.gmres_loop = functools.partial(_gmres.gmres_loop, **layout)
        try:
            jax.clear_caches()
            return jax.jit(lambda A, b: krylov.solve(A, b, method="gmres", restart=m, rtol=rtol,
                                                     maxiter=maxiter)).lower(A, bj).compile()
        finally:
            _solve.gmres_loop = orig

    def scipy_matvecs():
        x = b
        for _ in range(iters):
            x = S @ x * 0.25

    def scipy_mgs():  # the MGS sweep of scipy.sparse.linalg.gmres, one cycle per ``m`` iterations
        w = b.copy()
        for _ in range(iters // m):
            for col in range(m):
                for k in range(col + 1):
                    tmp = np.dot(Vnp[k], w)
                    w -= tmp * Vnp[k]

    def scipy_full():
        spla.gmres(S, b, rtol=0.0, atol=0.0, restart=m, maxiter=iters // m)

    check = {"scipy_iterations": count[0]}
    for name, layout in (("iterations", ours_layout), ("whole_iterations", whole_layout)):
        check[name] = int(solve_with(layout, 1e-8, 20 * n)(A, bj).iterations)
    ours_c, whole_c = solve_with(ours_layout), solve_with(whole_layout)
    fns = {("ours", "full"): lambda: jax.block_until_ready(ours_c(A, bj).x),
           ("ours", "matvec"): lambda: jax.block_until_ready(matvecs(A, bj)),
           ("ours_whole", "full"): lambda: jax.block_until_ready(whole_c(A, bj).x),
           ("scipy", "full"): scipy_full, ("scipy", "matvec"): scipy_matvecs, ("scipy", "ortho"): scipy_mgs}
    for f in fns.values():
        f()  # compile and warm up
    times = {key: [] for key in fns}
    cpu = {key: [] for key in fns}
    for _ in range(args.repeats):  # interleaved, so load changes hit every part alike
        for key, f in fns.items():
            c0 = time.process_time()
            times[key].append(_time(f) / iters)
            cpu[key].append((time.process_time() - c0) / iters)
    med = {key: 1e3 * statistics.median(t) for key, t in times.items()}
    med_cpu = {key: 1e3 * statistics.median(t) for key, t in cpu.items()}
    rec = {"problem": args.problem, "n": n, "nnz": int(S.nnz), "dtype": "float64", "restart": m, "iters": iters,
           "repeats": args.repeats, "row_block": args.row_block, "column_block": args.column_block, **check}
    for (who, part), v in med.items():
        rec[f"{who}_{part}_ms_per_iter"] = v
        rec[f"{who}_{part}_cpu_ms_per_iter"] = med_cpu[(who, part)]
    for who in ("ours", "ours_whole"):  # everything but the matvec: orthogonalisation, Givens, loop
        rec[f"{who}_not_matvec_ms_per_iter"] = med[(who, "full")] - med[("ours", "matvec")]
    rec["scipy_not_matvec_ms_per_iter"] = med[("scipy", "full")] - med[("scipy", "matvec")]
    rec["scipy_rest_ms_per_iter"] = rec["scipy_not_matvec_ms_per_iter"] - med[("scipy", "ortho")]
    for part in ("full", "matvec", "not_matvec"):
        rec[f"ratio_{part}"] = rec[f"ours_{part}_ms_per_iter"] / rec[f"scipy_{part}_ms_per_iter"]
    rec["ratio_whole_full"] = med[("ours_whole", "full")] / med[("scipy", "full")]
    rec["ratio_full_to_whole"] = med[("ours", "full")] / med[("ours_whole", "full")]
    rec["ratio_full_to_whole_cpu"] = med_cpu[("ours", "full")] / med_cpu[("ours_whole", "full")]
    rec["ratio_full_cpu"] = med_cpu[("ours", "full")] / med_cpu[("scipy", "full")]
    for k, v in rec.items():
        print(f"{k:>28}: {v:.4g}" if isinstance(v, float) else f"{k:>28}: {v}")
    path = save_benchmark("krylov-gmres-parts", [rec], args.json,
                          command=" ".join(["scripts/bench_gmres_parts.py", *sys.argv[1:]]),
                          openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                          loadavg_start=loadavg_start, loadavg=list(os.getloadavg()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
