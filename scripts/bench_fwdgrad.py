"""Time, memory and FLOPs of one training step: forward gradients (jvp mode) against backprop.

An MLP of depth 16, width 1024 (ReLU), MSE loss, plain SGD, float32 by default, batch 256 (``--batch``;
the issue's goals use 8192 for memory and time and 2048 for the depth sweep ``--depths 8,32``). For each
k (``--ks``) and aggregation (mean, projection) it measures the step for every ``tangent_batch_size``
in ``--tangent-batch-sizes``: ``held`` keeps all k tangents at once (``tangent_batch_size=None``); b
streams them b at a time (each leaf's tangent drawn where its layer runs, regenerated from the key for
the update; with ``fuse_combination=True``, SGD's fast path, XLA forms the estimate inside the in-place
update; ``--fuse-combination 0`` measures the general path). ``divisors`` means 1, 2, 4, ... up to k.
Before measuring, the k = n projection estimate of a tiny MLP is checked against ``jax.grad``.

What the numbers mean:

* Memory, from XLA's compiled memory analysis of the jitted step, whose train state is donated:
  ``peak`` = arguments + outputs - aliased + temp; ``floor`` = arguments + outputs - aliased (the train
  state and the batch, held by every method); ``temp`` = peak - floor, the step's working memory
  (backprop: the activations kept for the backward pass and the gradient; forward gradients: tangents,
  the JVP's working set, the estimate). On a GPU each step also runs once in a fresh process and
  ``runtime_peak_bytes`` is ``memory_stats()["peak_bytes_in_use"]`` there (``runtime_floor_bytes``: in
  use before the step).
* FLOPs: ``xla_flops`` is XLA's cost analysis of the compiled step, which counts a loop body once;
  ``xla_dot_flops`` sums the dot products of the optimised HLO with every loop body multiplied by its
  known trip count (elementwise work such as drawing the tangents is not in it). The FLOP floor of the
  issue is ``(2k + 1) / 3`` backprop steps (1 primal and 2 tangent matmuls per layer and tangent, 3 per
  layer for backprop); ``model_dot_flops`` is the exact count for this MLP: backprop 3D - 1 matmuls
  (no input gradient for the first layer); a streamed step (k / b) D primal matmuls and 2D - 1 per
  tangent, plus ``2 k^2 n`` for the projection's Gram matrix.
* Time: the median over ``--repeats`` calls of the same donated step (each on a fresh copy of the state,
  made before the clock starts; after one warm-up call; the compile time is recorded apart),
  taken round-robin over all steps so that load from other processes on a shared machine affects them
  alike. ``time_ratio_vs_backprop`` divides by backprop's median of the same run; ``time_vs_floor``
  divides that by ``(2k + 1) / 3``; ``time_per_dot_flop_vs_backprop`` divides it by the dot-FLOP ratio
  (above 1: slower per FLOP than backprop, from drawing tangents or less efficient matmuls).

Usage: python scripts/bench_fwdgrad.py [--depth 16 --width 1024 --batch 256 --ks 1,4,16 --repeats 3]
       (or ``jaxlab bench fwdgrad``); ``--tiny`` for a seconds-long smoke run (the GPU suite calls
       :func:`run`). Writes bench/results/fwdgrad-<backend>.json (``--json`` to choose).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import fwdgrad
from jaxlab.core import environment_info, save_benchmark, to_jsonable
from jaxlab.train import TrainState, make_train_step

#: The sizes of ``--tiny`` / ``run(tiny=True)``: a smoke run in seconds (the GPU suite's check).
TINY = dict(depths=(3,), width=64, batch=32)


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
    """k = n projection == jax.grad on a tiny MLP (float32 tolerance), held and streamed."""
    params = init_mlp(jax.random.key(1), 2, 2, jnp.float32)
    batch = (jax.random.normal(jax.random.key(2), (3, 2)), jnp.zeros((3, 2)))
    n = fwdgrad.num_parameters(params)
    f = lambda p: mlp_loss(p, None, batch, None)[0]  # noqa: E731
    ref = jax.grad(f)(params)
    scale = max(float(jnp.max(jnp.abs(b))) for b in jax.tree.leaves(ref))
    # Tiny programs that run once: backend level 0 compiles them in less time and computes the same function.
    quick = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    estimates = jax.jit(lambda p, key: [fwdgrad.forward_gradient(f, p, key=key, num_tangents=n, mode="jvp",
                                                                 tangent_batch_size=tb)[0] for tb in (None, 4)],
                        compiler_options=quick)
    err = max(float(jnp.max(jnp.abs(a - b))) for est in estimates(params, jax.random.key(3))
              for a, b in zip(jax.tree.leaves(est), jax.tree.leaves(ref)))
    # The linearising peer draws the same tangents as the streamed mean.
    peer, streamed = jax.jit(lambda p, key: [
        gf(mlp_loss, p, None, batch, key)[1] for gf in (_linearized_grad_fn(3), fwdgrad.make_grad_fn(
            num_tangents=3, aggregation="mean", tangent_batch_size=1))],
        compiler_options=quick)(params, jax.random.key(4))
    err = max(err, *(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(peer), jax.tree.leaves(streamed))))
    if not err <= 1e-3 * scale:
        raise SystemExit(f"correctness check failed: max |projection(k=n) - grad| = {err:.3g} (scale {scale:.3g})")
    return err


# --- FLOPs ------------------------------------------------------------------------------------------

_COMPUTATION = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)\s*\((.*)\)\s*->.*\{\s*$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_OP = re.compile(r"\s*([\w\-]+)\((.*)$")
_SHAPE = re.compile(r"^[a-z]+\d*\[([\d,]*)\]")
_PARAM = re.compile(r"%?([\w.\-]+):\s*([a-z]+\d*\[[\d,]*\])")


def _split_instruction(line: str):
    """``(name, result shape, opcode, rest)`` of one HLO instruction line, or None."""
    m = _INSTRUCTION.match(line)
    if not m:
        return None
    var, rhs = m.groups()
    if rhs.startswith("("):  # a tuple shape, which contains spaces: skip to its closing parenthesis
        depth = 0
        for i, ch in enumerate(rhs):
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                break
        shape, tail = rhs[:i + 1], rhs[i + 1:]
    else:
        shape, _, tail = rhs.partition(" ")
    op = _OP.match(tail)
    return (var, shape, op.group(1), op.group(2)) if op else None


def _dims(shape: str) -> list[int] | None:
    m = _SHAPE.match(shape)
    return [int(d) for d in m.group(1).split(",") if d] if m else None


def dot_flops(hlo_text: str) -> tuple[float, bool]:
    """FLOPs of the dot products in an optimised HLO module, loop bodies times their known trip count.

    XLA's own cost analysis counts a ``while`` body once; here each dot counts ``2 * prod(result) *
    prod(contracted)``, every called computation (fusions, calls, loop bodies, conditional branches:
    the most expensive one) contributes times its number of calls.

    Returns:
      ``(flops, exact)``; ``exact`` is False when some loop had no known trip count (counted once).
    """
    own: dict[str, float] = {}
    calls: dict[str, list[tuple[str, int]]] = {}
    branches: dict[str, list[list[str]]] = {}
    entry, exact, name, shapes = None, True, None, {}
    for line in hlo_text.splitlines():
        m = _COMPUTATION.match(line)
        if m:
            name = m.group(1)
            if line.lstrip().startswith("ENTRY"):
                entry = name
            own[name], calls[name], branches[name] = 0.0, [], []
            shapes = {p: s for p, s in _PARAM.findall(m.group(2))}
            continue
        if name is None:
            continue
        parts = _split_instruction(line)
        if parts is None:
            continue
        var, shape, op, rest = parts
        shapes[var] = shape
        if op == "dot":
            lhs = re.match(r"\s*%?([\w.\-]+)", rest).group(1)
            contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
            lhs_dims, out_dims = _dims(shapes.get(lhs, "")), _dims(shape)
            if lhs_dims is not None and out_dims is not None and contracting:
                k = math.prod(lhs_dims[int(d)] for d in contracting.group(1).split(",") if d)
                own[name] += 2.0 * math.prod(out_dims) * k
        times = 1
        if op == "while":
            trip = re.search(r'"known_trip_count":\{"n":"(\d+)"', rest)
            times = int(trip.group(1)) if trip else 1
            exact = exact and trip is not None
        for key in ("calls", "to_apply", "body"):
            for callee in re.findall(rf"\b{key}=%?([\w.\-]+)", rest):
                calls[name].append((callee, times))
        b = re.search(r"branch_computations=\{([^}]*)\}", rest)
        if b:
            branches[name].append([c.strip().lstrip("%") for c in b.group(1).split(",")])
        pair = [re.search(rf"\b{key}=%?([\w.\-]+)", rest) for key in ("true_computation", "false_computation")]
        if all(pair):
            branches[name].append([p.group(1) for p in pair])

    memo: dict[str, float] = {}

    def total(c: str) -> float:
        if c not in memo:
            memo[c] = 0.0  # guards against cycles
            memo[c] = own.get(c, 0.0) + sum(n * total(x) for x, n in calls.get(c, [])) + sum(
                max(total(x) for x in group) for group in branches.get(c, []) if group)
        return memo[c]

    return (total(entry) if entry else 0.0), exact


def model_dot_flops(method: str, k: int | None, b: int | None, aggregation: str | None, depth: int, width: int,
                    batch: int) -> float:
    """Dot FLOPs of one step of this MLP by counting matmuls (see the module docstring)."""
    unit = 2.0 * batch * width * width
    if method == "backprop":
        return (3 * depth - 1) * unit
    passes = 1 if (b is None or method == "linearize") else k // b
    flops = (passes * depth + k * (2 * depth - 1)) * unit
    if aggregation in ("projection", "projection_per_leaf"):
        flops += 2.0 * k * k * depth * (width * width + width)
    return flops


def flop_floor(k: int) -> float:
    """The issue's floor of a k-tangent step, in backprop steps: (2k + 1) / 3."""
    return (2 * k + 1) / 3


