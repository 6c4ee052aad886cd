"""DLinear: Zeng et al., "Are Transformers Effective for Time Series Forecasting?" (arXiv 2205.13504).

The history is split into a moving-average trend and the remainder; one linear map each takes the
``L`` history steps to the ``H`` forecast steps. With ``individual=False`` (Time-Series-Library's
default) the maps are shared by all channels; with ``individual=True`` each channel has its own.
Deviation from Time-Series-Library: the maps start from flax's default initialisation, not from 1/L.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def moving_average(x: Array, kernel: int) -> Array:
    """Centred moving average over the last axis with edge replication (DLinear's trend)."""
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be an odd positive integer, got {kernel}")
    pad = (kernel - 1) // 2
    xp = jnp.concatenate([jnp.repeat(x[..., :1], pad, -1), x, jnp.repeat(x[..., -1:], pad, -1)], -1)
    c = jnp.cumsum(xp, axis=-1)
    c = jnp.concatenate([jnp.zeros_like(c[..., :1]), c], axis=-1)
    return (c[..., kernel:] - c[..., :-kernel]) / kernel


def moving_average_reference(x: np.ndarray, kernel: int) -> np.ndarray:
    """Loop oracle for :func:`moving_average`."""
    x = np.asarray(x)
    pad = (kernel - 1) // 2
    xp = np.concatenate([np.repeat(x[..., :1], pad, -1), x, np.repeat(x[..., -1:], pad, -1)], -1)
    return np.stack([xp[..., i : i + kernel].mean(-1) for i in range(x.shape[-1])], -1)


class DLinear(nn.Module):
    """DLinear on windows ``(B, L, C) -> (B, horizon, C)``.

    Attributes:
      horizon: forecast steps.
      kernel: moving-average length (odd).
      individual: one pair of linear maps per channel (needs ``channels``).
      channels: number of channels (only read when ``individual``).
    """

    horizon: int
    kernel: int = 25
    individual: bool = False
    channels: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        series = jnp.swapaxes(x, 1, 2)                       # (B, C, L)
        trend = moving_average(series, self.kernel)
        season = series - trend
        if self.individual:
            if x.shape[2] != self.channels:
                raise ValueError(f"DLinear(individual=True) was built for {self.channels} channels, got {x.shape[2]}")
            length = x.shape[1]
            out = 0.0
            for name, part in (("trend", trend), ("season", season)):
                w = self.param(f"{name}_kernel", nn.initializers.lecun_normal(), (self.channels, length, self.horizon))
                b = self.param(f"{name}_bias", nn.initializers.zeros, (self.channels, self.horizon))
                out = out + jnp.einsum("bcl,clh->bch", part, w) + b
        else:
            out = nn.Dense(self.horizon, name="trend")(trend) + nn.Dense(self.horizon, name="season")(season)
        return jnp.swapaxes(out, 1, 2)


@dataclasses.dataclass(frozen=True)
class DLinearConfig:
    """Config of :class:`DLinear` for :func:`jaxlab.timeseries.make_forecaster`."""

    input_len: int = 96
    horizon: int = 96
    channels: int = 1
    kernel: int = 25
    individual: bool = False

    def module(self) -> DLinear:
        return DLinear(horizon=self.horizon, kernel=self.kernel, individual=self.individual, channels=self.channels)
