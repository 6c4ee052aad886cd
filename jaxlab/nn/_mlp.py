"""Small reference models: a multilayer perceptron and a compact CNN (flax.linen)."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core._groups import Axis, Group, set_field


class MLP(nn.Module):
    """Dense layers with an activation between them; inputs are flattened after the batch axis.

    Attributes:
      features: output widths of the layers; the last one is the output size (no activation after it).
      activation: the nonlinearity between layers.
      dtype: computation dtype (parameters stay float32).
      use_bias: whether the dense layers have biases (Neuron Transplantation's reference MLPs have none).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = MLP(features=(32, 10))
      >>> params = model.init(jax.random.key(0), jnp.ones((2, 8, 8, 1)))
      >>> model.apply(params, jnp.ones((2, 8, 8, 1))).shape
      (2, 10)
    """

    features: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    dtype: jnp.dtype | None = None
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.features:
            raise ValueError("MLP needs at least one layer in `features`")
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.features):
            x = nn.Dense(width, dtype=self.dtype, use_bias=self.use_bias, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x

    def dependency_groups(self) -> tuple[Group, ...]:
        """One group per hidden layer ``dense_i``: its kernel's columns, its bias, the next kernel's rows.

        Examples:
          >>> [g.name for g in MLP(features=(8, 4, 2)).dependency_groups()]
          ['dense_0', 'dense_1']
        """
        P = "params"
        groups = []
        for i, width in enumerate(self.features[:-1]):
            axes = [Axis((P, f"dense_{i}", "kernel"), 1)]
            if self.use_bias:
                axes.append(Axis((P, f"dense_{i}", "bias"), 0, score=False))
            axes.append(Axis((P, f"dense_{i + 1}", "kernel"), 0))
            groups.append(Group(f"dense_{i}", int(width), tuple(axes), set_field("features", i)))
        return tuple(groups)


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (32, 64 channels) with 2x2 average pooling, then a 128-wide dense layer.

    Attributes:
      num_classes: size of the output layer.
      dtype: computation dtype.
      features: channels of the conv layers (``Conv_0``, ``Conv_1``, ...).
      hidden: width of the dense layer before the classifier (``Dense_0``; the classifier is ``Dense_1``).
    """

    num_classes: int
    dtype: jnp.dtype | None = None
    features: Sequence[int] = (32, 64)
    hidden: int = 128

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"SmallCNN expects images of shape (batch, H, W, C), got shape {x.shape}")
        for width in self.features:
            x = nn.Conv(int(width), (3, 3), dtype=self.dtype)(x)
            x = nn.relu(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)

    def dependency_groups(self) -> tuple[Group, ...]:
        """Groups ``conv_i`` (a conv's output channels, its bias, the next conv's input channels, or the
        dense layer's rows after the NHWC flatten, tile inferred) and ``hidden`` (``Dense_0``'s units)."""
        P = "params"
        groups = []
        n = len(self.features)
        for i, width in enumerate(self.features):
            nxt = (Axis((P, f"Conv_{i + 1}", "kernel"), -2) if i + 1 < n
                   else Axis((P, "Dense_0", "kernel"), 0, tile=None))   # NHWC flatten: unit c owns c, c + C, ...
            groups.append(Group(f"conv_{i}", int(width), (
                Axis((P, f"Conv_{i}", "kernel"), -1), Axis((P, f"Conv_{i}", "bias"), 0, score=False), nxt),
                set_field("features", i)))
        groups.append(Group("hidden", int(self.hidden), (
            Axis((P, "Dense_0", "kernel"), 1), Axis((P, "Dense_0", "bias"), 0, score=False),
            Axis((P, "Dense_1", "kernel"), 0)), set_field("hidden")))
        return tuple(groups)
