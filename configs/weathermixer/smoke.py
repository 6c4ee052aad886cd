"""WeatherMixer + Jigsaw smoke run: synthetic travelling waves on a 16 x 32 grid, mesh (1, 2, 2).

Command:  jaxlab run configs/weathermixer/smoke.py   (8 fake CPU devices under `jaxlab reproduce`;
          with a single device the mesh falls back to (1, 1, 1); --set mesh=2,2,2 for data parallelism too)
Hardware: CPU (2 cores).
Runtime:  about 30-60 s on 2 CPU cores, mostly compilation.
Expected: one-step test lat-weighted RMSE about 0.1 (normalised units) against 0.25 for persistence;
          at lead 4 about 0.32 against 0.92. The head adds the prediction to the state (the reference's
          `add` option): the paper's LayerNorm-based linear residual normalises away the amplitude of
          each grid point when there are only a few channels (0.30 here).
"""

from jaxlab.methods.weathermixer import WeatherMixerConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> WeatherMixerConfig:
    config = WeatherMixerConfig(
        dataset="synthetic", grid=(16, 32), channels=4, synthetic_steps=128, patch=4, hidden=32,
        token_hidden=64, channel_hidden=32, num_blocks=2, linear_residual=False, mesh=(1, 2, 2), batch_size=4,
        learning_rate=3e-3, io_learning_rate=3e-3, num_steps=150, eval_every=50, checkpoint_every=50,
        log_every=10, rollout_steps=4,
    )
    if arg in (None, "", "default", "smoke", "quick"):
        return config
    if arg == "tiny":  # for tests: a handful of steps
        return WeatherMixerConfig(
            dataset="synthetic", grid=(8, 16), channels=4, synthetic_steps=24, patch=4, hidden=16,
            token_hidden=16, channel_hidden=16, num_blocks=1, linear_residual=False, mesh=(1, 2, 2), batch_size=2,
            num_steps=2, eval_every=0, checkpoint_every=0, log_every=1, rollout_steps=0,
        )
    raise ValueError(f"unknown argument {arg!r}; use 'smoke' (default) or 'tiny'")
