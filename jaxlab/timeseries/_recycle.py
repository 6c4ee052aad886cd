"""ReCycle's primary cycle compression (PCC) and recent historic profile (RHP) around any forecaster.

Weyrauch et al., "ReCycle: Fast and Efficient Long Time Series Forecasting with Residual Cyclic
Transformers" (IEEE CAI 2024, arXiv 2405.03429; reference code Helmholtz-AI-Energy/ReCycle).

* :class:`PCCRHP` (config :class:`PCCRHPConfig`) wraps a backbone forecaster: the ``(B, L, C)`` history
  of ``L = history_cycles * D`` steps is folded into ``history_cycles`` tokens of ``D * C`` values (PCC),
  the profile of each cycle is subtracted (the backbone learns residuals) and added back to the
  backbone's forecast (RHP). Attention of a wrapped transformer then runs over ``L / D`` tokens. If the
  backbone outputs zero, the forecast is the profile: ReCycle's fallback.
* :class:`CycleTransformer` (config :class:`CycleTransformerConfig`) is ReCycle's own backbone: a
  ``torch.nn.Transformer``-style post-norm encoder-decoder over cycle tokens, **without positional
  encoding**, one-shot (non-autoregressive) decoding from the forecast cycles' marks, separate
  dropout + linear input projections for encoder and decoder, and an output layer of ``C * Q`` values per
  token (``Q`` quantiles). :func:`recycle_config` builds the wrapper around it: ReCycle's model behind
  :func:`jaxlab.timeseries.make_forecaster`.

Covariates follow the zoo's convention (Transformer, Informer, ...): calendar marks per step as
``x_mark (B, L, F)`` and ``future_mark (B, H, F)`` (per cycle, ``(B, L / D, F)`` and ``(B, H / D, F)``,
is accepted too). The wrapper takes one mark row per cycle (its first step). With ``calendar=True`` the
first 9 mark features are :func:`jaxlab.data.cycle_metadata` (weekday one-hot, holiday, holiday
tomorrow), which give the day types of the profile; the backbone reads all ``F`` features plus, with
``profile_marks=True``, each cycle's profile (as ReCycle's decoder reads the forecast profile).

The profile is computed inside the window (:func:`jaxlab.timeseries.window_rhp`) unless the caller
passes ``hist_profile``/``fc_profile`` (``(B, L, C)``, ``(B, H, C)``), e.g. the series-wide
:func:`jaxlab.timeseries.profile_windows`, which looks back beyond the window.

Deviations from the reference: the output layer starts at zero (``zero_head=True``), so an untrained
model forecasts the profile (the reference: PyTorch's default initialisation, ``init="torch"`` with
``zero_head=False`` here); no ``d_model * nheads`` rescaling (``d_model`` is the width); the profile can
be computed inside the window.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core import Array

from ._profiles import day_type_onehot, window_rhp

NUM_META = 9  # jaxlab.data.cycle_metadata: weekday one-hot (7), holiday, holiday tomorrow


# ----------------------------------------------------------------------------- PyTorch-style initialisers


def _uniform(limit: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -limit, limit)
    return init


def torch_linear_init(fan_in: int) -> tuple[Any, Any]:
    """``torch.nn.Linear``'s default ``(kernel_init, bias_init)``: both ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1.0 / math.sqrt(fan_in)
    return _uniform(bound), _uniform(bound)


def _dense(features: int, fan_in: int, init: str, name: str, zero: bool = False) -> nn.Dense:
    if zero:
        return nn.Dense(features, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros, name=name)
    if init == "torch":
        k, b = torch_linear_init(fan_in)
        return nn.Dense(features, kernel_init=k, bias_init=b, name=name)
    return nn.Dense(features, name=name)


# ----------------------------------------------------------------------------- ReCycle's cycle transformer


