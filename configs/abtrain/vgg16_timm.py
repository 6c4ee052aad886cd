"""AB-training of timm's VGG16 (134.3M parameters at width 1; fc1 alone 102.8M) on Fashion-MNIST padded to 32x32,
8 devices as 2 nodes x 4, the reference's VGG16 CIFAR-10 schedule (W = 4330, S = 759, F = 60, rebound 267,
15,000 steps, global batch 512, AdamW lr 3e-3, wd 0.1) and its final sync mode `only-b` (A = U is never trained;
this is the run behind the paper's 44.14:1). First conv and classifier stay full rank. No BatchNorm (timm vgg16).

Command:  PYTHONPATH=. python -m jaxlab run configs/abtrain/vgg16_timm.py --workdir runs/abtrain_vgg16_timm
          (GPU-scale; :cpu is width 1/8 for 300 steps; :smoke is the test's few-step run)
Hardware: the default needs 8 accelerators (2 nodes x 4, as the reference); on CPU set
          XLA_FLAGS=--xla_force_host_platform_device_count=8 and use :cpu or :smoke.
Runtime:  not measured here (no GPU in this session); :smoke takes a few compile-bound minutes on 2 CPU cores.
Expected: compression of fc1 far below the convolutions'; total compression to compare with 44.14:1 (note the
          dataset differs: Fashion-MNIST instead of CIFAR-10).
"""

import dataclasses

from jaxlab.methods.abtrain import ABTrainConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ABTrainConfig:
    config = ABTrainConfig(model="vgg16_timm", width=1.0, total_steps=15000, warmup_steps=4330, sync_every=759,
                           full_steps=60, lr_rebound_steps=267, global_batch=512, lr=3e-3, weight_decay=0.1,
                           lr_warmup_steps=1000, lr_cooldown_steps=1000, sync_mode="only-b", seeds=(0,),
                           checkpoint_every=1000)
    if arg in (None, "", "default"):
        return config
    if arg == "cpu":
        return dataclasses.replace(config, width=1 / 8, total_steps=300, warmup_steps=87, sync_every=15,
                                   full_steps=1, lr_rebound_steps=5, global_batch=128, lr_warmup_steps=20,
                                   lr_cooldown_steps=20, checkpoint_every=100)
    if arg == "smoke":
        return dataclasses.replace(config, dataset="synthetic", width=1 / 32, total_steps=4, warmup_steps=1,
                                   sync_every=2, full_steps=1, lr_rebound_steps=1, global_batch=32, lr_warmup_steps=1,
                                   lr_cooldown_steps=1, train_size=64, test_size=32, eval_batch=32, baseline=False,
                                   checkpoint_every=0, log_every=1)
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'smoke' or nothing")
