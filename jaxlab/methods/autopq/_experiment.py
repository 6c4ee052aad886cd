"""AutoPQ against its baselines on four energy-related series, in the default and the advanced mode.

For every series ``run(config, workdir)``:

1. cuts the windows (:mod:`._windows`: the reference's splits, a window at every step);
2. trains the cINN on the training targets (the reference's settings, :mod:`._train`);
3. **default mode**: trains the default point forecaster with its default hyperparameters and tunes
   ``lambda_q`` on the validation windows (TPE, ``U(0.01, 3)``, plateau stop); the same search tunes the
   additive-noise variant;
4. fits the baselines on the validation windows around the same point forecast: Gaussian residual
   quantiles, split-conformal quantiles, linear quantile regression;
5. **advanced mode**: searches the forecaster, its hyperparameters and (nested) ``lambda_q``, with
   successive-halving pruning;
6. scores everything on the test windows (all of them; the searches score every k-th validation window,
   ``search_windows`` of them, on fixed noise). ``cinn_prior`` samples the cINN's latent prior
   ``N(0, I)`` without the point forecast: a diagnostic of what the cINN alone knows.

Each series' results go to ``series/<name>.json`` as soon as it is done, so a killed run started again
with the same workdir skips the finished series (each series is recomputed whole, never in part).
``summary.json`` holds the table (one row per series and method), the goal checks, the searches' time
and energy, and the advanced-vs-default comparison; the PNGs show the comparison, the searches and one
test forecast per series. Energy comes from ``jaxlab.energy.EnergyMeter`` per trial (on a machine
without RAPL an estimate from process CPU time, flagged ``estimated``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import jax
import numpy as np

from jaxlab.core import (Meter, MetricsWriter, each, nonempty, nonnegative, one_of, optional, positive, to_jsonable,
                         write_json)

from ._cinn import CINN
from ._baselines import (conformal_quantiles, fit_quantile_regression, gaussian_quantiles,
                         predict_quantile_regression, qr_features, quantile_crossings, residual_scale)
from ._evaluate import SampleScorer, gaussian_crps, quantile_scores
from ._forecasters import FORECASTERS, ForecasterTraining, fit_forecaster, suggest_hyperparameters
from ._sampling import QUANTILES, standard_noise
from ._search import J_PER_KWH, Budget, search_advanced, search_lambda
from ._train import CINNTraining, fit_cinn
from ._windows import SERIES, ForecastData, load_windows

METHODS = ("autopq", "cinn_lambda_0.1", "cinn_additive", "cinn_prior", "gaussian", "conformal", "quantile_regression",
           "autopq_advanced", "gaussian_advanced")


@dataclasses.dataclass(frozen=True)
class AutoPQConfig:
    """The AutoPQ experiment.

    Attributes:
      series: names in ``SERIES`` (elecdemand, taylor, bikeshare, tmy3_ghi).
      forecaster: AutoPQ-default's point forecaster (the reference's example uses the MLP).
      cinn_epochs, cinn_batch_size: the cINN's training (the reference: 100 epochs at batch 512).
      cinn_blocks: its coupling blocks (the reference: 10; fewer only to make smoke tests compile faster).
      forecaster_epochs, forecaster_patience: the point forecasters' training and early stopping (sklearn
        ``MLPRegressor``'s ``max_iter = 200`` and ``n_iter_no_change = 10``, as the reference's MLP).
      sample_size: latent samples per forecast (100).
      search_windows: validation windows the lambda_q searches score (every k-th window).
      qr_windows: validation windows the quantile regressions are fitted on (every k-th window).
      default_trials, default_time_s, default_kwh: the default mode's budget (and the additive variant's).
      additive: also tune and score the additive-noise variant.
      advanced: run the advanced mode.
      advanced_forecasters: its candidates.
      advanced_trials, advanced_time_s, advanced_kwh: its outer budget per series.
      inner_trials: its nested lambda_q searches' trial budget (they also stop on the plateau).
      pruner_min_resource: epochs before the successive-halving pruner's first rung.
      seed: PRNG and TPE seed.
    """

    series: tuple[str, ...] = tuple(SERIES)
    forecaster: str = "mlp"
    cinn_epochs: int = 100
    cinn_batch_size: int = 512
    cinn_blocks: int = 10
    forecaster_epochs: int = 200
    forecaster_patience: int = 10
    sample_size: int = 100
    search_windows: int = 1000
    qr_windows: int = 1000
    default_trials: int = 100
    default_time_s: float | None = None
    default_kwh: float | None = None
    additive: bool = True
    advanced: bool = True
    advanced_forecasters: tuple[str, ...] = FORECASTERS
    advanced_trials: int = 20
    advanced_time_s: float | None = None
    advanced_kwh: float | None = None
    inner_trials: int = 100
    pruner_min_resource: int = 5
    seed: int = 0

    CONSTRAINTS: ClassVar[dict] = {
        "series": (nonempty, each(one_of(*SERIES))), "forecaster": one_of(*FORECASTERS),
        "cinn_epochs": positive, "cinn_batch_size": positive, "cinn_blocks": positive,
        "forecaster_epochs": positive, "forecaster_patience": positive, "sample_size": positive,
        "search_windows": positive, "qr_windows": positive, "default_trials": positive,
        "default_time_s": optional(positive), "default_kwh": optional(positive),
        "advanced_forecasters": (nonempty, each(one_of(*FORECASTERS))), "advanced_trials": positive,
        "advanced_time_s": optional(positive), "advanced_kwh": optional(positive), "inner_trials": positive,
        "pruner_min_resource": positive, "seed": nonnegative,
    }


#: What a restarted run continues from (read by ``jaxlab run`` for its interrupt message).
RESUME_RECORDS = ("series/*.json",)


def _default_meter() -> Meter:
    from jaxlab.energy import EnergyMeter

    return EnergyMeter()


def _joules(reading: dict[str, Any]) -> float:
    if "total_energy_j" in reading:
        return float(reading["total_energy_j"])
    e = reading.get("energy_j", 0.0)
    return float(sum(e.values())) if isinstance(e, dict) else float(e)


def _every(n: int, count: int) -> np.ndarray:
    return np.arange(0, n, max(1, math.ceil(n / max(count, 1))))


def units_float64(x: np.ndarray, offset: float, scale: float, limits: tuple) -> np.ndarray:
    """Scaled values in the series' units, in float64 on the host: ``x * scale + offset`` clipped to the physical
    ``limits`` (what ``run()`` scores against; :func:`to_units` is the same on device arrays)."""
    y = np.asarray(x, np.float64) * scale + offset
    lo, hi = limits
    return np.clip(y, lo, hi) if (lo is not None or hi is not None) else y


class _Series:
    """One series' data in the forms the pieces need (scaled arrays; units through ``units``)."""

    def __init__(self, data: ForecastData):
        self.data = data
        self.offset, self.scale = float(data.scaler.offset), float(data.scaler.scale)
        self.limits = data.spec.limits

    def units(self, x: np.ndarray) -> np.ndarray:
        return units_float64(x, self.offset, self.scale, self.limits)

    def clip_scaled(self, x: np.ndarray) -> np.ndarray:
        """A scaled forecast clipped to the physical limits (the reference clips the point forecast)."""
        return ((self.units(x) - self.offset) / self.scale).astype(np.float32)

    def predict(self, forecaster, split: str, index: np.ndarray | None = None) -> np.ndarray:
        w = self.data.splits[split]
        h, f = (w.history, w.future) if index is None else (w.history[index], w.future[index])
        return self.clip_scaled(forecaster(h, f))


