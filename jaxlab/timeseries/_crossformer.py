"""Crossformer: Zhang & Yan, "Crossformer: Transformer Utilizing Cross-Dimension Dependency for
Multivariate Time Series Forecasting" (ICLR 2023, openreview vSVLM2j9eie).

As thuml/Time-Series-Library's ``models/Crossformer.py``:

* **dimension-segment-wise embedding** (:class:`SegmentEmbedding`): each channel's history is cut
  into segments of ``seg_len`` steps (the end padded by repeating the last step), each segment mapped
  linearly to ``d_model``, plus a learned position per (channel, segment) and fixed sinusoidal
  positions per segment, then a layer norm: ``(B, C, segments, d_model)``;
* **two-stage attention** (:class:`TwoStageAttention`): attention across time segments within each
  channel, then across channels through a **router**: ``routers`` learned vectors per segment gather
  the channels' messages (sender) and hand them back (receiver), so the channel stage costs
  ``O(C routers)`` instead of ``O(C^2)``;
* a hierarchical encoder (segment merging by ``win_size`` between scales) and a decoder that
  attends to every scale and sums the per-layer linear forecasts of each segment.

Deviations from Time-Series-Library: heads, FFN widths and router counts may differ per block
(after pruning) and ``head_dim`` is explicit; ``routers`` defaults to TSL's scripts' ``factor`` 3
(the paper uses 10).

Blocks, for per-block sizes: the two-stage attention blocks (TSA) are ``encoder_0 .. encoder_{e-1}``,
then ``decoder_0 .. decoder_e``; ``n_heads`` lists, per TSA, ``time, sender, receiver`` (and then
``cross`` for a decoder layer); ``d_ff`` lists ``mlp1, mlp2`` per TSA; ``decoder_mlp`` the hidden
width of each decoder layer's MLP (TSL: ``d_model``); ``routers`` one entry per TSA.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.core import Array
from jaxlab.core._groups import Axis, Group

from ._layers import AttentionProjections, FeedForward, LayerSizes, ffn_group, full_attention, head_group, per_layer
from ._layers import set_entry, sinusoidal_positions

_ATTN = partial(full_attention, causal=False)


class TwoStageAttention(nn.Module):
    """Crossformer's TSA layer on ``(B, C, S, d_model)``: cross-time stage, then cross-dimension stage with routers."""

    d_model: int
    segments: int
    routers: int
    heads: tuple[int, int, int]
    head_dim: int
    d_ff: tuple[int, int]
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        b, c, s, d = x.shape
        drop = nn.Dropout(self.dropout)
        ln = partial(nn.LayerNorm, epsilon=1e-5)
        t = x.reshape(b * c, s, d)
        a = AttentionProjections(d, self.heads[0], self.head_dim, name="time_attention")(t, t, _ATTN)
        t = ln(name="norm1")(t + drop(a, deterministic=not train))
        y = FeedForward(d, self.d_ff[0], "gelu", dropout=0.0, name="mlp1")(t)
        t = ln(name="norm2")(t + drop(y, deterministic=not train))
        send = t.reshape(b, c, s, d).transpose(0, 2, 1, 3).reshape(b * s, c, d)
        router = self.param("router", nn.initializers.normal(1.0), (self.segments, self.routers, d))
        router = jnp.broadcast_to(router[None], (b,) + router.shape).reshape(b * s, self.routers, d)
        buffer = AttentionProjections(d, self.heads[1], self.head_dim, name="dim_sender")(router, send, _ATTN)
        receive = AttentionProjections(d, self.heads[2], self.head_dim, name="dim_receiver")(send, buffer, _ATTN)
        e = ln(name="norm3")(send + drop(receive, deterministic=not train))
        y = FeedForward(d, self.d_ff[1], "gelu", dropout=0.0, name="mlp2")(e)
        e = ln(name="norm4")(e + drop(y, deterministic=not train))
        return e.reshape(b, s, c, d).transpose(0, 2, 1, 3)


