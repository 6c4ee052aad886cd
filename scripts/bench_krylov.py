"""Krylov solvers against SciPy, jax.scipy.sparse.linalg (BCOO and sparse.CSR), pyGinkgo (CG, BiCGSTAB) and
CuPy (CG, GMRES; on a GPU) when importable.

    python scripts/bench_krylov.py [--quick] [--problems poisson2d_1000,convdiff_300] [--iters 100]
    python scripts/bench_krylov.py --fixed-only --problems poisson2d_2000,poisson3d_160 --iters 300   (GPU)
    jaxlab bench krylov [--quick]

Two measurements per problem and solver, each checked before it is timed:
- iterations to the same relative residual (rtol) for us and SciPy, same preconditioner;
- time per iteration: a fixed number of iterations (rtol = 0) for every peer, median of repeats.
Results: bench/results/krylov-<backend>.json (device, versions, shapes, dtypes).
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from jax.experimental import sparse as jexp_sparse  # noqa: E402

import jaxlab.sparse as jsparse  # noqa: E402
from jaxlab import krylov  # noqa: E402
from jaxlab.core import save_benchmark  # noqa: E402


def convection_diffusion(m: int, peclet: float = 0.5, dtype=np.float64) -> sp.csr_matrix:
    """Upwinded 2-D convection-diffusion on an m x m grid (nonsymmetric)."""
    T = sp.diags([-1.0 - peclet, 4.0, -1.0 + peclet], [-1, 0, 1], shape=(m, m), dtype=dtype)
    S = sp.diags([-1.0 - peclet, -1.0 + peclet], [-1, 1], shape=(m, m), dtype=dtype)
    return (sp.kron(sp.eye(m, dtype=dtype), T) + sp.kron(S, sp.eye(m, dtype=dtype))).tocsr()


def problem(name: str) -> tuple[sp.csr_matrix, bool]:
    kind, _, size = name.rpartition("_")
    m = int(size)
    if kind == "poisson2d":
        return jsparse.poisson2d(m), True
    if kind == "poisson3d":
        return jsparse.poisson3d(m), True
    if kind == "convdiff":
        return convection_diffusion(m), False
    raise SystemExit(f"unknown problem {name!r}: use poisson2d_N, poisson3d_N or convdiff_N")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _scipy_iterations(solver, A, b, **kw):
    count = [0]
    x, info = solver(A, b, callback=lambda *_: count.__setitem__(0, count[0] + 1), **kw)
    return count[0], x


SCIPY = {"cg": spla.cg, "bicgstab": spla.bicgstab, "gmres": spla.gmres}
GINKGO = {"cg": "solver::Cg", "bicgstab": "solver::Bicgstab", "gmres": "solver::Gmres"}


def pyginkgo_fixed_iterations(S, b, method: str, iters: int):
    """A callable running pyGinkgo's solver (reference executor) for exactly ``iters`` iterations, or None."""
    try:
        import pyGinkgo
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:  # pyGinkgo reads matrices from files only
        path = Path(d) / "A.mtx"
        jsparse.write_mtx(path, S)
        G = pyGinkgo.read(str(path), format="Csr", dtype="double", device="cpu")
    B = pyGinkgo.as_tensor(b.reshape(-1, 1), device="cpu", dtype="double")
    args = {"type": GINKGO[method], "criteria": [{"type": "Iteration", "max_iters": iters}]}

    def run():
        X0 = pyGinkgo.as_tensor(dim=(S.shape[0], 1), device="cpu", dtype="double", fill=0.0)
        pyGinkgo.solve(G, B, initial_guess=X0, solver_args=args)

    return run


def cupy_fixed_iterations(S, b, method: str, maxiter: int):
    """A callable running CuPy's (cuSPARSE) solver for ``maxiter`` iterations (GMRES: restart cycles of 30),
    or None without a GPU."""
    if method not in ("cg", "gmres"):
        return None
    try:
        import cupy
        import cupyx.scipy.sparse as csp
        import cupyx.scipy.sparse.linalg as cspla

        G, B = csp.csr_matrix(S), cupy.asarray(b)
    except Exception:  # noqa: BLE001  (not installed, or no CUDA device)
        return None
    solver = getattr(cspla, method)
    kw = {"restart": 30, "maxiter": maxiter} if method == "gmres" else {"maxiter": maxiter}
    tol = "rtol" if "rtol" in inspect.signature(solver).parameters else "tol"  # CuPy >= 14 renamed it

    def run():
        solver(G, B, atol=0.0, **{tol: 0.0}, **kw)
        cupy.cuda.Device().synchronize()

    return run


