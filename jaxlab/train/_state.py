"""The training state: a NamedTuple of arrays, so it jits, shards and checkpoints as a plain pytree."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from jaxlab.core import PyTree


class TrainState(NamedTuple):
    """Everything a training step reads and writes.

    Attributes:
      step: number of updates applied so far (int32 scalar).
      params: the trainable parameters.
      opt_state: the optax optimiser state.
      model_state: non-trained variables (BatchNorm statistics, ...); an empty dict if none.
    """

    step: Any
    params: PyTree
    opt_state: PyTree
    model_state: PyTree

    @classmethod
    def create(cls, *, params: PyTree, tx: optax.GradientTransformation,
               model_state: PyTree | None = None) -> "TrainState":
        """A state at step 0 with ``tx``'s initial optimiser state."""
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            model_state={} if model_state is None else model_state,
        )
