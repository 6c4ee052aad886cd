"""Matrix Market reading: ``jaxlab.sparse.read_mtx_scipy`` / ``read_mtx`` against ``scipy.io.mmread``.

    python scripts/bench_mtx.py [--n 700] [--repeats 5] [--json FILE]      (or: jaxlab bench mtx)
    python scripts/bench_mtx.py --quick

The file is ``poisson2d(n)`` written by ``scipy.io.mmwrite`` (n = 700: 490k rows, 2.45M entries, about
40 MB), plain and gzip-compressed. Every reader is first checked against ``mmread``'s matrix. Time: median of
``--repeats`` reads, round robin over the readers (the file is in the page cache after a warm-up read).
Memory: the peak resident set a read adds, measured in a fresh process per reader (Linux ``VmHWM`` after the
read, reset through ``/proc/self/clear_refs`` just before it, minus the resident set then), median of three. Ratios are to ``scipy.io.mmread`` in the
same run. Results: bench/results/mtx-<backend>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.io  # noqa: E402

READERS = {
    "scipy.io.mmread": "import scipy.io\nread = lambda p: scipy.io.mmread(p)",
    "jaxlab read_mtx_scipy": "import jaxlab.sparse as js\nread = lambda p: js.read_mtx_scipy(p)",
    "jaxlab read_mtx csr": ("import jax\njax.config.update('jax_enable_x64', True)\nimport jaxlab.sparse as js\n"
                            "read = lambda p: js.read_mtx(p, format='csr')"),
}

_MEMORY_PROBE = """
import sys
sys.path.insert(0, {root!r})
{setup}
def status(key):
    with open('/proc/self/status') as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))
read({warm!r})  # lazy imports and thread pools first, so only the read itself is measured
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # resets the peak resident set (VmHWM) to the current one
before = status('VmRSS:')
out = read({path!r})
print(max(status('VmHWM:') - before, 0))
"""


def _peak_bytes(setup: str, path: Path, warm: Path) -> int:
    code = _MEMORY_PROBE.format(root=str(Path(__file__).resolve().parents[1]), setup=setup, path=str(path),
                                warm=str(warm))
    runs = []
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        runs.append(int(res.stdout.strip().splitlines()[-1]))
    return int(statistics.median(runs))


def _as_csr(M):
    import scipy.sparse as sp

    import jaxlab.sparse as jsparse

    return M.to_scipy() if isinstance(M, jsparse.AbstractSparseMatrix) else sp.csr_matrix(M)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=700, help="poisson2d grid size (the PEERS/issue file: 700)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="n = 100, 2 repeats")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 100, 2

    import jaxlab.sparse as jsparse
    from jaxlab.core import save_benchmark

    tmp = Path(tempfile.mkdtemp(prefix="bench_mtx_"))
    try:
        S = jsparse.poisson2d(args.n)
        plain = tmp / f"poisson2d_{args.n}.mtx"
        scipy.io.mmwrite(plain, S)
        packed = tmp / f"poisson2d_{args.n}.mtx.gz"
        with open(plain, "rb") as src, gzip.open(packed, "wb") as dst:
            shutil.copyfileobj(src, dst)
        ref = scipy.io.mmread(plain).tocsr()
        warm = tmp / "warm.mtx"
        scipy.io.mmwrite(warm, jsparse.poisson2d(3))
        records = []
        for path in (plain, packed):
            readers = {}
            for name, setup in READERS.items():
                scope: dict = {}
                exec(setup, scope)  # noqa: S102  (our own three-line reader definitions above)
                readers[name] = scope["read"]
                got = _as_csr(readers[name](path))
                assert (abs(got - ref).max() if got.nnz else 0) == 0 and got.shape == ref.shape, name
            times = {name: [] for name in readers}
            for _ in range(args.repeats):
                for name, read in readers.items():
                    t0 = time.perf_counter()
                    read(path)
                    times[name].append(time.perf_counter() - t0)
            peaks = {name: _peak_bytes(setup, path, warm) for name, setup in READERS.items()}
            base_t = statistics.median(times["scipy.io.mmread"])
            for name in readers:
                med = statistics.median(times[name])
                rec = dict(file=path.name, bytes=path.stat().st_size, rows=int(S.shape[0]), nnz=int(S.nnz),
                           reader=name, median_s=med, min_s=min(times[name]), peak_mib=peaks[name] / 2**20,
                           time_ratio_to_mmread=med / base_t, memory_ratio_to_mmread=peaks[name] /
                           max(peaks["scipy.io.mmread"], 1))
                records.append(rec)
                print(f"{path.name:24s} {name:24s} {med:8.3f} s ({rec['time_ratio_to_mmread']:.2f}x)  "
                      f"peak +{rec['peak_mib']:7.1f} MiB ({rec['memory_ratio_to_mmread']:.2f}x)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    out = save_benchmark("mtx", records, path=args.json, n=args.n, repeats=args.repeats, loadavg=load,
                         command=" ".join(sys.argv))
    print(f"wrote {out}")
    print(json.dumps({r["reader"] + " " + r["file"]: round(r["time_ratio_to_mmread"], 2) for r in records}))
    return records


if __name__ == "__main__":
    main()