def _gaussian_row(s: _Series, val_fc, test_fc, levels) -> tuple[dict, np.ndarray]:
    va, te = s.data.splits["val"], s.data.splits["test"]
    sigma = residual_scale(val_fc, va.target)
    q = s.units(gaussian_quantiles(test_fc, sigma, levels))
    row = quantile_scores(q, s.units(te.target), levels)
    row["crps_samples"] = gaussian_crps(s.units(test_fc), sigma * s.scale, s.units(te.target))
    return row, q


def _run_series(name: str, config: AutoPQConfig, meter_factory: Callable[[], Meter], log: Callable[[str], None],
                data: ForecastData | None = None) -> dict[str, Any]:
    key = jax.random.fold_in(jax.random.key(config.seed), sum(map(ord, name)))
    k_cinn, k_fc, k_noise, k_test, k_adv = jax.random.split(key, 5)
    s = _Series(load_windows(name) if data is None else data)
    va, te = s.data.splits["val"], s.data.splits["test"]
    levels = QUANTILES
    h = s.data.spec.horizon
    sidx = _every(va.target.shape[0], config.search_windows)
    meter = meter_factory()
    info: dict[str, Any] = {"series": name, "horizon": h, "windows": {k: int(v.target.shape[0]) for k, v in
                                                                      s.data.splits.items()},
                            "search_windows": int(sidx.size), "bounds": s.data.bounds}

    t0 = time.perf_counter()
    meter.start()
    cinn = fit_cinn(s.data.splits["train"].target, s.data.splits["train"].cond, key=k_cinn,
                    model=CINN(horizon=h, num_blocks=config.cinn_blocks), settings=CINNTraining(epochs=config.cinn_epochs, batch_size=config.cinn_batch_size))
    reading = meter.stop()
    info["cinn"] = {"train_s": time.perf_counter() - t0, "energy_j": _joules(reading),
                    "final_train_nll": float(cinn.train_loss[-1]), "final_holdout_nll": float(cinn.holdout_loss[-1]),
                    "estimated": bool(reading.get("estimated", False))}
    log(f"[autopq] {name}: cINN trained in {info['cinn']['train_s']:.1f} s "
        f"(held-out NLL {info['cinn']['final_holdout_nll']:.3f})")
    scorer = SampleScorer(cinn.model, s.offset, s.scale, s.limits, levels)
    noise = np.asarray(standard_noise(k_noise, (sidx.size, h), config.sample_size))
    test_noise = np.asarray(standard_noise(k_test, te.target.shape, config.sample_size))
    training = ForecasterTraining(max_epochs=config.forecaster_epochs, patience=config.forecaster_patience)

    def objective_for(val_forecast: np.ndarray, mode: str) -> Callable[[float], float]:
        return lambda lam: scorer.crps(cinn.params, val_forecast, va.cond[sidx], noise, va.target[sidx], lam, mode)

    # ---- default mode: default forecaster, lambda_q only
    t0 = time.perf_counter()
    meter.start()
    point = fit_forecaster(config.forecaster, None, s.data, key=k_fc, settings=training)
    reading = meter.stop()
    fc_energy, fc_s = _joules(reading), time.perf_counter() - t0
    val_fc, test_fc = s.predict(point, "val"), s.predict(point, "test")
    budget = Budget(config.default_trials, config.default_time_s, config.default_kwh)
    default = search_lambda(objective_for(val_fc[sidx], "multiplicative"), budget=budget, seed=config.seed,
                            meter_factory=meter_factory)
    lam = float(default.best_params["lambda_q"])
    info["default"] = {"forecaster": config.forecaster, "forecaster_epochs": point.epochs,
                       "forecaster_train_s": fc_s, "forecaster_energy_j": fc_energy, "lambda_q": lam,
                       "val_crps": default.best_value, "trials": len(default.trials),
                       "stopped_by": default.stopped_by, "search_s": default.wall_s,
                       "search_energy_j": default.energy_j, "wall_s": fc_s + default.wall_s,
                       "energy_j": fc_energy + default.energy_j, "estimated": default.estimated,
                       "trial_log": [{"lambda_q": r.get("lambda_q"), "value": r["value"]} for r in default.trials]}
    info["default"]["kwh"] = info["default"]["energy_j"] / J_PER_KWH
    log(f"[autopq] {name}: default mode lambda_q = {lam:.3f} after {len(default.trials)} trials "
        f"({default.stopped_by}), val CRPS {default.best_value:.4g}")

    y_test = s.units(te.target)
    rows: dict[str, dict] = {}
    crps, q = scorer.evaluate(cinn.params, test_fc, te.cond, test_noise, te.target, lam)
    rows["autopq"] = {**quantile_scores(q, y_test, levels), "crps_samples": crps, "lambda_q": lam,
                      "crossings": quantile_crossings(q)["crossings"]}
    example = {"autopq": q}
    crps, q = scorer.evaluate(cinn.params, test_fc, te.cond, test_noise, te.target, 0.1)
    rows["cinn_lambda_0.1"] = {**quantile_scores(q, y_test, levels), "crps_samples": crps, "lambda_q": 0.1}
    if config.additive:
        add = search_lambda(objective_for(val_fc[sidx], "additive"), budget=budget, seed=config.seed,
                            meter_factory=meter_factory)
        lam_add = float(add.best_params["lambda_q"])
        crps, q = scorer.evaluate(cinn.params, test_fc, te.cond, test_noise, te.target, lam_add, "additive")
        rows["cinn_additive"] = {**quantile_scores(q, y_test, levels), "crps_samples": crps, "lambda_q": lam_add,
                                 "search_trials": len(add.trials), "search_energy_j": add.energy_j}

    crps, q = scorer.evaluate(cinn.params, test_fc, te.cond, test_noise, te.target, 1.0, "prior")
    rows["cinn_prior"] = {**quantile_scores(q, y_test, levels), "crps_samples": crps}

    # ---- baselines around the same point forecast, fitted on the validation windows
    rows["gaussian"], example["gaussian"] = _gaussian_row(s, val_fc, test_fc, levels)
    q = s.units(conformal_quantiles(test_fc, val_fc, va.target, levels))
    rows["conformal"] = quantile_scores(q, y_test, levels)
    qidx = _every(va.target.shape[0], config.qr_windows)
    t0 = time.perf_counter()
    coef = fit_quantile_regression(qr_features(val_fc[qidx], va.lag[qidx], va.future[qidx]), va.target[qidx], levels)
    q_raw = predict_quantile_regression(coef, qr_features(test_fc, te.lag, te.future))
    rows["quantile_regression"] = {**quantile_scores(s.units(q_raw), y_test, levels), **quantile_crossings(q_raw),
                                   "fit_s": time.perf_counter() - t0, "fit_windows": int(qidx.size)}
    info["point_mae"] = float(np.mean(np.abs(s.units(test_fc) - y_test)))

    # ---- advanced mode
    if config.advanced:
        def fit(trial, fname, hp, report):
            return fit_forecaster(fname, hp, s.data, key=jax.random.fold_in(k_adv, trial.number), settings=training,
                                  report=report)

        adv = search_advanced(
            fit, lambda f: objective_for(s.predict(f, "val", sidx), "multiplicative"),
            lambda trial, fname: suggest_hyperparameters(trial, fname, s.data), config.advanced_forecasters,
            budget=Budget(config.advanced_trials, config.advanced_time_s, config.advanced_kwh),
            inner_budget=Budget(config.inner_trials), seed=config.seed, meter_factory=meter_factory,
            pruner_min_resource=config.pruner_min_resource)
        best = adv.forecast
        lam_adv = float(adv.search.best_params["lambda_q"])
        adv_test = s.predict(best, "test")
        crps, q = scorer.evaluate(cinn.params, adv_test, te.cond, test_noise, te.target, lam_adv)
        rows["autopq_advanced"] = {**quantile_scores(q, y_test, levels), "crps_samples": crps, "lambda_q": lam_adv}
        rows["gaussian_advanced"], _ = _gaussian_row(s, s.predict(best, "val"), adv_test, levels)
        states = [r["state"] for r in adv.search.trials]
        info["advanced"] = {
            "forecaster": best.name, "hyperparameters": best.hyperparameters, "lambda_q": lam_adv,
            "val_crps": adv.search.best_value, "trials": len(states), "pruned": states.count("PRUNED"),
            "inner_skipped": sum(bool(r.get("inner_skipped")) for r in adv.search.trials),
            "inner_trials": int(sum(r.get("inner_trials", 0) or 0 for r in adv.search.trials)),
            "stopped_by": adv.search.stopped_by, "wall_s": adv.search.wall_s, "energy_j": adv.search.energy_j,
            "kwh": adv.search.kwh, "estimated": adv.search.estimated, "point_mae": float(np.mean(np.abs(
                s.units(adv_test) - y_test))),
            "trial_log": [{k: r.get(k) for k in ("number", "state", "value", "forecaster", "lambda_q", "train_s",
                                                 "inner_trials", "inner_skipped", "energy_j", "wall_s", "epochs")}
                          for r in adv.search.trials]}
        log(f"[autopq] {name}: advanced mode chose {best.name} {best.hyperparameters}, lambda_q = {lam_adv:.3f}, "
            f"{len(states)} trials ({states.count('PRUNED')} pruned), {adv.search.wall_s:.0f} s")
    info["rows"] = rows
    i = int(np.argmax(y_test.max(1)))  # the test window with the highest peak
    info["example"] = {"index": i, "truth": y_test[i], "point": s.units(test_fc[i]),
                       "history": s.units(te.history[i, -2 * h:]),
                       **{k: v[i] for k, v in example.items()}}
    return info


