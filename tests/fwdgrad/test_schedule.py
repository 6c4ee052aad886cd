"""The schedule helper: zero data dependencies keep every bit and order the work (memory, per backend)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxlab import fwdgrad
from jaxlab.fwdgrad._samplers import leaf_tangent_from_seeds
from jaxlab.core import after, zero_from
from jaxlab.train import TrainState, make_train_step


def test_schedule_helper_is_public_in_core_and_keeps_its_old_private_path():
    from jaxlab.fwdgrad import _schedule
    from jaxlab.methods.fwdgrad import _serial

    assert _schedule.after is after and _schedule.zero_from is zero_from and _serial.after is after


def test_schedule_helper_keeps_every_bit_and_handles_explicit_sharding():
    values = jnp.array([jnp.nan, -jnp.inf, -0.0, 1.5], jnp.float32)
    assert int(zero_from(values)) == 0 and zero_from(jnp.zeros((0,))) is None
    np.testing.assert_array_equal(jax.lax.bitcast_convert_type(after(values, jnp.arange(3)), jnp.uint32),
                                  jax.lax.bitcast_convert_type(values, jnp.uint32))
    seeds = jnp.array([[1, 2], [3, 4]], jnp.uint32)
    np.testing.assert_array_equal(after(seeds, values, {"b": jnp.array([True])}), seeds)
    with pytest.raises(ValueError, match="integer or floating"):
        after(jnp.array([True]), values)
    mesh = jax.make_mesh((4, 2), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    with jax.set_mesh(mesh):
        x = jax.device_put(jnp.ones((8, 4, 2), jnp.float32), NamedSharding(mesh, P("data", None, "model")))
        out = jax.jit(lambda s, x: after(s, x))(seeds, x)
    np.testing.assert_array_equal(out, seeds)


M, B, K = 256, 32, 8


def _chain(seeds, x, ordered):
    # K matrices drawn from seeds, each consumed by a matmul: unordered, XLA may draw all K first.
    acc = jnp.zeros((B, M), jnp.float32)
    for i in range(K):
        v = leaf_tangent_from_seeds(after(seeds[i], acc) if ordered else seeds[i], (M, M), jnp.float32, "normal")
        acc = jnp.tanh(acc + x @ v)
    return acc


def _chain_temp_in_matrices(device, ordered):
    seeds = jax.device_put(jnp.arange(2 * K, dtype=jnp.uint32).reshape(K, 2), device)
    x = jax.device_put(jnp.ones((B, M), jnp.float32), device)
    compiled = jax.jit(_chain, static_argnums=2).lower(seeds, x, ordered).compile()
    return compiled.memory_analysis().temp_size_in_bytes / (M * M * 4)


def test_after_draws_one_matrix_at_a_time_on_cpu():
    cpu = jax.devices("cpu")[0]
    assert _chain_temp_in_matrices(cpu, ordered=True) <= 1.5
    assert _chain_temp_in_matrices(cpu, ordered=False) >= 4  # XLA:CPU draws them all up front


def _gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("no GPU visible to jax")


@pytest.mark.gpu
def test_after_draws_one_matrix_at_a_time_on_gpu():
    assert _chain_temp_in_matrices(_gpu(), ordered=True) <= 1.5


def _mlp_loss(params, model_state, batch, key):
    del key
    x, y = batch
    h = x
    for i, p in enumerate(params):
        h = h @ p["w"] + p["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return jnp.mean((h - y) ** 2), ({}, model_state)


@pytest.mark.gpu
def test_streaming_step_working_memory_is_flat_in_depth_on_gpu():
    device, width, batch = _gpu(), 256, 512
    tx = optax.sgd(1e-3)
    data = jax.device_put((jnp.ones((batch, width), jnp.float32), jnp.zeros((batch, width), jnp.float32)), device)
    grad_fn = fwdgrad.make_grad_fn(num_tangents=4, aggregation="projection", tangent_batch_size=1,
                                   fuse_combination=True)

    def temp_bytes(depth, grad_fn):
        params = [{"w": jnp.full((width, width), 1.0 / width, jnp.float32), "b": jnp.zeros((width,), jnp.float32)}
                  for _ in range(depth)]
        state = jax.device_put(TrainState.create(params=params, tx=tx), device)
        step = jax.jit(make_train_step(_mlp_loss, tx, grad_fn=grad_fn, jit=False), donate_argnums=(0,))
        key = jax.device_put(jax.random.key(1), device)
        return step.lower(state, data, key).compile().memory_analysis().temp_size_in_bytes

    shallow, deep = temp_bytes(4, grad_fn), temp_bytes(16, grad_fn)
    assert deep <= 1.25 * shallow
    assert deep <= 0.5 * temp_bytes(16, None)
