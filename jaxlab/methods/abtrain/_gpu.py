"""Device checks of AB-training's arithmetic: ``x @ A @ B`` against ``x @ W`` and the SVD of a large layer.

``lowrank_benchmark(size)`` is what the GPU suite calls (``scripts/gpu_suite.py``); ``size="tiny"`` runs on CPU in
seconds. ``"vgg16"`` is timm VGG16's ``fc1``: ``W`` of 25088 x 4096 (102.8M parameters), a CIFAR batch of 128 rows,
ranks 64 ... 1024 (the paper's 44:1 for the whole net implies about 80 for this layer), in bfloat16 for the
matmuls and float32 for the SVD (as ``decompose`` does). Each timing is the median of ``repeats`` calls of a
jitted function after a warm-up, compile time measured separately, ``block_until_ready`` on the result; the
products are checked against the float32 ``x @ (A B)`` first.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import tolerances

from ._factors import svd

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"m": 512, "n": 256, "batch": 32, "ranks": (8, 32, 128), "svd": (512, 256)},
    "vgg16": {"m": 25088, "n": 4096, "batch": 128, "ranks": (64, 128, 256, 512, 1024), "svd": (25088, 4096)},
}


def _time(fn, *args, repeats: int) -> dict[str, float]:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "compile_s": compile_s}


def lowrank_benchmark(size: str = "tiny", *, repeats: int = 10, dtype=jnp.bfloat16, svd_repeats: int = 3,
                      ranks: tuple[int, ...] | None = None, seed: int = 0) -> dict[str, Any]:
    """Times ``x @ W`` vs ``x @ A @ B`` (forward, and forward + backward to the factors) and the float32 SVD of ``W``.

    Args:
      size: ``"tiny"`` (CPU, seconds) or ``"vgg16"`` (timm VGG16 ``fc1``: needs a GPU).
      repeats: timed calls per matmul case (median reported).
      dtype: matmul dtype.
      svd_repeats: timed SVDs.
      ranks: override the size's ranks.

    Returns:
      ``{"device", "size", "dtype", "dense": {...}, "lowrank": [{"rank", "forward", "train", "speedup_forward",
      "speedup_train", "flop_ratio"}, ...], "svd": {...}}``.
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; choose from {sorted(SIZES)}")
    cfg = SIZES[size]
    m, n, b = cfg["m"], cfg["n"], cfg["batch"]
    rng = np.random.default_rng(seed)
    w32 = jnp.asarray(rng.normal(size=(m, n)) / np.sqrt(m), jnp.float32)
    x = jnp.asarray(rng.normal(size=(b, m)), dtype)
    w = w32.astype(dtype)

    def dense(x, w):
        return x @ w

    def dense_train(x, w):
        return jax.grad(lambda w: jnp.sum((x @ w).astype(jnp.float32) ** 2))(w)

    out: dict[str, Any] = {"device": jax.devices()[0].device_kind, "backend": jax.default_backend(), "size": size,
                           "shape": [m, n], "batch": b, "dtype": jnp.dtype(dtype).name}
    out["dense"] = {"forward": _time(dense, x, w, repeats=repeats), "train": _time(dense_train, x, w, repeats=repeats)}
    usv = jax.jit(svd)(w32)
    atol, rtol = tolerances(dtype)
    rows = []
    for r in ranks or cfg["ranks"]:
        if r > min(m, n):
            continue
        root = jnp.sqrt(usv.s[:r])
        a = (usv.u[:, :r] * root).astype(dtype)
        bb = (root[:, None] * usv.vt[:r]).astype(dtype)

        def lowrank(x, a, bb):
            return (x @ a) @ bb

        def lowrank_train(x, a, bb):
            return jax.grad(lambda a, bb: jnp.sum(((x @ a) @ bb).astype(jnp.float32) ** 2), argnums=(0, 1))(a, bb)

        got = np.asarray(jax.jit(lowrank)(x, a, bb), np.float32)
        want = np.asarray(x.astype(jnp.float32) @ (a.astype(jnp.float32) @ bb.astype(jnp.float32)))
        scale = float(np.max(np.abs(want))) or 1.0
        err = float(np.max(np.abs(got - want))) / scale
        if err > max(rtol, atol) * 4:
            raise AssertionError(f"x @ A @ B in {jnp.dtype(dtype).name} is off by {err:.3g} (relative) at rank {r}")
        fwd, trn = _time(lowrank, x, a, bb, repeats=repeats), _time(lowrank_train, x, a, bb, repeats=repeats)
        rows.append({"rank": r, "forward": fwd, "train": trn, "max_rel_error": err,
                     "flop_ratio": r * (m + n) / (m * n),
                     "speedup_forward": out["dense"]["forward"]["median_s"] / fwd["median_s"],
                     "speedup_train": out["dense"]["train"]["median_s"] / trn["median_s"]})
    out["lowrank"] = rows
    sm, sn = cfg["svd"]
    w_svd = w32 if (sm, sn) == (m, n) else jnp.asarray(rng.normal(size=(sm, sn)), jnp.float32)
    out["svd"] = {"shape": [sm, sn], **_time(svd, w_svd, repeats=svd_repeats)}
    return out
