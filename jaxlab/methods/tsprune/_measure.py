"""What a pruned forecaster costs: parameters, FLOPs, latency, energy, a per-op profile, sparse products.

**FLOPs** (:func:`xla_flops`) are XLA's ``cost_analysis`` of the compiled forward pass. XLA's cost
model counts dots and convolutions (``2 m n k``), FFTs (its own ``8 N log2 N``-style count),
elementwise ops, reductions, window reductions and sorts. It gives no cost to gathers, scatters and
dynamic slices (memory traffic, not arithmetic), and it cannot cost a ``TopK`` custom call: each one
adds ``-1`` to the total. ProbSparse attention (Informer) and auto-correlation (Autoformer) select
with ``lax.top_k``; where XLA keeps that as a ``TopK`` custom call we undo the ``-1`` and add
``rows x length x ceil(log2 k)`` comparisons (heap selection) analytically; where XLA rewrites it
into a ``sort`` (as the CPU compiler does inside these models), XLA's sort cost is already counted.

**Latency** (:func:`latency`) is the median of ``repeats`` (>= 20) timed calls of the compiled
forward pass after compilation and warm-up, with ``block_until_ready``
(``jaxlab.core.time_fn``); the energy of the timed calls comes from ``jaxlab.energy.EnergyMeter``
(RAPL where readable, else a flagged estimate from CPU time).

**Per-op profile** (:func:`op_profile`): ``jax.profiler`` traces the calls, and the time of every
executed HLO instruction is summed per kind (matmul/conv, FFT, sort/top-k, gather/scatter,
window reductions, copies/transposes, other fusions), with the number of ops executed per call.

**Sparse products** (:func:`sparse_dense_layers`): a pruned Dense kernel ``W (in, out)`` as a
``jaxlab.sparse`` matrix ``A = W^T`` (CSR or ELL, ``jsparse.from_scipy(S, format=...)``) times the
activations ``X (in, tokens)``, against the dense ``W^T X`` in the same process, timed interleaved
(:func:`compare_latency`).
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import re
import shutil
import tempfile
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import time_fn

_TOPK_CALL = re.compile(r"%(\S+) = \(([^)]*)\) custom-call\(([^)]*)\).*custom_call_target=\"TopK\"")
_SHAPE = re.compile(r"[a-z0-9]+\[([0-9,]*)\]")


def _cost_dict(compiled) -> dict:
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return dict(ca or {})


def _dims(text: str) -> list[int]:
    m = _SHAPE.search(text)
    return [int(d) for d in m.group(1).split(",") if d] if m else []


def topk_calls(hlo_text: str) -> list[tuple[int, int, int]]:
    """``(rows, length, k)`` of every ``TopK`` custom call in a compiled HLO module's text."""
    defs: dict[str, str] = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) ", line)
        if m:
            defs[m.group(1)] = m.group(2)
    out = []
    for line in hlo_text.splitlines():
        m = _TOPK_CALL.search(line)
        if not m:
            continue
        out_dims = _dims(m.group(2))
        operand = m.group(3).strip()
        name = operand.split("%")[-1].strip() if "%" in operand else operand
        in_dims = _dims(operand) or _dims(defs.get(name, ""))
        if not in_dims or not out_dims:
            continue
        rows = int(np.prod(in_dims[:-1])) if len(in_dims) > 1 else 1
        out.append((rows, in_dims[-1], out_dims[-1]))
    return out


def topk_cost(rows: int, length: int, k: int) -> float:
    """Comparisons of a heap selection of ``k`` of ``length`` items, per row: ``length ceil(log2 k)``."""
    return float(rows * length * max(1, math.ceil(math.log2(max(k, 2)))))


def xla_flops(fn: Callable, *args) -> dict[str, float]:
    """FLOPs of ``jax.jit(fn)(*args)``: XLA's count plus the top-k it cannot cost (see the module docstring).

    Returns:
      ``{"flops", "xla_flops", "topk_flops", "topk_calls", "bytes_accessed", "transcendentals"}``.
    """
    compiled = jax.jit(fn).lower(*args).compile()
    cost = _cost_dict(compiled)
    calls = topk_calls(compiled.as_text())
    topk = sum(topk_cost(*c) for c in calls)
    xla = float(cost.get("flops", 0.0)) + len(calls)          # each uncostable TopK call counted -1
    return {"flops": xla + topk, "xla_flops": xla, "topk_flops": topk, "topk_calls": len(calls),
            "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
            "transcendentals": float(cost.get("transcendentals", 0.0))}


