"""Experiment 1 (paper section 4.1): how well k random tangents approximate a gradient in R^n.

For a fixed gradient g (all ones, or a fixed random vector) and ``samples`` independent sets of k
tangents, it measures the cosine similarity between g and the estimate, the norm ratio
``|g_hat| / |g|`` and the relative error ``|g_hat - g| / |g|`` for the mean and the projection,
over a grid of n and k. Estimates come from ``fwdgrad.forward_gradient`` in ``simulated`` mode on
the linear loss ``f(w) = <g, w>`` (identical to ``jvp`` mode; faster).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import fwdgrad
from jaxlab.core import each, in_range, nonempty, nonnegative, one_of, positive, write_json

from ._serial import key_after, map_in_batches


@dataclasses.dataclass(frozen=True)
class ApproximationConfig:
    """Grid of the approximation-quality experiment."""

    dims: tuple[int, ...] = tuple(2 ** i for i in range(0, 13))
    tangents: tuple[int, ...] = (1, 2, 4, 16, 64, 256)
    aggregations: tuple[str, ...] = ("mean", "projection")
    gradient: Literal["ones", "random"] = "ones"
    sampler: str = "normal"
    samples: int = 1000
    seed: int = 0
    #: The projection must beat the mean's cosine by at least this much where k / n >= margin_from (k >= 2).
    margin: float = 0.05
    margin_from: float = 0.25

    CONSTRAINTS: ClassVar[dict] = {
        "dims": (nonempty, each(positive)), "tangents": (nonempty, each(positive)),
        "aggregations": (nonempty, each(one_of(*fwdgrad.AGGREGATIONS))), "sampler": one_of(*fwdgrad.SAMPLERS),
        "samples": positive, "seed": in_range(0, 2**32 - 1), "margin": nonnegative, "margin_from": nonnegative,
    }


def _metrics_fn(n: int, k: int, config: ApproximationConfig):
    if config.gradient == "ones":
        g = jnp.ones(n, jnp.float32)
    else:
        g = jax.random.normal(jax.random.key(config.seed + 7919), (n,), jnp.float32)
    gnorm = jnp.linalg.norm(g)

    def one(key):
        out = {}
        est = None
        for agg in config.aggregations:  # the same key: every aggregation sees the same tangents
            # ... drawn only once the previous estimate exists: two batched solves (or QRs) side by side
            # deadlock XLA's CPU runtime (see _serial.py).
            key = key if est is None else key_after(key, est)
            est, _ = fwdgrad.forward_gradient(lambda w: jnp.dot(g, w), jnp.zeros(n, jnp.float32), key=key,
                                              num_tangents=k, aggregation=agg, sampler=config.sampler,
                                              mode="simulated")
            enorm = jnp.linalg.norm(est)
            out[agg] = jnp.stack([jnp.dot(est, g) / (enorm * gnorm + 1e-30), enorm / gnorm,
                                  jnp.linalg.norm(est - g) / gnorm])
        return out

    @jax.jit
    def run(keys):
        # Sequential batches of samples bound the memory at k x n x batch; no remainder batch runs beside
        # them (its solves would run side by side with the scan's: a deadlock, see _serial.py).
        batch = max(1, min(config.samples, (1 << 22) // max(k * n, 1)))
        return map_in_batches(one, keys, batch)

    return run


def approximation_quality(config: ApproximationConfig) -> list[dict]:
    """Mean and std over samples of cosine, norm ratio and relative error for every (n, k, aggregation)."""
    rows = []
    base = jax.random.key(config.seed)
    for n in config.dims:
        for k in config.tangents:
            keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(base, n), k), config.samples)
            res = _metrics_fn(n, k, config)(keys)
            for agg in config.aggregations:
                m = np.asarray(res[agg], np.float64)
                row = {"n": n, "k": k, "aggregation": agg, "samples": config.samples,
                       "cosine": float(m[:, 0].mean()), "cosine_std": float(m[:, 0].std()),
                       "norm_ratio": float(m[:, 1].mean()), "norm_ratio_std": float(m[:, 1].std()),
                       "relative_error": float(m[:, 2].mean())}
                if agg == "projection" and "mean" in res:
                    # Paired: the projection is the best approximation in span(V), so per sample its
                    # cosine is >= the mean's (up to float rounding).
                    gap = m[:, 0] - np.asarray(res["mean"], np.float64)[:, 0]
                    row.update(cosine_minus_mean=float(gap.mean()), cosine_minus_mean_min=float(gap.min()),
                               cosine_minus_mean_se=float(gap.std(ddof=1) / np.sqrt(len(gap))))
                rows.append(row)
    return rows


def plot_approximation(rows: list[dict], path: Path) -> None:
    """Cosine and norm ratio against n, one line per k, one column per aggregation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = sorted({r["aggregation"] for r in rows}, key=lambda a: ["mean", "projection"].index(a)
                  if a in ("mean", "projection") else 9)
    ks = sorted({r["k"] for r in rows})
    fig, axes = plt.subplots(2, len(aggs), figsize=(5 * len(aggs), 7.5), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for j, agg in enumerate(aggs):
        for i, k in enumerate(ks):
            sel = sorted((r for r in rows if r["aggregation"] == agg and r["k"] == k), key=lambda r: r["n"])
            n = [r["n"] for r in sel]
            color = cmap(i / max(len(ks) - 1, 1))
            axes[0, j].plot(n, [r["cosine"] for r in sel], "o-", ms=3, color=color, label=f"k={k}")
            axes[1, j].plot(n, [r["norm_ratio"] for r in sel], "o-", ms=3, color=color, label=f"k={k}")
            if agg == "projection":  # theory: E cos^2 = k / n
                axes[0, j].plot(n, [min(1.0, math.sqrt(k / x)) for x in n], ":", color=color, lw=1)
        axes[0, j].set(xscale="log", title=f"{agg}: cosine similarity to the gradient", xlabel="n",
                       ylabel="cosine", ylim=(0, 1.05))
        axes[1, j].set(xscale="log", yscale="log", title=f"{agg}: |estimate| / |gradient|", xlabel="n",
                       ylabel="norm ratio")
        axes[1, j].axhline(1.0, color="k", lw=0.5)
        axes[0, j].legend(fontsize=7)
    axes[0, -1].text(0.02, 0.02, "dotted: sqrt(k/n)", transform=axes[0, -1].transAxes, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _margin_summary(rows: list[dict], config: ApproximationConfig) -> dict:
    """The goal's cells: k >= 2 everywhere (projection >= mean), and k / n >= margin_from (ahead by margin).

    In one dimension (n = 1) every estimate is parallel to the gradient (cosine 1 for both), so no margin
    is possible there; those cells are reported apart.
    """
    proj = [r for r in rows if r["aggregation"] == "projection" and "cosine_minus_mean" in r and r["k"] >= 2]
    if not proj:
        return {}
    margin_cells = [r for r in proj if r["k"] / r["n"] >= config.margin_from and r["n"] >= 2]
    short = [{"n": r["n"], "k": r["k"], "cosine_minus_mean": round(r["cosine_minus_mean"], 4)}
             for r in margin_cells if r["cosine_minus_mean"] < config.margin]
    return {
        "cells_k_ge_2": len(proj),
        "projection_cosine_ge_mean_every_cell_k_ge_2": all(r["cosine_minus_mean"] >= -1e-6 for r in proj),
        "projection_cosine_ge_mean_every_sample_k_ge_2": all(r["cosine_minus_mean_min"] >= -1e-5 for r in proj),
        "margin_cells": len(margin_cells),
        "min_margin_where_k_over_n_ge": min((r["cosine_minus_mean"] for r in margin_cells), default=None),
        f"projection_ahead_by_{config.margin}_where_k_over_n_ge_{config.margin_from}": not short,
        "margin_cells_short": short,
        "one_dimensional_cells": [{"k": r["k"], "cosine_minus_mean": r["cosine_minus_mean"]}
                                  for r in proj if r["n"] == 1],
    }


def run_approximation(config: ApproximationConfig, workdir: str | Path) -> dict:
    """Runs the grid; writes approximation_quality.png, rows.json and summary.json into ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = approximation_quality(config)
    wall = time.perf_counter() - t0
    plot_approximation(rows, workdir / "approximation_quality.png")
    write_json(workdir / "rows.json", rows)
    # The report table: one row per (n, k), the aggregations side by side.
    table = []
    for n in config.dims:
        for k in config.tangents:
            row = {"n": n, "k": k}
            for r in rows:
                if r["n"] == n and r["k"] == k:
                    row[f"cos_{r['aggregation']}"] = round(r["cosine"], 4)
                    row[f"ratio_{r['aggregation']}"] = float(f"{r['norm_ratio']:.4g}")
            row["sqrt_k_over_n"] = round(min(1.0, math.sqrt(k / n)), 4)
            table.append(row)

    def pick(agg, n, k, key):
        return next((r[key] for r in rows if r["aggregation"] == agg and r["n"] == n and r["k"] == k), None)

    n_max, k_max = max(config.dims), max(config.tangents)
    both = {"mean", "projection"} <= set(config.aggregations)
    summary = {
        "config": dataclasses.asdict(config),
        "wall_s": wall,
        "table": table,
        "plots": ["approximation_quality.png"],
        "n_max": n_max,
        "k_max": k_max,
        "cos_projection_at_max": pick("projection", n_max, k_max, "cosine"),
        "cos_mean_at_max": pick("mean", n_max, k_max, "cosine"),
        "projection_cosine_ge_mean": all(
            pick("projection", n, k, "cosine") >= pick("mean", n, k, "cosine") - 1e-6
            for n in config.dims for k in config.tangents) if both else None,
        **_margin_summary(rows, config),
    }
    write_json(workdir / "summary.json", summary)
    return summary
