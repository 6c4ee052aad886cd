"""The scaling study of Huber et al., "Energy Consumption in Parallel Neural Network Training"
(arXiv 2508.07706): a grid over (devices, global batch, local batch) for a ResNet and an AFNO
network, with time, energy, device-hours, samples and updates per device-hour and the loss
reached, and the fit ``energy = a * device_hours + b`` per model.

Deviations from the paper: generated data instead of ImageNet/ERA5 (nothing is downloaded at run time),
a fixed number of epochs instead of training to convergence, JAX SPMD (synchronised BatchNorm) instead
of PyTorch DDP, and ``EnergyMeter`` instead of perun. On machines without NVML or RAPL the energy is
the CPU-time estimate (flagged ``estimated`` in every row); on fake CPU devices device-hours are
``devices x wall time`` although the devices share the same cores.
"""

from __future__ import annotations

import csv
import dataclasses
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from jaxlab import energy
from jaxlab.core import (Constraint, at_least, each, environment_info, in_range, nonempty, nonnegative, one_of,
                         positive, write_json)
from jaxlab.train import TrainState

from ._data_parallel import (
    accumulation_steps,
    make_data_mesh,
    make_data_parallel_step,
    replicate,
    shard_batch,
)
from ._tasks import Task, classification_task, forecast_task


@dataclasses.dataclass(frozen=True)
class ScalingConfig:
    """Settings of the scaling grid (documented instances in configs/energy_scaling/).

    ``grid`` holds runs named as in the paper, ``"<devices>g<local batch>l"`` (global batch = devices x
    local batch), or ``"<devices>g<global>G<local>l"`` with accumulation (the global batch must be a
    multiple of devices x local batch; the quotient is the number of micro-batches per update).
    Override it with ``--set grid=1g256l,2g256l,2g1024G256l``.
    """

    models: tuple[str, ...] = ("resnet", "afno")
    grid: tuple[str, ...] = ("1g256l", "2g256l", "4g256l", "8g256l", "2g128l", "4g64l", "8g32l")
    epochs: int = 4
    num_train: int = 8192
    num_test: int = 1024
    seed: int = 0
    # ResNet (paper: ResNet50, SGD momentum 0.9, wd 1e-4, lr 0.1 * GBS / 256, 5-epoch warm-up).
    resnet: str = "resnet50"
    resnet_width: int = 64
    image_size: int = 64
    num_classes: int = 100
    resnet_lr_per_256: float = 0.1
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.1
    # AFNO (FourCastNet: Adam 5e-4 at global batch 64, cosine).
    afno_embed_dim: int = 256
    afno_depth: int = 4
    afno_num_blocks: int = 8
    afno_patch_size: int = 4
    field_shape: tuple[int, int] = (64, 128)
    field_channels: int = 20
    afno_lr: float = 5e-4
    # Energy accounting.
    cpu_tdp_w: float = energy.DEFAULT_CPU_TDP_W
    pue: float = 1.0
    carbon_g_per_kwh: float = energy.DEFAULT_CARBON_G_PER_KWH
    bf16: bool = False

    CONSTRAINTS: ClassVar[dict] = {
        "models": (nonempty, each(one_of("resnet", "afno"))),
        "grid": (nonempty, each(Constraint(lambda r: _RUN.match(r.strip()) is not None,
                                           "<devices>g<local>l or <devices>g<global>G<local>l (e.g. 4g64l)"))),
        "epochs": positive, "num_train": positive, "num_test": positive, "seed": in_range(0, 2**32 - 1),
        "resnet": one_of("resnet18", "resnet50", "tiny"), "resnet_width": positive, "image_size": positive,
        "num_classes": positive, "resnet_lr_per_256": positive, "weight_decay": nonnegative,
        "warmup_fraction": in_range(0.0, 1.0, high_open=True), "afno_embed_dim": positive, "afno_depth": positive,
        "afno_num_blocks": positive, "afno_patch_size": positive, "field_shape": each(positive),
        "field_channels": positive, "afno_lr": positive, "cpu_tdp_w": positive, "pue": at_least(1.0),
        "carbon_g_per_kwh": nonnegative,
    }


