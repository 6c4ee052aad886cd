"""A small N-HiTS: Challu et al., "N-HiTS: Neural Hierarchical Interpolation for Time Series
Forecasting" (AAAI 2023, arXiv 2201.12886).

Stacks of blocks; each block max-pools the residual history with its own kernel, runs an MLP (plus
the flattened covariates of the horizon, when given) and emits a few backcast and forecast knots that
linear interpolation stretches to the history and the horizon. The block's backcast is subtracted from
the history that the next block sees; the forecasts add up. Channels are forecast independently with
shared weights.

Defaults follow pytorch-forecasting's ``NHiTS`` (the implementation AutoPQ uses): one block per stack,
three stacks, pooling sizes and downsampling frequencies derived from the horizon, ReLU, max pooling,
linear interpolation, and ``naive_level`` (the forecast starts from the last observed value). Not
included: batch normalisation, per-block weight sharing (it has no effect with one block per stack),
and the covariates of the history.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def default_pooling(horizon: int, stacks: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """pytorch-forecasting's default pooling sizes and downsampling frequencies for ``stacks`` stacks."""
    sizes = np.exp2(np.round(np.linspace(0.49, np.log2(max(horizon / 2, 1.0)), stacks)))
    pooling = tuple(int(x) for x in sizes[::-1])
    freqs = tuple(min(horizon, int(np.power(x, 1.5))) for x in pooling)
    return pooling, freqs


def interpolate_linear(knots: Array, size: int) -> Array:
    """Linear interpolation of ``(..., n)`` knots to ``(..., size)`` with half-sample centres.

    The convention of torch's ``F.interpolate(mode="linear", align_corners=False)`` (values beyond the
    outer knot centres repeat the edge knot), here through ``jax.image.resize``; only upsampling
    (``size >= n``) is used, where the two agree.
    """
    if size < knots.shape[-1]:
        raise ValueError(f"interpolate_linear upsamples only: {knots.shape[-1]} knots to {size} points")
    return jax.image.resize(knots, (*knots.shape[:-1], size), method="linear")


def interpolate_linear_reference(knots: np.ndarray, size: int) -> np.ndarray:
    """``np.interp`` oracle for :func:`interpolate_linear`."""
    knots = np.asarray(knots, np.float64)
    n = knots.shape[-1]
    src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
    flat = knots.reshape(-1, n)
    return np.stack([np.interp(src, np.arange(n), row) for row in flat]).reshape(*knots.shape[:-1], size)