class _Attention(nn.Module):
    d_model: int
    num_heads: int
    dropout: float
    init: str

    @nn.compact
    def __call__(self, q: Array, kv: Array, *, train: bool) -> Array:
        kw: dict[str, Any] = {}
        if self.init == "torch":  # nn.Transformer: xavier_uniform on in_proj (3d x d) and out_proj, zero biases
            kw = dict(kernel_init=_uniform(math.sqrt(6.0 / (4 * self.d_model))),
                      out_kernel_init=_uniform(math.sqrt(6.0 / (2 * self.d_model))))
        return nn.MultiHeadDotProductAttention(num_heads=self.num_heads, qkv_features=self.d_model,
                                               dropout_rate=self.dropout, deterministic=not train, **kw,
                                               name="attention")(q, kv)


class _FeedForward(nn.Module):
    d_model: int
    d_ff: int
    dropout: float
    init: str

    @nn.compact
    def __call__(self, x: Array, *, train: bool) -> Array:
        if self.init == "torch":  # xavier kernels (nn.Transformer), Linear's default biases
            b1, b2 = torch_linear_init(self.d_model)[1], torch_linear_init(self.d_ff)[1]
            l1 = nn.Dense(self.d_ff, kernel_init=nn.initializers.xavier_uniform(), bias_init=b1, name="linear1")
            l2 = nn.Dense(self.d_model, kernel_init=nn.initializers.xavier_uniform(), bias_init=b2, name="linear2")
        else:
            l1, l2 = nn.Dense(self.d_ff, name="linear1"), nn.Dense(self.d_model, name="linear2")
        h = nn.Dropout(self.dropout)(nn.relu(l1(x)), deterministic=not train)
        return l2(h)


class CycleEncoderLayer(nn.Module):
    """``torch.nn.TransformerEncoderLayer`` (post-norm, ReLU, dropout after attention and the feed-forward)."""

    d_model: int
    d_ff: int
    num_heads: int = 1
    dropout: float = 0.0
    init: str = "jax"

    @nn.compact
    def __call__(self, x: Array, *, train: bool = False) -> Array:
        drop = nn.Dropout(self.dropout)
        a = _Attention(self.d_model, self.num_heads, self.dropout, self.init, name="self_attention")(x, x, train=train)
        x = nn.LayerNorm(epsilon=1e-5, name="norm1")(x + drop(a, deterministic=not train))
        y = _FeedForward(self.d_model, self.d_ff, self.dropout, self.init, name="ffn")(x, train=train)
        return nn.LayerNorm(epsilon=1e-5, name="norm2")(x + drop(y, deterministic=not train))


class CycleDecoderLayer(nn.Module):
    """``torch.nn.TransformerDecoderLayer`` without a causal mask (one-shot decoding)."""

    d_model: int
    d_ff: int
    num_heads: int = 1
    dropout: float = 0.0
    init: str = "jax"

    @nn.compact
    def __call__(self, y: Array, memory: Array, *, train: bool = False) -> Array:
        drop = nn.Dropout(self.dropout)
        a = _Attention(self.d_model, self.num_heads, self.dropout, self.init, name="self_attention")(y, y, train=train)
        y = nn.LayerNorm(epsilon=1e-5, name="norm1")(y + drop(a, deterministic=not train))
        a = _Attention(self.d_model, self.num_heads, self.dropout, self.init, name="cross_attention")(
            y, memory, train=train)
        y = nn.LayerNorm(epsilon=1e-5, name="norm2")(y + drop(a, deterministic=not train))
        z = _FeedForward(self.d_model, self.d_ff, self.dropout, self.init, name="ffn")(y, train=train)
        return nn.LayerNorm(epsilon=1e-5, name="norm3")(y + drop(z, deterministic=not train))