_RUN = re.compile(r"^(\d+)g(?:(\d+)G)?(\d+)l$")


def parse_run(spec: str) -> tuple[int, int, int]:
    """``"4g64l"`` -> ``(4, 256, 64)``; ``"2g512G64l"`` -> ``(2, 512, 64)`` (devices, global, local batch).

    Raises:
      ValueError: for anything else.
    """
    m = _RUN.match(spec.strip())
    if not m:
        raise ValueError(f"bad grid entry {spec!r}; write <devices>g<local>l (e.g. 4g64l) or "
                         "<devices>g<global>G<local>l (e.g. 2g512G64l)")
    d, g, lb = int(m.group(1)), m.group(2), int(m.group(3))
    return d, (int(g) if g else d * lb), lb


def _model_kwargs(name: str, config: ScalingConfig) -> dict[str, Any]:
    """The model's arguments of :func:`classification_task` / :func:`forecast_task` from ``config``."""
    dtype = jnp.bfloat16 if config.bf16 else jnp.float32
    if name == "resnet":
        return dict(resnet=config.resnet, width=config.resnet_width, image_size=config.image_size,
                    num_classes=config.num_classes, dtype=dtype)
    if name == "afno":
        return dict(embed_dim=config.afno_embed_dim, depth=config.afno_depth, num_blocks=config.afno_num_blocks,
                    patch_size=config.afno_patch_size, channels=config.field_channels, dtype=dtype)
    raise ValueError(f"unknown model {name!r}; choose 'resnet' or 'afno'")


def _input_shape(name: str, config: ScalingConfig) -> tuple[int, ...]:
    """One sample's input shape: an RGB image or a multi-channel field."""
    if name == "resnet":
        return (config.image_size, config.image_size, 3)
    return (*config.field_shape, config.field_channels)


def make_task(name: str, config: ScalingConfig) -> Task:
    """The workload ``name`` (``"resnet"`` or ``"afno"``) of ``config``: model, loss and generated data."""
    kwargs = _model_kwargs(name, config)
    if name == "resnet":
        return classification_task(**kwargs, num_train=config.num_train, num_test=config.num_test,
                                   key=jax.random.key(config.seed + 1))
    kwargs["field_shape"] = tuple(config.field_shape)
    return forecast_task(**kwargs, num_train=config.num_train, num_test=config.num_test, seed=config.seed + 2)


