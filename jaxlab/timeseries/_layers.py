"""Building blocks shared by the transformer forecasters (after thuml/Time-Series-Library's layers).

* :class:`DataEmbedding`: a circular width-3 convolution of the channels (TSL ``TokenEmbedding``),
  a bias-free linear map of the time features (TSL ``TimeFeatureEmbedding``) and, optionally, fixed
  sinusoidal positions;
* :class:`AttentionProjections`: the ``query/key/value/out`` dense maps around an inner attention
  (TSL ``AttentionLayer``/``AutoCorrelationLayer``), with ``heads`` and ``head_dim`` explicit so that
  pruned heads leave the head width alone;
* :func:`full_attention` (scaled dot-product, optionally causal) and :class:`FeedForward` (TSL's
  two width-1 convolutions, i.e. two dense maps);
* :func:`series_decomposition` (Autoformer/FEDformer) and :class:`SeasonalLayerNorm`;
* helpers that declare the dependency groups of heads and FFN units (:func:`head_group`,
  :func:`ffn_group`) and the per-layer size fields of the configs (:class:`LayerSizes`).

Dropout follows TSL (after embeddings, attention outputs and FFN layers, on attention weights);
it is active only with ``train=True`` and then needs a ``"dropout"`` PRNG stream.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array
from jaxlab.core._groups import Axis, Group, replace_fields

P = "params"


# ----------------------------------------------------------------------------- embeddings


def sinusoidal_positions(length: int, d_model: int) -> np.ndarray:
    """Fixed sinusoidal positions ``(length, d_model)``: sin on even, cos on odd features (TSL)."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    div = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * -(math.log(10000.0) / d_model))
    pe = np.zeros((length, d_model))
    pe[:, 0::2] = np.sin(pos * div)
    pe[:, 1::2] = np.cos(pos * div)[:, : d_model // 2]
    return pe


class DataEmbedding(nn.Module):
    """Token convolution + time-feature map (+ positions), then dropout: ``(B, L, C) -> (B, L, d_model)``.

    Attributes:
      d_model: embedding width.
      time_features: number of time features ``F`` (0: no time-feature map); without ``marks`` the
        map sees zeros (and adds nothing).
      positional: add fixed sinusoidal positions (TSL ``DataEmbedding``; ``DataEmbedding_wo_pos`` without).
      dropout: dropout rate.
    """

    d_model: int
    time_features: int = 0
    positional: bool = True
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, marks: Array | None = None, *, train: bool = False) -> Array:
        init = nn.initializers.variance_scaling(2.0 / (1 + 0.01**2), "fan_in", "normal")  # kaiming, leaky_relu
        out = nn.Conv(self.d_model, (3,), padding="CIRCULAR", use_bias=False, kernel_init=init,
                      name="token")(x)
        if self.time_features:
            if marks is None:
                marks = jnp.zeros(x.shape[:2] + (self.time_features,), x.dtype)
            out = out + nn.Dense(self.d_model, use_bias=False, name="time")(marks)
        if self.positional:
            out = out + jnp.asarray(sinusoidal_positions(x.shape[1], self.d_model), out.dtype)
        return nn.Dropout(self.dropout)(out, deterministic=not train)


# ----------------------------------------------------------------------------- attention


def full_attention(q: Array, k: Array, v: Array, *, causal: bool = False) -> Array:
    """Softmax attention per head: ``q (B, Lq, H, E)``, ``k, v (B, Lk, H, E)`` -> ``(B, Lq, H, E)``.

    ``causal`` masks key ``j > i`` for query ``i`` (needs ``Lq == Lk``). Scores are scaled by ``1/sqrt(E)``.
    """
    scores = jnp.einsum("blhe,bshe->bhls", q, k) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    if causal:
        lq, lk = q.shape[1], k.shape[1]
        mask = jnp.tril(jnp.ones((lq, lk), bool))
        scores = jnp.where(mask, scores, -jnp.inf)
    return jnp.einsum("bhls,bshe->blhe", jax.nn.softmax(scores, axis=-1), v)


