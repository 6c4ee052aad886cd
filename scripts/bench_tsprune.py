"""Benchmark: what structured and unstructured pruning buy at inference on this machine.

For each zoo model at the chosen width (``--width paper`` is Time-Series-Library's d_model 512 / 8 heads /
d_ff 2048), the dense model and the model with 50% of the heads and FFN units removed
(``jaxlab.prune.shrink``; L2 importance of the initial weights: the values do not matter for time):

1. correctness first: the shrunk model equals the dense model with the removed units masked;
2. FLOPs from XLA's cost analysis (plus top-k, see ``jaxlab.methods.tsprune.xla_flops``), parameters;
3. latency at each batch size: compiled separately, warmed up, medians of >= 20 calls measured
   interleaved between dense and structured (``compare_latency``), with the energy of the timed calls
   (``jaxlab.energy.EnergyMeter``: RAPL where readable, else flagged estimates);
4. ``--profile``: per-op profiles (``jax.profiler``) of dense and structured at the smallest and largest
   batch, per kind of op;
5. ``--sparse``: the FFN kernels of the model at the paper's width, magnitude-pruned to s = 0.9, 0.95,
   0.99, as ``jaxlab.sparse`` CSR and ELL matrices times the activations (tokens = batch x input
   length), against the dense product, timed interleaved with it (``compare_latency``).

Results go to bench/results/tsprune-<backend>[-<tag>].json. Wall times on a shared machine are
inflated by other jobs: compare the ratios within one run.

    python scripts/bench_tsprune.py --width paper --batches 1,32,256 --profile --sparse
    jaxlab bench tsprune -- --width bench --models transformer,autoformer
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxlab import prune  # noqa: E402
from jaxlab import timeseries as ts  # noqa: E402
from jaxlab.core import save_benchmark, tolerances  # noqa: E402
from jaxlab.energy import EnergyMeter  # noqa: E402
from jaxlab.methods import tsprune  # noqa: E402

WIDTHS = {"cpu": (32, 4, 128), "bench": (128, 8, 512), "paper": (512, 8, 2048)}


def _random_variables(model, x, seed=0):
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        if str(getattr(path[-1], "key", path[-1])) == "var":
            return np.ones(s.shape, s.dtype)
        fan_in = s.shape[0] if len(s.shape) > 1 else 1
        return (rng.normal(size=s.shape) / np.sqrt(max(fan_in, 1))).astype(s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def bench_model(name, sizes, channels, batches, repeats, meter, profile):
    cfg = tsprune.zoo_config(name, sizes, channels=channels, horizon=96)
    model = cfg.module()
    x2 = jnp.zeros((2, sizes.input_len, channels), jnp.float32)
    variables = _random_variables(model, x2)
    keep = tsprune.structured_keep(cfg, variables, 0.5, kinds=("heads", "ffn"))
    small_cfg, small = prune.shrink(cfg, variables, keep)
    small_model = small_cfg.module()
    # correctness: shrunk == masked dense
    xr = jax.random.normal(jax.random.key(1), (2, sizes.input_len, channels), jnp.float32)
    masks = prune.structured_masks(cfg, variables, keep)
    want = jax.jit(model.apply)(jax.tree.map(lambda v, m: v * m, variables, masks), xr)
    got = jax.jit(small_model.apply)(small, xr)
    atol, rtol = tolerances(jnp.float32)
    scale = float(np.max(np.abs(np.asarray(want)))) + 1e-30
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want)))) / scale
    if err > 100 * rtol:
        raise AssertionError(f"{name}: shrunk model differs from the masked dense one by {err:.2e} (relative)")
    rows = []
    tf = sizes.time_features
    for b in batches:
        x = jax.random.normal(jax.random.key(b), (b, sizes.input_len, channels), jnp.float32)
        xm = jnp.zeros((b, sizes.input_len, tf), jnp.float32)
        fm = jnp.zeros((b, 96, tf), jnp.float32)
        cases, flops = {}, {}
        for variant, (m, v) in (("dense", (model, variables)), ("structured", (small_model, small))):
            fn = lambda v, x, xm, fm, m=m: m.apply(v, x, xm, fm)  # noqa: E731
            args = (jax.device_put(v), x, xm, fm)
            cases[variant] = (fn, args)
            flops[variant] = tsprune.xla_flops(fn, *args)
        lat = tsprune.compare_latency(cases, repeats=repeats, meter=meter)
        row = {"model": name, "batch": b, "width": [sizes.d_model, sizes.n_heads, sizes.d_ff], "channels": channels,
               "check_rel_err": err,
               "params": {"dense": tsprune.count_params(variables["params"]),
                          "structured": tsprune.count_params(small["params"])}}
        for variant in cases:
            row[variant] = {**lat[variant], **flops[variant]}
        row["speedup"] = lat["dense"]["median_s"] / lat["structured"]["median_s"]
        row["flop_ratio"] = flops["dense"]["flops"] / flops["structured"]["flops"]
        if profile and b in (min(batches), max(batches)):
            row["profile"] = {variant: tsprune.op_profile(fn, *args) for variant, (fn, args) in cases.items()}
        rows.append(row)
        print(f"{name:12s} batch {b:4d}: dense {lat['dense']['median_s'] * 1e3:9.2f} ms, structured "
              f"{lat['structured']['median_s'] * 1e3:9.2f} ms, speed-up {row['speedup']:.2f}x, "
              f"FLOP ratio {row['flop_ratio']:.2f}", flush=True)
    return rows


def flop_table(sizes, channels, fractions):
    """FLOPs (XLA cost analysis, batch 1) and parameters of every model with ``fraction`` of its heads and FFN
    units removed (and of every prunable group, for the models that have more), compiled but not run."""
    rows = []
    for name in tsprune.MODELS:
        cfg = tsprune.zoo_config(name, sizes, channels=channels, horizon=96)
        model = cfg.module()
        x = jnp.zeros((1, sizes.input_len, channels), jnp.float32)
        variables = _random_variables(model, x)
        tf = sizes.time_features
        marks = (jnp.zeros((1, sizes.input_len, tf), jnp.float32), jnp.zeros((1, 96, tf), jnp.float32))
        dense = tsprune.xla_flops(lambda v, x, a, b, m=model: m.apply(v, x, a, b), variables, x, *marks)
        for frac in fractions:
            for kinds in (("heads", "ffn"), ("heads", "ffn", "channels", "routers", "modes")):
                if len(kinds) > 2 and name in ("transformer", "autoformer"):
                    continue
                keep = tsprune.structured_keep(cfg, variables, frac, kinds=kinds)
                small_cfg, small = prune.shrink(cfg, variables, keep)
                sm = small_cfg.module()
                fl = tsprune.xla_flops(lambda v, x, a, b, m=sm: m.apply(v, x, a, b), small, x, *marks)
                rows.append({"model": name, "fraction": frac, "groups": "+".join(kinds),
                             "dense_flops": dense["flops"], "flops": fl["flops"],
                             "flop_ratio": dense["flops"] / fl["flops"],
                             "dense_params": tsprune.count_params(variables["params"]),
                             "params": tsprune.count_params(small["params"])})
                print(f"flops {name:12s} remove {frac:.3f} of {'+'.join(kinds):36s}: "
                      f"{dense['flops'] / 1e9:8.3f} -> {fl['flops'] / 1e9:8.3f} GFLOP ({rows[-1]['flop_ratio']:.2f}x)",
                      flush=True)
    return rows


def bench_sparse(sizes, channels, batches, repeats, sparsities, formats):
    cfg = tsprune.zoo_config("transformer", sizes, channels=channels, horizon=96)
    model = cfg.module()
    variables = _random_variables(model, jnp.zeros((1, sizes.input_len, channels), jnp.float32))
    kernels = {k: v for k, v in tsprune.dense_kernels(variables["params"]) if "encoder_0/ffn" in k}
    rows = []
    for s in sparsities:
        masks = tsprune.magnitude_masks(variables["params"], s, scope="layer")
        pruned = prune.apply_masks(variables["params"], masks)
        for path, _ in kernels.items():
            leaf = pruned
            for k in path.split("/"):
                leaf = leaf[k]
            for r in tsprune.sparse_dense_layers(np.asarray(leaf), [b * sizes.input_len for b in batches],
                                                 formats=formats, repeats=repeats):
                r.update(layer=path, sparsity=s)
                rows.append(r)
                best = max((r[f"{f}_speedup"], f) for f in formats)
                print(f"sparse {path} s={s}: tokens {r['tokens']:6d} dense {r['dense_s'] * 1e3:8.2f} ms, "
                      + ", ".join(f"{f} {r[f + '_s'] * 1e3:8.2f} ms" for f in formats)
                      + f" (best {best[1]} {best[0]:.2f}x)", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", choices=sorted(WIDTHS), default="bench", help="d_model/heads/d_ff preset")
    p.add_argument("--models", default=",".join(tsprune.MODELS))
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--channels", type=int, default=21, help="series channels (21: the NYC weather width)")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--profile", action="store_true", help="per-op profiles at the smallest and largest batch")
    p.add_argument("--sparse", action="store_true", help="time the FFN kernels through jaxlab.sparse")
    p.add_argument("--sparse-only", action="store_true", help="only the sparse part")
    p.add_argument("--sparse-width", choices=sorted(WIDTHS), default="paper")
    p.add_argument("--sparse-batches", default="1,32,256")
    p.add_argument("--formats", default="csr,ell")
    p.add_argument("--flop-fractions", default="", help="only a FLOP table for these removed fractions, e.g. 0.5,0.875")
    p.add_argument("--tag", default="", help="suffix of the result file")
    p.add_argument("--json", default=None, help="result file (default bench/results/tsprune-<backend>[-tag].json)")
    p.add_argument("--plot-from", nargs="+", default=None, metavar="JSON",
                   help="measure nothing: plot the latency records of these result files (latency against FLOP "
                        "ratio) into --png")
    p.add_argument("--png", default=None, help="the plot (default: beside the result file, .png)")
    args = p.parse_args(argv)
    if args.plot_from:
        rows = [r for f in args.plot_from for r in json.loads(Path(f).read_text())["records"]
                if r.get("part") == "latency"]
        if not rows:
            p.error(f"no latency records in {args.plot_from}: run the benchmark without --sparse-only first")
        out = tsprune.plot_latency_vs_flops(rows, args.png or "bench/results/tsprune-latency-vs-flops.png",
                                            title=f"structured pruning (50% heads + FFN), {len(rows)} points")
        print(f"wrote {out}")
        return
    d, h, f = WIDTHS[args.width]
    sizes = tsprune.ZooSizes(d_model=d, n_heads=h, d_ff=f, time_features=ts.NUM_TIME_FEATURES)
    batches = [int(b) for b in args.batches.split(",")]
    meter = EnergyMeter()
    t0, load0 = time.perf_counter(), list(os.getloadavg())
    records = []
    if args.flop_fractions:
        records += [{"part": "flops", **r} for r in flop_table(sizes, args.channels,
                                                                [float(f) for f in args.flop_fractions.split(",")])]
    elif not args.sparse_only:
        for name in args.models.split(","):
            records += [{"part": "latency", **r} for r in bench_model(name, sizes, args.channels, batches,
                                                                       args.repeats, meter, args.profile)]
    if args.sparse or args.sparse_only:
        sd, sh, sf = WIDTHS[args.sparse_width]
        ssizes = tsprune.ZooSizes(d_model=sd, n_heads=sh, d_ff=sf, time_features=ts.NUM_TIME_FEATURES)
        records += [{"part": "sparse", **r} for r in bench_sparse(
            ssizes, args.channels, [int(b) for b in args.sparse_batches.split(",")], args.repeats,
            (0.9, 0.95, 0.99), args.formats.split(","))]
    name = "tsprune" if not args.tag else f"tsprune-{args.tag}"
    path = save_benchmark(name, records, args.json, width=args.width, batches=batches, repeats=args.repeats,
                          channels=args.channels, wall_s=time.perf_counter() - t0,
                          command=" ".join(["scripts/bench_tsprune.py", *(sys.argv[1:] if argv is None else argv)]),
                          loadavg_start=load0, loadavg_end=list(os.getloadavg()),
                          notes="latency: medians of interleaved dense/structured calls; structured = 50% of the "
                                "heads and FFN units removed; sparse: dense, CSR and ELL products timed interleaved "
                                "(compare_latency, medians); energy from jaxlab.energy.EnergyMeter "
                                "(estimated where RAPL is unreadable)")
    print(f"wrote {path}")
    latency = [r for r in records if r["part"] == "latency"]
    if latency:
        print(f"wrote {tsprune.plot_latency_vs_flops(latency, args.png or Path(path).with_suffix('.png'))}")


if __name__ == "__main__":
    main()
