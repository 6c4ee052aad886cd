"""Informer: Zhou et al., "Informer: Beyond Efficient Transformer for Long Sequence Time-Series
Forecasting" (AAAI 2021, arXiv 2012.07436).

The Transformer forecaster (``_transformer.py``) with two changes, as in thuml/Time-Series-Library's
``models/Informer.py``:

* **ProbSparse attention** (:func:`prob_attention`): each query's sparsity measure
  ``M(q) = max_j q.k_j - (1/L_K) sum_j q.k_j`` is estimated on ``U = c ceil(ln L_K)`` sampled keys;
  only the top ``u = c ceil(ln L_Q)`` queries attend, the others output the mean of the values
  (with a causal mask: the mean of the visible values);
* **distilling** between encoder layers (:class:`Distil`): a circular width-3 convolution, batch
  norm, ELU and a stride-2 max pool halve the sequence.

Deviations from Time-Series-Library:

* the keys are sampled with a JAX key: the ``"sample"`` PRNG stream when the caller passes one
  (``rngs={"sample": key}``), else a fixed key from ``sample_seed``, so that ``apply`` without rngs
  is deterministic (TSL draws with torch's global generator at every call, also at test time);
* lazy queries under the causal mask get the *mean* of the visible values; TSL (and the Informer
  code) take their cumulative *sum*, whose scale grows with the position;
* TSL's ``.squeeze()`` of the sampled scores drops the batch axis when the batch has one window;
  here every shape stays explicit;
* the distilling convolution may keep fewer output channels than ``d_model`` (after structured
  pruning, ``distil_index`` lists the kept ones); its outputs are placed back at those channels of
  the residual stream, the others are zero, exactly what the masked dense model computes.
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array, PRNGKey
from jaxlab.core._groups import Axis, Group, replace_fields

from ._layers import DataEmbedding
from ._transformer import EncoderDecoderSizes, EncoderLayer, decode


def prob_sizes(l_q: int, l_k: int, factor: int) -> tuple[int, int]:
    """``(u, U)``: active queries ``min(c ceil(ln L_Q), L_Q)`` and sampled keys ``min(c ceil(ln L_K), L_K)``."""
    u = min(factor * int(math.ceil(math.log(l_q))), l_q)
    big_u = min(factor * int(math.ceil(math.log(l_k))), l_k)
    return u, big_u


def prob_attention(q: Array, k: Array, v: Array, *, factor: int, causal: bool, key: PRNGKey) -> Array:
    """ProbSparse attention: ``q (B, Lq, H, E)``, ``k, v (B, Lk, H, E)`` -> ``(B, Lq, H, E)``.

    Args:
      q, k, v: queries, keys, values per head.
      factor: the sampling factor ``c``.
      causal: mask keys after each query (self-attention of the decoder; needs ``Lq == Lk``).
      key: PRNG key for the sampled keys (one draw shared by the batch and the heads, as in TSL).

    With ``u == Lq`` every query is active and the result is :func:`full_attention`'s.
    """
    b, l_q, h, e = q.shape
    l_k = k.shape[1]
    if causal and l_q != l_k:
        raise ValueError(f"causal ProbSparse attention needs as many queries as keys, got {l_q} and {l_k}")
    u, big_u = prob_sizes(l_q, l_k, factor)
    qt, kt, vt = (jnp.swapaxes(t, 1, 2) for t in (q, k, v))           # (B, H, L, E)
    sample = jax.random.randint(key, (l_q, big_u), 0, l_k)
    # the measure only picks the active queries (integers): no gradient flows through it, and
    # stopping it keeps the sampled gather's transpose (a scatter-add) out of the backward pass
    q_s, k_s = jax.lax.stop_gradient(qt), jax.lax.stop_gradient(kt)
    qk_sample = jnp.einsum("bhle,bhlue->bhlu", q_s, k_s[:, :, sample])    # (B, H, Lq, U)
    measure = jnp.max(qk_sample, -1) - jnp.sum(qk_sample, -1) / l_k       # (B, H, Lq)
    _, top = jax.lax.top_k(measure, u)                                   # (B, H, u)
    q_top = jnp.take_along_axis(qt, top[..., None], axis=2)             # (B, H, u, E)
    scores = jnp.einsum("bhue,bhse->bhus", q_top, kt) / jnp.sqrt(jnp.asarray(e, q.dtype))
    if causal:
        scores = jnp.where(jnp.arange(l_k)[None, None, None, :] > top[..., None], -jnp.inf, scores)
    active = jnp.einsum("bhus,bhse->bhue", jax.nn.softmax(scores, axis=-1), vt)
    if causal:
        lazy = jnp.cumsum(vt, axis=2) / jnp.arange(1, l_k + 1, dtype=vt.dtype)[:, None]
    else:
        lazy = jnp.broadcast_to(jnp.mean(vt, axis=2, keepdims=True), (b, h, l_q, e))
    bi = jnp.arange(b)[:, None, None]
    hi = jnp.arange(h)[None, :, None]
    out = lazy.at[bi, hi, top].set(active.astype(lazy.dtype))
    return jnp.swapaxes(out, 1, 2)


class Distil(nn.Module):
    """Informer's distilling layer: circular conv (width 3, padding 2), batch norm, ELU, max pool (3, stride 2).

    ``index`` lists the residual channels the ``len(index)`` output channels go to (None: all
    ``d_model``, in order); the other channels of the output are zero.
    """

    d_model: int
    index: tuple[int, ...] | None = None

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        width = self.d_model if self.index is None else len(self.index)
        xp = jnp.concatenate([x[:, -2:], x, x[:, :2]], axis=1)          # circular padding 2 (TSL)
        y = nn.Conv(width, (3,), padding="VALID", name="conv")(xp)
        y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name="norm")(y)
        y = nn.max_pool(nn.elu(y), (3,), strides=(2,), padding=((1, 1),))
        if self.index is None:
            return y
        out = jnp.zeros(y.shape[:2] + (self.d_model,), y.dtype)
        return out.at[..., jnp.asarray(self.index)].set(y)


def distilled_length(length: int) -> int:
    """Sequence length after one :class:`Distil` layer: ``floor((L + 1) / 2) + 1``."""
    return (length + 2 + 2 - 3) // 2 + 1


class Informer(nn.Module):
    """Informer ``(B, L, C) -> (B, H, C)`` (see the module docstring)."""

    config: "InformerConfig"

    def _key(self, i: int) -> PRNGKey:
        base = self.make_rng("sample") if self.has_rng("sample") else jax.random.key(self.config.sample_seed)
        return jax.random.fold_in(base, i)

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        c = self.config
        heads, ffn, hd = c.heads_per_block(c.num_attention), c.ffn_per_layer(c.num_ffn), c.resolved_head_dim()
        attend = partial(prob_attention, factor=c.factor)
        h = DataEmbedding(c.d_model, c.time_features, True, c.dropout, name="enc_embedding")(x, x_mark, train=train)
        for i in range(c.e_layers):
            h = EncoderLayer(c.d_model, heads[i], hd, ffn[i], c.activation, c.dropout, name=f"encoder_{i}")(
                h, partial(attend, causal=False, key=self._key(i)), train=train)
            if c.distil and i < c.e_layers - 1:
                h = Distil(c.d_model, c.distil_indices()[i], name=f"distil_{i}")(h, train=train)
        h = nn.LayerNorm(epsilon=1e-5, name="encoder_norm")(h)
        return decode(c, heads, hd, ffn, h, x, x_mark, future_mark,
                      lambda idx, causal: partial(attend, causal=causal, key=self._key(idx)), train=train)


@dataclasses.dataclass(frozen=True)
class InformerConfig(EncoderDecoderSizes):
    """Config of :class:`Informer` (TSL defaults, ``factor`` 3 as TSL's scripts; see :class:`EncoderDecoderSizes`).

    Attributes:
      factor: ProbSparse sampling factor ``c``.
      distil: distilling layers between encoder layers.
      distil_index: per distilling layer, the residual channels its outputs go to (``()``: all of them).
      sample_seed: seed of the fixed key used when no ``"sample"`` PRNG stream is passed.
    """

    factor: int = 3
    distil: bool = True
    distil_index: tuple[tuple[int, ...] | None, ...] = ()
    sample_seed: int = 0

    def module(self) -> Informer:
        self.check()
        return Informer(self)

    def distil_indices(self) -> tuple[tuple[int, ...] | None, ...]:
        n = self.e_layers - 1 if self.distil else 0
        if not self.distil_index:
            return (None,) * n
        if len(self.distil_index) != n:
            raise ValueError(f"distil_index has {len(self.distil_index)} entries for {n} distilling layers")
        return tuple(None if ix is None else tuple(int(i) for i in ix) for ix in self.distil_index)

    def encoder_lengths(self) -> tuple[int, ...]:
        """Sequence length seen by each encoder layer."""
        lengths, length = [], self.input_len
        for i in range(self.e_layers):
            lengths.append(length)
            if self.distil and i < self.e_layers - 1:
                length = distilled_length(length)
        return tuple(lengths)

    def _distil_resize(self, i: int):
        def resize(config, kept):
            current = config.distil_indices()
            old = np.arange(config.d_model) if current[i] is None else np.asarray(current[i])
            new = list(current)
            new[i] = tuple(int(c) for c in old[np.asarray(kept)])
            return replace_fields(config, distil_index=tuple(new))
        return resize

    def dependency_groups(self) -> tuple[Group, ...]:
        groups = list(self.attention_groups() + self.ffn_groups())
        for i, ix in enumerate(self.distil_indices()):
            n, p = (self.d_model if ix is None else len(ix)), f"distil_{i}"
            groups.append(Group(f"{p}/channels", n, (
                Axis(("params", p, "conv", "kernel"), 2), Axis(("params", p, "conv", "bias"), 0, score=False),
                Axis(("params", p, "norm", "scale"), 0, score=False),
                Axis(("params", p, "norm", "bias"), 0, score=False),
                Axis(("batch_stats", p, "norm", "mean"), 0, score=False),
                Axis(("batch_stats", p, "norm", "var"), 0, score=False)), self._distil_resize(i)))
        return tuple(groups)
