"""Gradient descent with forward gradients on the sphere, Rosenbrock and Styblinski-Tang functions
(paper section 4.2): backprop vs the mean vs the projection at k in {2, 4, 16}, n in {16, 64, 256, 1024}, on a
budget of T = 10 n / k steps (or the steps to reach a relative gap of 1e-6), 5 paired seeds, a per-method log
grid of learning rates with 4 points a decade.

Command:  PYTHONPATH=. jaxlab run configs/fwdgrad/functions.py --workdir runs/fwdgrad_functions
          (quick: configs/fwdgrad/functions.py:quick)
Hardware: CPU.
Runtime:  175 s measured on 2 shared CPU cores (bench/results/fwdgrad/functions/summary.json `wall_s`, 84
          compiled programs); quick: about 30 s.
Expected: in the cells with k / n >= 1/64 the projection has the lower median gap in at least 75% of them, with
          a one-sided sign test over the cells at p < 0.05 (summary.json `projection_passes`, `cells`).
          Measured: 23 of 27 such cells (85%), p = 1.6e-4; the mean wins at Rosenbrock n = 64, k = 4 and
          Styblinski-Tang (n, k) = (16, 2), (256, 4), (1024, 16). Plot: functions.png.
"""

from jaxlab.methods.fwdgrad import FunctionsConfig
from jaxlab.methods.fwdgrad import run  # noqa: F401  (what `jaxlab run` calls: dispatches on the config type)


def get_config(arg: str | None = None) -> FunctionsConfig:
    if arg in (None, "", "default"):
        return FunctionsConfig()
    if arg == "quick":
        return FunctionsConfig(dims=(16,), tangents=(4, 16), seeds=2, lr_per_decade=1)
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
