"""Energy of data-parallel training (arXiv 2508.07706): ResNet and FourCastNet's AFNO over a grid of
(devices, global batch, local batch); fit energy = a * device-hours + b per model.

Command:  jaxlab run configs/energy_scaling/grid.py            (smoke: configs/energy_scaling/grid.py:smoke;
          gpu1: the one-GPU slice that scripts/gpu_suite.py runs, gpu1_tiny its CPU stand-in)
          On CPU the grid uses fake devices: XLA_FLAGS=--xla_force_host_platform_device_count=8
          (`jaxlab reproduce` sets it).
Hardware: default: 8 GPUs of one node (ResNet50 on 64x64 generated images, AFNO 256x4 on 64x128x20
          fields, 7 grid points each); smoke: 2 CPU cores with 8 fake devices, tiny widths.
Runtime:  default: not measured (no GPU in this session). smoke: 6 compilations; 92 s wall on the shared
          2-core machine at 43% CPU share, 39 s of CPU time in all, so under 40 s on an idle machine.
Expected: on GPUs, energy about linear in GPU-hours with a model-specific slope (the paper's finding;
          it gives no R^2 or table values). With fake CPU devices the energy is a CPU-time estimate
          (flagged `estimated`): all fake devices share the same 2 cores, so energy follows the CPU work
          and wall time, not the device count, and the fit says nothing about real hardware.
"""

import dataclasses

from jaxlab.methods.energy_scaling import ScalingConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ScalingConfig:
    if arg in (None, "", "default"):
        return ScalingConfig()
    if arg == "smoke":
        return ScalingConfig(
            grid=("1g16l", "2g32G8l", "8g8l"),
            epochs=2, num_train=256, num_test=64,
            resnet="tiny", resnet_width=8, image_size=16, num_classes=4, resnet_lr_per_256=0.8,
            afno_embed_dim=16, afno_depth=1, afno_num_blocks=4, afno_patch_size=4, field_shape=(16, 32),
            field_channels=2, afno_lr=3e-3,
        )
    if arg == "gpu1":
        # The GPU suite's one-GPU slice: local batch 16-256 at global batch 256 and 1024 (accumulation), the
        # same sample budget at every point; the suite runs it in f32 and in bf16 (--set bf16=true).
        return ScalingConfig(grid=tuple(f"1g{g}G{lb}l" for g in (256, 1024) for lb in (16, 32, 64, 128, 256)),
                             epochs=2, num_train=8192, num_test=1024)
    if arg == "gpu1_tiny":
        # The same slice at toy sizes, on one CPU device (the suite's --tiny test).
        return dataclasses.replace(get_config("smoke"), grid=("1g16G8l", "1g16G16l"),
                                   epochs=1, num_train=32, num_test=16)
    raise ValueError(f"unknown argument {arg!r}; use 'smoke', 'gpu1', 'gpu1_tiny' or nothing")
