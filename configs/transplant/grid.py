"""The Neuron Transplantation grid of the issue: MNIST-5k, k in {2, 4, 8}, 3 seeds, every fusion and student.

One config per model (MLP 3 x 512 without bias, SmallCNN, a narrow ResNet18 and VGG11 at 1/8 width, the last two
on images padded to 32x32); members 20 epochs, fine-tuning 10 (SGD lr 0.01, momentum 0.9, batch 256). Methods: NT,
its iterative and hierarchical variants, weight averaging, OT fusion ("wts"), weight matching, and distillation
(T = 2) into NT and into member 0; BatchNorm recalibrated after every fusion. Every run reports, per k and method,
test accuracy before and after fine-tuning, the best member and the ensemble, and each fusion's time and peak
memory (tables.md, summary.json, accuracy_/finetune_/fusion_<experiment>.png).

``<model>_mnist5k_cpu`` (smallcnn, resnet18, vgg11): what the shared 2-core CPU affords for the convolutional nets,
reduced from the issue's grid to: 1 seed (not 3), k in {2, 4} (not 8), members 2 epochs (not 20) at batch 128 (the
reference's batch for VGG11 / ResNet18, not 256), 1 fine-tuning epoch (not 10), methods NT, NT iterative (k = 4),
averaging and OT only (no hierarchical variant, weight matching or distillation). Members this short are far from
converged, so these runs check the pipeline and the orderings right after fusion, not the paper's accuracy claims.

Command:  PYTHONPATH=. jaxlab run configs/transplant/grid.py:<arg> --workdir runs/transplant_grid_<arg>
          with <arg> one of mlp_mnist5k (also the default), smallcnn_mnist5k, resnet18_mnist5k, vgg11_mnist5k,
          or a ``_cpu`` variant
          jaxlab run configs/transplant/grid.py:smoke   (VGG11 at width 1/32 on sklearn digits padded to 32x32,
          k = 4, one epoch each: every fusion, the variants, BatchNorm recalibration and distillation into
          member 0 in seconds; the slow test of this config)
Hardware: ``mlp_mnist5k``: the full grid row, runs on the 2-core CPU. The full convolutional rows are meant for a
          GPU; the ``_cpu`` variants run on the CPU.
Runtime:  ``mlp_mnist5k`` (24 members, 63 fine-tuned or distilled models): 27 min in all, 13 min of member
          training and 8 min of fine-tuning, on the shared 2-core CPU under load 11-20 at nice 10
          (bench/results/transplant/grid_mlp_mnist5k/). ``vgg11_mnist5k_cpu``: 10 min (members 5 min,
          fine-tuning 3.4 min) under load 8-12 (bench/results/transplant/grid_vgg11_mnist5k_cpu/).
          ``smallcnn_mnist5k_cpu``: 15 min (members 7.7 min) under load 2-2.5
          (bench/results/transplant/grid_smallcnn_mnist5k_cpu/). ``resnet18_mnist5k_cpu``: 29 min (members
          16 min) under load 1.6-4 (bench/results/transplant/grid_resnet18_mnist5k_cpu/). Convolutional nets on that CPU (measured under
          load 12-20, one member, batch 256, not a measure of the method): a VGG11 (1/8 width) epoch of the 3,600 training
          images took 91-182 s of wall time (about 30-45 CPU-s), a SmallCNN epoch of two members more than 7 min;
          the full convolutional rows (24 members x 20 epochs) are therefore hours of CPU each and were not run.
Expected: NT after fine-tuning above the best member and averaging, NT before fine-tuning above averaging and OT,
          with gains shrinking as k grows (the paper's saturation finding). Measured: see the README's tour and
          bench/results/transplant/grid_*/tables.md.
"""

import dataclasses

from jaxlab.methods.transplant import TransplantConfig, run  # noqa: F401  (run is what `jaxlab run` calls)

_BASE = TransplantConfig(ks=(2, 4, 8), seeds=3, member_epochs=20, finetune_epochs=10,
                         methods=("nt", "nt_iterative", "nt_hierarchical", "avg", "ot", "wm", "nt_distill",
                                  "model0_distill"))

ARGS = ("mlp_mnist5k", "smallcnn_mnist5k", "resnet18_mnist5k", "vgg11_mnist5k", "smallcnn_mnist5k_cpu",
        "resnet18_mnist5k_cpu", "vgg11_mnist5k_cpu")

# What the shared 2-core CPU can afford for the convolutional nets (see the module docstring): one seed, k in {2, 4},
# 2 member epochs at batch 128 (the reference's VGG11 / ResNet18 batch: twice the steps of batch 256 at the same
# cost), 1 fine-tuning epoch; NT, its iterative variant (k = 4), averaging and OT only.
_CPU = dict(seeds=1, ks=(2, 4), member_epochs=2, finetune_epochs=1, batch_size=128,
            methods=("nt", "nt_iterative", "avg", "ot"))


def get_config(arg: str | None = None) -> TransplantConfig:
    if arg in (None, "", "default", "mlp_mnist5k"):
        return dataclasses.replace(_BASE, experiments=("mlp/mnist5k",))
    if arg == "smallcnn_mnist5k":
        return dataclasses.replace(_BASE, experiments=("smallcnn/mnist5k",))
    if arg == "resnet18_mnist5k":
        return dataclasses.replace(_BASE, experiments=("resnet18/mnist5k",))
    if arg == "vgg11_mnist5k":
        return dataclasses.replace(_BASE, experiments=("vgg11/mnist5k",))
    if arg in ("smallcnn_mnist5k_cpu", "resnet18_mnist5k_cpu", "vgg11_mnist5k_cpu"):
        return dataclasses.replace(get_config(arg[: -len("_cpu")]), **_CPU)
    if arg == "smoke":
        return dataclasses.replace(_BASE, experiments=("vgg11/digits",), ks=(4,), seeds=1, member_epochs=1,
                                   finetune_epochs=1, vgg_width=1 / 32, batch_size=64, test_size=100, bn_batches=2)
    raise ValueError(f"unknown argument {arg!r}; use one of {ARGS} or 'smoke'")
