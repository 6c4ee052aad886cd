"""An optax wrapper that keeps masked weights at exactly zero through any optimiser."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxlab.core import PyTree

from ._masks import apply_masks


class MaskedState(NamedTuple):
    """The inner optimiser's state (the masks are static, held by the transformation)."""

    inner_state: optax.OptState


def masked(inner: optax.GradientTransformation, masks: PyTree) -> optax.GradientTransformation:
    """Runs ``inner`` on the kept weights only, and pins the masked ones to exactly zero.

    Masked gradients are zeroed before ``inner`` sees them (so momentum and Adam moments of pruned
    weights stay zero), and each masked update is ``-param``, so ``optax.apply_updates`` leaves
    exactly ``0.0`` there whatever the optimiser does (weight decay, momentum, ...). Unlike
    ``optax.masked``, which *skips* the transformation for masked leaves, this masks entries inside a
    leaf.

    Args:
      inner: any optax transformation.
      masks: a pytree of booleans (``True`` keeps) with the structure of the params.

    Examples:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.array([1.0, 2.0])}
      >>> tx = masked(optax.adamw(0.1), {"w": jnp.array([True, False])})
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([1.0, 1.0])}, state, params)
      >>> optax.apply_updates(params, updates)["w"][1].item()
      0.0
    """

    def init_fn(params):
        return MaskedState(inner.init(apply_masks(params, masks)))     # on the host when params are concrete

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("prune.masked needs `params` in update(updates, state, params) to pin masked "
                             "weights to zero")
        grads = jax.tree.map(lambda g, m: jnp.where(m, g, jnp.zeros_like(g)), updates, masks)
        new, inner_state = inner.update(grads, state.inner_state, params)
        new = jax.tree.map(lambda u, p, m: jnp.where(m, u, -p).astype(u.dtype), new, params, masks)
        return new, MaskedState(inner_state)

    return optax.GradientTransformation(init_fn, update_fn)