def two_stage_attention_reference(tsa_params: dict, x, *, heads: tuple[int, int, int], head_dim: int,
                                  router_keep=None):
    """NumPy oracle of :class:`TwoStageAttention` (no dropout), optionally with only the routers ``router_keep``."""
    import numpy as np
    from scipy.special import erf

    p = tsa_params
    x = np.asarray(x, np.float64)

    def norm(v, name):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * np.asarray(p[name]["scale"]) + np.asarray(p[name]["bias"])

    def mlp(v, name):
        h = v @ np.asarray(p[name]["conv1"]["kernel"]) + np.asarray(p[name]["conv1"]["bias"])
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        return h @ np.asarray(p[name]["conv2"]["kernel"]) + np.asarray(p[name]["conv2"]["bias"])

    def mha(xq, xkv, name, h):
        pp = p[name]
        lin = lambda v, n: v @ np.asarray(pp[n]["kernel"], np.float64) + np.asarray(pp[n]["bias"])  # noqa: E731
        q, k, v = lin(xq, "query"), lin(xkv, "key"), lin(xkv, "value")
        outs = []
        for i in range(h):
            sl = slice(i * head_dim, (i + 1) * head_dim)
            sc = q[..., sl] @ np.swapaxes(k[..., sl], -1, -2) / np.sqrt(head_dim)
            w = np.exp(sc - sc.max(-1, keepdims=True))
            outs.append((w / w.sum(-1, keepdims=True)) @ v[..., sl])
        return lin(np.concatenate(outs, -1), "out")

    b, c, s, d = x.shape
    t = x.reshape(b * c, s, d)
    t = norm(t + mha(t, t, "time_attention", heads[0]), "norm1")
    t = norm(t + mlp(t, "mlp1"), "norm2")
    send = t.reshape(b, c, s, d).transpose(0, 2, 1, 3).reshape(b * s, c, d)
    router = np.asarray(p["router"], np.float64)
    if router_keep is not None:
        router = router[:, np.asarray(router_keep)]
    router = np.broadcast_to(router[None], (b,) + router.shape).reshape(b * s, router.shape[1], d)
    buf = mha(router, send, "dim_sender", heads[1])
    e = norm(send + mha(send, buf, "dim_receiver", heads[2]), "norm3")
    e = norm(e + mlp(e, "mlp2"), "norm4")
    return e.reshape(b, s, c, d).transpose(0, 2, 1, 3)


class SegmentEmbedding(nn.Module):
    """Dimension-segment-wise embedding ``(B, L, C) -> (B, C, S, d_model)`` (see the module docstring)."""

    d_model: int
    seg_len: int
    channels: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, length, c = x.shape
        padded = math.ceil(length / self.seg_len) * self.seg_len
        series = jnp.swapaxes(x, 1, 2)
        if padded > length:
            series = jnp.concatenate([series, jnp.repeat(series[..., -1:], padded - length, -1)], -1)
        segs = series.reshape(b, c, padded // self.seg_len, self.seg_len)
        out = nn.Dense(self.d_model, use_bias=False, name="value_embedding")(segs)
        out = out + jnp.asarray(sinusoidal_positions(segs.shape[2], self.d_model), out.dtype)
        pos = self.param("position", nn.initializers.normal(1.0), (1, self.channels, segs.shape[2], self.d_model))
        return nn.LayerNorm(epsilon=1e-5, name="pre_norm")(out + pos)


class SegmentMerging(nn.Module):
    """Merge ``win_size`` neighbouring segments: concatenate (the end padded by repeating), layer norm, linear."""

    d_model: int
    win_size: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        s = x.shape[2]
        pad = (-s) % self.win_size
        if pad:
            x = jnp.concatenate([x, x[:, :, s - pad:]], axis=2)
        x = jnp.concatenate([x[:, :, i::self.win_size] for i in range(self.win_size)], axis=-1)
        x = nn.LayerNorm(epsilon=1e-5, name="norm")(x)
        return nn.Dense(self.d_model, name="linear")(x)


class CrossformerDecoderLayer(nn.Module):
    """TSA on the decoder segments, cross-attention to one encoder scale, MLP, and a linear forecast per segment."""

    d_model: int
    segments: int
    routers: int
    tsa_heads: tuple[int, int, int]
    cross_heads: int
    head_dim: int
    d_ff: tuple[int, int]
    mlp: int
    seg_len: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, cross: Array, *, train: bool = False) -> tuple[Array, Array]:
        x = TwoStageAttention(self.d_model, self.segments, self.routers, self.tsa_heads, self.head_dim, self.d_ff,
                              self.dropout, name="tsa")(x, train=train)
        b, c, s, d = x.shape
        q = x.reshape(b * c, s, d)
        kv = cross.reshape(b * c, cross.shape[2], d)
        a = AttentionProjections(d, self.cross_heads, self.head_dim, name="cross_attention")(q, kv, _ATTN)
        q = nn.LayerNorm(epsilon=1e-5, name="norm1")(q + nn.Dropout(self.dropout)(a, deterministic=not train))
        y = FeedForward(d, self.mlp, "gelu", name="mlp")(q)
        out = nn.LayerNorm(epsilon=1e-5, name="norm2")(q + y).reshape(b, c, s, d)
        return out, nn.Dense(self.seg_len, name="linear_pred")(out)


