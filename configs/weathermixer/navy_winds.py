"""WeatherMixer + Jigsaw on real data: monthly surface winds (US Navy FNOC, 1982-1992, 2.5 degrees).

Data: Debian `ferret-datasets` (`apt-get install ferret-datasets`, or `apt-get download` + `dpkg -x`
and JAXLAB_DATA=DIR/usr/share/ferret-vis/data). Grid 72 x 144 (the 90N row dropped), state = (U, V)
at months t and t-1 (4 channels), target = month t+1; train on targets before 1991, test on 1991-92.

Command:  XLA_FLAGS=--xla_force_host_platform_device_count=8 jaxlab run configs/weathermixer/navy_winds.py
          (mesh (2, 2, 2): two model instances, each split 2 x 2 over latitude rows x channels)
Hardware: CPU (2 cores) or one GPU (then --set mesh=1,1,1).
Runtime:  about 5-10 min on 2 CPU cores (quick: about 1 min of compute, 30 s CPU).
Expected: one-step lat-weighted test RMSE below persistence; quick (mesh (1, 2, 2), 120 steps)
          measured 0.52 vs 0.60 for persistence (normalised units, mean over U and V), U 2.10 m/s,
          V 1.54 m/s; at lead 3 months 0.72 vs 0.89. 106 training months are few: expect overfitting.
"""

from jaxlab.methods.weathermixer import WeatherMixerConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> WeatherMixerConfig:
    config = WeatherMixerConfig(
        dataset="navy_winds", patch=6, hidden=64, token_hidden=864, channel_hidden=64, num_blocks=2,
        linear_residual=False, mesh=(2, 2, 2), batch_size=4, learning_rate=1e-3, io_learning_rate=1e-3,
        num_steps=600, eval_every=100, checkpoint_every=200, log_every=25, rollout_steps=6,
    )
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        return WeatherMixerConfig(
            dataset="navy_winds", patch=6, hidden=32, token_hidden=216, channel_hidden=32, num_blocks=1,
            linear_residual=False, mesh=(1, 2, 2), batch_size=4, learning_rate=2e-3, io_learning_rate=2e-3,
            num_steps=120, eval_every=60, checkpoint_every=60, log_every=10, rollout_steps=3,
        )
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
