"""A small linear-regression run through ``jaxlab.train.train_loop``, for the kill/resume tests.

``RESUMABLE_PAUSE="<where>:<step>:<marker file>"`` in the environment makes the run stop and wait at
one point, after touching the marker file, so that a test can kill it exactly there: ``train``
waits in ``get_batch(step)`` (steps before ``step`` are done), ``eval`` inside the evaluation at
``step``, ``term`` sends this process SIGTERM from ``get_batch(step)``. The variable is not part of
the config, so the resumed run (without it) is the same experiment.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxlab.energy import EnergyMeter
from jaxlab.train import TrainState, train_loop


@dataclasses.dataclass(frozen=True)
class ResumableConfig:
    num_steps: int = 40
    log_every: int = 5
    eval_every: int = 10
    checkpoint_every: int = 10
    learning_rate: float = 0.05
    nan_at_step: int = -1  # the loss is made nan from this step on (a divergence test); -1: never


def get_config(arg: str | None = None) -> ResumableConfig:
    return ResumableConfig()


def _pause(where: str, step: int) -> None:
    spec = os.environ.get("RESUMABLE_PAUSE", "")
    if not spec:
        return
    kind, at, marker = spec.split(":", 2)
    if kind.startswith(where) and int(at) == step:
        Path(marker).write_text(str(step))
        if kind == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(120)  # the test kills or interrupts the run meanwhile


def run(config: ResumableConfig, workdir) -> dict:
    # numpy data and float32 maths: the same numbers with jax's x64 mode on (the tests) or off (the CLI).
    x = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)

    @jax.jit
    def step(state, batch, key):
        bx, by = batch
        loss, g = jax.value_and_grad(lambda w: jnp.mean((bx @ w - by) ** 2))(state.params["w"])
        # From step nan_at_step on (1-based) the loss and the update are nan: a diverging run.
        bad = jnp.asarray(config.nan_at_step >= 0) & (state.step + 1 >= config.nan_at_step)
        loss, g = jnp.where(bad, jnp.nan, loss), jnp.where(bad, jnp.nan, g)
        new = TrainState(step=state.step + 1, params={"w": state.params["w"] - config.learning_rate * g},
                         opt_state=(), model_state={})
        return new, {"loss": loss}

    state = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros(3, jnp.float32)}, opt_state=(),
                       model_state={})

    def get_batch(i):
        _pause("train", i)
        _pause("term", i)
        j = (i * 16) % 64
        return x[j:j + 16], y[j:j + 16]

    def eval_fn(state):
        _pause("eval", int(state.step))
        return {"val_loss": jnp.mean((x @ state.params["w"] - y) ** 2)}

    _, summary = train_loop(state, step, get_batch, num_steps=config.num_steps, key=jax.random.key(1),
                            workdir=workdir, eval_fn=eval_fn, eval_every=config.eval_every,
                            checkpoint_every=config.checkpoint_every, log_every=config.log_every,
                            meter=EnergyMeter(cpu="estimate"), progress=False)
    return summary
