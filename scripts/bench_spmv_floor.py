"""The XLA floor of SpMV on CPU: the simplest XLA program moving a matrix's bytes, against SciPy in the same rounds.

Issue 13 item 11 asks the default format to be at most 1.0x SciPy CSR on every benchmark matrix. This script asks
whether that is reachable in XLA at all. It times, in rounds whose order cycles:

* ``scipy``: SciPy CSR on the matrix;
* ``scipy_floor``: SciPy CSR on the *floor matrix*: the matrix's first ``16 * 64 * (nnz // (16 * 64))`` stored entries
  (columns and values unchanged) cut into rows of exactly 16, so no row is short or long;
* ``xla_floor``: the same floor matrix as column-major ELL of width 16, product ``y = sum_j v[j] * x[c[j]]``
  unrolled over the 16 columns: one XLA loop fusion, no padding, no mask, no permutation, no intermediate
  (the form ``_ell.ell_matvec`` uses, the fastest XLA form measured);
* ``xla_floor_sliced``: the same unrolled sum over SELL-P's layout, ``(rows / 64, 16, 64)`` blocks;
  ``xla_floor_sliced_reduce``: ``jnp.sum(v * x[c], axis=1)`` over those blocks (the sorted SELL-P form);
* ``xla_floor_split<k>``: the same, its rows cut into ``k`` independent ops whose results are concatenated
  (can XLA's runtime run them on separate cores?);
* ``default``: ``jaxlab.sparse.from_scipy(S)`` (``format="auto"``), jitted.

Each call is timed by the process's CPU time and by wall time (both recorded; ``bench_spmv.py`` reports CPU time).
Ratios are medians of per-round ratios to ``scipy`` (or to ``scipy_floor`` for ``xla_floor*``:
``floor_ratio``). If ``xla_floor`` loses to ``scipy_floor`` the matrix's bytes cannot be moved by XLA as fast
as SciPy moves them, whatever the format.

Usage:
  python scripts/bench_spmv_floor.py --matrices powerlaw_2M_d16,random_1M_r8 --dtypes float32,float64 \
      --repeats 11 --json bench/results/sparse-cpu-floor.json
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
import scipy.sparse as sp  # noqa: E402

WIDTH = 16
SLICE = 64


def _gather(x, c):
    return x.at[c].get(mode="promise_in_bounds")


def floor_matvec(v, c, x):
    """``sum_j v[j] * x[c[j]]`` over column-major ``(WIDTH, rows)`` arrays, unrolled: one loop fusion."""
    y = v[0] * _gather(x, c[0])
    for j in range(1, v.shape[0]):
        y = y + v[j] * _gather(x, c[j])
    return y


def floor_sliced(v, c, x):
    """The same product over ``(rows / SLICE, WIDTH, SLICE)`` blocks (SELL-P's layout): each column of a slice is
    ``SLICE`` contiguous entries, so the fusion reads one block at a time instead of WIDTH far-apart streams."""
    y = v[:, 0, :] * _gather(x, c[:, 0, :])
    for j in range(1, v.shape[1]):
        y = y + v[:, j, :] * _gather(x, c[:, j, :])
    return y.reshape(-1)


def floor_sliced_reduce(v, c, x):
    """``sum(v * x[c], axis=1)`` over the sliced blocks: XLA materialises the products before reducing."""
    return jnp.sum(v * _gather(x, c), axis=1).reshape(-1)


def floor_split(k):
    def f(v, c, x):
        m = v.shape[1]
        cuts = [m * i // k for i in range(k + 1)]
        return jnp.concatenate([floor_matvec(v[:, a:b], c[:, a:b], x) for a, b in zip(cuts, cuts[1:])])

    return f


def bench(name, dtype, repeats, splits):
    import jaxlab.sparse as jsparse

    S = jsparse.peer_matrix(name, dtype=dtype)
    n_cols = S.shape[1]  # type: ignore[index]  # scipy's stubs type shape as optional
    x = np.random.default_rng(1).standard_normal(n_cols).astype(dtype)
    k = (S.nnz // (WIDTH * SLICE)) * WIDTH * SLICE
    m2 = k // WIDTH
    F = sp.csr_matrix((S.data[:k], S.indices[:k], np.arange(0, k + 1, WIDTH)), shape=(m2, n_cols))
    fv = jnp.asarray(S.data[:k].reshape(m2, WIDTH).T.copy())
    fc = jnp.asarray(S.indices[:k].reshape(m2, WIDTH).T.copy())
    sv = jnp.asarray(S.data[:k].reshape(m2 // SLICE, SLICE, WIDTH).transpose(0, 2, 1).copy())
    sc = jnp.asarray(S.indices[:k].reshape(m2 // SLICE, SLICE, WIDTH).transpose(0, 2, 1).copy())
    X = jnp.asarray(x)
    A = jsparse.from_scipy(S, dtype=dtype)
    default = jax.jit(lambda A, v: A @ v).lower(A, X).compile()
    cases = {"scipy": (lambda: S @ x, S @ x), "scipy_floor": (lambda: F @ x, F @ x)}
    xla = {"xla_floor": floor_matvec, **{f"xla_floor_split{s}": floor_split(s) for s in splits}}
    for label, f in xla.items():
        g = jax.jit(f).lower(fv, fc, X).compile()
        cases[label] = ((lambda g=g: jax.block_until_ready(g(fv, fc, X))), F @ x)
    for label, f in (("xla_floor_sliced", floor_sliced), ("xla_floor_sliced_reduce", floor_sliced_reduce)):
        g = jax.jit(f).lower(sv, sc, X).compile()
        cases[label] = ((lambda g=g: jax.block_until_ready(g(sv, sc, X))), F @ x)
    cases["default"] = ((lambda: jax.block_until_ready(default(A, X))), S @ x)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for label, (f, ref) in cases.items():
        err = float(np.linalg.norm(np.asarray(f()) - ref) / np.linalg.norm(ref))
        if not err < tol:
            raise AssertionError(f"{name} {np.dtype(dtype).name} {label}: relative error {err:.1e}")
        f()
    names = list(cases)
    cpu = {n: [] for n in names}
    wall = {n: [] for n in names}
    for r in range(repeats):
        for n in names[r % len(names):] + names[:r % len(names)]:
            c0, w0 = time.process_time(), time.perf_counter()
            cases[n][0]()
            cpu[n].append(time.process_time() - c0)
            wall[n].append(time.perf_counter() - w0)
    recs = []
    for n in names:
        base = "scipy_floor" if n.startswith("xla_floor") else "scipy"
        rec = dict(matrix=name, dtype=np.dtype(dtype).name, case=n, nnz=int(S.nnz), floor_nnz=k,
                   default_format=type(A).format_name,
                   cpu_ms=statistics.median(cpu[n]) * 1e3, wall_ms=statistics.median(wall[n]) * 1e3,
                   cpu_ratio_to_scipy=statistics.median(a / b for a, b in zip(cpu[n], cpu["scipy"])),
                   wall_ratio_to_scipy=statistics.median(a / b for a, b in zip(wall[n], wall["scipy"])),
                   baseline=base,
                   cpu_ratio_to_baseline=statistics.median(a / b for a, b in zip(cpu[n], cpu[base])),
                   wall_ratio_to_baseline=statistics.median(a / b for a, b in zip(wall[n], wall[base])),
                   rounds=repeats, loadavg=os.getloadavg())
        recs.append(rec)
        print(f"  {name:16s} {rec['dtype']:8s} {n:20s} cpu {rec['cpu_ms']:8.1f} ms "
              f"({rec['cpu_ratio_to_baseline']:.2f}x {base})  wall {rec['wall_ms']:8.1f} ms "
              f"({rec['wall_ratio_to_baseline']:.2f}x)", flush=True)
    return recs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--matrices", default="powerlaw_2M_d16,random_1M_r8")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--splits", default="2", help="comma-separated chunk counts for xla_floor_split<k>")
    ap.add_argument("--json", default="bench/results/sparse-cpu-floor.json")
    args = ap.parse_args(argv)
    dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    if np.float64 in dtypes:
        jax.config.update("jax_enable_x64", True)
    splits = [int(s) for s in args.splits.split(",") if s]
    from jaxlab.core import save_benchmark

    load = os.getloadavg()
    print(f"backend {jax.default_backend()}, load average {load}", flush=True)
    records = []
    for name in args.matrices.split(","):
        for dt in dtypes:
            records += bench(name, dt, args.repeats, splits)
    path = save_benchmark("sparse-floor", records, path=args.json, command=" ".join(sys.argv),
                          repeats=args.repeats, loadavg_start=load, loadavg_end=os.getloadavg(),
                          xla_flags=os.environ.get("XLA_FLAGS", ""),
                          affinity=sorted(os.sched_getaffinity(0)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
