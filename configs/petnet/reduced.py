"""PETNet vs coincidence-window sorters on the reduced CPU preset (C = 60, T = 250, 4k/1k samples).

Data: the toy PET simulator at reference parity (activity 20, detection 0.141, crystal delays
~ Binomial(20, 1/2), partner at the mirror position; 0.40 true coincidences per sample), data seed 0.
Network: the reference-equivalent 2-layer spiking net (fc 120 -> 240, LIF, fc 240 -> 60, LIF) with the
geometry channel, L1 count + 0.1 x van Rossum loss (tau 5), Adam 2e-3, batch 64, 12 epochs or 300 s of
CPU time, initial weight gains 16 / 3.3 / 2.0 over PyTorch's bound and zero biases (the reasons are in
``jaxlab.methods.petnet._experiment.HEADLINE_RECIPE``); seeds 0, 1, 2. Strict pair F1 by decay ID with a
20-step tolerance; the reference-compatible metric next to it.

Gains: a hit drives first-layer neuron j with W1[c, j] ~ U(+-16/sqrt(120)) = U(+-1.46), so P(W1 > 1) =
0.16: about 40 of 240 neurons fire. Their 40 spikes reach a next-layer neuron as a sum of 40 U(+-a)
weights, standard deviation a sqrt(40/3) = 3.65 a; gain 3.3 over 1/sqrt(240) gives a = 0.21, one
threshold; the output gain 2.0 (a = 0.13, 0.47 of a threshold) makes a few output spikes per hit.

Command:  jaxlab run configs/petnet/reduced.py                (quick: configs/petnet/reduced.py:quick)
          :table   losses (mse, l1, l1_vr) x geometry (on, off) on the reference-equivalent net, and the
                   3-layer net with l1_vr + geometry; one seed each, 5 epochs;  :smoke  seconds, for tests
Hardware: CPU (2 cores); no accelerator needed.
Runtime:  190 s of process CPU time per training run (12 epochs; the run uses about one core), so about
          3-4 min of wall clock per seed on idle cores. Measured 2026-12-01 on the shared 2-core machine
          at load average 22: 980 s wall per seed, 53 min for the whole run (3 seeds, sorters, throughput).
Expected: strict pair F1 (test, 1,000 samples, tolerance 20 steps), bench/results/petnet-reduced-cpu.json:
          PETNet 0.528 +- 0.045 (seeds 0.568 / 0.536 / 0.479; reference-compatible F1 0.490) vs
          SCW 0.422, SCW + geometry 0.730, SCW + geometry keeping single good pairs 0.887,
          delay-calibrated SCW (window 0) 0.944. Training loss still falling at epoch 12.
          :table (seed 0, 5 epochs; bench/results/petnet-reduced-table-cpu.json, .png): with geometry, the
          reference net gives 0.511 (mse), 0.525 (l1), 0.543 (l1_vr) and the 3-layer net 0.511 (l1_vr);
          without geometry 0.193 (mse), 0.230 (l1), 0.208 (l1_vr): the geometry channel is what lifts PETNet.
"""

import dataclasses

from jaxlab.methods.petnet import PETNetConfig, run  # noqa: F401  (run is what `jaxlab run` calls)
from jaxlab.methods.petnet._experiment import HEADLINE_RECIPE

# in the order they are trained (a restarted run resumes after the finished ones)
_TABLE = (("mse", True, "reference"), ("l1_vr", False, "reference"), ("l1", True, "reference"),
          ("l1_vr", True, "three_layer"), ("l1_vr", True, "reference"), ("mse", False, "reference"),
          ("l1", False, "reference"))


def get_config(arg: str | None = None) -> PETNetConfig:
    config = HEADLINE_RECIPE
    if arg in (None, "", "default"):
        return config
    if arg == "quick":
        return dataclasses.replace(config, num_train=1024, num_test=500, seeds=(0,), epochs=4,
                                   throughput_batch=500, throughput_repeats=3, max_train_cpu_s=40.0)
    if arg == "table":
        return dataclasses.replace(config, variants=_TABLE, seeds=(0,), epochs=5, throughput_batch=0)
    if arg == "smoke":
        return dataclasses.replace(config, num_train=128, num_test=64, seeds=(0,), epochs=1, hidden=16,
                                   throughput_batch=64, throughput_repeats=1, eval_batch=64,
                                   calibration_windows=(0, 1))
    raise ValueError(f"unknown argument {arg!r}; use 'quick', 'table', 'smoke' or nothing")