class CycleTransformer(nn.Module):
    """ReCycle's one-shot encoder-decoder ``(B, L, C) (+ marks) -> (B, H, C * num_outputs)`` (see the module docstring).

    The encoder reads each history token with its marks, the decoder each forecast cycle's marks
    (zeros of ``C`` features when the config has no time features). No positional encoding: the
    forecast is invariant to permuting the history tokens together with their marks.
    """

    config: "CycleTransformerConfig"

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 train: bool = False) -> Array:
        c = self.config
        b = x.shape[0]
        if x.shape[1:] != (c.input_len, c.channels):
            raise ValueError(f"CycleTransformer was built for tokens (B, {c.input_len}, {c.channels}), got {x.shape}")
        if c.time_features:
            x_mark = jnp.zeros((b, c.input_len, c.time_features), x.dtype) if x_mark is None else x_mark
            future_mark = (jnp.zeros((b, c.horizon, c.time_features), x.dtype) if future_mark is None
                           else future_mark)
            enc_in, dec_in = jnp.concatenate([x, x_mark.astype(x.dtype)], -1), future_mark.astype(x.dtype)
        else:
            enc_in, dec_in = x, jnp.zeros((b, c.horizon, c.channels), x.dtype)
        drop = nn.Dropout(c.dropout)
        h = _dense(c.d_model, enc_in.shape[-1], c.init, "enc_proj")(drop(enc_in, deterministic=not train))
        for i in range(c.e_layers):
            h = CycleEncoderLayer(c.d_model, c.d_ff, c.n_heads, c.dropout, c.init, name=f"encoder_{i}")(h, train=train)
        memory = nn.LayerNorm(epsilon=1e-5, name="encoder_norm")(h)
        y = _dense(c.d_model, dec_in.shape[-1], c.init, "dec_proj")(drop(dec_in, deterministic=not train))
        for j in range(c.d_layers):
            y = CycleDecoderLayer(c.d_model, c.d_ff, c.n_heads, c.dropout, c.init, name=f"decoder_{j}")(
                y, memory, train=train)
        y = nn.LayerNorm(epsilon=1e-5, name="decoder_norm")(y)
        y = drop(y, deterministic=not train)
        return _dense(c.channels * c.num_outputs, c.d_model, c.init, "head", zero=c.zero_head)(y)


