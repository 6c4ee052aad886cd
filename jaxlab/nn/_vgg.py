"""VGG (Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
arXiv 1409.1556) in flax.linen, with a CIFAR-style and a timm-style classifier.

Inputs are NHWC. The feature stack is 3x3 convolutions (with BatchNorm when ``batch_norm``) and ReLU,
with 2x2 max-pooling at every ``"M"`` of the layer list:

>>> import jax, jax.numpy as jnp
>>> model = VGG.vgg11(num_classes=10, width=1 / 8)
>>> x = jnp.zeros((2, 32, 32, 3))
>>> variables = jax.eval_shape(lambda k: model.init(k, x, train=False), jax.random.key(0))
>>> jax.eval_shape(lambda v: model.apply(v, x, train=False), variables).shape
(2, 10)

Heads:
- ``head="cifar"`` (the CIFAR VGGs of e.g. Neuron Transplantation): flatten the features, then dense layers of
  ``hidden`` widths with ReLU, then the classifier.
- ``head="timm"`` (timm's ``vgg11``/``vgg16``, the model behind AB-training's 44:1 figure): the features are
  adaptively average-pooled to 7x7 (a 1x1 map of a 32x32 input is replicated), then ``fc1`` (a 7x7 convolution in
  timm, here the equal dense layer on the flattened 7x7x512 map, 102.8M parameters at width 1), ReLU, dropout,
  ``fc2`` (4096 -> 4096), ReLU, dropout, and the classifier.

Deviation from torchvision/timm: default flax initialisers (LeCun normal kernels, zero biases).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

VGG11_LAYERS: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
VGG16_LAYERS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                       512, 512, 512, "M")


def _bins(n_in: int, n_out: int) -> list[tuple[int, int]]:
    return [(int(np.floor(i * n_in / n_out)), int(np.ceil((i + 1) * n_in / n_out))) for i in range(n_out)]


def adaptive_avg_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """``torch.nn.functional.adaptive_avg_pool2d`` for NHWC arrays (bins floor(i n/m) to ceil((i+1) n/m)).

    Examples:
      >>> import jax.numpy as jnp
      >>> adaptive_avg_pool(jnp.arange(4.0, dtype=jnp.float32).reshape(1, 2, 2, 1), (1, 1))[0, :, :, 0]
      Array([[1.5]], dtype=float32)
    """
    _, h, w, _ = x.shape
    rows = jnp.stack([x[:, a:b].mean(axis=1) for a, b in _bins(h, size[0])], axis=1)
    return jnp.stack([rows[:, :, a:b].mean(axis=2) for a, b in _bins(w, size[1])], axis=2)


class VGG(nn.Module):
    """A VGG network.

    Attributes:
      num_classes: size of the classifier output.
      layers: output channels of each 3x3 convolution, ``"M"`` for a 2x2 max-pool (``VGG11_LAYERS``, ``VGG16_LAYERS``).
      batch_norm: BatchNorm after each convolution (statistics in the ``batch_stats`` collection).
      head: ``"cifar"`` or ``"timm"`` (see the module docstring).
      hidden: widths of the dense layers before the classifier in the ``"cifar"`` head (empty: none).
      fc_width: width of ``fc1``/``fc2`` in the ``"timm"`` head.
      dropout: dropout rate of the ``"timm"`` head (active when ``train=True``; needs a ``"dropout"`` rng then).
      dtype: computation dtype (parameters stay float32).
    """

    num_classes: int
    layers: Sequence[int | str] = VGG16_LAYERS
    batch_norm: bool = True
    head: str = "cifar"
    hidden: Sequence[int] = ()
    fc_width: int = 4096
    dropout: float = 0.0
    dtype: jnp.dtype | None = None

    @classmethod
    def vgg11(cls, num_classes: int, *, width: float = 1.0, **kwargs) -> "VGG":
        """VGG11 with every convolution's width scaled by ``width``."""
        return cls(num_classes, layers=_scaled(VGG11_LAYERS, width), **kwargs)

    @classmethod
    def vgg16(cls, num_classes: int, *, width: float = 1.0, **kwargs) -> "VGG":
        """VGG16 with every convolution's width scaled by ``width``."""
        return cls(num_classes, layers=_scaled(VGG16_LAYERS, width), **kwargs)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"VGG expects images of shape (batch, H, W, C), got shape {x.shape}")
        if self.head not in ("cifar", "timm"):
            raise ValueError(f"VGG head must be 'cifar' or 'timm', got {self.head!r}")
        conv_index = 0
        for item in self.layers:
            if item == "M":
                if min(x.shape[1:3]) < 2:
                    raise ValueError(f"input too small for {sum(1 for i in self.layers if i == 'M')} max-pools: "
                                     f"the map is {x.shape[1:3]} before a pool; use larger images or fewer 'M'")
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            x = nn.Conv(int(item), (3, 3), padding=1, use_bias=not self.batch_norm, dtype=self.dtype,
                        name=f"conv_{conv_index}")(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                                 name=f"bn_{conv_index}")(x)
            x = nn.relu(x)
            conv_index += 1
        if self.head == "timm":
            x = adaptive_avg_pool(x, (7, 7)) if x.shape[1:3] != (7, 7) else x
            x = x.reshape((x.shape[0], -1))
            for i in (1, 2):
                x = nn.relu(nn.Dense(self.fc_width, dtype=self.dtype, name=f"fc{i}")(x))
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        else:
            x = x.reshape((x.shape[0], -1))
            for i, width in enumerate(self.hidden):
                x = nn.relu(nn.Dense(width, dtype=self.dtype, name=f"hidden_{i}")(x))
        return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


def _scaled(layers: Sequence[int | str], width: float) -> tuple[int | str, ...]:
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    return tuple(item if item == "M" else max(1, int(round(int(item) * width))) for item in layers)
