"""The pruning study: five forecasters, unstructured and structured pruning, with and without fine-tuning.

Kiefer et al., "A Comparative Study of Pruning Methods in Transformer-based Time Series
Forecasting" (arXiv 2412.12883). For every dataset, horizon, model and seed, ``run`` trains the
dense model (Adam, lr halving every epoch, early stopping on validation MSE), then

* **unstructured**: global magnitude masks (``jaxlab.prune.magnitude_masks`` over the prunable
  weights, FEDformer's complex weights by modulus) at every sparsity of the grid; the masked model
  is evaluated as is and after masked fine-tuning (``jaxlab.prune.masked``: pruned weights stay 0);
* **structured**: the ``structured_fraction`` least important heads and FFN units of every block
  removed (``jaxlab.prune.shrink``), and a second variant that also removes Informer's distilling
  channels, Crossformer's routers and FEDformer's Fourier modes; evaluated before and after
  fine-tuning the smaller model;
* **width-matched dense**: dense models of the same architecture whose width gives the parameter
  count of a pruned model at ``matched_densities``, trained from scratch like the dense one;

and measures parameters, density, FLOPs, latency and energy. Test MSE/MAE are on standardised
data (per-column scaler fitted on train), over every test window. ``records.jsonl`` holds one line
per result and makes the run resumable: a killed run started again skips what is recorded, and
dense models are reloaded from ``models/``.

Deviations from the paper: the models are narrower on CPU (see the configs), an epoch uses every
``k``-th training window so that it holds about ``max_train_windows`` windows, early stopping
looks at about ``max_val_windows`` validation windows (the test windows are all evaluated), and
the data are Victoria's electricity demand and NYC airport weather instead of ETT/ECL/Weather.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
import zlib
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab import data as jdata
from jaxlab import prune
from jaxlab import timeseries as ts
from jaxlab.core import MetricsWriter, Rule, at_least, each, in_range, nonempty, nonnegative, one_of, positive
from jaxlab.core import to_jsonable, write_json
from jaxlab.energy import EnergyMeter

from ._io import load_forecaster, save_forecaster
from ._measure import compare_latency, xla_flops
from ._train import Forecaster, TrainSettings
from ._zoo import MODELS, ZooSizes, count_nonzero, count_params, magnitude_masks, prunable, structured_keep
from ._zoo import zoo_config

#: What a killed run resumes from besides top-level checkpoints (workdir-relative globs), for
#: ``jaxlab run``'s interrupt message.
RESUME_RECORDS = ("records.jsonl",)

SPARSITIES: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
DATASETS: dict[str, Callable[[], jdata.TimeSeries]] = {
    "elecdemand": jdata.load_elecdemand,
    "nyc_weather": jdata.load_nyc_weather,
    "taylor": jdata.load_taylor,
}


@dataclasses.dataclass(frozen=True)
class TsPruneConfig:
    """The study's settings (paper defaults where the CPU allows; see ``configs/tsprune``).

    Attributes:
      datasets: names from :data:`DATASETS`.
      models: names from ``MODELS``.
      horizons: forecast lengths.
      input_len, label_len, d_model, n_heads, d_ff, e_layers, d_layers, dropout, factor, moving_avg,
        modes, seg_len: the zoo's sizes (:class:`ZooSizes`).
      batch_size, learning_rate, epochs, patience: dense training (``epochs`` is the cap; early stopping
        after ``patience`` epochs without a better validation MSE, the best epoch kept).
      lr_decay: ``"epoch"`` halves the rate after every epoch (TSL), ``"plateau"`` after every epoch
        without a new best validation MSE (:class:`TrainSettings`); fine-tuning uses the same rule.
      max_train_windows: windows per epoch (every ``ceil(n / max)``-th training window; 0: all).
      max_val_windows: validation windows for early stopping (likewise; 0: all).
      eval_batch: windows per evaluation call.
      sparsities: the unstructured grid.
      scope: ``"global"`` or ``"layer"`` masks.
      finetune_epochs: epochs of masked fine-tuning (at most 3 in the paper's protocol).
      finetune_learning_rate: Adam's initial rate when fine-tuning (halved every epoch too).
      seeds: training seeds.
      seed_sparsities: the sparsities run for every seed after the first (``()``: the whole grid); the
        first seed always runs the whole grid.
      structured_fraction: fraction of heads and FFN units removed by structured pruning (0: none).
      matched_densities: densities whose parameter counts the width-matched dense models hit.
      matched_seeds: seeds of the width-matched dense models.
      latency_batches: batch sizes timed (empty: no latency section).
      latency_repeats: timed calls per measurement (>= 20).
    """

    datasets: tuple[str, ...] = ("elecdemand", "nyc_weather")
    models: tuple[str, ...] = MODELS
    horizons: tuple[int, ...] = (96,)
    input_len: int = 96
    label_len: int = 48
    d_model: int = 32
    n_heads: int = 4
    d_ff: int = 64
    e_layers: int = 2
    d_layers: int = 1
    dropout: float = 0.1
    factor: int = 3
    moving_avg: int = 25
    modes: int = 32
    seg_len: int = 12
    batch_size: int = 32
    learning_rate: float = 5e-4
    epochs: int = 6
    patience: int = 3
    lr_decay: str = "epoch"
    max_train_windows: int = 512
    max_val_windows: int = 256
    eval_batch: int = 32
    sparsities: tuple[float, ...] = SPARSITIES
    scope: str = "global"
    finetune_epochs: int = 2
    finetune_learning_rate: float = 1e-4
    seeds: tuple[int, ...] = (0, 1, 2)
    seed_sparsities: tuple[float, ...] = ()
    structured_fraction: float = 0.5
    matched_densities: tuple[float, ...] = (0.5, 0.1)
    matched_seeds: tuple[int, ...] = (0,)
    latency_batches: tuple[int, ...] = (1, 32, 256)
    latency_repeats: int = 20

    # checked when the config is loaded or overridden (``jaxlab run --set``), before a workdir is touched
    CONSTRAINTS: ClassVar[dict] = {
        "datasets": (nonempty, each(one_of("elecdemand", "nyc_weather", "taylor"))),
        "models": (nonempty, each(one_of(*MODELS))), "horizons": (nonempty, each(positive)),
        "input_len": positive, "label_len": positive, "d_model": positive, "n_heads": positive, "d_ff": positive,
        "e_layers": positive, "d_layers": positive, "dropout": in_range(0.0, 1.0, high_open=True),
        "factor": positive, "moving_avg": positive, "modes": positive, "seg_len": positive,
        "batch_size": positive, "learning_rate": positive, "epochs": positive, "patience": positive,
        "lr_decay": one_of("epoch", "plateau"),
        "max_train_windows": nonnegative, "max_val_windows": nonnegative, "eval_batch": positive,
        "sparsities": (nonempty, each(in_range(0.0, 1.0, high_open=True))), "scope": one_of("global", "layer"),
        "finetune_epochs": in_range(0, 3), "finetune_learning_rate": positive,
        "seeds": (nonempty, each(nonnegative)), "seed_sparsities": each(in_range(0.0, 1.0, high_open=True)),
        "structured_fraction": in_range(0.0, 1.0, high_open=True),
        "matched_densities": each(in_range(0.0, 1.0, low_open=True, high_open=True)),
        "matched_seeds": each(nonnegative), "latency_batches": each(positive), "latency_repeats": at_least(20),
    }
    RULES: ClassVar[tuple] = (
        Rule(("d_model", "n_heads"), lambda c: c.d_model % c.n_heads == 0, "d_model must be a multiple of n_heads"),
    )

    def sizes(self) -> ZooSizes:
        return ZooSizes(input_len=self.input_len, label_len=self.label_len, d_model=self.d_model,
                        n_heads=self.n_heads, d_ff=self.d_ff, e_layers=self.e_layers, d_layers=self.d_layers,
                        dropout=self.dropout, factor=self.factor, moving_avg=self.moving_avg, modes=self.modes,
                        seg_len=self.seg_len)

    def check(self) -> None:
        for d in self.datasets:
            if d not in DATASETS:
                raise ValueError(f"unknown dataset {d!r}; choose from {tuple(DATASETS)}")
        for m in self.models:
            if m not in MODELS:
                raise ValueError(f"unknown model {m!r}; choose from {MODELS}")
        if any(not 0.0 <= s < 1.0 for s in self.sparsities):
            raise ValueError(f"sparsities must lie in [0, 1), got {self.sparsities}")
        if not 0 <= self.finetune_epochs <= 3:
            raise ValueError(f"finetune_epochs must be in [0, 3] (the paper's protocol), got {self.finetune_epochs}")
        if self.latency_batches and self.latency_repeats < 20:
            raise ValueError(f"latency_repeats must be >= 20, got {self.latency_repeats}")


# ----------------------------------------------------------------------------- records


class Records:
    """``records.jsonl``: one JSON line per result, keyed so that a resumed run skips what is done."""

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:   # a line cut by a kill: recomputed
                        continue
                    self.rows[row["key"]] = row

    @staticmethod
    def key(**parts) -> str:
        return "|".join(f"{k}={parts[k]}" for k in sorted(parts))

    def get(self, **parts) -> dict | None:
        return self.rows.get(self.key(**parts))

    def add(self, row: dict, **parts) -> dict:
        row = {"key": self.key(**parts), **parts, **row}
        with MetricsWriter(self.path) as w:
            w.write(to_jsonable(row))
        self.rows[row["key"]] = row
        return row


# ----------------------------------------------------------------------------- helpers


def _stride(n: int, cap: int) -> int:
    return 1 if cap <= 0 or n <= cap else int(math.ceil(n / cap))


def _flops(model, variables, channels: int, config, batch: int = 1) -> dict:
    x = jnp.zeros((batch, config.input_len, channels), jnp.float32)
    tf = getattr(config, "time_features", 0)
    if tf:
        xm = jnp.zeros((batch, config.input_len, tf), jnp.float32)
        fm = jnp.zeros((batch, config.horizon, tf), jnp.float32)
        return xla_flops(lambda v, x, xm, fm: model.apply(v, x, xm, fm), variables, x, xm, fm)
    return xla_flops(lambda v, x: model.apply(v, x), variables, x)


def _param_stats(config, variables) -> dict:
    params = variables["params"]
    return {"params": count_params(params), "prunable": count_params(params, include=prunable),
            "nonzero_prunable": count_nonzero(params, include=prunable),
            "nonzero": count_nonzero(params)}


def _matched_width(name: str, sizes: ZooSizes, channels: int, horizon: int, target: float) -> tuple[int, int, int]:
    """Width ``(d_model, d_ff, prunable)`` (``d_ff / d_model`` kept, ``d_model`` a multiple of the heads)
    whose prunable parameter count is closest to ``target``."""
    best = None
    ratio = sizes.d_ff / sizes.d_model
    for d in range(sizes.n_heads, sizes.d_model + 1, sizes.n_heads):
        f = max(1, int(round(ratio * d)))
        cfg = zoo_config(name, sizes, channels=channels, horizon=horizon, d_model=d, d_ff=f)
        shapes = jax.eval_shape(cfg.module().init, jax.random.key(0),
                                jnp.zeros((1, cfg.input_len, channels), jnp.float32))
        zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes["params"])
        n = count_params(zeros, include=prunable)
        if best is None or abs(n - target) < abs(best[2] - target):
            best = (d, f, n)
    return best


# ----------------------------------------------------------------------------- the study


def _progress(enabled: bool):
    def say(msg: str) -> None:
        if enabled:
            print(f"[tsprune] {msg}", flush=True)
    return say


class _Forecasters:
    """One :class:`Forecaster` (and so one set of compiled functions) per model config and window set."""

    def __init__(self):
        self._cache: dict = {}

    def __call__(self, config, windows: ts.ForecastWindows, settings: TrainSettings) -> Forecaster:
        key = (config, id(windows), settings)
        if key not in self._cache:
            self._cache[key] = Forecaster(config, windows, settings)
        return self._cache[key]


def _study_one(config: TsPruneConfig, name: str, ds: str, horizon: int, seed: int, windows: ts.ForecastWindows,
               records: Records, workdir: Path, settings: TrainSettings, say, forecasters: _Forecasters) -> None:
    sizes = config.sizes()
    mcfg = zoo_config(name, sizes, channels=windows.channels, horizon=horizon)
    fc = forecasters(mcfg, windows, settings)
    base = dict(dataset=ds, horizon=horizon, model=name, seed=seed)
    model_dir = workdir / "models" / ds / f"h{horizon}" / name / f"seed{seed}"
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(f"{ds}/{name}/{horizon}".encode()) % (2 ** 31))

    # dense
    dense_row = records.get(**base, kind="dense", sparsity=0.0, finetuned=False)
    if dense_row is not None and (model_dir / "config.json").is_file():
        _, _, dense = load_forecaster(model_dir)
        dense = jax.device_get(dense)
    else:
        say(f"{ds} H={horizon} {name} seed {seed}: training the dense model")
        v0 = fc.init(jax.random.fold_in(key, 0))
        dense, info = fc.fit(v0, key=jax.random.fold_in(key, 1), progress=say)
        test = fc.evaluate(dense, "test")
        save_forecaster(model_dir, mcfg, dense)
        dense_row = records.add({**test, **_param_stats(mcfg, dense), **_flops(fc.model, dense, windows.channels, mcfg),
                                 "density": 1.0, "train_s": info["train_s"], "epochs": info["epochs"],
                                 "best_epoch": info["best_epoch"], "val_mse": info["best_val_mse"],
                                 "steps": info["steps"], "stopped_early": info["epochs"] < settings.epochs,
                                 "val_history": [h["val_mse"] for h in info["history"]],
                                 "lr_history": [h["lr"] for h in info["history"]]},
                                **base, kind="dense", sparsity=0.0, finetuned=False)
        say(f"  dense test MSE {test['mse']:.4f} ({test['windows']} windows)")

    # unstructured
    grid = config.sparsities if (seed == config.seeds[0] or not config.seed_sparsities) else tuple(
        x for x in config.sparsities if x in config.seed_sparsities)
    for s in grid:
        for ft in (False, True):
            if ft and config.finetune_epochs == 0:
                continue
            if (s == 0.0 and not ft) or records.get(**base, kind="unstructured", sparsity=s, finetuned=ft):
                continue
            masks = magnitude_masks(dense["params"], s, scope=config.scope)
            params = prune.apply_masks(dense["params"], masks)
            variables = {**dense, "params": jax.device_get(params)}
            extra = {}
            if ft:
                variables, info = fc.fit(variables, key=jax.random.fold_in(key, int(1000 * s) + 7), masks=masks,
                                         epochs=config.finetune_epochs, patience=config.finetune_epochs,
                                         learning_rate=config.finetune_learning_rate)
                extra = {"train_s": info["train_s"], "epochs": info["epochs"], "val_mse": info["best_val_mse"],
                         "best_epoch": info["best_epoch"], "steps": info["steps"]}
            test = fc.evaluate(variables, "test")
            stats = _param_stats(mcfg, variables)
            records.add({**test, **stats, **extra, "density": stats["nonzero_prunable"] / stats["prunable"]},
                        **base, kind="unstructured", sparsity=s, finetuned=ft)
            say(f"  s={s:.2f} {'ft' if ft else 'no-ft'}: test MSE {test['mse']:.4f} "
                f"(dense {dense_row['mse']:.4f}, density {stats['nonzero_prunable'] / stats['prunable']:.3f})")

    # structured
    variants = {"heads_ffn": ("heads", "ffn"), "all": ("heads", "ffn", "channels", "routers", "modes")}
    for variant, kinds in (variants.items() if config.structured_fraction > 0 else ()):
        if variant == "all" and name in ("transformer", "autoformer"):
            continue   # nothing beyond heads and FFN units to remove
        for ft in (False, True):
            if ft and config.finetune_epochs == 0:
                continue
            tag = dict(kind=f"structured_{variant}", sparsity=config.structured_fraction, finetuned=ft)
            if records.get(**base, **tag):
                continue
            keep = structured_keep(mcfg, dense, config.structured_fraction, kinds=kinds)
            small_cfg, small = prune.shrink(mcfg, dense, keep)
            small = jax.device_get(small)
            sfc = forecasters(small_cfg, windows, settings)
            extra = {}
            if ft:
                small, info = sfc.fit(small, key=jax.random.fold_in(key, 5000 + len(variant)),
                                      epochs=config.finetune_epochs, patience=config.finetune_epochs,
                                      learning_rate=config.finetune_learning_rate)
                extra = {"train_s": info["train_s"], "epochs": info["epochs"], "val_mse": info["best_val_mse"]}
            test = sfc.evaluate(small, "test")
            stats = _param_stats(small_cfg, small)
            records.add({**test, **stats, **extra, **_flops(sfc.model, small, windows.channels, small_cfg),
                         "density": stats["prunable"] / dense_row["prunable"], "config": dataclasses.asdict(small_cfg)},
                        **base, **tag)
            say(f"  structured {variant} {'ft' if ft else 'no-ft'}: test MSE {test['mse']:.4f}, "
                f"params {stats['params']} of {dense_row['params']}")

    # width-matched dense models
    if seed in config.matched_seeds:
        for target in config.matched_densities:
            tag = dict(kind="matched_dense", sparsity=round(1.0 - target, 6), finetuned=False)
            if records.get(**base, **tag):
                continue
            d, f, n = _matched_width(name, sizes, windows.channels, horizon, target * dense_row["prunable"])
            small_cfg = zoo_config(name, sizes, channels=windows.channels, horizon=horizon, d_model=d, d_ff=f)
            sfc = forecasters(small_cfg, windows, settings)
            say(f"  width-matched dense at density {target}: d_model {d}, d_ff {f}")
            small, info = sfc.fit(sfc.init(jax.random.fold_in(key, 9000 + d)), key=jax.random.fold_in(key, 9001 + d))
            test = sfc.evaluate(small, "test")
            stats = _param_stats(small_cfg, small)
            records.add({**test, **stats, "density": stats["prunable"] / dense_row["prunable"], "d_model": d,
                         "d_ff": f, "train_s": info["train_s"], "epochs": info["epochs"]}, **base, **tag)
            say(f"    test MSE {test['mse']:.4f} (dense {dense_row['mse']:.4f})")


def _latency_section(config: TsPruneConfig, records: Records, workdir: Path, windows_by_ds: dict, meter, say) -> None:
    for ds, windows in windows_by_ds.items():
        horizon = config.horizons[0]
        seed = config.seeds[0]
        for name in config.models:
            model_dir = workdir / "models" / ds / f"h{horizon}" / name / f"seed{seed}"
            if not (model_dir / "config.json").is_file():
                continue
            mcfg, model, dense = load_forecaster(model_dir)
            variants = {"dense": (mcfg, dense)}
            keep = structured_keep(mcfg, dense, config.structured_fraction, kinds=("heads", "ffn"))
            variants["structured_heads_ffn"] = prune.shrink(mcfg, dense, keep)
            if name not in ("transformer", "autoformer"):
                keep = structured_keep(mcfg, dense, config.structured_fraction,
                                       kinds=("heads", "ffn", "channels", "routers", "modes"))
                variants["structured_all"] = prune.shrink(mcfg, dense, keep)
            for b in config.latency_batches:
                tags = {v: dict(dataset=ds, horizon=horizon, model=name, seed=seed, kind="latency", variant=v,
                                batch=b) for v in variants}
                if all(records.get(**t) for t in tags.values()):
                    continue
                o = windows.origins("test")
                batch = windows.gather(o[:b] if b <= o.size else np.resize(o, b))
                cases, flops = {}, {}
                for variant, (cfg, variables) in variants.items():
                    m = cfg.module()
                    fn = lambda v, x, xm, fm, m=m: m.apply(v, x, xm, fm)  # noqa: E731
                    args = (jax.device_put(variables), batch["x"], batch["x_mark"], batch["y_mark"])
                    cases[variant] = (fn, args)
                    flops[variant] = xla_flops(fn, *args)
                lat = compare_latency(cases, repeats=config.latency_repeats, meter=meter)
                for variant, tag in tags.items():
                    records.add({**lat[variant], **flops[variant],
                                 "params": count_params(variants[variant][1]["params"])}, **tag)
                say(f"latency {ds} {name} batch {b}: " + ", ".join(
                    f"{v} {lat[v]['median_s'] * 1e3:.2f} ms / {flops[v]['flops'] / 1e9:.3f} GFLOP" for v in variants))


# ----------------------------------------------------------------------------- summary


def _agg(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def summarise(config: TsPruneConfig, records: Records) -> dict[str, Any]:
    """Aggregates the records over seeds into the sweep table, the latency table and the goal checks."""
    rows = list(records.rows.values())
    table: list[dict] = []
    dense_mse: dict[tuple, float] = {}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["kind"] == "latency":
            continue
        k = (r["dataset"], r["horizon"], r["model"], r["kind"], float(r["sparsity"]), bool(r["finetuned"]))
        groups.setdefault(k, []).append(r)
    dense_ft_mse: dict[tuple, float] = {}
    for k, rs in groups.items():
        if k[3] == "dense":
            dense_mse[k[:3]] = _agg([r["mse"] for r in rs])[0]
        if k[3] == "unstructured" and k[4] == 0.0 and k[5]:
            dense_ft_mse[k[:3]] = _agg([r["mse"] for r in rs])[0]
    for k in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3] != "dense", k[3], k[4], k[5])):
        rs = groups[k]
        mse, mse_sd = _agg([r["mse"] for r in rs])
        mae, _ = _agg([r["mae"] for r in rs])
        dense = dense_mse.get(k[:3])
        table.append({"dataset": k[0], "horizon": k[1], "model": k[2], "kind": k[3], "sparsity": k[4],
                      "finetuned": k[5], "density": _agg([r["density"] for r in rs])[0], "mse": mse,
                      "mse_sd": mse_sd, "mae": mae, "seeds": len(rs),
                      "mse_ratio": mse / dense if dense else None,
                      "mse_ratio_dense_ft": (mse / dense_ft_mse[k[:3]]) if k[5] and k[:3] in dense_ft_mse else None,
                      "params": int(np.mean([r.get("params", 0) for r in rs])),
                      "flops": float(np.mean([r["flops"] for r in rs])) if all("flops" in r for r in rs) else None})
    latency_rows = []
    for r in rows:
        if r["kind"] == "latency":
            latency_rows.append({k: r.get(k) for k in ("dataset", "model", "variant", "batch", "median_s", "flops",
                                                        "params", "energy_j_per_call", "energy_estimated")})
    dense_lat = {(r["dataset"], r["model"], r["batch"]): r for r in latency_rows if r["variant"] == "dense"}
    for r in latency_rows:
        d = dense_lat.get((r["dataset"], r["model"], r["batch"]))
        if d:
            r["speedup"] = d["median_s"] / r["median_s"]
            r["flop_ratio"] = d["flops"] / r["flops"] if r["flops"] else None
    return {"table": table, "latency": latency_rows, "goals": goals(config, table, latency_rows)}


def goals(config: TsPruneConfig, table: list[dict], latency_rows: list[dict]) -> dict[str, Any]:
    """The issue's goals, checked on the aggregated table (H = the first horizon)."""
    h = config.horizons[0]
    out: dict[str, Any] = {}
    at = {(r["dataset"], r["model"], r["kind"], r["sparsity"], r["finetuned"]): r for r in table if r["horizon"] == h}
    half = {}
    for ds in config.datasets:
        ok = [m for m in config.models if (r := at.get((ds, m, "unstructured", 0.5, True)))
              and r["mse_ratio"] is not None and r["mse_ratio"] <= 1.05]
        half[ds] = {"models_within_1.05": ok, "count": len(ok)}
    out["density_0.5_finetuned_within_1.05x"] = half
    out["goal_density_0.5"] = bool(all(v["count"] >= 4 for v in half.values()) and len(half) == 2)
    # the stricter reading: against the dense model fine-tuned for as long (s = 0 with fine-tuning)
    strict = {ds: [m for m in config.models if (r := at.get((ds, m, "unstructured", 0.5, True)))
                   and r.get("mse_ratio_dense_ft") is not None and r["mse_ratio_dense_ft"] <= 1.05]
              for ds in config.datasets}
    out["density_0.5_within_1.05x_of_dense_finetuned"] = strict
    out["goal_density_0.5_vs_dense_finetuned"] = bool(all(len(v) >= 4 for v in strict.values()) and len(strict) == 2)
    tenth = {}
    for ds in config.datasets:
        for m in ("autoformer", "fedformer"):
            r = at.get((ds, m, "unstructured", 0.9, True))
            if r is not None:
                tenth[f"{ds}/{m}"] = r["mse_ratio"]
    out["density_0.1_finetuned_ratio"] = tenth
    out["goal_density_0.1"] = bool(any(v is not None and v <= 1.10 for v in tenth.values()))
    tenth_ft = {f"{ds}/{m}": r["mse_ratio_dense_ft"] for ds in config.datasets for m in ("autoformer", "fedformer")
                if (r := at.get((ds, m, "unstructured", 0.9, True))) is not None}
    out["density_0.1_ratio_to_dense_finetuned"] = tenth_ft
    out["goal_density_0.1_vs_dense_finetuned"] = bool(any(v is not None and v <= 1.10 for v in tenth_ft.values()))
    sp = [r for r in latency_rows if r["variant"] == "structured_heads_ffn" and r["batch"] == 256 and "speedup" in r]
    out["structured_speedup_batch256"] = {f"{r['dataset']}/{r['model']}": r["speedup"] for r in sp}
    return out


def sweep_markdown(config: TsPruneConfig, summary: dict, dataset: str) -> str:
    """The sweep of one dataset as a Markdown table: test MSE (mean +- sd over seeds) and its ratio to dense.

    Rows: model x {no fine-tuning, fine-tuned}; columns: the sparsities, structured pruning, and the
    width-matched dense models (their densities in the header). The ratio is to the dense model; for
    fine-tuned rows a second ratio is to the dense model fine-tuned as long (s = 0, fine-tuned).
    """
    h = config.horizons[0]
    rows = [r for r in summary["table"] if r["dataset"] == dataset and r["horizon"] == h]
    at = {(r["model"], r["kind"], r["sparsity"], r["finetuned"]): r for r in rows}

    def cell(r):
        if r is None:
            return "-"
        ratio = f" ({r['mse_ratio']:.3f}x" if r.get("mse_ratio") is not None else ""
        if ratio and r.get("mse_ratio_dense_ft") is not None and r["sparsity"] > 0 and r["kind"] == "unstructured":
            ratio += f", {r['mse_ratio_dense_ft']:.3f}x"
        ratio += ")" if ratio else ""
        sd = f" +- {r['mse_sd']:.4f}" if r["seeds"] > 1 else ""
        return f"{r['mse']:.4f}{sd}{ratio}"

    sp = list(config.sparsities)
    head = ["model", "fine-tuned"] + [f"s={x:g}" for x in sp] + ["structured 50%", "structured all 50%"] + [
        f"dense at density {d:g}" for d in config.matched_densities]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in config.models:
        for ft in (False, True):
            cells = [m, "yes" if ft else "no"]
            for x in sp:
                if x == 0.0 and not ft:
                    cells.append(cell(at.get((m, "dense", 0.0, False))))
                else:
                    cells.append(cell(at.get((m, "unstructured", x, ft))))
            for v in ("structured_heads_ffn", "structured_all"):
                cells.append(cell(at.get((m, v, config.structured_fraction, ft))))
            for d in config.matched_densities:
                cells.append(cell(at.get((m, "matched_dense", round(1.0 - d, 6), False))) if not ft else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_markdown(summary: dict) -> str:
    """The latency rows as a Markdown table (median ms, speed-up and FLOP ratio against dense)."""
    head = ["dataset", "model", "variant", "batch", "median ms", "GFLOP", "speed-up", "FLOP ratio", "J/call"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(summary["latency"], key=lambda r: (r["dataset"], r["model"], r["batch"], r["variant"])):
        e = r.get("energy_j_per_call")
        lines.append("| " + " | ".join([
            r["dataset"], r["model"], r["variant"], str(r["batch"]), f"{r['median_s'] * 1e3:.2f}",
            f"{r['flops'] / 1e9:.3f}", f"{r.get('speedup', float('nan')):.2f}",
            f"{r.get('flop_ratio') or float('nan'):.2f}",
            "-" if e is None else f"{e:.3g}{' (est.)' if r.get('energy_estimated') else ''}"]) + " |")
    return "\n".join(lines)


def _plots(config: TsPruneConfig, summary: dict, workdir: Path) -> list[str]:
    from matplotlib.figure import Figure

    names = []
    h = config.horizons[0]
    for ds in config.datasets:
        rows = [r for r in summary["table"] if r["dataset"] == ds and r["horizon"] == h]
        if not rows:
            continue
        fig = Figure(figsize=(4 * len(config.models), 3.6))
        axes = fig.subplots(1, len(config.models), squeeze=False)[0]
        for ax, m in zip(axes, config.models):
            mr = [r for r in rows if r["model"] == m]
            dense = [r for r in mr if r["kind"] == "dense"]
            for ft, style in ((False, "o--"), (True, "s-")):
                pts = sorted([(r["density"], r["mse"], r["mse_sd"]) for r in mr
                              if r["kind"] == "unstructured" and r["finetuned"] == ft] +
                             ([] if ft else [(1.0, r["mse"], r["mse_sd"]) for r in dense]), key=lambda p: p[0])
                if pts:
                    d_, m_, e_ = zip(*pts)
                    ax.errorbar(d_, m_, yerr=e_, fmt=style, ms=3, capsize=2,
                                label="unstructured + fine-tune" if ft else "unstructured")
            md = sorted((r["density"], r["mse"]) for r in mr if r["kind"] == "matched_dense")
            if md:
                ax.plot(*zip(*md), "k^", label="dense, matched width")
            st = [(r["density"], r["mse"]) for r in mr if r["kind"].startswith("structured") and r["finetuned"]]
            if st:
                ax.plot(*zip(*st), "rD", ms=4, label="structured + fine-tune")
            ax.set_xscale("log")
            ax.set_title(m)
            ax.set_xlabel("density (prunable weights)")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("test MSE (standardised)")
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{ds}, H = {h}")
        fig.tight_layout()
        path = workdir / f"mse_vs_density_{ds}.png"
        fig.savefig(path, dpi=100)
        names.append(path.name)
    lat = [r for r in summary["latency"] if r["variant"] != "dense" and r.get("flop_ratio")]
    if lat:
        names.append(plot_latency_vs_flops(lat, workdir / "latency_vs_flops.png").name)
    return names


def plot_latency_vs_flops(rows: Sequence[dict], path: str | Path, *, title: str = "") -> Path:
    """Latency ratio against FLOP ratio (dense / pruned), one marker per batch size, each point labelled
    with its ``model`` where rows have one, and the line where the speed-up equals the FLOP ratio.

    Args:
      rows: dicts with ``flop_ratio``, ``speedup`` and ``batch`` (``model`` optional): the study's latency
        rows or ``scripts/bench_tsprune.py``'s latency records.
      path: the PNG to write.
    """
    from matplotlib.figure import Figure

    rows = [r for r in rows if r.get("flop_ratio") and r.get("speedup") is not None]
    if not rows:
        raise ValueError("no rows with a flop_ratio and a speedup to plot")
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    for b in sorted({r["batch"] for r in rows}):
        at = [r for r in rows if r["batch"] == b]
        ax.plot([r["flop_ratio"] for r in at], [r["speedup"] for r in at], "o", label=f"batch {b}")
        for r in at:
            if r.get("model"):
                ax.annotate(r["model"], (r["flop_ratio"], r["speedup"]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
    top = max(r["flop_ratio"] for r in rows) * 1.1
    ax.plot([1, top], [1, top], "k:", lw=1, label="speed-up = FLOP ratio")
    ax.axhline(1.0, color="0.6", lw=0.8)
    ax.set_xlabel("FLOP ratio dense / structured")
    ax.set_ylabel("latency ratio dense / structured")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


# ----------------------------------------------------------------------------- run


def study_order(config: TsPruneConfig, studies: Sequence[Any]) -> list[tuple[int, Any, str]]:
    """The order of a study's cells: seed-major, then each (dataset, horizon) study, then each model.

    A run stopped part way (it resumes cell by cell) thus holds whole seeds: every dataset, horizon and
    model of seed 0 before any of seed 1.
    """
    return [(seed, study, name) for seed in config.seeds for study in studies for name in config.models]


def run(config: TsPruneConfig, workdir: str | Path, *, progress: bool = True, meter=None,
        series: dict[str, jdata.TimeSeries] | None = None) -> dict[str, Any]:
    """Runs the study (resumable) and writes ``summary.json``, ``records.jsonl`` and the plots.

    ``summary.json``'s ``wall_s`` is this process's wall time; ``train_s_recorded`` sums the training seconds of
    every recorded cell (``cells`` of them), whichever run made them.

    Args:
      config: the study.
      workdir: output folder.
      progress: print one line per result.
      meter: energy meter for the latency section (default ``jaxlab.energy.EnergyMeter()``).
      series: dataset name -> series, replacing the loaders (tests).
    """
    config.check()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", dataclasses.asdict(config))
    say = _progress(progress)
    meter = EnergyMeter() if meter is None else meter
    records = Records(workdir / "records.jsonl")
    t0 = time.perf_counter()
    meter.start()
    windows_by_ds = {}
    forecasters = _Forecasters()
    studies = []
    for ds in config.datasets:
        s = series[ds] if series and ds in series else DATASETS[ds]()
        for horizon in config.horizons:
            w = ts.make_windows(s, input_len=config.input_len, horizon=horizon)
            if horizon == config.horizons[0]:
                windows_by_ds[ds] = w
            settings = TrainSettings(batch_size=config.batch_size, learning_rate=config.learning_rate,
                                     epochs=config.epochs, patience=config.patience, lr_decay=config.lr_decay,
                                     train_stride=_stride(w.num_windows("train"), config.max_train_windows),
                                     val_stride=_stride(w.num_windows("val"), config.max_val_windows),
                                     eval_batch=config.eval_batch)
            studies.append((ds, horizon, w, settings))
    for seed, (ds, horizon, w, settings), name in study_order(config, studies):
        _study_one(config, name, ds, horizon, seed, w, records, workdir, settings, say, forecasters)
    study_energy = meter.stop()
    if config.latency_batches:
        _latency_section(config, records, workdir, windows_by_ds, meter, say)
    summary = summarise(config, records)
    g = summary["goals"]
    speedups = list(g["structured_speedup_batch256"].values())
    summary["goal_density_0.5"] = g["goal_density_0.5"]
    summary["goal_density_0.1"] = g["goal_density_0.1"]
    summary["max_structured_speedup_batch256"] = max(speedups) if speedups else None
    # wall_s is this process's only: a resumed run (or one whose cells came from parallel workdirs) trained
    # some cells elsewhere, so the cells' own training seconds are summed from the records as well.
    summary.update(status="completed", wall_s=time.perf_counter() - t0, cells=len(records.rows),
                   train_s_recorded=float(sum(r.get("train_s") or 0.0 for r in records.rows.values())),
                   windows={ds: {k: w.num_windows(k) for k in ts.SPLITS} for ds, w in windows_by_ds.items()},
                   energy={"study": to_jsonable(study_energy)})
    summary["plots"] = _plots(config, summary, workdir)
    for ds in config.datasets:
        (workdir / f"sweep_{ds}.md").write_text(sweep_markdown(config, summary, ds) + "\n", encoding="utf-8")
    if summary["latency"]:
        (workdir / "latency.md").write_text(latency_markdown(summary) + "\n", encoding="utf-8")
    write_json(workdir / "summary.json", to_jsonable(summary))
    return summary