def bench_problem(name: str, *, fmt: str, iters: int, repeats: int, rtol: float,
                  fixed_only: bool = False, methods: tuple[str, ...] | None = None) -> list[dict]:
    S, spd = problem(name)
    n = S.shape[0]
    b = np.random.default_rng(0).standard_normal(n)
    A = jsparse.from_scipy(S, format=fmt)
    bj = jnp.asarray(b)
    out = []
    cases = [("cg", None), ("cg", "jacobi")] if spd else [("bicgstab", None), ("gmres", None), ("bicgstab", "jacobi")]
    if fixed_only:
        cases = [c for c in cases if c[1] is None]
    if methods:
        cases = [c for c in cases if c[0] in methods]
    for method, pre in cases:
        kw = {"restart": 30} if method == "gmres" else {}
        skw = {"restart": 30, "callback_type": "pr_norm"} if method == "gmres" else {}
        # Peers count GMRES in restart cycles of 30: run iters // 30 cycles, divide by the iterations done.
        peer_maxiter = max(iters // 30, 1) if method == "gmres" else iters
        peer_iters = peer_maxiter * 30 if method == "gmres" else iters
        M = krylov.make_preconditioner(A, pre)
        Msp = None if pre is None else spla.LinearOperator(S.shape, matvec=lambda r, d=S.diagonal(): r / d)
        rec = {"problem": name, "n": n, "nnz": int(S.nnz), "dtype": "float64", "format": fmt, "method": method,
               "preconditioner": pre or "none", "iters": iters}
        if not fixed_only:
            rec.update(_to_rtol(S, A, b, bj, method, M, Msp, kw, skw, rtol))
        # 2. time per iteration at a fixed iteration count
        fixed = jax.jit(lambda A, b, M=M: krylov.solve(A, b, method=method, preconditioner=M, rtol=0.0,
                                                        maxiter=iters, **kw).x)
        t_ours = _median_time(lambda: jax.block_until_ready(fixed(A, bj)), repeats) / iters
        rec["ms_per_iter"] = 1e3 * t_ours
        if not fixed_only:
            t_sp = _median_time(lambda: SCIPY[method](S, b, rtol=0.0, atol=0.0, maxiter=peer_maxiter, M=Msp, **kw),
                                repeats) / peer_iters
            rec.update({"scipy_ms_per_iter": 1e3 * t_sp, "time_ratio_to_scipy": t_ours / t_sp})
        if pre is None and method in ("cg", "bicgstab", "gmres"):
            B = jexp_sparse.BCOO.from_scipy_sparse(S)
            jsolver = {"cg": jax.scipy.sparse.linalg.cg, "bicgstab": jax.scipy.sparse.linalg.bicgstab,
                       "gmres": jax.scipy.sparse.linalg.gmres}[method]
            jkw = {"restart": 30, "solve_method": "batched"} if method == "gmres" else {}
            jfix = jax.jit(lambda B, b: jsolver(lambda v: B @ v, b, tol=0.0, atol=0.0, maxiter=peer_maxiter,
                                                **jkw)[0])
            t_j = _median_time(lambda: jax.block_until_ready(jfix(B, bj)), repeats) / peer_iters
            rec.update({"jax_bcoo_ms_per_iter": 1e3 * t_j, "time_ratio_to_jax_bcoo": t_ours / t_j})
            # The same solver given our matrix (the same matvec as ours): the solvers' own cost compared.
            t_s = _median_time(lambda: jax.block_until_ready(jfix(A, bj)), repeats) / peer_iters
            rec.update({"jax_same_matvec_ms_per_iter": 1e3 * t_s, "time_ratio_to_jax_same_matvec": t_ours / t_s})
            C = jexp_sparse.CSR((jnp.asarray(S.data), jnp.asarray(S.indices), jnp.asarray(S.indptr)), shape=S.shape)
            t_c = _median_time(lambda: jax.block_until_ready(jfix(C, bj)), repeats) / peer_iters
            rec.update({"jax_csr_ms_per_iter": 1e3 * t_c, "time_ratio_to_jax_csr": t_ours / t_c})
            gk = pyginkgo_fixed_iterations(S, b, method, iters) if method != "gmres" else None
            if gk is not None:
                t_g = _median_time(gk, repeats) / iters
                rec.update({"pyginkgo_ms_per_iter": 1e3 * t_g, "time_ratio_to_pyginkgo": t_ours / t_g})
            cp = cupy_fixed_iterations(S, b, method, peer_maxiter)
            if cp is not None:
                t_c = _median_time(cp, repeats) / peer_iters
                rec.update({"cupy_ms_per_iter": 1e3 * t_c, "time_ratio_to_cupy": t_ours / t_c})
        out.append(rec)
        print(f"{name:>16} {method:>8}+{rec['preconditioner']:<7} it {rec.get('iterations', '-'):>5} "
              f"(scipy {rec.get('scipy_iterations', '-'):>5}) {rec['ms_per_iter']:8.3f} ms/it" +
              "".join(f"  {k[:-len('_ms_per_iter')]} {rec[k]:8.3f}" for k in
                      ("scipy_ms_per_iter", "jax_same_matvec_ms_per_iter", "jax_bcoo_ms_per_iter", "jax_csr_ms_per_iter", "pyginkgo_ms_per_iter",
                       "cupy_ms_per_iter")
                      if k in rec), flush=True)
    return out


def _to_rtol(S, A, b, bj, method, M, Msp, kw, skw, rtol) -> dict:
    """Iterations to ``rtol`` for us and SciPy (same preconditioner), and the residuals reached."""
    n = S.shape[0]
    solve = jax.jit(lambda A, b, M=M: krylov.solve(A, b, method=method, preconditioner=M, rtol=rtol,
                                                    maxiter=20 * n, **kw))
    sol = solve(A, bj)
    ours_res = float(np.linalg.norm(b - S @ np.asarray(sol.x)) / np.linalg.norm(b))
    sp_it, sp_x = _scipy_iterations(SCIPY[method], S, b, rtol=rtol, M=Msp, maxiter=20 * n, **skw)
    sp_res = float(np.linalg.norm(b - S @ sp_x) / np.linalg.norm(b))
    return {"rtol": rtol, "iterations": int(sol.iterations), "status": krylov.status_name(sol.status),
            "residual": ours_res, "scipy_iterations": sp_it, "scipy_residual": sp_res,
            "iterations_ratio": int(sol.iterations) / max(sp_it, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small problems (seconds)")
    ap.add_argument("--problems", help="comma-separated: poisson2d_N, poisson3d_N, convdiff_N")
    ap.add_argument("--format", default=jsparse.DEFAULT_FORMAT, help="jaxlab sparse format for our solver")
    ap.add_argument("--iters", type=int, default=60, help="fixed iterations for the time-per-iteration runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--fixed-only", action="store_true",
                    help="only the fixed-iteration timings against jax BCOO, pyGinkgo and CuPy (no SciPy runs; "
                         "for problems too large for SciPy, e.g. on a GPU)")
    ap.add_argument("--methods", help="comma-separated subset of cg, bicgstab, gmres (default: all that apply)")
    ap.add_argument("--json", help="output file (default bench/results/krylov-<backend>.json)")
    args = ap.parse_args()
    methods = tuple(args.methods.split(",")) if args.methods else None
    if methods and set(methods) - set(SCIPY):
        raise SystemExit(f"--methods must be a subset of {sorted(SCIPY)}, got {args.methods!r}")
    if args.problems:
        problems = args.problems.split(",")
    elif args.quick:
        problems = ["poisson2d_100", "convdiff_100"]
    else:
        problems = ["poisson2d_1000", "poisson3d_60", "convdiff_300"]
    records = []
    for name in problems:
        records += bench_problem(name, fmt=args.format, iters=args.iters, repeats=args.repeats, rtol=args.rtol,
                                 fixed_only=args.fixed_only, methods=methods)
    path = save_benchmark("krylov", records, args.json, quick=args.quick,
                          command=" ".join(["scripts/bench_krylov.py", *sys.argv[1:]]), loadavg=list(os.getloadavg()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
