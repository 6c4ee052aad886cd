"""PETNet against coincidence-window sorters on simulated PET data: F1, time, throughput.

``run(config, workdir)`` simulates the preset's samples (one fixed data seed), scores the four sorters
(SCW, SCW + geometry, SCW + geometry keeping the single good pair of multiples, SCW on delay-calibrated
times) on the test split, trains every PETNet variant (loss x geometry channel x architecture) for every
training seed, scores it, measures throughput, and writes ``summary.json`` (``summary["table"]``: one
row per method, seeds averaged), ``runs.jsonl`` (one line per finished training run) and ``f1.png``.

A killed run started again with the same workdir skips the (variant, seed) runs already in
``runs.jsonl`` and trains only the rest; a training run that was cut short is redone from its start,
so each line holds one complete run and none is written twice.

Training times are wall clock and process CPU time (including compilation); on a shared machine both
are inflated by other jobs (CPU time less so), so the load average at the start is recorded too.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import (Constraint, Rule, each, nonempty, nonnegative, one_of, optional, positive, to_jsonable,
                         write_json)
from jaxlab.energy import EnergyLedger, EnergyMeter

from ._encode import compact_hits, hits_from_data, max_valid_hits
from ._metrics import Scorer
from ._scw import calibrate_delays, calibrated_time, scw, scw_calibrated, scw_geometry
from ._losses import LOSSES
from ._simulate import PRESETS, PETData, compatible_pairs, detector_delays, get_preset, simulate, split
from ._throughput import measure_throughput
from ._model import ARCHITECTURES
from ._train import TrainSettings, Variant, evaluate_params, train


@dataclasses.dataclass(frozen=True)
class PETNetConfig:
    """A PETNet experiment.

    Attributes:
      preset: ``reduced``, ``clinical`` or ``safir`` (:data:`~jaxlab.methods.petnet.PRESETS`).
      num_train, num_test: override the preset's split sizes.
      antipodal, fix_geometry_wrap: simulator options (see :class:`~jaxlab.methods.petnet.Preset`).
      data_seed: seed of the simulated samples.
      seeds: training seeds (initialisation and batch order).
      variants: ``(loss, geometry, architecture)`` triples to train.
      headline: the variant whose mean F1 the goals use.
      hidden, epochs, batch_size, learning_rate, timing_weight, tau, unroll: training.
      max_train_s, max_train_cpu_s: stop a training run after the epoch that exceeds this wall-clock /
        process-CPU budget.
      input_gain, hidden_gain, output_gain, bias_gain: initialisation scale relative to PyTorch's
        ``nn.Linear`` of the first layer's weights, the middle layers', the last layer's, and of every bias.
      tol: strict-F1 time tolerance in steps (None: the preset's ``delay_max``).
      calibration_windows: SCW windows tried after delay calibration (best on the training split).
      eval_batch: samples per evaluation batch.
      throughput_batch, throughput_repeats: throughput measurement (0 samples: skip it).
    """

    preset: str = "reduced"
    num_train: int | None = None
    num_test: int | None = None
    antipodal: bool = False
    fix_geometry_wrap: bool = False
    data_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    variants: tuple[tuple[str, bool, str], ...] = (("l1_vr", True, "three_layer"),)
    headline: tuple[str, bool, str] = ("l1_vr", True, "three_layer")
    hidden: int = 240
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 5e-4
    timing_weight: float = 0.1
    tau: float = 5.0
    unroll: int = 1
    max_train_s: float | None = None
    max_train_cpu_s: float | None = None
    input_gain: float = 1.0
    hidden_gain: float = 1.0
    output_gain: float = 1.0
    bias_gain: float = 1.0
    tol: float | None = None
    calibration_windows: tuple[int, ...] = (0, 1, 2, 4, 8)
    eval_batch: int = 250
    throughput_batch: int = 1000
    throughput_repeats: int = 5

    CONSTRAINTS: ClassVar[dict] = {
        "preset": one_of(*PRESETS), "num_train": optional(positive), "num_test": optional(positive),
        "data_seed": nonnegative, "seeds": (nonempty, each(nonnegative)),
        "variants": (nonempty, each(Constraint(lambda v: v[0] in LOSSES and v[2] in ARCHITECTURES,
                                               f"(loss in {list(LOSSES)}, geometry, architecture in "
                                               f"{list(ARCHITECTURES)})"))),
        "hidden": positive, "timing_weight": nonnegative, "tau": positive, "unroll": positive,
        "max_train_s": optional(positive), "max_train_cpu_s": optional(positive), "input_gain": positive,
        "hidden_gain": positive, "output_gain": positive, "bias_gain": nonnegative, "tol": optional(nonnegative),
        "calibration_windows": (nonempty, each(nonnegative)), "eval_batch": positive,
        "throughput_batch": nonnegative, "throughput_repeats": positive,
    }
    RULES: ClassVar[tuple] = (
        Rule(("headline", "variants"), lambda c: tuple(c.headline) in {tuple(v) for v in c.variants},
             "the headline must be one of the variants"),
    )

    def get_preset(self):
        over: dict[str, Any] = {"antipodal": self.antipodal, "fix_geometry_wrap": self.fix_geometry_wrap}
        if self.num_train is not None:
            over["num_train"] = self.num_train
        if self.num_test is not None:
            over["num_test"] = self.num_test
        return get_preset(self.preset, **over)

    def settings(self, architecture: str = "three_layer") -> TrainSettings:
        n = ARCHITECTURES[architecture]
        gains = (self.input_gain,) if n == 1 else (self.input_gain,) + (self.hidden_gain,) * (n - 2) + (self.output_gain,)
        return TrainSettings(hidden=self.hidden, epochs=self.epochs, batch_size=self.batch_size,
                             learning_rate=self.learning_rate, timing_weight=self.timing_weight, tau=self.tau,
                             unroll=self.unroll, max_train_s=self.max_train_s,
                             max_train_cpu_s=self.max_train_cpu_s, weight_gain=gains,
                             bias_gain=self.bias_gain)


# The training recipe of the headline (CPU, reduced preset) and of the clinical GPU check. Versus the
# paper's: Adam at 2e-3 instead of 5e-4 (the CPU budget allows about 12 epochs of 4k samples, not 30-60
# of 36k), zero initial biases and larger initial weights, because PyTorch's nn.Linear scale assumes
# dense inputs: a single hit moves a first-layer membrane by at most 1/sqrt(fan_in) = 0.09 of the
# threshold, so the first layer is blind to the input until training has grown its weights, and the
# positive half of the uniform biases drives tonic firing (steady state b / (1 - beta) > 1 for
# b > 0.05). With gain 16 on the first layer a hit makes about a sixth of its neurons fire; the later
# gains (3.3, 2.0) put the next layer's currents at roughly one threshold per hit (arithmetic in
# the config docstring). With PyTorch's init the same nets learned an order of magnitude slower here.
HEADLINE_RECIPE = PETNetConfig(
    variants=(("l1_vr", True, "reference"),), headline=("l1_vr", True, "reference"), epochs=12,
    learning_rate=2e-3, input_gain=16.0, hidden_gain=3.3, output_gain=2.0, bias_gain=0.0, max_train_cpu_s=300.0)


@jax.jit
def _label_time(data: PETData) -> jax.Array:
    """The decay time of each hit slot of :func:`hits_from_data` (``(N, 2K)``)."""
    return jnp.broadcast_to(data.decay_time[..., None], data.hit_time.shape).reshape(data.hit_time.shape[0], -1)


def sorter_scores(preset, train_data: PETData, test_data: PETData, *, tol: float,
                  calibration_windows=(0, 1, 2, 4, 8)) -> tuple[list[dict], dict[str, Any]]:
    """Scores of SCW and its variants on ``test_data``; the calibration uses ``train_data``'s labels.

    Returns:
      ``(rows, extras)``; ``extras`` holds the calibrated delays and the chosen window.
    """
    h_tr = hits_from_data(train_data)
    delays = calibrate_delays(h_tr, _label_time(train_data), preset.num_crystals)
    h_tr = compact_hits(h_tr, max(max_valid_hits(h_tr), 1))
    best = None
    for w in calibration_windows:  # window for calibrated SCW chosen on the training split
        s = Scorer(tol)
        s.add_hits(h_tr, scw_calibrated(h_tr, delays, w), train_data, time=calibrated_time(h_tr, delays))
        f1 = s.scores()["f1"]
        if best is None or f1 > best[1]:
            best = (w, f1)
    cal_window = int(best[0])
    hits = hits_from_data(test_data)
    hits = compact_hits(hits, max(max_valid_hits(hits), 1))
    compat = jnp.asarray(compatible_pairs(preset))
    methods = {
        "scw": (scw(hits, 8), None),
        "scw_geometry": (scw_geometry(hits, compat, 8, "kill"), None),
        "scw_geometry_single_good": (scw_geometry(hits, compat, 8, "single_good"), None),
        "scw_calibrated": (scw_calibrated(hits, delays, cal_window), calibrated_time(hits, delays)),
    }
    rows = []
    for name, (keep, t) in methods.items():
        s = Scorer(tol)
        s.add_hits(hits, keep, test_data, time=t)
        rows.append({"method": name, **s.scores()})
    exact = float(np.mean(delays == np.asarray(detector_delays(preset))))
    return rows, {"calibrated_window": cal_window, "delays": delays, "delays_exact_fraction": exact}


#: What a restarted run continues from (read by ``jaxlab run`` for its interrupt message).
RESUME_RECORDS = ("runs.jsonl",)


def _load_runs(path: Path) -> dict[tuple, dict]:
    """The finished runs in ``runs.jsonl``. A last line cut short by a kill is dropped from the file."""
    done: dict[tuple, dict] = {}
    if not path.exists():
        return done
    raw = path.read_bytes()
    complete = raw[:raw.rfind(b"\n") + 1]
    if len(complete) != len(raw):  # killed while writing a line: that run is redone
        with path.open("r+b") as f:
            f.truncate(len(complete))
    for n, line in enumerate(complete.decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
                done[(r["loss"], r["geometry"], r["architecture"], r["seed"])] = r
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{path}:{n} is not a finished PETNet run; remove that line (or use --fresh) "
                                 "and run again") from None
    return done


def _plot(workdir: Path, rows: list[dict], baselines: list[dict]) -> Path:
    from matplotlib.figure import Figure

    names = [b["method"] for b in baselines] + [r["method"] for r in rows]
    f1 = [b["f1"] for b in baselines] + [r["f1"] for r in rows]
    err = [0.0] * len(baselines) + [r.get("f1_std", 0.0) for r in rows]
    fig = Figure(figsize=(max(6, 0.6 * len(names) + 2), 4))
    ax = fig.subplots()
    colors = ["0.6"] * len(baselines) + ["C0"] * len(rows)
    ax.bar(range(len(names)), f1, yerr=err, color=colors)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("strict pair F1 (test)")
    ax.set_ylim(0, 1)
    ax.set_title("PETNet variants (blue, mean ± sd over seeds) vs sorters (grey)")
    fig.tight_layout()
    path = workdir / "f1.png"
    fig.savefig(path, dpi=110)
    return path


def run(config: PETNetConfig, workdir: str | os.PathLike, *, progress: bool = True) -> dict[str, Any]:
    """Runs the experiment (see the module docstring) and returns the summary."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "config.json").exists():
        write_json(workdir / "config.json", dataclasses.asdict(config))
    preset = config.get_preset()
    tol = float(preset.delay_max if config.tol is None else config.tol)
    variants = [Variant(*v) for v in config.variants]
    headline = Variant(*config.headline)
    if headline not in variants:
        raise ValueError(f"headline {config.headline} is not among the variants {config.variants}; add it")
    t_run = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    # energy.json totals every process that worked on this workdir (each resume adds its part)
    ledger = EnergyLedger(workdir / "energy.json")
    meter = EnergyMeter()
    meter.start()
    try:
        return _run(config, workdir, preset, tol, variants, headline, t_run, load, meter, ledger, progress)
    except KeyboardInterrupt:
        ledger.update(meter.stop())  # interrupted: this process's energy still counts when the run resumes
        raise
    finally:
        if meter.running:
            meter.stop()


def _run(config, workdir, preset, tol, variants, headline, t_run, load, meter, ledger, progress):
    """The body of :func:`run`, under its running ``meter``."""
    data = simulate(jax.random.key(config.data_seed), preset, preset.num_train + preset.num_test)
    train_data, test_data = split(jax.device_get(data), preset.num_train)
    baselines, extras = sorter_scores(preset, train_data, test_data, tol=tol,
                                      calibration_windows=config.calibration_windows)
    by_base = {b["method"]: b for b in baselines}
    if progress:
        for b in baselines:
            print(f"[petnet] {b['method']:26s} F1 {b['f1']:.4f}  (reference-compatible {b['ref_f1']:.4f})", flush=True)

    runs_path = workdir / "runs.jsonl"
    done = _load_runs(runs_path)
    trained: dict[Variant, Any] = {}
    for v in variants:
        for seed in config.seeds:
            key = (v.loss, v.geometry, v.architecture, seed)
            if key in done:  # finished before a restart
                continue
            res = train(preset, train_data, v, config.settings(v.architecture), key=jax.random.key(seed),
                        progress=progress)
            scores = evaluate_params(res["net"], res["params"], preset, test_data, v.geometry, tol=tol,
                                     batch_size=config.eval_batch)
            row = {"loss": v.loss, "geometry": v.geometry, "architecture": v.architecture, "seed": seed,
                   **scores, "epochs": res["epochs"], "train_wall_s": res["train_wall_s"],
                   "train_cpu_s": res["train_cpu_s"], "history": res["history"]}
            with runs_path.open("a") as f:
                f.write(json.dumps(to_jsonable(row)) + "\n")
            done[key] = row
            ledger.update(meter.report().to_dict())  # a later SIGKILL keeps this process's part up to here
            if v == headline and seed == config.seeds[0]:
                trained[v] = res
            if progress:
                print(f"[petnet] {v.label:28s} seed {seed}: F1 {scores['f1']:.4f}  {res['epochs']} epochs "
                      f"{res['train_wall_s']:.0f} s wall, {res['train_cpu_s']:.0f} s CPU", flush=True)

    rows = []
    for v in variants:
        runs = [done[(v.loss, v.geometry, v.architecture, s)] for s in config.seeds]
        agg: dict[str, Any] = {"method": f"petnet {v.label}", "loss": v.loss, "geometry": v.geometry,
                               "architecture": v.architecture, "seeds": len(runs)}
        for k in ("f1", "precision", "recall", "trues", "false_spikes_per_sample", "mean_abs_dt", "ref_f1",
                  "train_wall_s", "train_cpu_s", "epochs"):
            vals = np.array([r[k] for r in runs], float)
            agg[k] = float(vals.mean())
            if k in ("f1", "train_wall_s", "train_cpu_s"):
                agg[k + "_std"] = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
        agg["f1_per_seed"] = [r["f1"] for r in runs]
        rows.append(agg)
    head = next(r for r in rows if r["method"] == f"petnet {headline.label}")

    throughput = None
    if config.throughput_batch:
        if headline not in trained:
            # resumed run: the headline's params are not kept on disk, so time a freshly initialised net of
            # the same shape (throughput does not depend on the weights' values)
            from ._train import init_params

            net, params = init_params(preset, headline, config.settings(headline.architecture),
                                      key=jax.random.key(config.seeds[0]))
        else:
            net, params = trained[headline]["net"], trained[headline]["params"]
        throughput = measure_throughput(preset, test_data, net, params, headline.geometry,
                                        batch=min(config.throughput_batch, test_data.num_samples),
                                        repeats=config.throughput_repeats, delays=extras["delays"],
                                        calibrated_window=extras["calibrated_window"])
    total = ledger.update(meter.stop())
    summary: dict[str, Any] = {
        "status": "completed",
        "preset": dataclasses.asdict(preset),
        "tolerance_steps": tol,
        "load_average_at_start": load,
        "pairs_per_sample_test": float(np.asarray(test_data.true_pair).sum() / test_data.num_samples),
        "baselines": baselines,
        "calibrated_window": extras["calibrated_window"],
        "calibrated_delays_exact_fraction": extras["delays_exact_fraction"],
        "table": [{k: v for k, v in b.items() if k in ("method", "f1", "precision", "recall", "ref_f1")}
                  for b in baselines] + [
            {k: r[k] for k in ("method", "f1", "f1_std", "precision", "recall", "ref_f1", "mean_abs_dt",
                               "train_wall_s", "train_cpu_s", "epochs")} for r in rows],
        "variants": rows,
        "headline": headline.label,
        "petnet_f1": head["f1"],
        "petnet_f1_std": head["f1_std"],
        "scw_f1": by_base["scw"]["f1"],
        "scw_geometry_f1": by_base["scw_geometry"]["f1"],
        "scw_geometry_single_good_f1": by_base["scw_geometry_single_good"]["f1"],
        "scw_calibrated_f1": by_base["scw_calibrated"]["f1"],
        "train_wall_s": head["train_wall_s"],
        "train_cpu_s": head["train_cpu_s"],
        "goal_f1_ge_scw_plus_0.05": bool(head["f1"] >= by_base["scw"]["f1"] + 0.05),
        "goal_train_le_300_s_wall": bool(head["train_wall_s"] <= 300.0),
        "goal_train_le_300_s_cpu": bool(head["train_cpu_s"] <= 300.0),
        "beats_scw_geometry": bool(head["f1"] > by_base["scw_geometry"]["f1"]),
        "throughput": throughput,
        "wall_s": time.perf_counter() - t_run,
        # every process of the run (a resumed run adds the earlier ones'); wall_s above is this process's
        "energy": {"energy_j": float(sum(total["energy_j"].values())), "wall_s": float(total["wall_s"]),
                   "processes": ledger.num_processes, "estimated": total.get("estimated"),
                   "source": total.get("source")},
    }
    if throughput is not None:
        summary["scw_jit_samples_per_s"] = throughput["scw_jit_hits"]["samples_per_s"]
        summary["petnet_samples_per_s"] = throughput["petnet_forward"]["samples_per_s"]
    summary["plots"] = [_plot(workdir, rows, baselines).name]
    write_json(workdir / "summary.json", to_jsonable(summary))
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """The F1 table of a summary as Markdown."""
    cols = ["method", "f1", "f1_std", "precision", "recall", "ref_f1", "mean_abs_dt", "train_wall_s",
            "train_cpu_s", "epochs"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in summary["table"]:
        lines.append("| " + " | ".join(f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                       for c in cols) + " |")
    return "\n".join(lines)
