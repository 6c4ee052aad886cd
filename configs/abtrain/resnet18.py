"""AB-training of ResNet-18 (CIFAR stem, 11.2M parameters) on Fashion-MNIST padded to 32x32, 8 devices as 2 nodes x 4,
`with-stale` sync as the reference's ImageNet ResNet configs, its CIFAR-sized schedule (the VGG16 one: W = 4330,
S = 759, F = 60, rebound 267, 15,000 steps, global batch 512, AdamW lr 3e-3, wd 0.1). The stem conv and the
classifier stay full rank (the reference's full_rank_sync_names conv1, fc).

Command:  PYTHONPATH=. python -m jaxlab run configs/abtrain/resnet18.py --workdir runs/abtrain_resnet18
          (GPU-scale; :cpu is width 1/8 for 300 steps; :smoke is the test's few-step run)
Hardware: the default needs 8 accelerators; on CPU set XLA_FLAGS=--xla_force_host_platform_device_count=8.
Runtime:  not measured here (no GPU in this session); :smoke takes a few compile-bound minutes on 2 CPU cores.
Expected: accuracy close to data parallelism; per-layer compression of the 3x3 convolutions.
"""

import dataclasses

from jaxlab.methods.abtrain import ABTrainConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ABTrainConfig:
    config = ABTrainConfig(model="resnet18", width=1.0, total_steps=15000, warmup_steps=4330, sync_every=759,
                           full_steps=60, lr_rebound_steps=267, global_batch=512, lr=3e-3, weight_decay=0.1,
                           lr_warmup_steps=1000, lr_cooldown_steps=1000, sync_mode="with-stale", seeds=(0, 1, 2),
                           checkpoint_every=1000)
    if arg in (None, "", "default"):
        return config
    if arg == "cpu":
        return dataclasses.replace(config, width=1 / 8, total_steps=300, warmup_steps=87, sync_every=15,
                                   full_steps=1, lr_rebound_steps=5, global_batch=128, lr_warmup_steps=20,
                                   lr_cooldown_steps=20, seeds=(0,), checkpoint_every=100)
    if arg == "smoke":
        return dataclasses.replace(config, dataset="synthetic", width=1 / 16, total_steps=4, warmup_steps=1,
                                   sync_every=2, full_steps=1, lr_rebound_steps=1, global_batch=32, lr_warmup_steps=1,
                                   lr_cooldown_steps=1, train_size=64, test_size=32, eval_batch=32, seeds=(0,),
                                   baseline=False, checkpoint_every=0, log_every=1)
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'smoke' or nothing")
