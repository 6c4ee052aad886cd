"""Forward gradients as a drop-in ``grad_fn`` for training steps (``jaxlab.train.make_train_step``)."""

from __future__ import annotations

from typing import Any, Callable

import jax

from jaxlab.core import PRNGKey, PyTree

from ._aggregations import check_aggregation
from ._forward_gradient import MODES, forward_gradient
from ._samplers import check_sampler

GradFn = Callable[[Callable, PyTree, Any, Any, PRNGKey], tuple[tuple[Any, Any], PyTree]]


def make_grad_fn(*, num_tangents: int = 1, aggregation: str = "projection", sampler: str = "normal",
                 mode: str = "jvp", normalize: bool = False, length_correction: bool = False,
                 selection: str | None = None, tangent_batch_size: int | None = None,
                 fuse_combination: bool = False) -> GradFn:
    """A ``grad_fn`` that replaces ``jax.value_and_grad`` by a forward-gradient estimate.

    The returned function has the signature that ``jaxlab.train.make_train_step(loss_fn, tx,
    grad_fn=...)`` expects::

        grad_fn(loss_fn, params, model_state, batch, key) -> ((loss, (metrics, new_model_state)), grads)

    with ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))``. The key
    is split: one half for ``loss_fn`` (dropout and the like), one for the tangents. The options
    are those of :func:`forward_gradient` and are checked here, outside jit. With
    ``tangent_batch_size`` and a plain SGD (or momentum) ``tx``, ``fuse_combination=True`` lets XLA
    form the estimate inside the in-place parameter update (no buffer for it).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> def loss_fn(p, state, batch, key):
      ...     return jnp.sum((p - batch) ** 2), ({}, state)
      >>> gf = make_grad_fn(num_tangents=2, aggregation="mean")
      >>> (loss, (metrics, state)), g = gf(loss_fn, jnp.zeros(2), None, jnp.ones(2), jax.random.key(0))
      >>> g.shape
      (2,)
    """
    check_aggregation(aggregation, selection)
    check_sampler(sampler)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")

    def grad_fn(loss_fn: Callable, params: PyTree, model_state: Any, batch: Any, key: PRNGKey):
        loss_key, tangent_key = jax.random.split(key)
        grads, (loss, aux) = forward_gradient(
            lambda p: loss_fn(p, model_state, batch, loss_key), params, key=tangent_key,
            num_tangents=num_tangents, aggregation=aggregation, sampler=sampler, mode=mode,
            normalize=normalize, length_correction=length_correction, selection=selection, has_aux=True,
            tangent_batch_size=tangent_batch_size, fuse_combination=fuse_combination)
        return (loss, aux), grads

    return grad_fn


#: Alias of :func:`make_grad_fn` (the name used in the issue).
grad_fn = make_grad_fn