def _num_steps(config: ScalingConfig, num_train: int, global_batch: int, *, point: str = "") -> int:
    """Updates of a grid point: ``config.epochs`` epochs of whole global batches.

    Raises:
      ValueError: when ``global_batch`` exceeds ``num_train`` (no whole batch; ``point`` names the grid point).
    """
    if global_batch > num_train:
        where = f" of grid point {point!r}" if point else ""
        raise ValueError(f"global batch {global_batch}{where} exceeds the {num_train} training samples; "
                         "raise num_train")
    return config.epochs * (num_train // global_batch)


def make_optimizer(name: str, config: ScalingConfig, global_batch: int, num_steps: int
                   ) -> optax.GradientTransformation:
    """The paper's recipes: SGD with the linear scaling rule for ResNet, Adam with a fixed lr for AFNO."""
    warmup = max(1, int(config.warmup_fraction * num_steps))
    if name == "resnet":
        peak = config.resnet_lr_per_256 * global_batch / 256
        sched = optax.warmup_cosine_decay_schedule(0.0, peak, warmup, max(num_steps, warmup + 1))
        return optax.chain(optax.add_decayed_weights(config.weight_decay), optax.sgd(sched, momentum=0.9))
    sched = optax.warmup_cosine_decay_schedule(0.0, config.afno_lr, warmup, max(num_steps, warmup + 1))
    return optax.adam(sched)


def _init_key(seed: int) -> jax.Array:
    # The "rbg" generator: a model's init compiles about 3x faster than with threefry on CPU (one
    # threefry expansion per parameter), and the init is just as deterministic.
    return jax.random.key(seed, impl="rbg")


def _evaluate(task: Task, params, model_state, batch_size: int = 256) -> dict[str, float]:
    return _evaluate_arrays(task.jit_eval, params, model_state, task.test, batch_size)


def _evaluate_arrays(fn, params, model_state, data: dict, batch_size: int = 256) -> dict[str, float]:
    """``eval_<metric>``: the sums ``fn`` returns over ``data``'s batches, divided by the number of samples."""
    totals: dict[str, float] = {}
    n = len(data["x"])
    for i in range(0, n, batch_size):
        out = jax.device_get(fn(params, model_state, data["x"][i:i + batch_size], data["y"][i:i + batch_size]))
        for k, v in out.items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return {f"eval_{k}": v / n for k, v in totals.items()}


def run_point(task: Task, config: ScalingConfig, devices: int, global_batch: int, local_batch: int,
              *, available: Sequence[Any] | None = None, init: tuple[Any, Any] | None = None) -> dict[str, Any]:
    """Trains ``task`` for ``config.epochs`` epochs at one grid point; returns its measured row.

    ``init`` is ``(params, model_state)`` (default: ``task.init`` from ``config.seed``); every grid point
    of a model starts from the same parameters.
    """
    accum = accumulation_steps(global_batch, local_batch, devices)
    mesh = make_data_mesh(devices, available)
    n_train = len(task.train["x"])
    num_steps = _num_steps(config, n_train, global_batch)
    steps_per_epoch = n_train // global_batch
    tx = make_optimizer(task.name, config, global_batch, num_steps)
    params, model_state = task.init(_init_key(config.seed)) if init is None else init
    state = replicate(TrainState.create(params=params, tx=tx, model_state=model_state), mesh)
    step = make_data_parallel_step(task.loss_fn, tx, mesh, global_batch=global_batch, local_batch=local_batch)
    rng = np.random.default_rng(config.seed)
    perms = [rng.permutation(n_train) for _ in range(config.epochs)]

    def get_batch(s: int):
        idx = np.sort(perms[s // steps_per_epoch][(s % steps_per_epoch) * global_batch:][:global_batch])
        return shard_batch({k: v[idx] for k, v in task.train.items()}, mesh)

    key = jax.random.key(config.seed + 7)
    t0 = time.perf_counter()
    compiled = step.lower(state, get_batch(0), key).compile()
    compile_s = time.perf_counter() - t0

    meter = energy.EnergyMeter(devices=list(mesh.devices.flat), cpu_tdp_w=config.cpu_tdp_w, pue=config.pue,
                               carbon_g_per_kwh=config.carbon_g_per_kwh)
    losses = []
    with meter:
        for s in range(num_steps):
            state, metrics = compiled(state, get_batch(s), jax.random.fold_in(key, s))
            losses.append(metrics["loss"])
        jax.block_until_ready(state)
    rep = meter.report()
    train_loss = float(np.mean(jax.device_get(losses[-max(1, steps_per_epoch):])))
    host_state = jax.device_get(state)
    row: dict[str, Any] = {
        "model": task.name,
        "run": f"{devices}g{local_batch}l" if accum == 1 else f"{devices}g{global_batch}G{local_batch}l",
        "devices": devices,
        "global_batch": global_batch,
        "local_batch": local_batch,
        "accumulation": accum,
        "steps": num_steps,
        "samples": num_steps * global_batch,
        "compile_s": compile_s,
        "wall_s": rep.wall_s,
        "step_ms": 1e3 * rep.wall_s / num_steps,
        "energy_j": rep.total_energy_j,
        "energy_per_step_j": rep.total_energy_j / num_steps,
        **{f"energy_j_{k}": v for k, v in rep.energy_j.items()},
        "device_hours": rep.device_hours,
        "gpu_hours": rep.gpu_hours,
        "kwh": rep.kwh,
        "samples_per_device_hour": num_steps * global_batch / rep.device_hours,
        "updates_per_device_hour": num_steps / rep.device_hours,
        "energy_per_device_hour_j": rep.total_energy_j / rep.device_hours,
        "train_loss": train_loss,
        **_evaluate(task, host_state.params, host_state.model_state),
        "energy_source": "+".join(f"{k}:{v}" for k, v in sorted(rep.source.items())),
        "estimated": rep.estimated,
    }
    return row


def fit_energy(device_hours: Sequence[float], energy_j: Sequence[float]) -> dict[str, float]:
    """Least-squares ``energy_j = a * device_hours + b``; returns ``a`` (J per device-hour), ``b`` and R^2."""
    x = np.asarray(device_hours, np.float64)
    y = np.asarray(energy_j, np.float64)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError(f"the fit needs at least two distinct device-hour values, got {list(x)}")
    a, b = np.polyfit(x, y, 1)
    resid = y - (a * x + b)
    ss = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid**2)) / ss if ss > 0 else 1.0
    return {"a_j_per_device_hour": float(a), "b_j": float(b), "r2": r2, "points": int(len(x))}


def fit_energy_reference(device_hours, energy_j) -> dict[str, float]:
    """Closed-form simple linear regression (the oracle of :func:`fit_energy`)."""
    x = np.asarray(device_hours, np.float64)
    y = np.asarray(energy_j, np.float64)
    a = float(np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2))
    return {"a_j_per_device_hour": a, "b_j": float(y.mean() - a * x.mean())}


