"""Latitude-weighted losses and scores, and multi-step rollouts.

Weights are ``cos(latitude)`` normalised to mean 1 over the rows, as in WeatherBench and the
paper's area-weighted L2 loss, so a uniform error scores the same with or without weighting.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def latitude_weights(lat_deg: np.ndarray) -> np.ndarray:
    """``cos(lat)`` normalised to mean 1, float32, one weight per latitude row.

    Examples:
      >>> latitude_weights(np.array([-60.0, 0.0, 60.0])).round(3).tolist()
      [0.75, 1.5, 0.75]
    """
    w = np.cos(np.deg2rad(np.asarray(lat_deg, np.float64)))
    w = np.clip(w, 0.0, None)
    if w.sum() <= 0:
        raise ValueError("latitude weights sum to zero; pass latitudes in degrees")
    return (w / w.mean()).astype(np.float32)


def grid_latitudes(num_lat: int) -> np.ndarray:
    """Cell-centre latitudes (degrees, south to north) of a regular grid with ``num_lat`` rows."""
    step = 180.0 / num_lat
    return -90.0 + step * (np.arange(num_lat) + 0.5)


def weighted_mse(pred: jax.Array, target: jax.Array, lat_weights: jax.Array) -> jax.Array:
    """Latitude-weighted mean squared error over ``(batch, lat, lon, channel)`` arrays."""
    err = (pred - target) ** 2
    return jnp.mean(err * lat_weights[None, :, None, None])


def weighted_mse_reference(pred: np.ndarray, target: np.ndarray, lat_weights: np.ndarray) -> float:
    """NumPy float64 oracle of :func:`weighted_mse`."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    w = np.asarray(lat_weights, np.float64)
    b, h, lon, c = pred.shape
    total = sum(w[i] * np.sum((pred[:, i] - target[:, i]) ** 2) for i in range(h))
    return float(total / (b * h * lon * c))


def weighted_rmse(pred: jax.Array, target: jax.Array, lat_weights: jax.Array) -> jax.Array:
    """Latitude-weighted RMSE per channel: per sample over the grid, then the mean over samples.

    Returns:
      An array of shape ``(channels,)`` in the units of the inputs.
    """
    err = (pred - target) ** 2 * lat_weights[None, :, None, None]
    return jnp.mean(jnp.sqrt(jnp.mean(err, axis=(1, 2))), axis=0)


def rollout(apply_fn: Callable[[Any, jax.Array], jax.Array], params: Any, state: jax.Array, num_steps: int):
    """Applies the one-step model ``num_steps`` times from ``state``.

    Returns:
      ``(num_steps, *state.shape)``: the forecasts at leads 1..num_steps.
    """

    def step(x, _):
        y = apply_fn(params, x)
        return y, y

    _, ys = lax.scan(step, state, None, length=num_steps)
    return ys
