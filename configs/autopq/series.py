"""AutoPQ (arXiv 2412.00419) on four energy-related series: cINN quantiles from point forecasts, default
mode (lambda_q tuned by TPE) and advanced mode (forecaster, hyperparameters and nested lambda_q, pruned),
against Gaussian residual quantiles, split-conformal quantiles, linear quantile regression, the cINN at
lambda_q = 0.1 and the additive-noise rule; with the searches' time and energy.

Data:     elecdemand (Victoria, half-hourly 2014, H = 48, temperature), taylor (England & Wales,
          half-hourly summer 2000, H = 48), ISLP Bikeshare (Washington DC, hourly 2011, H = 24, temp, hum,
          windspeed, weathersit; `pip install --no-deps islp==0.6.0`) and TMY3 GHI (Greensboro NC, H = 24,
          cloud cover, dry-bulb temperature, ETR; its months come from different years, so the series
          breaks at every month boundary). Splits as in the reference: test = last 20%, validation = last
          30% of the rest; a forecast window at every step.
Command:  jaxlab run configs/autopq/series.py --workdir runs/autopq           (all four, both modes)
          jaxlab run configs/autopq/series.py:default_only                    (no advanced mode)
          jaxlab run configs/autopq/series.py:cinn400                         (ablation: cINN 400 epochs)
          jaxlab run configs/autopq/series.py:quick                           (TMY3 GHI, tiny budgets)
          add --set series=bikeshare, --set advanced_time_s=300 etc. for other choices
Hardware: CPU (2 cores shared with other jobs); no accelerator needed.
Runtime:  quick: under a minute of CPU time. default_only (measured 2026-12-02, 2 shared cores, load 1-17): 1368 s
          for all four series. Per series, cINN 20-54 s; default forecaster and lambda_q search 71-227 s; the
          additive search about as long again; quantile regression 28-100 s. The full run adds the advanced
          search's time budget per series (it ran with --set advanced_time_s=300 --set additive=false).
Expected: measured in bench/results/autopq/default-cpu-v2 (the default_only run with the forecasters' cap of
          200 epochs; only taylor's MLP reached the old cap of 50, so only taylor was recomputed). Test CRPS
          is 10-18% worse than the Gaussian residual baseline on every series (mean -13.4%). Quantile
          regression beats AutoPQ on all four. Tuned lambda_q beats lambda_q = 0.1 by 6-22% (mean 12.2%).
          The 80% coverage is 0.42-0.69. Why: bench/results/autopq/diagnosis/README.md.
"""

import dataclasses

from jaxlab.methods.autopq import AutoPQConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> AutoPQConfig:
    # advanced mode per series: at most 20 outer trials or 15 minutes of wall time, inner searches of at most
    # 100 trials (plateau stop): sized for 2 shared CPU cores
    config = AutoPQConfig(advanced_trials=20, advanced_time_s=900.0, inner_trials=100)
    if arg in (None, "", "default"):
        return config
    if arg == "default_only":
        return dataclasses.replace(config, advanced=False)
    if arg == "cinn400":
        return dataclasses.replace(config, advanced=False, cinn_epochs=400)
    if arg == "quick":
        return dataclasses.replace(config, series=("tmy3_ghi",), cinn_epochs=20, forecaster_epochs=5,
                                   default_trials=8, search_windows=256, qr_windows=100, advanced_forecasters=("persistence", "dlinear"),
                                   advanced_trials=3, advanced_time_s=None, inner_trials=5, pruner_min_resource=2)
    raise ValueError(f"unknown argument {arg!r}; use 'quick', 'default_only', 'cinn400' or nothing")
