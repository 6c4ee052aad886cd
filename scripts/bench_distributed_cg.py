"""Distributed CG with ``jaxlab.sparse.shard_rows``: bytes per iteration from the HLO, scaling, one-device overhead.

    python scripts/bench_distributed_cg.py                    # weak + strong scaling on 8 fake CPU devices
    python scripts/bench_distributed_cg.py --quick            # small sizes
    python scripts/bench_distributed_cg.py --one-device       # sharded path on 1 device vs the plain path
                                                              # (the GPU check of scripts/gpu_suite.py)

For every matrix and mesh size P: the solve is checked first (the same solution as the single-device
CSR solve to 1e-10 relative, f64, and the same iteration count), then the compiled solve's HLO gives
the bytes each device receives per iteration (the collectives of the while loop's body: the halo of
one product plus the all-reduces of the dot products), compared with the halo formula
(``2 w`` entries for ppermute, ``(P - 1) s`` for gather, times 8 bytes, plus 2 (P - 1) / P x 8 bytes
for each of the 3 scalars that a CG iteration reduces). Times are medians of repeats of a fixed number of iterations; on fake CPU
devices sharing two cores they say little (the bytes are exact).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

if "--one-device" not in sys.argv and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import jaxlab.sparse as jsparse  # noqa: E402
from jaxlab import krylov  # noqa: E402
from jaxlab.core import save_benchmark, time_fn  # noqa: E402
from jaxlab.parallel import collective_stats  # noqa: E402


#: Scalars that one CG iteration (no preconditioner) reduces over the devices: p.Ap, r.z, ||r||.
CG_SCALARS_PER_ITERATION = 3


def _computations(hlo: str) -> dict[str, str]:
    """HLO text split into its computations, by name."""
    out, name, lines = {}, None, []
    for line in hlo.splitlines():
        m = re.match(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$", line)
        if m and not line.startswith(" "):
            if name is not None:
                out[name] = "\n".join(lines)
            name, lines = m.group(1), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        out[name] = "\n".join(lines)
    return out


def loop_collectives(hlo: str, num_devices: int) -> list:
    """The collectives of every while-loop body (and the computations it calls) of ``hlo``."""
    comps = _computations(hlo)
    bodies = set(re.findall(r"body=%?([\w.\-]+)", hlo))
    seen, todo, found = set(), list(bodies), []
    while todo:
        c = todo.pop()
        if c in seen or c not in comps:
            continue
        seen.add(c)
        text = comps[c]
        found += collective_stats(text, num_devices)
        todo += re.findall(r"(?:to_apply|calls|body|condition|branch_computations)=\{?%?([\w.\-]+)", text)
    return found


def _problem(name: str, n: int):
    return jsparse.poisson2d(n) if name == "poisson2d" else jsparse.poisson3d(n)


def _side(name: str, rows: int, p: int) -> int:
    """Grid side whose matrix has about ``rows`` rows, divisible by ``p``."""
    d = 2 if name == "poisson2d" else 3
    base = max(2, round(rows ** (1 / d)))
    for delta in range(0, 50):
        for n in (base - delta, base + delta):
            if n >= 2 and n ** d % p == 0:
                return n
    raise ValueError(f"no {name} size near {rows} rows divides by {p}")


def measure(name: str, n: int, p: int, *, iters: int, repeats: int, check: bool) -> dict:
    S = _problem(name, n)
    rows = S.shape[0]
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:p]), ("rows",))
    A = jsparse.shard_rows(S, mesh, "rows")
    b_host = np.random.default_rng(0).normal(size=rows)
    b = A.shard_vector(b_host)
    rec = {"matrix": f"{name}_{n}", "rows": rows, "nnz": int(S.nnz), "devices": p, "halo": A.plan.kind,
           "halo_width": A.plan.width}
    if check:
        solve = jax.jit(lambda A, b: krylov.solve(A, b, method="cg", rtol=1e-9, maxiter=20 * rows))
        sol = solve(A, b)
        ref = krylov.solve(jsparse.from_scipy(S, format="csr"), jnp.asarray(b_host), method="cg", rtol=1e-9,
                           maxiter=20 * rows)
        x, xr = np.asarray(sol.x), np.asarray(ref.x)
        rec.update(iterations=int(sol.iterations), iterations_single_device=int(ref.iterations),
                   relative_difference=float(np.linalg.norm(x - xr) / np.linalg.norm(xr)),
                   converged=bool(sol.converged))
        if not (rec["iterations"] == rec["iterations_single_device"] and rec["relative_difference"] < 1e-10):
            raise SystemExit(f"{name}_{n} on {p} devices differs from the single-device solve: {rec}")
    fixed = jax.jit(lambda A, b: krylov.solve(A, b, method="cg", rtol=0.0, atol=0.0, maxiter=iters))
    hlo = fixed.lower(A, b).compile().as_text()
    loop = loop_collectives(hlo, p)
    halo_hlo = sum(c.received_bytes for c in loop if c.op in ("collective-permute", "all-gather"))
    reduces = [c for c in loop if c.op == "all-reduce"]
    reduce_bytes = sum(c.received_bytes for c in reduces)
    halo_formula = A.plan.received_entries() * 8
    # CG's loop reduces three f64 scalars (p.Ap, r.z and ||r||), each a ring all-reduce over P devices.
    scalar_formula = CG_SCALARS_PER_ITERATION * 8 * 2 * (p - 1) / p
    rec.update(halo_bytes_hlo=halo_hlo, halo_bytes_formula=halo_formula,
               allreduce_ops_per_iteration=len(reduces), allreduce_bytes_hlo=reduce_bytes,
               bytes_per_iteration_hlo=halo_hlo + reduce_bytes,
               bytes_per_iteration_formula=halo_formula + scalar_formula,
               bytes_ratio=(halo_hlo + reduce_bytes) / (halo_formula + scalar_formula)
               if halo_formula + scalar_formula else 1.0)
    t = time_fn(fixed, A, b, warmup=1, repeats=repeats)
    rec.update(median_s=t.median_s, iqr_s=t.iqr_s, compile_s=t.compile_s, ms_per_iteration=1e3 * t.median_s / iters)
    return rec


def one_device(name: str, n: int, *, iters: int, repeats: int) -> dict:
    """The sharded path on one device against the plain CSR path: time per iteration."""
    S = _problem(name, n)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("rows",))
    A = jsparse.shard_rows(S, mesh, "rows")
    plain = jsparse.from_scipy(S, format="csr")
    b = jnp.asarray(np.random.default_rng(0).normal(size=S.shape[0]))
    fixed = jax.jit(lambda A, b: krylov.solve(A, b, method="cg", rtol=0.0, atol=0.0, maxiter=iters))
    xs, xp = np.asarray(fixed(A, b).x), np.asarray(fixed(plain, b).x)
    rel = float(np.linalg.norm(xs - xp) / np.linalg.norm(xp))
    if not rel < 1e-10:
        raise SystemExit(f"{name}_{n}: the sharded and plain paths differ by {rel:.2e} after {iters} iterations")
    ts = time_fn(fixed, A, b, warmup=1, repeats=repeats)
    tp = time_fn(fixed, plain, b, warmup=1, repeats=repeats)
    return {"matrix": f"{name}_{n}", "rows": S.shape[0], "iterations": iters, "device": jax.devices()[0].device_kind,
            "sharded_ms_per_iteration": 1e3 * ts.median_s / iters, "plain_ms_per_iteration": 1e3 * tp.median_s / iters,
            "ratio_sharded_over_plain": ts.median_s / tp.median_s, "relative_difference": rel, "goal_ratio": 1.1,
            "passed": ts.median_s / tp.median_s <= 1.1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (the gpu_suite's --tiny)")
    ap.add_argument("--one-device", action="store_true", help="sharded vs plain path on one device")
    ap.add_argument("--iters", type=int, default=100, help="iterations of each timed solve")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="output file (default bench/results/distributed_cg-<backend>.json)")
    args = ap.parse_args()
    records = []
    if args.one_device:
        sizes = {"poisson2d": 32, "poisson3d": 12} if args.tiny else (
            {"poisson2d": 256, "poisson3d": 32} if args.quick else {"poisson2d": 2000, "poisson3d": 160})
        for name, n in sizes.items():
            rec = one_device(name, n, iters=args.iters, repeats=args.repeats)
            print(f"{rec['matrix']:>14}  sharded {rec['sharded_ms_per_iteration']:.4f} ms/it  plain "
                  f"{rec['plain_ms_per_iteration']:.4f} ms/it  ratio {rec['ratio_sharded_over_plain']:.3f}")
            records.append({"kind": "one_device", **rec})
    else:
        devices = [p for p in (1, 2, 4, 8) if p <= jax.device_count()]
        per_device = {"poisson2d": 1024 if args.quick or args.tiny else 4096,
                      "poisson3d": 512 if args.quick or args.tiny else 4096}
        for name, base in per_device.items():
            strong_n = _side(name, base * devices[-1], devices[-1])  # one size for every P
            for kind in ("strong", "weak"):
                for p in devices:
                    n = strong_n if kind == "strong" else _side(name, base * p, p)
                    rec = measure(name, n, p, iters=args.iters, repeats=args.repeats, check=True)
                    rec["scaling"] = kind
                    print(f"{kind:>6} {rec['matrix']:>14} P={p}  {rec['halo']:>8} w={rec['halo_width']:<5} "
                          f"bytes/it HLO {rec['bytes_per_iteration_hlo']:>8.1f} formula "
                          f"{rec['bytes_per_iteration_formula']:>8.1f}  iters {rec['iterations']} "
                          f"(1 device: {rec['iterations_single_device']})  {rec['ms_per_iteration']:.3f} ms/it")
                    records.append(rec)
    path = save_benchmark("distributed_cg" + ("-one-device" if args.one_device else ""), records, path=args.json,
                          iters=args.iters, repeats=args.repeats)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
