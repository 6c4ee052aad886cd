"""The backbone table: each forecaster of the zoo with and without ReCycle's PCC + RHP wrapper.

For each backbone (the zoo's Transformer, Informer, Autoformer, FEDformer and DLinear, at one small width)
two models are trained on the same windows of one series (:func:`jaxlab.methods.recycle.prepare_windows`):
the backbone on the raw per-step window (``L = history * D`` steps in, ``H = horizon * D`` out) and the
backbone inside :class:`jaxlab.timeseries.PCCRHP` (cycle tokens, the series-wide RHP as base forecast, the
calendar marks and the profile as the zoo's ``x_mark``/``future_mark``). Both get the same Adam steps,
batch, L1 loss and model selection on validation MAE. Time and energy
(:class:`jaxlab.energy.EnergyMeter`, results synchronised inside the meter) cover training, compilation
and the periodic validation. Each row also splits them into the warm-up (initialisation, the first step
and the validation pass, compilation included) and the loop of the other ``steps - 1`` steps with their
validation passes (``loop_s``, ``loop_energy_j``, and the ratios ``loop_time_ratio`` and
``loop_energy_ratio``). Only the loop grows with the length of training, so it is the part to compare
when the steps run are far fewer than a real training run's. One process, sequential; wall times on a
shared CPU are inflated by other jobs, so compare them within the file as ratios (the load average is
recorded before the first and after every row). Resumes: the rows done so far are kept in
``<out>.partial.json`` (for the same arguments) and a rerun of the same command trains only the rest.

    PYTHONPATH=. nice -n 10 python scripts/recycle_backbones.py --steps 300 \\
        --out bench/results/recycle_backbones_elecdemand.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxlab import data as jdata
from jaxlab import timeseries as ts
from jaxlab.core import environment_info, to_jsonable, write_json
from jaxlab.energy import EnergyMeter
from jaxlab.methods.recycle import RecycleConfig, energy_label, energy_total_j, prepare_windows


def backbones(width: int) -> dict[str, object]:
    zoo = dict(d_model=width, n_heads=2, d_ff=2 * width, dropout=0.0, e_layers=1, d_layers=1)
    return {"transformer": ts.TransformerConfig(**zoo), "informer": ts.InformerConfig(**zoo),
            "autoformer": ts.AutoformerConfig(**zoo), "fedformer": ts.FEDformerConfig(**zoo),
            "dlinear": ts.DLinearConfig()}


def _model(bb, wrapped: bool, lc: int, hc: int, d: int, marks: int):
    if wrapped:
        has_marks = "time_features" in {f.name for f in dataclasses.fields(bb)}
        cfg = ts.PCCRHPConfig(backbone=bb, history_cycles=lc, horizon_cycles=hc, cycle_len=d,
                              mark_features=marks if has_marks else 0, calendar=True, profile_marks=has_marks)
        m = cfg.module()

        def predict(p, a, train=False, key=None):
            b = a["hist"].shape[0]
            hm, fm = (a["hist_meta"], a["fc_meta"]) if cfg.mark_features else (None, None)
            y = m.apply(p, a["hist"].reshape(b, -1, 1), hm, fm, hist_profile=a["hist_profile"].reshape(b, -1, 1),
                        fc_profile=a["fc_profile"].reshape(b, -1, 1), train=train)
            return y.reshape(b, hc, d)
        return cfg, m, predict
    names = {f.name for f in dataclasses.fields(bb)}
    sizes = dict(input_len=lc * d, horizon=hc * d, channels=1)
    if "label_len" in names:
        sizes["label_len"] = lc * d // 2
    cfg = dataclasses.replace(bb, **sizes)
    m = cfg.module()

    def predict(p, a, train=False, key=None):
        b = a["hist"].shape[0]
        kw = {"train": train} if "time_features" in names else {}
        return m.apply(p, a["hist_steps"][..., None], **kw).reshape(b, hc, d)
    return cfg, m, predict


def train_one(name, bb, wrapped, splits, steps, batch, lr, eval_every, key, meter):
    tr, va, te = splits["train"], splits["val"], splits["test"]
    lc, d = tr["hist"].shape[1:]
    hc = tr["target"].shape[1]
    cfg, m, predict = _model(bb, wrapped, lc, hc, d, tr["hist_meta"].shape[-1])
    keys = ("hist", "hist_meta", "fc_meta", "hist_profile", "fc_profile", "hist_steps", "target")
    tr = {k: jnp.asarray(tr[k]) for k in keys}
    va = {k: jnp.asarray(va[k]) for k in keys}
    te = {k: jnp.asarray(te[k]) for k in keys}
    k_init, k_data = jax.random.split(key)
    tx = optax.adam(lr)
    meter.start()
    t0 = time.perf_counter()
    sample = {k: v[:2] for k, v in tr.items()}
    params = jax.jit(lambda k: (m.init(k, sample["hist"].reshape(2, -1, 1), *(
        (sample["hist_meta"], sample["fc_meta"]) if wrapped and cfg.mark_features else ()),
        hist_profile=sample["hist_profile"].reshape(2, -1, 1), fc_profile=sample["fc_profile"].reshape(2, -1, 1))
        if wrapped else m.init(k, sample["hist_steps"][..., None])))(k_init)
    opt = tx.init(params)
    n = tr["target"].shape[0]

    @jax.jit
    def step(params, opt, idx):
        b = {k: v[idx] for k, v in tr.items()}
        loss, g = jax.value_and_grad(lambda p: jnp.mean(jnp.abs(predict(p, b) - b["target"])))(params)
        up, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, up), opt, loss

    val_mae = jax.jit(lambda p: jnp.mean(jnp.abs(predict(p, va) - va["target"])))
    best, best_p, best_step = float(val_mae(params)), params, 0
    rng = np.random.default_rng(int(jax.random.randint(k_data, (), 0, 2**30)))
    marks = []   # (seconds, joules) after the warm-up (init, the first step, the validation compile), the loop
    for s in range(1, steps + 1):
        params, opt, _ = step(params, opt, rng.integers(0, n, size=min(batch, n)))
        if s % eval_every == 0 or s == steps:
            v = float(val_mae(params))
            if v < best:
                best, best_p, best_step = v, params, s
        if s == 1 or s == steps:
            jax.block_until_ready(params)
            marks.append((time.perf_counter() - t0, meter.read()["energy_j"]))
    pred = jax.block_until_ready(jax.jit(predict)(best_p, te))
    train_s = time.perf_counter() - t0
    reading = meter.stop()
    n_params = int(sum(np.size(x) for x in jax.tree.leaves(params)))
    (warm_s, warm_j), (loop_end_s, loop_end_j) = marks[0], marks[-1]
    return {"backbone": name, "wrapped": wrapped, "val_mae_norm": best, "best_step": best_step,
            "params": n_params, "time_s": train_s, "energy_j": energy_total_j(reading),
            "energy_source": energy_label(reading), "warmup_s": warm_s, "warmup_energy_j": warm_j,
            "loop_steps": steps - 1, "loop_s": loop_end_s - warm_s, "loop_energy_j": loop_end_j - warm_j,
            "pred": np.asarray(pred)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elecdemand")
    p.add_argument("--history", type=int, default=7)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="backbone names (default: all)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    prep = prepare_windows(RecycleConfig(dataset=args.dataset, history=args.history, horizon=7))
    splits, sc = prep["splits"], prep["data"].scaler
    truth = sc.inverse(splits["test"]["target"].astype(np.float64))
    profile_mae = float(np.mean(np.abs(sc.inverse(splits["test"]["fc_profile"].astype(np.float64)) - truth)))
    rows, load = [], [os.getloadavg()]
    same = {k: v for k, v in vars(args).items() if k != "out"}
    partial = Path(args.out + ".partial.json")  # resume: the rows already done, for these same arguments
    if partial.exists():
        saved = json.loads(partial.read_text())
        if saved.get("args") == same:
            rows, load = saved["rows"], saved["load_average_1_5_15min"] + load
            print(f"{len(rows)} rows done before (from {partial})", flush=True)
    meter = EnergyMeter()
    for name, bb in backbones(args.width).items():
        if args.only and name not in args.only:
            continue
        for wrapped in (False, True):
            if any(r["backbone"] == name and r["wrapped"] == wrapped for r in rows):
                continue
            r = train_one(name, bb, wrapped, splits, args.steps, args.batch, args.lr, 50,
                          jax.random.key(args.seed), meter)
            r["mae"] = float(np.mean(np.abs(sc.inverse(r.pop("pred").astype(np.float64)) - truth)))
            rows.append(r)
            load.append(os.getloadavg())
            write_json(partial, to_jsonable({"args": same, "rows": rows, "load_average_1_5_15min": load}))
            print(f"{name:12s} wrapped={wrapped!s:5s} MAE {r['mae']:.4f}  {r['time_s']:.1f} s  "
                  f"{r['energy_j']:.0f} J", flush=True)
    ratios = {}
    for name in {r["backbone"] for r in rows}:
        raw = next(r for r in rows if r["backbone"] == name and not r["wrapped"])
        wr = next(r for r in rows if r["backbone"] == name and r["wrapped"])
        ratios[name] = {"time_ratio": raw["time_s"] / wr["time_s"],
                        "energy_ratio": raw["energy_j"] / max(wr["energy_j"], 1e-12),
                        "mae_raw": raw["mae"], "mae_wrapped": wr["mae"]}
        if "loop_s" in raw and "loop_s" in wr and wr["loop_s"] > 0:  # rows of older partial files lack them
            ratios[name].update(loop_time_ratio=raw["loop_s"] / wr["loop_s"],
                                loop_energy_ratio=raw["loop_energy_j"] / max(wr["loop_energy_j"], 1e-12))
    out = {"dataset": args.dataset, "args": vars(args), "profile_mae": profile_mae, "rows": rows,
           "ratios": ratios, "note": "sequential on a shared 2-core CPU; compare times within this file",
           "load_average_1_5_15min": load, "environment": environment_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, to_jsonable(out))
    partial.unlink(missing_ok=True)
    print(ratios, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
