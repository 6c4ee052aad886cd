"""AutoPQ's default point forecasters on one series, scored on the validation split only.

For each forecaster (and each MLP epoch cap): validation MAE and RMSE in series units, the epochs run
and the best (early-stopped) epoch, and the roughness of the forecast curves against that of the
truth (RMS of the second difference along the horizon): an MSE-trained forecast is smoother than the
curves the cINN was trained on.

    PYTHONPATH=. nice -n 10 python scripts/autopq_forecasters.py --series elecdemand --mlp-epochs 50 200 \
        --out bench/results/autopq/diagnosis/elecdemand-forecasters.json
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

from jaxlab.methods.autopq._forecasters import ForecasterTraining, fit_forecaster
from jaxlab.methods.autopq._windows import load_windows

from autopq_diagnosis import roughness, with_history, write_result  # the sibling script (scripts/ is sys.path[0] when run as a script)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", default="elecdemand")
    p.add_argument("--untrained", nargs="*", default=["persistence", "profile"])
    p.add_argument("--mlp-epochs", type=int, nargs="+", default=[50, 200])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--history", type=int, default=None,
                   help="forecasters' history length in steps (default: the series' own)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t0, load0 = time.perf_counter(), os.getloadavg()
    d = with_history(load_windows(args.series), args.history)
    va = d.splits["val"]
    off, sc, lim = float(d.scaler.offset), float(d.scaler.scale), d.spec.limits
    units = lambda x: np.clip(np.asarray(x, np.float64) * sc + off, lim[0], lim[1])  # noqa: E731
    y = units(va.target)
    out: dict = {"series": args.series, "val_windows": int(y.shape[0]), "truth_roughness": roughness(y), "rows": []}
    runs = [(u, None) for u in args.untrained] + [("mlp", e) for e in args.mlp_epochs]
    for name, epochs in runs:
        t = time.perf_counter()
        settings = ForecasterTraining(max_epochs=epochs or 1)
        point = fit_forecaster(name, None, d, key=jax.random.key(args.seed), settings=settings)
        f = units(point(va.history, va.future))
        row = {"forecaster": name, "max_epochs": epochs, "epochs_run": point.epochs, "best_epoch": point.best_epoch,
               "val_mae": float(np.mean(np.abs(f - y))), "val_rmse": float(np.sqrt(np.mean((f - y) ** 2))),
               "forecast_roughness": roughness(f), "fit_s": time.perf_counter() - t,
               "holdout_mse_curve": list(point.holdout_loss)}
        out["rows"].append(row)
        print({k: row[k] for k in ("forecaster", "max_epochs", "epochs_run", "best_epoch", "val_mae",
                                   "forecast_roughness")}, flush=True)
    write_result(out, args.out, "autopq_forecasters.py", argv, t0, load0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
