"""How the members of a stack are run: vmap, lax.map or an unrolled loop (``jaxlab.methods.transplant`` ``vectorize``).

Times one jitted gradient of a cross-entropy loss for k SmallCNN members (Fashion-MNIST-sized 28x28x1 images, each
member on its own batch) with each of the three orders, and one member alone, in one process; median of
``--repeats`` calls after a first call (compile and one run, reported as ``first_call_s``). On XLA:CPU a vmapped convolution
becomes a grouped convolution and a mapped one runs inside a while loop; the unrolled loop keeps k plain ones.

Command:  python scripts/bench_transplant_vectorize.py --json bench/results/transplant-vectorize-cpu-s15.json
Writes bench/results/transplant-vectorize-<backend>.json by default (records with ``median_s``, ``times_s``,
``first_call_s`` and ``ratio_to_unroll``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="members in the stack")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--orders", default="single,unroll,vmap,map")
    ap.add_argument("--json", help="output file (default bench/results/transplant-vectorize-<backend>.json)")
    args = ap.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from jaxlab.core import save_benchmark
    from jaxlab.methods.transplant import _train
    from jaxlab.nn import SmallCNN

    model = SmallCNN(num_classes=10)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.k, args.batch, 28, 28, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, (args.k, args.batch)), jnp.int32)
    params = jax.vmap(lambda key: model.init(key, x[0, :1]))(jax.random.split(jax.random.key(0), args.k))

    def grad(p, xb, yb):
        return jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply(q, xb), yb).mean())(p)

    records = []
    for order in args.orders.split(","):
        if order == "single":
            fn, call = jax.jit(grad), (jax.tree.map(lambda a: a[0], params), x[0], y[0])
        else:
            fn, call = jax.jit(_train._over_models(grad, order)), (params, x, y)
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*call))
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*call))
            times.append(time.perf_counter() - t0)
        rec = {"order": order, "models": 1 if order == "single" else args.k, "median_s": float(np.median(times)),
               "times_s": times, "first_call_s": first}
        records.append(rec)
        print(f"{order:>7}: {rec['median_s'] * 1e3:9.1f} ms (first call {first:.2f} s)", flush=True)
    base = next((r["median_s"] for r in records if r["order"] == "unroll"), None)
    for r in records:
        r["ratio_to_unroll"] = r["median_s"] / base if base else None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    path = save_benchmark("transplant-vectorize", records, args.json, load_average=load, k=args.k,
                          batch=args.batch, model="SmallCNN (32, 64) + 128, 28x28x1, gradient of cross-entropy")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