# --- one step -----------------------------------------------------------------------------------------

def _setup(depth, width, batch, dtype):
    params = init_mlp(jax.random.key(0), depth, width, dtype)
    data = (jax.random.normal(jax.random.key(1), (batch, width), dtype), jnp.zeros((batch, width), dtype))
    return params, data, optax.sgd(1e-3), jax.random.key(2)


def _linearized_grad_fn(k):
    """Peer: linearise once (``jax.linearize``: the primal once, its residuals held), then scan the k
    tangents through the linear map; the mean, combined with the tangents regenerated from the key."""

    def grad_fn(loss_fn, params, model_state, batch, key):
        loss_key, tangent_key = jax.random.split(key)
        f = lambda p: loss_fn(p, model_state, batch, loss_key)  # noqa: E731
        loss, f_jvp = jax.linearize(lambda p: f(p)[0], params)
        _, d = jax.lax.scan(lambda c, i: (c, f_jvp(fwdgrad.sample_tangent(tangent_key, params, i))), None,
                            jnp.arange(k))

        def add(acc, i):
            v = fwdgrad.sample_tangent(tangent_key, params, i)
            return jax.tree.map(lambda a, t: a + (d[i] / k).astype(t.dtype) * t, acc, v), None

        grads, _ = jax.lax.scan(add, jax.tree.map(jnp.zeros_like, params), jnp.arange(k))
        return (loss, ({}, model_state)), grads

    return grad_fn


