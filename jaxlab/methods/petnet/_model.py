"""The PETNet spiking network: fully connected layers, each followed by LIF neurons (``jaxlab.nn.LIF``).

``num_layers = 3`` is the paper's network, fc(C_in -> H) -> LIF -> fc(H -> H) -> LIF -> fc(H -> C) -> LIF,
read out at the third layer. The reference's ``model_snn.Net`` computes that network but returns the
*second* layer's spikes (``spk3_rec.append(spk2)``), so the third layer gets no gradient and what it trains
is fc(C_in -> H) -> LIF -> fc(H -> H) -> LIF; ``num_layers = 2`` with an H -> C second layer is that
"reference-equivalent" network (identical to it when H = C, as in the reference's 240/240/240).

Layers are applied to all time steps at once: a fully connected layer has no state, so its currents for
every step are one ``(T*B, in) x (in, out)`` matmul, and each LIF layer is then a ``lax.scan`` over time of
elementwise work. This is the same computation as the reference's step-by-step loop through all layers
(the network is feed-forward), with far fewer, larger matmuls.

Weights and biases start as PyTorch's ``nn.Linear`` does (uniform in ``±1/sqrt(fan_in)``); each LIF layer
has its own learnable ``β`` (start 0.95), threshold 1, subtractive reset, arctan surrogate.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxlab.nn import LIF

ARCHITECTURES: dict[str, int] = {"one_layer": 1, "reference": 2, "three_layer": 3}


class TorchDense(nn.Module):
    """``nn.Dense`` with PyTorch ``nn.Linear``'s initialisation (weights and bias ~ U(±1/sqrt(fan_in))).

    Attributes:
      features: output width.
      weight_gain: multiplies the weights' bound (1: PyTorch).
      bias_gain: multiplies the bias' bound (1: PyTorch, 0: zero bias).
    """

    features: int
    weight_gain: float = 1.0
    bias_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        bound = 1.0 / math.sqrt(x.shape[-1])

        def uniform(gain):
            return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound * gain,
                                                                             bound * gain)

        w = self.param("kernel", uniform(self.weight_gain), (x.shape[-1], self.features))
        b = self.param("bias", uniform(self.bias_gain), (self.features,))
        return x @ w.astype(x.dtype) + b.astype(x.dtype)


class PETNet(nn.Module):
    """Spiking coincidence detector: input ``(B, T, C_in)`` spike trains -> output spikes ``(B, T, C)``.

    Attributes:
      num_outputs: output neurons ``C`` (one per crystal).
      hidden: width ``H`` of the hidden layers (240 in the paper).
      num_layers: fc -> LIF blocks; 3: the paper's net, 2: what the reference code trains (see module).
      beta: initial membrane decay of every LIF layer.
      threshold: LIF threshold.
      unroll: time steps per scan iteration of the LIF layers (speed only).
      weight_gain, bias_gain: initialisation scale relative to PyTorch's (see :class:`TorchDense`); the
        weight gain may be one number per layer.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> net = PETNet(num_outputs=6, hidden=8)
      >>> x = jnp.zeros((2, 5, 12), jnp.float32)
      >>> params = net.init(jax.random.key(0), x)
      >>> net.apply(params, x).shape
      (2, 5, 6)
    """

    num_outputs: int
    hidden: int = 240
    num_layers: int = 3
    beta: float = 0.95
    threshold: float = 1.0
    unroll: int = 1
    weight_gain: float | tuple[float, ...] = 1.0
    bias_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array, return_membrane: bool = False):
        if self.num_layers < 1:
            raise ValueError(f"PETNet needs num_layers >= 1, got {self.num_layers}")
        gains = self.weight_gain if isinstance(self.weight_gain, tuple) else (self.weight_gain,) * self.num_layers
        if len(gains) != self.num_layers:
            raise ValueError(f"weight_gain has {len(gains)} entries for {self.num_layers} layers; give one per layer")
        h = jnp.swapaxes(x, 0, 1)  # time-major (T, B, C_in) for the scans
        mem = None
        for i in range(self.num_layers):
            width = self.num_outputs if i == self.num_layers - 1 else self.hidden
            cur = TorchDense(width, gains[i], self.bias_gain, name=f"fc{i + 1}")(h)
            h, mem = LIF(beta_init=self.beta, threshold=self.threshold, unroll=self.unroll, name=f"lif{i + 1}")(cur)
        spikes = jnp.swapaxes(h, 0, 1)
        return (spikes, jnp.swapaxes(mem, 0, 1)) if return_membrane else spikes
