"""Leaky integrate-and-fire neurons with snntorch ``Leaky`` semantics, time as a ``lax.scan``.

For input currents ``I_t`` (t = 1..T), membrane ``U_0 = 0``, threshold ``θ`` and decay ``β``:

.. math::

    R_t = H(U_{t-1} - θ)\\ (\\text{detached}), \\qquad
    U_t = \\mathrm{clip}(β, 0, 1)\\, U_{t-1} + I_t - R_t θ, \\qquad
    S_t = H(U_t - θ),

which is snntorch ``Leaky(beta, threshold=1.0, reset_mechanism="subtract", reset_delay=True)`` with its
default ``ATan`` surrogate: the spike ``S_t`` is :func:`jaxlab.nn.spike` (Heaviside forward, arctan
surrogate backward); the reset term carries no gradient, as snntorch detaches it. ``β`` is clipped to
[0, 1] where it is used (snntorch's ``beta.clamp(0, 1)``), so a learned ``β`` can leave the interval but
the dynamics cannot. ``H(x) = [x > 0]``: a membrane exactly at threshold does not fire (snntorch too).

The scan carries only the membrane of one step; a fully connected layer in front of it should be
applied to all time steps at once (one large matmul) before the scan, which is what
:class:`LIF` expects: it receives the currents of every step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from ._surrogate import spike


def lif(currents: jax.Array, beta: jax.Array | float, *, threshold: float = 1.0, alpha: float = 2.0,
        time_axis: int = 0, unroll: int = 1) -> tuple[jax.Array, jax.Array]:
    """Runs LIF neurons over time.

    Args:
      currents: input currents ``I``, time along ``time_axis`` (any other axes are neurons/batch).
      beta: membrane decay, a scalar or anything broadcastable to one time slice; clipped to [0, 1].
      threshold: firing threshold ``θ``.
      alpha: arctan surrogate slope (1.0 gradient at threshold for 2.0).
      time_axis: the axis of ``currents`` that is time.
      unroll: time steps per iteration of the scan (``lax.scan(unroll=...)``; fewer loop iterations on
        a GPU, same result).

    Returns:
      ``(spikes, membranes)``, both shaped like ``currents``.

    Examples:
      >>> import jax.numpy as jnp
      >>> s, u = lif(jnp.full((4, 1), 0.6, jnp.float32), 0.5)
      >>> s[:, 0]
      Array([0., 0., 1., 0.], dtype=float32)
    """
    x = jnp.moveaxis(currents, time_axis, 0)
    b = jnp.clip(jnp.asarray(beta, x.dtype), 0.0, 1.0)
    theta = jnp.asarray(threshold, x.dtype)

    def step(u, i_t):
        reset = jax.lax.stop_gradient((u - theta > 0).astype(u.dtype))
        u = b * u + i_t - reset * theta
        return u, (spike(u - theta, alpha), u)

    _, (s, u) = jax.lax.scan(step, jnp.zeros_like(x[0]), x, unroll=unroll)
    return jnp.moveaxis(s, 0, time_axis), jnp.moveaxis(u, 0, time_axis)


def lif_reference(currents: np.ndarray, beta: float, *, threshold: float = 1.0,
                  time_axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same recurrence as a float64 NumPy loop over time (the oracle of :func:`lif`)."""
    x = np.moveaxis(np.asarray(currents, np.float64), time_axis, 0)
    b = min(max(float(beta), 0.0), 1.0)
    u = np.zeros_like(x[0])
    s_out, u_out = np.zeros_like(x), np.zeros_like(x)
    for t in range(x.shape[0]):
        reset = (u > threshold).astype(np.float64)
        u = b * u + x[t] - reset * threshold
        u_out[t] = u
        s_out[t] = (u > threshold).astype(np.float64)
    return np.moveaxis(s_out, 0, time_axis), np.moveaxis(u_out, 0, time_axis)


class LIF(nn.Module):
    """A layer of LIF neurons (snntorch ``Leaky``) with one learnable decay ``β`` per layer.

    Attributes:
      beta_init: initial ``β`` (snntorch's ``beta``; 0.95 in PETNet).
      learn_beta: make ``β`` a parameter (``"beta"``, shape ``()``); otherwise a constant.
      threshold: firing threshold ``θ``.
      alpha: arctan surrogate slope.
      time_axis: axis of the input that is time.
      unroll: scan unrolling (see :func:`lif`).

    Call it on input currents (e.g. a ``Dense`` applied to all time steps) to get
    ``(spikes, membranes)`` of the same shape.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> layer = LIF()
      >>> x = jnp.ones((10, 2, 3))                    # (time, batch, neurons)
      >>> params = layer.init(jax.random.key(0), x)
      >>> spikes, mem = layer.apply(params, x)
      >>> spikes.shape, float(params["params"]["beta"])
      ((10, 2, 3), 0.949999988079071)
    """

    beta_init: float = 0.95
    learn_beta: bool = True
    threshold: float = 1.0
    alpha: float = 2.0
    time_axis: int = 0
    unroll: int = 1

    @nn.compact
    def __call__(self, currents: jax.Array) -> tuple[jax.Array, jax.Array]:
        if self.learn_beta:
            beta = self.param("beta", lambda key: jnp.asarray(self.beta_init, jnp.float32))
        else:
            beta = jnp.asarray(self.beta_init, jnp.float32)
        return lif(currents, beta.astype(currents.dtype), threshold=self.threshold, alpha=self.alpha,
                   time_axis=self.time_axis, unroll=self.unroll)
