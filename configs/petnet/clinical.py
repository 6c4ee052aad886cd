"""PETNet on the clinical preset (C = 240, T = 1000, 36k/4k samples): the GPU check.

The set-up of the reduced CPU headline (``configs/petnet/reduced.py``: reference-equivalent net with the
geometry channel, L1 count + van Rossum loss, Adam 2e-3, batch 64, initial gains 16 / 3.3 / 2.0), for
10 epochs on one seed, scored against SCW, SCW + geometry and delay-calibrated SCW. The GPU suite calls
``jaxlab.methods.petnet.gpu_check(budget_s=480)`` (F1 and seconds per epoch, at most 8 minutes);
``gpu_check(tiny=True)`` is the same path on 128 samples of the reduced preset, seconds on a CPU.

Command:  jaxlab run configs/petnet/clinical.py             (GPU; :tiny runs on a CPU in seconds)
          python -c "from jaxlab.methods.petnet import gpu_check; print(gpu_check(budget_s=480))"
Hardware: one GPU (an H200 class device); the CPU cannot train 36k x 1000-step samples in useful time.
Runtime:  pending: not yet measured on a GPU (no device in the session that built it). Estimate: a few
          seconds to tens of seconds per epoch, 10 epochs within 8 minutes.
Expected: pending a GPU run. On CPU, the sorters on this preset score: SCW strict F1 0.76, SCW +
          geometry 0.95, SCW + geometry keeping single good pairs 0.99, delay-calibrated SCW 0.98
          (2,000 test samples); the paper reports a maximal PETNet F1 of 0.952.
"""

import dataclasses

from jaxlab.methods.petnet import PETNetConfig, run  # noqa: F401  (run is what `jaxlab run` calls)
from jaxlab.methods.petnet._gpu import clinical_config


def get_config(arg: str | None = None) -> PETNetConfig:
    if arg in (None, "", "default", "gpu"):
        return dataclasses.replace(clinical_config(tiny=False), throughput_batch=1000)
    if arg == "tiny":
        return dataclasses.replace(clinical_config(tiny=True), throughput_batch=32, throughput_repeats=1)
    raise ValueError(f"unknown argument {arg!r}; use 'gpu', 'tiny' or nothing")
