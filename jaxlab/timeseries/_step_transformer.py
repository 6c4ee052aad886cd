"""A per-step encoder-decoder transformer and the post-norm trunk it shares with ReCycle's first model.

Moved here from ``jaxlab.methods.recycle`` (which re-exports the names) so that other methods can use
them without importing a method. Parameter names are unchanged.

* :class:`EncoderDecoder` (its blocks ``EncoderLayer`` and ``DecoderLayer`` are exported as
  ``PostNormEncoderLayer`` and ``PostNormDecoderLayer``: ``EncoderLayer`` is the zoo Transformer's): a ``torch.nn.Transformer``-style post-norm encoder-decoder with input
  projections and final norms, no positional encoding and no causal mask (one-shot decoding).
* :class:`VanillaTransformer`: that trunk with one token per time step (``L`` history tokens, ``H``
  forecast queries), sinusoidal positions (:func:`jaxlab.timeseries.sinusoidal_positions`), per-step
  calendar features, no profile and no residual. Attention costs ``O(L^2)``. ReCycle's experiment
  trains it as the baseline without PCC+RHP.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.core import Array

from ._layers import sinusoidal_positions


class EncoderLayer(nn.Module):
    """Post-norm self-attention + ReLU feed-forward block (``torch.nn.TransformerEncoderLayer``)."""

    d_model: int
    d_ff: int
    num_heads: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        att = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.d_model)
        x = nn.LayerNorm()(x + att(x, x))
        ff = nn.Dense(self.d_model)(nn.relu(nn.Dense(self.d_ff)(x)))
        return nn.LayerNorm()(x + ff)


class DecoderLayer(nn.Module):
    """Post-norm decoder block without causal mask (one-shot decoding)."""

    d_model: int
    d_ff: int
    num_heads: int = 1

    @nn.compact
    def __call__(self, y: Array, memory: Array) -> Array:
        sa = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.d_model)
        y = nn.LayerNorm()(y + sa(y, y))
        ca = nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.d_model)
        y = nn.LayerNorm()(y + ca(y, memory))
        ff = nn.Dense(self.d_model)(nn.relu(nn.Dense(self.d_ff)(y)))
        return nn.LayerNorm()(y + ff)


class EncoderDecoder(nn.Module):
    """Encoder-decoder trunk: input projections, layers, final norms (no positional encoding)."""

    d_model: int = 32
    d_ff: int = 32
    num_heads: int = 1
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1

    @nn.compact
    def __call__(self, enc_in: Array, dec_in: Array) -> Array:
        x = nn.Dense(self.d_model, name="enc_proj")(enc_in)
        for _ in range(self.num_encoder_layers):
            x = EncoderLayer(self.d_model, self.d_ff, self.num_heads)(x)
        memory = nn.LayerNorm(name="enc_norm")(x)
        y = nn.Dense(self.d_model, name="dec_proj")(dec_in)
        for _ in range(self.num_decoder_layers):
            y = DecoderLayer(self.d_model, self.d_ff, self.num_heads)(y, memory)
        return nn.LayerNorm(name="dec_norm")(y)


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
