"""Prototype (not in the library): sorted rows as column-major ELL groups, against the default and SciPy.

Rows are sorted by length (longest first) and their lengths rounded up the SELL-P ladder (``_ell._ladder``); each
run of equal width is one column-major ELL block ``(width, rows)`` whose product is unrolled over the width (the
form of ``_ell.ell_matvec``, one loop fusion, nothing materialised). A group wider than ``CMAX`` (env, default 8)
is cut into chunks of ``c <= CMAX`` consecutive entries of a row (column-major ``(c, rows * width / c)``), the
chunk sums reduced per row (an intermediate of 1/c of the entries). The question: does removing the default's
materialised products (``spmv_hlo_report.py``) bring sorted SELL-P to the XLA floor (``bench_spmv_floor.py``)?

Usage: CMAX=8 python scripts/bench_spmv_sorted_chunks.py powerlaw_2M_d16 float64 9 [out.json]
"""
import os, sys, time, statistics
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np, jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import jaxlab.sparse as js
from jaxlab.sparse._ell import _ladder
LOAD0 = os.getloadavg()
name, dt = sys.argv[1], np.dtype(sys.argv[2]).type
S = js.peer_matrix(name, dtype=dt)
m, n_cols = S.shape  # type: ignore[misc]  # scipy stubs: shape optional
x = np.random.default_rng(1).standard_normal(n_cols).astype(dt)
X = jnp.asarray(x)
L = np.diff(S.indptr)
perm = np.argsort(-L, kind="stable")
W = _ladder(L[perm])
blocks, meta = [], []
start = 0
change = np.flatnonzero(np.diff(W)) + 1
starts = np.concatenate([[0], change]); ends = np.concatenate([change, [m]])
for a, b in zip(starts, ends):
    w = int(W[a]); rows = perm[a:b]; r = b - a
    if w == 0:
        meta.append((0, r, 0)); continue
    CM = int(os.environ.get('CMAX', '8')); c = max(d for d in range(1, CM + 1) if w % d == 0) if w > CM else w
    vals = np.zeros((r, w), dt); cols = np.full((r, w), -1, np.int32)
    lens = L[rows]
    ridx = np.repeat(np.arange(r), lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    src = np.repeat(S.indptr[rows], lens) + pos
    vals[ridx, pos] = S.data[src]; cols[ridx, pos] = S.indices[src]
    # chunks of c consecutive entries of a row; column-major (c, r * w / c)
    blocks.append((jnp.asarray(vals.reshape(-1, c).T.copy()), jnp.asarray(cols.reshape(-1, c).T.copy())))
    meta.append((w, r, c))
inv = np.empty(m, np.int32); inv[perm] = np.arange(m)
INV = jnp.asarray(inv)
def term(v, c, x):
    return jnp.where(c >= 0, v * x.at[jnp.maximum(c, 0)].get(mode="promise_in_bounds"), 0)
def proto(blocks, inv, x):
    outs, k = [], 0
    for w, r, c in meta:
        if w == 0:
            outs.append(jnp.zeros((r,), x.dtype)); continue
        v, cc = blocks[k]; k += 1
        y = term(v[0], cc[0], x)
        for j in range(1, c):
            y = y + term(v[j], cc[j], x)
        if w > c:
            y = jnp.sum(y.reshape(r, w // c), axis=1)
        outs.append(y)
    return jnp.concatenate(outs).at[inv].get(mode="promise_in_bounds")
A = js.from_scipy(S, dtype=dt)
fd = jax.jit(lambda A, v: A @ v).lower(A, X).compile()
fp = jax.jit(proto).lower(blocks, INV, X).compile()
ref = S @ x
print("err", np.linalg.norm(np.asarray(fp(blocks, INV, X)) - ref) / np.linalg.norm(ref), "stored", sum(b[0].size for b in blocks) / S.nnz)
cases = {"scipy": lambda: S @ x, "default": lambda: jax.block_until_ready(fd(A, X)), "proto": lambda: jax.block_until_ready(fp(blocks, INV, X))}
for c in cases.values(): c()
names = list(cases); T = {n: [] for n in names}
reps = int(sys.argv[3])
for r_ in range(reps):
    for n in names[r_ % 3:] + names[:r_ % 3]:
        t0 = time.process_time(); cases[n](); T[n].append(time.process_time() - t0)
print("load", os.getloadavg(), "start", LOAD0)
for n in names:
    print(f"{name} {sys.argv[2]} {n:10s} {statistics.median(T[n])*1e3:8.1f} ms  {statistics.median(a/b for a,b in zip(T[n], T['scipy'])):.2f}x scipy")

from jaxlab.core import save_benchmark
recs = [dict(matrix=name, dtype=sys.argv[2], case=n, cmax=int(os.environ.get("CMAX", "8")), rounds=reps,
             cpu_ms=statistics.median(T[n]) * 1e3,
             cpu_ratio_to_scipy=statistics.median(a / b for a, b in zip(T[n], T["scipy"]))) for n in names]
if len(sys.argv) > 4:
    print("wrote", save_benchmark("sparse-sorted-chunks", recs, path=sys.argv[4], command=" ".join(sys.argv),
                                  cmax=int(os.environ.get("CMAX", "8")), loadavg_start=LOAD0,
                                  loadavg_end=os.getloadavg()))
