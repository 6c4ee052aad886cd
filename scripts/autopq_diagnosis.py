"""Why AutoPQ's quantiles score worse than Gaussian residual quantiles: one series, validation split only.

The validation windows are cut in two halves A and B (B starts H windows after A ends, so no target is
shared): lambda_q (a 25-point log grid on U(0.01, 3)) and the Gaussian sigma are fitted on A and scored on
B, so nothing here looks at the test split. Reported per rule (multiplicative, additive, prior) and for
the Gaussian baseline around the same point forecast: CRPS, coverage and width, and diagnostics of the
cINN's samples: the latent norm of the point forecast against that of the truth, the round trip
f^-1(f(y)), the spread of the samples against the point forecast's residuals (robust spread
(q90 - q10) / 2.563, its correlation with |residual|), and the shift of the samples' median.

    PYTHONPATH=. nice -n 10 python scripts/autopq_diagnosis.py --series taylor \
        --forecaster-epochs 50 --out bench/results/autopq/diagnosis/taylor-mlp50.json
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import environment_info, to_jsonable, write_json
from jaxlab.methods.autopq._baselines import gaussian_quantiles, residual_scale
from jaxlab.methods.autopq._cinn import CINN
from jaxlab.methods.autopq._evaluate import SampleScorer, gaussian_crps, quantile_scores
from jaxlab.methods.autopq._forecasters import ForecasterTraining, fit_forecaster
from jaxlab.methods.autopq._sampling import QUANTILES, latent, perturb, samples_from_latent, standard_noise
from jaxlab.methods.autopq._train import CINNTraining, fit_cinn
from jaxlab.methods.autopq._windows import load_windows

Z80 = 2 * 1.2815515655446004


def smooth(x: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of ``k`` (odd) steps along the last axis, edges reflected; ``k = 1``: ``x``."""
    if k <= 1:
        return np.asarray(x)
    if k % 2 == 0:
        raise ValueError(f"--smooth needs an odd number of steps, got {k}")
    r = k // 2
    pad = np.pad(np.asarray(x, np.float64), [(0, 0)] * (x.ndim - 1) + [(r, r)], mode="reflect")
    return np.stack([pad[..., i : i + x.shape[-1]] for i in range(k)]).mean(0)


def roughness(x: np.ndarray) -> float:
    """RMS second difference along the horizon (how jagged the curves are)."""
    return float(np.sqrt(np.mean(np.diff(x, n=2, axis=-1) ** 2)))


def write_result(out: dict, path, script: str, argv, t0: float, load0) -> None:
    """Adds wall time, load, the command and the environment to ``out`` and writes it as JSON to ``path``."""
    out["wall_s"] = time.perf_counter() - t0
    out["loadavg_start"], out["loadavg_end"] = load0, os.getloadavg()
    out["command"] = f"python scripts/{script} " + " ".join(argv if argv is not None else os.sys.argv[1:])
    out["environment"] = environment_info()
    write_json(path, to_jsonable(out))
    print(f"wrote {path} ({out['wall_s']:.0f} s)")


