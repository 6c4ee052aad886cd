"""Data-parallel steps on 8 fake devices equal the one-device step; accumulation equals the large batch."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlab.core import tolerances
from jaxlab.methods.energy_scaling import (
    accumulation_steps,
    make_data_mesh,
    make_data_parallel_step,
    replicate,
    shard_batch,
)
from jaxlab.train import TrainState, make_train_step

G = 16


def loss_fn(params, model_state, batch, key):
    h = jnp.tanh(batch["x"] @ params["w1"])
    pred = h @ params["w2"]
    loss = jnp.mean((pred - batch["y"]) ** 2)
    # A running statistic like BatchNorm's, to check that model_state is threaded through.
    new_state = {"mean": 0.9 * model_state["mean"] + 0.1 * jnp.mean(h, axis=0)}
    return loss, ({"mae": jnp.mean(jnp.abs(pred - batch["y"]))}, new_state)


@pytest.fixture
def problem(getkey):
    params = {"w1": jax.random.normal(getkey(), (3, 5)), "w2": jax.random.normal(getkey(), (5, 2))}
    batch = {"x": jax.random.normal(getkey(), (G, 3)), "y": jax.random.normal(getkey(), (G, 2))}
    tx = optax.sgd(0.1, momentum=0.9)
    state = TrainState.create(params=params, tx=tx, model_state={"mean": jnp.zeros(5)})
    return state, batch, tx


def _reference(state, batch, tx, key):
    return make_train_step(loss_fn, tx, donate=False)(state, batch, key)


def test_eight_devices_equal_one_device(problem):
    state, batch, tx = problem
    key = jax.random.key(1)
    want_state, want_metrics = _reference(state, batch, tx, key)
    mesh = make_data_mesh(8)
    step = make_data_parallel_step(loss_fn, tx, mesh, global_batch=G, local_batch=2)
    got_state, got_metrics = step(replicate(state, mesh), shard_batch(batch, mesh), key)
    atol, rtol = tolerances(jnp.float64)
    chex.assert_trees_all_close(got_state, want_state, atol=atol, rtol=rtol)
    chex.assert_trees_all_close(got_metrics, want_metrics, atol=atol, rtol=rtol)
    assert got_state.params["w1"].sharding.is_fully_replicated


@pytest.mark.parametrize("unroll", [None, 1])  # unrolled (default for 4 micro-batches) and a rolled loop
def test_accumulation_equals_large_batch(problem, unroll):
    state, batch, tx = problem
    key = jax.random.key(2)
    want_state, want_metrics = _reference(state, batch, tx, key)
    mesh = make_data_mesh(2)
    step = make_data_parallel_step(loss_fn, tx, mesh, global_batch=G, local_batch=2, unroll=unroll)  # 4 micro
    s, b = replicate(state, mesh), shard_batch(batch, mesh)
    got_state, got_metrics = step(s, b, key)
    atol, rtol = tolerances(jnp.float64)
    chex.assert_trees_all_close(got_state.params, want_state.params, atol=atol, rtol=rtol)
    chex.assert_trees_all_close(got_state.opt_state, want_state.opt_state, atol=atol, rtol=rtol)
    chex.assert_trees_all_close(got_metrics, want_metrics, atol=atol, rtol=rtol)
    assert int(got_state.step) == 1
    # The second call reuses the compiled step.
    size = step._cache_size()
    step(got_state, b, key)
    assert step._cache_size() == size


def test_micro_batches_draw_from_every_device():
    mesh = make_data_mesh(4)
    from jaxlab.methods.energy_scaling._data_parallel import _split_micro

    x = shard_batch(jnp.arange(16.0), mesh)  # device d holds rows 4d .. 4d+3
    y = jax.jit(lambda v: _split_micro(v, 2, mesh))(x)  # 2 micro-batches of 8: 2 rows per device each
    np.testing.assert_array_equal(np.asarray(y[0]), [0, 2, 4, 6, 8, 10, 12, 14])


def test_knob_errors():
    assert accumulation_steps(64, 8, 4) == 2
    with pytest.raises(ValueError, match="multiple of local batch"):
        accumulation_steps(60, 8, 4)
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        make_data_mesh(1000)
