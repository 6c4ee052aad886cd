"""Baselines for ReCycle on the same windows: per-step transformer and DLinear.

The profile alone and persistence need no model: they are ``fc_profile`` of
:func:`~jaxlab.methods.recycle.profile_windows` with ``variant="last_rhp"`` and
``variant="persistence"``.

* :class:`VanillaTransformer`: the same encoder-decoder trunk as ReCycle but one token per time
  step (``L`` history tokens, ``H`` forecast queries), sinusoidal positions, per-step calendar
  features, no profile and no residual. Attention costs ``O(L^2)``.
* :class:`DLinear`: Zeng et al., "Are Transformers Effective for Time Series Forecasting?"
  (arXiv 2205.13504): moving-average trend + remainder, one linear map each from the ``L`` history
  steps to the ``H`` forecast steps.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array

from ._model import EncoderDecoder


def sinusoidal_positions(n: int, d: int) -> np.ndarray:
    """The ``(n, d)`` sine/cosine position table of Vaswani et al. (2017)."""
    pos = np.arange(n)[:, None]
    i = np.arange(d)[None, :]
    angle = pos / np.power(10000.0, (2 * (i // 2)) / d)
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


class VanillaTransformer(nn.Module):
    """One-shot encoder-decoder transformer with one token per time step.

    Call arguments: hist ``(B, L)`` values, hist_features ``(B, L, F)``, fc_features ``(B, H, F)``
    (calendar features of each step). Returns ``(B, H)``.
    """

    d_model: int = 32
    d_ff: int = 32
    num_heads: int = 1
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1

    @nn.compact
    def __call__(self, hist: Array, hist_features: Array, fc_features: Array) -> Array:
        length, horizon = hist.shape[1], fc_features.shape[1]
        pe = jnp.asarray(sinusoidal_positions(length + horizon, self.d_model), hist.dtype)
        enc_in = jnp.concatenate([hist[..., None], hist_features], axis=-1)
        x = nn.Dense(self.d_model, name="value_proj")(enc_in) + pe[:length]
        y = nn.Dense(self.d_model, name="query_proj")(fc_features) + pe[length:]
        h = EncoderDecoder(
            self.d_model, self.d_ff, self.num_heads, self.num_encoder_layers, self.num_decoder_layers
        )(x, y)
        return nn.Dense(1, name="head")(h)[..., 0]


def moving_average(x: Array, kernel: int) -> Array:
    """Centred moving average over the last axis with edge replication (DLinear's trend)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd positive integer, got {kernel}")
    pad = (kernel - 1) // 2
    xp = jnp.concatenate([jnp.repeat(x[..., :1], pad, -1), x, jnp.repeat(x[..., -1:], pad, -1)], -1)
    c = jnp.cumsum(xp, axis=-1)
    c = jnp.concatenate([jnp.zeros_like(c[..., :1]), c], axis=-1)
    return (c[..., kernel:] - c[..., :-kernel]) / kernel


def moving_average_reference(x: np.ndarray, kernel: int) -> np.ndarray:
    """Loop oracle for :func:`moving_average`."""
    x = np.asarray(x)
    pad = (kernel - 1) // 2
    xp = np.concatenate([np.repeat(x[..., :1], pad, -1), x, np.repeat(x[..., -1:], pad, -1)], -1)
    return np.stack([xp[..., i : i + kernel].mean(-1) for i in range(x.shape[-1])], -1)


class DLinear(nn.Module):
    """DLinear: linear maps of the trend and the remainder of the history.

    Call argument: hist ``(B, L)``. Returns ``(B, horizon)``.
    """

    horizon: int
    kernel: int = 25

    @nn.compact
    def __call__(self, hist: Array) -> Array:
        trend = moving_average(hist, self.kernel)
        season = hist - trend
        return nn.Dense(self.horizon, name="trend")(trend) + nn.Dense(self.horizon, name="season")(season)
