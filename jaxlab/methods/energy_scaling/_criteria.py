"""Pass criteria of the one-GPU slice of the scaling study (the GPU suite's ``energy_scaling`` check).

On one device, every grid point trains the same number of samples, so the points differ only in
local batch, accumulation and precision. The paper's finding, energy linear in GPU-hours with a
model-specific slope, becomes three checks per precision:
- the fit ``E = a h + b`` has R^2 >= 0.95 for each model;
- the slopes of the two models differ by more than 10% (of the smaller);
- the energy per GPU-hour (the mean power) rises with the samples per GPU-hour: the better a point
  uses the GPU, the more power it draws (Spearman rank correlation >= 0.8 per model).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def spearman(x, y) -> float:
    """Spearman's rank correlation (scipy.stats.spearmanr)."""
    import scipy.stats

    if len(x) < 3:
        return float("nan")
    return float(scipy.stats.spearmanr(np.asarray(x, float), np.asarray(y, float)).statistic)


def slice_criteria(summary: dict[str, Any], *, r2_min: float = 0.95, slope_gap: float = 0.10,
                   spearman_min: float = 0.8) -> dict[str, Any]:
    """The three checks on a ``run`` summary of a one-device grid (see the module docstring)."""
    fits = summary["fits"]
    rows = summary["table"]
    out: dict[str, Any] = {"estimated": summary.get("estimated"), "per_model": {}}
    for model, fit in fits.items():
        rs = [r for r in rows if r["model"] == model]
        rho = spearman([r["samples_per_device_hour"] for r in rs], [r["energy_per_device_hour_j"] for r in rs])
        out["per_model"][model] = {"slope_j_per_gpu_hour": fit["a_j_per_device_hour"], "r2": fit["r2"],
                                   "spearman_power_vs_throughput": rho, "points": len(rs),
                                   "r2_ok": fit["r2"] >= r2_min, "spearman_ok": rho >= spearman_min}
    slopes = [f["a_j_per_device_hour"] for f in fits.values()]
    if len(slopes) == 2 and min(abs(s) for s in slopes) > 0:
        gap = abs(slopes[0] - slopes[1]) / min(abs(s) for s in slopes)
    else:
        gap = float("nan")
    out["slope_gap"] = gap
    out["slopes_differ_ok"] = bool(gap > slope_gap)
    out["passed"] = bool(out["slopes_differ_ok"] and all(m["r2_ok"] and m["spearman_ok"]
                                                        for m in out["per_model"].values()))
    return out
