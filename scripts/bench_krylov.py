"""Krylov solvers against SciPy, jax.scipy.sparse.linalg (BCOO) and pyGinkgo (CG, BiCGSTAB) when importable.

    python scripts/bench_krylov.py [--quick] [--problems poisson2d_1000,convdiff_300] [--iters 100]
    jaxlab bench krylov [--quick]

Two measurements per problem and solver, each checked before it is timed:
- iterations to the same relative residual (rtol) for us and SciPy, same preconditioner;
- time per iteration: a fixed number of iterations (rtol = 0) for every peer, median of repeats.
Results: bench/results/krylov-<backend>.json (device, versions, shapes, dtypes).
"""

from __future__ import annotations

import argparse
import statistics
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


def bench_problem(name: str, *, fmt: str, iters: int, repeats: int, rtol: float) -> list[dict]:
    S, spd = problem(name)
    n = S.shape[0]
    b = np.random.default_rng(0).standard_normal(n)
    A = jsparse.from_scipy(S, format=fmt)
    bj = jnp.asarray(b)
    out = []
    cases = [("cg", None), ("cg", "jacobi")] if spd else [("bicgstab", None), ("gmres", None), ("bicgstab", "jacobi")]
    for method, pre in cases:
        kw = {"restart": 30} if method == "gmres" else {}
        skw = {"restart": 30, "callback_type": "pr_norm"} if method == "gmres" else {}
        M = krylov.make_preconditioner(A, pre)
        Msp = None if pre is None else spla.LinearOperator(S.shape, matvec=lambda r, d=S.diagonal(): r / d)
        # 1. iterations to rtol, and the residual actually reached
        solve = jax.jit(lambda A, b, M=M: krylov.solve(A, b, method=method, preconditioner=M, rtol=rtol,
                                                        maxiter=20 * n, **kw))
        sol = solve(A, bj)
        ours_res = float(np.linalg.norm(b - S @ np.asarray(sol.x)) / np.linalg.norm(b))
        sp_it, sp_x = _scipy_iterations(SCIPY[method], S, b, rtol=rtol, M=Msp, maxiter=20 * n, **skw)
        sp_res = float(np.linalg.norm(b - S @ sp_x) / np.linalg.norm(b))
        rec = {"problem": name, "n": n, "nnz": int(S.nnz), "dtype": "float64", "format": fmt, "method": method,
               "preconditioner": pre or "none", "rtol": rtol,
               "iterations": int(sol.iterations), "status": krylov.status_name(sol.status),
               "residual": ours_res, "scipy_iterations": sp_it, "scipy_residual": sp_res,
               "iterations_ratio": int(sol.iterations) / max(sp_it, 1)}
        # 2. time per iteration at a fixed iteration count
        fixed = jax.jit(lambda A, b, M=M: krylov.solve(A, b, method=method, preconditioner=M, rtol=0.0,
                                                        maxiter=iters, **kw).x)
        t_ours = _median_time(lambda: jax.block_until_ready(fixed(A, bj)), repeats) / iters
        t_sp = _median_time(lambda: SCIPY[method](S, b, rtol=0.0, atol=0.0, maxiter=iters if method != "gmres"
                                                  else max(iters // 30, 1), M=Msp, **({"restart": 30} if
                                                  method == "gmres" else {})), repeats)
        t_sp /= iters if method != "gmres" else max(iters // 30, 1) * 30
        rec.update({"ms_per_iter": 1e3 * t_ours, "scipy_ms_per_iter": 1e3 * t_sp, "time_ratio_to_scipy": t_ours / t_sp})
        if pre is None and method in ("cg", "bicgstab", "gmres"):
            B = jexp_sparse.BCOO.from_scipy_sparse(S)
            jsolver = {"cg": jax.scipy.sparse.linalg.cg, "bicgstab": jax.scipy.sparse.linalg.bicgstab,
                       "gmres": jax.scipy.sparse.linalg.gmres}[method]
            jkw = {"restart": 30, "solve_method": "batched"} if method == "gmres" else {}
            jfix = jax.jit(lambda B, b: jsolver(lambda v: B @ v, b, tol=0.0, atol=0.0,
                                                maxiter=iters if method != "gmres" else max(iters // 30, 1),
                                                **jkw)[0])
            t_j = _median_time(lambda: jax.block_until_ready(jfix(B, bj)), repeats)
            t_j /= iters if method != "gmres" else max(iters // 30, 1) * 30
            rec.update({"jax_bcoo_ms_per_iter": 1e3 * t_j, "time_ratio_to_jax_bcoo": t_ours / t_j})
            gk = pyginkgo_fixed_iterations(S, b, method, iters) if method != "gmres" else None
            if gk is not None:
                t_g = _median_time(gk, repeats) / iters
                rec.update({"pyginkgo_ms_per_iter": 1e3 * t_g, "time_ratio_to_pyginkgo": t_ours / t_g})
        out.append(rec)
        print(f"{name:>16} {method:>8}+{rec['preconditioner']:<7} it {rec['iterations']:>5} (scipy {sp_it:>5}) "
              f"res {ours_res:.1e}  {rec['ms_per_iter']:8.3f} ms/it  scipy {rec['scipy_ms_per_iter']:8.3f}  "
              f"x{rec['time_ratio_to_scipy']:.2f}" +
              (f"  bcoo {rec['jax_bcoo_ms_per_iter']:8.3f}" if "jax_bcoo_ms_per_iter" in rec else "") +
              (f"  pyginkgo {rec['pyginkgo_ms_per_iter']:8.3f}" if "pyginkgo_ms_per_iter" in rec else ""), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small problems (seconds)")
    ap.add_argument("--problems", help="comma-separated: poisson2d_N, poisson3d_N, convdiff_N")
    ap.add_argument("--format", default=jsparse.DEFAULT_FORMAT, help="jaxlab sparse format for our solver")
    ap.add_argument("--iters", type=int, default=60, help="fixed iterations for the time-per-iteration runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--json", help="output file (default bench/results/krylov-<backend>.json)")
    args = ap.parse_args()
    if args.problems:
        problems = args.problems.split(",")
    elif args.quick:
        problems = ["poisson2d_100", "convdiff_100"]
    else:
        problems = ["poisson2d_1000", "poisson3d_60", "convdiff_300"]
    records = []
    for name in problems:
        records += bench_problem(name, fmt=args.format, iters=args.iters, repeats=args.repeats, rtol=args.rtol)
    path = save_benchmark("krylov", records, args.json, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
