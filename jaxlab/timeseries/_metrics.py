"""Forecast metrics: point errors, the pinball loss, CRPS and interval coverage.

CRPS comes from scoringrules (``crps_ensemble``, ``crps_quantile``), on its JAX backend; the rest are
one-line jnp expressions. All of them run inside jit except :func:`crps_quantile`: scoringrules checks the
levels with a Python ``if``, which cannot read a traced value (call it outside jit, or use
:func:`pinball`, which is half of it and traces). Every function averages over all entries and returns a
scalar.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array


def mae(forecast: Array, target: Array) -> Array:
    """Mean absolute error."""
    return jnp.mean(jnp.abs(forecast - target))


def mse(forecast: Array, target: Array) -> Array:
    """Mean squared error."""
    return jnp.mean(jnp.square(forecast - target))


def mape(forecast: Array, target: Array) -> Array:
    """Mean absolute percentage error, in percent (targets must be non-zero)."""
    return 100.0 * jnp.mean(jnp.abs((forecast - target) / target))


def mase(forecast: Array, target: Array, naive: Array) -> Array:
    """MAE divided by the MAE of a naive forecast of the same targets (ReCycle's "MASE")."""
    return mae(forecast, target) / mae(naive, target)


def pinball(quantiles: Array, target: Array, qs) -> Array:
    """Mean pinball loss, written as ReCycle's reference does: 0.5|e| - (q - 0.5) e with e = forecast - target.

    Args:
      quantiles: ``(..., Q)`` forecasts of the quantile levels ``qs``.
      target: ``(...)`` observations.
      qs: the ``Q`` levels in (0, 1).

    Examples:
      >>> import jax.numpy as jnp
      >>> float(pinball(jnp.array([[1.0]]), jnp.array([3.0]), [0.5]))  # q = 0.5: half the absolute error
      1.0
    """
    qs = jnp.asarray(qs, dtype=jnp.result_type(quantiles))
    e = quantiles - target[..., None]
    return jnp.mean(0.5 * jnp.abs(e) - (qs - 0.5) * e)


def pinball_reference(quantiles, target, qs) -> float:
    """Loop oracle for :func:`pinball`: max(q (y - f), (q - 1)(y - f)) averaged."""
    quantiles, target = np.asarray(quantiles, np.float64), np.asarray(target, np.float64)
    total = 0.0
    for idx in np.ndindex(target.shape):
        for j, q in enumerate(qs):
            d = target[idx] - quantiles[idx + (j,)]
            total += max(q * d, (q - 1) * d)
    return total / (target.size * len(qs))


def crps(samples: Array, target: Array) -> Array:
    """Mean CRPS of an ensemble ``(..., M)`` against ``target`` ``(...)`` (scoringrules ``crps_ensemble``).

    The estimator is E|X - y| - 0.5 E|X - X'| over the empirical distribution of the samples.
    """
    import scoringrules as sr

    return jnp.mean(sr.crps_ensemble(target, samples, m_axis=-1, backend="jax"))


def crps_quantile(quantiles: Array, target: Array, qs) -> Array:
    """Mean quantile-based CRPS (scoringrules ``crps_quantile``: 2 x the mean pinball over the levels).

    Not traceable: scoringrules checks that the levels lie in (0, 1) with a Python ``if``, so inside jit it
    raises ``TracerBoolConversionError``. Under jit use ``2 * pinball(quantiles, target, qs)``.
    """
    import scoringrules as sr

    return jnp.mean(sr.crps_quantile(target, quantiles, jnp.asarray(qs, jnp.result_type(quantiles)), m_axis=-1,
                                     backend="jax"))


def interval_coverage(lower: Array, upper: Array, target: Array) -> Array:
    """Fraction of targets inside ``[lower, upper]``."""
    return jnp.mean((target >= lower) & (target <= upper))


def interval_width(lower: Array, upper: Array) -> Array:
    """Mean width of the intervals."""
    return jnp.mean(upper - lower)
