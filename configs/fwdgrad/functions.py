"""Gradient descent with forward gradients on the sphere, Rosenbrock and Styblinski-Tang functions
(paper section 4.2): backprop vs the mean vs the projection at k in {2, 4, 16}, n in {4, 16, 64, 256}.

Command:  jaxlab run configs/fwdgrad/functions.py              (quick: configs/fwdgrad/functions.py:quick)
Hardware: CPU.
Runtime:  full (1000 steps, 5 seeds, 11 learning rates per method): 435 s measured on 2 heavily shared CPU
          cores (84 compilations); quick: 55 s on the same loaded machine (15 compilations).
Expected: with its best learning rate, the projection reaches a lower or equal relative gap (f_T - f*)/(f_0 - f*)
          than the mean at the same k in about 2/3 of the cells (measured: 0.67), and matches backprop once
          k >= n (up to float32 rounding of the Gram solve). Plot: functions.png.
"""

from jaxlab.methods.fwdgrad import FunctionsConfig
from jaxlab.methods.fwdgrad import run_functions as run  # noqa: F401  (what `jaxlab run` calls)


def get_config(arg: str | None = None) -> FunctionsConfig:
    if arg in (None, "", "default"):
        return FunctionsConfig()
    if arg == "quick":
        return FunctionsConfig(dims=(32,), tangents=(4, 16), steps=300, seeds=2,
                               learning_rates=(1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 0.1, 0.3))
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
