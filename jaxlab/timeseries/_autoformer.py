"""Autoformer: Wu et al., "Autoformer: Decomposition Transformers with Auto-Correlation for Long-Term
Series Forecasting" (NeurIPS 2021, arXiv 2106.13008).

As thuml/Time-Series-Library's ``models/Autoformer.py``: **series decomposition** blocks
(:func:`jaxlab.timeseries.series_decomposition`, a moving average of ``moving_avg`` steps) split the
stream into seasonal and trend parts inside every layer; the decoder starts from the seasonal part
of the last ``label_len`` history steps (then zeros) and the trend part (then the history mean),
accumulates the trends of its layers through a circular width-3 convolution, and adds them to the
projected seasonal output. Attention is replaced by **auto-correlation** (:func:`auto_correlation`):
the period-based dependencies ``R(tau) = sum_t q_{t+tau} k_t`` come from the FFT, and the values
rolled by the ``k = floor(c ln L)`` most correlated delays are averaged with softmax weights.

Deviations from Time-Series-Library:

* every head picks its own delays from the mean correlation over its channels, in training and in
  inference alike. This is the paper's multi-head form (``head_i = AutoCorrelation(Q_i, K_i, V_i)``).
  TSL averages the correlation over all heads and channels and, while training, also over the batch
  (its "speed-up version"). Per-head delays also make heads exactly prunable: a removed head
  changes nothing in the others;
* heads and FFN widths may differ per layer and ``head_dim`` is explicit.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core import Array
from jaxlab.core._groups import Group

from ._layers import AttentionProjections, DataEmbedding, FeedForward, SeasonalLayerNorm, series_decomposition
from ._transformer import EncoderDecoderSizes, decoder_marks


def correlation_topk(length: int, factor: int) -> int:
    """Number of delays ``floor(c ln L)`` (at least 1, at most ``L``)."""
    return max(1, min(int(factor * math.log(length)), length))


def auto_correlation(q: Array, k: Array, v: Array, *, factor: int) -> Array:
    """Auto-correlation with time-delay aggregation: ``q (B, L, H, E)``, ``k, v (B, S, H, E)`` -> ``(B, L, H, E)``.

    Keys and values are cut to ``L`` steps or padded with zeros to it. For every batch entry and head,
    the correlation ``R(tau)`` (mean over the head's channels) picks the top ``floor(c ln L)`` delays;
    the output is ``sum_i softmax(R)_i roll(v, -tau_i)`` along time.
    """
    length, s = q.shape[1], k.shape[1]
    if length > s:
        pad = [(0, 0), (0, length - s), (0, 0), (0, 0)]
        k, v = jnp.pad(k, pad), jnp.pad(v, pad)
    else:
        k, v = k[:, :length], v[:, :length]
    qf = jnp.fft.rfft(q, axis=1)
    kf = jnp.fft.rfft(k, axis=1)
    corr = jnp.fft.irfft(qf * jnp.conj(kf), n=length, axis=1)          # (B, L, H, E), lag on axis 1
    mean = jnp.swapaxes(jnp.mean(corr, axis=-1), 1, 2)                  # (B, H, L)
    weights, delays = jax.lax.top_k(mean, correlation_topk(length, factor))
    weights = jax.nn.softmax(weights, axis=-1)                          # (B, H, k)
    vt = jnp.swapaxes(v, 1, 2)                                          # (B, H, L, E)
    steps = jnp.arange(length)
    out = jnp.zeros_like(vt)
    for i in range(delays.shape[-1]):
        idx = (steps[None, None, :] + delays[..., i:i + 1]) % length    # (B, H, L)
        out = out + weights[..., i, None, None] * jnp.take_along_axis(vt, idx[..., None], axis=2)
    return jnp.swapaxes(out, 1, 2)


class AutoformerEncoderLayer(nn.Module):
    """``x + attn(x)``, decompose, ``+ FFN`` (bias-free), decompose; only the seasonal parts go on."""

    d_model: int
    heads: int
    head_dim: int
    d_ff: int
    moving_avg: int
    activation: str = "gelu"
    dropout: float = 0.0
    use_key: bool = True
    use_value: bool = True

    @nn.compact
    def __call__(self, x: Array, inner, *, train: bool = False) -> Array:
        drop = nn.Dropout(self.dropout)
        a = AttentionProjections(self.d_model, self.heads, self.head_dim, self.use_key, self.use_value,
                                 name="attention")(x, x, inner)
        x, _ = series_decomposition(x + drop(a, deterministic=not train), self.moving_avg)
        y = FeedForward(self.d_model, self.d_ff, self.activation, use_bias=False, dropout=self.dropout,
                        name="ffn")(x, train=train)
        x, _ = series_decomposition(x + drop(y, deterministic=not train), self.moving_avg)
        return x


class AutoformerDecoderLayer(nn.Module):
    """Self and cross blocks and FFN, each followed by a decomposition; returns (seasonal, trend increment)."""

    d_model: int
    channels: int
    self_heads: int
    cross_heads: int
    head_dim: int
    d_ff: int
    moving_avg: int
    activation: str = "gelu"
    dropout: float = 0.0
    self_key: bool = True
    self_value: bool = True
    cross_value: bool = True

    @nn.compact
    def __call__(self, x: Array, cross: Array, self_inner, cross_inner, *, train: bool = False):
        drop = nn.Dropout(self.dropout)
        a = AttentionProjections(self.d_model, self.self_heads, self.head_dim, self.self_key, self.self_value,
                                 name="self_attention")(x, x, self_inner)
        x, t1 = series_decomposition(x + drop(a, deterministic=not train), self.moving_avg)
        a = AttentionProjections(self.d_model, self.cross_heads, self.head_dim, True, self.cross_value,
                                 name="cross_attention")(x, cross, cross_inner)
        x, t2 = series_decomposition(x + drop(a, deterministic=not train), self.moving_avg)
        y = FeedForward(self.d_model, self.d_ff, self.activation, use_bias=False, dropout=self.dropout,
                        name="ffn")(x, train=train)
        x, t3 = series_decomposition(x + drop(y, deterministic=not train), self.moving_avg)
        trend = nn.Conv(self.channels, (3,), padding="CIRCULAR", use_bias=False, name="trend_projection")(
            t1 + t2 + t3)
        return x, trend


def decoder_init(x: Array, label_len: int, horizon: int, moving_avg: int) -> tuple[Array, Array]:
    """Autoformer's decoder start: (seasonal of the last ``label_len`` steps + zeros, their trend + the mean)."""
    seasonal, trend = series_decomposition(x, moving_avg)
    b, length, c = x.shape
    mean = jnp.broadcast_to(jnp.mean(x, axis=1, keepdims=True), (b, horizon, c))
    seasonal = jnp.concatenate([seasonal[:, length - label_len:], jnp.zeros((b, horizon, c), x.dtype)], 1)
    trend = jnp.concatenate([trend[:, length - label_len:], mean], 1)
    return seasonal, trend


class Autoformer(nn.Module):
    """Autoformer ``(B, L, C) -> (B, H, C)`` (see the module docstring)."""

    config: "AutoformerConfig"

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        c = self.config
        heads, ffn, hd = c.heads_per_block(c.num_attention), c.ffn_per_layer(c.num_ffn), c.resolved_head_dim()
        inner = partial(auto_correlation, factor=c.factor)
        seasonal, trend = decoder_init(x, c.label_len, c.horizon, c.moving_avg)
        h = DataEmbedding(c.d_model, c.time_features, False, c.dropout, name="enc_embedding")(x, x_mark, train=train)
        for i in range(c.e_layers):
            h = AutoformerEncoderLayer(c.d_model, heads[i], hd, ffn[i], c.moving_avg, c.activation, c.dropout,
                                       name=f"encoder_{i}")(h, inner, train=train)
        h = SeasonalLayerNorm(name="encoder_norm")(h)
        d = DataEmbedding(c.d_model, c.time_features, False, c.dropout, name="dec_embedding")(
            seasonal, decoder_marks(x_mark, future_mark, c.label_len), train=train)
        for j in range(c.d_layers):
            idx = c.e_layers + 2 * j
            d, t = AutoformerDecoderLayer(c.d_model, c.channels, heads[idx], heads[idx + 1], hd,
                                          ffn[c.e_layers + j], c.moving_avg, c.activation, c.dropout,
                                          name=f"decoder_{j}")(d, h, inner, inner, train=train)
            trend = trend + t
        d = SeasonalLayerNorm(name="decoder_norm")(d)
        out = trend + nn.Dense(c.channels, name="projection")(d)
        return out[:, -c.horizon:]


@dataclasses.dataclass(frozen=True)
class AutoformerConfig(EncoderDecoderSizes):
    """Config of :class:`Autoformer` (TSL defaults, ``factor`` 3 as TSL's scripts).

    Attributes:
      factor: auto-correlation keeps ``floor(factor ln L)`` delays.
      moving_avg: decomposition window (odd).
    """

    factor: int = 3
    moving_avg: int = 25

    def module(self) -> Autoformer:
        self.check()
        if self.moving_avg < 1 or self.moving_avg % 2 == 0:
            raise ValueError(f"moving_avg must be an odd positive integer, got {self.moving_avg}")
        return Autoformer(self)

    def dependency_groups(self) -> tuple[Group, ...]:
        return self.attention_groups() + self.ffn_groups(bias=False)
