"""Time and peak memory of one training step: forward gradients (jvp mode) against backprop.

An MLP of depth 16, width 1024 (ReLU), batch 256, MSE loss, plain SGD, float32 by default. For each
k in {1, 4, 16} and each aggregation (mean, projection) it measures the step with all k tangents held
at once (``tangent_batch_size=None``) and the streaming step (``tangent_batch_size=1``: each leaf's
tangent drawn where its layer runs, regenerated from the key for the update, memory independent of k;
by default with ``fuse_combination=True``, SGD's fast path: XLA forms the estimate inside the in-place
update; ``--fuse-combination 0`` measures the general path, one buffer per leaf).
Before timing, the k = n projection estimate of a tiny MLP is checked against ``jax.grad``.

What the numbers mean (all from XLA's compiled memory analysis of the jitted step, whose train state
is donated, so the new parameters are written over the old ones):

* ``peak`` = arguments + outputs - aliased + temp: everything alive at the worst moment.
* ``floor`` = arguments + outputs - aliased: the train state (here the 64 MiB of parameters) and the
  batch, which every method holds. At depth 16 the parameters alone are about 0.6x backprop's peak,
  so no method that keeps them can reach a peak of 0.5x backprop's.
* ``temp`` = peak - floor: the working memory of the step. For backprop: the activations kept for the
  backward pass and the gradient; for forward gradients: tangents, the JVP's working set and the
  estimate. ``*_ratio_vs_backprop`` divides by backprop's figure in the same run.
* ``time_ratio_vs_backprop``: median step time over backprop's median (``--repeats`` calls after a
  warm-up, compile timed apart; CPU timings are noisy when the machine is shared).

Usage: python scripts/bench_fwdgrad.py [--depth 16 --width 1024 --batch 256 --ks 1,4,16 --repeats 3]
       (or ``jaxlab bench fwdgrad``). Writes bench/results/fwdgrad-<backend>.json.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import fwdgrad
from jaxlab.core import save_benchmark, time_fn
from jaxlab.train import TrainState, make_train_step


def mlp_loss(params, model_state, batch, key):
    del key
    x, y = batch
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"] + p["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    loss = jnp.mean((h - y) ** 2)
    return loss, ({}, model_state)


def init_mlp(key, depth, width, dtype):
    keys = jax.random.split(key, depth)
    return [{"w": (jax.random.normal(k, (width, width)) * np.sqrt(2.0 / width)).astype(dtype),
             "b": jnp.zeros((width,), dtype)} for k in keys]


def check_correctness():
    """k = n projection == jax.grad on a tiny MLP (float32 tolerance)."""
    params = init_mlp(jax.random.key(1), 2, 4, jnp.float32)
    batch = (jax.random.normal(jax.random.key(2), (3, 4)), jnp.zeros((3, 4)))
    n = fwdgrad.num_parameters(params)
    f = lambda p: mlp_loss(p, None, batch, None)[0]  # noqa: E731
    est, _ = fwdgrad.forward_gradient(f, params, key=jax.random.key(3), num_tangents=n, mode="jvp")
    ref = jax.grad(f)(params)
    err = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(est), jax.tree.leaves(ref)))
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(ref))
    if not err <= 1e-3 * scale:
        raise SystemExit(f"correctness check failed: max |projection(k=n) - grad| = {err:.3g} (scale {scale:.3g})")
    return err


def memory(step, state, batch, key):
    m = step.lower(state, batch, key).compile().memory_analysis()
    arg, out, alias, temp = (int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
                             int(m.alias_size_in_bytes), int(m.temp_size_in_bytes))
    return {"argument_bytes": arg, "output_bytes": out, "alias_bytes": alias, "temp_bytes": temp,
            "floor_bytes": arg + out - alias, "peak_bytes": arg + out - alias + temp}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ks", default="1,4,16")
    ap.add_argument("--aggregations", default="mean,projection")
    ap.add_argument("--streaming", default="none,1", help="tangent_batch_size values; 'none' holds all k tangents")
    ap.add_argument("--fuse-combination", default="1", choices=["0", "1"],
                    help="streaming steps: 1 lets XLA form the estimate inside SGD's in-place update (the fast "
                         "path for optimisers that read the gradient once); 0 is the general default (one buffer "
                         "per leaf)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-time", action="store_true", help="memory only")
    ap.add_argument("--no-time-held", action="store_true",
                    help="time only the streaming steps (the held ones compute the same estimate)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--json", default=None, help="output path (default bench/results/fwdgrad-<backend>.json)")
    args = ap.parse_args(argv)

    err = check_correctness()
    print(f"check: projection at k = n matches jax.grad (max abs err {err:.2e})")
    dtype = jnp.dtype(args.dtype)
    params = init_mlp(jax.random.key(0), args.depth, args.width, dtype)
    batch = (jax.random.normal(jax.random.key(1), (args.batch, args.width), dtype),
             jnp.zeros((args.batch, args.width), dtype))
    tx = optax.sgd(1e-3)
    key = jax.random.key(2)

    configs = [("backprop", 0, None, None)]
    for k in [int(v) for v in args.ks.split(",")]:
        for agg in args.aggregations.split(","):
            for s in args.streaming.split(","):
                configs.append(("fwdgrad", k, agg, None if s == "none" else int(s)))

    records = []
    base = None
    for method, k, agg, tb in configs:
        grad_fn = None if method == "backprop" else fwdgrad.make_grad_fn(
            num_tangents=k, aggregation=agg, mode="jvp", tangent_batch_size=tb,
            fuse_combination=tb is not None and args.fuse_combination == "1")
        raw = make_train_step(mlp_loss, tx, grad_fn=grad_fn, jit=False)
        state = TrainState.create(params=params, tx=tx)
        t0 = time.perf_counter()
        mem = memory(jax.jit(raw, donate_argnums=(0,)), state, batch, key)
        mem_compile_s = time.perf_counter() - t0
        rec = {"method": method, "k": k or None, "aggregation": agg, "tangent_batch_size": tb,
               "fuse_combination": method == "fwdgrad" and tb is not None and args.fuse_combination == "1",
               "depth": args.depth, "width": args.width, "batch": args.batch, "dtype": dtype.name, **mem,
               "memory_compile_s": mem_compile_s}
        if not args.no_time and not (method == "fwdgrad" and tb is None and args.no_time_held):
            # No donation here: time_fn calls the step repeatedly with the same state.
            timing = time_fn(jax.jit(raw), state, batch, key, warmup=1, repeats=args.repeats)
            rec.update(compile_s=timing.compile_s, median_s=timing.median_s, iqr_s=timing.iqr_s)
        if method == "backprop":
            base = rec
            print(f"floor (train state + batch, held by every method): {rec['floor_bytes'] / 2**20:.1f} MiB", flush=True)
        rec["peak_ratio_vs_backprop"] = rec["peak_bytes"] / base["peak_bytes"]
        rec["temp_ratio_vs_backprop"] = rec["temp_bytes"] / max(base["temp_bytes"], 1)
        if "median_s" in rec:
            rec["time_ratio_vs_backprop"] = rec["median_s"] / base["median_s"]
        records.append(rec)
        print(f"{method:9s} k={str(k or '-'):>3s} {str(agg or '-'):10s} stream={str(tb):4s} "
              f"peak {rec['peak_bytes'] / 2**20:8.1f} MiB ({rec['peak_ratio_vs_backprop']:.2f}x)  "
              f"temp {rec['temp_bytes'] / 2**20:8.1f} MiB ({rec['temp_ratio_vs_backprop']:.2f}x)"
              + (f"  time {rec['median_s'] * 1e3:9.1f} ms ({rec['time_ratio_vs_backprop']:.1f}x)"
                 if "median_s" in rec else ""), flush=True)
    path = save_benchmark("fwdgrad", records, path=args.json, check_max_abs_err=err,
                          note="peak = argument + output - alias + temp of the donated jitted step; "
                               "floor = argument + output - alias (train state and batch); "
                               "temp = peak - floor, the working memory beyond them")
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()