def _raw_step(cfg, tx):
    grad_fn = None
    if cfg["method"] == "linearize":
        grad_fn = _linearized_grad_fn(cfg["k"])
    if cfg["method"] == "fwdgrad":
        grad_fn = fwdgrad.make_grad_fn(num_tangents=cfg["k"], aggregation=cfg["aggregation"], mode="jvp",
                                       sampler=cfg.get("sampler", "normal"),
                                       tangent_batch_size=cfg["tangent_batch_size"],
                                       fuse_combination=cfg["fuse_combination"])
    return make_train_step(mlp_loss, tx, grad_fn=grad_fn, jit=False)


def _compiled_record(compiled) -> dict:
    m = compiled.memory_analysis()
    arg, out, alias, temp = (int(m.argument_size_in_bytes), int(m.output_size_in_bytes),
                             int(m.alias_size_in_bytes), int(m.temp_size_in_bytes))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    dots, exact = dot_flops(compiled.as_text())
    return {"argument_bytes": arg, "output_bytes": out, "alias_bytes": alias, "temp_bytes": temp,
            "floor_bytes": arg + out - alias, "peak_bytes": arg + out - alias + temp,
            "xla_flops": float(cost.get("flops", float("nan"))) if cost else None,
            "xla_dot_flops": dots, "xla_dot_flops_exact": exact}


