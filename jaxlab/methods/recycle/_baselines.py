"""Baselines for ReCycle on the same windows: the per-step transformer (DLinear is in jaxlab.timeseries).

The profile alone and persistence need no model: they are ``fc_profile`` of
:func:`~jaxlab.methods.recycle.profile_windows` with ``variant="last_rhp"`` and
``variant="persistence"``.

* :class:`VanillaTransformer`: the same encoder-decoder trunk as ReCycle but one token per time
  step (``L`` history tokens, ``H`` forecast queries), sinusoidal positions, per-step calendar
  features, no profile and no residual. Attention costs ``O(L^2)``.
* DLinear (Zeng et al., arXiv 2205.13504) lives in :mod:`jaxlab.timeseries`; ReCycle runs it on the
  univariate history as one channel.
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
