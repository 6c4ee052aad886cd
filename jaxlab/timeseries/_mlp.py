"""A multilayer-perceptron forecaster over :class:`jaxlab.nn.MLP`.

The flattened history ``(B, L, C)`` and, when given, the flattened covariates known over the horizon
(``future``: calendar, weather forecasts; ``(B, H, F)``) go through dense layers to the ``H * C``
forecast. This is the shape of AutoPQ's MLP point forecaster (sklearn's ``MLPRegressor`` on the lagged
target, the calendar and the exogenous features of the horizon).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxlab.core import Array
from jaxlab.nn import MLP

#: activations by name (sklearn's MLPRegressor names: "logistic" is the sigmoid).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": jnp.tanh, "logistic": nn.sigmoid,
}


class MLPForecaster(nn.Module):
    """``(B, L, C)`` (+ ``future`` ``(B, H, F)``) -> ``(B, H, C)`` through an MLP.

    Attributes:
      horizon: forecast steps H.
      channels: forecast channels C.
      hidden: widths of the hidden layers.
      activation: name in :data:`ACTIVATIONS`.
      future_features: F, the covariates per horizon step the model expects (0: none).
    """

    horizon: int
    channels: int = 1
    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    future_features: int = 0

    @nn.compact
    def __call__(self, x: Array, future: Array | None = None) -> Array:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
        b = x.shape[0]
        parts = [x.reshape(b, -1)]
        if self.future_features:
            if future is None or future.shape != (b, self.horizon, self.future_features):
                got = None if future is None else future.shape
                raise ValueError(f"MLPForecaster was built for future covariates of shape "
                                 f"(B, {self.horizon}, {self.future_features}), got {got}")
            parts.append(future.reshape(b, -1))
        elif future is not None:
            raise ValueError("MLPForecaster(future_features=0) got `future`; set future_features to use it")
        y = MLP(features=(*self.hidden, self.horizon * self.channels),
                activation=ACTIVATIONS[self.activation])(jnp.concatenate(parts, axis=-1))
        return y.reshape(b, self.horizon, self.channels)


@dataclasses.dataclass(frozen=True)
class MLPForecasterConfig:
    """Config of :class:`MLPForecaster` for :func:`jaxlab.timeseries.make_forecaster`.

    With ``future_features > 0`` the model is called as ``apply(variables, x, future=f)``.
    """

    input_len: int = 48
    horizon: int = 48
    channels: int = 1
    hidden: tuple[int, ...] = (100,)
    activation: str = "relu"
    future_features: int = 0

    def module(self) -> MLPForecaster:
        return MLPForecaster(horizon=self.horizon, channels=self.channels, hidden=tuple(self.hidden),
                             activation=self.activation, future_features=self.future_features)
