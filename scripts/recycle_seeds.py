"""ReCycle over several seeds on one config: the guarded forecast and the residual-AR row against the profile.

Runs :func:`jaxlab.methods.recycle.run` once per seed (sequentially: each run trains one small model, and
the profile, guard, AR and ridge rows are shared code; the seeds are not vmapped) with the rows ``recycle``,
``recycle_guarded``, ``profile``, ``residual_ar``, ``persistence`` and ``residual_ridge`` and quantile heads
{0.1, 0.5, 0.9} (``--set key=value`` overrides config fields, as in `jaxlab run`), and writes the per-seed
tables, the means and the issue's goal checks to one JSON file. ``guard_rules`` holds every guard rule of
:data:`jaxlab.timeseries.GUARD_RULES`, with and without the residual AR candidate at lead 1, over the seeds
(the ``recycle_guarded`` row is the config's ``guard_rule``); each run's ``guard_alpha_test_oracle`` is the
alpha that would have been best on test (evidence, never used).

    PYTHONPATH=. nice -n 10 python scripts/recycle_seeds.py configs/recycle/elecdemand.py:univariate \\
        --seeds 0 1 2 3 4 --out bench/results/recycle_seeds_elecdemand_univariate.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxlab.core import apply_overrides, environment_info, load_config, to_jsonable, write_json
from jaxlab.methods.recycle import format_table, run

ROWS = ("recycle", "recycle_guarded", "profile", "residual_ar", "persistence", "residual_ridge")
#: Interval figures of the quantile report besides pinball, raw and static coverage (averaged where present).
INTERVAL_KEYS = ("coverage_rolling", "coverage_aci", "interval_width", "interval_width_rolling", "interval_width_aci",
                 "coverage_aci_paper_gamma", "interval_width_aci_paper_gamma", "aci_saturated_share")


def rule_table(runs: list[dict]) -> list[dict]:
    """Every guard rule (with and without the AR candidate) over the seeds: means, worst seed, goal checks."""
    by = lambda r, m: next(x for x in r["table"] if x["model"] == m)  # noqa: E731
    prof = np.array([by(r, "profile")["mae"] for r in runs])
    prof1 = np.mean([by(r, "profile")["mae_lead1"] for r in runs])
    ar1 = np.mean([by(r, "residual_ar")["mae_lead1"] for r in runs])
    out = []
    for i, g in enumerate(runs[0]["guard_rules"]):
        rows = [r["guard_rules"][i] for r in runs]
        assert all((x["rule"], x["ar_leads"]) == (g["rule"], g["ar_leads"]) for x in rows)
        mae = np.array([x["test_mae"] for x in rows])
        row = {"rule": g["rule"], "ar_leads": g["ar_leads"], "mae": float(mae.mean()),
               "mae_lead1": float(np.mean([x["test_mae_lead1"] for x in rows])),
               "val_mae": float(np.mean([x["val_mae"] for x in rows])),
               "ratio_to_profile": (mae / prof).tolist(), "max_ratio_to_profile": float(np.max(mae / prof)),
               "profile_mae_lead1": float(prof1), "residual_ar_mae_lead1": float(ar1),
               "alpha": [x["alpha"] for x in rows], "use_ar": [x["use_ar"] for x in rows]}
        if "test_coverage" in g:
            row["coverage"] = float(np.mean([x["test_coverage"] for x in rows]))
            row["coverage_per_seed"] = [x["test_coverage"] for x in rows]
            row["pinball"] = float(np.mean([x["test_pinball"] for x in rows]))
            for k in INTERVAL_KEYS:
                if f"test_{k}" in g:
                    row[k] = float(np.mean([x[f"test_{k}"] for x in rows]))
                    row[f"{k}_per_seed"] = [x[f"test_{k}"] for x in rows]
        row["goals"] = {"mean_mae_le_profile": row["mae"] <= float(prof.mean()),
                        "no_seed_2pct_worse": row["max_ratio_to_profile"] <= 1.02,
                        "lead1_le_residual_ar": row["mae_lead1"] <= float(ar1) + 1e-12}
        if "coverage" in row:
            row["goals"]["coverage_80_within_0.75_0.85"] = 0.75 <= row["coverage"] <= 0.85
            row["goals"]["coverage_rolling_80_within_0.75_0.85"] = 0.75 <= row["coverage_rolling"] <= 0.85
            if "coverage_aci" in row:
                row["goals"]["coverage_aci_80_within_0.75_0.85"] = 0.75 <= row["coverage_aci"] <= 0.85
        out.append(row)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="config spec, e.g. configs/recycle/elecdemand.py:univariate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--quantiles", type=float, nargs="*", default=[0.1, 0.5, 0.9])
    p.add_argument("--label", default="univariate", help="row label in the report (e.g. 'with weather known')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, as `jaxlab run --set` (repeatable), e.g. dropout=0.1")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    base, _ = load_config(args.config)
    base = apply_overrides(base, args.overrides)
    partial = Path(args.out + ".partial.json")  # resume: the seeds already done, for this same config
    runs = []
    if partial.exists():
        saved = json.loads(partial.read_text())
        if (saved.get("config"), saved.get("quantiles"), saved.get("overrides", [])) == (
                args.config, args.quantiles, args.overrides):
            runs = [r for r in saved["runs"] if r["seed"] in args.seeds]
    t0 = time.perf_counter()
    load = [os.getloadavg()]
    for seed in args.seeds:
        if any(r["seed"] == seed for r in runs):
            print(f"seed {seed}: done before (from {partial})", flush=True)
            continue
        cfg = dataclasses.replace(base, seed=seed, models=ROWS, quantiles=tuple(args.quantiles))
        with tempfile.TemporaryDirectory() as wd:
            s = run(cfg, wd, progress=False)
        runs.append({"seed": seed, "table": s["table"], "guard_alpha": s.get("guard_alpha"),
                     "guard_use_ar": s.get("guard_use_ar"), "guard_rules": s.get("guard_rules"),
                     "guard_alpha_test_oracle": s.get("guard_alpha_test_oracle")})
        write_json(partial, to_jsonable({"config": args.config, "quantiles": args.quantiles,
                                          "overrides": args.overrides, "runs": runs}))
        load.append(os.getloadavg())
        print(f"seed {seed}:\n{format_table(s['table'])}", flush=True)
    runs.sort(key=lambda r: r["seed"])
    by = lambda r, m: next(x for x in r["table"] if x["model"] == m)  # noqa: E731
    mean = {m: {k: float(np.mean([by(r, m)[k] for r in runs])) for k in ("mae", "mae_lead1", "val_mae")}
            for m in ROWS}
    for m in ("recycle", "recycle_guarded"):
        for k in ("pinball", "coverage_raw", "coverage", *INTERVAL_KEYS):
            if k in by(runs[0], m):
                mean[m][k] = float(np.mean([by(r, m)[k] for r in runs]))
    ratio = {m: [by(r, m)["mae"] / by(r, "profile")["mae"] for r in runs] for m in ("recycle", "recycle_guarded")}
    g = "recycle_guarded"
    goals = {
        "guarded_mean_mae_le_profile": mean[g]["mae"] <= mean["profile"]["mae"],
        "guarded_no_seed_2pct_worse_than_profile": max(ratio[g]) <= 1.02,
        "guarded_lead1_le_residual_ar": mean[g]["mae_lead1"] <= mean["residual_ar"]["mae_lead1"],
        "guarded_15pct_better_than_profile": mean[g]["mae"] <= 0.85 * mean["profile"]["mae"],
    }
    if "coverage" in mean[g]:
        goals["coverage_80_within_0.75_0.85"] = 0.75 <= mean[g]["coverage"] <= 0.85
    if "coverage_rolling" in mean[g]:
        goals["coverage_rolling_80_within_0.75_0.85"] = 0.75 <= mean[g]["coverage_rolling"] <= 0.85
    if "coverage_aci" in mean[g]:
        goals["coverage_aci_80_within_0.75_0.85"] = 0.75 <= mean[g]["coverage_aci"] <= 0.85
    per_seed = {k: [by(r, g)[k] for r in runs] for k in ("coverage", "coverage_rolling", "coverage_aci")
                if k in by(runs[0], g)}  # the guarded row's, per seed
    rules = rule_table(runs)
    out = {"config": args.config, "overrides": args.overrides, "label": args.label, "seeds": args.seeds,
           "quantiles": args.quantiles, "config_fields": dataclasses.asdict(base), "mean": mean,
           "ratio_to_profile": ratio, "goals": goals, "guarded_coverage_per_seed": per_seed,
           "guard_rule": base.guard_rule, "guard_ar_leads": base.guard_ar_leads, "guard_rules": rules,
           "runs": runs, "wall_s": time.perf_counter() - t0, "load_average_1_5_15min": load,
           "note": "seeds run one after another on a shared 2-core CPU; wall times are inflated by other jobs",
           "environment": environment_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, to_jsonable(out))
    partial.unlink(missing_ok=True)
    print({m: round(v["mae"], 4) for m, v in mean.items()}, goals, flush=True)
    for r in rules:
        print(r["rule"], r["ar_leads"], round(r["mae"], 4), round(r["max_ratio_to_profile"], 4),
              round(r["mae_lead1"], 4), r.get("coverage"), r["goals"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
