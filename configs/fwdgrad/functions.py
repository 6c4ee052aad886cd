"""Gradient descent with forward gradients on the sphere, Rosenbrock and Styblinski-Tang functions
(paper section 4.2): backprop vs the mean vs the projection at k in {2, 4, 16}, n in {4, 16, 64, 256}.

Command:  jaxlab run configs/fwdgrad/functions.py              (quick: configs/fwdgrad/functions.py:quick)
Hardware: CPU.
Runtime:  full (1000 steps, 5 seeds, 11 learning rates per method): about 10 min on 2 CPU cores; quick: about 30 s.
Expected: with its best learning rate, the projection reaches a lower relative gap (f_T - f*)/(f_0 - f*)
          than the mean at the same k in most cells, and equals backprop once k >= n. Plot: functions.png.
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
