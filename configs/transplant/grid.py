"""The Neuron Transplantation grid (placeholder: sized after the CPU measurements)."""

import dataclasses

from jaxlab.methods.transplant import TransplantConfig, run  # noqa: F401  (run is what `jaxlab run` calls)

_BASE = TransplantConfig(ks=(2, 4, 8), seeds=3, member_epochs=20, finetune_epochs=10,
                         methods=("nt", "nt_iterative", "nt_hierarchical", "avg", "ot", "wm", "nt_distill",
                                  "model0_distill"))

ARGS = ("mlp_mnist5k", "smallcnn_mnist5k", "resnet18_mnist5k", "vgg11_mnist5k")


def get_config(arg: str | None = None) -> TransplantConfig:
    if arg == "mlp_mnist5k":
        return dataclasses.replace(_BASE, experiments=("mlp/mnist5k",))
    if arg == "smallcnn_mnist5k":
        return dataclasses.replace(_BASE, experiments=("smallcnn/mnist5k",))
    if arg == "resnet18_mnist5k":
        return dataclasses.replace(_BASE, experiments=("resnet18/mnist5k",))
    if arg == "vgg11_mnist5k":
        return dataclasses.replace(_BASE, experiments=("vgg11/mnist5k",))
    raise ValueError(f"unknown argument {arg!r}; use one of {ARGS}")
