"""The training state: a NamedTuple of arrays, so it jits, shards and checkpoints as a plain pytree."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
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


@functools.partial(jax.tree_util.register_dataclass,
                   data_fields=["step", "params", "opt_state", "model_state"], meta_fields=["config"])
@dataclasses.dataclass(frozen=True)
class MethodState:
    """The state of a method's public ``train_step(state, batch, key) -> (state, metrics)``.

    The arrays of a :class:`TrainState` plus the method's config, carried as static (hashed) data, so that the
    step needs no other argument and ``jax.jit(train_step)`` compiles once per config. Checkpoints hold the
    arrays only (the config is not a leaf).

    Attributes:
      step, params, opt_state, model_state: as in :class:`TrainState` (``model_state`` may hold more than
        BatchNorm statistics: masks, stacked members' extras, ...; each method documents its own).
      config: the method's config (a frozen, hashable dataclass).
    """

    step: Any
    params: PyTree
    opt_state: PyTree
    model_state: PyTree
    config: Any

    def __post_init__(self):
        try:
            hash(self.config)
        except TypeError as e:
            raise TypeError(f"MethodState needs a hashable config (a frozen dataclass of hashable fields, tuples "
                            f"rather than lists), got {type(self.config).__name__}: {e}") from None

    @classmethod
    def wrap(cls, state: TrainState, config: Any) -> "MethodState":
        """The :class:`TrainState` ``state`` with ``config`` attached."""
        return cls(step=state.step, params=state.params, opt_state=state.opt_state,
                   model_state=state.model_state, config=config)

    def train_state(self) -> TrainState:
        """The arrays as a :class:`TrainState` (for :func:`jaxlab.train.make_train_step` and checkpoints)."""
        return TrainState(step=self.step, params=self.params, opt_state=self.opt_state,
                          model_state=self.model_state)