def _goals(infos: list[dict]) -> dict[str, Any]:
    crps = {i["series"]: {m: r["crps_quantile"] for m, r in i["rows"].items()} for i in infos}
    improve = {n: (c["gaussian"] - c["autopq"]) / c["gaussian"] for n, c in crps.items()}
    vs_01 = {n: (c["cinn_lambda_0.1"] - c["autopq"]) / c["cinn_lambda_0.1"] for n, c in crps.items()}
    beats_qr = [n for n, c in crps.items() if c["autopq"] < c["quantile_regression"]]
    cov = {i["series"]: i["rows"]["autopq"]["coverage_80"] for i in infos}
    need_qr = 3 if len(infos) >= 4 else max(1, math.ceil(0.75 * len(infos)))
    out = {
        "improvement_over_gaussian": improve,
        "mean_improvement_over_gaussian": float(np.mean(list(improve.values()))),
        "goal_no_worse_than_gaussian_every_series": bool(all(v >= 0 for v in improve.values())),
        "goal_mean_improvement_over_gaussian_5pct": bool(np.mean(list(improve.values())) >= 0.05),
        "series_beating_quantile_regression": beats_qr,
        f"goal_beats_quantile_regression_on_{need_qr}_of_{len(infos)}": bool(len(beats_qr) >= need_qr),
        "improvement_tuned_over_lambda_0.1": vs_01,
        "mean_improvement_tuned_over_lambda_0.1": float(np.mean(list(vs_01.values()))),
        "goal_tuned_beats_0.1_by_3pct": bool(np.mean(list(vs_01.values())) >= 0.03),
        "coverage_80": cov,
        "goal_coverage_80_within_0.05": bool(all(abs(v - 0.8) <= 0.05 for v in cov.values())),
    }
    return out


