"""AB-training of a CIFAR-style VGG16 (BatchNorm, a linear classifier on the 512 flattened features; 14.7M
parameters) on Fashion-MNIST padded to 32x32, 8 devices as 2 nodes x 4, the reference's VGG16 CIFAR-10 schedule (W = 4330, S = 759, F = 60, rebound 267,
15,000 steps, global batch 512, AdamW lr 3e-3, wd 0.1) with the `with-stale` sync (groups train A and B;
not comparable to the 44.14:1, which is for timm's head). First conv and classifier stay full rank.

Command:  PYTHONPATH=. python -m jaxlab run configs/abtrain/vgg16_cifar.py --workdir runs/abtrain_vgg16_cifar
          (GPU-scale; :cpu is width 1/8 for 300 steps; :smoke is the test's few-step run)
Hardware: the default needs 8 accelerators (2 nodes x 4, as the reference); on CPU set
          XLA_FLAGS=--xla_force_host_platform_device_count=8 and use :cpu or :smoke.
Runtime:  not measured here (no GPU in this session); :smoke takes a few compile-bound minutes on 2 CPU cores.
Expected: accuracy close to data parallelism (3 seeds on a GPU); per-layer compression of the convolutions (the
          paper reports none for this head).
"""

import dataclasses

from jaxlab.methods.abtrain import ABTrainConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ABTrainConfig:
    config = ABTrainConfig(model="vgg16_cifar", width=1.0, total_steps=15000, warmup_steps=4330, sync_every=759,
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
        return dataclasses.replace(config, dataset="synthetic", width=1 / 32, total_steps=4, warmup_steps=1,
                                   sync_every=2, full_steps=1, lr_rebound_steps=1, global_batch=32, lr_warmup_steps=1,
                                   lr_cooldown_steps=1, train_size=64, test_size=32, eval_batch=32, seeds=(0,), baseline=False,
                                   checkpoint_every=0, log_every=1)
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'smoke' or nothing")