def latency(fn: Callable, *args, repeats: int = 20, warmup: int = 2, meter=None) -> dict[str, Any]:
    """Median wall time of ``repeats`` compiled calls (and their energy, when ``meter`` is given)."""
    if repeats < 20:
        raise ValueError(f"latency needs at least 20 repeats, got {repeats}")
    jitted = jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    reading = None
    if meter is not None:
        meter.start()
    t = time_fn(compiled, *args, warmup=0, repeats=repeats, compile=False)
    if meter is not None:
        reading = meter.stop()
    out = {"median_s": t.median_s, "min_s": t.min_s, "iqr_s": t.iqr_s, "repeats": len(t.times_s)}
    if reading is not None:
        e = _energy_total(reading)
        out["energy_j_per_call"] = e / len(t.times_s) if e is not None else None
        out["energy_estimated"] = bool(reading.get("estimated", False))
    return out


def _energy_total(reading) -> float | None:
    e = reading.get("total_energy_j", reading.get("energy_j"))
    if isinstance(e, dict):
        e = sum(e.values())
    return None if e is None else float(e)


def compare_latency(cases: dict[str, tuple[Callable, tuple]], *, repeats: int = 20, rounds: int = 4,
                    meter=None) -> dict[str, dict[str, Any]]:
    """Latency of several functions measured interleaved, so that a shared machine's load drifts alike for all.

    Each case ``name -> (fn, args)`` is compiled and warmed up; then ``rounds`` rounds time
    ``ceil(repeats / rounds)`` calls of every case in turn (the order reversed every other round).

    Returns:
      name -> ``{"median_s", "min_s", "iqr_s", "repeats"}`` (plus ``energy_j_per_call`` and
      ``energy_estimated`` with a ``meter``).
    """
    import time

    if repeats < 20:
        raise ValueError(f"latency needs at least 20 repeats, got {repeats}")
    compiled = {k: jax.jit(fn).lower(*args).compile() for k, (fn, args) in cases.items()}
    for k, (_, args) in cases.items():
        for _ in range(2):
            jax.block_until_ready(compiled[k](*args))
    per = int(math.ceil(repeats / rounds))
    times: dict[str, list[float]] = {k: [] for k in cases}
    energy: dict[str, float] = {k: 0.0 for k in cases}
    estimated = False
    names = list(cases)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            args = cases[k][1]
            if meter is not None:
                meter.start()
            for _ in range(per):
                t0 = time.perf_counter()
                jax.block_until_ready(compiled[k](*args))
                times[k].append(time.perf_counter() - t0)
            if meter is not None:
                reading = meter.stop()
                energy[k] += _energy_total(reading) or 0.0
                estimated = estimated or bool(reading.get("estimated", False))
    out = {}
    for k, t in times.items():
        q1, q3 = np.percentile(t, [25, 75])
        out[k] = {"median_s": float(np.median(t)), "min_s": float(np.min(t)), "iqr_s": float(q3 - q1),
                  "repeats": len(t)}
        if meter is not None:
            out[k]["energy_j_per_call"] = energy[k] / len(t)
            out[k]["energy_estimated"] = estimated
    return out


_KINDS = (("fft", ("fft",)), ("sort/top-k", ("sort", "topk", "TopK")),
          ("matmul/conv", ("ynn", "dot", "conv", "gemm", "matmul")),
          ("gather/scatter", ("gather", "scatter", "dynamic-slice", "dynamic-update-slice", "dynamic_slice")),
          ("window reduction", ("reduce-window", "reduce_window")),
          ("copy/transpose", ("copy", "transpose")))


def op_kind(name: str) -> str:
    """Kind of an executed HLO instruction from its name (``ynn_fusion.3``, ``fft.2``, ``copy_bitcast_fusion``)."""
    for kind, keys in _KINDS:
        if any(k in name for k in keys):
            return kind
    return "other fusions"