def with_history(d, length):
    """The windows with the point forecasters' history cut to its last ``length`` steps."""
    if length is None:
        return d
    import dataclasses

    return d._replace(spec=dataclasses.replace(d.spec, history=length),
                      splits={k: w._replace(history=w.history[:, -length:]) for k, w in d.splits.items()})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", default="taylor")
    p.add_argument("--forecaster", default="mlp")
    p.add_argument("--forecaster-epochs", type=int, default=None, help="default: ForecasterTraining's")
    p.add_argument("--cinn-epochs", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smooth", type=int, default=1,
                   help="a diagnostic: centred moving average of this many steps over the forecast's horizon")
    p.add_argument("--history", type=int, default=None,
                   help="forecasters' history length in steps (default: the series' own)")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    d = with_history(load_windows(args.series), args.history)
    va, tr = d.splits["val"], d.splits["train"]
    h = d.spec.horizon
    off, sc, lim = float(d.scaler.offset), float(d.scaler.scale), d.spec.limits
    units = lambda x: np.clip(np.asarray(x, np.float64) * sc + off, lim[0], lim[1])  # noqa: E731
    key = jax.random.key(args.seed)
    k_cinn, k_fc, k_a, k_b = jax.random.split(key, 4)
    cinn = fit_cinn(tr.target, tr.cond, key=k_cinn, model=CINN(horizon=h),
                    settings=CINNTraining(epochs=args.cinn_epochs))
    t_cinn = time.perf_counter() - t0
    point = fit_forecaster(args.forecaster, None, d, key=k_fc, settings=ForecasterTraining() if args.forecaster_epochs is None else
                           ForecasterTraining(max_epochs=args.forecaster_epochs))
    fc = ((units(smooth(point(va.history, va.future), args.smooth)) - off) / sc).astype(np.float32)
    n = va.target.shape[0]
    a_idx, b_idx = np.arange(0, n // 2, 2), np.arange(n // 2 + h, n, 2)
    out: dict = {"series": args.series, "forecaster": args.forecaster, "forecaster_max_epochs": args.forecaster_epochs,
                 "forecaster_epochs_run": point.epochs, "forecaster_best_epoch": point.best_epoch,
                 "cinn_epochs": args.cinn_epochs, "smooth": args.smooth, "history": args.history, "cinn_train_s": t_cinn,
                 "cinn_holdout_nll_every_10_epochs": cinn.holdout_loss[9::10].tolist(),
                 "windows_A": int(a_idx.size), "windows_B": int(b_idx.size),
                 "val_mae_A": float(np.mean(np.abs(units(fc[a_idx]) - units(va.target[a_idx])))),
                 "val_mae_B": float(np.mean(np.abs(units(fc[b_idx]) - units(va.target[b_idx]))))}
    # latent geometry and the round trip, on B
    f_b, c_b, y_b = fc[b_idx], va.cond[b_idx], va.target[b_idx]
    z_true = np.asarray(latent(cinn.model, cinn.params, y_b, c_b))
    z_fc = np.asarray(latent(cinn.model, cinn.params, f_b, c_b))
    back = np.asarray(cinn.model.apply(cinn.params, jnp.asarray(z_true), jnp.asarray(c_b), method=CINN.inverse)[0])
    out["latent"] = {"z_true_rms": float(np.sqrt(np.mean(z_true**2))), "z_forecast_rms": float(np.sqrt(np.mean(z_fc**2))),
                     "z_true_abs_median": float(np.median(np.abs(z_true))),
                     "z_forecast_abs_median": float(np.median(np.abs(z_fc))),
                     "round_trip_max_abs_scaled": float(np.max(np.abs(back - y_b)))}
    out["roughness_B"] = {"forecast": roughness(units(f_b)), "truth": roughness(units(y_b))}
    out["val_residual_rms_B_scaled"] = float(np.sqrt(np.mean((f_b - y_b) ** 2)))
    scorer = SampleScorer(cinn.model, off, sc, lim, QUANTILES)
    noise_a = np.asarray(standard_noise(k_a, (a_idx.size, h), 100))
    noise_b = np.asarray(standard_noise(k_b, (b_idx.size, h), 100))
    grid = np.exp(np.linspace(np.log(0.01), np.log(3.0), 25))
    y_units = units(y_b)
    abs_res = np.abs(units(f_b) - y_units)
    for mode in ("multiplicative", "additive", "prior"):
        if mode == "prior":
            lam, crps_a = 1.0, None
        else:
            curve = [scorer.crps(cinn.params, fc[a_idx], va.cond[a_idx], noise_a, va.target[a_idx], float(v), mode)
                     for v in grid]
            lam, crps_a = float(grid[int(np.argmin(curve))]), float(min(curve))
        crps_b, q = scorer.evaluate(cinn.params, f_b, c_b, noise_b, y_b, lam, mode)
        z_s = perturb(jnp.asarray(z_fc), jnp.asarray(noise_b), lam, mode)
        s = units(samples_from_latent(cinn.model, cinn.params, z_s, jnp.asarray(c_b)))
        q10, q50, q90 = np.quantile(s, [0.1, 0.5, 0.9], axis=-1)
        spread = (q90 - q10) / Z80
        step_spread, step_rmse = np.median(spread, 0), np.sqrt(np.mean((units(f_b) - y_units) ** 2, 0))
        out[mode + "_per_step"] = {"robust_sd_median": step_spread.tolist(), "point_rmse": step_rmse.tolist(),
                                   "corr_over_steps": float(np.corrcoef(step_spread, step_rmse)[0, 1])}
        out[mode] = {"lambda_q": lam, "crps_samples_A": crps_a, "crps_samples_B": crps_b,
                     **quantile_scores(q, y_units, QUANTILES),
                     "robust_sd_median": float(np.median(spread)), "sd_rms": float(np.sqrt(np.mean(s.std(-1) ** 2))),
                     "corr_robust_sd_abs_residual": float(np.corrcoef(spread.ravel(), abs_res.ravel())[0, 1]),
                     "median_shift_rms": float(np.sqrt(np.mean((q50 - units(f_b)) ** 2)))}
        print(mode, out[mode + "_per_step"]["corr_over_steps"],
              {k: out[mode][k] for k in ("lambda_q", "crps_quantile", "coverage_80", "robust_sd_median")},
              flush=True)
    sigma = residual_scale(fc[a_idx], va.target[a_idx])
    q = units(gaussian_quantiles(f_b, sigma, QUANTILES))
    out["gaussian"] = {**quantile_scores(q, y_units, QUANTILES),
                       "crps_samples_B": gaussian_crps(units(f_b), sigma * sc, y_units),
                       "sigma_median": float(np.median(sigma * sc))}
    print("gaussian", {k: out["gaussian"][k] for k in ("crps_quantile", "coverage_80")}, flush=True)
    out["gap_multiplicative_vs_gaussian"] = out["multiplicative"]["crps_quantile"] / out["gaussian"]["crps_quantile"] - 1
    write_result(out, args.out, "autopq_diagnosis.py", argv, t0, load0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
