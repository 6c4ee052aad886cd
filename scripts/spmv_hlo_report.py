"""What the default format's compiled CPU program moves: index dtypes, and the intermediates XLA materialises.

Issue 13 item 11 asks why sorted SELL-P loses more to SciPy in f64 than in f32. This script compiles
``jsparse.from_scipy(S) @ x`` (x64 on, as ``bench_spmv.py`` runs f64) and reports, from the optimised HLO:

* the dtype of every array of the matrix (int64 column indices would cost 16 bytes per entry in f64);
* every top-level fusion whose output feeds a reduction instead of the result: on XLA 0.10's CPU backend the
  reductions of the grouped (sorted SELL-P) product run as ``ynn_fusion`` custom fusions (YNNPACK) that do not
  fuse their producer, so the masked products ``v * x[c]`` are written to memory and read back: bytes in the
  value dtype per stored entry, twice (``materialised_bytes``);
* the stored entries and the bytes SciPy CSR moves (``nnz * (value + 4)``).

Usage:
  python scripts/spmv_hlo_report.py --matrix powerlaw_2M_d16 --json bench/results/sparse-cpu-hlo-powerlaw_2M_d16.json
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

_SIZES = {"f32": 4, "f64": 8, "s32": 4, "s64": 8, "pred": 1}


def _nbytes(type_text: str) -> int:
    m = re.match(r"(\w+)\[([\d,]*)\]", type_text)
    if m is None:
        return 0
    dims = [int(d) for d in m.group(2).split(",") if d]
    return _SIZES.get(m.group(1), 0) * int(np.prod(dims, dtype=np.int64))


def report(name: str, dtype) -> dict:
    import jax.numpy as jnp

    import jaxlab.sparse as jsparse

    S = jsparse.peer_matrix(name, dtype=dtype)
    A = jsparse.from_scipy(S, dtype=dtype)
    X = jnp.zeros(A.shape[1], dtype)
    text = jax.jit(lambda A, v: A @ v).lower(A, X).compile().as_text() or ""
    entry = text.split("\nENTRY", 1)[1]
    defs = {}
    for line in entry.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = (\w+\[[\d,]*\])\S* (\w+)\((.*)", line)
        if m:
            defs[m.group(1)] = (m.group(2), m.group(3), line)
    materialised = 0
    feeds = []
    for _, (_, op, line) in defs.items():
        if op == "fusion" and ("ynn_fusion" in line or "reduce" in line.split("=")[0]):
            for arg in re.findall(r"%([\w.\-]+)", line.split("fusion(", 1)[1].split(")")[0]):
                if arg in defs and defs[arg][1] == "fusion" and "kind=kLoop" in defs[arg][2]:
                    materialised += _nbytes(defs[arg][0])
                    feeds.append(arg)
    vb = np.dtype(dtype).itemsize
    return dict(matrix=name, dtype=np.dtype(dtype).name, format=type(A).format_name, nnz=int(S.nnz),
                stored_entries=int(A.data.size),
                index_dtypes={k: str(a.dtype) for k, a in zip(A._index_names, A.index_arrays)},
                ynn_fusions=sum(1 for k in defs if k.startswith("ynn_fusion")),
                materialised_fusions=len(feeds), materialised_bytes=int(materialised),
                materialised_bytes_per_stored_entry=materialised / max(int(A.data.size), 1),
                scipy_bytes=int(S.nnz * (vb + 4)), matrix_bytes=int(sum(a.nbytes for a in (A.data, *A.index_arrays))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--matrix", default="powerlaw_2M_d16")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    recs = [report(args.matrix, dt) for dt in (np.float32, np.float64)]
    for r in recs:
        print(r)
    if args.json:
        from jaxlab.core import save_benchmark

        print("wrote", save_benchmark("sparse-hlo", recs, path=args.json, command=" ".join(sys.argv)))


if __name__ == "__main__":
    main()
