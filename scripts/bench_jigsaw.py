"""Jigsaw (shard_map) vs GSPMD vs plain data parallelism for one WeatherMixer training step.

    python scripts/bench_jigsaw.py [--quick] [--repeats 3] [--meshes 1x1x1,1x2x2] [--json FILE]
    (or: jaxlab bench jigsaw)

For each mesh (data, space, tensor) in (1,1,1), (1,2,1), (1,1,2), (1,2,2), (2,2,2), (1,4,2) on 8
host devices (forced with XLA_FLAGS when no accelerator is present), and for plain data parallelism
on (8,1,1) with replicated parameters, it compiles one Adam training step (donated state) and reports
per device: the bytes of parameters and optimiser state actually held, the compiled memory analysis
(arguments, outputs, aliasing, temporaries; peak = arguments + outputs - aliased + temporaries), every
collective of the optimized HLO with its bytes (``jaxlab.parallel.collective_stats``: bytes each
device receives), and the median step time. It first checks that every sharded loss equals the
one-device loss.

Strategies: ``jigsaw`` (the default Jigsaw layers: only local blocks are kept for the backward pass,
which exchanges them again, as the reference does), ``jigsaw+noremat`` (``remat=False``: autodiff of
the forward exchanges, keeping every layer's gathered blocks until its backward), ``gspmd`` (sharding
annotations, XLA places the collectives) and, on (1,1,1), ``local``: the plain one-device model
without shard_map, the reference of ``peak_vs_one_device``. ``peak_vs_best_one_device`` divides by
the smallest one-device peak measured (the exchange-again backward also saves memory on one device).

Jigsaw's received bytes are compared with the scheme's formula (``jigsaw_formula``): per device and
channel layer (in -> out) on ``rows`` local rows, ``f [(K-1)/K rows in + (S-1)/S in out / K]``; per
token layer on ``B D / K`` local channels, ``f [(S-1)/S in B D/K + (K-1)/K in out / S]``, where the
first term is the X gather and the second the kernel exchange; ``f = 3`` with the exchange-again
backward (forward, both gathered again, both reduced) and ``f = 2`` without; plus a ring all-reduce
of each device's parameter shard over ``data``. LayerNorm statistics and bias gathers are not counted.

Model: the paper's C1 proportions (tokens = 4 x hidden, token hidden = tokens / 2, channel hidden =
hidden, 3 blocks) scaled to 1/10: 72 x 144 grid, patch 6 (1,728 tokens), hidden 432, 8 channels,
batch 1 per model instance. CPU step times of 8 fake devices sharing the host's cores only show
relative overheads, and the memory figures are XLA:CPU's schedule. The model FLOP utilisation of the
step on one GPU is ``scripts/bench_mfu.py`` (``jaxlab bench mfu``; H200, paper's C1 size, bf16: 0.80
of the 8192^3 bf16 matmul rate measured in the same run, bench/results/mfu-gpu-c1.json).
Results: bench/results/jigsaw-<backend>.json.
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxlab.core import save_benchmark  # noqa: E402
from jaxlab.methods import weathermixer as wm  # noqa: E402
from jaxlab.parallel import collective_stats, make_mesh, summarize_collectives  # noqa: E402

MESHES = [(1, 1, 1), (1, 2, 1), (1, 1, 2), (1, 2, 2), (2, 2, 2), (1, 4, 2)]


def make_model(quick: bool) -> wm.WeatherMixer:
    if quick:
        return wm.WeatherMixer(grid=(24, 48), channels=8, patch=6, hidden=64, token_hidden=96,
                               channel_hidden=64, num_blocks=1)
    return wm.WeatherMixer(grid=(72, 144), channels=8, patch=6, hidden=432, token_hidden=864,
                           channel_hidden=432, num_blocks=3)


def jigsaw_formula(model: wm.WeatherMixer, batch: int, data: int, space: int, tensor: int,
                   num_params: int, itemsize: int = 4, remat: bool = True) -> dict[str, float]:
    """Bytes one device receives per training step under the Jigsaw scheme (forward + backward).

    Channel layer (in -> out) on ``rows`` local rows: gather X over tensor, kernel ring over space:
    ``f [(K-1)/K rows in + (S-1)/S in out / K]``. Token layer (in -> out) on ``B D / K`` local
    channels: gather X over space, kernel ring over tensor: ``f [(S-1)/S in B D/K + (K-1)/K in out / S]``.
    ``f = 3`` with ``remat`` (the default layers: the backward gathers X and the kernel again, then
    reduce-scatters dX and dW), ``f = 2`` without (the backward only reduces). Data parallelism: a
    ring all-reduce of each device's parameter shard over ``data``.
    """
    S, K = space, tensor
    lat, lon = model.grid
    T, D, C, p = model.num_tokens, model.hidden, model.channels, model.patch
    rows_tok = batch * T / S
    rows_grid = batch * lat * lon / S

    f = 3 if remat else 2

    def channel(rows, din, dout):
        return f * ((K - 1) / K * rows * din + (S - 1) / S * din * dout / K)

    def token(din, dout):
        return f * ((S - 1) / S * din * batch * D / K + (K - 1) / K * din * dout / S)

    per_block = (token(T, model.token_hidden) + token(model.token_hidden, T)
                 + channel(rows_tok, D, model.channel_hidden) + channel(rows_tok, model.channel_hidden, D))
    matmul = channel(rows_tok, C * p, D) + model.num_blocks * per_block + 2 * channel(rows_tok, D, C * p)
    if model.linear_residual:
        matmul += 2 * channel(rows_grid, C, C)
    dp = 2 * (data - 1) / data * num_params / (S * K)
    return {"matmul_bytes": matmul * itemsize, "data_parallel_bytes": dp * itemsize,
            "total_bytes": (matmul + dp) * itemsize}


def _per_device_bytes(tree, device) -> int:
    return wm.opt_state_bytes_per_device(tree, device)


def measure(model, params0, x, y, lat_w, sizes, strategy, repeats, tx, remat=True):
    devices = jax.devices()[: int(np.prod(sizes))]
    mesh = make_mesh(*sizes, devices=devices)
    params = wm.shard_params(jax.tree.map(jnp.copy, params0), mesh, strategy)  # donated below
    opt = wm.init_opt_state(tx, params, mesh, strategy=strategy)
    s_sh = wm.state_sharding(mesh, strategy)
    batch = {"state": jax.device_put(x, s_sh), "target": jax.device_put(y, s_sh),
             "lat_weights": jax.device_put(lat_w, wm.lat_sharding(mesh, strategy))}
    loss_fn = wm.make_loss_fn(model, mesh, strategy=strategy, remat=remat)

    def step(p, o, b):
        loss, g = jax.value_and_grad(lambda q: loss_fn(q, None, b, None)[0])(p)
        upd, o = tx.update(g, o, p)
        return optax.apply_updates(p, upd), o, loss

    jstep = jax.jit(step, donate_argnums=(0, 1))
    t0 = time.perf_counter()
    compiled = jstep.lower(params, opt, batch).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    colls = summarize_collectives(collective_stats(compiled.as_text(), len(devices)))
    dev0 = devices[0]
    state_bytes = _per_device_bytes(params, dev0) + _per_device_bytes(opt, dev0)
    first_loss = None
    times = []
    for r in range(repeats + 1):
        t = time.perf_counter()
        params, opt, loss = compiled(params, opt, batch)
        jax.block_until_ready(loss)
        if r == 0:
            first_loss = float(loss)
        else:
            times.append(time.perf_counter() - t)
    rec = {
        "mesh": list(sizes), "strategy": strategy + ("" if remat or strategy != "jigsaw" else "+noremat"),
        "devices": len(devices),
        "loss": first_loss,
        "param_opt_bytes_per_device": state_bytes,
        "argument_bytes": int(mem.argument_size_in_bytes), "output_bytes": int(mem.output_size_in_bytes),
        "alias_bytes": int(mem.alias_size_in_bytes), "temp_bytes": int(mem.temp_size_in_bytes),
        "peak_bytes_per_device": int(mem.argument_size_in_bytes + mem.output_size_in_bytes
                                     - mem.alias_size_in_bytes + mem.temp_size_in_bytes),
        "collectives": colls,
        "comm_bytes_per_device": colls["total"]["received_bytes"],
        "compile_s": compile_s, "step_s_median": statistics.median(times), "step_s_min": min(times),
    }
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tiny model (seconds per mesh)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default="jigsaw,jigsaw+noremat,gspmd",
                    help="comma list of jigsaw,jigsaw+noremat,gspmd (local runs on 1x1x1 and 8x1x1)")
    ap.add_argument("--meshes", default=None, help="e.g. 1x1x1,1x2x2 (default: all six, plus 8x1x1 data parallel)")
    ap.add_argument("--json", help="output file (default bench/results/jigsaw-<backend>.json)")
    args = ap.parse_args()

    model = make_model(args.quick)
    lat, lon = model.grid
    params0 = wm.init_params(model, key=jax.random.key(0))
    num_params = int(sum(p.size for p in jax.tree.leaves(params0)))
    tx = wm.make_optimizer(1e-4)
    lat_w = jnp.asarray(wm.latitude_weights(wm.grid_latitudes(lat)))

    def data(batch):
        k1, k2 = jax.random.split(jax.random.key(batch))
        shape = (batch, lat, lon, model.channels)
        return jax.random.normal(k1, shape, jnp.float32), jax.random.normal(k2, shape, jnp.float32)

    meta = {"model": {f: getattr(model, f) for f in ("grid", "channels", "patch", "hidden", "token_hidden",
                                                     "channel_hidden", "num_blocks")},
            "num_params": num_params, "batch_per_instance": 1, "dtype": "float32", "quick": args.quick}

    def save(records):
        ones = [r for r in records if r["mesh"] == [1, 1, 1]]
        base = next((r for r in ones if r["strategy"] == "local"), None)
        best = min((r["peak_bytes_per_device"] for r in ones), default=None)
        for r in records if base is not None else []:
            r["peak_vs_one_device"] = r["peak_bytes_per_device"] / base["peak_bytes_per_device"]
            r["peak_vs_best_one_device"] = r["peak_bytes_per_device"] / best
            r["state_vs_one_device"] = r["param_opt_bytes_per_device"] / base["param_opt_bytes_per_device"]
        return save_benchmark("jigsaw", records, path=args.json, **meta)

    ref = {}
    records = []
    meshes = MESHES if args.meshes is None else [tuple(int(v) for v in m.split("x")) for m in args.meshes.split(",")]
    runs = [(m, s) for m in meshes for s in (["local"] if m == (1, 1, 1) else []) + args.strategies.split(",")]
    if args.meshes is None:
        runs.append(((8, 1, 1), "local"))
    for sizes, strategy in runs:
        if sizes == (1, 1, 1) and strategy == "gspmd":
            continue
        d = sizes[0]
        x, y = data(d)
        if d not in ref:  # the one-device loss of the same global batch
            ref[d] = float(jax.jit(lambda p, b: wm.make_loss_fn(model)(p, None, b, None)[0])(
                params0, {"state": x, "target": y, "lat_weights": lat_w}))
        base_strategy, _, extra = strategy.partition("+")
        rec = measure(model, params0, x, y, lat_w, sizes, base_strategy, args.repeats, tx, remat=extra != "noremat")
        rec["loss_rel_err"] = abs(rec["loss"] - ref[d]) / abs(ref[d])
        if rec["loss_rel_err"] > 1e-5:
            raise SystemExit(f"{strategy} on {sizes}: loss {rec['loss']} differs from one device {ref[d]}")
        _, s, t = sizes
        if strategy.startswith("jigsaw"):
            rec["formula"] = jigsaw_formula(model, 1, d, s, t, num_params, remat=strategy == "jigsaw")
        records.append(rec)
        print(f"{strategy:14s} {str(sizes):10s} state/dev {rec['param_opt_bytes_per_device'] / 2**20:8.2f} MiB  "
              f"peak/dev {rec['peak_bytes_per_device'] / 2**20:8.2f} MiB  comm/dev "
              f"{rec['comm_bytes_per_device'] / 2**20:8.2f} MiB"
              + (f" (formula {rec['formula']['total_bytes'] / 2**20:.2f})" if "formula" in rec else "")
              + f"  step {rec['step_s_median'] * 1e3:8.1f} ms", flush=True)
        path = save(records)  # after every record, so a long run keeps what it measured
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