Inner = Callable[..., Array]


class AttentionProjections(nn.Module):
    """``out(inner(query(x_q), key(x_kv), value(x_kv)))`` with ``heads`` heads of ``head_dim`` features.

    ``inner(q, k, v)`` gets ``(B, L, H, E)`` arrays and returns ``(B, Lq, H, E)``. ``use_key`` and
    ``use_value`` drop projections an inner block never reads (FEDformer's Fourier blocks).
    """

    d_model: int
    heads: int
    head_dim: int
    use_key: bool = True
    use_value: bool = True

    @nn.compact
    def __call__(self, x_q: Array, x_kv: Array, inner: Inner) -> Array:
        width = self.heads * self.head_dim

        def split(t):
            return t.reshape(t.shape[:-1] + (self.heads, self.head_dim))

        q = split(nn.Dense(width, name="query")(x_q))
        k = split(nn.Dense(width, name="key")(x_kv)) if self.use_key else None
        v = split(nn.Dense(width, name="value")(x_kv)) if self.use_value else None
        out = inner(q, k, v)
        return nn.Dense(self.d_model, name="out")(out.reshape(out.shape[:-2] + (width,)))


class FeedForward(nn.Module):
    """``conv2(dropout(act(conv1(x))))`` with ``d_ff`` hidden units (TSL's width-1 convolutions)."""

    d_model: int
    d_ff: int
    activation: str = "gelu"
    use_bias: bool = True
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        y = activation_fn(self.activation)(nn.Dense(self.d_ff, use_bias=self.use_bias, name="conv1")(x))
        y = nn.Dropout(self.dropout)(y, deterministic=not train)
        return nn.Dense(self.d_model, use_bias=self.use_bias, name="conv2")(y)


def activation_fn(name: str) -> Callable[[Array], Array]:
    """``"relu"`` or ``"gelu"`` (exact erf GELU, as torch's default)."""
    if name == "relu":
        return nn.relu
    if name == "gelu":
        return lambda x: nn.gelu(x, approximate=False)
    raise ValueError(f"activation must be 'relu' or 'gelu', got {name!r}")


# ----------------------------------------------------------------------------- decomposition


def series_decomposition(x: Array, kernel: int) -> tuple[Array, Array]:
    """Autoformer's ``series_decomp`` along time: ``x (B, L, D) -> (seasonal, trend)``, trend = moving average.

    The moving average is centred with edge replication, as ``jaxlab.timeseries.moving_average``, but
    summed over a sliding window (``lax.reduce_window``, ``O(L kernel)``, TSL's ``AvgPool1d``) rather
    than from a cumulative sum, which XLA lowers to an ``O(L^2)`` window reduction on CPU.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd positive integer, got {kernel}")
    pad = (kernel - 1) // 2
    xp = jnp.concatenate([jnp.repeat(x[:, :1], pad, 1), x, jnp.repeat(x[:, -1:], pad, 1)], 1)
    total = jax.lax.reduce_window(xp, 0.0, jax.lax.add, (1, kernel, 1), (1, 1, 1), "VALID")
    trend = total / jnp.asarray(kernel, x.dtype)
    return x - trend, trend


class SeasonalLayerNorm(nn.Module):
    """Autoformer's ``my_Layernorm``: layer norm, then the mean over time removed."""

    @nn.compact
    def __call__(self, x: Array) -> Array:
        x_hat = nn.LayerNorm(epsilon=1e-5, name="norm")(x)
        return x_hat - jnp.mean(x_hat, axis=1, keepdims=True)


# ----------------------------------------------------------------------------- sizes and groups


def per_layer(value: int | tuple[int, ...], count: int, name: str) -> tuple[int, ...]:
    """``value`` for each of ``count`` layers (an int is broadcast; a tuple must have ``count`` entries)."""
    if isinstance(value, int):
        return (value,) * count
    value = tuple(int(v) for v in value)
    if len(value) != count:
        raise ValueError(f"{name} has {len(value)} entries but the model has {count} such layers; pass one "
                         f"int for all or a tuple of {count}")
    return value


