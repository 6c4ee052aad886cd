"""Spike nonlinearity with a surrogate gradient: forward Heaviside, backward arctan (snntorch's ``ATan``).

Kept apart from the neuron model (:mod:`jaxlab.nn._lif`) so that other spiking layers can reuse the op
and so the custom rule is tested on its own.

.. math::

    S = H(x) = [x > 0], \\qquad
    \\frac{\\partial S}{\\partial x} \\approx \\frac{\\alpha / 2}{1 + (\\pi \\alpha x / 2)^2}

with ``x = U - θ`` measured from the threshold. For snntorch's default ``α = 2`` the surrogate is 1.0 at
``x = 0``. (spyx writes an extra ``1/π``; this is snntorch's form, which the PETNet reference uses.)
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def atan_surrogate_grad(x: jax.Array, alpha: float = 2.0) -> jax.Array:
    """The closed form ``(α/2) / (1 + (π α x / 2)^2)`` that :func:`spike` uses as its derivative."""
    return (alpha / 2) / (1 + (math.pi * alpha * x / 2) ** 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def spike(x: jax.Array, alpha: float = 2.0) -> jax.Array:
    """Heaviside step ``[x > 0]`` (in ``x``'s dtype) whose gradient is the arctan surrogate.

    Args:
      x: membrane potential minus threshold, any shape, floating point.
      alpha: surrogate slope (snntorch ``ATan(alpha=2.0)``); a Python float.

    Returns:
      0/1 spikes of the same shape and dtype as ``x``.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> spike(jnp.array([-0.5, 0.0, 0.5], jnp.float32))
      Array([0., 0., 1.], dtype=float32)
      >>> float(jax.grad(lambda x: spike(x).sum())(jnp.array(0.0, jnp.float32)))
      1.0
    """
    return (x > 0).astype(x.dtype)


def _spike_fwd(x, alpha):
    return spike(x, alpha), x


def _spike_bwd(alpha, x, g):
    return (g * atan_surrogate_grad(x, alpha).astype(g.dtype),)


spike.defvjp(_spike_fwd, _spike_bwd)