def _advanced_table(infos: list[dict]) -> list[dict]:
    rows = []
    for i in infos:
        if "advanced" not in i:
            continue
        d, a = i["rows"]["autopq"]["crps_quantile"], i["rows"]["autopq_advanced"]["crps_quantile"]
        rows.append({"series": i["series"], "default_crps": d, "advanced_crps": a,
                     "crps_change_pct": 100 * (a - d) / d, "default_kwh": i["default"]["kwh"],
                     "advanced_kwh": i["advanced"]["kwh"], "kwh_change": i["advanced"]["kwh"] - i["default"]["kwh"],
                     "energy_ratio": i["advanced"]["kwh"] / max(i["default"]["kwh"], 1e-30),
                     "default_s": i["default"]["wall_s"], "advanced_s": i["advanced"]["wall_s"],
                     "advanced_forecaster": i["advanced"]["forecaster"], "advanced_trials": i["advanced"]["trials"]})
    return rows


def _plots(workdir: Path, infos: list[dict], adv_rows: list[dict]) -> list[str]:
    from matplotlib.figure import Figure  # no pyplot: leaves the user's backend alone

    names = []
    if adv_rows:
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        for r in adv_rows:
            ax.scatter(r["kwh_change"] * 1e3, r["crps_change_pct"], s=40)
            ax.annotate(f"{r['series']} ({r['advanced_forecaster']})", (r["kwh_change"] * 1e3, r["crps_change_pct"]),
                        textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("extra energy of the advanced search (Wh)")
        ax.set_ylabel("test CRPS change vs default mode (%)")
        ax.set_title("AutoPQ advanced vs default: accuracy against energy")
        fig.tight_layout()
        fig.savefig(workdir / "advanced_vs_default.png", dpi=110)
        names.append("advanced_vs_default.png")
    fig = Figure(figsize=(5 * len(infos), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(infos)))
    for ax, i in zip(axes, infos):
        lam = [t["lambda_q"] for t in i["default"]["trial_log"]]
        val = [t["value"] for t in i["default"]["trial_log"]]
        ax.scatter(lam, val, s=10, c=np.arange(len(lam)), cmap="viridis")
        ax.axvline(i["default"]["lambda_q"], color="r", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("lambda_q")
        ax.set_ylabel("validation CRPS")
        ax.set_title(f"{i['series']}: {len(lam)} trials ({i['default']['stopped_by']})", fontsize=9)
    fig.tight_layout()
    fig.savefig(workdir / "lambda_search.png", dpi=110)
    names.append("lambda_search.png")
    fig = Figure(figsize=(5 * len(infos), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(infos)))
    levels = list(QUANTILES)
    lo80, hi80, lo98, hi98 = (levels.index(v) for v in (0.10, 0.90, 0.01, 0.99))
    for ax, i in zip(axes, infos):
        ex = i["example"]
        hist = np.asarray(ex["history"])
        th = np.arange(-hist.size, 0)
        tf = np.arange(len(ex["truth"]))
        q = np.asarray(ex["autopq"])
        ax.plot(th, hist, color="0.5", lw=1)
        ax.fill_between(tf, q[:, lo98], q[:, hi98], color="C0", alpha=0.15, label="AutoPQ 98%")
        ax.fill_between(tf, q[:, lo80], q[:, hi80], color="C0", alpha=0.35, label="AutoPQ 80%")
        g = np.asarray(ex["gaussian"])
        ax.plot(tf, g[:, lo80], color="C3", lw=0.8, ls="--", label="Gaussian 80%")
        ax.plot(tf, g[:, hi80], color="C3", lw=0.8, ls="--")
        ax.plot(tf, ex["point"], color="C1", lw=1, label="point forecast")
        ax.plot(tf, ex["truth"], color="k", lw=1.4, label="truth")
        ax.set_title(f"{i['series']}: test window {ex['index']}", fontsize=9)
        ax.set_xlabel("steps from the forecast origin")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "forecasts.png", dpi=110)
    names.append("forecasts.png")
    return names


def format_table(table: list[dict]) -> str:
    """The per-series, per-method results as Markdown."""
    cols = ["series", "method", "crps_quantile", "crps_samples", "pinball", "coverage_80", "width_80",
            "coverage_98", "width_98", "mae", "lambda_q", "crossings"]
    return "\n".join(_markdown(table, cols))


def _markdown(rows: list[dict], cols: list[str]) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def format_report(summary: dict) -> str:
    """``tables.md`` of a run: the scores per series and method, the searches' time and energy, the goal
    checks and (when the advanced mode ran) the advanced-vs-default comparison, as Markdown."""
    out = ["# AutoPQ results", "", "Scores on the test windows (series units; CRPS from the 17 quantiles and from "
           "the samples, mean pinball loss, coverage and width of the central 80% and 98% intervals).", "",
           format_table(summary["table"]), "", "## Searches: wall time (s) and energy (kWh)", ""]
    search = [dict(r) for r in summary["search"]]
    cols = ["series", "cinn_train_s", "cinn_kwh", "default_trials", "default_stopped_by", "default_s", "default_kwh"]
    if any("advanced_trials" in r for r in search):
        cols += ["advanced_trials", "advanced_pruned", "advanced_inner_trials", "advanced_stopped_by", "advanced_s",
                 "advanced_kwh"]
    out += _markdown(search, cols)
    out += ["", f"Energy estimated from CPU time (no RAPL): {summary['energy'].get('estimated')}.", "", "## Goals", ""]
    out += [f"- {k}: {v}" for k, v in summary.items() if k.startswith("goal_")]
    for k in ("mean_improvement_over_gaussian", "improvement_over_gaussian", "series_beating_quantile_regression",
              "mean_improvement_tuned_over_lambda_0.1", "improvement_tuned_over_lambda_0.1", "coverage_80"):
        v = summary.get(k)
        if isinstance(v, dict):
            v = ", ".join(f"{n} {x:.4g}" for n, x in v.items())
        out.append(f"- {k}: {f'{v:.4g}' if isinstance(v, float) else v}")
    if summary.get("advanced_vs_default"):
        out += ["", "## Advanced against default mode", ""]
        out += _markdown(summary["advanced_vs_default"],
                         ["series", "default_crps", "advanced_crps", "crps_change_pct", "default_kwh", "advanced_kwh",
                          "kwh_change", "energy_ratio", "default_s", "advanced_s", "advanced_forecaster",
                          "advanced_trials"])
    return "\n".join(out) + "\n"


def run(config: AutoPQConfig, workdir: str | Path, *, meter_factory: Callable[[], Meter] | None = None,
        progress: bool = True, data: dict[str, ForecastData] | None = None) -> dict:
    """Runs the experiment on every series of ``config``; writes ``summary.json`` and the plots.

    Args:
      config: the experiment.
      workdir: output folder (created); finished series in ``series/`` are reused.
      meter_factory: makes energy meters (default ``jaxlab.energy.EnergyMeter``).
      progress: print one line per stage.
      data: windows to use instead of loading a series by name (tests, own data).

    Returns:
      The summary: ``table`` (one row per series and method), goal checks, searches' time and energy.
    """
    unknown = [n for n in config.series if n not in SERIES and not (data and n in data)]
    if unknown:
        raise ValueError(f"unknown series {unknown}; choose from {tuple(SERIES)}")
    if config.forecaster not in FORECASTERS or not set(config.advanced_forecasters) <= set(FORECASTERS):
        raise ValueError(f"forecasters must be among {FORECASTERS}")
    workdir = Path(workdir)
    (workdir / "series").mkdir(parents=True, exist_ok=True)
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", dataclasses.asdict(config))
    meter_factory = _default_meter if meter_factory is None else meter_factory
    # The run's own energy over every process that worked on this workdir (a killed run's unfinished series
    # is redone, and both attempts count); the stages' meters (meter_factory) give the searches' figures.
    from jaxlab.energy import EnergyLedger, EnergyMeter

    ledger = EnergyLedger(workdir / "energy.json")
    process_meter = EnergyMeter()
    process_meter.start()
    try:
        return _run(config, workdir, meter_factory, progress, data, ledger, process_meter)
    except KeyboardInterrupt:
        ledger.update(process_meter.stop())  # interrupted: this process's energy counts when the run resumes
        raise
    finally:
        if process_meter.running:
            process_meter.stop()


def _run(config: AutoPQConfig, workdir: Path, meter_factory: Callable[[], Meter], progress: bool,
         data: dict[str, ForecastData] | None, ledger: Any, process_meter: Any) -> dict:
    """The body of :func:`run`, under its running ``process_meter``."""
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    t_run = time.perf_counter()
    infos = []
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(total=len(config.series), desc="autopq series")
    for name in config.series:
        path = workdir / "series" / f"{name}.json"
        if path.is_file():
            info = json.loads(path.read_text(encoding="utf-8"))
            log(f"[autopq] {name}: reusing {path}")
        else:
            info = to_jsonable(_run_series(name, config, meter_factory, log, None if data is None else data.get(name)))
            write_json(path, info)
            ledger.update(process_meter.report().to_dict())  # a later SIGKILL keeps this process's part
        infos.append(info)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    table = [{"series": i["series"], "method": m, **r} for i in infos for m, r in i["rows"].items()]
    metrics = workdir / "metrics.jsonl"
    metrics.unlink(missing_ok=True)
    with MetricsWriter(metrics) as w:
        for i in infos:
            for n, t in enumerate(i["default"]["trial_log"]):
                w.write({"step": n, "split": "val", "series": i["series"], "mode": "default", **t})
            for t in i.get("advanced", {}).get("trial_log", []):
                w.write({"step": t["number"], "split": "val", "series": i["series"], "mode": "advanced", **t})
    adv_rows = _advanced_table(infos)
    energy_j = sum(i["cinn"]["energy_j"] + i["default"]["energy_j"] + i.get("advanced", {}).get("energy_j", 0.0)
                   + sum(r.get("search_energy_j", 0.0) for r in i["rows"].values()) for i in infos)
    estimated = any(i["cinn"]["estimated"] or i["default"]["estimated"] for i in infos)
    search = [{"series": i["series"], "cinn_train_s": i["cinn"]["train_s"], "cinn_kwh": i["cinn"]["energy_j"] / J_PER_KWH,
               "default_trials": i["default"]["trials"], "default_stopped_by": i["default"]["stopped_by"],
               "default_s": i["default"]["wall_s"], "default_kwh": i["default"]["kwh"],
               **({"advanced_trials": i["advanced"]["trials"], "advanced_pruned": i["advanced"]["pruned"],
                   "advanced_inner_trials": i["advanced"]["inner_trials"],
                   "advanced_inner_skipped": i["advanced"]["inner_skipped"],
                   "advanced_stopped_by": i["advanced"]["stopped_by"], "advanced_s": i["advanced"]["wall_s"],
                   "advanced_kwh": i["advanced"]["kwh"]} if "advanced" in i else {})} for i in infos]
    summary: dict[str, Any] = {
        "status": "completed",
        "series": [i["series"] for i in infos],
        "table": table,
        "search": search,
        "advanced_vs_default": adv_rows,
        **_goals(infos),
        "autopq_crps": {i["series"]: i["rows"]["autopq"]["crps_quantile"] for i in infos},
        "gaussian_crps": {i["series"]: i["rows"]["gaussian"]["crps_quantile"] for i in infos},
        "default_kwh_total": sum(i["default"]["kwh"] for i in infos),
        "advanced_kwh_total": sum(i.get("advanced", {}).get("kwh", 0.0) for i in infos),
        # energy_j: the stages' meters, summed over the kept series (what the searches cost); run_energy_j: the
        # process meter over every process that worked on the run (also work redone after a kill)
        "energy": {"energy_j": energy_j, "source": "jaxlab.energy.EnergyMeter per stage and trial",
                   "estimated": estimated},
        "wall_s": time.perf_counter() - t_run,
    }
    summary["plots"] = _plots(workdir, infos, adv_rows)
    total = ledger.update(process_meter.stop())
    summary["energy"].update(run_energy_j=float(sum(total["energy_j"].values())), run_wall_s=float(total["wall_s"]),
                             processes=ledger.num_processes, run_estimated=total.get("estimated"))
    write_json(workdir / "summary.json", to_jsonable(summary))
    (workdir / "tables.md").write_text(format_report(to_jsonable(summary)), encoding="utf-8")
    return summary
