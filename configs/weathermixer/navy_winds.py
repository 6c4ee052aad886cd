"""WeatherMixer + Jigsaw on real data: monthly surface winds (US Navy FNOC, 1982-1992, 2.5 degrees).

Data: Debian `ferret-datasets` (`apt-get install ferret-datasets`, or `apt-get download` + `dpkg -x`
and JAXLAB_DATA=DIR/usr/share/ferret-vis/data). Grid 72 x 144 (the 90N row dropped), state = (U, V)
at months t and t-1 (4 channels), target = month t+1; train on targets before 1991, test on 1991-92.

Command:  XLA_FLAGS=--xla_force_host_platform_device_count=8 jaxlab run configs/weathermixer/navy_winds.py
          (mesh (2, 2, 2): two model instances, each split 2 x 2 over latitude rows x channels)
Hardware: CPU (2 cores) or one GPU (then --set mesh=1,1,1).
Runtime:  about 5 min on 2 shared CPU cores (measured 282 s; quick: about 1 min).
Expected: one-step lat-weighted test RMSE below persistence (normalised units, mean over U and V).
          Measured: 0.546 vs 0.604 (U 2.19 m/s, V 1.62 m/s); 6-month rollout 0.60 vs 1.06. It overfits
          the 106 training months (train MSE 0.03; the best test RMSE, 0.519, is at step 100).
          quick (mesh (1, 2, 2), 120 steps): 0.52 vs 0.60 (U 2.10, V 1.54 m/s); lead 3: 0.72 vs 0.89.
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
