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
from jaxlab.timeseries import EncoderDecoder


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