def runtime_peak(cfg: dict) -> dict:
    """Runs one donated step and reads the device's ``peak_bytes_in_use`` (call in a fresh process)."""
    dtype = jnp.dtype(cfg["dtype"])
    params, data, tx, key = _setup(cfg["depth"], cfg["width"], cfg["batch"], dtype)
    state = TrainState.create(params=params, tx=tx)
    step = jax.jit(_raw_step(cfg, tx), donate_argnums=(0,))
    compiled = step.lower(state, data, key).compile()
    jax.block_until_ready((state, data))
    device = jax.devices()[0]
    before = (device.memory_stats() or {}).get("bytes_in_use")
    state, metrics = compiled(state, data, key)
    jax.block_until_ready((state, metrics))
    stats = device.memory_stats() or {}
    return {"runtime_peak_bytes": stats.get("peak_bytes_in_use"), "runtime_floor_bytes": before}


def _runtime_peak_in_subprocess(cfg: dict) -> dict:
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    out = subprocess.run([sys.executable, __file__, "--runtime-peak-of", json.dumps(cfg)], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _configs(ks, tangent_batch_sizes, aggregations, fuse, samplers=("normal",), linearize=False, **shape):
    out = [{"method": "backprop", "k": None, "aggregation": None, "tangent_batch_size": None,
            "fuse_combination": False, **shape}]
    for k in ks:
        sizes = []
        for s in tangent_batch_sizes:
            if s == "held":
                sizes.append(None)
            elif s == "divisors":
                sizes += [2 ** i for i in range(int(math.log2(k)) + 1) if k % 2 ** i == 0]
            elif k % int(s) == 0:
                sizes.append(int(s))
        for agg in aggregations:
            for tb in dict.fromkeys(sizes):
                for sampler in samplers:
                    out.append({"method": "fwdgrad", "k": k, "aggregation": agg, "tangent_batch_size": tb,
                                "sampler": sampler, "fuse_combination": bool(fuse and tb is not None), **shape})
        if linearize:
            out.append({"method": "linearize", "k": k, "aggregation": "mean", "tangent_batch_size": 1,
                        "sampler": "normal", "fuse_combination": False, **shape})
    return out


def _copy(tree):
    return jax.block_until_ready(jax.tree.map(jnp.copy, tree))


def _key(cfg):
    return {k: cfg.get(k) for k in ("method", "k", "aggregation", "tangent_batch_size", "sampler", "depth")}


def _label(r):
    if r["method"] == "backprop":
        return "backprop"
    if r["method"] == "linearize":
        return f"k={r['k']:<3d} linearize once, scan the tangents"
    return (f"k={r['k']:<3d} {r['aggregation']:10s} b={str(r['tangent_batch_size'] or 'held'):4s}"
            + ("" if r.get("sampler", "normal") == "normal" else f" {r['sampler']}"))


def run(*, depths=(16,), width=1024, batch=256, ks=(1, 4, 16), tangent_batch_sizes=("held", 1),
        aggregations=("mean", "projection"), samplers=("normal",), repeats=3, time_steps=True, time_held=True,
        dtype="float32", fuse_combination=True, runtime_peak_bytes=None, linearize=False, tiny=False, verbose=True,
        checkpoint=None) -> dict:
    """Measures every step and returns the benchmark's JSON payload (what ``main`` writes).

    Args:
      depths: one table per depth (the depth sweep compares working memory across them).
      tangent_batch_sizes: ``"held"``, ``"divisors"`` (1, 2, 4, ..., k) or integers (those dividing k).
      time_steps: time the steps (memory and FLOPs come from compiling alone).
      time_held: also time the held steps (they compute the same estimate).
      samplers: tangent samplers ("normal", "rademacher"; the latter skips the inverse error function, which
        shows what drawing the tangents costs).
      runtime_peak_bytes: run each step once in a fresh process and read ``peak_bytes_in_use``; default:
        on backends that report memory statistics (GPUs), not on CPU.
      linearize: add the peer that linearises once and scans the tangents through the linear map (the
        primal once, its residuals held; the mean).
      tiny: the :data:`TINY` depth, width and batch (a smoke run in seconds).
      checkpoint: a JSON path written after every record; a run without timing started again with the same
        path and settings keeps the records found there and measures only the rest.

    Returns:
      ``{"benchmark", "environment", "check_max_abs_err", "note", "records"}``.
    """
    if tiny:
        depths, width, batch = TINY["depths"], TINY["width"], TINY["batch"]
    if runtime_peak_bytes is None:
        runtime_peak_bytes = bool(jax.devices()[0].memory_stats())
    err = check_correctness()
    log = print if verbose else (lambda *a, **k: None)
    log(f"check: projection at k = n matches jax.grad, held and streamed (max abs err {err:.2e})")
    records, done = [], {}
    settings = to_jsonable({"depths": depths, "width": width, "batch": batch, "ks": ks, "dtype": dtype,
                            "tangent_batch_sizes": tangent_batch_sizes, "aggregations": aggregations,
                            "samplers": samplers, "fuse_combination": fuse_combination, "linearize": linearize})
    if checkpoint is not None and not time_steps and Path(checkpoint).is_file():
        old = json.loads(Path(checkpoint).read_text())
        if old.get("status") == "partial" and old.get("settings") == settings:
            done = {json.dumps(_key(r)): r for r in old["records"]}
            log(f"resuming: {len(done)} records from {checkpoint}")

    def save_partial():
        if checkpoint is not None:
            save_benchmark("fwdgrad", records, path=checkpoint, status="partial", settings=settings,
                           check_max_abs_err=err)

    for depth in depths:
        params, data, tx, key = _setup(depth, width, batch, jnp.dtype(dtype))
        state = TrainState.create(params=params, tx=tx)
        cfgs = _configs(ks, tangent_batch_sizes, aggregations, fuse_combination, samplers, linearize, depth=depth,
                        width=width, batch=batch, dtype=jnp.dtype(dtype).name)
        timed = []
        for cfg in cfgs:
            if json.dumps(_key(cfg)) in done:
                records.append(done[json.dumps(_key(cfg))])
                continue
            raw = _raw_step(cfg, tx)
            t0 = time.perf_counter()
            compiled = jax.jit(raw, donate_argnums=(0,)).lower(state, data, key).compile()
            rec = {**cfg, **_compiled_record(compiled)}
            rec["compile_s"] = time.perf_counter() - t0
            rec["model_dot_flops"] = model_dot_flops(cfg["method"], cfg["k"], cfg["tangent_batch_size"],
                                                     cfg["aggregation"], depth, width, batch)
            if runtime_peak_bytes:
                rec.update(_runtime_peak_in_subprocess(cfg))
            records.append(rec)
            save_partial()
            if time_steps and (time_held or cfg["method"] == "backprop" or cfg["tangent_batch_size"] is not None):
                jax.block_until_ready(compiled(_copy(state), data, key))  # warm-up
                timed.append((rec, compiled, []))
            log(f"depth {depth} {_label(rec)} peak {rec['peak_bytes'] / 2**20:8.1f} MiB  temp "
                f"{rec['temp_bytes'] / 2**20:8.1f} MiB  dot GFLOP {rec['xla_dot_flops'] / 1e9:8.1f}", flush=True)
        for _ in range(repeats):  # round-robin: slow phases of a shared machine hit every step alike
            for rec, compiled, times in timed:
                fresh = _copy(state)  # the step donates its state: a fresh copy, made before the clock starts
                t0 = time.perf_counter()
                jax.block_until_ready(compiled(fresh, data, key))
                times.append(time.perf_counter() - t0)
        for rec, _, times in timed:
            q = np.percentile(times, [25, 75])
            rec.update(median_s=statistics.median(times), min_s=min(times), iqr_s=float(q[1] - q[0]),
                       times_s=times)
        base = next(r for r in records if r["depth"] == depth and r["method"] == "backprop")
        for rec in (r for r in records if r["depth"] == depth):
            rec["peak_ratio_vs_backprop"] = rec["peak_bytes"] / base["peak_bytes"]
            rec["temp_ratio_vs_backprop"] = rec["temp_bytes"] / max(base["temp_bytes"], 1)
            rec["dot_flops_ratio_vs_backprop"] = rec["xla_dot_flops"] / base["xla_dot_flops"]
            if rec.get("runtime_peak_bytes") and base.get("runtime_peak_bytes"):
                rec["runtime_peak_ratio_vs_backprop"] = rec["runtime_peak_bytes"] / base["runtime_peak_bytes"]
            if "median_s" in rec and "median_s" in base:
                rec["time_ratio_vs_backprop"] = rec["median_s"] / base["median_s"]
                # Above 1: this step does its (dot) FLOPs more slowly than backprop does its own.
                rec["time_per_dot_flop_vs_backprop"] = (rec["time_ratio_vs_backprop"]
                                                        / rec["dot_flops_ratio_vs_backprop"])
                if rec["method"] != "backprop":
                    rec["flop_floor"] = flop_floor(rec["k"])
                    rec["time_vs_floor"] = rec["time_ratio_vs_backprop"] / rec["flop_floor"]
            log(f"depth {depth} {_label(rec)} peak {rec['peak_ratio_vs_backprop']:.2f}x temp "
                f"{rec['temp_ratio_vs_backprop']:.2f}x dot FLOPs {rec['dot_flops_ratio_vs_backprop']:.2f}x"
                + (f" time {rec['median_s']:.3g} s ({rec['time_ratio_vs_backprop']:.2f}x"
                   + (f", {rec['time_vs_floor']:.2f} of the floor)" if "time_vs_floor" in rec else ")")
                   if "time_ratio_vs_backprop" in rec else ""), flush=True)
    return {"benchmark": "fwdgrad", "environment": environment_info(), "check_max_abs_err": err, "settings": settings,
            "note": "peak = argument + output - alias + temp of the donated jitted step; floor = argument + output "
                    "- alias (train state and batch); temp = peak - floor; xla_dot_flops: dots of the optimised "
                    "HLO with loop trip counts; times round-robin over the donated steps",
            "records": records}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--depths", default=None, help="several depths, e.g. 8,32 (overrides --depth)")
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--ks", default="1,4,16")
    ap.add_argument("--aggregations", default="mean,projection")
    ap.add_argument("--samplers", default="normal", help="tangent samplers, e.g. normal,rademacher")
    ap.add_argument("--tangent-batch-sizes", "--streaming", dest="tangent_batch_sizes", default="held,1",
                    help="comma list of 'held' (all k tangents at once), 'divisors' (1, 2, 4, ..., k) or integers")
    ap.add_argument("--fuse-combination", default="1", choices=["0", "1"],
                    help="streaming steps: 1 lets XLA form the estimate inside SGD's in-place update (the fast "
                         "path for optimisers that read the gradient once); 0 is the general default (one buffer "
                         "per leaf)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-time", action="store_true", help="memory and FLOPs only")
    ap.add_argument("--no-time-held", action="store_true",
                    help="time only the streaming steps (the held ones compute the same estimate)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--linearize", action="store_true",
                    help="add the peer that linearises once and scans the tangents through the linear map")
    ap.add_argument("--tiny", action="store_true", help="seconds-long smoke sizes (depth 3, width 64, batch 32)")
    ap.add_argument("--json", default=None, help="output path (default bench/results/fwdgrad-<backend>.json)")
    ap.add_argument("--runtime-peak-of", default=None, help=argparse.SUPPRESS)  # internal: one step, fresh process
    args = ap.parse_args(argv)
    if args.runtime_peak_of:
        print(json.dumps(to_jsonable(runtime_peak(json.loads(args.runtime_peak_of)))))
        return None
    depths = tuple(int(d) for d in (args.depths or str(args.depth)).split(","))
    payload = run(depths=depths, width=args.width, batch=args.batch, ks=tuple(int(k) for k in args.ks.split(",")),
                  tangent_batch_sizes=tuple(args.tangent_batch_sizes.split(",")),
                  aggregations=tuple(args.aggregations.split(",")), samplers=tuple(args.samplers.split(",")),
                  repeats=args.repeats,
                  time_steps=not args.no_time, time_held=not args.no_time_held, dtype=args.dtype,
                  fuse_combination=args.fuse_combination == "1", linearize=args.linearize, tiny=args.tiny,
                  checkpoint=args.json or Path("bench") / "results" / f"fwdgrad-{jax.default_backend()}.json")
    path = save_benchmark("fwdgrad", payload["records"], path=args.json, status="completed",
                          settings=payload["settings"], check_max_abs_err=payload["check_max_abs_err"],
                          note=payload["note"])
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