class NHiTSBlock(nn.Module):
    """One block: pool, MLP, knots, interpolation. Returns ``(backcast (B, L), forecast (B, H))``."""

    horizon: int
    pooling: int
    frequency: int
    hidden: int
    layers: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, future: Array | None, deterministic: bool) -> tuple[Array, Array]:
        b, length = x.shape
        pad = (-length) % self.pooling  # ceil mode: the last window may be short
        xp = jnp.pad(x, ((0, 0), (0, pad)), constant_values=-jnp.inf) if pad else x
        h = jnp.max(xp.reshape(b, -1, self.pooling), axis=-1)
        if future is not None:
            h = jnp.concatenate([h, future], axis=-1)
        for i in range(self.layers):
            h = nn.relu(nn.Dense(self.hidden, kernel_init=nn.initializers.lecun_normal(), name=f"dense_{i}")(h))
            if self.dropout > 0:
                h = nn.Dropout(self.dropout)(h, deterministic=deterministic)
        n_back = max(length // self.frequency, 1)
        n_fore = max(self.horizon // self.frequency, 1)
        theta = nn.Dense(n_back + n_fore, kernel_init=nn.initializers.lecun_normal(), name="theta")(h)
        return interpolate_linear(theta[:, :n_back], length), interpolate_linear(theta[:, n_back:], self.horizon)


class NHiTS(nn.Module):
    """N-HiTS on windows ``(B, L, C)`` (+ ``future`` ``(B, H, F)``) -> ``(B, H, C)``.

    Attributes:
      horizon: forecast steps H.
      hidden: MLP width of every block.
      layers: hidden layers per block.
      pooling: max-pool kernel of each stack (one block per stack).
      frequencies: downsampling factor of each stack's knots.
      dropout: dropout after each hidden layer (needs a ``"dropout"`` rng when not deterministic).
      naive_level: start the forecast from the last observed value.
      future_features: F, the covariates per horizon step the model expects (0: none).
    """

    horizon: int
    hidden: int = 512
    layers: int = 2
    pooling: tuple[int, ...] = (16, 4, 1)
    frequencies: tuple[int, ...] = (24, 8, 1)
    dropout: float = 0.0
    naive_level: bool = True
    future_features: int = 0

    @nn.compact
    def __call__(self, x: Array, future: Array | None = None, deterministic: bool = True) -> Array:
        if len(self.pooling) != len(self.frequencies):
            raise ValueError(f"pooling {self.pooling} and frequencies {self.frequencies} need one entry per stack")
        b, length, c = x.shape
        series = jnp.swapaxes(x, 1, 2).reshape(b * c, length)     # channels share the weights
        fut = None
        if self.future_features:
            if future is None or future.shape != (b, self.horizon, self.future_features):
                got = None if future is None else future.shape
                raise ValueError(f"NHiTS was built for future covariates of shape "
                                 f"(B, {self.horizon}, {self.future_features}), got {got}")
            fut = jnp.repeat(future.reshape(b, -1), c, axis=0)
        elif future is not None:
            raise ValueError("NHiTS(future_features=0) got `future`; set future_features to use it")
        level = series[:, -1:] if self.naive_level else jnp.zeros_like(series[:, -1:])
        forecast = jnp.broadcast_to(level, (b * c, self.horizon))
        residual = series
        for i, (k, f) in enumerate(zip(self.pooling, self.frequencies)):
            back, fore = NHiTSBlock(self.horizon, k, f, self.hidden, self.layers, self.dropout,
                                    name=f"block_{i}")(residual, fut, deterministic)
            residual = residual - back
            forecast = forecast + fore
        return jnp.swapaxes(forecast.reshape(b, c, self.horizon), 1, 2)


def nhits_reference(params, x: np.ndarray, *, horizon: int, pooling, frequencies, layers: int,
                    naive_level: bool = True, future: np.ndarray | None = None) -> np.ndarray:
    """Plain NumPy forward pass of :class:`NHiTS` (no dropout) from its parameters."""
    x = np.asarray(x, np.float64)
    b, length, c = x.shape
    out = np.zeros((b, horizon, c))
    for i in range(b):
        for ch in range(c):
            r = x[i, :, ch].copy()
            y = np.full(horizon, r[-1] if naive_level else 0.0)
            for s, (k, f) in enumerate(zip(pooling, frequencies)):
                p = params[f"block_{s}"]
                h = np.array([r[j:j + k].max() for j in range(0, length, k)])
                if future is not None:
                    h = np.concatenate([h, np.asarray(future[i], np.float64).reshape(-1)])
                for li in range(layers):
                    h = np.maximum(h @ np.asarray(p[f"dense_{li}"]["kernel"]) + np.asarray(p[f"dense_{li}"]["bias"]), 0)
                theta = h @ np.asarray(p["theta"]["kernel"]) + np.asarray(p["theta"]["bias"])
                nb = max(length // f, 1)
                r = r - interpolate_linear_reference(theta[:nb], length)
                y = y + interpolate_linear_reference(theta[nb:], horizon)
            out[i, :, ch] = y
    return out


@dataclasses.dataclass(frozen=True)
class NHiTSConfig:
    """Config of :class:`NHiTS` for :func:`jaxlab.timeseries.make_forecaster`.

    ``pooling``/``frequencies`` of ``()`` take pytorch-forecasting's defaults for ``stacks`` stacks.
    """

    input_len: int = 48
    horizon: int = 48
    channels: int = 1
    hidden: int = 512
    layers: int = 2
    stacks: int = 3
    pooling: tuple[int, ...] = ()
    frequencies: tuple[int, ...] = ()
    dropout: float = 0.0
    naive_level: bool = True
    future_features: int = 0

    def resolved_pooling(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The pooling sizes and frequencies used (the defaults where left empty)."""
        pool, freq = default_pooling(self.horizon, self.stacks)
        pool = tuple(self.pooling) or pool
        freq = tuple(self.frequencies) or freq
        if len(pool) != self.stacks or len(freq) != self.stacks:
            raise ValueError(f"NHiTSConfig: pooling {pool} and frequencies {freq} need {self.stacks} entries")
        if max(pool) > self.input_len:
            raise ValueError(f"NHiTSConfig: a pooling size {max(pool)} exceeds the history of {self.input_len}")
        return pool, freq

    def module(self) -> NHiTS:
        pool, freq = self.resolved_pooling()
        return NHiTS(horizon=self.horizon, hidden=self.hidden, layers=self.layers, pooling=pool, frequencies=freq,
                     dropout=self.dropout, naive_level=self.naive_level, future_features=self.future_features)

