"""WeatherMixer at the paper's C1 widths (D = 4320, 3 blocks) for GPUs: shapes and sharding only.

The paper (arXiv 2507.05753) trains on ERA5 0.25 degrees (720 x 1440, 72 channels padded from 69,
patch 60: 17,280 tokens, token hidden 8,640, channel hidden 4,320) with Adam 1e-4 (embedding and
recovery 2e-5), clip 1, batch 1 per model instance. ERA5 at this size ships in no package, so this
config trains the same architecture on synthetic travelling waves at the full resolution and channel
count (a throughput and memory run, not an accuracy run). Jigsaw 2 x 2 per instance, data parallel
over the remaining GPUs.

Command:  jaxlab run configs/weathermixer/paper_c1.py   (8 GPUs: --set mesh=2,2,2 --set batch_size=2)
          (`paper_c1.py:c4` for C4: D = 10352, token hidden 17,280, the multi-node scaling case)
Hardware: 4 or more GPUs with >= 40 GB each (about 2.3 B parameters with Adam: ~37 GB over 4 GPUs
          for parameters and optimiser state alone); not runnable on CPU.
Runtime:  not measured here (no GPU in this session).
Expected: training loss decreasing; per-GPU memory about 1/4 of a one-GPU model.
"""

from jaxlab.methods.weathermixer import WeatherMixerConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> WeatherMixerConfig:
    config = WeatherMixerConfig(
        dataset="synthetic", grid=(720, 1440), channels=72, synthetic_steps=512, patch=60, hidden=4320,
        token_hidden=8640, channel_hidden=4320, num_blocks=3, linear_residual=True, mesh=(1, 2, 2),
        shrink_mesh=False, batch_size=1, learning_rate=1e-4, io_learning_rate=2e-5, clip_norm=1.0,
        num_steps=2000, eval_every=500, checkpoint_every=500, log_every=10, rollout_steps=4,
    )
    if arg in (None, "", "default", "c1"):
        return config
    if arg == "c4":
        import dataclasses

        return dataclasses.replace(config, hidden=10352, token_hidden=17280, channel_hidden=10352)
    raise ValueError(f"unknown argument {arg!r}; use 'c1' (default) or 'c4'")
