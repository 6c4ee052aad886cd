"""Overhead of jaxlab's training loop against a bare jitted loop, on the MLP-digits step.

    python scripts/bench_train.py [--steps 2000] [--json FILE]      (or: jaxlab bench train)

Both loops run the same jitted step on the same batches; the bare loop only calls it. The ratio says
what the progress bar, metric windows and batching cost per step. Results: bench/results/train-<backend>.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import optax

from jaxlab.core import save_benchmark
from jaxlab.data import Batcher, load_digits
from jaxlab.methods.classify import cross_entropy_loss_fn
from jaxlab.nn import MLP
from jaxlab.train import TrainState, make_train_step, train_loop


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="output file (default bench/results/train-<backend>.json)")
    args = ap.parse_args()

    ds = load_digits()
    model = MLP(features=(128, 128, 10))
    tx = optax.adam(1e-3)
    params = model.init(jax.random.key(0), ds.x_train[:1])["params"]
    step = make_train_step(cross_entropy_loss_fn(model), tx, donate=False)
    batcher = Batcher((ds.x_train, ds.y_train), 64, key=jax.random.key(1))
    batches = [batcher(s) for s in range(batcher.steps_per_epoch)]
    key = jax.random.key(2)
    state0 = TrainState.create(params=params, tx=tx)
    jax.block_until_ready(step(state0, batches[0], key))  # compile

    def bare():
        s = state0
        for i in range(args.steps):
            s, _ = step(s, batches[i % len(batches)], jax.random.fold_in(key, i))
        jax.block_until_ready(s)

    def looped(workdir):
        train_loop(state0, step, lambda i: batches[i % len(batches)], num_steps=args.steps, key=key,
                   workdir=workdir, log_every=50, progress=True)

    records = []
    for name, fn in (("bare_jit_loop", bare), ("train_loop_memory", lambda: looped(None)),
                     ("train_loop_workdir", lambda: looped(tempfile.mkdtemp()))):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        best = min(times)
        records.append({"loop": name, "steps": args.steps, "s_per_step_us": 1e6 * best / args.steps})
    base = records[0]["s_per_step_us"]
    for r in records:
        r["ratio_to_bare"] = r["s_per_step_us"] / base
        print(f"{r['loop']:<22} {r['s_per_step_us']:8.1f} us/step   x{r['ratio_to_bare']:.2f} of bare")
    path = save_benchmark("train", records, args.json, model="MLP 64-128-128-10", batch=64)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
