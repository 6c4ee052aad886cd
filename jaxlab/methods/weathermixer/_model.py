"""WeatherMixer: an MLP-Mixer over longitude-strip patches of the global grid.

Kieckhefen, Götz, Heyen, Streit, Debus, "Jigsaw: Training Multi-Billion-Parameter AI Weather Models
with Optimized Model Parallelism", arXiv 2507.05753 (model: DeifiliaTo/Jigsaw_SC ``ModelSequential``).

The same Flax modules run on one device (``ops=LocalOps()``), under GSPMD (``LocalOps(mesh)``) and
inside ``shard_map`` as Jigsaw (``ops=JigsawOps.from_mesh(mesh)``): the ``ops`` object supplies the
dense layers and LayerNorms, and under Jigsaw every parameter has its per-device shape.

Layout: a state is ``(batch, lat, lon, channel)``. Tokens are ``lat x (lon / patch)`` longitude
strips, numbered latitude-major, so a device's block of tokens is a block of latitude rows.
Patch features are ordered ``(channel, position in the strip)``, so a block of channels is a block
of features.

Differences from the paper: no dropout (the paper uses 0.001); the concatenations of the head
(``LN(x) ++ embedding`` before patch recovery, ``LN(pred) ++ state`` in the linear residual) are
written as sums of one linear map per part, which is the same function with the same parameter
count; the domain split is over latitude rows instead of longitude (token mixing is global, so
only the data slab each device reads changes); no latent rollout repeat.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from jaxlab.parallel import DATA, SPACE, TENSOR, LocalOps

TOKENS_SPEC = P(DATA, SPACE, TENSOR)  # (batch, tokens, channels) activations
STATE_SPEC = P(DATA, SPACE, None, TENSOR)  # (batch, lat, lon, channels) states


def _param(module: nn.Module, name: str, init, shape: Sequence[int]):
    path = "/".join(tuple(module.scope.path) + (name,))
    return module.param(name, init, module.ops.param_shape(path, shape), module.param_dtype)


class ChannelDense(nn.Module):
    """``sum_i x_i @ W_i + b`` over the last (channel) axis; one kernel per input part.

    Attributes:
      features: global output width.
      in_features: global input width of each part.
      names: kernel name suffix per part (``""`` gives ``kernel``, ``"skip"`` gives ``kernel_skip``).
      ops: ``LocalOps`` or ``JigsawOps``.
    """

    features: int
    in_features: tuple[int, ...]
    names: tuple[str, ...] = ("",)
    ops: Any = LocalOps()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, *xs: jax.Array) -> jax.Array:
        std = 1.0 / math.sqrt(sum(self.in_features))  # as one kernel over the concatenated parts
        pairs = []
        for x, fin, nm in zip(xs, self.in_features, self.names):
            w = _param(self, "kernel" + (f"_{nm}" if nm else ""), nn.initializers.normal(std), (fin, self.features))
            pairs.append((x, w))
        b = _param(self, "bias", nn.initializers.zeros, (self.features,))
        return self.ops.channel_dense(pairs, b)


class TokenDense(nn.Module):
    """Token mixing ``y[b, u, d] = sum_t x[b, t, d] W[t, u] + c[u]``."""

    features: int
    in_features: int
    ops: Any = LocalOps()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        std = 1.0 / math.sqrt(self.in_features)
        w = _param(self, "kernel", nn.initializers.normal(std), (self.in_features, self.features))
        b = _param(self, "bias", nn.initializers.zeros, (self.features,))
        return self.ops.token_dense(x, w, b)


class LayerNorm(nn.Module):
    """LayerNorm over the concatenation of the last axes of several parts (global widths ``sizes``)."""

    sizes: tuple[int, ...]
    names: tuple[str, ...] = ("",)
    eps: float = 1e-5
    ops: Any = LocalOps()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, *parts: jax.Array):
        scales, biases = [], []
        for n, nm in zip(self.sizes, self.names):
            sfx = f"_{nm}" if nm else ""
            scales.append(_param(self, "scale" + sfx, nn.initializers.ones, (n,)))
            biases.append(_param(self, "bias" + sfx, nn.initializers.zeros, (n,)))
        out = self.ops.layer_norm(list(parts), scales, biases, self.eps)
        return out[0] if len(out) == 1 else tuple(out)


class MixerBlock(nn.Module):
    """Pre-LN mixer block: token-mixing MLP, then channel-mixing MLP, each with a residual."""

    tokens: int
    hidden: int
    token_hidden: int
    channel_hidden: int
    ops: Any = LocalOps()
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = LayerNorm((self.hidden,), ops=self.ops, param_dtype=self.param_dtype, name="norm1")(x)
        y = TokenDense(self.token_hidden, self.tokens, ops=self.ops, param_dtype=self.param_dtype, name="token_in")(y)
        y = nn.gelu(y, approximate=False)
        y = TokenDense(self.tokens, self.token_hidden, ops=self.ops, param_dtype=self.param_dtype, name="token_out")(y)
        x = self.ops.constrain(x + y, TOKENS_SPEC)
        y = LayerNorm((self.hidden,), ops=self.ops, param_dtype=self.param_dtype, name="norm2")(x)
        y = ChannelDense(
            self.channel_hidden, (self.hidden,), ops=self.ops, param_dtype=self.param_dtype, name="channel_in"
        )(y)
        y = nn.gelu(y, approximate=False)
        y = ChannelDense(
            self.hidden, (self.channel_hidden,), ops=self.ops, param_dtype=self.param_dtype, name="channel_out"
        )(y)
        return self.ops.constrain(x + y, TOKENS_SPEC)


def patchify(state: jax.Array, patch: int) -> jax.Array:
    """``(B, H, W, C) -> (B, H * W/patch, C * patch)``: longitude strips, features ``(C, patch)``."""
    b, h, w, c = state.shape
    x = state.reshape(b, h, w // patch, patch, c).transpose(0, 1, 2, 4, 3)
    return x.reshape(b, h * (w // patch), c * patch)


def unpatchify(tokens: jax.Array, lat: int, lon: int, patch: int) -> jax.Array:
    """Inverse of :func:`patchify` for ``lat`` rows and ``lon`` columns."""
    b, _, f = tokens.shape
    c = f // patch
    x = tokens.reshape(b, lat, lon // patch, c, patch).transpose(0, 1, 2, 4, 3)
    return x.reshape(b, lat, lon, c)


class WeatherMixer(nn.Module):
    """WeatherMixer forecaster: state ``(B, lat, lon, C)`` at time t -> state at t + lead.

    Attributes:
      grid: ``(lat, lon)`` of the global grid.
      channels: number of state channels (input = output, as in the paper's padded layout).
      patch: longitude strip length (the paper: 60 at 0.25 degrees).
      hidden: embedding width ``D``.
      token_hidden: hidden width of the token MLP (paper: ``tokens * spatial_hidden_frac``).
      channel_hidden: hidden width of the channel MLP (paper: ``D * feature_frac``).
      num_blocks: number of mixer blocks.
      linear_residual: the paper's learned linear residual head; False adds the prediction to the
        input state instead (the reference's ``add``).
      ops: ``LocalOps()`` (default), ``LocalOps(mesh)`` for GSPMD, ``JigsawOps`` inside shard_map.
      param_dtype: parameter dtype (float32 also when x64 is enabled).

    Examples:
      >>> model = WeatherMixer(grid=(4, 8), channels=2, patch=2, hidden=8, token_hidden=8,
      ...                      channel_hidden=8, num_blocks=1)
      >>> x = jnp.zeros((1, 4, 8, 2), jnp.float32)
      >>> params = model.init(jax.random.key(0), x)["params"]
      >>> model.apply({"params": params}, x).shape
      (1, 4, 8, 2)
    """

    grid: tuple[int, int]
    channels: int
    patch: int
    hidden: int
    token_hidden: int
    channel_hidden: int
    num_blocks: int
    linear_residual: bool = True
    ops: Any = LocalOps()
    param_dtype: Any = jnp.float32

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * (self.grid[1] // self.patch)

    @nn.compact
    def __call__(self, state: jax.Array) -> jax.Array:
        lat_local, lon = state.shape[1], state.shape[2]
        c, p, d = self.channels, self.patch, self.hidden
        state = self.ops.constrain(state, STATE_SPEC)
        emb = ChannelDense(d, (c * p,), ops=self.ops, param_dtype=self.param_dtype, name="embed")(patchify(state, p))
        x = self.ops.constrain(emb, TOKENS_SPEC)
        for i in range(self.num_blocks):
            x = MixerBlock(
                self.num_tokens,
                d,
                self.token_hidden,
                self.channel_hidden,
                ops=self.ops,
                param_dtype=self.param_dtype,
                name=f"block_{i}",
            )(x)
        y = LayerNorm((d,), ops=self.ops, param_dtype=self.param_dtype, name="head_norm")(x)
        rec = ChannelDense(
            c * p, (d, d), ("latent", "skip"), ops=self.ops, param_dtype=self.param_dtype, name="recovery"
        )(y, emb)
        pred = unpatchify(rec, lat_local, lon, p)
        if not self.linear_residual:
            return self.ops.constrain(state + pred, STATE_SPEC)
        pred = LayerNorm((c,), ops=self.ops, param_dtype=self.param_dtype, name="pred_norm")(pred)
        a, s = LayerNorm((c, c), ("pred", "state"), ops=self.ops, param_dtype=self.param_dtype, name="residual_norm")(
            pred, state
        )
        out = ChannelDense(c, (c, c), ("pred", "state"), ops=self.ops, param_dtype=self.param_dtype, name="residual")(
            a, s
        )
        return self.ops.constrain(out, STATE_SPEC)
