"""Small CNN (2 conv layers, 1 dense) on Fashion-MNIST (Debian package dataset-fashion-mnist).

Command:  jaxlab run configs/examples/cnn_fashion_mnist.py
Hardware: CPU (2 cores) or one GPU.
Runtime:  about 3 min on 2 CPU cores for 3,000 steps of batch 128.
Expected: test accuracy about 0.89-0.90.
"""

from jaxlab.methods.classify import ClassifierConfig, run  # noqa: F401


def get_config(arg: str | None = None) -> ClassifierConfig:
    if arg not in (None, "", "default"):
        raise ValueError(f"unknown argument {arg!r}; this config takes none")
    return ClassifierConfig(dataset="fashion_mnist", model="cnn", learning_rate=1e-3, batch_size=128,
                            num_steps=3000, eval_every=1000, checkpoint_every=1000)