def set_entry(config: Any, name: str, count: int, index: int, value: int) -> Any:
    """``config`` with entry ``index`` of the per-layer field ``name`` set to ``value`` (the field becomes a tuple)."""
    sizes = list(per_layer(getattr(config, name), count, name))
    sizes[index] = int(value)
    return replace_fields(config, **{name: tuple(sizes)})


def head_group(name: str, prefix: tuple[str, ...], heads: int, head_dim: int,
               resize: Callable[[Any, np.ndarray], Any], *, key: bool = True, value: bool = True,
               extra: tuple[Axis, ...] = ()) -> Group:
    """The heads of one :class:`AttentionProjections` at ``prefix``: q/k/v columns with the out rows."""
    axes = []
    for proj, used in (("query", True), ("key", key), ("value", value)):
        if used:
            axes += [Axis((P, *prefix, proj, "kernel"), 1, block=head_dim),
                     Axis((P, *prefix, proj, "bias"), 0, block=head_dim, score=False)]
    axes.append(Axis((P, *prefix, "out", "kernel"), 0, block=head_dim))
    return Group(name, heads, tuple(axes) + tuple(extra), resize)


def ffn_group(name: str, prefix: tuple[str, ...], units: int, resize: Callable[[Any, np.ndarray], Any], *,
              bias: bool = True, first: str = "conv1", second: str = "conv2") -> Group:
    """The hidden units of a two-layer MLP at ``prefix``: ``first`` columns (and bias) with ``second`` rows."""
    axes = [Axis((P, *prefix, first, "kernel"), 1)]
    if bias:
        axes.append(Axis((P, *prefix, first, "bias"), 0, score=False))
    axes.append(Axis((P, *prefix, second, "kernel"), 0))
    return Group(name, units, tuple(axes), resize)


@dataclasses.dataclass(frozen=True)
class LayerSizes:
    """Sizes shared by the zoo configs; ``n_heads`` and ``d_ff`` may be per layer (after pruning).

    Attributes:
      input_len: history length ``L`` (TSL ``seq_len``).
      horizon: forecast length ``H`` (TSL ``pred_len``).
      channels: number of series ``C``.
      d_model: width of the residual stream.
      n_heads: heads per attention block (an int, or one per block in the model's documented order).
      d_ff: FFN hidden units (an int, or one per FFN).
      head_dim: features per head (None: ``d_model // n_heads``); pruning heads keeps it fixed.
      dropout: dropout rate (TSL 0.1).
      time_features: number of time features the embeddings read (0: none).
    """

    input_len: int = 96
    horizon: int = 96
    channels: int = 7
    d_model: int = 512
    n_heads: int | tuple[int, ...] = 8
    d_ff: int | tuple[int, ...] = 2048
    head_dim: int | None = None
    dropout: float = 0.1
    time_features: int = 0

    def resolved_head_dim(self) -> int:
        if self.head_dim is not None:
            return int(self.head_dim)
        if not isinstance(self.n_heads, int):
            raise ValueError("with per-layer n_heads the config needs an explicit head_dim")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; pass head_dim")
        return self.d_model // self.n_heads

    def heads_per_block(self, count: int) -> tuple[int, ...]:
        return per_layer(self.n_heads, count, "n_heads")

    def ffn_per_layer(self, count: int) -> tuple[int, ...]:
        return per_layer(self.d_ff, count, "d_ff")

    def heads_resize(self, count: int, index: int) -> Callable[[Any, np.ndarray], Any]:
        def resize(config, kept):
            hd = config.resolved_head_dim()
            return replace_fields(set_entry(config, "n_heads", count, index, len(kept)), head_dim=hd)
        return resize

    def ffn_resize(self, count: int, index: int) -> Callable[[Any, np.ndarray], Any]:
        return lambda config, kept: set_entry(config, "d_ff", count, index, len(kept))
