"""FEDformer: Zhou et al., "FEDformer: Frequency Enhanced Decomposed Transformer for Long-term Series
Forecasting" (ICML 2022, arXiv 2201.12740), Fourier version.

Autoformer's decomposition architecture (``_autoformer.py``) with the attention blocks replaced by
**frequency-enhanced blocks** on a selected set of Fourier modes, as in thuml/Time-Series-Library's
``models/FEDformer.py`` and ``layers/FourierCorrelation.py``:

* :func:`fourier_block` (self-attention of encoder and decoder): ``rfft`` of the queries, a learned
  complex ``E x E`` map per head on each selected mode, zeros elsewhere, ``irfft``;
* :func:`fourier_cross_attention` (decoder cross-attention): on the selected modes of queries and
  keys, ``tanh(Q K^T)`` (real and imaginary parts apart) weights the keys, then the learned complex
  map, placed back at the query modes, scaled by ``1/d_model^2``, ``irfft``.

**Mode selection** (``mode_select``): ``"random"`` draws ``modes`` of the ``L // 2`` lowest
frequencies per block, ``"low"`` takes the lowest ``modes``. The chosen modes are part of the config
(``mode_index``), so a config rebuilds the same model and structured pruning can drop modes.

The complex weights are stored as real and imaginary parts (``weights_real``, ``weights_imag``,
``(H, E, E, M)``); pruning ranks them by modulus.

Deviations from Time-Series-Library:

* modes are drawn with a seeded generator per block (TSL: NumPy's global generator, unseeded, and
  one draw shared by all encoder layers);
* every encoder layer has its own Fourier weights (TSL builds one ``FourierBlock`` object and hands it
  to every encoder layer, so they share weights);
* the Fourier block writes mode ``i``'s output back at frequency ``i`` (TSL writes the ``w``-th
  selected mode to frequency ``w``, which differs for random modes);
* key and value projections that the Fourier blocks never read are not created (TSL creates and
  counts them: ``key``/``value`` of the self blocks, ``value`` of the cross block);
* heads and FFN widths may differ per layer and ``head_dim`` is explicit.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array
from jaxlab.core._groups import Axis, Group, replace_fields

from ._autoformer import AutoformerDecoderLayer, AutoformerEncoderLayer, decoder_init
from ._layers import DataEmbedding, SeasonalLayerNorm
from ._transformer import EncoderDecoderSizes, decoder_marks


def select_modes(length: int, modes: int, method: str, seed: int) -> tuple[int, ...]:
    """``min(modes, L // 2)`` sorted frequencies below ``L // 2``: random (seeded) or the lowest."""
    m = min(modes, length // 2)
    if method == "low":
        return tuple(range(m))
    if method == "random":
        return tuple(sorted(int(i) for i in np.random.default_rng(seed).permutation(length // 2)[:m]))
    raise ValueError(f"mode_select must be 'random' or 'low', got {method!r}")


def _complex(re: Array, im: Array) -> Array:
    return re.astype(jnp.result_type(re, jnp.complex64)) + 1j * im


def fourier_block(q: Array, weights_real: Array, weights_imag: Array, index: tuple[int, ...]) -> Array:
    """Frequency-enhanced block: ``q (B, L, H, E)``, weights ``(H, E, E, M)`` on modes ``index`` -> ``(B, L, H, E)``."""
    length = q.shape[1]
    qf = jnp.fft.rfft(q, axis=1)                                         # (B, L//2+1, H, E)
    idx = jnp.asarray(index)
    out_modes = jnp.einsum("bmhi,hiom->bmho", qf[:, idx], _complex(weights_real, weights_imag))
    out = jnp.zeros(qf.shape[:1] + (length // 2 + 1,) + out_modes.shape[2:], out_modes.dtype)
    out = out.at[:, idx].set(out_modes)
    return jnp.fft.irfft(out, n=length, axis=1).astype(q.dtype)


def fourier_cross_attention(q: Array, k: Array, weights_real: Array, weights_imag: Array, index_q: tuple[int, ...],
                            index_kv: tuple[int, ...], scale: float) -> Array:
    """Frequency-enhanced cross-attention: ``q (B, Lq, H, E)``, ``k (B, Lk, H, E)`` -> ``(B, Lq, H, E)``.

    On the selected modes, ``A = tanh(Re(Q K^T)) + i tanh(Im(Q K^T))`` over the ``x`` query and ``y``
    key modes, the keys weighted by ``A``, the complex weights ``(H, E, E, Mq)`` applied, the result
    placed at the query modes, scaled by ``scale`` and transformed back.
    """
    length = q.shape[1]
    qf = jnp.fft.rfft(q, axis=1)[:, jnp.asarray(index_q)]                # (B, Mq, H, E)
    kf = jnp.fft.rfft(k, axis=1)[:, jnp.asarray(index_kv)]               # (B, Mk, H, E)
    qk = jnp.einsum("bxhe,byhe->bhxy", qf, kf)
    qk = jnp.tanh(qk.real) + 1j * jnp.tanh(qk.imag)
    qkv = jnp.einsum("bhxy,byhe->bxhe", qk, kf)
    out_modes = jnp.einsum("bxhe,heox->bxho", qkv, _complex(weights_real, weights_imag))
    out = jnp.zeros((q.shape[0], length // 2 + 1) + out_modes.shape[2:], out_modes.dtype)
    out = out.at[:, jnp.asarray(index_q)].set(out_modes * scale)
    return jnp.fft.irfft(out, n=length, axis=1).astype(q.dtype)


def _weights(module: nn.Module, heads: int, head_dim: int, modes: int, d_model: int):
    scale = 1.0 / (d_model * d_model)

    def init(key, shape):                       # TSL: scale * torch.rand
        return scale * jax.random.uniform(key, shape)

    shape = (heads, head_dim, head_dim, modes)
    return module.param("weights_real", init, shape), module.param("weights_imag", init, shape)


class FourierSelf(nn.Module):
    """The learned part of :func:`fourier_block` as a module (its weights) on fixed modes."""

    heads: int
    head_dim: int
    index: tuple[int, ...]
    d_model: int

    @nn.compact
    def __call__(self, q: Array, k=None, v=None) -> Array:
        wr, wi = _weights(self, self.heads, self.head_dim, len(self.index), self.d_model)
        return fourier_block(q, wr, wi, self.index)


class FourierCross(nn.Module):
    """The learned part of :func:`fourier_cross_attention` as a module."""

    heads: int
    head_dim: int
    index_q: tuple[int, ...]
    index_kv: tuple[int, ...]
    d_model: int

    @nn.compact
    def __call__(self, q: Array, k: Array, v=None) -> Array:
        wr, wi = _weights(self, self.heads, self.head_dim, len(self.index_q), self.d_model)
        return fourier_cross_attention(q, k, wr, wi, self.index_q, self.index_kv, 1.0 / (self.d_model ** 2))


class FEDformer(nn.Module):
    """FEDformer (Fourier) ``(B, L, C) -> (B, H, C)`` (see the module docstring)."""

    config: "FEDformerConfig"

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        c = self.config
        heads, ffn, hd = c.heads_per_block(c.num_attention), c.ffn_per_layer(c.num_ffn), c.resolved_head_dim()
        modes = c.fourier_modes()
        seasonal, trend = decoder_init(x, c.label_len, c.horizon, c.moving_avg)
        h = DataEmbedding(c.d_model, c.time_features, True, c.dropout, name="enc_embedding")(x, x_mark, train=train)
        for i in range(c.e_layers):
            block = FourierSelf(heads[i], hd, modes[f"encoder_{i}"], c.d_model, name=f"encoder_{i}_fourier")
            h = AutoformerEncoderLayer(c.d_model, heads[i], hd, ffn[i], c.moving_avg, c.activation, c.dropout,
                                       use_key=False, use_value=False, name=f"encoder_{i}")(h, block, train=train)
        h = SeasonalLayerNorm(name="encoder_norm")(h)
        d = DataEmbedding(c.d_model, c.time_features, True, c.dropout, name="dec_embedding")(
            seasonal, decoder_marks(x_mark, future_mark, c.label_len), train=train)
        for j in range(c.d_layers):
            idx = c.e_layers + 2 * j
            self_block = FourierSelf(heads[idx], hd, modes[f"decoder_{j}_self"], c.d_model,
                                     name=f"decoder_{j}_self_fourier")
            cross_block = FourierCross(heads[idx + 1], hd, modes[f"decoder_{j}_cross"], c.kv_modes(j), c.d_model,
                                       name=f"decoder_{j}_cross_fourier")
            d, t = AutoformerDecoderLayer(c.d_model, c.channels, heads[idx], heads[idx + 1], hd,
                                          ffn[c.e_layers + j], c.moving_avg, c.activation, c.dropout,
                                          self_key=False, self_value=False, cross_value=False,
                                          name=f"decoder_{j}")(d, h, self_block, cross_block, train=train)
            trend = trend + t
        d = SeasonalLayerNorm(name="decoder_norm")(d)
        out = trend + nn.Dense(c.channels, name="projection")(d)
        return out[:, -c.horizon:]


@dataclasses.dataclass(frozen=True)
class FEDformerConfig(EncoderDecoderSizes):
    """Config of :class:`FEDformer` (TSL defaults: 32 random modes, moving average 25).

    Attributes:
      modes: modes per Fourier block (at most ``L // 2`` of the block's length).
      mode_select: ``"random"`` or ``"low"``.
      mode_seed: seed of the random draws (block ``b`` uses ``mode_seed + b``).
      moving_avg: decomposition window (odd).
      mode_index: explicit modes per Fourier block, in the order of :meth:`fourier_block_names`
        (``()``: drawn from ``modes``/``mode_select``/``mode_seed``); structured pruning sets it.
    """

    modes: int = 32
    mode_select: str = "random"
    mode_seed: int = 0
    moving_avg: int = 25
    mode_index: tuple[tuple[int, ...], ...] = ()

    def module(self) -> FEDformer:
        self.check()
        if self.moving_avg < 1 or self.moving_avg % 2 == 0:
            raise ValueError(f"moving_avg must be an odd positive integer, got {self.moving_avg}")
        self.fourier_modes()
        return FEDformer(self)

    def fourier_block_names(self) -> tuple[str, ...]:
        return tuple(f"encoder_{i}" for i in range(self.e_layers)) + tuple(
            n for j in range(self.d_layers) for n in (f"decoder_{j}_self", f"decoder_{j}_cross"))

    def _block_lengths(self) -> tuple[int, ...]:
        dec = self.label_len + self.horizon
        return (self.input_len,) * self.e_layers + (dec, dec) * self.d_layers

    def fourier_modes(self) -> dict[str, tuple[int, ...]]:
        """Block name -> its (query) modes."""
        names, lengths = self.fourier_block_names(), self._block_lengths()
        if self.mode_index:
            if len(self.mode_index) != len(names):
                raise ValueError(f"mode_index has {len(self.mode_index)} entries for the {len(names)} Fourier "
                                 f"blocks {names}")
            for name, ix, length in zip(names, self.mode_index, lengths):
                if not ix or min(ix) < 0 or max(ix) > length // 2:
                    raise ValueError(f"mode_index of block {name} must hold frequencies in [0, {length // 2}], "
                                     f"got {ix}")
            return {n: tuple(int(i) for i in ix) for n, ix in zip(names, self.mode_index)}
        return {n: select_modes(length, self.modes, self.mode_select, self.mode_seed + b)
                for b, (n, length) in enumerate(zip(names, lengths))}

    def kv_modes(self, j: int) -> tuple[int, ...]:
        """Key modes of decoder layer ``j``'s cross block (drawn like the others, never pruned)."""
        return select_modes(self.input_len, self.modes, self.mode_select, self.mode_seed + 1000 + j)

    def _mode_resize(self, b: int):
        def resize(config, kept):
            current = config.fourier_modes()
            rows = [current[n] for n in config.fourier_block_names()]
            rows[b] = tuple(rows[b][int(i)] for i in kept)
            return replace_fields(config, mode_index=tuple(rows))
        return resize

    def dependency_groups(self) -> tuple[Group, ...]:
        groups = list(self.attention_groups(key=lambda role: role == "cross", value=lambda role: False))
        # the Fourier weights follow their block's heads (axis 0, one head per entry)
        blocks = self.fourier_block_names()
        for g_i, block in enumerate(blocks):
            g = groups[g_i]
            w = tuple(Axis(("params", f"{block}_fourier", n), 0) for n in ("weights_real", "weights_imag"))
            groups[g_i] = Group(g.name, g.size, g.axes + w, g.resize)
        modes = self.fourier_modes()
        for b, block in enumerate(blocks):
            groups.append(Group(f"{block}/modes", len(modes[block]), tuple(
                Axis(("params", f"{block}_fourier", n), 3) for n in ("weights_real", "weights_imag")),
                self._mode_resize(b)))
        return tuple(groups) + self.ffn_groups(bias=False)
