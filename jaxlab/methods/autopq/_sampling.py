"""From a point forecast to samples and quantiles through the cINN's latent space.

The reference's rule (``ProbForecastCINN.transform``): map the point forecast to the latent space,
``z = f(y_hat | c)``; perturb it multiplicatively, ``z~ = z * eps`` with ``eps ~ N(1, lambda_q^2)``
(100 samples); map back, ``x~ = f^-1(z~ | c)``; read the quantiles off the samples (linear
interpolation, as ``scipy.stats.scoreatpercentile``) and clip to the series' physical limits.

Because the noise is multiplicative, where ``z`` is near 0 the samples collapse onto the point
forecast; ``mode="additive"`` (``z~ = z + lambda_q * eps``, ``eps ~ N(0, 1)``) is the variant that does
not, and ``mode="prior"`` (``z~ = eps``) ignores the point forecast and samples the cINN's own
conditional distribution (a diagnostic: what the cINN knows without the point forecast). The noise is
passed in (``standard_noise``), so a search can score every ``lambda_q`` on the same
draws (common random numbers), which makes the objective smooth in ``lambda_q``.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.core import Array, PRNGKey

from ._cinn import CINN

#: The reference's 17 quantile levels (in percent: 50, 1, 99, 5, 95, 15, 85, 25, 75, 10, 90, 20, 80, 30, 70,
#: 40, 60), sorted.
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.10, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.60, 0.70, 0.75, 0.80,
                                0.85, 0.90, 0.95, 0.99)

#: The reference's number of latent samples.
SAMPLE_SIZE = 100

Mode = Literal["multiplicative", "additive", "prior"]
MODES: tuple[str, ...] = ("multiplicative", "additive", "prior")


def standard_noise(key: PRNGKey, shape: tuple[int, ...], num_samples: int = SAMPLE_SIZE,
                   dtype: Any = jnp.float32) -> Array:
    """``N(0, 1)`` draws of shape ``(num_samples, *shape)`` for :func:`perturb`."""
    return jax.random.normal(key, (num_samples, *shape), dtype)


def perturb(z: Array, noise: Array, lambda_q, mode: Mode = "multiplicative") -> Array:
    """Latent samples ``(M, B, H)`` of ``z``'s dtype around ``z (B, H)`` from standard-normal ``noise (M, B, H)``.

    ``"multiplicative"``: ``z * (1 + lambda_q * noise)``, i.e. ``z * eps`` with ``eps ~ N(1, lambda_q^2)``.
    ``"additive"``: ``z + lambda_q * noise``. ``"prior"``: ``noise`` (``z`` and ``lambda_q`` unused).
    """
    lam = jnp.asarray(lambda_q, z.dtype)
    noise = noise.astype(z.dtype)
    if mode == "multiplicative":
        return z[None] * (1 + lam * noise)
    if mode == "additive":
        return z[None] + lam * noise
    if mode == "prior":
        return jnp.broadcast_to(noise, (noise.shape[0], *z.shape))
    raise ValueError(f"mode must be 'multiplicative', 'additive' or 'prior', got {mode!r}")


def latent(model: CINN, params, forecast: Array, cond: Array) -> Array:
    """``z = f(forecast | cond)``."""
    return model.apply(params, forecast, cond)[0]


def samples_from_latent(model: CINN, params, z_samples: Array, cond: Array) -> Array:
    """``f^-1`` of latent samples ``(M, B, H)`` under conditions ``(B, D)``: realisations ``(B, H, M)``."""
    m, b, h = z_samples.shape
    c = jnp.broadcast_to(cond[None], (m, *cond.shape)).reshape(m * b, -1)
    x = model.apply(params, z_samples.reshape(m * b, h), c, method=CINN.inverse)[0]
    return jnp.moveaxis(x.reshape(m, b, h), 0, -1)


def cinn_samples(model: CINN, params, forecast: Array, cond: Array, noise: Array, lambda_q,
                 mode: Mode = "multiplicative") -> Array:
    """Samples ``(B, H, M)`` (in the cINN's scaled units) around a point forecast ``(B, H)``."""
    z = latent(model, params, forecast, cond)
    return samples_from_latent(model, params, perturb(z, noise, lambda_q, mode), cond)


def to_units(x: Array, offset, scale, limits: tuple[float | None, float | None] = (None, None)) -> Array:
    """Undoes the target scaling, ``x * scale + offset``, and clips to the physical ``limits``."""
    y = x * scale + offset
    lo, hi = limits
    return jnp.clip(y, lo, hi) if (lo is not None or hi is not None) else y


def sample_quantiles(samples: Array, levels=QUANTILES) -> Array:
    """Quantiles ``(..., Q)`` of samples ``(..., M)`` by linear interpolation (``scoreatpercentile``)."""
    q = jnp.quantile(samples, jnp.asarray(levels, samples.dtype), axis=-1, method="linear")
    return jnp.moveaxis(q, 0, -1)


def sample_quantiles_reference(inverse, z: np.ndarray, cond: np.ndarray, noise: np.ndarray, lambda_q: float,
                               levels=QUANTILES, mode: Mode = "multiplicative") -> np.ndarray:
    """Loop oracle of the sampling rule: one inverse pass per sample, ``scipy.stats.scoreatpercentile``.

    Args:
      inverse: ``(z (B, H), cond (B, D)) -> x (B, H)``, the cINN's inverse.
      z, cond, noise: latent point ``(B, H)``, conditions and standard-normal draws ``(M, B, H)``.
    """
    from scipy import stats

    z, noise = np.asarray(z, np.float64), np.asarray(noise, np.float64)
    draws = []
    for m in range(noise.shape[0]):
        eps = (1 + lambda_q * noise[m]) if mode == "multiplicative" else lambda_q * noise[m]
        zm = z * eps if mode == "multiplicative" else z + eps
        draws.append(np.asarray(inverse(zm, cond), np.float64))
    draws = np.stack(draws)                                   # (M, B, H)
    return np.stack([stats.scoreatpercentile(draws, 100 * q, axis=0) for q in levels], -1)