def plot_scaling(rows: Sequence[dict[str, Any]], fits: dict[str, dict[str, float]], workdir: Path) -> list[str]:
    """The paper's figures: energy vs device-hours with the fit, time vs devices, loss vs global batch,
    and energy per device-hour against samples and updates per device-hour."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    models = sorted({r["model"] for r in rows})
    names = []
    unit = "J (estimated)" if any(r["estimated"] for r in rows) else "J"

    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, m in zip(axes[0], models):
        rs = [r for r in rows if r["model"] == m]
        x = np.array([r["device_hours"] for r in rs])
        sc = ax.scatter(x, [r["energy_j"] for r in rs], c=[r["devices"] for r in rs], cmap="viridis")
        if m in fits:
            xx = np.linspace(0, x.max() * 1.05, 20)
            f = fits[m]
            ax.plot(xx, f["a_j_per_device_hour"] * xx + f["b_j"], "k--",
                    label=f"E = {f['a_j_per_device_hour']:.3g} J/dh x dh + {f['b_j']:.3g} J\nR² = {f['r2']:.3f}")
            ax.legend(fontsize=8)
        ax.set(title=m, xlabel="device-hours", ylabel=f"energy [{unit}]")
        fig.colorbar(sc, ax=ax, label="devices")
    fig.tight_layout()
    fig.savefig(workdir / "energy_vs_device_hours.png", dpi=100)
    plt.close(fig)
    names.append("energy_vs_device_hours.png")

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for m in models:
        rs = sorted((r for r in rows if r["model"] == m), key=lambda r: (r["devices"], r["global_batch"]))
        axes[0].plot([r["devices"] for r in rs], [r["wall_s"] for r in rs], "o", label=m)
        axes[1].plot([r["global_batch"] for r in rs], [r["eval_loss"] for r in rs], "o", label=m)
        axes[2].scatter([r["samples_per_device_hour"] for r in rs], [r["energy_per_device_hour_j"] for r in rs],
                        label=m)
        for r in rs:  # the paper's run names next to the points
            axes[0].annotate(r["run"], (r["devices"], r["wall_s"]), fontsize=7, xytext=(3, 3),
                             textcoords="offset points")
            axes[1].annotate(r["run"], (r["global_batch"], r["eval_loss"]), fontsize=7, xytext=(3, 3),
                             textcoords="offset points")
    axes[0].set(xscale="log", xlabel="devices", ylabel="wall time [s]", title="time to train")
    axes[1].set(xscale="log", xlabel="global batch", ylabel="eval loss", title="loss reached")
    axes[0].set_xticks(sorted({r["devices"] for r in rows}))
    axes[1].set_xticks(sorted({r["global_batch"] for r in rows}))
    axes[2].set(xscale="log", xlabel="samples per device-hour", ylabel=f"energy per device-hour [{unit}]",
                title="slope factors")
    for ax in axes:
        ax.legend(fontsize=7)
    for ax in axes:
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes[:2]:
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    fig.tight_layout()
    fig.savefig(workdir / "scaling.png", dpi=100)
    plt.close(fig)
    names.append("scaling.png")
    return names


_TABLE_COLUMNS = ("model", "run", "accumulation", "steps", "wall_s", "step_ms", "energy_j", "device_hours",
                  "samples_per_device_hour", "updates_per_device_hour", "energy_per_device_hour_j", "eval_loss",
                  "eval_accuracy", "estimated")


def _sig(v: Any) -> Any:
    return float(f"{v:.4g}") if isinstance(v, float) else v


def run(config: ScalingConfig, workdir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Runs the grid for every model, fits energy against device-hours, writes results and plots.

    Writes ``summary.json`` (fits, a short table), ``grid.json``/``grid.csv`` (every measured column)
    and the PNGs of :func:`plot_scaling` into ``workdir``.

    Grid points needing more devices than exist are skipped and listed in ``summary["skipped"]``.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    available = jax.devices()
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    points = [(m, *parse_run(p)) for m in config.models for p in config.grid]
    tasks: dict[str, Task] = {}
    inits: dict[str, tuple[Any, Any]] = {}
    for m, d, gbs, lbs in tqdm(points, desc="energy scaling", disable=not progress, leave=False):
        if d > len(available):
            skipped.append(f"{m} {d}g{gbs}G{lbs}l: needs {d} devices, {len(available)} available "
                           f"(set XLA_FLAGS=--xla_force_host_platform_device_count={d} on CPU)")
            continue
        if m not in tasks:
            tasks[m] = make_task(m, config)
            inits[m] = jax.device_get(tasks[m].init(_init_key(config.seed)))
        rows.append(run_point(tasks[m], config, d, gbs, lbs, available=available, init=inits[m]))
    fits: dict[str, dict[str, float]] = {}
    for m in config.models:
        rs = [r for r in rows if r["model"] == m]
        try:
            fits[m] = fit_energy([r["device_hours"] for r in rs], [r["energy_j"] for r in rs])
        except ValueError as e:
            skipped.append(f"{m} fit: {e}")
    plots = plot_scaling(rows, fits, workdir) if rows else []
    env = environment_info()
    kinds = sorted({k[len("energy_j_"):] for r in rows for k in r if k.startswith("energy_j_")})
    summary: dict[str, Any] = {
        "status": "completed",
        "wall_s": time.perf_counter() - t0,
        # Measured training time of all grid points (compilation excluded), in the loop's format.
        "energy": {
            "total_energy_j": float(sum(r["energy_j"] for r in rows)),
            "energy_j": {k: float(sum(r.get(f"energy_j_{k}", 0.0) for r in rows)) for k in kinds},
            "wall_s": float(sum(r["wall_s"] for r in rows)),
            "estimated": any(r["estimated"] for r in rows),
        },
        "device_kind": env["device_kind"],
        "estimated": any(r["estimated"] for r in rows),
        "energy_source": sorted({r["energy_source"] for r in rows}),
        "fits": fits,
        **{f"{m}_slope_j_per_device_hour": f["a_j_per_device_hour"] for m, f in fits.items()},
        **{f"{m}_fit_r2": f["r2"] for m, f in fits.items()},
        "skipped": skipped,
        "plots": plots,
        "table": [{k: _sig(r.get(k)) for k in _TABLE_COLUMNS if k in r} for r in rows],
    }
    write_json(workdir / "summary.json", summary)
    write_json(workdir / "grid.json", rows)
    if rows:
        cols = list(dict.fromkeys(k for r in rows for k in r))
        with open(workdir / "grid.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
    return summary
