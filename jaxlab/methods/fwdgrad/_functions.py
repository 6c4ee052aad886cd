"""Experiment 2 (paper section 4.2): gradient descent on closed-form functions with forward gradients.

Sphere ``sum x_i^2``, Rosenbrock ``sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2`` and Styblinski-Tang
``sum (x_i^4 - 16 x_i^2 + 5 x_i) / 2`` in n dimensions, minimised by plain gradient descent with the
true gradient (backprop), the forward-gradient mean and the projection at several k. As in the
paper, each method gets its own learning rate: here the best of a log grid, chosen by the median
final value over the seeds (the paper tuned with Propulate). The start is uniform in [-2, 2]^n per
seed; all seeds and learning rates run at once (vmap) in one compiled scan per (function, n, method).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import fwdgrad
from jaxlab.core import each, nonempty, one_of, positive, write_json


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
    """Grid of the closed-form optimisation experiment."""

    functions: tuple[str, ...] = ("sphere", "rosenbrock", "styblinski_tang")
    dims: tuple[int, ...] = (4, 16, 64, 256)
    tangents: tuple[int, ...] = (2, 4, 16)
    aggregations: tuple[str, ...] = ("mean", "projection")
    learning_rates: tuple[float, ...] = tuple(float(f"{10 ** (e / 2):.3g}") for e in range(-10, 1))
    steps: int = 1000
    seeds: int = 5
    mode: str = "jvp"

    CONSTRAINTS: ClassVar[dict] = {
        "functions": (nonempty, each(one_of("sphere", "rosenbrock", "styblinski_tang"))),
        "dims": (nonempty, each(positive)), "tangents": (nonempty, each(positive)),
        "aggregations": (nonempty, each(one_of(*fwdgrad.AGGREGATIONS))), "learning_rates": (nonempty, each(positive)),
        "steps": positive, "seeds": positive, "mode": one_of("jvp", "simulated"),
    }


def _method_runner(fn, n: int, method: str, k: int, config: FunctionsConfig):
    def grad(x, key):
        if method == "backprop":
            return jax.grad(fn)(x)
        return fwdgrad.forward_gradient(fn, x, key=key, num_tangents=k, aggregation=method, mode=config.mode)[0]

    def descend(x0, lr, key):
        def body(x, i):
            x = x - lr * grad(x, jax.random.fold_in(key, i))
            return x, fn(x)

        _, values = jax.lax.scan(body, x0, jnp.arange(config.steps))
        return values

    # vmap over learning rates (outer) and seeds (inner).
    return jax.jit(jax.vmap(jax.vmap(descend, in_axes=(0, None, 0)), in_axes=(None, 0, None)))


def optimize_functions(config: FunctionsConfig) -> tuple[list[dict], dict]:
    """Runs the grid. Returns table rows and the best-LR curves keyed by (function, n, method, k)."""
    rows, curves = [], {}
    lrs = jnp.asarray(config.learning_rates, jnp.float32)
    for fname in config.functions:
        fn = FUNCTIONS[fname]
        for n in config.dims:
            keys = jax.random.split(jax.random.key(n), config.seeds)
            x0 = jax.vmap(lambda kk: jax.random.uniform(kk, (n,), jnp.float32, -2.0, 2.0))(keys)
            f0 = float(np.median(np.asarray(jax.vmap(fn)(x0))))
            fmin = MINIMA[fname](n)
            methods = [("backprop", 0)] + [(a, k) for a in config.aggregations for k in config.tangents]
            for method, k in methods:
                values = np.asarray(_method_runner(fn, n, method, k, config)(x0, lrs, keys), np.float64)
                final = values[:, :, -1]
                final = np.where(np.isfinite(final), final, np.inf)
                med = np.median(final, axis=1)
                best = int(np.argmin(med))
                gap = (med[best] - fmin) / max(f0 - fmin, 1e-30)
                rows.append({"function": fname, "n": n, "method": method, "k": k or None,
                             "lr": float(lrs[best]), "final_value": float(med[best]),
                             "relative_gap": float(gap), "initial_value": f0})
                curves[(fname, n, method, k)] = np.median(values[best], axis=0)
    return rows, curves


def plot_functions(rows: list[dict], config: FunctionsConfig, path: Path) -> None:
    """Relative optimality gap (f_T - f*) / (f_0 - f*) against n, one panel per function."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(config.functions), figsize=(5 * len(config.functions), 4), squeeze=False)
    styles = {"backprop": "k-", "mean": "--", "projection": "-"}
    for ax, fname in zip(axes[0], config.functions):
        series = sorted({(r["method"], r["k"]) for r in rows if r["function"] == fname},
                        key=lambda s: (s[0] != "backprop", s[0], s[1] or 0))
        for method, k in series:
            sel = sorted((r for r in rows if r["function"] == fname and r["method"] == method and r["k"] == k),
                         key=lambda r: r["n"])
            label = "backprop" if method == "backprop" else f"{method} k={k}"
            ax.plot([r["n"] for r in sel], [max(r["relative_gap"], 1e-12) for r in sel], styles.get(method, ":"),
                    marker="o", ms=3, label=label)
        ax.set(xscale="log", yscale="log", title=f"{fname}: {config.steps} steps, best LR",
               xlabel="n", ylabel="(f_T - f*) / (f_0 - f*)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_functions(config: FunctionsConfig, workdir: str | Path) -> dict:
    """Runs the grid; writes functions.png, summary.json (with the table) into ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    for f in config.functions:
        if f not in FUNCTIONS:
            raise ValueError(f"unknown function {f!r}; choose from {sorted(FUNCTIONS)}")
    t0 = time.perf_counter()
    rows, _ = optimize_functions(config)
    wall = time.perf_counter() - t0
    plot_functions(rows, config, workdir / "functions.png")
    table = [{**r, "relative_gap": float(f"{r['relative_gap']:.3g}"), "final_value": float(f"{r['final_value']:.4g}"),
              "initial_value": float(f"{r['initial_value']:.4g}")} for r in rows]

    def gaps(method):
        return [r["relative_gap"] for r in rows if r["method"] == method]

    pairs = [(p, m) for p in rows for m in rows if p["method"] == "projection" and m["method"] == "mean"
             and (p["function"], p["n"], p["k"]) == (m["function"], m["n"], m["k"])]
    summary = {
        "config": dataclasses.asdict(config),
        "wall_s": wall,
        "table": table,
        "plots": ["functions.png"],
        "projection_beats_mean_fraction": float(np.mean([p["relative_gap"] <= m["relative_gap"] for p, m in pairs]))
        if pairs else None,
        "median_gap_projection": float(np.median(gaps("projection"))) if gaps("projection") else None,
        "median_gap_mean": float(np.median(gaps("mean"))) if gaps("mean") else None,
        "median_gap_backprop": float(np.median(gaps("backprop"))),
    }
    write_json(workdir / "summary.json", summary)
    return summary