class Crossformer(nn.Module):
    """Crossformer ``(B, L, C) -> (B, H, C)`` (see the module docstring); time features are not used."""

    config: "CrossformerConfig"

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        del x_mark, future_mark
        c = self.config
        heads, ffn, routers = c.block_heads(), c.block_ffn(), per_layer(c.routers, c.num_tsa, "routers")
        mlp = per_layer(c.decoder_mlp if c.decoder_mlp is not None else c.d_model, c.e_layers + 1, "decoder_mlp")
        hd = c.resolved_head_dim()
        h = SegmentEmbedding(c.d_model, c.seg_len, c.channels, name="enc_embedding")(x)
        scales = [h]
        for i, seg in enumerate(c.encoder_segments()):
            if i > 0:
                h = SegmentMerging(c.d_model, c.win_size, name=f"encoder_{i}_merge")(h)
            h = TwoStageAttention(c.d_model, seg, routers[i], heads[i], hd, ffn[i], c.dropout,
                                  name=f"encoder_{i}")(h, train=train)
            scales.append(h)
        out_seg = c.out_segments()
        pos = self.param("dec_position", nn.initializers.normal(1.0), (1, c.channels, out_seg, c.d_model))
        d = jnp.broadcast_to(pos, (x.shape[0],) + pos.shape[1:])
        pred = 0.0
        for j in range(c.e_layers + 1):
            t = c.e_layers + j
            d, p = CrossformerDecoderLayer(c.d_model, out_seg, routers[t], heads[t][:3], heads[t][3], hd, ffn[t],
                                           mlp[j], c.seg_len, c.dropout, name=f"decoder_{j}")(d, scales[j], train=train)
            pred = pred + p
        b = x.shape[0]
        y = pred.reshape(b, c.channels, out_seg * c.seg_len)
        return jnp.swapaxes(y, 1, 2)[:, :c.horizon]


