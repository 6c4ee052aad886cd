"""ReCycle's one-shot encoder-decoder transformer over cycle tokens (flax.linen).

After the ``oneshot_transformer`` of Helmholtz-AI-Energy/ReCycle: one token per primary cycle
(``D`` values plus 9 metadata features), a ``torch.nn.Transformer``-style post-norm encoder-decoder
without positional encoding, a non-autoregressive decoder fed with the forecast profile and the
forecast days' metadata, residual input (history minus its profile) and residual output (network
output plus the forecast profile). If the output layer is zero the forecast is the profile.

Deviations: dropout is left out (the paper trains with dropout 0); a single point forecast (no
quantile heads).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jaxlab.core import Array


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


class ReCycleTransformer(nn.Module):
    """ReCycle: residual cyclic transformer (one token per cycle, profile as base forecast).

    Attention runs over ``history`` and ``horizon`` cycle tokens, so its cost is
    ``O((L / D)^2)`` for a history of ``L`` steps.

    Attributes:
      cycle_len: ``D``, steps per cycle (the output size of each token).
      d_model, d_ff, num_heads, num_encoder_layers, num_decoder_layers: trunk sizes (paper: 32,
        32, 1, 1, 1).
      residual: learn the residual over the profile (True, the paper); False feeds the raw
        history and predicts the forecast directly (an ablation).
      zero_head: initialise the output layer to zero, so an untrained model forecasts the profile
        and training starts from the paper's fallback (a deviation: the reference uses PyTorch's
        default initialisation).

    Call arguments (all normalised, cycles as tokens):
      hist ``(B, L, D)``, hist_profile ``(B, L, D)``, hist_meta ``(B, L, M)``,
      fc_profile ``(B, H, D)``, fc_meta ``(B, H, M)``. Returns the forecast ``(B, H, D)``.
    """

    cycle_len: int
    d_model: int = 32
    d_ff: int = 32
    num_heads: int = 1
    num_encoder_layers: int = 1
    num_decoder_layers: int = 1
    residual: bool = True
    zero_head: bool = True

    @nn.compact
    def __call__(
        self, hist: Array, hist_profile: Array, hist_meta: Array, fc_profile: Array, fc_meta: Array
    ) -> Array:
        if hist.shape[-1] != self.cycle_len:
            raise ValueError(f"history tokens have {hist.shape[-1]} steps, model expects {self.cycle_len}")
        x = hist - hist_profile if self.residual else hist
        enc_in = jnp.concatenate([x, hist_meta], axis=-1)
        dec_in = jnp.concatenate([fc_profile, fc_meta], axis=-1)
        h = EncoderDecoder(
            self.d_model, self.d_ff, self.num_heads, self.num_encoder_layers, self.num_decoder_layers
        )(enc_in, dec_in)
        init = nn.initializers.zeros if self.zero_head else nn.initializers.lecun_normal()
        out = nn.Dense(self.cycle_len, kernel_init=init, name="head")(h)
        return out + fc_profile if self.residual else out
