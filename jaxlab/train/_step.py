"""Builds the pure, jitted training step ``step(state, batch, key) -> (state, metrics)``."""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from jaxlab.core import PRNGKey, PyTree

from ._state import TrainState

# loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))
LossFn = Callable[[PyTree, PyTree, Any, PRNGKey], tuple[jax.Array, tuple[dict, PyTree]]]
# grad_fn(loss_fn, params, model_state, batch, key) -> ((loss, (metrics, new_model_state)), grads)
GradFn = Callable[..., tuple[tuple[jax.Array, tuple[dict, PyTree]], PyTree]]


def backprop_grad(loss_fn: LossFn, params, model_state, batch, key):
    """The default ``grad_fn``: reverse-mode ``jax.value_and_grad`` with the auxiliary outputs."""
    return jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, batch, key)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    *,
    grad_fn: GradFn | None = None,
    jit: bool = True,
    donate: bool = True,
) -> Callable[[TrainState, Any, PRNGKey], tuple[TrainState, dict]]:
    """Returns ``step(state, batch, key) -> (new_state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))``.
      tx: any optax optimiser.
      grad_fn: how gradients are computed; defaults to :func:`backprop_grad`. Forward-gradient
        estimators (``jaxlab.fwdgrad``) plug in here with the same signature.
      jit: jit the step (the state argument is donated when ``donate``).
      donate: donate the input state's buffers to the output (saves a copy of params and optimiser state).

    Returns:
      The step function. ``metrics`` holds ``loss`` and whatever ``loss_fn`` reported.
    """
    grad_fn = backprop_grad if grad_fn is None else grad_fn

    def step(state: TrainState, batch, key: PRNGKey):
        (loss, (metrics, model_state)), grads = grad_fn(loss_fn, state.params, state.model_state, batch, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, model_state=model_state)
        return new_state, {"loss": loss, **metrics}

    if jit:
        return jax.jit(step, donate_argnums=(0,) if donate else ())
    return step