@dataclasses.dataclass(frozen=True)
class CrossformerConfig(LayerSizes):
    """Config of :class:`Crossformer` (TSL: segments of 12, merging windows of 2, 2 encoder scales).

    Attributes:
      e_layers: encoder scales (the decoder has ``e_layers + 1`` layers).
      seg_len: segment length.
      win_size: segments merged between scales.
      routers: router vectors per segment in each TSA (TSL ``factor``), an int or one per TSA.
      decoder_mlp: hidden width of the decoder MLPs (None: ``d_model``, as TSL).
    """

    e_layers: int = 2
    seg_len: int = 12
    win_size: int = 2
    routers: int | tuple[int, ...] = 3
    decoder_mlp: int | tuple[int, ...] | None = None

    def module(self) -> Crossformer:
        if self.e_layers < 1 or self.seg_len < 1 or self.win_size < 1:
            raise ValueError("e_layers, seg_len and win_size must be >= 1")
        self.block_heads()
        self.block_ffn()
        per_layer(self.routers, self.num_tsa, "routers")
        return Crossformer(self)

    @property
    def num_tsa(self) -> int:
        return 2 * self.e_layers + 1

    @property
    def num_heads_entries(self) -> int:
        return 3 * self.e_layers + 4 * (self.e_layers + 1)

    def encoder_segments(self) -> tuple[int, ...]:
        in_seg = math.ceil(self.input_len / self.seg_len)
        return tuple(in_seg if i == 0 else math.ceil(in_seg / self.win_size ** i) for i in range(self.e_layers))

    def out_segments(self) -> int:
        return math.ceil(self.horizon / self.seg_len)

    def block_heads(self) -> tuple[tuple[int, ...], ...]:
        flat = self.heads_per_block(self.num_heads_entries)
        out, i = [], 0
        for t in range(self.num_tsa):
            n = 3 if t < self.e_layers else 4
            out.append(tuple(flat[i:i + n]))
            i += n
        return tuple(out)

    def block_ffn(self) -> tuple[tuple[int, int], ...]:
        flat = self.ffn_per_layer(2 * self.num_tsa)
        return tuple((flat[2 * t], flat[2 * t + 1]) for t in range(self.num_tsa))

    def _tsa_names(self) -> tuple[str, ...]:
        return tuple(f"encoder_{i}" for i in range(self.e_layers)) + tuple(
            f"decoder_{j}/tsa" for j in range(self.e_layers + 1))

    def dependency_groups(self) -> tuple[Group, ...]:
        hd, n_heads = self.resolved_head_dim(), self.num_heads_entries
        heads, ffn = self.block_heads(), self.block_ffn()
        routers = per_layer(self.routers, self.num_tsa, "routers")
        mlp = per_layer(self.decoder_mlp if self.decoder_mlp is not None else self.d_model, self.e_layers + 1,
                        "decoder_mlp")
        groups, flat = [], 0
        for t, name in enumerate(self._tsa_names()):
            prefix = tuple(name.split("/"))
            roles = ("time_attention", "dim_sender", "dim_receiver")
            for r, role in enumerate(roles):
                groups.append(head_group(f"{name}/{role}", prefix + (role,), heads[t][r], hd,
                                         self.heads_resize(n_heads, flat)))
                flat += 1
            if t >= self.e_layers:
                dec = name.split("/")[0]
                groups.append(head_group(f"{dec}/cross_attention", (dec, "cross_attention"), heads[t][3], hd,
                                         self.heads_resize(n_heads, flat)))
                flat += 1
            for r in range(2):
                groups.append(ffn_group(f"{name}/mlp{r + 1}", prefix + (f"mlp{r + 1}",), ffn[t][r],
                                        self.ffn_resize(2 * self.num_tsa, 2 * t + r)))
            groups.append(Group(f"{name}/routers", routers[t], (Axis(("params",) + prefix + ("router",), 1),),
                                self._router_resize(t)))
        for j in range(self.e_layers + 1):
            groups.append(ffn_group(f"decoder_{j}/mlp", (f"decoder_{j}", "mlp"), mlp[j], self._mlp_resize(j)))
        return tuple(groups)

    def _router_resize(self, t: int):
        return lambda config, kept: set_entry(config, "routers", config.num_tsa, t, len(kept))

    def _mlp_resize(self, j: int):
        def resize(config, kept):
            base = config if config.decoder_mlp is not None else dataclasses.replace(config, decoder_mlp=config.d_model)
            return set_entry(base, "decoder_mlp", config.e_layers + 1, j, len(kept))
        return resize

