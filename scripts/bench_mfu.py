"""Model FLOP utilisation of one WeatherMixer training step on one accelerator, against the bf16 matmul rate.

    python scripts/bench_mfu.py [--sizes c1,t4320] [--steps 10] [--json FILE]      (or: jaxlab bench mfu)
    python scripts/bench_mfu.py --quick                                             (tiny shapes, any backend)

In one process it measures (1) the dense bf16 matmul rate (8192^3, random data: the ceiling, as in
PEERS.md), (2) a bare MLP-mixer training step in plain jnp (3 blocks, LayerNorm, token MLP T -> T/2 -> T,
channel MLP D -> D -> D, exact GELU, residuals, MSE, SGD), the peer that PEERS.md quotes at 73-81%, and
(3) jaxlab's WeatherMixer training step (`jaxlab.methods.weathermixer`, one device, batch 1) in these
precisions:

* ``bf16``: parameters, activations and Adam moments in bfloat16;
* ``mixed``: float32 master parameters and Adam moments, compute in bfloat16 (parameters cast inside the loss);

each with the paper's optimiser (global-norm clipping + Adam, lower rate on embedding/recovery; others
with ``--optimizers``) and, for the split of the time, the gradient alone (no optimiser update).
(A hand-fused one-pass clip + Adam ran exactly as fast as optax's chain on an H200: XLA fuses it.)

Model FLOPs are counted from the shapes (every dense layer's 2*M*K*N, times 3 for forward +
backward, the usual MFU convention; XLA's own count of the compiled step is reported beside it).
MFU = model FLOPs / step time / measured matmul rate (the higher of a measurement after a warm-up at
the start and one at the end of the run: on the first H200 runs the start-of-run rate, 689 TFLOP/s
without warm-up, was below the card's 787 and the gradient-only step ran faster than it).
Sizes: ``c1`` is the paper's C1
(720 x 1440 grid, 72 channels, patch 60: T = 17,280 tokens, D = 4,320, token hidden 8,640, channel
hidden 4,320, 3 blocks, 1.06 B parameters); ``t4320`` the same with 180 latitude rows (T = D = 4,320,
token hidden 2,160). Step time: ``--steps`` donated steps back to back after two warm-up steps, then
one block_until_ready, divided by the count (dispatch overlapped, as in training).
Results: bench/results/mfu-<backend>.json.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab.core import save_benchmark
from jaxlab.methods import weathermixer as wm


def _model(grid, channels, patch, hidden, token_hidden, channel_hidden, num_blocks=3):
    return wm.WeatherMixer(grid=grid, channels=channels, patch=patch, hidden=hidden, token_hidden=token_hidden,
                           channel_hidden=channel_hidden, num_blocks=num_blocks)


SIZES = {
    "c1": _model((720, 1440), 72, 60, 4320, 8640, 4320),
    "t4320": _model((180, 1440), 72, 60, 4320, 2160, 4320),
    "tiny": _model((8, 32), 4, 4, 64, 32, 64, 2),
}
SHAPE_FIELDS = ("grid", "channels", "patch", "hidden", "token_hidden", "channel_hidden", "num_blocks")


def model_flops(s: wm.WeatherMixer, batch: int = 1) -> float:
    """Forward + backward matmul FLOPs of one WeatherMixer step (3 x the forward's dense layers)."""
    t, d, cp = s.num_tokens, s.hidden, s.channels * s.patch
    fwd = 2 * t * cp * d  # embedding
    fwd += s.num_blocks * (2 * 2 * t * s.token_hidden * d + 2 * 2 * t * d * s.channel_hidden)
    fwd += 2 * 2 * t * d * cp  # recovery (latent and skip parts)
    fwd += 2 * 2 * (s.grid[0] * s.grid[1]) * s.channels * s.channels  # linear residual head
    return 3.0 * batch * fwd


def bare_flops(t: int, d: int, blocks: int = 3) -> float:
    return 3.0 * blocks * (2 * 2 * t * (t // 2) * d + 2 * 2 * t * d * d)


#: Dense bf16 peaks from the vendors' spec sheets (FLOP/s, no sparsity), by a substring of jax's device_kind.
SPEC_PEAK_BF16 = {"H200": 989e12, "A100": 312e12}  # H200 SXM; A100 SXM and PCIe


def spec_peak_flops(device_kind: str) -> float | None:
    """The spec dense bf16 peak of a device (None when the table does not know it, e.g. a CPU)."""
    return next((v for k, v in SPEC_PEAK_BF16.items() if k.lower() in device_kind.lower()), None)


def matmul_rate(n: int, repeats: int, inner: int = 10) -> dict:
    """bf16 ``n^3`` matmul rate: median over ``repeats`` of ``inner`` products issued back to back."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (n, n), jnp.bfloat16)
    b = jax.random.normal(kb, (n, n), jnp.bfloat16)
    f = jax.jit(lambda a, b: a @ b)
    f(a, b).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = [f(a, b) for _ in range(inner)]
        jax.block_until_ready(outs)
        times.append((time.perf_counter() - t0) / inner)
    best = float(np.median(times))
    return {"n": n, "median_s": best, "flops_per_s": 2.0 * n**3 / best, "inner": inner}


def time_steps(step, state, args, steps: int):
    """Compiles ``step(state, *args) -> (state, loss)`` (state donated), runs 2 warm-up steps, then
    ``steps`` back to back; returns (seconds per step, compile seconds, XLA flops, memory, last loss)."""
    t0 = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0,)).lower(state, *args).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    xla_flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
    try:
        m = compiled.memory_analysis()
        mem = {"argument_bytes": int(m.argument_size_in_bytes), "temp_bytes": int(m.temp_size_in_bytes),
               "output_bytes": int(m.output_size_in_bytes), "alias_bytes": int(m.alias_size_in_bytes)}
    except Exception:  # noqa: BLE001  (not every backend reports it)
        mem = {}
    for _ in range(2):
        state, loss = compiled(state, *args)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, loss = compiled(state, *args)
    jax.block_until_ready((state, loss))
    per_step = (time.perf_counter() - t0) / steps
    return per_step, compile_s, xla_flops, mem, float(loss)


# --- the peer: a bare mixer in plain jnp ---------------------------------------------------------

def bare_init(key, t: int, d: int, blocks: int, dtype):
    def dense(k, fin, fout):
        return {"w": (jax.random.normal(k, (fin, fout)) / math.sqrt(fin)).astype(dtype), "b": jnp.zeros((fout,), dtype)}

    layers = []
    for k in jax.random.split(key, blocks):
        k1, k2, k3, k4 = jax.random.split(k, 4)
        layers.append({"t1": dense(k1, t, t // 2), "t2": dense(k2, t // 2, t),
                       "c1": dense(k3, d, d), "c2": dense(k4, d, d),
                       "g1": jnp.ones((d,), dtype), "g2": jnp.ones((d,), dtype)})
    return layers


def _ln(x, g):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * g


def bare_loss(params, x, y):
    for p in params:
        h = _ln(x, p["g1"])  # (T, D); token mixing contracts T
        h = jax.nn.gelu(jnp.einsum("td,tu->ud", h, p["t1"]["w"]) + p["t1"]["b"][:, None], approximate=False)
        x = x + jnp.einsum("ud,ut->td", h, p["t2"]["w"]) + p["t2"]["b"][:, None]
        h = _ln(x, p["g2"])
        h = jax.nn.gelu(h @ p["c1"]["w"] + p["c1"]["b"], approximate=False)
        x = x + h @ p["c2"]["w"] + p["c2"]["b"]
    return jnp.mean(jnp.square((x - y).astype(jnp.float32)))


def bench_bare(t: int, d: int, steps: int, lr: float = 1e-3):
    params = bare_init(jax.random.key(1), t, d, 3, jnp.bfloat16)
    x = jax.random.normal(jax.random.key(2), (t, d), jnp.bfloat16)
    y = jax.random.normal(jax.random.key(3), (t, d), jnp.bfloat16)

    def step(params, x, y):
        loss, g = jax.value_and_grad(bare_loss)(params, x, y)
        return jax.tree.map(lambda p, g: p - jnp.asarray(lr, p.dtype) * g, params, g), loss

    return time_steps(step, params, (x, y), steps)


# --- WeatherMixer -------------------------------------------------------------------------------

def bench_weathermixer(s: wm.WeatherMixer, precision: str, with_update: bool, steps: int, optimizer: str = "paper"):
    model = s.clone(param_dtype=jnp.bfloat16 if precision == "bf16" else jnp.float32)
    params = wm.init_params(model, key=jax.random.key(0))
    shape = (1, *s.grid, s.channels)
    state_x = jax.random.normal(jax.random.key(1), shape, jnp.bfloat16)
    target = jax.random.normal(jax.random.key(2), shape, jnp.bfloat16)
    lat_w = jnp.asarray(wm.latitude_weights(wm.grid_latitudes(s.grid[0])))
    apply = wm.make_apply(model)

    def loss_fn(p, x, y):
        if precision == "mixed":
            p = jax.tree.map(lambda v: v.astype(jnp.bfloat16), p)
        pred = apply(p, x)
        return wm.weighted_mse(pred.astype(jnp.float32), y.astype(jnp.float32), lat_w)

    if with_update:
        tx = {"paper": lambda: wm.make_optimizer(1e-4, io_learning_rate=2e-5, clip_norm=1.0),
              "adam": lambda: optax.adam(1e-4),
              "clip_adam": lambda: optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-4)),
              "sgd": lambda: optax.sgd(1e-4)}[optimizer]()
        carry = (params, jax.jit(tx.init)(params))

        def step(carry, x, y):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), loss
    else:
        carry = params

        def step(p, x, y):
            loss, g = jax.value_and_grad(loss_fn)(p, x, y)
            # Keep the gradient alive without an optimiser: return it as the new "state".
            return g, loss

    n_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params))
    return time_steps(step, carry, (state_x, target), steps), n_params


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="c1,t4320")
    ap.add_argument("--precisions", default="bf16,mixed")
    ap.add_argument("--grad-only", default="bf16", help="precisions also timed without the optimiser update")
    ap.add_argument("--optimizers", default="paper",
                    help="paper (clip + Adam with an io rate, as in make_optimizer), adam, clip_adam, sgd")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--matmul", type=int, default=8192)
    ap.add_argument("--no-bare", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a check that the script runs)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.matmul, args.steps = "tiny", 256, 2
    elif jax.default_backend() == "cpu":
        # The C1 model has a billion parameters: on CPU one step takes many minutes. Say so instead.
        raise SystemExit("needs a GPU (jax sees only CPU devices) for the C1-sized WeatherMixer; "
                         "`jaxlab bench mfu --quick` checks the script with tiny shapes on any backend (about 35 CPU-seconds)")

    # Warm the chip up first (clocks ramp), then measure the ceiling; it is measured again at the end
    # and the higher figure is the one MFU is taken against.
    matmul_rate(args.matmul, repeats=2 if args.quick else 100)
    mm = matmul_rate(args.matmul, repeats=3 if args.quick else 20)
    rate = mm["flops_per_s"]
    print(f"bf16 matmul {args.matmul}^3: {rate / 1e12:.1f} TFLOP/s", flush=True)
    records = []

    peak = spec_peak_flops(jax.devices()[0].device_kind)

    def rates(rec):
        per_s = rec["model_flops"] / rec["step_s"]
        rec["fraction_of_matmul"] = per_s / rate  # of the bf16 matmul rate measured in this run
        rec["mfu"] = per_s / peak if peak else None  # of the spec sheet's dense bf16 peak (None: unknown device)

    def report(rec):
        rates(rec)
        rec["model_tflops_per_s"] = rec["model_flops"] / rec["step_s"] / 1e12
        records.append(rec)
        mfu = "MFU n/a" if rec["mfu"] is None else f"MFU {rec['mfu']:.3f}"
        print(f"{rec['name']:36s} {rec['step_s'] * 1e3:9.2f} ms  {rec['model_tflops_per_s']:7.1f} TFLOP/s  "
              f"{rec['fraction_of_matmul']:.3f} of matmul, {mfu}  (XLA flops / model "
              f"{rec['xla_flops'] / rec['model_flops']:.2f}, compile {rec['compile_s']:.0f} s)", flush=True)

    for name in args.sizes.split(","):
        s = SIZES[name]
        if not args.no_bare:
            t, d = s.num_tokens, s.hidden
            sec, comp, xf, mem, loss = bench_bare(t, d, args.steps)
            report({"name": f"bare mixer T={t} D={d}", "size": name, "kind": "bare", "step_s": sec,
                    "compile_s": comp, "xla_flops": xf, "model_flops": bare_flops(t, d), "loss": loss, **mem})
        runs = [(pr, True, opt) for pr in args.precisions.split(",") for opt in args.optimizers.split(",")]
        runs += [(pr, False, "none") for pr in args.precisions.split(",") if pr in args.grad_only.split(",")]
        for precision, with_update, optimizer in runs:
            try:
                (sec, comp, xf, mem, loss), n_params = bench_weathermixer(s, precision, with_update, args.steps,
                                                                          optimizer)
            except Exception as e:  # noqa: BLE001  (e.g. out of memory: report it, go on with the rest)
                print(f"weathermixer {name} {precision}: failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
                continue
            what = f"step ({optimizer})" if with_update else "grad only"
            report({"name": f"weathermixer {name} {precision} {what}", "size": name, "kind": "weathermixer",
                    "precision": precision, "with_update": with_update, "optimizer": optimizer,
                    "num_params": n_params,
                    "step_s": sec, "compile_s": comp, "xla_flops": xf, "model_flops": model_flops(s),
                    "loss": loss, **mem, **{f: getattr(s, f) for f in SHAPE_FIELDS}})
    mm_end = matmul_rate(args.matmul, repeats=3 if args.quick else 20)
    print(f"bf16 matmul {args.matmul}^3 again at the end: {mm_end['flops_per_s'] / 1e12:.1f} TFLOP/s", flush=True)
    if mm_end["flops_per_s"] > rate:
        rate = mm_end["flops_per_s"]
        for rec in records:
            rates(rec)
        print("fraction of matmul recomputed against the higher end-of-run rate:", ", ".join(
            f"{r['name']} {r['fraction_of_matmul']:.3f}" for r in records), flush=True)
    path = save_benchmark("mfu", records, path=args.json, matmul=mm, matmul_end=mm_end, matmul_rate_used=rate,
                          spec_peak_flops=peak,
                          note="model FLOPs = 3 x forward dense layers; fraction_of_matmul = model FLOP/s / measured "
                               "bf16 matmul rate; mfu = model FLOP/s / spec dense bf16 peak (SPEC_PEAK_BF16)")
    print(f"wrote {path}")
    return records


if __name__ == "__main__":
    main()
