"""SpMV benchmark: every jaxlab.sparse format against SciPy, jax BCOO, jax ``sparse.CSR`` (and CuPy,
torch and pyGinkgo when importable), on the PEERS.md matrices.

Correctness is checked against SciPy before timing. Times are medians over repeats of a compiled,
warmed-up call with ``block_until_ready``. Effective bandwidth counts the fewest bytes (PEERS.md):
``nnz*(value+4) + 4*(n+1) + 2*n*value``; it is also given as a fraction of a copy measured in the
same run. Results go to ``bench/results/sparse-<backend>.json``.

Usage:
  python scripts/bench_spmv.py                              # poisson2d_1000, random_1M_r8; f32, f64
  python scripts/bench_spmv.py --quick                      # small matrices, seconds
  python scripts/bench_spmv.py --matrices poisson3d_160 --formats ell,sellp --dtypes float32
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ALL_FORMATS = ("csr", "coo", "ell", "sellp", "hybrid")
PEERS = ("scipy", "bcoo", "jax_csr", "cupy", "torch", "pyginkgo")


def _median_time(fn, repeats, warmup=2, inner=1, sync=jax.block_until_ready):
    """Median and minimum seconds per call. Each repeat times ``inner`` calls issued back to back and
    one ``sync`` at the end (on a GPU a per-call sync would mostly time the launch latency)."""
    for _ in range(warmup):
        sync(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            out = fn()
        sync(out)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times), min(times)


def _inner_calls():
    return 1 if jax.default_backend() == "cpu" else 20


def _copy_bandwidth(repeats):
    """GB/s of a jitted, buffer-donating ``a + 1`` over 32M float32 (read + write).

    Donation makes XLA write into the input's buffer, so the figure is not dominated by the page
    faults of a fresh 128 MB output on every call.
    """
    f = jax.jit(lambda a: a + 1, donate_argnums=0)
    state = [jnp.ones((32 * 2**20,), jnp.float32)]
    nbytes = state[0].nbytes

    def run():
        state[0] = f(state[0])
        return state[0]

    t, _ = _median_time(run, repeats, inner=_inner_calls())
    return 2 * nbytes / t / 1e9


def _no_sync(y):
    return y


def _to_numpy(y):
    if hasattr(y, "get") and not isinstance(y, np.ndarray):  # CuPy
        return y.get()
    if hasattr(y, "cpu") and hasattr(y, "numpy"):  # torch
        return y.cpu().numpy()
    return np.asarray(y)


def _min_bytes(n, nnz, value_bytes):
    return nnz * (value_bytes + 4) + 4 * (n + 1) + 2 * n * value_bytes


def _peer_fns(name, S, x):
    """(callable, description, sync) for a peer, or None when not importable/usable."""
    if name == "scipy":
        return (lambda: S @ x), "scipy CSR", _no_sync
    if name == "bcoo":
        from jax.experimental import sparse as jxs

        B = jxs.BCOO.from_scipy_sparse(S)
        X = jnp.asarray(x)
        f = jax.jit(lambda B, v: B @ v).lower(B, X).compile()
        return (lambda: f(B, X)), "jax BCOO", jax.block_until_ready
    if name == "jax_csr":
        from jax.experimental import sparse as jxs

        C = jxs.CSR((jnp.asarray(S.data), jnp.asarray(S.indices), jnp.asarray(S.indptr)),
                    shape=S.shape)
        X = jnp.asarray(x)
        f = jax.jit(lambda C, v: C @ v).lower(C, X).compile()
        return (lambda: f(C, X)), "jax sparse.CSR", jax.block_until_ready
    if name == "cupy":
        try:
            import cupy
            import cupyx.scipy.sparse as csp
        except ImportError:
            return None
        try:
            G = csp.csr_matrix(S)
        except Exception:  # noqa: BLE001  (no CUDA device)
            return None
        X = cupy.asarray(x)

        def sync(y):
            cupy.cuda.Device().synchronize()
            return y

        return (lambda: G @ X), "CuPy cuSPARSE", sync
    if name == "torch":
        try:
            import torch
        except ImportError:
            return None
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        T = torch.sparse_csr_tensor(torch.from_numpy(S.indptr.astype(np.int64)),
                                    torch.from_numpy(S.indices.astype(np.int64)),
                                    torch.from_numpy(S.data), size=S.shape).to(dev)
        X = torch.from_numpy(x).to(dev)

        def sync(y):
            if dev == "cuda":
                torch.cuda.synchronize()
            return y

        return (lambda: T @ X), f"torch CSR ({dev})", sync
    if name == "pyginkgo":
        try:
            import pyGinkgo
        except ImportError:
            return None
        import tempfile

        from jaxlab.sparse import write_mtx

        dt = "double" if S.dtype == np.float64 else "float"
        with tempfile.TemporaryDirectory() as d:  # pyGinkgo reads matrices from files only
            path = Path(d) / "A.mtx"
            write_mtx(path, S)
            G = pyGinkgo.read(str(path), format="Csr", dtype=dt, device="cpu")
        X = pyGinkgo.as_tensor(x.reshape(-1, 1), device="cpu", dtype=dt)
        Y = pyGinkgo.as_tensor(dim=(S.shape[0], 1), device="cpu", dtype=dt, fill=0.0)

        def run():
            G.apply(X, Y)
            return np.asarray(Y)

        return run, "pyGinkgo Csr", _no_sync
    raise ValueError(f"unknown peer {name!r}; choose from {PEERS}")


def bench_matrix(name, dtype, formats, peers, repeats, impl, copy_gbs):
    import jaxlab.sparse as jsparse

    t0 = time.perf_counter()
    S = jsparse.peer_matrix(name, dtype=dtype)
    build_s = time.perf_counter() - t0
    n, nnz = S.shape[0], S.nnz
    vb = np.dtype(dtype).itemsize
    bytes_min = _min_bytes(n, nnz, vb)
    x = np.random.default_rng(1).standard_normal(S.shape[1]).astype(dtype)
    ref = S @ x
    scale = np.linalg.norm(ref) + 1e-30
    tol = 1e-5 if dtype == np.float32 else 1e-12
    cases = []  # (impl name, kind, fn, extra, sync)
    for p in peers:
        got = _peer_fns(p, S, x)
        if got is not None:
            cases.append((got[1], "peer", got[0], {}, got[2]))
    X = jnp.asarray(x)
    for fmt in formats:
        t0 = time.perf_counter()
        try:
            A = jsparse.from_scipy(S, fmt, dtype=dtype)
        except ValueError as e:  # e.g. ELL of a power-law matrix: padded size beyond int32 indices
            print(f"  {name:18s} jaxlab {fmt}: skipped: {str(e).splitlines()[0][:300]}", flush=True)
            continue
        conv_s = time.perf_counter() - t0
        f = jax.jit(lambda A, v: jsparse.spmv(A, v, impl=impl))
        t0 = time.perf_counter()
        try:
            fc = f.lower(A, X).compile()
        except Exception as e:  # noqa: BLE001  (report a kernel that does not build; bench the rest)
            print(f"  {name:18s} jaxlab {fmt}: does not compile with impl={impl!r}: {type(e).__name__}: "
                  f"{str(e).splitlines()[0][:300]}", flush=True)
            continue
        compile_s = time.perf_counter() - t0
        cases.append((f"jaxlab {fmt}", "jaxlab", functools.partial(fc, A, X),
                      dict(format=fmt, convert_s=conv_s, compile_s=compile_s,
                           stored_values=int(A.data.size)), jax.block_until_ready))
    # Correct first; then time round-robin (one call of each case per round) so that the load of
    # the shared machine falls on all cases alike.
    errors, times = {}, {c[0]: [] for c in cases}
    for impl_name, _, fn, _, sync in cases:
        out = _to_numpy(sync(fn()))
        errors[impl_name] = float(np.linalg.norm(out - ref) / scale)
        sync(fn())
    live = [c for c in cases if errors[c[0]] < tol]
    inner = _inner_calls()
    for _ in range(repeats):
        for impl_name, _, fn, _, sync in live:
            times[impl_name].append(_median_time(fn, 1, warmup=0, inner=inner, sync=sync)[0])
    rows = []
    for impl_name, kind, _, extra, _ in cases:
        ok = errors[impl_name] < tol
        ts = times[impl_name]
        med = statistics.median(ts) if ok else float("nan")
        gbs = bytes_min / med / 1e9
        rows.append(dict(matrix=name, n=n, nnz=nnz, dtype=np.dtype(dtype).name, impl=impl_name,
                         kind=kind, median_ms=med * 1e3, min_ms=min(ts) * 1e3 if ok else med,
                         rel_error=errors[impl_name], correct=ok, eff_gbs=gbs,
                         copy_fraction=gbs / copy_gbs, build_s=build_s, **extra))
        print(f"  {name:18s} {np.dtype(dtype).name:8s} {impl_name:16s} {med * 1e3:9.3f} ms "
              f"{gbs:7.2f} GB/s ({gbs / copy_gbs:.2f} of copy) err {errors[impl_name]:.1e}"
              + ("" if ok else "  WRONG"), flush=True)
    base = {r["impl"]: r["median_ms"] for r in rows}
    for r in rows:
        r["speedup_vs_scipy"] = base.get("scipy CSR", float("nan")) / r["median_ms"]
        r["speedup_vs_bcoo"] = base.get("jax BCOO", float("nan")) / r["median_ms"]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--matrices", default="poisson2d_1000,random_1M_r8")
    ap.add_argument("--formats", default=",".join(ALL_FORMATS))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--peers", default="scipy,bcoo,jax_csr,cupy,torch,pyginkgo")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--impl", default="auto", help="spmv impl: auto | xla | pallas")
    ap.add_argument("--quick", action="store_true",
                    help="small matrices (poisson2d_100, random_10K_r8, powerlaw_20K_d16)")
    ap.add_argument("--json", default=None, help="output path (default bench/results/...)")
    args = ap.parse_args(argv)
    if args.quick:
        args.matrices = "poisson2d_100,random_10K_r8,powerlaw_20K_d16"
        args.repeats = min(args.repeats, 10)
    dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    if np.float64 in dtypes:
        jax.config.update("jax_enable_x64", True)
    formats = [f for f in args.formats.split(",") if f]
    peers = [p for p in args.peers.split(",") if p]

    from jaxlab.core import save_benchmark

    copy_gbs = _copy_bandwidth(args.repeats)
    print(f"backend {jax.default_backend()}, copy bandwidth {copy_gbs:.1f} GB/s", flush=True)
    records = []
    for name in args.matrices.split(","):
        for dt in dtypes:
            records += bench_matrix(name, dt, formats, peers, args.repeats, args.impl, copy_gbs)
    print("\n| matrix | dtype | impl | ms | GB/s | of copy | vs SciPy | vs BCOO |")
    print("|---|---|---|---|---|---|---|---|")
    ratio = lambda v: "-" if v != v else f"{v:.2f}x"  # nan: that peer was not run
    for r in records:
        print(f"| {r['matrix']} | {r['dtype']} | {r['impl']} | {r['median_ms']:.3f} | "
              f"{r['eff_gbs']:.2f} | {r['copy_fraction']:.2f} | {ratio(r['speedup_vs_scipy'])} | "
              f"{ratio(r['speedup_vs_bcoo'])} |")
    path = save_benchmark("sparse", records, path=args.json, copy_gbs=copy_gbs,
                          command=" ".join(sys.argv), repeats=args.repeats, impl=args.impl)
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()
