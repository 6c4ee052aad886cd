"""Forward gradients with tangents at a fixed pairwise angle (paper section 4.3): n = 64, k in {4, 16, 64},
angles 15-90 degrees; cosine to the gradient of the mean and the projection, and tuned gradient descent on
Styblinski-Tang (k in {16, 64}).

Command:  PYTHONPATH=. jaxlab run configs/fwdgrad/angles.py --workdir runs/fwdgrad_angles   (quick: angles.py:quick)
Hardware: CPU.
Runtime:  50 s measured on 2 shared CPU cores (bench/results/fwdgrad/angles/summary.json `wall_s`); quick: about 20-40 s.
Expected: the projection's cosine is the same at every angle (the span does not change; same keys, so equal to
          float rounding), the mean's falls as the angle shrinks to 15 degrees; with tuned rates the projection
          reaches a lower or equal median gap than the mean on Styblinski-Tang at angles <= 45 degrees.
          Plot: angles.png.
"""

from jaxlab.methods.fwdgrad import AnglesConfig
from jaxlab.methods.fwdgrad import run  # noqa: F401  (what `jaxlab run` calls: dispatches on the config type)


def get_config(arg: str | None = None) -> AnglesConfig:
    if arg in (None, "", "default"):
        return AnglesConfig()
    if arg == "quick":
        return AnglesConfig(tangents=(16,), angles=(15.0, 90.0), samples=100, opt_tangents=(16,), seeds=2,
                            lr_per_decade=1, min_steps=40)
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
