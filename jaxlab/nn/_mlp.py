"""Small reference models: a multilayer perceptron and a compact CNN (flax.linen)."""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """Dense layers with an activation between them; inputs are flattened after the batch axis.

    Attributes:
      features: output widths of the layers; the last one is the output size (no activation after it).
      activation: the nonlinearity between layers.
      dtype: computation dtype (parameters stay float32).

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

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.features:
            raise ValueError("MLP needs at least one layer in `features`")
        x = x.reshape((x.shape[0], -1))
        for i, width in enumerate(self.features):
            x = nn.Dense(width, dtype=self.dtype, name=f"dense_{i}")(x)
            if i < len(self.features) - 1:
                x = self.activation(x)
        return x


class SmallCNN(nn.Module):
    """Two 3x3 conv layers (32, 64 channels) with 2x2 average pooling, then a 128-wide dense layer.

    Attributes:
      num_classes: size of the output layer.
      dtype: computation dtype.
    """

    num_classes: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"SmallCNN expects images of shape (batch, H, W, C), got shape {x.shape}")
        for width in (32, 64):
            x = nn.Conv(width, (3, 3), dtype=self.dtype)(x)
            x = nn.relu(x)
            x = nn.avg_pool(x, (2, 2), strides=(2, 2), padding="SAME")
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(128, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x)
