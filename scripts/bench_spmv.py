"""SpMV benchmark: every jaxlab.sparse format and the default (``format="auto"``) against SciPy, jax BCOO,
jax ``sparse.CSR`` (and CuPy, torch and pyGinkgo when importable), on the PEERS.md matrices and FEM-like meshes.

Correctness is checked against SciPy before timing. The default's matrix is built and compiled first and kept
for the whole matrix; every other case (each format, each peer) is then built, compiled and timed on its own,
in rounds of three calls -- SciPy, the default and the case -- whose order cycles through all six permutations.
Reported are the median time (CPU time on the CPU backend, below), the median of the per-round ratios to
SciPy, and the median of the per-round ratios to the default (``time_ratio_to_auto``; the default's ratio to the best format is ``1 / min`` of these).

Why: on a shared 2-core machine (load 10-20 when several engineers run) a call's wall time is mostly time spent
waiting for a core: one call of a 4 ms product took 4-50 ms, for SciPy as for us, and whether a given call
waited is independent of its neighbour's. Two identical cases (the default and its own format's case: the
same arrays through the same compiled program) timed one after the other, 9 wall-clock samples each against
SciPy, differed by 0.37-2.2x; timed in the same rounds, still by 0.83-1.33x
(``scripts/bench_spmv_timing.py``, ``bench/results/sparse-cpu-timing-diagnosis.json``). So on the CPU
backend every call is timed by the process's CPU time (``time.process_time``), which a wait for the core
does not advance: the products run on one thread, and at load 19 their median CPU time was within 1.05-1.14x
of their fastest wall time, and the identical case read 0.99x. On a GPU the clock is wall time (``--clock``).
The second cause is where the arrays lie in memory: two builds of the same arrays, through one compiled
program, differed by up to 10% (mesh3d_200K, f32), also when both were fresh XLA-made copies. So each case's
rounds cycle through ``--placements`` copies of its arrays (3 where they fit in ``--placement-budget-mb``),
and the default's likewise. The self-check ``auto_vs_same_format`` is the ratio of the default's own format's case to the default, in
the same rounds (1 for a sound measurement; printed, and flagged when outside ``--self-check-tol``).

The effective bandwidth counts the fewest bytes (PEERS.md):
``nnz*(value+4) + 4*(n+1) + 2*n*value``, also as a fraction of a device-to-device copy of the same number
of bytes timed in the same run (median of repeats). A format whose padding would store more than
``--max-waste`` x nnz entries (ELL of a power-law matrix) is skipped and said so. Results go to
``bench/results/sparse-<backend>.json``.

Usage:
  python scripts/bench_spmv.py                              # the six matrices below; f32, f64
  python scripts/bench_spmv.py --quick                      # small matrices, seconds
  python scripts/bench_spmv.py --matrices poisson3d_160 --formats ell,sellp --dtypes float32
"""

from __future__ import annotations

import argparse
import functools
import gc
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

ALL_FORMATS = ("auto", "csr", "coo", "ell", "sellp", "sellp_sorted", "hybrid")
PEERS = ("scipy", "bcoo", "jax_csr", "cupy", "torch", "pyginkgo")
MATRICES = "poisson2d_1000,poisson3d_100,random_1M_r8,powerlaw_2M_d16,mesh2d_1M,mesh3d_200K"


def _inner_calls():
    return 1 if jax.default_backend() == "cpu" else 20



# The clock of every timing: the process's CPU time on the CPU backend (see the module docstring), wall time on
# an accelerator (whose work the host's CPU time does not see). Set by main().
_CLOCK = time.perf_counter


def _pick_clock(name: str):
    if name == "auto":
        name = "cpu" if jax.default_backend() == "cpu" else "wall"
    return {"cpu": time.process_time, "wall": time.perf_counter}[name], name


def _time_once(fn, inner, sync):
    t0 = _CLOCK()
    for _ in range(inner):
        out = fn()
    sync(out)
    return (_CLOCK() - t0) / inner


