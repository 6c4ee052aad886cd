"""jaxlab.train.MethodState: a TrainState with the method's config as static data."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.train import MethodState, TrainState, make_train_step


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    widths: tuple = (3,)


def _loss(params, model_state, batch, key):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2), ({}, model_state)


def test_the_config_is_static_and_the_arrays_are_leaves():
    tx = optax.sgd(0.1)
    ts = TrainState.create(params={"w": jnp.ones((2, 1))}, tx=tx)
    s = MethodState.wrap(ts, Cfg())
    leaves, treedef = jax.tree.flatten(s)
    assert len(leaves) == len(jax.tree.leaves(ts))
    assert jax.tree.unflatten(treedef, leaves).config == Cfg()
    assert jax.tree.structure(MethodState.wrap(ts, Cfg(lr=0.2))) != treedef
    back = s.train_state()
    assert isinstance(back, TrainState)
    assert all(a is b for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(ts)))


def test_a_step_reads_its_optimiser_from_the_config_and_compiles_once_per_config():
    traces = []

    def train_step(state, batch, key):
        traces.append(state.config)
        step = make_train_step(_loss, optax.sgd(state.config.lr), jit=False)
        ts, metrics = step(state.train_state(), batch, key)
        return MethodState.wrap(ts, state.config), metrics

    jitted = jax.jit(train_step)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)))
    batch = (x, x @ jnp.array([[1.0], [-2.0]]))
    key = jax.random.key(0)
    for lr in (0.1, 0.2):
        s = MethodState.wrap(TrainState.create(params={"w": jnp.zeros((2, 1))}, tx=optax.sgd(lr)), Cfg(lr=lr))
        s1, m1 = jitted(s, batch, key)
        s2, _ = jitted(s1, batch, key)
        g = jax.grad(lambda w: jnp.mean((x @ w - batch[1]) ** 2))(jnp.zeros((2, 1)))
        np.testing.assert_allclose(s1.params["w"], -lr * g, rtol=1e-12)
        assert int(s2.step) == 2 and s2.config == Cfg(lr=lr) and float(m1["loss"]) > 0
    assert traces == [Cfg(lr=0.1), Cfg(lr=0.2)]


def test_an_unhashable_config_is_named():
    @dataclasses.dataclass
    class Loose:
        widths: list

    ts = TrainState.create(params={"w": jnp.ones(2)}, tx=optax.sgd(0.1))
    with pytest.raises(TypeError, match="hashable config.*Loose"):
        MethodState.wrap(ts, Loose([1]))