def op_profile(fn: Callable, *args, calls: int = 5) -> dict[str, Any]:
    """Per-op time of ``calls`` compiled calls of ``fn`` from a ``jax.profiler`` trace.

    Returns:
      ``{"per_call_s", "ops_per_call", "by_kind": {kind: {"s_per_call", "ops_per_call", "share"}}, "top": [...]}``
      where ``top`` lists the 15 slowest instructions.
    """
    compiled = jax.jit(fn).lower(*args).compile()
    names = set(re.findall(r"%([\w.\-]+) = ", compiled.as_text()))
    jax.block_until_ready(compiled(*args))
    tmp = tempfile.mkdtemp(prefix="tsprune-prof-")
    try:
        with jax.profiler.trace(tmp, create_perfetto_trace=True):
            for _ in range(calls):
                jax.block_until_ready(compiled(*args))
        files = glob.glob(f"{tmp}/**/perfetto_trace.json.gz", recursive=True)
        if not files:
            raise RuntimeError("jax.profiler wrote no perfetto trace; per-op profiles need jax.profiler support")
        events = json.load(gzip.open(files[0]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("ph") == "X" and e.get("name") in names:
            per_op.setdefault(e["name"], []).append(float(e.get("dur", 0.0)) * 1e-6)
    total = sum(sum(v) for v in per_op.values())
    by_kind: dict[str, dict[str, float]] = {}
    for name, durs in per_op.items():
        k = by_kind.setdefault(op_kind(name), {"s_per_call": 0.0, "ops_per_call": 0.0})
        k["s_per_call"] += sum(durs) / calls
        k["ops_per_call"] += len(durs) / calls
    for k in by_kind.values():
        k["share"] = k["s_per_call"] * calls / total if total else 0.0
    top = sorted(((sum(d) / calls, n) for n, d in per_op.items()), reverse=True)[:15]
    return {"per_call_s": total / calls, "ops_per_call": sum(len(d) for d in per_op.values()) / calls,
            "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1]["s_per_call"])),
            "top": [{"op": n, "kind": op_kind(n), "s_per_call": s} for s, n in top]}


def dense_kernels(params, *, min_size: int = 0) -> list[tuple[str, np.ndarray]]:
    """``(path, kernel)`` of the 2-D Dense kernels with at least ``min_size`` entries, largest first."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    out = []
    for p, leaf in flat:
        keys = [str(getattr(k, "key", k)) for k in p]
        if keys[-1] == "kernel" and np.ndim(leaf) == 2 and np.size(leaf) >= min_size:
            out.append(("/".join(keys), np.asarray(leaf)))
    return sorted(out, key=lambda kv: -kv[1].size)


def sparse_dense_layers(kernel: np.ndarray, tokens: Sequence[int], *, formats: Sequence[str] = ("csr", "ell"),
                        repeats: int = 20, rounds: int | None = None, key=None) -> list[dict[str, Any]]:
    """Times ``W^T X`` for a (pruned) kernel: dense jnp against ``jaxlab.sparse`` formats, per token count.

    Checks every sparse product against the dense one before timing. The dense and sparse products
    are then timed interleaved (:func:`compare_latency`: ``rounds`` round-robin rounds, medians of
    ``repeats`` calls each; by default ``rounds = repeats``, one call of each product per round), so
    that load drifting on a shared machine hits all of them alike.
    """
    import scipy.sparse as sp

    import jaxlab.sparse as jsparse

    w_t = np.ascontiguousarray(kernel.T.astype(np.float32))
    dense_a = jnp.asarray(w_t)
    key = jax.random.key(0) if key is None else key
    mats = {f: jsparse.from_scipy(sp.csr_matrix(w_t), format=f) for f in formats}

    def matmul(a, x):
        return a @ x

    rows = []
    for n in tokens:
        x = jax.random.normal(jax.random.fold_in(key, n), (w_t.shape[1], n), jnp.float32)
        ref = np.asarray(dense_a @ x)
        for f, a in mats.items():
            got = np.asarray(jax.jit(matmul)(a, x))
            err = float(np.max(np.abs(got - ref)) / max(1e-30, float(np.max(np.abs(ref)))))
            if err > 1e-4:
                raise AssertionError(f"{f} product differs from the dense one by {err:.2e} (relative)")
        cases = {"dense": (matmul, (dense_a, x)), **{f: (matmul, (a, x)) for f, a in mats.items()}}
        lat = compare_latency(cases, repeats=repeats, rounds=repeats if rounds is None else rounds)
        row = {"tokens": int(n), "shape": list(w_t.shape), "density": float(np.count_nonzero(w_t) / w_t.size),
               "timing": "interleaved", "dense_s": lat["dense"]["median_s"], "dense_iqr_s": lat["dense"]["iqr_s"],
               "repeats": lat["dense"]["repeats"], "rounds": repeats if rounds is None else rounds}
        for f in mats:
            row[f"{f}_s"] = lat[f]["median_s"]
            row[f"{f}_iqr_s"] = lat[f]["iqr_s"]
            row[f"{f}_speedup"] = lat["dense"]["median_s"] / lat[f]["median_s"]
        rows.append(row)
    return rows
