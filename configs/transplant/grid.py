"""The Neuron Transplantation grid of the issue: MNIST-5k, k in {2, 4, 8}, 3 seeds, every fusion and student.

One config per model (MLP 3 x 512 without bias, SmallCNN, a narrow ResNet18 and VGG11 at 1/8 width, the last two
on images padded to 32x32); members 20 epochs, fine-tuning 10 (SGD lr 0.01, momentum 0.9, batch 256). Methods: NT,
its iterative and hierarchical variants, weight averaging, OT fusion ("wts"), weight matching, and distillation
(T = 2) into NT and into member 0; BatchNorm recalibrated after every fusion.

Command:  PYTHONPATH=. jaxlab run configs/transplant/grid.py:<arg> --workdir runs/transplant_<arg>
          with <arg> one of mlp_mnist5k (also the default), smallcnn_mnist5k, resnet18_mnist5k, vgg11_mnist5k
          jaxlab run configs/transplant/grid.py:smoke   (VGG11 at width 1/32 on sklearn digits padded to 32x32,
          k = 4, one epoch each: every fusion, the variants, BatchNorm recalibration and distillation into
          member 0 in seconds; the test suite's smoke test of this config)
Hardware: meant for a GPU (24 members and 3 x 3 x 8 fine-tunings per model); not run on the shared CPU.
Runtime:  not measured: no model of the grid has been run (the shared 2-core CPU went to the Fashion-MNIST
          accuracy run of configs/transplant/mlp.py:cpu); only the smoke variant runs, in the tests.
Expected: the same ordering as configs/transplant/mlp.py (NT after fine-tuning above the best member and
          averaging), with gains shrinking as k grows (the paper's saturation finding).
"""

import dataclasses

from jaxlab.methods.transplant import TransplantConfig, run  # noqa: F401  (run is what `jaxlab run` calls)

_BASE = TransplantConfig(ks=(2, 4, 8), seeds=3, member_epochs=20, finetune_epochs=10,
                         methods=("nt", "nt_iterative", "nt_hierarchical", "avg", "ot", "wm", "nt_distill",
                                  "model0_distill"))

ARGS = ("mlp_mnist5k", "smallcnn_mnist5k", "resnet18_mnist5k", "vgg11_mnist5k", "smallcnn_mnist5k_cpu",
        "resnet18_mnist5k_cpu", "vgg11_mnist5k_cpu")

# What the shared 2-core CPU can afford for the convolutional nets (see the module docstring): one seed, k in {2, 4},
# 3 member epochs at batch 128 (the reference's VGG11 / ResNet18 batch: twice the steps of batch 256 at the same
# cost), 2 fine-tuning epochs; NT, its iterative variant (k = 4), averaging and OT only.
_CPU = dict(seeds=1, ks=(2, 4), member_epochs=3, finetune_epochs=2, batch_size=128,
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
