"""The vanilla Transformer forecaster: Vaswani et al., "Attention Is All You Need" (NeurIPS 2017, arXiv 1706.03762).

As thuml/Time-Series-Library's ``models/Transformer.py`` runs it for long-horizon forecasting: the
history ``(B, L, C)`` is embedded (token convolution, time features, sinusoidal positions) and
encoded by ``e_layers`` post-norm layers (full attention, GELU FFN); the decoder reads the last
``label_len`` steps of the history followed by ``horizon`` zeros, with causal self-attention and
cross-attention to the encoder, and a linear map gives the ``C`` channels of the last ``horizon``
steps.

Deviations from Time-Series-Library: the decoder input is built inside the model from the history
(TSL builds the same tensor in its experiment loop); heads and FFN widths may differ per layer and
``head_dim`` is explicit, so a structurally pruned model is an ordinary config.

Attention blocks (for a per-block ``n_heads``) are ordered ``encoder_0 .. encoder_{e-1}``, then
``decoder_j`` self and cross for each decoder layer; FFNs ``encoder_*`` then ``decoder_*``.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.core import Array
from jaxlab.core._groups import Group

from ._layers import AttentionProjections, DataEmbedding, FeedForward, LayerSizes, ffn_group, full_attention, head_group

Inner = Callable[[Array, Array, Array], Array]


class EncoderLayer(nn.Module):
    """TSL ``EncoderLayer``: ``x + attn(x)``, norm, ``+ FFN``, norm (post-norm)."""

    d_model: int
    heads: int
    head_dim: int
    d_ff: int
    activation: str = "gelu"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, inner: Inner, *, train: bool = False) -> Array:
        drop = nn.Dropout(self.dropout)
        a = AttentionProjections(self.d_model, self.heads, self.head_dim, name="attention")(x, x, inner)
        x = nn.LayerNorm(epsilon=1e-5, name="norm1")(x + drop(a, deterministic=not train))
        y = FeedForward(self.d_model, self.d_ff, self.activation, dropout=self.dropout, name="ffn")(x, train=train)
        return nn.LayerNorm(epsilon=1e-5, name="norm2")(x + drop(y, deterministic=not train))


class DecoderLayer(nn.Module):
    """TSL ``DecoderLayer``: self-attention, cross-attention and FFN, each residual and post-norm."""

    d_model: int
    self_heads: int
    cross_heads: int
    head_dim: int
    d_ff: int
    activation: str = "gelu"
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, cross: Array, self_inner: Inner, cross_inner: Inner, *,
                 train: bool = False) -> Array:
        drop = nn.Dropout(self.dropout)
        a = AttentionProjections(self.d_model, self.self_heads, self.head_dim, name="self_attention")(x, x, self_inner)
        x = nn.LayerNorm(epsilon=1e-5, name="norm1")(x + drop(a, deterministic=not train))
        a = AttentionProjections(self.d_model, self.cross_heads, self.head_dim, name="cross_attention")(
            x, cross, cross_inner)
        x = nn.LayerNorm(epsilon=1e-5, name="norm2")(x + drop(a, deterministic=not train))
        y = FeedForward(self.d_model, self.d_ff, self.activation, dropout=self.dropout, name="ffn")(x, train=train)
        return nn.LayerNorm(epsilon=1e-5, name="norm3")(x + drop(y, deterministic=not train))


def decode(c, heads, hd: int, ffn, enc: Array, x: Array, x_mark: Array | None, future_mark: Array | None,
           attention: Callable[[int, bool], Callable], *, train: bool) -> Array:
    """The shared decoder of the encoder-decoder zoo models, called inside their compact ``__call__``.

    Embeds the decoder input (the last ``label_len`` steps, then zeros), runs ``c.d_layers``
    :class:`DecoderLayer`, normalises and projects to ``(B, horizon, channels)``. ``attention(idx, causal)``
    gives the attention of head group ``idx`` (self-attention ``e_layers + 2 j``, cross ``+ 1``).
    """
    d = DataEmbedding(c.d_model, c.time_features, True, c.dropout, name="dec_embedding")(
        decoder_input(x, c.label_len, c.horizon), decoder_marks(x_mark, future_mark, c.label_len), train=train)
    for j in range(c.d_layers):
        idx = c.e_layers + 2 * j
        d = DecoderLayer(c.d_model, heads[idx], heads[idx + 1], hd, ffn[c.e_layers + j], c.activation,
                         c.dropout, name=f"decoder_{j}")(
            d, enc, attention(idx, True), attention(idx + 1, False), train=train)
    d = nn.LayerNorm(epsilon=1e-5, name="decoder_norm")(d)
    return nn.Dense(c.channels, name="projection")(d)[:, -c.horizon:]


def decoder_input(x: Array, label_len: int, horizon: int) -> Array:
    """The last ``label_len`` steps of the history followed by ``horizon`` zeros (TSL's ``dec_inp``)."""
    zeros = jnp.zeros((x.shape[0], horizon, x.shape[2]), x.dtype)
    return jnp.concatenate([x[:, x.shape[1] - label_len:], zeros], axis=1)


def decoder_marks(x_mark: Array | None, future_mark: Array | None, label_len: int) -> Array | None:
    """Time features of the decoder steps: the history's last ``label_len`` and the forecast's."""
    if x_mark is None or future_mark is None:
        return None
    return jnp.concatenate([x_mark[:, x_mark.shape[1] - label_len:], future_mark], axis=1)


@dataclasses.dataclass(frozen=True)
class EncoderDecoderSizes(LayerSizes):
    """Sizes of the TSL encoder-decoder forecasters (Transformer, Informer, Autoformer, FEDformer).

    Attributes:
      label_len: history steps the decoder starts from (TSL 48).
      e_layers, d_layers: encoder and decoder layers (TSL 2 and 1).
      activation: FFN activation (TSL ``gelu``).
    """

    label_len: int = 48
    e_layers: int = 2
    d_layers: int = 1
    activation: str = "gelu"

    @property
    def num_attention(self) -> int:
        return self.e_layers + 2 * self.d_layers

    @property
    def num_ffn(self) -> int:
        return self.e_layers + self.d_layers

    def check(self) -> None:
        if not 0 < self.label_len <= self.input_len:
            raise ValueError(f"label_len must be in [1, input_len={self.input_len}], got {self.label_len}")
        if self.e_layers < 1 or self.d_layers < 1:
            raise ValueError(f"e_layers and d_layers must be >= 1, got {self.e_layers}, {self.d_layers}")
        self.heads_per_block(self.num_attention)
        self.ffn_per_layer(self.num_ffn)
        self.resolved_head_dim()

    def attention_groups(self, *, key: Callable[[str], bool] = lambda role: True,
                         value: Callable[[str], bool] = lambda role: True) -> tuple[Group, ...]:
        """Head groups of every attention block (``role`` is ``"encoder"``, ``"self"`` or ``"cross"``)."""
        heads, hd, n = self.heads_per_block(self.num_attention), self.resolved_head_dim(), self.num_attention
        groups = []
        for i in range(self.e_layers):
            groups.append(head_group(f"encoder_{i}/heads", (f"encoder_{i}", "attention"), heads[i], hd,
                                     self.heads_resize(n, i), key=key("encoder"), value=value("encoder")))
        for j in range(self.d_layers):
            for r, (role, name) in enumerate((("self", "self_attention"), ("cross", "cross_attention"))):
                idx = self.e_layers + 2 * j + r
                groups.append(head_group(f"decoder_{j}/{role}_heads", (f"decoder_{j}", name), heads[idx], hd,
                                         self.heads_resize(n, idx), key=key(role), value=value(role)))
        return tuple(groups)

    def ffn_groups(self, *, bias: bool = True) -> tuple[Group, ...]:
        ffn, n = self.ffn_per_layer(self.num_ffn), self.num_ffn
        names = [f"encoder_{i}" for i in range(self.e_layers)] + [f"decoder_{j}" for j in range(self.d_layers)]
        return tuple(ffn_group(f"{name}/ffn", (name, "ffn"), ffn[i], self.ffn_resize(n, i), bias=bias)
                     for i, name in enumerate(names))


class Transformer(nn.Module):
    """The vanilla Transformer forecaster ``(B, L, C) -> (B, H, C)`` (see the module docstring)."""

    config: "TransformerConfig"

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        c = self.config
        heads, ffn, hd = c.heads_per_block(c.num_attention), c.ffn_per_layer(c.num_ffn), c.resolved_head_dim()
        h = DataEmbedding(c.d_model, c.time_features, True, c.dropout, name="enc_embedding")(x, x_mark, train=train)
        for i in range(c.e_layers):
            h = EncoderLayer(c.d_model, heads[i], hd, ffn[i], c.activation, c.dropout, name=f"encoder_{i}")(
                h, partial(full_attention, causal=False), train=train)
        h = nn.LayerNorm(epsilon=1e-5, name="encoder_norm")(h)
        return decode(c, heads, hd, ffn, h, x, x_mark, future_mark,
                      lambda idx, causal: partial(full_attention, causal=causal), train=train)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(EncoderDecoderSizes):
    """Config of :class:`Transformer` (Time-Series-Library defaults; see :class:`EncoderDecoderSizes`)."""

    def module(self) -> Transformer:
        self.check()
        return Transformer(self)

    def dependency_groups(self) -> tuple[Group, ...]:
        return self.attention_groups() + self.ffn_groups()
