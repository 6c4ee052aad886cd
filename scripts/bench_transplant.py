"""Fusion time and peak memory: Neuron Transplantation against OT fusion, weight matching and weight averaging.

The reference's ex12 setting: two members of an MLP 3072 -> 1024 -> 1024 -> 10 without biases (its
``AdaptiveNeuralNetwork2``, width 1024, 2 layers), fused into one model of the same width. The reference
reports 0.146 s for NT, 14.57 s and 22 GB for OT, 0.015 s for averaging (CPU, PyTorch + torch-pruning + POT).

Methods (``jaxlab.methods.transplant``):

* ``nt``: :func:`transplant` on the list of members (one jitted program: scores, stable top-w, gathers).
* ``nt_stacked``: :func:`transplant_stacked` on members already stacked on a leading axis, as vmapped training
  leaves them (no stacking copy).
* ``nt_wide``: the reference's route: build the wide model (:func:`concat`), score it with
  ``jaxlab.prune.group_importance``, ``jaxlab.prune.shrink`` it (NumPy).
* ``ot``: OT fusion, "wts", exact (``scipy.optimize.linear_sum_assignment`` on Euclidean costs).
* ``wm``: weight matching (git re-basin), at most ``--wm-iters`` sweeps.
* ``avg``: weight averaging.

Correctness first: the wide model's logits equal the members' mean; ``nt`` equals ``nt_wide``; OT fusion of a
member with a permuted copy of itself returns the member.

Every method runs in two fresh subprocesses, one for time and one for memory:

* Time (``median_s``): median of ``--repeats`` calls after one warm-up call (which compiles; its time is
  ``first_call_s``), in a process with glibc's default allocator, as a user's script runs.
* Memory: glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every large buffer is mapped
  when allocated and unmapped when freed and the resident set follows the live memory; a thread samples the
  resident set every 0.2 ms during one warm call (``peak_rss_mib``: its maximum minus the resident set just
  before the call), and ``first_call_peak_rss_mib`` is the same for the first call, compilation included. That
  setting makes every output buffer a fresh mapping whose pages fault in on first write (NT's 12 MiB of outputs
  are about 3,000 page faults per call), so calls there are slower than in a normal process; their median is
  kept as ``median_s_mmap_threshold`` and its ratio as ``time_over_nt_mmap_threshold``, not as the time.

The machine is shared: compare methods within one run, as ratios (``*_over_nt``).

Usage: python scripts/bench_transplant.py [--width 1024 --inputs 3072 --k 2 --repeats 5]  (or ``jaxlab bench
transplant``). Writes bench/results/transplant-<backend>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time

METHODS = ("avg", "nt", "nt_stacked", "nt_wide", "ot", "wm")


def _members(args):
    import jax
    import numpy as np

    from jaxlab.nn import MLP

    config = MLP(features=(*([args.width] * args.layers), 10), use_bias=False)
    x = np.zeros((1, args.inputs), np.float32)
    shapes = jax.eval_shape(lambda k: config.init(k, x), jax.random.key(0))
    members = []
    for i in range(args.k):
        rng = np.random.default_rng(i)
        v = jax.tree.map(lambda s: jax.numpy.asarray(
            rng.uniform(-1, 1, s.shape).astype(np.float32) / np.sqrt(s.shape[0])), shapes)   # torch's default init
        members.append((config, v))
    return config, members


def _fusion(method, config, members, args):
    import jax

    from jaxlab.methods import transplant as nt

    if method == "nt":
        return lambda: nt.transplant(members)
    if method == "nt_stacked":
        stacked = jax.tree.map(lambda *a: jax.numpy.stack(a), *[v for _, v in members])
        return lambda: nt.transplant_stacked(config, stacked)
    if method == "nt_wide":
        return lambda: nt.transplant(members, via="wide")
    if method == "ot":
        return lambda: nt.ot_fusion(members)
    if method == "wm":
        return lambda: nt.weight_matching(members, max_iter=args.wm_iters)
    if method == "avg":
        return lambda: nt.average(members)
    raise ValueError(f"unknown method {method!r}; use one of {METHODS}")


def child(method: str, args) -> dict:
    """Measures one method in this (fresh) process."""
    import jax
    import numpy as np

    from jaxlab.methods.transplant._memory import PeakRSS

    config, members = _members(args)
    fuse = _fusion(method, config, members, args)

    def call():
        return jax.block_until_ready(jax.tree.leaves(fuse()))

    gc.collect()
    with PeakRSS() as first:
        t0 = time.perf_counter()
        call()
        first_s = time.perf_counter() - t0
    gc.collect()
    with PeakRSS() as warm:
        call()
    times = []
    for _ in range(args.repeats if method not in ("ot", "wm", "nt_wide") else max(1, min(args.repeats, 3))):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    cpu = os.times()
    return {"method": method, "median_s": float(np.median(times)), "times_s": times, "first_call_s": first_s,
            "peak_rss_mib": warm.delta_mib, "first_call_peak_rss_mib": first.delta_mib,
            "process_cpu_s": cpu.user + cpu.system}


def check(args) -> dict:
    """The checks that must pass before anything is timed (small widths)."""
    import jax
    import numpy as np

    from jaxlab.methods import transplant as nt

    small = argparse.Namespace(**{**vars(args), "width": 64, "inputs": 96})
    config, members = _members(small)
    x = np.random.default_rng(0).normal(size=(8, small.inputs)).astype(np.float32)
    wide_config, wide = nt.concat(members)
    mean = sum(config.apply(v, x) for _, v in members) / len(members)
    err_wide = float(np.max(np.abs(wide_config.apply(wide, x) - mean)))
    _, a = nt.transplant(members)
    _, b = nt.transplant(members, via="wide")
    err_nt = max(float(np.max(np.abs(np.asarray(u) - np.asarray(w)))) for u, w in zip(jax.tree.leaves(a),
                                                                                       jax.tree.leaves(b)))
    perms = {g.name: np.random.default_rng(1).permutation(g.size) for g in config.dependency_groups()}
    v = members[0][1]
    _, back = nt.ot_fusion([(config, v), (config, nt.permute(config, v, perms))])
    err_ot = max(float(np.max(np.abs(np.asarray(u) - np.asarray(w)))) for u, w in zip(jax.tree.leaves(back),
                                                                                       jax.tree.leaves(v)))
    out = {"wide_vs_mean_max_abs": err_wide, "nt_direct_vs_wide_max_abs": err_nt, "ot_permuted_copy_max_abs": err_ot}
    if not (err_wide <= 1e-5 * max(1.0, float(np.abs(mean).max())) and err_nt <= 1e-6 and err_ot == 0.0):
        raise SystemExit(f"correctness checks failed: {out}")
    return out


def _child_record(method: str, args, env: dict) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", method, "--width", str(args.width), "--layers",
           str(args.layers), "--inputs", str(args.inputs), "--k", str(args.k), "--repeats", str(args.repeats),
           "--wm-iters", str(args.wm_iters)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{method} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(method: str, args) -> dict:
    """One method's record: times from a process with the default allocator, memory from one with the mmap
    threshold at 64 KiB (see the module docstring)."""
    path = os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])
    plain = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    timed = _child_record(method, args, {**plain, "PYTHONPATH": path})
    mem = _child_record(method, args, {**plain, "PYTHONPATH": path, "MALLOC_MMAP_THRESHOLD_": "65536"})
    rec = {**timed, "peak_rss_mib": mem["peak_rss_mib"], "first_call_peak_rss_mib": mem["first_call_peak_rss_mib"],
           "median_s_mmap_threshold": mem["median_s"], "times_s_mmap_threshold": mem["times_s"],
           "process_cpu_s_mmap_threshold": mem["process_cpu_s"]}
    print(f"{method:11s} median {rec['median_s'] * 1e3:9.1f} ms   first call {rec['first_call_s'] * 1e3:9.1f} ms   "
          f"peak +{rec['peak_rss_mib']:7.1f} MiB (first call +{rec['first_call_peak_rss_mib']:.1f})   "
          f"median with the mmap threshold {rec['median_s_mmap_threshold'] * 1e3:.1f} ms", flush=True)
    return rec


def add_ratios(records: list) -> None:
    """``time_over_nt``, ``time_over_nt_mmap_threshold`` and ``peak_rss_over_nt`` of every record (when nt ran)."""
    nt_rec = next((r for r in records if r["method"] == "nt"), None)
    if nt_rec is None:
        return
    for r in records:
        r["time_over_nt"] = r["median_s"] / nt_rec["median_s"]
        r["time_over_nt_mmap_threshold"] = r["median_s_mmap_threshold"] / nt_rec["median_s_mmap_threshold"]
        r["peak_rss_over_nt"] = r["peak_rss_mib"] / max(nt_rec["peak_rss_mib"], 1e-9)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=2, help="hidden layers (the reference's num_layers)")
    ap.add_argument("--inputs", type=int, default=3072)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--wm-iters", type=int, default=100)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--json", help="output file (default bench/results/transplant-<backend>.json)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args)))
        return 0

    from jaxlab.core import save_benchmark

    checks = check(args)
    records = [measure(method, args) for method in args.methods.split(",")]
    add_ratios(records)
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    path = save_benchmark("transplant", records, args.json, checks=checks, load_average=load,
                          model=f"MLP {args.inputs} -> {' -> '.join([str(args.width)] * args.layers)} -> 10, no bias",
                          k=args.k, reference={"nt_s": 0.146, "ot_s": 14.57, "ot_peak_gb": 22.14, "avg_s": 0.015})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
