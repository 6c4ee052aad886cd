"""Checks the issue's diagnosis of ReCycle on one series: season shift, the heat-wave scale, the AR(1) lead-1 gain.

    PYTHONPATH=. python scripts/recycle_diagnosis.py --out bench/results/recycle_diagnosis_elecdemand.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from jaxlab import timeseries as ts
from jaxlab.core import environment_info, to_jsonable, write_json
from jaxlab.methods.recycle import RecycleConfig, prepare_windows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="elecdemand")
    p.add_argument("--history", type=int, default=7)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    prep = prepare_windows(RecycleConfig(dataset=args.dataset, history=args.history, horizon=7))
    cd, sp = prep["data"], prep["splits"]
    sc = cd.scaler
    out: dict = {"dataset": args.dataset, "windows": {k: int(v["target"].shape[0]) for k, v in sp.items()},
                 "units": cd.series.units}
    for name, (a, b) in cd.bounds.items():
        raw = sc.inverse(cd.cycles[a:b])
        out[f"{name}_range"] = float(np.nanmax(raw) - np.nanmin(raw))
        s = sp[name]
        out[f"{name}_mean_residual"] = float(np.mean((s["target"] - s["fc_profile"]) * sc.scale))
    tr = sp["train"]
    last = lambda s: s["hist"][:, -1] - s["hist_profile"][:, -1]  # noqa: E731
    a, b = ts.fit_residual_ar(last(tr), tr["target"] - tr["fc_profile"])
    out["ar_coefficients"] = {"a": a.tolist(), "b": b.tolist()}
    te = sp["test"]
    truth = sc.inverse(te["target"].astype(np.float64))
    prof = sc.inverse(te["fc_profile"].astype(np.float64))
    ar = sc.inverse(te["fc_profile"] + ts.residual_ar_forecast(last(te), a, b))
    out["test_mae_per_lead_profile"] = np.mean(np.abs(prof - truth), axis=(0, 2)).tolist()
    out["test_mae_per_lead_residual_ar"] = np.mean(np.abs(ar - truth), axis=(0, 2)).tolist()
    out["environment"] = environment_info()
    write_json(args.out, to_jsonable(out))
    print({k: v for k, v in out.items() if k != "environment"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
