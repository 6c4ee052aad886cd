"""ReCycle over several seeds on one config: the guarded forecast and the residual-AR row against the profile.

Runs :func:`jaxlab.methods.recycle.run` once per seed (sequentially: each run trains one small model, and
the profile, guard and AR rows are shared code; the seeds are not vmapped) with the rows ``recycle``,
``recycle_guarded``, ``profile``, ``residual_ar`` and ``persistence`` and quantile heads {0.1, 0.5, 0.9}, and
writes the per-seed tables, the means and the issue's goal checks to one JSON file.

    PYTHONPATH=. nice -n 10 python scripts/recycle_seeds.py configs/recycle/elecdemand.py:univariate \\
        --seeds 0 1 2 3 4 --out bench/results/recycle_seeds_elecdemand_univariate.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jaxlab.core import environment_info, load_config, to_jsonable, write_json
from jaxlab.methods.recycle import format_table, run

ROWS = ("recycle", "recycle_guarded", "profile", "residual_ar", "persistence")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="config spec, e.g. configs/recycle/elecdemand.py:univariate")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--quantiles", type=float, nargs="*", default=[0.1, 0.5, 0.9])
    p.add_argument("--label", default="univariate", help="row label in the report (e.g. 'with weather known')")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    base, _ = load_config(args.config)
    runs = []
    t0 = time.perf_counter()
    for seed in args.seeds:
        cfg = dataclasses.replace(base, seed=seed, models=ROWS, quantiles=tuple(args.quantiles))
        with tempfile.TemporaryDirectory() as wd:
            s = run(cfg, wd, progress=False)
        runs.append({"seed": seed, "table": s["table"], "guard_alpha": s.get("guard_alpha")})
        print(f"seed {seed}:\n{format_table(s['table'])}", flush=True)
    by = lambda r, m: next(x for x in r["table"] if x["model"] == m)  # noqa: E731
    mean = {m: {k: float(np.mean([by(r, m)[k] for r in runs])) for k in ("mae", "mae_lead1", "val_mae")}
            for m in ROWS}
    for m in ("recycle", "recycle_guarded"):
        for k in ("pinball", "coverage_raw", "coverage"):
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
    out = {"config": args.config, "label": args.label, "seeds": args.seeds, "quantiles": args.quantiles,
           "config_fields": dataclasses.asdict(base), "mean": mean, "ratio_to_profile": ratio, "goals": goals,
           "runs": runs, "wall_s": time.perf_counter() - t0,
           "note": "seeds run one after another on a shared 2-core CPU; wall times are inflated by other jobs",
           "environment": environment_info()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, to_jsonable(out))
    print({m: round(v["mae"], 4) for m, v in mean.items()}, goals, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
