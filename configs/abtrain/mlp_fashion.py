"""AB-training vs data parallelism: MLP 784-1024-1024-10 on Fashion-MNIST, 8 devices as 2 nodes x 4 (arXiv 2405.01067).

The VGG16 CIFAR-10 schedule of the reference (2 nodes: W = 4330, S = 759, F = 60, rebound 267 over 15,000
steps) scaled to T = 3000: W = 866, S = 152, F = 12, rebound 53. Groups of 4 devices (one node each): group 0
trains A, group 1 trains B, gradients all-reduced inside the group only; `with-stale` sync; truncation
s_i > 0.15 s_1; factor moments sliced on a rank change (the reference's rule). AdamW (lr 1e-3, wd 0.1, b 0.9/0.999)
with 200 warm-up and 200 cool-down steps around a cosine, grad-norm clip 1, label smoothing 0.1, global batch
128. The head (1024 -> 10) stays full rank. Data parallelism: the same trainer with W = T, same seeds, batches
and initialisation. Traffic: bytes of every compiled program (jaxlab.parallel.collective_stats), split into
intra- and inter-node bytes with node_size 4 (ring model, see jaxlab.parallel.node_traffic).

Command:  PYTHONPATH=. python -m jaxlab run configs/abtrain/mlp_fashion.py --workdir runs/abtrain_mlp
          (quick, for `jaxlab reproduce --quick`: configs/abtrain/mlp_fashion.py:quick; variants :only_b, :reset)
Hardware: CPU, 8 fake devices (XLA_FLAGS=--xla_force_host_platform_device_count=8, which `jaxlab run` does not
          set: export it; `jaxlab reproduce` sets it). Data: Debian package dataset-fashion-mnist.
Runtime:  on the shared 2-core machine, one seed costs about 620 s of CPU time (AB about 360 s, of which the 15
          SVDs take about 9 s each and compiling one program set per rank change about a quarter; DP about 255 s);
          seeds 1 and 2 took 2290 s wall under load averages 8-20 (bench/results/abtrain/mlp_fashion_3seeds/NOTES.md).
          The sync-time evaluations of the accuracy curve use 2000 test images (curve_eval_size), the final one all.
Expected: inter-node bytes <= 0.40x data parallelism's (the schedule alone: 1034 of 3000 steps full rank, 0.345);
          test accuracy within 1 pp of data parallelism over seeds 0, 1, 2.
Measured (bench/results/abtrain/mlp_fashion_3seeds/summary.json; seeds 1 and 2 run with `--set seeds=1,2,0`,
          seed 0 reused from mlp_fashion_seed0): inter-node bytes 0.355x DP per seed (schedule share 0.640,
          low-rank share 0.004 of DP's bytes), intra-node 0.597x; test accuracy 88.93% +- 0.14 (AB) vs
          89.62% +- 0.04 (DP), mean gap -0.69 pp (per seed -0.88, -0.58, -0.61); final ranks about 410 and 260,
          0.690 of the parameters (1.45:1).
"""

import dataclasses

from jaxlab.methods.abtrain import ABTrainConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> ABTrainConfig:
    config = ABTrainConfig(model="mlp", hidden=(1024, 1024), total_steps=3000, warmup_steps=866, sync_every=152,
                           full_steps=12, lr_rebound_steps=53, global_batch=128, lr=1e-3, weight_decay=0.1,
                           lr_warmup_steps=200, lr_cooldown_steps=200, seeds=(0, 1, 2),
                           curve_eval_size=2000)
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        # compile-bound: about 15 programs (one per kind and rank set); a 4096-image subset
        return dataclasses.replace(config, hidden=(64, 64), total_steps=40, warmup_steps=12, sync_every=10,
                                   full_steps=2, lr_rebound_steps=2, lr_warmup_steps=4, lr_cooldown_steps=4,
                                   train_size=4096, test_size=2000, seeds=(0,), checkpoint_every=0, log_every=10)
    if arg == "smoke":
        # one step of each phase: warm-up, AB (decompose at 1), sync at 2 and a full-rank step
        return dataclasses.replace(config, dataset="synthetic", hidden=(16, 16), total_steps=3, warmup_steps=1,
                                   sync_every=2, full_steps=1, lr_rebound_steps=1, lr_warmup_steps=1,
                                   lr_cooldown_steps=1, global_batch=64, train_size=256, test_size=64, seeds=(0,),
                                   eval_batch=64, checkpoint_every=0, log_every=1, baseline=False)
    if arg == "only_b":
        return dataclasses.replace(config, sync_mode="only-b")
    if arg == "reset":
        return dataclasses.replace(config, on_rank_change="reset")
    raise ValueError(f"unknown argument {arg!r}; use 'quick', 'smoke', 'only_b', 'reset' or nothing")