def _copy_seconds(nbytes: int, repeats: int) -> float:
    """Median seconds of a jitted device-to-device copy moving ``nbytes`` (half read, half written)."""
    a = jnp.ones((max(nbytes // 8, 1),), jnp.float32)  # nbytes / 2 bytes, read once and written once
    f = jax.jit(lambda a: jnp.copy(a))
    jax.block_until_ready(f(a))
    inner = _inner_calls()
    return statistics.median(_time_once(lambda: f(a), inner, jax.block_until_ready) for _ in range(repeats))


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


def _peer_case(name, S, x):
    """(callable, description, sync) for a peer, or None when not importable/usable."""
    if name == "bcoo":
        from jax.experimental import sparse as jxs

        B = jxs.BCOO.from_scipy_sparse(S)
        X = jnp.asarray(x)
        f = jax.jit(lambda B, v: B @ v).lower(B, X).compile()
        return (lambda: f(B, X)), "jax BCOO", jax.block_until_ready
    if name == "jax_csr":
        from jax.experimental import sparse as jxs

        C = jxs.CSR((jnp.asarray(S.data), jnp.asarray(S.indices), jnp.asarray(S.indptr)), shape=S.shape)
        X = jnp.asarray(x)
        f = jax.jit(lambda C, v: C @ v).lower(C, X).compile()
        return (lambda: f(C, X)), "jax sparse.CSR", jax.block_until_ready
    if name == "cupy":
        try:
            import cupy
            import cupyx.scipy.sparse as csp

            G, X = csp.csr_matrix(S), cupy.asarray(x)
        except Exception:  # noqa: BLE001  (not installed, or no CUDA device)
            return None

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


CSR_STRATEGIES = ("classical", "load_balance", "merge_path")


def _format_options(fmt):
    """``"csr_<strategy>"`` is CSR with that kernel strategy (``impl="pallas"`` runs it; ``"auto"`` on a GPU runs
    cuSPARSE for every CSR); any other name is a format of ``jsparse.from_scipy`` with its defaults."""
    if fmt.startswith("csr_"):
        return "csr", {"strategy": fmt[len("csr_"):]}
    return fmt, {}


def _stored_entries(fmt, S):
    """Entries a format would store (padding included), computed from the row lengths alone."""
    import jaxlab.sparse as jsparse

    lengths = np.diff(S.indptr)
    if fmt == "ell":
        return int(lengths.max(initial=0)) * S.shape[0]
    if fmt in ("sellp", "sellp_sorted"):
        if fmt == "sellp_sorted":
            lengths = np.sort(lengths)[::-1]
        pad = -len(lengths) % 64
        widths = np.pad(lengths, (0, pad)).reshape(-1, 64).max(axis=1)
        return int(widths.sum()) * 64
    if fmt == "hybrid":
        w = jsparse.hybrid_ell_width(lengths)
        return w * S.shape[0] + int(np.maximum(lengths - w, 0).sum())
    return S.nnz


_ORDERS = tuple(itertools.permutations(range(3)))  # the order of (SciPy, default, case) in round r


def _compiled_text(fc):
    """A compiled program's HLO text without its module name line (to compare two compilations)."""
    try:
        return "\n".join(line for line in fc.as_text().splitlines() if not line.startswith("HloModule"))
    except Exception:  # noqa: BLE001  (an executable without text form)
        return None


_FRESH = None


def _placements(A, copies, budget_bytes):
    """``A`` and up to ``copies - 1`` copies of it in new buffers (made while the others live, so at other
    addresses), as many as ``budget_bytes`` allows: the rounds cycle through them, so a case's time is not that
    of one placement of its arrays in memory (two builds of the same arrays differed by up to 10% on
    mesh3d_200K in f32, also as XLA-made copies: bench_spmv_timing.py)."""
    global _FRESH
    if _FRESH is None:
        _FRESH = jax.jit(lambda t: jax.tree_util.tree_map(lambda a: a + jnp.zeros((), a.dtype), t))
    size = sum(leaf.nbytes for leaf in jax.tree_util.tree_leaves(A))
    n = max(1, min(copies, int(budget_bytes // max(size, 1))))
    out = [A]
    for _ in range(n - 1):
        out.append(jax.block_until_ready(_FRESH(A)))
    return out


def bench_matrix(name, dtype, formats, peers, repeats, impl, max_waste, self_check_tol=0.05, copies=3,
                 copy_budget=600e6):
    import jaxlab.sparse as jsparse

    t0 = time.perf_counter()
    S = jsparse.peer_matrix(name, dtype=dtype)
    build_s = time.perf_counter() - t0
    n, nnz = S.shape[0], S.nnz
    stats = jsparse.row_stats(S.indptr)
    vb = np.dtype(dtype).itemsize
    bytes_min = _min_bytes(n, nnz, vb)
    copy_s = _copy_seconds(bytes_min, repeats)
    x = np.random.default_rng(1).standard_normal(S.shape[1]).astype(dtype)
    ref = S @ x
    scale = np.linalg.norm(ref) + 1e-30
    tol = 1e-5 if dtype == np.float32 else 1e-12
    inner = _inner_calls()
    scipy_fn = lambda: S @ x  # noqa: E731
    common = dict(matrix=name, n=n, nnz=nnz, dtype=np.dtype(dtype).name, build_s=build_s,
                  mean_row=stats.mean_length, max_row=stats.max_length, ell_waste=stats.ell_waste,
                  row_class=stats.row_class, copy_ms=copy_s * 1e3)
    rows = []
    X = jnp.asarray(x)
    jit_spmv = jax.jit(lambda A, v: jsparse.spmv(A, v, impl=impl))

    def build(fmt):
        t0 = time.perf_counter()
        base, options = _format_options(fmt)
        A = jsparse.from_scipy(S, base, dtype=dtype, **options)
        conv_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fc = jit_spmv.lower(A, X).compile()
        return A, fc, conv_s, time.perf_counter() - t0

    def check(fn, sync):
        out = _to_numpy(sync(fn()))
        err = float(np.linalg.norm(out - ref) / scale)
        return err, err < tol

    # The default, kept for the whole matrix: timed in every round, next to SciPy and each case.
    chosen = jsparse.choose_format(stats)
    A0, fc0, conv0, comp0 = build("auto")
    auto_fns = [functools.partial(fc0, a, X) for a in _placements(A0, copies, copy_budget)]
    auto_fn = auto_fns[0]
    auto_err, auto_ok = check(auto_fn, jax.block_until_ready)
    if not auto_ok:
        raise AssertionError(f"{name} {np.dtype(dtype).name}: the default format's product is wrong "
                             f"(relative error {auto_err:.1e})")
    auto_text = _compiled_text(fc0)
    auto_ts, auto_ratios = [], []  # pooled over all cases' rounds

    def run_case(label, kind, fns, sync, extra):
        fns = fns if isinstance(fns, list) else [fns]
        checks = [check(f, sync) for f in fns]
        err, ok = max(c[0] for c in checks), all(c[1] for c in checks)
        ts, ratios, to_auto = [], [], []
        if ok:
            for f in fns:
                sync(f())
            extra = dict(extra, placements=len(fns), default_placements=len(auto_fns))
            for r in range(repeats):
                trio = [(scipy_fn, 1, _no_sync), (auto_fns[r % len(auto_fns)], inner, jax.block_until_ready),
                        (fns[r % len(fns)], inner, sync)]
                t = [0.0, 0.0, 0.0]
                for i in _ORDERS[r % len(_ORDERS)]:
                    f, k, s = trio[i]
                    t[i] = _time_once(f, k, s)
                ts.append(t[2])
                ratios.append(t[2] / t[0])
                to_auto.append(t[2] / t[1])
                auto_ts.append(t[1])
                auto_ratios.append(t[1] / t[0])
        med = statistics.median(ts) if ok else float("nan")
        ratio = statistics.median(ratios) if ok else float("nan")
        r_auto = statistics.median(to_auto) if ok else float("nan")
        gbs = bytes_min / med / 1e9
        rec = dict(common, impl=label, kind=kind, median_ms=med * 1e3, min_ms=min(ts) * 1e3 if ok else med,
                   rel_error=err, correct=ok, eff_gbs=gbs, copy_fraction=copy_s / med,
                   time_ratio_to_scipy=ratio, time_ratio_to_auto=r_auto, rounds=len(ts),
                   loadavg=os.getloadavg() if hasattr(os, "getloadavg") else None, **extra)
        rows.append(rec)
        print(f"  {name:16s} {np.dtype(dtype).name:8s} {label:26s} {med * 1e3:9.3f} ms  {ratio:5.2f}x SciPy  "
              f"{r_auto:5.2f}x default  {gbs:6.2f} GB/s ({rec['copy_fraction']:.2f} of copy)  err {err:.1e}"
              + ("" if ok else "  WRONG"), flush=True)
        return rec

    # SciPy against itself: its own median, and the ratio 1 by construction.
    sp_ts = [_time_once(scipy_fn, 1, _no_sync) for _ in range(repeats)]
    rows.append(dict(common, impl="scipy CSR", kind="peer", median_ms=statistics.median(sp_ts) * 1e3,
                     min_ms=min(sp_ts) * 1e3, rel_error=0.0, correct=True,
                     eff_gbs=bytes_min / statistics.median(sp_ts) / 1e9,
                     copy_fraction=copy_s / statistics.median(sp_ts), time_ratio_to_scipy=1.0))
    print(f"  {name:16s} {np.dtype(dtype).name:8s} {'scipy CSR':26s} {rows[-1]['median_ms']:9.3f} ms  "
          f"(rows {stats.min_length}-{stats.max_length}, mean {stats.mean_length:.1f}, ELL waste "
          f"{stats.ell_waste:.2f}: {stats.row_class}; default {chosen})", flush=True)
    for p in peers:
        if p == "scipy":
            continue
        got = _peer_case(p, S, x)
        if got is not None:
            run_case(got[1], "peer", got[0], got[2], {})
        del got
        gc.collect()
    same_case = None
    for fmt in formats:
        if fmt == "auto":
            continue  # the default's row is written from its rounds with every case, below
        stored = _stored_entries(fmt, S)
        if stored > max_waste * max(nnz, 1):
            print(f"  {name:16s} jaxlab {fmt}: skipped: it would store {stored / max(nnz, 1):.0f}x nnz entries",
                  flush=True)
            rows.append(dict(common, impl=f"jaxlab {fmt}", kind="jaxlab", format=fmt, skipped=True,
                             stored_over_nnz=stored / max(nnz, 1)))
            continue
        try:
            A, fc, conv_s, compile_s = build(fmt)
        except Exception as e:  # noqa: BLE001  (report a kernel that does not build; bench the rest)
            print(f"  {name:16s} jaxlab {fmt}: does not compile with impl={impl!r}: {type(e).__name__}: "
                  f"{str(e).splitlines()[0][:300]}", flush=True)
            continue
        extra = dict(format=fmt, chosen_format=type(A).format_name, convert_s=conv_s, compile_s=compile_s,
                     stored_values=int(A.data.size))
        if fmt == chosen:
            extra["same_program_as_auto"] = auto_text is not None and _compiled_text(fc) == auto_text
        rec = run_case(f"jaxlab {fmt}", "jaxlab", [functools.partial(fc, a, X) for a in
                                                  _placements(A, copies, copy_budget)], jax.block_until_ready, extra)
        if fmt == chosen:
            same_case = rec
        del A, fc
        gc.collect()
    if not auto_ts:  # no other case: time the default against SciPy alone
        for r in range(repeats):
            pair = [(scipy_fn, 1, _no_sync), (auto_fns[r % len(auto_fns)], inner, jax.block_until_ready)]
            t = [_time_once(f, k, s) for f, k, s in (pair if r % 2 == 0 else pair[::-1])]
            t_sp, t_a = (t[0], t[1]) if r % 2 == 0 else (t[1], t[0])
            auto_ts.append(t_a)
            auto_ratios.append(t_a / t_sp)
    med = statistics.median(auto_ts)
    auto = dict(common, impl=f"jaxlab auto ({chosen})", kind="jaxlab", format="auto", chosen_format=chosen,
                table_format=chosen, median_ms=med * 1e3, min_ms=min(auto_ts) * 1e3, rel_error=auto_err,
                correct=True, eff_gbs=bytes_min / med / 1e9, copy_fraction=copy_s / med,
                time_ratio_to_scipy=statistics.median(auto_ratios), time_ratio_to_auto=1.0,
                rounds=len(auto_ts), convert_s=conv0, compile_s=comp0, stored_values=int(A0.data.size))
    ours = [r for r in rows if r["kind"] == "jaxlab" and r.get("correct")]
    best = min(ours, key=lambda r: r["time_ratio_to_auto"], default=None)
    if best is not None:
        # Measured in the same rounds as the default: default / best = 1 / (best / default).
        auto["ratio_to_best_format"] = max(1.0, 1.0 / best["time_ratio_to_auto"])
        auto["best_format"] = best["format"] if best["time_ratio_to_auto"] < 1.0 else chosen
    line = f"  {name:16s} {np.dtype(dtype).name:8s} {auto['impl']:26s} {med * 1e3:9.3f} ms  " \
           f"{auto['time_ratio_to_scipy']:5.2f}x SciPy (pooled over {len(auto_ts)} rounds)"
    if best is not None:
        line += f"; default / best of ours {auto['ratio_to_best_format']:.2f} ({auto['best_format']})"
    if same_case is not None:
        spread = same_case["time_ratio_to_auto"]
        auto["auto_vs_same_format"] = spread
        auto["self_check_ok"] = abs(spread - 1.0) <= self_check_tol
        line += (f"\n  {name:16s} {np.dtype(dtype).name:8s} self-check: the {chosen} case / the default, same "
                 f"arrays and program, timed in the same rounds: {spread:.3f}"
                 + ("" if auto["self_check_ok"] else f"  OUTSIDE 1 +- {self_check_tol}: the timings are not sound"))
    print(line, flush=True)
    rows.insert(1, auto)
    del A0, fc0, auto_fns, auto_fn
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--matrices", default=MATRICES)
    ap.add_argument("--formats", default=",".join(ALL_FORMATS),
                    help="formats to time; csr_classical, csr_load_balance, csr_merge_path: CSR with that kernel")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--peers", default="scipy,bcoo,jax_csr,cupy,torch,pyginkgo")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--impl", default="auto", help="spmv impl: auto | xla | pallas")
    ap.add_argument("--max-waste", type=float, default=4.0,
                    help="skip formats storing more than this many times nnz entries")
    ap.add_argument("--self-check-tol", type=float, default=0.05,
                    help="flag the run when the default and its own format's case differ by more than this")
    ap.add_argument("--clock", choices=("auto", "cpu", "wall"), default="auto",
                    help="auto: the process's CPU time on the CPU backend, wall time on an accelerator")
    ap.add_argument("--placements", type=int, default=3,
                    help="copies of each case's arrays (at other addresses) that the rounds cycle through")
    ap.add_argument("--placement-budget-mb", type=float, default=600.0,
                    help="at most this many MB of copies per case (fewer placements for big matrices)")
    ap.add_argument("--quick", action="store_true",
                    help="small matrices (poisson2d_100, random_10K_r8, powerlaw_20K_d16, mesh2d_20K)")
    ap.add_argument("--json", default=None, help="output path (default bench/results/...)")
    args = ap.parse_args(argv)
    global _CLOCK
    _CLOCK, clock = _pick_clock(args.clock)
    if args.quick:
        args.matrices = "poisson2d_100,random_10K_r8,powerlaw_20K_d16,mesh2d_20K"
        args.repeats = min(args.repeats, 5)
    dtypes = [np.dtype(d).type for d in args.dtypes.split(",")]
    if np.float64 in dtypes:
        jax.config.update("jax_enable_x64", True)
    formats = [f for f in args.formats.split(",") if f]
    known = ALL_FORMATS + tuple(f"csr_{s}" for s in CSR_STRATEGIES)
    if unknown := [f for f in formats if f not in known]:
        ap.error(f"unknown --formats {', '.join(unknown)}; choose from {', '.join(known)}")
    peers = [p for p in args.peers.split(",") if p]

    from jaxlab.core import save_benchmark

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"backend {jax.default_backend()}, clock {clock}, load average {load}", flush=True)
    records = []
    for name in args.matrices.split(","):
        for dt in dtypes:
            records += bench_matrix(name, dt, formats, peers, args.repeats, args.impl, args.max_waste,
                                    args.self_check_tol, args.placements, args.placement_budget_mb * 1e6)
            gc.collect()
    print("\n| matrix | dtype | impl | ms | x SciPy | x default | GB/s | of copy |")
    print("|---|---|---|---|---|---|---|---|")
    for r in records:
        if r.get("skipped"):
            continue
        to_auto = r.get("time_ratio_to_auto")
        print(f"| {r['matrix']} | {r['dtype']} | {r['impl']} | {r['median_ms']:.3f} | "
              f"{r['time_ratio_to_scipy']:.2f} | {'' if to_auto is None else f'{to_auto:.2f}'} | "
              f"{r['eff_gbs']:.2f} | {r['copy_fraction']:.2f} |")
    checks = [r for r in records if "auto_vs_same_format" in r]
    if checks:
        worst = max(checks, key=lambda r: abs(r["auto_vs_same_format"] - 1.0))
        print(f"self-check (the default format's own case / the default, same rounds): "
              f"{min(r['auto_vs_same_format'] for r in checks):.3f}-"
              f"{max(r['auto_vs_same_format'] for r in checks):.3f} over {len(checks)} cases"
              + ("" if all(r["self_check_ok"] for r in checks)
                 else f"; OUTSIDE the tolerance on {worst['matrix']} {worst['dtype']}"))
    path = save_benchmark("sparse", records, path=args.json, command=" ".join(sys.argv), repeats=args.repeats,
                          impl=args.impl, clock=clock, loadavg_start=load,
                          loadavg_end=os.getloadavg() if hasattr(os, "getloadavg") else None)
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()
