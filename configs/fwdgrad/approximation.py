"""Forward-gradient approximation quality (paper section 4.1): cosine similarity and norm ratio to the
true gradient against the dimension n and the number of tangents k, for the mean and the projection.

Command:  jaxlab run configs/fwdgrad/approximation.py          (quick: configs/fwdgrad/approximation.py:quick)
Hardware: CPU.
Runtime:  full (n = 1..4096, k = 1..256, 1000 samples): 136 s measured on 2 CPU cores shared with other jobs
          (load 4-5; 78 compilations; before the pivoted selection), 480 s at load 7 (bench/results/fwdgrad/
          approximation/summary.json `wall_s`); quick (12 cells, 50 samples): about 20-40 s.
Expected: the projection's mean cosine is >= the mean's in every cell, and about sqrt(k/n) (E cos^2 = k/n),
          reaching 1 at k >= n (measured at n = 4096, k = 256: projection 0.249, mean 0.242); the mean's norm
          ratio is about sqrt((n+k+1)/k) (far too long), the projection's about sqrt(k/n) (too short).
          Where k / n >= 1/4 the projection is ahead by >= 0.05 only where k is not much larger than n: for
          k >> n the mean of many tangents also points along the gradient (cosine -> 1), and at k / n = 1/4 with
          n <= 16 the gap is 0.02-0.04 (summary.json `margin_cells_short`: 9 of 31 cells). Per sample, the
          projection is never below the mean for k >= 2 (`projection_cosine_ge_mean_every_sample_k_ge_2`):
          for k > n it keeps a pivoted Cholesky's well-conditioned n tangents (the default selection),
          cosine 1.0 in every such cell. With selection="first_n" (the reference's) it fell below the mean
          in some samples at n <= 16 (nearly dependent first n, ill-conditioned in float32; the earlier
          run: false). Plot: approximation_quality.png.
"""

from jaxlab.methods.fwdgrad import ApproximationConfig
from jaxlab.methods.fwdgrad import run  # noqa: F401  (what `jaxlab run` calls: dispatches on the config type)


def get_config(arg: str | None = None) -> ApproximationConfig:
    if arg in (None, "", "default"):
        return ApproximationConfig()
    if arg == "quick":
        return ApproximationConfig(dims=(4, 32, 256, 2048), tangents=(1, 4, 32), samples=50)
    raise ValueError(f"unknown argument {arg!r}; use 'quick' or nothing")