@dataclasses.dataclass(frozen=True)
class CycleTransformerConfig:
    """Config of :class:`CycleTransformer` (ReCycle's CLI defaults: width 32, feed-forward 32, one head and layer each).

    Attributes:
      input_len, horizon: history and forecast tokens (cycles).
      channels: values per token (``D`` for one series).
      time_features: mark features per token (0: none).
      d_model, d_ff, n_heads, e_layers, d_layers: trunk sizes.
      dropout: rate before the input projections and the output layer and inside the layers (reference 0).
      num_outputs: outputs per channel (quantiles).
      init: ``"jax"`` (flax defaults) or ``"torch"`` (PyTorch's: ``nn.Linear`` uniform, xavier inside the trunk).
      zero_head: start the output layer at zero (the wrapper then forecasts the profile).
    """

    input_len: int = 7
    horizon: int = 7
    channels: int = 24
    time_features: int = 0
    d_model: int = 32
    d_ff: int = 32
    n_heads: int = 1
    e_layers: int = 1
    d_layers: int = 1
    dropout: float = 0.0
    num_outputs: int = 1
    init: str = "jax"
    zero_head: bool = True

    def module(self) -> CycleTransformer:
        if self.init not in ("jax", "torch"):
            raise ValueError(f"init must be 'jax' or 'torch', got {self.init!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if min(self.e_layers, self.d_layers, self.num_outputs) < 1:
            raise ValueError("e_layers, d_layers and num_outputs must be >= 1")
        return CycleTransformer(self)


# ----------------------------------------------------------------------------- the PCC + RHP wrapper


def _field_names(config: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(config)}


@dataclasses.dataclass(frozen=True)
class PCCRHPConfig:
    """Config of :class:`PCCRHP`: a backbone forecaster over cycle tokens, with the profile as base forecast.

    The wrapper sets the backbone's ``input_len``, ``horizon`` and ``channels`` (and ``time_features``,
    ``num_outputs`` where the backbone has them); its other fields (widths, ...) are the caller's, except
    a ``label_len`` longer than the history, which becomes ``history_cycles // 2``. A backbone config with a ``time_features`` field is called the zoo's way,
    ``module(x, x_mark, future_mark, train=...)``; one without (DLinear, ...) as ``module(x)``.

    Attributes:
      backbone: the backbone's config (e.g. :class:`CycleTransformerConfig`, ``InformerConfig``).
      history_cycles, horizon_cycles: window lengths in cycles.
      cycle_len: ``D``, steps per cycle.
      channels: series ``C`` (each token holds ``D * C`` values).
      mark_features: ``F``, mark features per step the caller passes (0: none).
      calendar: the first 9 mark features are :func:`jaxlab.data.cycle_metadata` and give the day types
        of the profile (False: one day type, the profile is the mean of the last ``rhp_days`` cycles).
      rhp_days: cycles averaged per day type.
      profile_marks: the backbone also reads each cycle's profile as marks.
      residual: learn the residual over the profile (False: the raw tokens in, the raw forecast out; an ablation).
      quantiles: quantile levels (``()``: one point forecast); needs a backbone with ``num_outputs``.
    """

    backbone: Any = dataclasses.field(default_factory=CycleTransformerConfig)
    history_cycles: int = 7
    horizon_cycles: int = 7
    cycle_len: int = 24
    channels: int = 1
    mark_features: int = 0
    calendar: bool = True
    rhp_days: int = 3
    profile_marks: bool = True
    residual: bool = True
    quantiles: tuple[float, ...] = ()

    @property
    def input_len(self) -> int:
        return self.history_cycles * self.cycle_len

    @property
    def horizon(self) -> int:
        return self.horizon_cycles * self.cycle_len

    @property
    def backbone_marks(self) -> int:
        """Mark features per token the backbone reads."""
        return self.mark_features + (self.cycle_len * self.channels if self.profile_marks else 0)

    def backbone_config(self) -> Any:
        """The backbone's config with the token sizes filled in."""
        names = _field_names(self.backbone)
        sizes: dict[str, Any] = dict(input_len=self.history_cycles, horizon=self.horizon_cycles,
                                     channels=self.cycle_len * self.channels)
        if "label_len" in names and self.backbone.label_len > self.history_cycles:
            sizes["label_len"] = max(self.history_cycles // 2, 1)  # the TSL default 48 counts steps, not cycles
        if "time_features" in names:
            sizes["time_features"] = self.backbone_marks
        elif self.mark_features or self.profile_marks:
            raise ValueError(f"{type(self.backbone).__name__} reads no marks; set mark_features=0 and "
                             "profile_marks=False")
        if self.quantiles:
            if "num_outputs" not in names:
                raise ValueError(f"quantile heads need a backbone with num_outputs (CycleTransformerConfig); "
                                 f"{type(self.backbone).__name__} has none")
            sizes["num_outputs"] = len(self.quantiles)
        return dataclasses.replace(self.backbone, **sizes)

    def module(self) -> "PCCRHP":
        for name in ("history_cycles", "horizon_cycles", "cycle_len", "channels", "rhp_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"PCCRHPConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.calendar and self.mark_features and self.mark_features < NUM_META:
            raise ValueError(f"calendar=True needs the {NUM_META} cycle_metadata features first in the marks, "
                             f"got mark_features={self.mark_features}")
        if any(not 0 < q < 1 for q in self.quantiles):
            raise ValueError(f"quantiles must lie in (0, 1), got {self.quantiles}")
        self.backbone_config().module()  # checks the backbone's sizes now
        return PCCRHP(self)


def _cycle_marks(marks: Array | None, cycles: int, d: int, what: str) -> Array | None:
    if marks is None:
        return None
    if marks.shape[1] == cycles * d:
        return marks[:, ::d]
    if marks.shape[1] == cycles:
        return marks
    raise ValueError(f"{what} has {marks.shape[1]} rows; expected one per step ({cycles * d}) or per cycle ({cycles})")


class PCCRHP(nn.Module):
    """PCC + RHP around a backbone: ``(B, L, C)`` -> ``(B, H, C)``, or ``(B, H, C, Q)`` with quantiles."""

    config: PCCRHPConfig

    @nn.compact
    def __call__(self, x: Array, x_mark: Array | None = None, future_mark: Array | None = None, *,
                 hist_profile: Array | None = None, fc_profile: Array | None = None, train: bool = False) -> Array:
        c = self.config
        b = x.shape[0]
        lc, hc, d, ch = c.history_cycles, c.horizon_cycles, c.cycle_len, c.channels
        if x.shape[1:] != (c.input_len, ch):
            raise ValueError(f"PCCRHP was built for windows (B, {c.input_len}, {ch}), got {x.shape}")

        def fold(a: Array, cycles: int) -> Array:
            return a.reshape(b, cycles, d * ch)

        tokens = fold(x, lc)
        hm = _cycle_marks(x_mark, lc, d, "x_mark")
        fm = _cycle_marks(future_mark, hc, d, "future_mark")
        if (hm is None) != (fm is None):
            raise ValueError("pass both x_mark and future_mark, or neither")
        if hm is not None and hm.shape[-1] != c.mark_features:
            raise ValueError(f"marks have {hm.shape[-1]} features, the config says mark_features={c.mark_features}")
        if hist_profile is None:
            if fc_profile is not None:
                raise ValueError("pass both hist_profile and fc_profile, or neither")
            if c.calendar and hm is not None:
                ht, ft = day_type_onehot(hm[..., :NUM_META]), day_type_onehot(fm[..., :NUM_META])
            else:
                ht, ft = jnp.ones((b, lc, 1), x.dtype), jnp.ones((b, hc, 1), x.dtype)
            hp, fp = window_rhp(tokens, ht, ft, c.rhp_days)
        else:
            if fc_profile is None:
                raise ValueError("pass both hist_profile and fc_profile, or neither")
            hp, fp = fold(hist_profile.astype(x.dtype), lc), fold(fc_profile.astype(x.dtype), hc)
        inp = tokens - hp if c.residual else tokens
        bc = c.backbone_config()
        backbone = bc.module()
        if "time_features" in _field_names(bc):
            parts_h, parts_f = [], []
            if c.mark_features:
                hm = jnp.zeros((b, lc, c.mark_features), x.dtype) if hm is None else hm.astype(x.dtype)
                fm = jnp.zeros((b, hc, c.mark_features), x.dtype) if fm is None else fm.astype(x.dtype)
                parts_h.append(hm)
                parts_f.append(fm)
            if c.profile_marks:
                parts_h.append(hp)
                parts_f.append(fp)
            marks = (jnp.concatenate(parts_h, -1), jnp.concatenate(parts_f, -1)) if parts_h else (None, None)
            out = backbone(inp, *marks, train=train)
        else:
            out = backbone(inp)
        q = max(len(c.quantiles), 1)
        out = out.reshape(b, hc, d * ch, q)
        if c.residual:
            out = out + fp[..., None]
        out = out.reshape(b, hc * d, ch, q)
        return out if c.quantiles else out[..., 0]


def recycle_config(*, history_cycles: int = 7, horizon_cycles: int = 7, cycle_len: int = 24, channels: int = 1,
                   mark_features: int = 0, quantiles: tuple[float, ...] = (), **transformer: Any) -> PCCRHPConfig:
    """ReCycle's model: :class:`PCCRHPConfig` around a :class:`CycleTransformerConfig` (``transformer``: its fields).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> from jaxlab import timeseries as ts
      >>> model, params = ts.make_forecaster(ts.recycle_config(cycle_len=4, d_model=8, d_ff=8), key=jax.random.key(0))
      >>> x = jnp.tile(jnp.arange(4.0), 7)[None, :, None]        # one window of 7 cycles of 4 steps
      >>> model.apply(params, x)[0, :4, 0].tolist()                # zero head: the profile
      [0.0, 1.0, 2.0, 3.0]
    """
    return PCCRHPConfig(backbone=CycleTransformerConfig(**transformer), history_cycles=history_cycles,
                        horizon_cycles=horizon_cycles, cycle_len=cycle_len, channels=channels,
                        mark_features=mark_features, quantiles=tuple(quantiles))
