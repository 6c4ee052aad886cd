"""Experiment 2 (paper section 4.2): gradient descent on closed-form functions with forward gradients.

Sphere ``sum x_i^2``, Rosenbrock ``sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` and Styblinski-Tang
``sum (x_i^4 - 16 x_i^2 + 5 x_i) / 2`` in n dimensions, minimised by plain gradient descent with the
true gradient (backprop), the forward-gradient mean and the projection at several k.

Budget: ``T = steps_per_dim * n / k`` steps (10 n / k by default), which does not saturate: with k
tangents a step sees about k of the n directions, so T steps see each direction about 10 times (1000
fixed steps drove the sphere to about 0 for every method up to n = 64). Backprop gets the same T as
the forward gradients of the same (n, k). A run's score is its relative gap
``(f_T - f*) / (f_0 - f*)``; a run that reaches ``threshold`` (1e-6) first at step s scores
``threshold * s / T`` instead, so reaching it sooner is better and every such run beats every run that
does not. Diverged runs score infinity.

Each method gets its own learning rate: the best of a per-method log grid (``lr_per_decade`` points per
decade) by the median score over the seeds (the paper tuned with Propulate). The start is uniform in
[-2, 2]^n per seed; all seeds and learning rates run at once (vmap) in one compiled scan per
(function, n, method, k). Seed s uses the same start and tangent key for every method (paired runs).

The comparison: in every cell (function, n, k) with k / n >= ``min_k_over_n`` the projection "wins"
when its median score is lower than the mean's; it passes when it wins in at least ``win_fraction`` of
those cells with a one-sided sign test over the cells at p < 0.05 (ties dropped).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import fwdgrad
from jaxlab.core import Constraint, each, nonempty, one_of, positive, write_json


def sphere(x):
    return jnp.sum(x ** 2)


def rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def styblinski_tang(x):
    return 0.5 * jnp.sum(x ** 4 - 16.0 * x ** 2 + 5.0 * x)


FUNCTIONS = {"sphere": sphere, "rosenbrock": rosenbrock, "styblinski_tang": styblinski_tang}
# Global minimum values (Styblinski-Tang: -39.16616570377142 per dimension at x_i = -2.903534).
MINIMA = {"sphere": lambda n: 0.0, "rosenbrock": lambda n: 0.0, "styblinski_tang": lambda n: -39.16616570377142 * n}


@dataclasses.dataclass(frozen=True)
class FunctionsConfig:
    """Grid of the closed-form optimisation experiment.

    Attributes:
      lr_ranges: per method ``(method, lowest, highest)`` rate of its grid (powers of ten).
      min_k_over_n: the cells of the pass criterion have k / n at least this.
    """

    functions: tuple[str, ...] = ("sphere", "rosenbrock", "styblinski_tang")
    dims: tuple[int, ...] = (16, 64, 256, 1024)
    tangents: tuple[int, ...] = (2, 4, 16)
    aggregations: tuple[str, ...] = ("mean", "projection")
    steps_per_dim: float = 10.0
    threshold: float = 1e-6
    lr_per_decade: int = 4
    lr_ranges: tuple[tuple[str, float, float], ...] = (("backprop", 1e-6, 1.0), ("projection", 1e-6, 1.0),
                                                       ("mean", 1e-9, 1e-1))
    seeds: int = 5
    mode: str = "jvp"
    min_k_over_n: float = 1 / 64
    win_fraction: float = 0.75

    CONSTRAINTS: ClassVar[dict] = {
        "functions": (nonempty, each(one_of("sphere", "rosenbrock", "styblinski_tang"))),
        "dims": (nonempty, each(positive)), "tangents": (nonempty, each(positive)),
        "aggregations": (nonempty, each(one_of(*fwdgrad.AGGREGATIONS))), "steps_per_dim": positive,
        "threshold": positive, "lr_per_decade": positive, "seeds": positive, "mode": one_of("jvp", "simulated"),
        "min_k_over_n": positive, "win_fraction": positive,
        "lr_ranges": each(Constraint(lambda r: isinstance(r[0], str) and 0 < r[1] <= r[2] < math.inf,
                                     "(method, lowest > 0, highest >= lowest)")),
    }


def steps_for(n: int, k: int, steps_per_dim: float) -> int:
    """The budget ``T = steps_per_dim * n / k`` (at least 1)."""
    return max(1, int(round(steps_per_dim * n / k)))


def log_grid(lowest: float, highest: float, per_decade: int) -> list[float]:
    """Rates ``10**(i / per_decade)`` from ``lowest`` to ``highest`` (both rounded to the grid)."""
    lo, hi = round(math.log10(lowest) * per_decade), round(math.log10(highest) * per_decade)
    return [float(f"{10 ** (i / per_decade):.4g}") for i in range(lo, hi + 1)]


def method_lrs(config, method: str) -> list[float]:
    ranges = {m: (lo, hi) for m, lo, hi in config.lr_ranges}
    if method not in ranges:
        raise ValueError(f"no learning-rate range for method {method!r}; add ({method!r}, lowest, highest) to "
                         "lr_ranges")
    return log_grid(*ranges[method], config.lr_per_decade)


def descent_program(fn: Callable, estimator: Callable, steps: int, fmin: float, threshold: float):
    """Jitted ``run(x0s (S, n), lrs (L,), keys (S,), *extra) -> (gaps (L, S, steps), first_hit (L, S))``.

    ``estimator(x, key, *extra) -> gradient estimate``; ``extra`` are traced arguments shared by every run
    (the angle of the fixed-angle experiment: one compilation serves every value). ``gaps[..., t]`` is the
    relative gap after step t + 1; ``first_hit`` the first step (1-based) with gap <= threshold, or
    ``steps + 1``.
    """

    def descend(x0, lr, key, *extra):
        f0 = fn(x0)

        def body(carry, t):
            x, hit = carry
            x = x - lr * estimator(x, jax.random.fold_in(key, t), *extra)
            gap = (fn(x) - fmin) / (f0 - fmin)
            hit = jnp.where((hit > steps) & (gap <= threshold), t + 1, hit)
            return (x, hit), gap

        (_, hit), gaps = jax.lax.scan(body, (x0, jnp.int32(steps + 1)), jnp.arange(steps, dtype=jnp.int32))
        return gaps, hit

    def run(x0s, lrs, keys, *extra):
        per_seed = jax.vmap(lambda x0, lr, key: descend(x0, lr, key, *extra), in_axes=(0, None, 0))
        return jax.vmap(per_seed, in_axes=(None, 0, None))(x0s, lrs, keys)

    return jax.jit(run)


def scores_from(gaps: np.ndarray, hits: np.ndarray, steps: int, threshold: float) -> np.ndarray:
    """Per-run scores at budget ``steps`` (lower is better; see the module docstring)."""
    gap = np.asarray(gaps, np.float64)[..., steps - 1]
    hit = np.asarray(hits)
    score = np.where(hit <= steps, threshold * hit / steps, gap)
    return np.where(np.isfinite(score), score, np.inf)


def _estimator(fn, method: str, k: int, mode: str):
    if method == "backprop":
        return lambda x, key: jax.grad(fn)(x)
    return lambda x, key: fwdgrad.forward_gradient(fn, x, key=key, num_tangents=k, aggregation=method, mode=mode)[0]


def tune(scores: np.ndarray) -> int:
    """Index of the rate (axis 0) with the lowest median score over seeds (ties: the smaller rate)."""
    return int(np.argmin(np.median(scores, axis=1)))


def sign_test(wins: int, losses: int) -> float:
    """One-sided p-value of ``wins`` against ``losses`` under a fair coin (ties left out)."""
    from scipy import stats

    return float(stats.binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0


def optimize_functions(config: FunctionsConfig) -> list[dict]:
    """Runs the grid; returns one row per (function, n, method, k) at its tuned rate."""
    rows = []
    for fname in config.functions:
        fn = FUNCTIONS[fname]
        for n in config.dims:
            keys = jax.random.split(jax.random.key(n), config.seeds)
            x0 = jax.vmap(lambda kk, n=n: jax.random.uniform(kk, (n,), jnp.float32, -2.0, 2.0))(keys)
            budgets = {k: steps_for(n, k, config.steps_per_dim) for k in config.tangents}
            fmin = MINIMA[fname](n)
            # Backprop once with the longest budget, scored at every k's budget.
            methods = [("backprop", None)] + [(a, k) for a in config.aggregations for k in config.tangents]
            for method, k in methods:
                steps = max(budgets.values()) if k is None else budgets[k]
                lrs = method_lrs(config, method)
                program = descent_program(fn, _estimator(fn, method, k or 0, config.mode), steps, fmin,
                                          config.threshold)
                gaps, hits = (np.asarray(a) for a in program(x0, jnp.asarray(lrs, jnp.float32), keys))
                for kk in (config.tangents if k is None else (k,)):
                    T = budgets[kk]
                    scores = scores_from(gaps, np.where(hits <= T, hits, T + 1), T, config.threshold)
                    best = tune(scores)
                    s = scores[best]
                    reached = hits[best] <= T
                    rows.append({"function": fname, "n": n, "method": method, "k": kk, "steps": T,
                                 "lr": lrs[best], "lr_at_edge": best in (0, len(lrs) - 1),
                                 "median_score": float(np.median(s)), "seed_scores": [float(v) for v in s],
                                 "median_gap": float(np.median(gaps[best, :, T - 1])),
                                 "reached_threshold": int(reached.sum()),
                                 "median_steps_to_threshold": float(np.median(hits[best][reached]))
                                 if reached.any() else None})
    return rows


def compare_cells(rows: list[dict], config: FunctionsConfig) -> tuple[list[dict], dict]:
    """Projection against mean per cell (function, n, k) and the pass criterion over the qualifying cells."""
    cells = []
    for p in (r for r in rows if r["method"] == "projection"):
        m = next(r for r in rows if r["method"] == "mean" and (r["function"], r["n"], r["k"]) ==
                 (p["function"], p["n"], p["k"]))
        bp = next((r for r in rows if r["method"] == "backprop" and (r["function"], r["n"], r["k"]) ==
                   (p["function"], p["n"], p["k"])), None)
        ps, ms = np.asarray(p["seed_scores"]), np.asarray(m["seed_scores"])
        cells.append({"function": p["function"], "n": p["n"], "k": p["k"], "k_over_n": p["k"] / p["n"],
                      "steps": p["steps"], "projection": p["median_score"], "mean": m["median_score"],
                      "backprop": bp["median_score"] if bp else None,
                      "winner": "projection" if p["median_score"] < m["median_score"]
                      else "mean" if m["median_score"] < p["median_score"] else "tie",
                      "seed_wins": int(np.sum(ps < ms)), "seed_losses": int(np.sum(ps > ms)),
                      "lr_projection": p["lr"], "lr_mean": m["lr"]})
    q = [c for c in cells if c["k_over_n"] >= config.min_k_over_n - 1e-12]
    wins = sum(c["winner"] == "projection" for c in q)
    losses = sum(c["winner"] == "mean" for c in q)
    seed_wins, seed_losses = sum(c["seed_wins"] for c in q), sum(c["seed_losses"] for c in q)
    fraction = wins / len(q) if q else None
    p_value = sign_test(wins, losses)
    verdict = {
        "qualifying_cells": len(q), "projection_wins": wins, "mean_wins": losses,
        "projection_win_fraction": fraction, "sign_test_p": p_value,
        "seed_pairs_projection_wins": seed_wins, "seed_pairs_mean_wins": seed_losses,
        "seed_sign_test_p": sign_test(seed_wins, seed_losses),
        "projection_passes": bool(q) and fraction >= config.win_fraction and p_value < 0.05,
        "projection_win_fraction_all_cells": (sum(c["winner"] == "projection" for c in cells) / len(cells)
                                              if cells else None),
    }
    return cells, verdict


def plot_functions(rows: list[dict], config: FunctionsConfig, path: Path) -> None:
    """Median score (relative gap, or threshold * s / T once reached) against n, one panel per function."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(config.functions), figsize=(5 * len(config.functions), 4), squeeze=False)
    styles = {"backprop": ":", "mean": "--", "projection": "-"}
    colors = dict(zip(config.tangents, plt.get_cmap("viridis")(np.linspace(0, 0.85, len(config.tangents)))))
    for ax, fname in zip(axes[0], config.functions):
        for method in ("backprop", *config.aggregations):
            for k in config.tangents:
                sel = sorted((r for r in rows if r["function"] == fname and r["method"] == method and r["k"] == k),
                             key=lambda r: r["n"])
                ax.plot([r["n"] for r in sel], [max(min(r["median_score"], 1e3), 1e-9) for r in sel],
                        styles.get(method, "-."), color=colors[k], marker="o", ms=3, label=f"{method} k={k}")
        ax.axhline(config.threshold, color="k", lw=0.5)
        ax.set(xscale="log", yscale="log", title=f"{fname}: T = {config.steps_per_dim:g} n / k steps, best rate",
               xlabel="n", ylabel="median (f_T - f*) / (f_0 - f*)")
        ax.legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_functions(config: FunctionsConfig, workdir: str | Path) -> dict:
    """Runs the grid; writes functions.png and summary.json (with the rows and the cells) into ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for f in config.functions:
        if f not in FUNCTIONS:
            raise ValueError(f"unknown function {f!r}; choose from {sorted(FUNCTIONS)}")
    for m in ("backprop", *config.aggregations):
        method_lrs(config, m)
    t0 = time.perf_counter()
    rows = optimize_functions(config)
    wall = time.perf_counter() - t0
    plot_functions(rows, config, workdir / "functions.png")
    cells, verdict = compare_cells(rows, config) if {"mean", "projection"} <= set(config.aggregations) else ([], {})

    def gaps(method):
        return [r["median_score"] for r in rows if r["method"] == method]

    summary = {
        "config": dataclasses.asdict(config),
        "wall_s": wall,
        "table": [{**r, "median_score": float(f"{r['median_score']:.3g}"),
                   "median_gap": float(f"{r['median_gap']:.3g}")}
                  for r in rows],
        "cells": cells,
        **verdict,
        "plots": ["functions.png"],
        "projection_beats_mean_fraction": verdict.get("projection_win_fraction_all_cells"),
        "median_gap_projection": float(np.median(gaps("projection"))) if gaps("projection") else None,
        "median_gap_mean": float(np.median(gaps("mean"))) if gaps("mean") else None,
        "median_gap_backprop": float(np.median(gaps("backprop"))),
    }
    write_json(workdir / "summary.json", summary)
    return summary
