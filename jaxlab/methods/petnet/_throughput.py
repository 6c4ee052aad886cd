"""Samples per second of the coincidence sorters and of the jitted PETNet forward, on one batch.

All methods get the same ``batch`` test samples on the same device. Jitted functions are compiled first
(compile time reported apart), warmed up, and timed with ``block_until_ready`` (median of ``repeats``,
:func:`jaxlab.core.time_fn`). The sorters are timed on compact hit lists (``scw_jit_hits`` ...) and, for
a like-for-like comparison with the network, also from the dense ``(B, T, C)`` input trains the network
reads (``scw_jit_dense``: hit extraction with ``nonzero`` inside jit, then SCW). The reference-style
Python loop (:func:`scw_reference`) is timed on the same hit lists (one call per repeat, no compile).

The set-up (hit lists, dense trains, inputs) is made by jitted programs, and the timed sorters are
module-level jitted functions, so a second measurement of the same shapes (another network on the same
batch) compiles only the network; a program already compiled for these shapes (by
:func:`~jaxlab.methods.petnet.sorter_scores` on the same test set) reports ``compile_s`` near 0.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import time_fn

from ._encode import compact_hits, encode_hits, encode_inputs, hits_from_data, hits_from_dense, max_valid_hits
from ._scw import SCW_GEOMETRY_JIT, scw, scw_calibrated, scw_reference
from ._simulate import PETData, Preset, compatible_pairs


@functools.lru_cache(maxsize=None)
def _scw_from_dense(max_hits: int):
    """Jitted SCW (window 8) on the hits of dense trains ``(B, T, C)``: ``nonzero`` extraction, then the
    sort (one function per ``max_hits``, so that :func:`~jaxlab.core.time_fn` can compile it ahead)."""
    return jax.jit(lambda x: scw(hits_from_dense(x, max_hits), 8))


def measure_throughput(preset: Preset, data: PETData, net, params, geometry: bool, *, batch: int = 1000,
                       repeats: int = 5, delays=None, calibrated_window: int = 1) -> dict[str, Any]:
    """Throughput of every sorter and of PETNet's forward pass (see the module docstring).

    Returns:
      ``{name: {"samples_per_s", "median_s", "compile_s"}}`` plus ``"petnet_over_<name>"`` speed ratios
      and the batch size. Correctness is checked first: the jitted SCW (from hits and from dense input)
      must agree with the loop reference on this batch.
    """
    part = jax.device_put(jax.device_get(data).take(slice(0, batch)))
    hits = hits_from_data(part)
    m = max(max_valid_hits(hits), 1)
    hits = jax.block_until_ready(compact_hits(hits, m))
    dense = jax.block_until_ready(encode_hits(hits, preset.num_steps, preset.num_crystals))
    x_in = jax.block_until_ready(encode_inputs(part, preset, geometry))
    compat = jnp.asarray(compatible_pairs(preset))
    delays = jnp.zeros(preset.num_crystals, jnp.int32) if delays is None else jnp.asarray(delays, jnp.int32)

    ref_keep = scw_reference(hits, 8)
    if not np.array_equal(np.asarray(scw(hits, 8)), ref_keep):
        raise AssertionError("jitted SCW disagrees with scw_reference; not timing a wrong sorter")
    h_dense = hits_from_dense(dense, m)
    if int(np.asarray(_scw_from_dense(m)(dense)).sum()) != int(scw_reference(h_dense, 8).sum()):
        raise AssertionError("SCW from dense input disagrees with scw_reference")

    forward = jax.jit(net.apply)
    fns = {
        "scw_jit_hits": (scw, (hits, 8)),
        "scw_jit_dense": (_scw_from_dense(m), (dense,)),
        "scw_geometry_jit": (SCW_GEOMETRY_JIT["kill"], (hits, compat, 8)),
        "scw_geometry_single_good_jit": (SCW_GEOMETRY_JIT["single_good"], (hits, compat, 8)),
        "scw_calibrated_jit": (scw_calibrated, (hits, delays, calibrated_window)),
        "petnet_forward": (forward, (params, x_in)),
    }
    out: dict[str, Any] = {"batch": batch, "max_hits": m, "device": jax.devices()[0].device_kind}
    for name, (fn, args) in fns.items():
        t = time_fn(fn, *args, warmup=2, repeats=repeats)
        out[name] = {"samples_per_s": batch / t.median_s, "median_s": t.median_s, "compile_s": t.compile_s,
                     "iqr_s": t.iqr_s}
    times = []
    for _ in range(max(1, min(repeats, 3))):
        t0 = time.perf_counter()
        scw_reference(hits, 8)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    out["scw_reference_loop"] = {"samples_per_s": batch / med, "median_s": med, "compile_s": 0.0}
    fwd = out["petnet_forward"]["samples_per_s"]
    for name in list(out):
        if isinstance(out[name], dict) and name != "petnet_forward":
            out[f"petnet_over_{name}"] = fwd / out[name]["samples_per_s"]
    return out
