"""PETNet losses on spike trains ``(B, T, C)``: spike counts and a timing term that has a gradient.

* :func:`count_mse`: the reference's ``mse_count_loss``, the mean over (sample, neuron) of the squared
  spike-count error, divided by ``T``;
* :func:`count_l1`: the count part of the reference's ``mse_count_timing_loss``, the *sum* of absolute
  spike-count errors, divided by ``T``;
* :func:`van_rossum`: the van Rossum distance, each train filtered with a causal exponential kernel
  ``exp(-t/τ)``, the squared difference summed over time and divided by ``τ`` (and by ``T``, summed over
  samples and neurons like :func:`count_l1`).

Why not the reference's timing term: ``mse_count_timing_loss`` builds it from the integer indices of
``nonzero()`` spikes, so its gradient is zero and only the L1 count loss trains. The van Rossum distance
is a smooth function of the spike values, so the surrogate gradient reaches the membranes through it
and it pulls spikes towards the target times (a spike ``d`` steps off costs about
``1 - exp(-d/τ)``). The combined loss is ``a * count + b * timing`` (:func:`petnet_loss`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

LOSSES: tuple[str, ...] = ("mse", "l1", "l1_vr")


def count_mse(spikes: jax.Array, target: jax.Array) -> jax.Array:
    """``mean_{b,c} (Σ_t S - Σ_t Y)^2 / T``."""
    d = spikes.sum(1) - target.sum(1)
    return jnp.mean(d**2) / spikes.shape[1]


def count_l1(spikes: jax.Array, target: jax.Array) -> jax.Array:
    """``Σ_{b,c} |Σ_t S - Σ_t Y| / T``, with the subgradient 0 where a count is exact.

    ``jnp.abs`` has derivative 1 at 0 in JAX (PyTorch's ``L1Loss``: 0). With spike counts an exact zero
    is the common case (a silent neuron with an empty label), and a derivative of 1 there pushes every
    such neuron further below threshold until the whole output layer is dead; so the gradient is
    ``sign(d)`` here, as in the reference.
    """
    d = spikes.sum(1) - target.sum(1)
    return jnp.sum(d * jax.lax.stop_gradient(jnp.sign(d))) / spikes.shape[1]


def exp_filter(x: jax.Array, tau: float) -> jax.Array:
    """Causal exponential filter along axis 1: ``f_t = exp(-1/τ) f_{t-1} + x_t`` (a scan over time)."""
    decay = jnp.exp(jnp.asarray(-1.0 / tau, x.dtype))

    def step(f, x_t):
        f = decay * f + x_t
        return f, f

    _, f = jax.lax.scan(step, jnp.zeros_like(x[:, 0]), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(f, 0, 1)


def exp_filter_reference(x, tau: float):
    """The same filter as an explicit convolution sum (NumPy float64 oracle)."""
    import numpy as np

    x = np.asarray(x, np.float64)
    t = x.shape[1]
    k = np.exp(-np.arange(t) / tau)
    out = np.zeros_like(x)
    for i in range(t):
        out[:, i] = np.tensordot(k[: i + 1][::-1], x[:, : i + 1], axes=([0], [1]))
    return out


def van_rossum(spikes: jax.Array, target: jax.Array, tau: float = 5.0) -> jax.Array:
    """``Σ_{b,c,t} (f_S - f_Y)^2 / (τ T)`` with :func:`exp_filter`."""
    d = exp_filter(spikes - target, tau)  # the filter is linear
    return jnp.sum(d**2) / (tau * spikes.shape[1])


def petnet_loss(spikes: jax.Array, target: jax.Array, kind: str = "l1_vr", *, count_weight: float = 1.0,
                timing_weight: float = 0.1, tau: float = 5.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``a * count + b * timing`` by name.

    Args:
      spikes, target: ``(B, T, C)`` trains.
      kind: ``"mse"`` (count_mse), ``"l1"`` (count_l1) or ``"l1_vr"`` (count_l1 + van Rossum).
      count_weight, timing_weight: ``a`` and ``b``.
      tau: van Rossum time constant in steps.

    Returns:
      ``(loss, parts)`` with the unweighted parts.
    """
    if kind == "mse":
        count, timing = count_mse(spikes, target), jnp.zeros((), spikes.dtype)
    elif kind == "l1":
        count, timing = count_l1(spikes, target), jnp.zeros((), spikes.dtype)
    elif kind == "l1_vr":
        count, timing = count_l1(spikes, target), van_rossum(spikes, target, tau)
    else:
        raise ValueError(f"unknown PETNet loss {kind!r}; choose one of {LOSSES}")
    return count_weight * count + timing_weight * timing, {"count": count, "timing": timing}
