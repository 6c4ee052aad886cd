"""Training-free point forecasts: seasonal persistence and a seasonal-mean profile.

Both map a window ``(B, L, C)`` to ``(B, H, C)`` with no parameters. ``Profile`` forecasts step ``k`` of
the horizon as the mean of the same phase in the last ``cycles`` periods of the history; ``Persistence``
is the profile of one period (the last period repeated, "same time yesterday").

These are deliberately small: ReCycle's recent-historic profile per day type lives in
``jaxlab.methods.recycle`` and will move into this layer separately.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def _check(length: int, horizon: int, period: int, cycles: int) -> None:
    if period < 1 or cycles < 1:
        raise ValueError(f"period and cycles must be >= 1, got period={period}, cycles={cycles}")
    if horizon > period:
        raise ValueError(f"a horizon of {horizon} steps exceeds the period {period}; the profile repeats "
                         "whole periods, so use a period >= horizon")
    if length < cycles * period:
        raise ValueError(f"a profile of {cycles} periods of {period} steps needs a history of at least "
                         f"{cycles * period} steps, got {length}")


class Profile(nn.Module):
    """Seasonal-mean forecast: ``y[L + k] = mean_m x[L - m * period + k]`` over ``m = 1..cycles``.

    Attributes:
      horizon: forecast steps (at most ``period``).
      period: season length in steps (48 for a day of half-hours).
      cycles: periods averaged.
    """

    horizon: int
    period: int
    cycles: int = 3

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, length, c = x.shape
        _check(length, self.horizon, self.period, self.cycles)
        start = length - self.cycles * self.period
        folded = x[:, start:].reshape(b, self.cycles, self.period, c)   # oldest period first
        return jnp.mean(folded[:, :, : self.horizon], axis=1)


class Persistence(nn.Module):
    """The last period repeated: ``y[L + k] = x[L - period + k]`` (``Profile`` with one cycle)."""

    horizon: int
    period: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        length = x.shape[1]
        _check(length, self.horizon, self.period, 1)
        return x[:, length - self.period : length - self.period + self.horizon]


def profile_reference(x: np.ndarray, horizon: int, period: int, cycles: int) -> np.ndarray:
    """Loop oracle for :class:`Profile` (and :class:`Persistence` with ``cycles=1``)."""
    x = np.asarray(x, np.float64)
    b, length, c = x.shape
    out = np.zeros((b, horizon, c))
    for i in range(b):
        for k in range(horizon):
            for ch in range(c):
                out[i, k, ch] = np.mean([x[i, length - m * period + k, ch] for m in range(1, cycles + 1)])
    return out


@dataclasses.dataclass(frozen=True)
class ProfileConfig:
    """Config of :class:`Profile` for :func:`jaxlab.timeseries.make_forecaster`."""

    input_len: int = 336
    horizon: int = 48
    channels: int = 1
    period: int = 48
    cycles: int = 3

    def module(self) -> Profile:
        _check(self.input_len, self.horizon, self.period, self.cycles)
        return Profile(horizon=self.horizon, period=self.period, cycles=self.cycles)


@dataclasses.dataclass(frozen=True)
class PersistenceConfig:
    """Config of :class:`Persistence` for :func:`jaxlab.timeseries.make_forecaster`."""

    input_len: int = 48
    horizon: int = 48
    channels: int = 1
    period: int = 48

    def module(self) -> Persistence:
        _check(self.input_len, self.horizon, self.period, 1)
        return Persistence(horizon=self.horizon, period=self.period)
