"""Preconditioner setup: ILU(0), IC(0) and ISAI from a SciPy matrix to a ready (device-resident) preconditioner.

    python scripts/bench_ilu.py [--quick] [--n 1000] [--repeats 5]
    jaxlab bench ilu [--quick]

Two measurements, each checked before it is timed:
- a 2000 x 2000 arrow matrix (one dense row and column and the diagonal, 6k entries, at the first or the last
  corner): setup time (median of repeats) and peak host memory (tracemalloc, a separate run);
- poisson2d_N (N = 1000: 1M rows, 5M entries): our ILU(0) setup against
  ``scipy.sparse.linalg.spilu(A, drop_tol=0, fill_factor=1)`` timed in alternating rounds (the load of a shared
  machine falls on both alike); reported are both medians and the median of the per-round ratios.
Results: bench/results/ilu-<backend>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402

import jaxlab.sparse as jsparse  # noqa: E402
from jaxlab import krylov  # noqa: E402
from jaxlab.core import save_benchmark  # noqa: E402


def arrow(n: int, corner: int) -> sp.csr_matrix:
    """One dense row and column (at ``corner``) plus a diagonal that keeps the matrix SPD: 3n - 2 entries."""
    S = sp.diags(np.arange(1.0, n + 1) + n).tolil()
    S[corner, :] = 1.0
    S[:, corner] = 1.0
    S[corner, corner] = 2.0 * n
    return S.tocsr()


def _setup(S, kind):
    P = krylov.make_preconditioner(S, kind)
    jax.block_until_ready(jax.tree.leaves(P))
    return P


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _check(S, P, kind) -> float:
    """Relative residual ``|S P(x) - x| / |x|`` of one application (exact for an arrow into the last corner)."""
    x = np.random.default_rng(0).standard_normal(S.shape[0])
    y = np.asarray(jax.jit(lambda P, x: P(x))(P, jnp.asarray(x)))
    if not np.isfinite(y).all():
        raise SystemExit(f"{kind}: the preconditioner gave non-finite values")
    return float(np.linalg.norm(S @ y - x) / np.linalg.norm(x))


def bench_arrow(n: int, repeats: int) -> list[dict]:
    out = []
    for corner in ("first", "last"):
        S = arrow(n, 0 if corner == "first" else n - 1)
        for kind in ("ilu0", "ic0", "isai"):
            P = _setup(S, kind)  # warm-up: the apply's compilation is not part of the setup
            res = _check(S, P, kind)
            if res >= 1.0:
                raise SystemExit(f"arrow/{corner} {kind}: one application does not reduce the residual ({res})")
            tracemalloc.start()
            _setup(S, kind)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            t = statistics.median(_seconds(lambda: _setup(S, kind)) for _ in range(repeats))
            rec = {"matrix": f"arrow_{n}_{corner}", "n": n, "nnz": int(S.nnz), "kind": kind, "setup_s": t,
                   "peak_host_mib": peak / 2**20, "apply_residual": res}
            out.append(rec)
            print(f"arrow_{n}_{corner:<5} {kind:<5} setup {t:8.4f} s  peak {peak / 2**20:7.1f} MiB  "
                  f"|S P x - x|/|x| {res:.2e}", flush=True)
    return out


def bench_poisson(m: int, repeats: int) -> dict:
    S = jsparse.poisson2d(m)
    Sc = S.tocsc()
    P = _setup(S, "ilu0")
    res = _check(S, P, "ilu0")
    F = spla.spilu(Sc, drop_tol=0, fill_factor=1)
    x = np.random.default_rng(0).standard_normal(S.shape[0])
    sres = float(np.linalg.norm(S @ F.solve(x) - x) / np.linalg.norm(x))
    ours, peer = [], []
    for _ in range(repeats):
        ours.append(_seconds(lambda: _setup(S, "ilu0")))
        peer.append(_seconds(lambda: spla.spilu(Sc, drop_tol=0, fill_factor=1)))
    ratios = [a / b for a, b in zip(ours, peer)]
    rec = {"matrix": f"poisson2d_{m}", "n": int(S.shape[0]), "nnz": int(S.nnz), "kind": "ilu0",
           "setup_s": statistics.median(ours), "scipy_spilu_s": statistics.median(peer),
           "time_ratio_to_spilu": statistics.median(ratios), "apply_residual": res, "spilu_apply_residual": sres,
           "spilu_options": "drop_tol=0, fill_factor=1 (on CSC, SciPy's format for spilu)"}
    print(f"poisson2d_{m} ilu0 setup {rec['setup_s']:.3f} s, spilu {rec['scipy_spilu_s']:.3f} s, "
          f"ratio {rec['time_ratio_to_spilu']:.2f} (|S P x - x|/|x| ours {res:.3f}, spilu {sres:.3f})", flush=True)
    return rec


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="poisson2d_200, arrow 500, 2 repeats (seconds)")
    ap.add_argument("--n", type=int, default=1000, help="poisson2d grid side")
    ap.add_argument("--arrow", type=int, default=2000, help="arrow matrix size")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parts", default="arrow,poisson", help="comma-separated: arrow, poisson")
    ap.add_argument("--json", help="output file (default bench/results/ilu-<backend>.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.arrow, args.repeats = 200, 500, 2
    parts = set(args.parts.split(","))
    if not parts or parts - {"arrow", "poisson"}:
        raise SystemExit(f"--parts must name arrow and/or poisson, got {args.parts!r}")
    records = bench_arrow(args.arrow, args.repeats) if "arrow" in parts else []
    if "poisson" in parts:
        records.append(bench_poisson(args.n, args.repeats))
    path = save_benchmark("ilu", records, args.json, command=" ".join(["scripts/bench_ilu.py", *sys.argv[1:]]),
                          repeats=args.repeats, loadavg=list(os.getloadavg()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
