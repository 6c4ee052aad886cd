"""``run(config, workdir)``: AB-training against data parallelism over seeds, with the traffic of the compiled programs.

For every seed the experiment trains AB-training and plain data parallelism (the same trainer with
``W = T``: it never leaves the warm-up) on the same batches from the same initialisation, evaluates both on the
test set, and reads the bytes of every compiled program. It then splits the inter-node saving into

* the **schedule's share**: what group-wise training with the same schedule saves without any factors
  (groups train the full weights in the AB phases and sync them: a trainer with ``factorise=False``, whose
  programs are compiled but not run), and
* the **low-rank share**: what the factors save on top (smaller in-group all-reduces, smaller syncs, minus
  the SVD broadcasts).

Every sub-run has its own workdir (``ab_seed<k>``, ``dp_seed<k>``) and resumes from its checkpoints; a
finished sub-run is reused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, ClassVar

import jax
import numpy as np
import optax

from jaxlab.core import (
    Rule,
    each,
    in_range,
    nonempty,
    nonnegative,
    one_of,
    optional,
    positive,
    write_json,
)
from jaxlab.data import load_fashion_mnist, make_classification

from ._models import MODELS, make_model, pad_images
from ._schedule import LearningRate, Schedule
from ._spmd import SYNC_MODES
from ._trainer import ABSettings, ABTrainer

#: What a killed run resumes from besides top-level checkpoints (workdir-relative globs), for
#: ``jaxlab run``'s interrupt message.
RESUME_RECORDS = ("*_seed*/summary.json", "*_seed*/checkpoints/*/_CHECKPOINT_METADATA")


@dataclasses.dataclass(frozen=True)
class ABTrainConfig:
    """One AB-training experiment (AB and data parallelism over ``seeds``).

    Attributes:
      model: ``mlp``, ``vgg16_cifar``, ``vgg16_timm`` or ``resnet18`` (``make_model``).
      hidden: the MLP's hidden widths.
      width: channel multiplier of the conv nets.
      dataset: ``fashion_mnist`` (Debian package dataset-fashion-mnist; 32x32 padded for the conv nets) or
        ``synthetic`` (Gaussian clusters, for tests).
      train_size / test_size: use the first images only (None: all).
      total_steps, warmup_steps, sync_every, full_steps: the schedule ``T, W, S, F``.
      lr_rebound_steps: ``R`` of the rebound after every phase change.
      global_batch: samples per step over all devices.
      lr, weight_decay, lr_warmup_steps, lr_cooldown_steps, min_lr: AdamW (b1 0.9, b2 0.999) and its schedule.
      clip_norm, label_smoothing: as the reference (1.0, 0.1).
      num_devices, group_size, node_size: ``num_devices / group_size`` groups; nodes of ``node_size`` devices.
      sync_mode, tau, on_rank_change: AB-training's options (``ABSettings``).
      seeds: one AB and one data-parallel run per seed.
      baseline: also train data parallelism (False: AB only, no accuracy comparison).
      eval_batch: evaluation batch size.
      curve_eval_size: the evaluations at the syncs (the accuracy curve) use the first ``curve_eval_size`` test
        images (None: all); the final evaluation always uses the whole test set.
      checkpoint_every, log_every: periods in steps.
    """

    model: str = "mlp"
    hidden: tuple[int, ...] = (1024, 1024)
    width: float = 1.0
    dataset: str = "fashion_mnist"
    train_size: int | None = None
    test_size: int | None = None
    total_steps: int = 3000
    warmup_steps: int = 866
    sync_every: int = 152
    full_steps: int = 12
    lr_rebound_steps: int = 53
    global_batch: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    lr_warmup_steps: int = 200
    lr_cooldown_steps: int = 200
    min_lr: float = 1e-5
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    num_devices: int = 8
    group_size: int = 4
    node_size: int = 4
    sync_mode: str = "with-stale"
    tau: float = 0.15
    on_rank_change: str = "slice"
    seeds: tuple[int, ...] = (0, 1, 2)
    baseline: bool = True
    eval_batch: int = 1000
    curve_eval_size: int | None = None
    checkpoint_every: int = 500
    log_every: int = 50

    CONSTRAINTS: ClassVar[dict] = {
        "model": one_of(*MODELS), "hidden": (nonempty, each(positive)), "width": positive,
        "dataset": one_of("fashion_mnist", "synthetic"), "train_size": optional(positive),
        "test_size": optional(positive), "total_steps": positive, "warmup_steps": nonnegative,
        "sync_every": positive, "full_steps": nonnegative, "lr_rebound_steps": nonnegative, "global_batch": positive,
        "lr": positive, "weight_decay": nonnegative, "lr_warmup_steps": nonnegative,
        "lr_cooldown_steps": nonnegative, "min_lr": nonnegative, "clip_norm": positive,
        "label_smoothing": in_range(0.0, 1.0, high_open=True), "num_devices": positive, "group_size": positive,
        "node_size": positive, "sync_mode": one_of(*SYNC_MODES), "tau": in_range(0.0, 1.0, high_open=True),
        "on_rank_change": one_of("slice", "reset"), "seeds": (nonempty, each(in_range(0, 2**32 - 1))),
        "eval_batch": positive, "curve_eval_size": optional(positive), "checkpoint_every": nonnegative,
        "log_every": positive,
    }
    RULES: ClassVar[tuple] = (
        Rule(("full_steps", "sync_every"), lambda c: c.full_steps < c.sync_every,
             "full_steps must be smaller than sync_every (F full-rank steps in every period of S)"),
        Rule(("num_devices", "group_size"), lambda c: c.num_devices % c.group_size == 0,
             "group_size must divide num_devices (contiguous groups of the data axis)"),
        Rule(("global_batch", "num_devices"), lambda c: c.global_batch % c.num_devices == 0,
             "global_batch must be a multiple of num_devices"),
        Rule(("curve_eval_size", "eval_batch"),
             lambda c: c.curve_eval_size is None or c.curve_eval_size >= c.eval_batch,
             "curve_eval_size must be at least eval_batch (or None: the whole test set)"),
    )

    def schedule(self, *, baseline: bool = False) -> Schedule:
        w = self.total_steps if baseline else self.warmup_steps
        return Schedule(self.total_steps, w, self.sync_every, self.full_steps)


def load_data(config: ABTrainConfig, input_shape: tuple[int, ...] | None = None):
    """``(x_train, y_train, x_test, y_test)`` as float32 NHWC arrays shaped for the model (``input_shape``; None:
    the config's model's), labels int32."""
    if input_shape is None:
        input_shape = make_model(config.model, hidden=config.hidden, width=config.width).input_shape
    if config.dataset == "fashion_mnist":
        ds = load_fashion_mnist()
    elif config.dataset == "synthetic":
        ds = make_classification(jax.random.key(1234), num_train=config.train_size or 2048,
                                 num_test=config.test_size or 512, shape=(28, 28, 1), num_classes=10, noise=2.0)
    else:
        raise ValueError(f"unknown dataset {config.dataset!r}; use 'fashion_mnist' or 'synthetic'")
    xtr, ytr, xte, yte = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if config.train_size:
        xtr, ytr = xtr[:config.train_size], ytr[:config.train_size]
    if config.test_size:
        xte, yte = xte[:config.test_size], yte[:config.test_size]
    if tuple(xtr.shape[1:]) != tuple(input_shape):
        xtr, xte = pad_images(xtr, input_shape[0]), pad_images(xte, input_shape[0])
    return (np.ascontiguousarray(xtr, np.float32), ytr.astype(np.int32), np.ascontiguousarray(xte, np.float32),
            yte.astype(np.int32))


def make_tx(config: ABTrainConfig) -> optax.GradientTransformation:
    """The optimiser direction of every run: AdamW without its rate (``b1 = 0.9, b2 = 0.999``, decoupled decay)."""
    return optax.chain(optax.scale_by_adam(0.9, 0.999), optax.add_decayed_weights(config.weight_decay))


def make_lr(config: ABTrainConfig, *, baseline: bool) -> LearningRate:
    """The learning rate per step: warm-up, cosine, cool-down, and rebounds after the phase changes of the AB
    schedule (``baseline``: data parallelism's schedule, which has no phase changes)."""
    return LearningRate(config.lr, config.total_steps, config.lr_warmup_steps, config.lr_cooldown_steps,
                        config.min_lr, config.lr_rebound_steps, config.schedule(baseline=baseline))


def config_devices(num_devices: int) -> list:
    """The first ``num_devices`` devices (the trainer's mesh), or a ValueError that says how to get them."""
    devices = jax.devices()
    if len(devices) < num_devices:
        raise ValueError(f"num_devices={num_devices} but {len(devices)} devices exist; set num_devices=1, "
                         f"group_size=1 for one device, or on CPU run with "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={num_devices}")
    return devices[:num_devices]


def make_trainer(config: ABTrainConfig, seed: int, *, baseline: bool, factorise: bool = True) -> ABTrainer:
    devices = config_devices(config.num_devices)
    model = make_model(config.model, hidden=config.hidden, width=config.width)
    schedule = config.schedule(baseline=baseline)
    lr, tx = make_lr(config, baseline=baseline), make_tx(config)
    settings = ABSettings(schedule, group_size=config.group_size, node_size=config.node_size,
                          sync_mode=config.sync_mode, tau=config.tau, on_rank_change=config.on_rank_change,
                          clip_norm=config.clip_norm, label_smoothing=config.label_smoothing)
    return ABTrainer(model, tx, lr, settings, key=jax.random.key(seed), devices=devices,
                     factorise=factorise)


def _batches(x: np.ndarray, y: np.ndarray, batch: int, seed: int):
    n = len(x)
    if batch > n:
        raise ValueError(f"global_batch={batch} exceeds the {n} training images")
    per_epoch = n // batch
    perms: dict[int, np.ndarray] = {}  # the current epoch's permutation (drawn once per epoch, not per step)

    def get(t: int):
        epoch, j = divmod(t, per_epoch)
        if epoch not in perms:
            perms.clear()
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n)
        idx = np.sort(perms[epoch][j * batch:(j + 1) * batch])
        return x[idx], y[idx]

    return get


def _sub_run(config: ABTrainConfig, workdir: Path, seed: int, data, *, baseline: bool, progress: bool) -> dict:
    done = workdir / "summary.json"
    if done.is_file():
        prev = json.loads(done.read_text(encoding="utf-8"))
        if prev.get("status") == "completed":
            return prev
    trainer = make_trainer(config, seed, baseline=baseline)
    xtr, ytr, xte, yte = data
    sched = config.schedule()
    eval_at = tuple(t for t, ev in sched.event_steps() if "sync" in ev)
    summary = trainer.fit(_batches(xtr, ytr, config.global_batch, seed), key=jax.random.key(10_000 + seed),
                          workdir=workdir, eval_data=(xte, yte), eval_at=eval_at, eval_batch=config.eval_batch,
                          curve_eval_size=config.curve_eval_size, checkpoint_every=config.checkpoint_every,
                          log_every=config.log_every, progress=progress, description=f"{'dp' if baseline else 'ab'} seed {seed}")
    summary["seed"], summary["method"] = seed, "dp" if baseline else "ab"
    summary["load_avg_1m_end"] = os.getloadavg()[0]
    write_json(done, summary)
    return summary


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def split_saving(ab: dict, dp: dict, schedule_only: dict) -> list[dict[str, Any]]:
    """Rows of the saving split (intra, inter, total): DP, schedule only, AB and the two shares of DP's bytes."""
    rows = []
    for kind in ("inter", "intra", "total"):
        def get(d, kind=kind):
            return d["inter_bytes"] + d["intra_bytes"] if kind == "total" else d[f"{kind}_bytes"]

        b_dp, b_s, b_ab = get(dp), get(schedule_only), get(ab)
        rows.append({"bytes": kind, "dp_GB": b_dp / 1e9, "schedule_only_GB": b_s / 1e9, "ab_GB": b_ab / 1e9,
                     "ab_over_dp": _ratio(b_ab, b_dp), "saving": 1 - _ratio(b_ab, b_dp) if b_dp else None,
                     "schedule_share": (b_dp - b_s) / b_dp if b_dp else None,
                     "low_rank_share": (b_s - b_ab) / b_dp if b_dp else None})
    return rows


def schedule_only_traffic(config: ABTrainConfig, ab_phases: dict, data) -> tuple[dict, dict]:
    """Bytes of group-wise full-rank training with AB's schedule: AB's calls priced with the programs of a trainer
    without factors (compiled, never run)."""
    trainer = make_trainer(config, 0, baseline=False, factorise=False)
    xtr, ytr = data[0][:config.global_batch], data[1][:config.global_batch]
    per_call = trainer.traffic_per_call(xtr, ytr)
    calls = {k: v["calls"] for k, v in ab_phases.items()}
    full_calls = calls.get("warmup", 0) + calls.get("full", 0)
    out = {"intra_bytes": 0.0, "inter_bytes": 0.0}
    for kind in ("intra_bytes", "inter_bytes"):
        out[kind] = (full_calls * per_call["full_step"][kind] + calls.get("ab", 0) / len(trainer.plan.sides)
                     * per_call["ab_step"][kind]
                     + (calls.get("sync", 0) + calls.get("final_sync", 0)) * per_call["sync"][kind])
    return out, per_call


def _traffic_rows(summary: dict, label: str) -> list[dict[str, Any]]:
    rows = []
    for phase, d in summary["traffic"]["phases"].items():
        rows.append({"run": label, "phase": phase, "calls": d["calls"],
                     "intra_MB_per_call": d["intra_bytes"] / d["calls"] / 1e6 if d["calls"] else 0.0,
                     "inter_MB_per_call": d["inter_bytes"] / d["calls"] / 1e6 if d["calls"] else 0.0,
                     "intra_GB": d["intra_bytes"] / 1e9, "inter_GB": d["inter_bytes"] / 1e9})
    tot = summary["traffic"]["total"]
    rows.append({"run": label, "phase": "total", "intra_GB": tot["intra_bytes"] / 1e9,
                 "inter_GB": tot["inter_bytes"] / 1e9})
    return rows


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(statistics.stdev(xs)) if len(xs) > 1 else 0.0


def _plots(workdir: Path, config: ABTrainConfig, ab: list[dict], dp: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from jaxlab.core import read_metrics

    out = []
    seed = config.seeds[0]
    recs = {m: read_metrics(workdir / f"{m}_seed{seed}" / "metrics.jsonl")
            for m in (("ab", "dp") if dp else ("ab",))}
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for m, rs in recs.items():
        tr = [(r["step"], r["loss"]) for r in rs if r.get("split") == "train"]
        ev = [(r["step"], r["test_accuracy"]) for r in rs if r.get("split") == "eval"]
        if tr:
            axes[0].plot(*zip(*tr), label=m)
        if ev:
            axes[1].plot(*zip(*ev), marker="o", ms=3, label=m)
    axes[0].set(title=f"train loss (seed {seed})", xlabel="step")
    axes[1].set(title="test accuracy at syncs", xlabel="step")
    for p in ab[0]["compression"]["layers"]:
        hist = [(h["step"], h["ranks"][p]) for h in ab[0]["rank_history"]]
        if hist:
            axes[2].step(*zip(*hist), where="post", label=p)
    axes[2].set(title="rank of each factorised layer", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "abtrain_curves.png", dpi=100)
    plt.close(fig)
    out.append("abtrain_curves.png")
    return out


def run(config: ABTrainConfig, workdir: str | Path, *, progress: bool = True) -> dict[str, Any]:
    """Trains AB (and DP) for every seed; writes summary.json, tables.md and plots into ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0, cpu0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()
    model = make_model(config.model, hidden=config.hidden, width=config.width)
    data = load_data(config, model.input_shape)
    ab, dp = [], []
    for seed in config.seeds:
        ab.append(_sub_run(config, workdir / f"ab_seed{seed}", seed, data, baseline=False, progress=progress))
        if config.baseline:
            dp.append(_sub_run(config, workdir / f"dp_seed{seed}", seed, data, baseline=True, progress=progress))
    sched = config.schedule()
    # the schedule's counterfactual is only needed to split the saving against data parallelism
    cf, cf_per_call = schedule_only_traffic(config, ab[0]["traffic"]["phases"], data) if dp else (None, None)
    tables: dict[str, list] = {"traffic": _traffic_rows(ab[0], f"ab seed {config.seeds[0]}")}
    summary: dict[str, Any] = {
        "model": config.model, "sync_mode": config.sync_mode, "seeds": list(config.seeds),
        "schedule": dataclasses.asdict(sched), "schedule_full_rank_fraction": sched.full_rank_steps() / sched.total_steps,
        "acc_ab_per_seed": [s["eval"].get("test_accuracy") for s in ab],
        "ab_ranks_per_seed": [s["ranks"] for s in ab],
        "compression_total_per_seed": [s["compression"]["model"] for s in ab],
        "compression_factorised_per_seed": [s["compression"]["factorised"] for s in ab],
        "compression_layers_seed0": ab[0]["compression"]["layers"],
        "schedule_only_per_call": cf_per_call,
    }
    summary["acc_ab_mean"], summary["acc_ab_std"] = _mean_std(summary["acc_ab_per_seed"])
    summary["compression_total_mean"] = float(np.mean(summary["compression_total_per_seed"]))
    summary["compression_ratio_total"] = 1.0 / summary["compression_total_mean"]
    summary["compression_factorised_mean"] = float(np.mean(summary["compression_factorised_per_seed"]))
    summary["ab_wall_s_per_seed"] = [s["wall_s"] for s in ab]
    summary["ab_cpu_s_per_seed"] = [s["cpu_s"] for s in ab]
    if dp:
        tables["traffic"] += _traffic_rows(dp[0], f"dp seed {config.seeds[0]}")
        summary["acc_dp_per_seed"] = [s["eval"].get("test_accuracy") for s in dp]
        summary["acc_dp_mean"], summary["acc_dp_std"] = _mean_std(summary["acc_dp_per_seed"])
        gaps = [a - d for a, d in zip(summary["acc_ab_per_seed"], summary["acc_dp_per_seed"])]
        summary["acc_gap_pp_per_seed"] = [100 * g for g in gaps]
        summary["acc_gap_pp"] = 100 * float(np.mean(gaps))
        inter = [_ratio(a["traffic"]["total"]["inter_bytes"], d["traffic"]["total"]["inter_bytes"]) for a, d in zip(ab, dp)]
        intra = [_ratio(a["traffic"]["total"]["intra_bytes"], d["traffic"]["total"]["intra_bytes"]) for a, d in zip(ab, dp)]
        summary["inter_ratio_per_seed"], summary["intra_ratio_per_seed"] = inter, intra
        summary["inter_ratio"], summary["intra_ratio"] = float(np.mean(inter)), float(np.mean(intra))
        summary["table"] = split_saving(ab[0]["traffic"]["total"], dp[0]["traffic"]["total"], cf)
        summary["dp_wall_s_per_seed"] = [s["wall_s"] for s in dp]
        summary["dp_cpu_s_per_seed"] = [s["cpu_s"] for s in dp]
    tables["accuracy"] = [{"seed": s, "ab": a, "dp": (summary.get("acc_dp_per_seed") or [None] * len(ab))[i],
                           "ranks": ",".join(map(str, ab[i]["ranks"].values())) if ab[i]["ranks"] else "-",
                           "compression_total": ab[i]["compression"]["model"]}
                          for i, (s, a) in enumerate(zip(config.seeds, summary["acc_ab_per_seed"]))]
    tables["compression"] = [{"layer": p, "m": d["m"], "n": d["n"], "rank": d["rank"], "compression": d["compression"],
                              "ratio_x_to_1": 1 / d["compression"]}
                             for p, d in ab[0]["compression"]["layers"].items()]
    summary["tables"] = tables
    summary["plots"] = _plots(workdir, config, ab, dp)
    summary["status"] = "completed"
    summary["wall_s"] = time.perf_counter() - t0
    summary["cpu_s"] = time.process_time() - cpu0
    summary["load_avg_start"], summary["load_avg_end"] = list(load0), list(os.getloadavg())
    summary["train_wall_s"] = sum(summary["ab_wall_s_per_seed"]) + sum(summary.get("dp_wall_s_per_seed", []))
    _write_tables(workdir / "tables.md", summary)
    write_json(workdir / "summary.json", summary)
    return summary


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """A GitHub markdown table of row dicts (columns in order of first appearance)."""
    if not rows:
        return ""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "–" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _write_tables(path: Path, summary: dict) -> None:
    parts = []
    for name, rows in [("Traffic saving split", summary.get("table", [])), *summary["tables"].items()]:
        parts += [f"## {name}", "", markdown_table(rows), ""]
    path.write_text("\n".join(parts), encoding="utf-8")
