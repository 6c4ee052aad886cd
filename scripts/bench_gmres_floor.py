"""The memory-traffic floor of one GMRES(30) iteration on this host (CPU), and what our passes reach.

    OPENBLAS_NUM_THREADS=1 python scripts/bench_gmres_floor.py [--n 90000] [--restart 30] [--repeats 7]

A GMRES iteration is a matvec plus passes over the basis (``(m + 1) x n`` floats). Classical Gram-Schmidt
needs at least two passes per iteration (project, then update: the update's coefficients depend on the whole
projection), over the ``j + 1`` rows built so far: ``(m + 2) / 2`` rows on average over a cycle. SciPy's
modified Gram-Schmidt touches each row twice too (one dot, one axpy), but the second touch of a row
(720 KB at n = 90000) comes from the 2 MiB L2, so it moves one pass from memory (``one_pass_avg_rows``).
This script measures, on an array the size of the basis:
- ``numpy_sum``: read bandwidth, one thread (``V.sum()``), and two threads (two Python threads, one half each:
  NumPy releases the GIL);
- ``xla_sum``: ``jnp.sum(V)`` in a jitted ``fori_loop`` (no dispatch per step);
- ``xla_project`` / ``xla_update``: the two passes our solver makes, ``V @ W`` with ``W`` of shape
  ``(n, 2)`` and ``C @ V`` with ``C`` of shape ``(2, m + 1)``, on all ``m + 1`` rows and on the average
  ``(m + 2) / 2`` leading rows;
and reports the floor ``2 * rows * n * itemsize / bandwidth`` per iteration for both row counts.
Run it twice to compare XLA with one thread: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``.
Result: bench/results/krylov-cpu-gmres-floor.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from jaxlab.core import save_benchmark  # noqa: E402


def _median(fn, repeats: int, per: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) / per)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=90000)
    ap.add_argument("--restart", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=50, help="passes per timed run")
    ap.add_argument("--json", default="bench/results/krylov-cpu-gmres-floor.json")
    args = ap.parse_args()
    n, m, steps = args.n, args.restart, args.steps
    full, avg = m + 1, (m + 2) // 2
    rng = np.random.default_rng(0)
    Vnp = rng.standard_normal((full, n))
    V = jnp.asarray(Vnp)
    W = jnp.asarray(rng.standard_normal((n, 2)))
    C = jnp.asarray(rng.standard_normal((2, full)))
    itemsize = Vnp.itemsize
    rec: dict = {"n": n, "restart": m, "dtype": "float64", "basis_mb": full * n * itemsize / 1e6,
                 "rows_full": full, "rows_avg": avg, "steps": steps, "repeats": args.repeats,
                 "xla_flags": os.environ.get("XLA_FLAGS", "")}

    def np_sum1():
        for _ in range(steps):
            Vnp.sum()

    halves = [Vnp[:, : n // 2], Vnp[:, n // 2:]]

    def np_sum2():
        def work(h):
            for _ in range(steps):
                h.sum()
        ts = [threading.Thread(target=work, args=(h,)) for h in halves]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    def loop(body, init):
        f = jax.jit(lambda V, W, C, x: lax.fori_loop(0, steps, lambda i, x: body(V, W, C, x), x))
        return lambda: jax.block_until_ready(f(V, W, C, init))

    xla = {
        "xla_sum": loop(lambda V, W, C, x: 1.0 + 1e-9 * jnp.sum(V * x), jnp.ones(())),
        "xla_project_full": loop(lambda V, W, C, x: x + V @ (W + x[0, 0]), jnp.zeros((full, 2))),
        "xla_project_avg": loop(lambda V, W, C, x: x + V[:avg] @ (W + x[0, 0]), jnp.zeros((avg, 2))),
        "xla_update_full": loop(lambda V, W, C, x: x + (C + x[0, 0]) @ V, jnp.zeros((2, n))),
        "xla_update_avg": loop(lambda V, W, C, x: x + (C[:, :avg] + x[0, 0]) @ V[:avg], jnp.zeros((2, n))),
    }
    fns = {"numpy_sum_1thread": np_sum1, "numpy_sum_2threads": np_sum2, **xla}
    for name, fn in fns.items():
        rec[f"{name}_ms"] = 1e3 * _median(fn, args.repeats, steps)
    gb = full * n * itemsize / 1e9
    for name in ("numpy_sum_1thread", "numpy_sum_2threads", "xla_sum"):
        rec[f"{name}_gb_s"] = gb / (rec[f"{name}_ms"] / 1e3)
    for name in ("project", "update"):
        rec[f"xla_{name}_full_gb_s"] = gb / (rec[f"xla_{name}_full_ms"] / 1e3)
        rec[f"xla_{name}_avg_gb_s"] = gb * avg / full / (rec[f"xla_{name}_avg_ms"] / 1e3)
    best = max(rec["numpy_sum_1thread_gb_s"], rec["xla_sum_gb_s"])
    rec["one_pass_avg_rows_mb"] = avg * n * itemsize / 1e6
    rec["floor_one_pass_avg_rows_1thread_ms"] = rec["one_pass_avg_rows_mb"] / 1e3 / best * 1e3
    for rows, tag in ((full, "full"), (avg, "avg")):
        mb = 2 * rows * n * itemsize / 1e6
        rec[f"two_pass_{tag}_rows_mb"] = mb
        rec[f"floor_{tag}_rows_1thread_ms"] = mb / 1e3 / best * 1e3
        rec[f"floor_{tag}_rows_2threads_ms"] = mb / 1e3 / rec["numpy_sum_2threads_gb_s"] * 1e3
        rec[f"measured_two_pass_{tag}_rows_ms"] = rec[f"xla_project_{tag}_ms"] + rec[f"xla_update_{tag}_ms"]
    for k, v in rec.items():
        print(f"{k:>34}: {v:.4g}" if isinstance(v, float) else f"{k:>34}: {v}")
    path = save_benchmark("krylov-gmres-floor", [rec], args.json,
                          command=" ".join(["scripts/bench_gmres_floor.py", *sys.argv[1:]]),
                          openblas_num_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                          loadavg=list(os.getloadavg()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
